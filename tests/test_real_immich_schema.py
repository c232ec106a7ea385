"""doctor, migrate and migrate --downgrade against Immich v3.1's own server and database.

Immich checks its own schema for drift every time it starts (server/src/services/database.service.ts:
"Checking for schema drift", then "No schema drift detected" or "Detected schema drift ..."): our schema
beside Immich's must never make it complain, and removing ours must leave Immich's exactly as it was.
"""

from __future__ import annotations

import re

import psycopg
import pytest

pytestmark = pytest.mark.real_immich


def our_schema_exists(db_url: str) -> bool:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'immich_search'").fetchone() is not None


def test_doctor_then_migrate_then_immich_reports_no_drift(real_immich):
    before = real_immich.public_schema()
    doctor = real_immich.cli("doctor", check=False)
    # Before our migration doctor names the one thing to do; everything Immich must provide is there.
    if not our_schema_exists(real_immich.db_url):
        assert doctor.returncode != 0 and "immich-search migrate" in doctor.stdout
    real_immich.cli("migrate")
    doctor = real_immich.cli("doctor")  # exits 1 when anything required is missing
    for check in ("table asset", "table asset_file", "table partner", "extension vector", "write access", "migrations"):
        assert re.search(rf"{check}\s*│\s*ok", doctor.stdout), doctor.stdout
    assert real_immich.cli("doctor", "--quiet").returncode == 0
    assert real_immich.public_schema() == before, "migrate changed Immich's own schema"

    log = real_immich.restart()
    assert log.count("No schema drift detected") >= 1, log[-3000:]
    assert "Detected schema drift" not in log, log[-3000:]
    assert real_immich.ping()


def test_downgrade_base_removes_only_ours_and_immich_keeps_running(real_immich):
    real_immich.cli("migrate")
    migrated = real_immich.public_schema()
    with psycopg.connect(real_immich.db_url) as conn:
        assets = conn.execute("SELECT count(*) FROM asset").fetchone()[0]
    try:
        real_immich.cli("migrate", "--downgrade", "base")
        assert not our_schema_exists(real_immich.db_url)
        assert real_immich.public_schema() == migrated, "downgrade changed Immich's own schema"
        with psycopg.connect(real_immich.db_url) as conn:
            assert conn.execute("SELECT count(*) FROM asset").fetchone()[0] == assets
            leftovers = conn.execute(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public' AND p.proname LIKE 'immich_search%'"
            ).fetchall()
            assert leftovers == []
        # Immich goes on serving: its own search still answers, with every asset.
        assert real_immich.ping()
        with real_immich.api(real_immich.admin_key) as client:
            response = client.post("/search/metadata", json={"size": 1000})
            assert response.status_code == 200
            assert response.json()["assets"]["total"] > 0
        doctor = real_immich.cli("doctor", check=False)
        assert doctor.returncode != 0 and "immich-search migrate" in doctor.stdout
    finally:
        real_immich.cli("migrate")
    assert our_schema_exists(real_immich.db_url)
