"""The zhparser branch of the migrations, on the ``zhparser`` server (.ci/setup-zhparser.sh).

The server carries zhparser 2.4 built from ../shared/zhparser with a dictionary generated from jieba's.
Tests that need zhparser skip elsewhere; the fallback (a copy of ``simple``) is checked on every server.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from immich_search import doctor, migrate
from tests.fake_immich import add_asset, add_user

README = Path(__file__).resolve().parents[1] / "README.md"
OCR_TEXT = "2024年增值税专用发票No.12345，北京首都机场登机牌。\n我很美丽吗？龘 Boarding-Pass"
"""OCR-like text with every kind of token SCWS yields: numbers and ASCII words (e), dictionary words,
an unknown character (龘, u), a modal particle (吗, y), full-width punctuation and a line break."""

OURS = """
SELECT 'ext ' || e.extname || ' ' || n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
UNION ALL SELECT 'nsp ' || nspname FROM pg_namespace
UNION ALL SELECT 'prs ' || prsnamespace::regnamespace::text || '.' || prsname FROM pg_ts_parser
UNION ALL SELECT 'cfg ' || cfgnamespace::regnamespace::text || '.' || cfgname FROM pg_ts_config
UNION ALL SELECT 'fn ' || p.oid::regprocedure::text FROM pg_proc p
  WHERE p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
