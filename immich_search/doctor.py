"""``immich-search doctor``: check a live database for everything immich-search needs."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psycopg

from immich_search import migrate
from immich_search.sqlfiles import query

OK, WARN, FAIL = "ok", "warn", "fail"

# Immich tables and the columns we read (FACTS: Immich v3.1 server/src/schema/tables/*.table.ts).
REQUIRED_COLUMNS = {
    "user": ("id", "email", "deletedAt"),
    "asset": ("id", "ownerId", "originalFileName", "deletedAt", "visibility", "updateId", "fileCreatedAt"),
    "asset_file": ("assetId", "type", "path", "isEdited", "updateId"),
    "partner": ("sharedById", "sharedWithId", "inTimeline"),
}
OPTIONAL_TABLES = {
    "asset_ocr": "Immich's own OCR (v2.2+); `--ocr-source immich` needs it",
    "smart_search": "Immich's CLIP vectors",
}


@dataclass(frozen=True)
class Check:
    """One finding: ``status`` is ok | warn | fail; ``fix`` says what to do when it is not ok."""

    name: str
    status: str
    detail: str
    fix: str = ""


def run_checks(conn: psycopg.Connection, url: str) -> list[Check]:
    """Inspect the database behind ``conn`` (at ``url``) and return the findings in order."""
    checks: list[Check] = []
    version = conn.execute("SHOW server_version_num").fetchone()[0]
    major = int(version) // 10000
    checks.append(Check("PostgreSQL", OK if 14 <= major < 20 else FAIL, f"version {major}", "Immich supports 14 to 19"))
    encoding = conn.execute("SHOW server_encoding").fetchone()[0]
    checks.append(Check("encoding", OK if encoding == "UTF8" else FAIL, encoding, "Immich's database must be UTF8"))
    columns = {
        (table, column)
        for table, column in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        )
    }
    tables = {table for table, _ in columns}
    for table, needed in REQUIRED_COLUMNS.items():
        missing = [column for column in needed if (table, column) not in columns]
        if table not in tables:
            checks.append(
                Check(f"table {table}", FAIL, "missing", "point --database-url at Immich's database (v2 or v3)")
            )
        elif missing:
            checks.append(
                Check(f"table {table}", FAIL, f"missing columns {', '.join(missing)}", "upgrade Immich to v2+")
            )
        else:
            checks.append(Check(f"table {table}", OK, "present"))
    for table, why in OPTIONAL_TABLES.items():
        present = table in tables
        checks.append(Check(f"table {table}", OK if present else WARN, "present" if present else why))
    extensions = dict(conn.execute("SELECT extname, extversion FROM pg_extension").fetchall())
    available = {name for (name,) in conn.execute("SELECT name FROM pg_available_extensions")}
    if "vector" in extensions:
        checks.append(Check("extension vector", OK, f"pgvector {extensions['vector']}"))
    else:
        checks.append(
            Check(
                "extension vector",
                FAIL,
                "not installed",
                "CREATE EXTENSION vector; (Immich's image has it; VectorChord brings it too)",
            )
        )
    for name, why in (
        ("vchord", "VectorChord index for CLIP vectors"),
        ("pg_trgm", "trigram fallback for misread characters"),
        ("unaccent", "Immich's own OCR matching"),
        ("zhparser", "Chinese word segmentation in SQL (docker/postgres-zhparser)"),
    ):
        if name in extensions:
            checks.append(Check(f"extension {name}", OK, f"{extensions[name]}"))
        else:
            state = "available, not created" if name in available else "not available"
            checks.append(Check(f"extension {name}", WARN, f"{state}: optional, {why}"))
    if "zhparser" in extensions:
        checks.extend(zhparser_checks(conn))
    can_create = conn.execute(
        "SELECT has_database_privilege(current_user, current_database(), 'CREATE')"
        " OR EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'immich_search'"
        "            AND has_schema_privilege(current_user, 'immich_search', 'CREATE'))"
    ).fetchone()[0]
    checks.append(
        Check(
            "write access",
            OK if can_create else FAIL,
            "can create schema immich_search" if can_create else "cannot create schema immich_search",
            "connect as Immich's database user (DB_USERNAME), or GRANT CREATE ON DATABASE to this user",
        )
    )
    conn.commit()
    current, head = migrate.current_revision(url), migrate.head_revision()
    if current == head:
        checks.append(Check("migrations", OK, f"at {head}"))
    else:
        checks.append(
            Check("migrations", FAIL, f"at {current or 'none'}, newest is {head}", "run: immich-search migrate")
        )
    checks.append(clip_model_check(conn if current == head else None))
    from immich_search.ocr.health import ocr_engine_check

    status, detail, fix = ocr_engine_check(conn if current == head else None)
    checks.append(Check("OCR engine", status, detail, fix))
    return checks


DICTIONARY_PROBE = "中华人民共和国"
"""A word in SCWS's dictionary and in jieba's (the CI build's): one token when a dictionary is loaded,
single characters when zhparser runs without one (it only logs a NOTICE when dict.utf8.xdb is missing)."""
SEGMENT_EXAMPLE = "增值税专用发票北京首都机场"


def zhparser_checks(conn: psycopg.Connection) -> list[Check]:
    """With the zhparser extension created: whether its dictionary is loaded, and ``immich_search.zh``.

    The dictionary is judged by segmentation (:data:`DICTIONARY_PROBE`); the file itself lies on the
    server (``$SHAREDIR/tsearch_data/dict.utf8.xdb``), out of a client's reach. The configuration check is
    left out before ``migrate`` has created it.
    """
    (parser,) = conn.execute(query("zhparser_parser")).fetchone() or (None,)
    if parser is None:
        return [Check("zhparser dictionary", FAIL, "the extension has no parser zhparser", "reinstall zhparser")]
    probe = conn.execute(query("zhparser_segment"), {"parser": parser, "text": DICTIONARY_PROBE}).fetchone()[0]
    example = conn.execute(query("zhparser_segment"), {"parser": parser, "text": SEGMENT_EXAMPLE}).fetchone()[0]
    if probe == DICTIONARY_PROBE:
        checks = [Check("zhparser dictionary", OK, f"loaded: {SEGMENT_EXAMPLE} -> {example}")]
    else:
        checks = [
            Check(
                "zhparser dictionary",
                WARN,
                f"not loaded: {DICTIONARY_PROBE} -> {probe}",
                "put dict.utf8.xdb into the server's share/tsearch_data (docker/postgres-zhparser builds it)",
            )
        ]
    row = conn.execute(query("zh_configuration"), {"parser": parser}).fetchone()
    conn.commit()
    if row is not None:
        on_zhparser, mapped, types = row
        if on_zhparser and mapped == types:
            checks.append(
                Check("configuration immich_search.zh", OK, f"zhparser, {mapped} of {types} token types mapped")
            )
        else:
            detail = f"{mapped} of {types} zhparser token types mapped" if on_zhparser else "a copy of simple"
            checks.append(Check("configuration immich_search.zh", WARN, detail, "run: immich-search migrate"))
    return checks


def clip_model_check(conn: psycopg.Connection | None) -> Check:
    """Whether semantic search can run: a cn-clip model in the model folder, and the model of stored vectors.

    ``conn`` is ``None`` when the schema is not migrated (nothing stored to compare with). Never fails:
    without a model, OCR search works and semantic search is off.
    """
    from immich_search.errors import ImmichSearchError
    from immich_search.runtime.model import ClipModel

    try:
        # The same variant `sync` and `search` pick without --clip-arch.
        model = ClipModel.load(arch=os.environ.get("IMMICH_SEARCH_CLIP_ARCH"))
    except ImmichSearchError as error:
        return Check("cn-clip model", WARN, f"optional, semantic search off: {error}", "see immich-search models list")
    detail = f"{model.variant.arch} {model.precision} in {model.directory}"
    stored = None
    if conn is not None:
        row = conn.execute("SELECT value FROM immich_search.setting WHERE key = 'clip_model'").fetchone()
        conn.commit()
        stored = row[0] if row else None
    if stored is not None and stored != model.name:
        return Check(
            "cn-clip model",
            WARN,
            f"{detail}, but the stored vectors are {stored}",
            "run immich-search sync to re-embed with this model, or pass --clip-arch of the stored one",
        )
    return Check("cn-clip model", OK, detail)
