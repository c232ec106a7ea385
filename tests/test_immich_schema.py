"""One schema truth: Immich's real v3.1.0 schema against the subset the embedded server and the demo use.

* ``sql/immich/v3_1_subset.sql`` is what ``immich_search/sqlgen/immich_subset.py`` makes of the real dump;
* every table and column immich-search reads or writes (``DEPENDS_ON``) exists in the dump, and this
  project's SQL names no column of Immich's tables missing from that list;
* loaded on each server, the subset describes its tables exactly as the real dump loaded on PostgreSQL 15
  does (columns with type, nullability and default; enums; constraints; indexes; triggers; functions),
  apart from the rewrites the generator documents;
* the rows the demo and the tests insert are valid on the real schema.
"""

from __future__ import annotations

import ast
import hashlib
import re
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest

from immich_search import immich_rows, migrate
from immich_search.demo import import_library
from immich_search.doctor import REQUIRED_COLUMNS
from immich_search.sqlgen import immich_subset as subset
from tests.conftest import REAL_SCHEMA, can_load_real_schema, load_real_schema, load_subset_schema, scratch_database
from tests.fake_immich import add_asset, add_four_users

ROOT = Path(__file__).resolve().parents[1]
SHARED_DUMP = ROOT.parent / "shared" / "real-immich" / "schema-v3.1.0.sql"
OUR_SQL = sorted((ROOT / "sql" / "queries").glob("*.sql")) + sorted((ROOT / "sql" / "schema").glob("*.sql"))
OUR_PYTHON = sorted(
    path
    for folder in ("immich_search", "sync", "ranking", "tests", "benchmarks")
    for path in (ROOT / folder).rglob("*.py")
)


def dump_columns() -> dict[str, list[str]]:
    """Columns of every table of the real dump, from its CREATE TABLE statements (table -> names in order)."""
    columns = {}
    for block in subset.parse_dump(REAL_SCHEMA.read_text(encoding="utf-8")):
        if block.kind == "TABLE":
            body = block.sql.split("(", 1)[1].rsplit(")", 1)[0]
            names = [re.match(r'\s*("?)(\w+)\1\s', line + " ") for line in body.split(",\n")]
            columns[block.table] = [m[2] for m in names if m and m[2] != "CONSTRAINT"]
    return columns


# -- the files ---------------------------------------------------------------------------------------------


def test_vendored_dump_is_the_real_servers():
    if not SHARED_DUMP.is_file():
        pytest.skip(f"{SHARED_DUMP} not here (the real Immich's folder beside the checkout)")
    assert REAL_SCHEMA.read_bytes() == SHARED_DUMP.read_bytes(), (
        f"{SHARED_DUMP} changed: copy it to {REAL_SCHEMA} and run python -m immich_search.sqlgen immich-subset"
    )


def test_subset_is_generated_from_the_dump():
    generated = subset.render(REAL_SCHEMA.read_text(encoding="utf-8"))
    assert (ROOT / "sql" / "immich" / "v3_1_subset.sql").read_text(encoding="utf-8") == generated, (
        "sql/immich/v3_1_subset.sql is not what the dump gives: run python -m immich_search.sqlgen immich-subset"
    )
    assert subset.main(["--check"]) == 0


def test_generator_refuses_what_is_not_a_dump(tmp_path, capsys):
    not_a_dump = tmp_path / "notes.sql"
    not_a_dump.write_text("CREATE TABLE public.asset (id uuid);\n", encoding="utf-8")
    assert subset.main(["--dump", str(not_a_dump), "--output", str(tmp_path / "out.sql")]) == 1
    assert "pg_dump" in capsys.readouterr().err
    assert not (tmp_path / "out.sql").exists()
    with pytest.raises(ValueError, match="not in Immich's schema dump: nosuchtable"):
        subset.select(subset.parse_dump(REAL_SCHEMA.read_text(encoding="utf-8")), {"asset", "nosuchtable"})