ORDER BY 1
"""


def has_zhparser(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return bool(conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'zhparser'").fetchone()[0])


def need_zhparser(url: str) -> None:
    if not has_zhparser(url):
        pytest.skip("zhparser is not installed on this server (the zhparser server: .ci/setup-zhparser.sh)")


def mapping(conn: psycopg.Connection) -> tuple[set[str], set[str], set[str]]:
    """(the parser's token type aliases, those immich_search.zh maps, the dictionaries it maps them to)."""
    types = {
        alias
        for (alias,) in conn.execute(
            "SELECT alias FROM ts_token_type((SELECT cfgparser FROM pg_ts_config c"
            " WHERE c.oid = 'immich_search.zh'::regconfig))"
        )
    }
    mapped = {
        alias
        for (alias,) in conn.execute(
            "SELECT t.alias FROM pg_ts_config_map m JOIN ts_token_type((SELECT cfgparser FROM pg_ts_config"
            " WHERE oid = 'immich_search.zh'::regconfig)) t ON t.tokid = m.maptokentype"
            " WHERE m.mapcfg = 'immich_search.zh'::regconfig"
        )
    }
    dictionaries = {
        name
        for (name,) in conn.execute(
            "SELECT DISTINCT m.mapdict::regdictionary::text FROM pg_ts_config_map m"
            " WHERE m.mapcfg = 'immich_search.zh'::regconfig"
        )
    }
    return types, mapped, dictionaries


def parser_of_zh(conn: psycopg.Connection) -> str:
    return conn.execute(
        "SELECT prsname FROM pg_ts_parser WHERE oid = (SELECT cfgparser FROM pg_ts_config"
        " WHERE oid = 'immich_search.zh'::regconfig)"
    ).fetchone()[0]


def setting(conn: psycopg.Connection) -> str:
    return conn.execute("SELECT value FROM immich_search.setting WHERE key = 'text_search_parser'").fetchone()[0]


def test_zh_configuration_maps_every_token_type(db):
    need_zhparser(db)
    with psycopg.connect(db) as conn:
        assert parser_of_zh(conn) == "zhparser"
        assert setting(conn) == "zhparser"
        types, mapped, dictionaries = mapping(conn)
        assert len(types) == 26, types  # a to z (zhparser 2.4)
        assert mapped == types, f"unmapped token types: {sorted(types - mapped)}"
        assert dictionaries == {"simple"}


def test_zh_to_tsvector_drops_no_word(db):
    """Every token zhparser yields (but whitespace) becomes a lexeme: nothing is silently dropped."""
    need_zhparser(db)
    with psycopg.connect(db) as conn:
        tokens = {
            token.lower()
            for (token,) in conn.execute("SELECT token FROM ts_debug('immich_search.zh', %s)", (OCR_TEXT,))
            if token.strip()
        }
        (vector,) = conn.execute("SELECT to_tsvector('immich_search.zh', %s)::text", (OCR_TEXT,)).fetchone()
        lexemes = {lexeme for lexeme in re.findall(r"'((?:[^']|'')*)':", vector) if lexeme.strip()}
        assert lexemes == tokens
        # Real segmentation (a dictionary is loaded), all types: e, u (unknown 龘), y (吗).
        assert {"2024", "增值税", "登机牌", "no", "12345", "龘", "吗", "boarding-pass"} <= lexemes
        aliases = {
            alias for (alias,) in conn.execute("SELECT alias FROM ts_debug('immich_search.zh', %s)", (OCR_TEXT,))
        }
        assert {"e", "n", "u", "y"} <= aliases


def test_zh_ts_headline_and_tsquery(db):
    need_zhparser(db)
    with psycopg.connect(db) as conn:
        (headline,) = conn.execute(
            "SELECT ts_headline('immich_search.zh', %s, to_tsquery('immich_search.zh', '增值税'))", (OCR_TEXT,)
        ).fetchone()
        assert "<b>增值税</b>" in headline
        (match,) = conn.execute(
            "SELECT to_tsvector('immich_search.zh', %s) @@ plainto_tsquery('immich_search.zh', '增值税 登机牌')",
            (OCR_TEXT,),
        ).fetchone()
        assert match is True


def readme_zhparser_sql() -> list[str]:
    """The statements of README.md's psql block that uses immich_search.zh (the documented examples)."""
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    (block,) = [b for b in blocks if "immich_search.zh" in b]
    text = "\n".join(line for line in block.splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in text.split(";") if statement.strip()]


def test_readme_psql_examples_work(db):
    need_zhparser(db)
    statements = readme_zhparser_sql()
    assert len(statements) >= 3
    with psycopg.connect(db) as conn:
        alice = add_user(conn, "alice@example.com")
        add_asset(conn, alice, "invoice.jpg", ["2024年增值税专用发票", "No.12345"], age_days=1)
        add_asset(conn, alice, "pass.jpg", ["北京首都机场登机牌", "Boarding Pass"], age_days=2)
        for statement in statements:
            rows = conn.execute(statement).fetchall()
            assert rows, statement


def test_migrate_follows_zhparser_installed_later(db):
    """An install whose 0001 ran before zhparser existed: `migrate` again switches to zhparser."""
    need_zhparser(db)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("DROP TEXT SEARCH CONFIGURATION immich_search.zh")
        conn.execute("DROP EXTENSION zhparser")
        conn.execute("CREATE TEXT SEARCH CONFIGURATION immich_search.zh (COPY = pg_catalog.simple)")
        conn.execute("UPDATE immich_search.setting SET value = 'jieba' WHERE key = 'text_search_parser'")
        # What the docs tell users: create the extension (in public, as the image's init script does) ...
        conn.execute("CREATE EXTENSION zhparser SCHEMA public")
    migrate.upgrade(db)  # ... then run migrate again
    with psycopg.connect(db) as conn:
        assert parser_of_zh(conn) == "zhparser"
        assert setting(conn) == "zhparser"
        types, mapped, _ = mapping(conn)
        assert mapped == types


def test_migrate_restores_dropped_mappings(db):
    """A configuration missing types (0001 before zhparser 2.4 mapped y and z to nothing) is completed."""
    need_zhparser(db)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("ALTER TEXT SEARCH CONFIGURATION immich_search.zh DROP MAPPING FOR y, z, u")
        assert len(mapping(conn)[1]) == 23
    migrate.upgrade(db)
    with psycopg.connect(db) as conn:
        types, mapped, _ = mapping(conn)
        assert mapped == types


def test_migrate_recreates_configuration_after_drop_extension_cascade(db):
    need_zhparser(db)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("DROP EXTENSION zhparser CASCADE")  # drops immich_search.zh too
        assert conn.execute("SELECT to_regnamespace('zhparser')").fetchone()[0] is None
    migrate.upgrade(db)
    with psycopg.connect(db) as conn:
        assert parser_of_zh(conn) == "zhparser"  # available on the server: created again, in our schema
        assert (
            conn.execute(
                "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'zhparser'"
            ).fetchone()[0]
            == "immich_search"
        )


def test_configuration_without_zhparser_is_a_simple_copy(db):
    if has_zhparser(db):
        pytest.skip("this server has zhparser")
    with psycopg.connect(db) as conn:
        assert parser_of_zh(conn) == "default"
        assert setting(conn) == "jieba"
        assert conn.execute("SELECT to_tsvector('immich_search.zh', 'Hello 发票')::text").fetchone()[0] == (
            "'hello':1 '发票':2"
        )
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("DROP TEXT SEARCH CONFIGURATION immich_search.zh")
    migrate.upgrade(db)
    with psycopg.connect(db) as conn:
        assert parser_of_zh(conn) == "default"


def catalog(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute(OURS)]


def test_downgrade_removes_the_zhparser_we_created(immich_db):
    need_zhparser(immich_db)
    before = catalog(immich_db)
    migrate.upgrade(immich_db)
    with psycopg.connect(immich_db) as conn:
        assert (
            conn.execute(
                "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'zhparser'"
            ).fetchone()[0]
            == "immich_search"
        )
        assert parser_of_zh(conn) == "zhparser"
    migrate.downgrade(immich_db, "base")
    assert catalog(immich_db) == before  # no extension, no schema zhparser, no parser, no configuration


def test_downgrade_keeps_the_users_zhparser(immich_db):
    """zhparser created by the image's init script (public, plus its own configuration) survives."""
    need_zhparser(immich_db)
    with psycopg.connect(immich_db, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION zhparser SCHEMA public")
        conn.execute("CREATE TEXT SEARCH CONFIGURATION public.immich_search_zh (PARSER = public.zhparser)")
        conn.execute("ALTER TEXT SEARCH CONFIGURATION public.immich_search_zh ADD MAPPING FOR n, v WITH simple")
    before = catalog(immich_db)
    migrate.upgrade(immich_db)
    with psycopg.connect(immich_db) as conn:
        assert parser_of_zh(conn) == "zhparser"
    migrate.downgrade(immich_db, "base")
    assert catalog(immich_db) == before


def test_doctor_reports_zhparser_and_its_dictionary(db):
    need_zhparser(db)
    with psycopg.connect(db) as conn:
        checks = {check.name: check for check in doctor.run_checks(conn, db)}
    assert checks["extension zhparser"].status == doctor.OK
    assert checks["extension zhparser"].detail == "2.4"
    dictionary = checks["zhparser dictionary"]
    assert dictionary.status == doctor.OK, dictionary
    assert "增值税" in dictionary.detail and "机场" in dictionary.detail
    configuration = checks["configuration immich_search.zh"]
    assert (configuration.status, configuration.detail) == (doctor.OK, "zhparser, 26 of 26 token types mapped")


def test_doctor_warns_about_an_incomplete_configuration(db):
    need_zhparser(db)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("ALTER TEXT SEARCH CONFIGURATION immich_search.zh DROP MAPPING FOR y")
        checks = {check.name: check for check in doctor.run_checks(conn, db)}
    configuration = checks["configuration immich_search.zh"]
    assert configuration.status == doctor.WARN
    assert configuration.detail == "25 of 26 zhparser token types mapped"
    assert "migrate" in configuration.fix
