"""sync, reprocess, status and watch mode against Immich v3.1's own server, database and previews.

The previews are the files Immich itself wrote (sharp/libvips), found through the absolute paths Immich
stores in ``asset_file``; the API source downloads the same previews through Immich's HTTP API.
"""

from __future__ import annotations

import json
import time

import psycopg
import pytest

from tests.real_immich import background, ensure_indexed, search_ids, text_photo, wait_for

pytestmark = pytest.mark.real_immich


@pytest.fixture(scope="module")
def indexed(real_immich) -> dict[str, str]:
    return ensure_indexed(real_immich)


def previews(real_immich) -> dict[str, str]:
    """Asset id -> preview path of every asset Immich made a preview for (trashed ones included)."""
    with psycopg.connect(real_immich.db_url) as conn:
        rows = conn.execute(
            'SELECT "assetId", path FROM asset_file WHERE type = \'preview\' AND NOT "isEdited"'
        ).fetchall()
    return {str(asset_id): path for asset_id, path in rows}


def test_file_source_indexes_every_preview_immich_wrote(real_immich, indexed):
    assert set(indexed) == set(previews(real_immich))
    admin = real_immich.asset_ids(real_immich.admin_id)
    assert "发票" in indexed[admin["zh_invoice_02.png"]]
    assert indexed[admin["neg_cat_01.png"]].strip() == ""  # a photo without text
    with psycopg.connect(real_immich.db_url) as conn:
        sources = conn.execute("SELECT DISTINCT source FROM immich_search.ocr").fetchall()
        failed = conn.execute("SELECT count(*) FROM immich_search.job WHERE state <> 'done'").fetchone()[0]
    assert sources == [("rapidocr",)]  # Immich's machine learning is off: no asset_ocr rows to reuse
    assert failed == 0


def test_api_source_gives_the_same_rows(real_immich, indexed):
    keys = ",".join([real_immich.admin_key, real_immich.bob_key])
    result = real_immich.cli("sync", "--force", "--source", "api", "--immich-url", real_immich.url, "--api-key", keys)
    assert "failed 0" in result.stdout + result.stderr
    assert real_immich.ocr_rows() == indexed


def test_reprocess_and_status(real_immich, indexed):
    asset = real_immich.asset_ids(real_immich.admin_id)["zh_invoice_02.png"]
    with psycopg.connect(real_immich.db_url) as conn:
        before = conn.execute("SELECT processed_at FROM immich_search.ocr WHERE asset_id = %s", (asset,)).fetchone()[0]
    real_immich.cli("reprocess", asset, "--ocr", *real_immich.media_args())
    with psycopg.connect(real_immich.db_url) as conn:
        after, text = conn.execute(
            "SELECT processed_at, text FROM immich_search.ocr WHERE asset_id = %s", (asset,)
        ).fetchone()
    assert after > before and text == indexed[asset]

    status = json.loads(real_immich.cli("status", "--json").stdout)
    assert status["counts"]["ocr"]["done"] == len(previews(real_immich))
    assert status["counts"]["ocr"]["failed"] == 0 and status["counts"]["ocr"]["pending"] == 0
    assert [lag["undiscovered"] for lag in status["lag"]] == [0] * len(status["lag"])


def test_watch_indexes_an_upload_and_a_delete_leaves_our_tables(real_immich, indexed):
    args = ["--database-url", real_immich.db_url, "sync", "--watch", "--interval", "1", *real_immich.media_args()]
    with background(*args) as watcher:
        time.sleep(3)  # its first pass finds nothing to do
        asset = real_immich.upload(real_immich.admin_key, text_photo("MARMALADE", "JAR 1990"), "marmalade.jpg")
        try:
            text = wait_for(lambda: real_immich.ocr_rows().get(asset), 120, "sync --watch to index the upload")
            assert "MARMALADE" in text.upper()
            assert asset in search_ids(real_immich, "ocr:marmalade", "admin@example.com")
            # bob sees it too: admin shares with him in his timeline (partner).
            assert asset in search_ids(real_immich, "ocr:marmalade", "bob@example.com")
        finally:
            real_immich.delete(real_immich.admin_key, [asset], force=True)
        real_immich.wait_until_gone(asset)
        assert watcher.poll() is None, watcher.stderr.read()
    with psycopg.connect(real_immich.db_url) as conn:
        for table in ("ocr", "job"):
            left = conn.execute(f"SELECT count(*) FROM immich_search.{table} WHERE asset_id = %s", (asset,)).fetchone()
            assert left == (0,), table
    assert search_ids(real_immich, "ocr:marmalade", "admin@example.com") == []
    assert watcher.returncode in (0, 130), watcher.stderr.read()
