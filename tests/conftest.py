"""Real PostgreSQL servers for the tests: never a mock of the database.

* ``embedded``: pgserver (PostgreSQL 16, pgvector 0.6.2, no contrib modules), started here.
* ``pg15``: Debian's PostgreSQL 15 with contrib and pgvector 0.8, like Immich's database; its URL comes
  from ``IMMICH_SEARCH_TEST_PG15_URL`` (``.ci/run`` sets it up); skipped when unset.
* ``real_immich`` (tests marked ``real_immich``): Immich v3.1's own server with its own database, from
  ``../shared/real-immich`` (tests/real_immich.py); skipped when unconfigured, a failure in CI.
* ``zhparser``: the same PostgreSQL 15 with zhparser (SCWS, jieba-derived dictionary) installed, so the
  migrations take their zhparser branch; URL from ``IMMICH_SEARCH_TEST_ZHPARSER_URL``
  (``.ci/setup-zhparser.sh`` and ``.ci/start-zhparser.sh``); skipped when unset.

Each test gets a fresh database cloned from a template that already holds Immich's schema and our
migrations (procrastinate's pattern), so tests are isolated and fast. Immich's schema is its real one
(``sql/immich/schema-v3.1.0.sql``, the pg_dump of a database Immich v3.1.0 migrated) on a server
with the contrib modules it needs (pg15), else the subset generated from it (``sql/immich/v3_1_subset.sql``).
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
REAL_SCHEMA = Path(__file__).resolve().parents[1] / "sql" / "immich" / "schema-v3.1.0.sql"
"""Immich v3.1.0's schema as pg_dump wrote it from a database Immich migrated itself."""
REAL_SCHEMA_EXTENSIONS = ("uuid-ossp", "unaccent", "cube", "earthdistance", "pg_trgm", "vector")
"""The extensions Immich v3.1.0 creates before its migrations (all in public); the dump needs them."""
SERVERS = ["embedded", "pg15", "zhparser"]
SERVER_URL_ENV = {"pg15": "IMMICH_SEARCH_TEST_PG15_URL", "zhparser": "IMMICH_SEARCH_TEST_ZHPARSER_URL"}
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
    urls.update({name: os.environ[env] for name, env in SERVER_URL_ENV.items() if os.environ.get(env)})
    yield urls
    server.cleanup()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session", params=SERVERS)
def server(request, server_urls) -> str:
    """Admin URL of one real server (parametrised: each test runs on each)."""
    if request.param not in server_urls:
        pytest.skip(f"{request.param} server not configured (set {SERVER_URL_ENV[request.param]}; see .ci/run)")
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


def can_load_real_schema(url: str) -> bool:
    """Whether the server at ``url`` has every extension Immich's real schema needs."""
    with psycopg.connect(url) as conn:
        available = {row[0] for row in conn.execute("SELECT name FROM pg_available_extensions")}
    return set(REAL_SCHEMA_EXTENSIONS) <= available


def load_real_schema(url: str) -> None:
    """Load Immich v3.1.0's real schema into the empty database at ``url`` (as Immich's own setup does:
    its extensions first, then its objects; the dump's ``CREATE SCHEMA public`` is left out, public exists)."""
    text = REAL_SCHEMA.read_text(encoding="utf-8").replace("\nCREATE SCHEMA public;\n", "\n")
    with psycopg.connect(url, autocommit=True) as conn:
        for extension in REAL_SCHEMA_EXTENSIONS:
            conn.execute(f'CREATE EXTENSION IF NOT EXISTS "{extension}" SCHEMA public')
        conn.execute(text)


def load_subset_schema(url: str) -> None:
    """Load the subset of Immich's schema that the embedded server can hold into the database at ``url``."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(read_sql("immich/v3_1_subset.sql"))


@pytest.fixture(scope="session")
def immich_template(server) -> str:
    """Name of a template database holding Immich's schema (not migrated): the real one where the server
    can load it, else the generated subset."""
    name = f"tmpl_immich_{RUN}"
    url = create_database(server, name)
    if can_load_real_schema(server):
        load_real_schema(url)
    else:
        load_subset_schema(url)
    yield name
    drop_database(server, name)


@pytest.fixture(scope="session")
def migrated_template(server, immich_template) -> str:
    """Name of a template database holding Immich's schema plus our migrations at head."""
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


@pytest.fixture(scope="session")
def real_immich():
    """The running, seeded real Immich server (tests/real_immich.py); skips (or fails in CI) without one."""
    from tests.real_immich import SKIP_REASON, RealImmich, skip_or_fail

    server = RealImmich.from_env()
    if server is None:
        skip_or_fail(SKIP_REASON)
    if not server.ping():
        pytest.fail(f"a real Immich is configured (REAL_IMMICH_URL={server.url}) but does not answer /api/server/ping")
    return server


_real_immich_collected = 0


def pytest_collection_modifyitems(config, items) -> None:
    """Counts the real-Immich tests, so CI can insist that they ran."""
    global _real_immich_collected
    _real_immich_collected = sum(1 for item in items if item.get_closest_marker("real_immich"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Where the real Immich is required (CI), a skipped real-Immich test is reported as a failure."""
    from tests.real_immich import required

    outcome = yield
    report = outcome.get_result()
    if report.skipped and required() and item.get_closest_marker("real_immich"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"real_immich test skipped although IMMICH_SEARCH_REQUIRE_REAL_IMMICH is set: {reason}"


def pytest_sessionfinish(session, exitstatus) -> None:
    """Where the real Immich is required (CI), a run that collected no real-Immich test fails."""
    from tests.real_immich import required

    if required() and _real_immich_collected == 0 and not session.config.getoption("collectonly"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print("\nIMMICH_SEARCH_REQUIRE_REAL_IMMICH is set but no real_immich test was collected")
