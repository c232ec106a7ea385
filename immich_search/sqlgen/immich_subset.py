"""Derive ``sql/immich/v3_1_subset.sql`` from Immich's own schema (a build-time tool, never imported at runtime).

The input is ``sql/immich/schema-v3.1.0.sql``: ``pg_dump --schema-only -n public --no-owner`` of a
database that Immich v3.1.0 itself migrated (a copy of ``../shared/real-immich/schema-v3.1.0.sql``). The
output is the part of it that immich-search reads or writes (:data:`DEPENDS_ON`), closed over what those
tables need to behave as in Immich (the tables their foreign keys point to, the audit tables their triggers
write, the functions and enum types they use), rewritten only where the embedded server (pgserver:
PostgreSQL 16, pgvector 0.6.2, no contrib modules) cannot load Immich's text (:data:`SUBSTITUTIONS`,
:data:`CONTRIB`). Statements are copied verbatim, in the dump's order, so the output is deterministic.

Usage (from the repository root)::

    python -m immich_search.sqlgen immich-subset          # rewrite sql/immich/v3_1_subset.sql
    python -m immich_search.sqlgen immich-subset --check  # exit 1 when the file is not what the dump gives
    python -m immich_search.sqlgen immich-subset --dump ../shared/real-immich/schema-v3.1.0.sql --output /tmp/s.sql
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DUMP = ROOT / "sql" / "immich" / "schema-v3.1.0.sql"
"""Immich v3.1.0's schema as pg_dump wrote it (see sql/immich/README.md for where it comes from)."""
OUTPUT = ROOT / "sql" / "immich" / "v3_1_subset.sql"
"""The generated subset, loaded by the tests' embedded-server template and by ``immich-search demo``."""

DEPENDS_ON: dict[str, tuple[str, ...]] = {
    # runtime: search (0001-0003 functions, search.sql), sync (sync.sql, 0004), the demo's import
    "user": ("id", "email", "name", "isAdmin", "createdAt", "updatedAt", "deletedAt", "updateId"),
    "partner": ("sharedById", "sharedWithId", "inTimeline"),
    "asset": (
        "id",
        "ownerId",
        "type",
        "originalPath",
        "originalFileName",
        "checksum",
        "checksumAlgorithm",
        "fileCreatedAt",
        "fileModifiedAt",
        "localDateTime",
        "isFavorite",
        "visibility",
        "status",
        "deletedAt",
        "libraryId",
        "createdAt",
        "updatedAt",
        "updateId",
        # the tests' fake Immich reads whole rows (SELECT a.*) into its AssetResponseDto
        "width",
        "height",
        "isEdited",
        "isOffline",
        "livePhotoVideoId",
        # serve: AssetResponseDto built in SQL (sql/queries/serve.sql)
        "duration",
        "thumbhash",
        "stackId",
        "duplicateId",
    ),
    "asset_file": ("id", "assetId", "type", "path", "isEdited", "createdAt", "updatedAt", "updateId"),
    "asset_exif": (
        "assetId",
        "city",
        "state",
        "country",
        "description",
        "make",
        "model",
        "orientation",
        "dateTimeOriginal",
        "fileSizeInByte",
        "exifImageWidth",
        "exifImageHeight",
        # serve: AssetResponseDto built in SQL (sql/queries/serve.sql)
        "modifyDate",
        "lensModel",
        "fNumber",
        "focalLength",
        "iso",
        "latitude",
        "longitude",
        "exposureTime",
        "timeZone",
        "projectionType",
        "rating",
        "updatedAt",
    ),
    "asset_job_status": ("assetId", "metadataExtractedAt", "ocrAt"),
    # Immich's own OCR (v2.2+), read by `sync --ocr-source immich`
    "asset_ocr": (
        "id",
        "assetId",
        "x1",
        "y1",
        "x2",
        "y2",
        "x3",
        "y3",
        "x4",
        "y4",
        "boxScore",
        "textScore",
        "text",
        "isVisible",
    ),
    "ocr_search": ("assetId", "text"),
    "smart_search": ("assetId", "embedding"),
    # albums: shared albums must not widen search (the tests' libraries hold some)
    "album": ("id", "albumName", "description", "createdAt", "updatedAt", "deletedAt", "updateId"),
    "album_asset": ("albumId", "assetId", "createdAt"),
    "album_user": ("albumId", "userId", "role"),
    # people: read by later work (person filters)
    "person": ("id", "ownerId", "name", "isHidden", "faceAssetId", "birthDate"),
    "asset_face": (
        "id",
        "assetId",
        "personId",
        "deletedAt",
        "isVisible",
        "imageWidth",
        "imageHeight",
        "boundingBoxX1",
        "boundingBoxY1",
        "boundingBoxX2",
        "boundingBoxY2",
    ),
    "face_search": ("faceId", "embedding"),
    # serve: the caller's credential checked in the page's round trip, tag filters (sql/queries/serve.sql)
    "session": ("id", "token", "userId", "expiresAt"),
    "api_key": ("id", "key", "userId", "permissions"),
    "tag_asset": ("assetId", "tagId"),
    "tag_closure": ("id_ancestor", "id_descendant"),
}
"""Immich's tables and the columns of each that immich-search reads or writes: its runtime SQL, the demo's
import and the rows the tests insert. ``tests/test_immich_schema.py`` checks each against the real dump and
scans this project's SQL for columns missing here."""

SUBSTITUTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "public.uuid_generate_v4()",
        "gen_random_uuid()",
        "uuid-ossp is a contrib module; gen_random_uuid() (core since PostgreSQL 13) gives the same random v4 ids",
    ),
)
"""(Immich's text, the subset's text, why): the only rewrites of Immich's statements."""

CONTRIB: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("public.unaccent(", ("unaccent",)),
    ("gin_trgm_ops", ("pg_trgm",)),
    ("public.earth(", ("cube", "earthdistance")),
    ("ll_to_earth_public(", ("cube", "earthdistance")),
)
"""(text in a statement, contrib extensions it needs): such statements run only where the extensions exist."""

EXTENSIONS = ("unaccent", "pg_trgm", "cube", "earthdistance")
"""The contrib modules Immich creates (uuid-ossp aside, see SUBSTITUTIONS), in creation order."""

FALLBACKS = {
    "f_unaccent(text)": (
        "CREATE FUNCTION public.f_unaccent(text) RETURNS text\n"
        "    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE\n"
        "    RETURN $1;"
    ),
}
"""Function (as the dump names it) -> what stands in for it where its contrib module is missing: an identity
with Immich's signature and volatility, so indexes and queries that call it still load and run."""

_HEADER = re.compile(r"^--\n-- Name: (?P<name>.*?); Type: (?P<kind>[A-Z ]+); Schema: [^;]*; Owner: .*\n--\n", re.M)
_QUALIFIED = r'public\.("?)(\w+)\1'
_TOUCHES = r'\b(?:INSERT INTO|UPDATE|FROM|JOIN)\s+(?:public\.)?("?)(\w+)\1'
"""A table that a function's body writes or reads (trigger functions name them without a schema)."""


@dataclass(frozen=True)
class Block:
    """One object of the dump: ``name`` and ``kind`` from pg_dump's ``-- Name: ...; Type: ...`` header, the
    table it belongs to (``None`` for types and functions), and its statement text."""

    name: str
    kind: str
    table: str | None
    sql: str


def parse_dump(text: str) -> list[Block]:
    """Split pg_dump's plain-format output into its objects, in order.

    Raises:
        ValueError: when the text has no pg_dump object headers (not a pg_dump file).
    """
    headers = list(_HEADER.finditer(text))
    if not headers:
        raise ValueError("no pg_dump object headers found: is this a pg_dump --schema-only file?")
    blocks = []
    for header, following in zip(headers, headers[1:] + [None], strict=True):
        end = following.start() if following else len(text)
        sql = text[header.end() : end].replace("-- PostgreSQL database dump complete", "").strip()
        kind = header["kind"]
        table = None
        if kind == "TABLE":
            table = re.match(r"CREATE TABLE " + _QUALIFIED, sql)[2]
        elif kind in ("CONSTRAINT", "FK CONSTRAINT"):
            table = re.match(r"ALTER TABLE ONLY " + _QUALIFIED, sql)[2]
        elif kind in ("INDEX", "TRIGGER"):
            table = re.search(r"\bON " + _QUALIFIED, sql)[2]
        elif kind == "COMMENT" and sql.startswith("COMMENT ON COLUMN"):
            table = re.match(r"COMMENT ON COLUMN " + _QUALIFIED, sql)[2]
        blocks.append(Block(header["name"], kind, table, sql))
    return blocks


def _function_name(block: Block) -> str:
    return block.name.split("(", 1)[0]


def _needs(sql: str) -> tuple[str, ...]:
    """The contrib extensions a statement needs (in :data:`EXTENSIONS` order)."""
    wanted = {ext for marker, exts in CONTRIB if marker in sql for ext in exts}
    return tuple(ext for ext in EXTENSIONS if ext in wanted)


def select(blocks: list[Block], tables: set[str]) -> tuple[list[Block], set[str]]:
    """The blocks of ``tables`` and of everything they need, in dump order, and the closed set of tables.

    Closed over: tables that foreign keys point to, tables and functions that functions used by triggers,
    defaults and indexes touch, enum types the kept statements name.

    Raises:
        ValueError: when a table of ``tables`` is not in the dump.
    """
    known = {b.table for b in blocks if b.kind == "TABLE"}
    missing = sorted(tables - known)
    if missing:
        raise ValueError(f"not in Immich's schema dump: {', '.join(missing)}")
    functions = {_function_name(b): b for b in blocks if b.kind == "FUNCTION"}
    used_functions: set[str] = set()
    while True:
        text = "\n".join([b.sql for b in blocks if b.table in tables] + [functions[f].sql for f in used_functions])
        grown = set(tables) | {match[2] for match in re.finditer(r"REFERENCES " + _QUALIFIED, text)}
        for name in used_functions:
            for match in re.finditer(_TOUCHES, functions[name].sql):
                if match[2] in known:
                    grown.add(match[2])
        called = {name for name in functions if re.search(rf"(?<![\w.])(public\.)?{name}\(", text)}
        if grown == tables and called == used_functions:
            break
        tables, used_functions = grown, called
    text = "\n".join(b.sql for b in blocks if b.table in tables or _function_name(b) in used_functions)
    types = {b.name for b in blocks if b.kind == "TYPE" and re.search(rf"\bpublic\.{b.name}\b", text)}
    chosen = [
        b
        for b in blocks
        if b.table in tables
        or (b.kind == "FUNCTION" and _function_name(b) in used_functions)
        or (b.kind == "TYPE" and b.name in types)
    ]
    return chosen, tables