def test_every_dependency_is_a_real_column():
    real = dump_columns()
    missing = [
        f"{table}.{column}"
        for table, columns in subset.DEPENDS_ON.items()
        for column in columns
        if column not in real.get(table, [])
    ]
    assert not missing, f"DEPENDS_ON names columns Immich v3.1.0 does not have: {missing}"
    assert {"person", "asset_face", "face_search"} <= set(subset.DEPENDS_ON)
    checked_by_doctor = [
        f"{table}.{column}"
        for table, columns in REQUIRED_COLUMNS.items()
        for column in columns
        if column not in subset.DEPENDS_ON.get(table, ())
    ]
    assert not checked_by_doctor, f"doctor requires columns missing from DEPENDS_ON: {checked_by_doctor}"


def sql_texts() -> list[tuple[str, str]]:
    """(where, SQL) for every SQL file of ours and every string literal of our Python that names Immich's
    ``public.`` tables (implicitly concatenated literals arrive joined, as Python parses them)."""
    texts = [(str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")) for path in OUR_SQL]
    for path in OUR_PYTHON:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "public." in node.value:
                texts.append((f"{path.relative_to(ROOT)}:{node.lineno}", node.value))
    return texts


def test_our_sql_names_only_listed_tables_and_columns():
    real = dump_columns()
    listed = {column for columns in subset.DEPENDS_ON.values() for column in columns}
    tables, columns = [], []
    for where, text in sql_texts():
        for match in re.finditer(r'public\.("?)(\w+)\1', text):
            if match[2] in real and match[2] not in subset.DEPENDS_ON:
                tables.append(f"{where}: {match[2]}")
        # Quoted camelCase identifiers: Immich's column names (lower-case ones are too common to tell apart).
        for name in set(re.findall(r'"([a-z]+[A-Z]\w*)"', text)):
            owners = [t for t, cols in real.items() if name in cols and t in subset.DEPENDS_ON]
            if owners and name not in listed:
                columns.append(f"{where}: {name} ({', '.join(owners)})")
    assert not tables, f"Immich tables used but missing from DEPENDS_ON (sqlgen/immich_subset.py): {tables}"
    assert not columns, f"Immich columns used but missing from DEPENDS_ON (sqlgen/immich_subset.py): {columns}"


def test_the_scan_sees_sql_in_python():
    found = dict(sql_texts())
    assert any('"checksumAlgorithm"' in text for text in found.values())
    assert any(where.startswith("tests/test_clip_filtered.py") for where in found)


# -- the catalogs ------------------------------------------------------------------------------------------

CATALOG = {
    "column": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull::text,
               coalesce(pg_get_expr(d.adbin, d.adrelid), '')
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped""",
    "constraint": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace AND conrelid <> 0""",
    "index": """
        SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'""",
    "trigger": """
        SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace""",
    "enum": """
        SELECT t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_type t
        JOIN pg_enum e ON e.enumtypid = t.oid WHERE t.typnamespace = 'public'::regnamespace GROUP BY t.typname""",
    "function": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid),
               concat_ws(' | ', pg_get_function_result(p.oid), l.lanname, p.provolatile, p.proisstrict,
                         p.proparallel, pg_get_function_arguments(p.oid),
                         CASE WHEN p.prosqlbody IS NULL THEN p.prosrc ELSE pg_get_function_sqlbody(p.oid) END)
        FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
        WHERE p.pronamespace = 'public'::regnamespace AND p.prokind = 'f'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                          AND d.deptype = 'e')""",
}
"""What a database says about Immich's objects in public; names schema-qualified (search_path pg_catalog)."""


def _unquote(name: str) -> str:
    return name.removeprefix("public.").strip('"')


def describe(url: str) -> dict[str, set[tuple[str, ...]]]:
    """Catalog rows per kind; the first field of each row is its table (type or function for the others)."""
    with psycopg.connect(url) as conn:
        conn.execute("SET search_path = pg_catalog")
        found = {kind: {tuple(row) for row in conn.execute(sql)} for kind, sql in CATALOG.items()}
        found["extension"] = {row for row in conn.execute("SELECT extname FROM pg_extension")}
        found["version"] = {(conn.execute("SHOW server_version_num").fetchone()[0][:2],)}
    for kind in ("constraint", "trigger"):
        found[kind] = {(_unquote(row[0]), *row[1:]) for row in found[kind]}
    return found


def substituted(text: str) -> str:
    """Immich's text with the generator's documented rewrites applied."""
    for immich, ours, _why in subset.SUBSTITUTIONS:
        text = text.replace(immich, ours)
    return text


@pytest.fixture(scope="module")
def real_schema(server_urls) -> dict[str, set[tuple[str, ...]]]:
    """The real dump loaded on the PostgreSQL 15 server, described."""
    url = server_urls.get("pg15")
    if url is None or not can_load_real_schema(url):
        pytest.skip("needs the PostgreSQL 15 server with contrib and pgvector (IMMICH_SEARCH_TEST_PG15_URL)")
    with scratch_database(url) as real:
        load_real_schema(real)
        yield describe(real)


def test_subset_describes_immich_tables_as_the_real_dump(server, real_schema):
    with scratch_database(server) as url:
        load_subset_schema(url)
        ours = describe(url)
    tables = {row[0] for row in ours["column"]}
    assert set(subset.DEPENDS_ON) <= tables
    installed = {row[0] for row in ours["extension"]}
    skipped = {
        block.name
        for block in subset.parse_dump(REAL_SCHEMA.read_text(encoding="utf-8"))
        if not set(subset._needs(block.sql)) <= installed
    }
    expected = {
        "column": {substituted_row(row) for row in real_schema["column"] if row[0] in tables},
        "constraint": {row for row in real_schema["constraint"] if row[0] in tables},
        "index": {row for row in real_schema["index"] if row[0] in tables and row[1] not in skipped},
        "trigger": {row for row in real_schema["trigger"] if row[0] in tables},
    }
    if ours["version"] != real_schema["version"]:
        # Another major version deparses expressions with other redundant parentheses (PostgreSQL 16 drops
        # the outer pair of an AT TIME ZONE index expression that 15 prints): compare without them.
        expected = {kind: {loose(row) for row in rows} for kind, rows in expected.items()}
        ours = {kind: {loose(row) for row in rows} if kind in expected else rows for kind, rows in ours.items()}
    for kind, rows in expected.items():
        have = {row for row in ours[kind] if row[0] in tables}
        assert have == rows, (
            f"{kind}s differ from Immich v3.1.0's\n  only in the real dump: {sorted(rows - have)}\n"
            f"  only in the subset: {sorted(have - rows)}"
        )
    real_enums = dict(real_schema["enum"])
    for name, labels in ours["enum"]:
        assert real_enums.get(name) == labels, f"enum {name}: {labels} here, {real_enums.get(name)} in Immich"
    real_functions = {(name, args): definition for name, args, definition in real_schema["function"]}
    for name, args, definition in ours["function"]:
        if f"{name}({args})" in subset.FALLBACKS and "unaccent" not in installed:
            assert "RETURN $1" in definition
            continue
        assert real_functions.get((name, args)) == definition, f"function {name}({args}) differs from Immich's"


def loose(row: tuple[str, ...]) -> tuple[str, ...]:
    """A catalog row without parentheses in its definition fields (names, the first two fields, kept)."""
    return (*row[:2], *(re.sub(r"[()]", "", field) for field in row[2:]))


def substituted_row(row: tuple[str, ...]) -> tuple[str, ...]:
    """A real column row with the documented rewrites applied to its default."""
    return (*row[:4], substituted(row[4]))


def test_the_columns_we_depend_on_are_described_alike(server, real_schema):
    """The project's own columns, one line each: the failure names exactly what changed."""
    with scratch_database(server) as url:
        load_subset_schema(url)
        ours = {(row[0], row[1]): row for row in describe(url)["column"]}
    real = {(row[0], row[1]): substituted_row(row) for row in real_schema["column"]}
    for table, columns in subset.DEPENDS_ON.items():
        for column in columns:
            assert (table, column) in real, f"{table}.{column} is gone from Immich v3.1.0"
            assert ours.get((table, column)) == real[(table, column)], f"{table}.{column}"


# -- rows ------------------------------------------------------------------------------------------------


@pytest.fixture
def real_db(server_urls) -> str:
    """A fresh database holding Immich's real v3.1.0 schema and our migrations (PostgreSQL 15 only)."""
    url = server_urls.get("pg15")
    if url is None or not can_load_real_schema(url):
        pytest.skip("needs the PostgreSQL 15 server with contrib and pgvector (IMMICH_SEARCH_TEST_PG15_URL)")
    with scratch_database(url) as real:
        load_real_schema(real)
        migrate.upgrade(real)
        yield real


def test_inserted_rows_are_valid_on_the_real_schema(real_db, tmp_path):
    from PIL import Image

    photos = []
    for index, colour in enumerate([(200, 30, 30), (30, 200, 30)]):
        photos.append(tmp_path / f"p{index}.jpg")
        Image.new("RGB", (64, 48), colour).save(photos[-1])
    demo_user = import_library(real_db, photos, tmp_path / "media", email="demo@example.com")
    assert import_library(real_db, photos, tmp_path / "media", email="demo@example.com") == demo_user
    with psycopg.connect(real_db) as conn:
        users = add_four_users(conn)
        kinds = [
            {},
            {"visibility": "locked"},
            {"visibility": "archive"},
            {"visibility": "hidden"},
            {"trashed": True},
            {"favourite": True},
            {"asset_type": "VIDEO"},
            {"city": "Berlin"},
        ]
        ids = [add_asset(conn, users["alice"], f"a{i}.jpg", ["TEXT"], age_days=i, **kw) for i, kw in enumerate(kinds)]
        album = immich_rows.insert_album(conn, users["alice"], "trip", ids[:2], {users["bob"]: "viewer"})
        immich_rows.insert_preview(conn, ids[0], "/data/thumbs/a0_preview.jpeg")
        taken = datetime(2024, 1, 1, 10, 0, tzinfo=timezone.utc)
        immich_rows.insert_asset(
            conn, users["bob"], "/data/b.jpg", "b.jpg", hashlib.sha1(b"b").digest(), taken_at=taken
        )
        conn.commit()
        rows = conn.execute(
            'SELECT "checksumAlgorithm"::text, status::text, "deletedAt" IS NOT NULL, "fileCreatedAt", '
            '"fileModifiedAt", "localDateTime" FROM public.asset'
        ).fetchall()
        assert len(rows) == 2 + len(kinds) + 1
        assert {row[0] for row in rows} == {"sha1"}
        assert {(row[1], row[2]) for row in rows} == {("active", False), ("trashed", True)}
        assert (taken, taken, taken) in {row[3:] for row in rows}
        roles = conn.execute('SELECT "userId"::text, role::text FROM public.album_user WHERE "albumId" = %s', (album,))
        assert dict(roles.fetchall()) == {users["alice"]: "owner", users["bob"]: "viewer"}
        assert conn.execute("SELECT count(*) FROM public.asset_file").fetchone()[0] == 3
    with psycopg.connect(real_db) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            'INSERT INTO public.album_user ("albumId", "userId", role) VALUES (%s, %s, \'owner\')',
            (album, users["carol"]),
        )


def test_album_helper_refuses_bad_roles(db):
    with psycopg.connect(db) as conn:
        owner = immich_rows.upsert_user(conn, "o@example.com")
        with pytest.raises(ValueError, match="album role"):
            immich_rows.insert_album(conn, owner, "x", [], {owner: "admin"})
        with pytest.raises(ValueError, match="exactly one owner"):
            immich_rows.insert_album(conn, owner, "x", [], {owner: "viewer"})
        with pytest.raises(ValueError, match="visibility"):
            immich_rows.insert_asset(conn, owner, "/data/x.jpg", "x.jpg", b"x", visibility="private")


@pytest.mark.real_immich
def test_the_live_immich_database_is_the_dump(real_immich, real_schema):
    """The database Immich v3.1 migrated itself (with our schema beside it) describes as the vendored dump."""
    real_immich.cli("migrate")
    live = describe(real_immich.db_url)
    for kind, rows in real_schema.items():
        assert live[kind] == rows, (kind, sorted(live[kind] ^ rows)[:10])
