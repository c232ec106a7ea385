"""Real PostgreSQL servers for the tests: never a mock of the database.

* ``embedded``: pgserver (PostgreSQL 16, pgvector 0.6.2, no contrib modules), started here.
* ``pg15``: Debian's PostgreSQL 15 with contrib and pgvector 0.8, like Immich's database; its URL comes
  from ``IMMICH_SEARCH_TEST_PG15_URL`` (``.ci/run`` sets it up); skipped when unset.

Each test gets a fresh database cloned from a template that already holds Immich's schema subset and
our migrations (procrastinate's pattern), so tests are isolated and fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from immich_search import migrate
from immich_search.sqlfiles import read_sql

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "dev"
SERVERS = ["embedded", "pg15"]
RUN = uuid.uuid4().hex[:8]
"""Suffix of this test session's template databases: two sessions sharing a server never collide."""


def corpus_dir() -> Path:
    """The dev corpus (../shared/corpus/dev), or IMMICH_SEARCH_CORPUS when set."""
    return Path(os.environ.get("IMMICH_SEARCH_CORPUS", CORPUS))


def corpus_queries() -> list[dict]:
    return json.loads((corpus_dir() / "queries.json").read_text(encoding="utf-8"))


def _with_db(url: str, dbname: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**info)


@pytest.fixture(scope="session")
def server_urls(tmp_path_factory) -> dict[str, str]:
    urls: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        # Not under pytest's basetemp: that tree is mode 0700, and as root pgserver runs PostgreSQL as its
        # own `pgserver` user, which must be able to reach the data directory.
        data_dir = Path(tempfile.mkdtemp(prefix="immich-search-pgserver-"))
        server = pgserver.get_server(data_dir, cleanup_mode="stop")
    urls["embedded"] = server.get_uri("postgres")
    if os.environ.get("IMMICH_SEARCH_TEST_PG15_URL"):
        urls["pg15"] = os.environ["IMMICH_SEARCH_TEST_PG15_URL"]
    yield urls
    server.cleanup()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session", params=SERVERS)
def server(request, server_urls) -> str:
    """Admin URL of one real server (parametrised: each test runs on both)."""
    if request.param not in server_urls:
        pytest.skip(f"{request.param} server not configured (set IMMICH_SEARCH_TEST_PG15_URL; see .ci/run)")
    return server_urls[request.param]


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        clause = f' TEMPLATE "{template}"' if template else ""
        conn.execute(f'CREATE DATABASE "{name}"{clause}')
    return _with_db(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def scratch_database(admin_url: str, template: str | None = None) -> Iterator[str]:
    """A fresh database (a copy of ``template`` when given) for the block; yields its URL, dropped after."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = create_database(admin_url, name, template=template)
    try:
        yield url
    finally:
        drop_database(admin_url, name)


@pytest.fixture(scope="session")
def immich_template(server) -> str:
    """Name of a template database holding Immich's schema subset (not migrated)."""
    name = f"tmpl_immich_{RUN}"
    url = create_database(server, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(read_sql("immich/v3_1_subset.sql"))
    yield name
    drop_database(server, name)


@pytest.fixture(scope="session")
def migrated_template(server, immich_template) -> str:
    """Name of a template database holding Immich's schema subset plus our migrations at head."""
    name = f"tmpl_migrated_{RUN}"
    url = create_database(server, name, template=immich_template)
    migrate.upgrade(url)
    yield name
    drop_database(server, name)


@pytest.fixture
def immich_db(server, immich_template) -> str:
    """URL of a fresh Immich-shaped database without our schema."""
    with scratch_database(server, immich_template) as url:
        yield url


@pytest.fixture
def db(server, migrated_template) -> str:
    """URL of a fresh, migrated Immich-shaped database."""
    with scratch_database(server, migrated_template) as url:
        yield url


@pytest.fixture(scope="module")
def conn(server, migrated_template):
    """One autocommit connection to a fresh migrated database, shared by this module's read-only tests."""
    with scratch_database(server, migrated_template) as url, psycopg.connect(url, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def first_release_conn(server, immich_template):
    """One autocommit connection to a database at revision 0001, where the v1 functions that revision 0005
    drops (fold_v1, segments_v1, ...) still live: their SQL is still what 0001 installs."""
    with scratch_database(server, immich_template) as url:
        migrate.upgrade(url, "0001")
        with psycopg.connect(url, autocommit=True) as connection:
            yield connection


@pytest.fixture(scope="session")
def ocr_engine():
    from immich_search.ocr_engine import RapidOcrEngine

    return RapidOcrEngine()


@pytest.fixture(scope="session")
def indexed_corpus(server, migrated_template, ocr_engine, tmp_path_factory):
    """The dev corpus imported as one user's library and indexed with real RapidOCR.

    Returns a dict with ``url``, ``user_id``, ``media_root``, ``report`` and ``names`` (asset id -> file).
    """
    from immich_search.db import open_pool
    from immich_search.demo import import_library
    from immich_search.sync.pipeline import OcrSync
    from immich_search.sync.sources import MediaFileSource

    images = sorted((corpus_dir() / "images").iterdir())
    if not images:
        pytest.skip("dev corpus not found")
    url = create_database(server, f"t_corpus_{RUN}", template=migrated_template)
    media_root = tmp_path_factory.mktemp("corpus_media")
    user_id = import_library(url, images, media_root, email="corpus@example.com")
    with open_pool(url) as pool:
        report = OcrSync(pool, MediaFileSource(media_root, "/data"), engine=ocr_engine).run_once()
    with psycopg.connect(url) as conn:
        names = {str(a): n for a, n in conn.execute('SELECT id, "originalFileName" FROM public.asset')}
    yield {"url": url, "user_id": user_id, "media_root": media_root, "report": report, "names": names}
    shutil.rmtree(media_root, ignore_errors=True)
    drop_database(server, f"t_corpus_{RUN}")