def _substitute(sql: str) -> str:
    for immich, ours, _why in SUBSTITUTIONS:
        sql = sql.replace(immich, ours)
    return sql


def _guarded(sql: str, needs: tuple[str, ...], fallback: str | None) -> str:
    """A DO block running ``sql`` when the extensions ``needs`` are installed, else ``fallback`` (or nothing)."""
    names = ", ".join(repr(e) for e in needs)
    condition = f"(SELECT count(*) FROM pg_extension WHERE extname IN ({names})) = {len(needs)}"
    lines = ["DO $subset$", "BEGIN", f"  IF {condition} THEN", f"    EXECUTE $stmt$\n{sql.rstrip(';')}\n$stmt$;"]
    if fallback:
        lines += ["  ELSE", f"    EXECUTE $stmt$\n{fallback.rstrip(';')}\n$stmt$;"]
    lines += ["  END IF;", "END", "$subset$;"]
    return "\n".join(lines)


def render(dump_text: str, source: str = "sql/immich/schema-v3.1.0.sql") -> str:
    """The subset's SQL text for a dump's text (deterministic: the same dump always gives the same bytes).

    Raises:
        ValueError: when the dump lacks a table of :data:`DEPENDS_ON` or is not a pg_dump file.
    """
    blocks, tables = select(parse_dump(dump_text), set(DEPENDS_ON))
    guarded = [(b, _needs(b.sql)) for b in blocks]
    needed = tuple(ext for ext in EXTENSIONS if any(ext in needs for _, needs in guarded))
    header = [
        "-- GENERATED by immich_search/sqlgen/immich_subset.py from " + source,
        "-- (Immich v3.1.0's own schema, pg_dump --schema-only); do not edit: change the generator, run it again.",
        "--",
        "-- The part of Immich's schema that immich-search reads or writes, for the tests' embedded server and",
        "-- `immich-search demo`; never applied to a real Immich database. Statements are Immich's own, verbatim",
        "-- and in pg_dump's order, except:",
    ]
    for immich, ours, why in SUBSTITUTIONS:
        header += textwrap.wrap(f"{immich} -> {ours}: {why}.", 106, initial_indent="-- * ", subsequent_indent="--   ")
    header += [
        "-- * contrib modules (" + ", ".join(needed) + "): created where the server has them (Immich's",
        "--   database, Debian's PostgreSQL); the embedded server (pgserver) has none, so there the statements",
        "--   that need them are skipped:",
    ]
    for block, needs in guarded:
        if needs:
            fallback = FALLBACKS.get(block.name)
            what = "replaced by an identity function" if fallback else "skipped"
            header.append(f"--   {block.kind.lower()} {block.name} ({', '.join(needs)}): {what}")
    header += textwrap.wrap(
        f"Tables ({len(tables)}): {', '.join(sorted(tables))}.", 106, initial_indent="-- ", subsequent_indent="--   "
    )
    header += [
        "-- Kept besides what immich-search uses: the tables their foreign keys point to and the audit tables",
        "-- their triggers write, so rows behave as in Immich (cascades, audits).",
        "",
        "CREATE EXTENSION IF NOT EXISTS vector;",
        "",
        "DO $subset$",
        "DECLARE",
        "  module text;",
        "BEGIN",
        "  FOREACH module IN ARRAY ARRAY[" + ", ".join(repr(e) for e in needed) + "] LOOP",
        "    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = module) THEN",
        "      EXECUTE format('CREATE EXTENSION IF NOT EXISTS %I SCHEMA public', module);",
        "    END IF;",
        "  END LOOP;",
        "END",
        "$subset$;",
    ]
    body = []
    for block, needs in guarded:
        sql = _substitute(block.sql)
        body.append(_guarded(sql, needs, FALLBACKS.get(block.name)) if needs else sql)
    return "\n".join(header) + "\n\n" + "\n\n".join(body) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: write the subset, or with ``--check`` compare it; returns the exit status (0, or 1)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dump", type=Path, default=DUMP, help="pg_dump --schema-only of Immich's database")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where the subset is written")
    parser.add_argument("--check", action="store_true", help="only report whether --output is up to date")
    args = parser.parse_args(argv)
    try:
        text = render(args.dump.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.is_file() else ""
        if current != text:
            print(f"{args.output} is out of date: run python -m immich_search.sqlgen immich-subset", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
