"""Migrations up and down: schema immich_search appears and disappears; Immich's public is untouched."""

import psycopg

from immich_search import migrate

CATALOG = """
SELECT 'rel ' || c.relname || ' ' || c.relkind::text || ' ' || coalesce(pg_get_indexdef(c.oid), '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
UNION ALL
SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' '
       || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'fn ' || p.oid::regprocedure::text || ' ' || md5(pg_get_functiondef(p.oid))
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' AND p.prokind <> 'a'
UNION ALL
SELECT 'con ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'trg ' || tgrelid::regclass::text || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT 'ext ' || extname || ' ' || extversion || ' ' || extnamespace::regnamespace::text FROM pg_extension
UNION ALL
SELECT 'nsp ' || nspname FROM pg_namespace
UNION ALL
SELECT 'type ' || typname FROM pg_type WHERE typnamespace = 'public'::regnamespace
ORDER BY 1
"""


def catalog(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute(CATALOG)]


def test_upgrade_then_downgrade_leaves_public_unchanged(immich_db):
    before = catalog(immich_db)
    migrate.upgrade(immich_db)
    assert migrate.current_revision(immich_db) == migrate.head_revision()
    with psycopg.connect(immich_db) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'immich_search'")}
        assert {"ocr", "job", "sync_cursor", "setting", "alembic_version"} <= tables
        public_alembic = conn.execute("SELECT to_regclass('public.alembic_version')").fetchone()[0]
        assert public_alembic is None, "alembic's version table must not land in public"
    migrate.downgrade(immich_db, "base")
    assert catalog(immich_db) == before
    with psycopg.connect(immich_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'immich_search'").fetchone()[0] == 0


def test_upgrade_is_idempotent(immich_db):
    migrate.upgrade(immich_db)
    migrate.upgrade(immich_db)
    assert migrate.current_revision(immich_db) == migrate.head_revision()


def test_text_search_configuration_matches_installed_parser(db):
    with psycopg.connect(db) as conn:
        parser = conn.execute("SELECT value FROM immich_search.setting WHERE key = 'text_search_parser'").fetchone()[0]
        has_zhparser = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'zhparser'").fetchone()[0]
        assert parser == ("zhparser" if has_zhparser else "jieba")
        assert conn.execute("SELECT to_tsvector('immich_search.zh', 'hello world')").fetchone()[0]


def test_migrate_fails_clearly_without_immich_tables(server):
    import pytest

    from immich_search.errors import SchemaError
    from tests.conftest import scratch_database

    with scratch_database(server) as url, pytest.raises(SchemaError, match="public.asset"):
        migrate.upgrade(url)
