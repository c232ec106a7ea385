"""serve and its database: a clear 503 within about a second while the database is down, and no search
failing on a connection a database restart broke (issue 14, attacker finding 3).

serve runs in process in front of the fake Immich (tests/fake_immich.py, which answers no
``/api/server/version``, so serve also shows its per-asset fallback and says so once in the log); the
database is a real PostgreSQL whose connections are cut (``pg_terminate_backend``) and refused
(``ALLOW_CONNECTIONS false``) as a restart and an outage would.
"""

from __future__ import annotations

import logging
import time

import httpx
import psycopg
import pytest

from immich_search.db import open_pool
from immich_search.serve.app import ServeConfig, create_app
from immich_search.serve.pages import SERVE_POOL
from immich_search.serve.searchers import ocr_searcher
from tests.conftest import scratch_database
from tests.fake_immich import FakeImmich, add_asset, add_user

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def cut_connections(admin_url: str, database: str, *, refuse: bool | None = None) -> None:
    """Terminate every session on ``database``; with ``refuse`` also stop (True) or allow (False) new ones."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if refuse is not None:
            conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(not refuse).lower()}')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )


async def test_database_down_is_a_quick_503_and_a_restart_fails_no_search(server, migrated_template, caplog):
    with scratch_database(server, migrated_template) as url:
        database = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        with psycopg.connect(url) as conn:
            user = add_user(conn, "alice@example.com")
            add_asset(conn, user, "invoice.jpg", ["INVOICE 1"], age_days=1)
        fake = FakeImmich().load(url)
        token = fake.login(user)
        pool = open_pool(url, max_size=2, **SERVE_POOL)
        app = create_app(
            ServeConfig(immich_url="http://immich.test", timeout=30),
            ocr_searcher=ocr_searcher(pool),
            transport=httpx.ASGITransport(app=fake.app),
        )
        headers = {"Authorization": f"Bearer {token}"}
        body = {"query": "ocr:invoice"}
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as client:

                async def search() -> tuple[int, float]:
                    started = time.monotonic()
                    response = await client.post("/api/search/smart", json=body, headers=headers)
                    return response.status_code, time.monotonic() - started

                assert (await search())[0] == 200
                cut_connections(server, database)  # a restart: every pooled connection is dead
                assert [(await search())[0] for _ in range(3)] == [200, 200, 200]

                cut_connections(server, database, refuse=True)  # down
                status, seconds = await search()
                assert status == 503 and seconds < 2.5, (status, seconds)
                response = await client.post("/api/search/smart", json=body, headers=headers)
                assert "database" in response.json()["message"]

                cut_connections(server, database, refuse=False)  # back
                statuses = []
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    statuses.append((await search())[0])
                    if statuses[-1] == 200:
                        break
                assert statuses[-1] == 200 and set(statuses) <= {200, 503}, statuses
        finally:
            await app.state.service.aclose()
            pool.close()
            cut_connections(server, database, refuse=False)


async def test_an_unknown_immich_version_falls_back_and_says_so_once(server, migrated_template, caplog):
    with scratch_database(server, migrated_template) as url:
        with psycopg.connect(url) as conn:
            user = add_user(conn, "alice@example.com")
            add_asset(conn, user, "invoice.jpg", ["INVOICE 1"], age_days=1)
        fake = FakeImmich().load(url)
        token = fake.login(user)
        used = []

        def page_source(*args, **kwargs):
            used.append(args)
            raise AssertionError("pages must not be built for an Immich version the parity test does not cover")

        with open_pool(url, max_size=2) as pool:
            app = create_app(
                ServeConfig(immich_url="http://immich.test"),
                ocr_searcher=ocr_searcher(pool),
                page_source=page_source,
                transport=httpx.ASGITransport(app=fake.app),
            )
            caplog.set_level(logging.WARNING, logger="immich_search.serve")
            try:
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as client:
                    for _ in range(3):
                        response = await client.post(
                            "/api/search/smart",
                            json={"query": "ocr:invoice"},
                            headers={"Authorization": f"Bearer {token}"},
                        )
                        assert response.status_code == 200
                        assert [item["originalFileName"] for item in response.json()["assets"]["items"]] == [
                            "invoice.jpg"
                        ]
            finally:
                await app.state.service.aclose()
        assert used == []
        lines = [record.getMessage() for record in caplog.records if "is not a version" in record.getMessage()]
        assert len(lines) == 1 and "GET /api/assets/{id}" in lines[0], lines
        assert fake.calls["assets/{id}"] >= 3  # the per-asset fallback


async def test_desc_queries_are_answered_from_the_descriptions(server, migrated_template):
    """``desc:`` in Immich's search bar: serve ranks the vision model's descriptions itself (Immich knows no
    ``desc:``), even when plain queries pass through; the description's words never come from OCR text."""
    from immich_search.serve.searchers import desc_searcher
    from immich_search.sqlfiles import query
    from immich_search.sync.describe_task import description_row
    from immich_search.sync.vision import Description

    with scratch_database(server, migrated_template) as url:
        with psycopg.connect(url) as conn:
            user = add_user(conn, "alice@example.com")
            other = add_user(conn, "bob@example.com")
            kite = add_asset(conn, user, "kite.jpg", ["SALE 50%"], age_days=1)
            add_asset(conn, user, "sign.jpg", ["风筝 kite shop"], age_days=2)  # the words only as OCR text
            bobs = add_asset(conn, other, "bobs.jpg", [], age_days=1)
            for asset_id, text in ((kite, "孩子在海边放风筝"), (bobs, "海边的风筝")):
                row = description_row(asset_id, Description(text, "http://h", 1.0), "m")
                conn.execute(query("upsert_description"), row)
        fake = FakeImmich().load(url)
        token = fake.login(user)
        with open_pool(url, max_size=2) as pool:
            app = create_app(
                ServeConfig(immich_url="http://immich.test"),
                ocr_searcher=ocr_searcher(pool),
                desc_searcher=desc_searcher(pool),
                transport=httpx.ASGITransport(app=fake.app),
            )
            try:
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as client:
                    response = await client.post(
                        "/api/search/smart", json={"query": "desc:風箏"}, headers={"Authorization": f"Bearer {token}"}
                    )
                    assert response.status_code == 200, response.text
                    assert response.headers["x-immich-search"] == "desc"
                    assert [item["id"] for item in response.json()["assets"]["items"]] == [kite]
            finally:
                await app.state.service.aclose()
