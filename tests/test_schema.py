"""The schema after replaying every migration is the committed canonical sql/schema.sql, on both servers."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import psycopg

from immich_search import migrate
from immich_search.sqlgen.schema import describe_schema

CANONICAL = Path(__file__).resolve().parents[1] / "sql" / "schema.sql"


def assert_canonical(url: str) -> None:
    with psycopg.connect(url) as conn:
        described = describe_schema(conn)
    committed = CANONICAL.read_text(encoding="utf-8")
    if described != committed:
        diff = "".join(
            difflib.unified_diff(committed.splitlines(True), described.splitlines(True), "sql/schema.sql", "replayed")
        )
        raise AssertionError(
            "the migrated schema differs from sql/schema.sql (regenerate it with "
            f"`python -m immich_search.sqlgen schema URL` if the change is meant):\n{diff[:6000]}"
        )


def test_replayed_migrations_equal_canonical_schema(immich_db):
    migrate.upgrade(immich_db)
    assert_canonical(immich_db)


def test_down_and_up_again_equals_canonical_schema(immich_db):
    """Every revision's downgrade undoes exactly what its upgrade did: back to 0001 and up is the same schema."""
    migrate.upgrade(immich_db)
    migrate.downgrade(immich_db, "0001")
    migrate.upgrade(immich_db)
    assert_canonical(immich_db)


def test_versioned_functions_call_only_versioned_functions(db):
    """sql/README.md's rule: a versioned function (name ending _vN) calls no stable (unversioned) name."""
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p "
            "WHERE p.pronamespace = 'immich_search'::regnamespace AND p.prokind = 'f'"
        ).fetchall()
    names = {name for name, _ in rows}
    stable = {name for name in names if not re.search(r"_v[0-9]+$", name)}
    assert {"search", "search_ocr", "search_clip", "ocr_tsquery", "snippet", "requeue"} <= stable
    offenders = [
        (name, callee)
        for name, body in rows
        if name not in stable
        for callee in stable
        if f"immich_search.{callee}(" in body
    ]
    assert offenders == []
    # The superseded versions 0005 dropped stay dropped.
    assert not {"search_v1", "search_hybrid_tsquery_v1", "search_clip_v1", "visible_assets_v1", "fold_v1"} & names
    # And those 0007 and 0008 dropped: the stable names and runtime queries moved to ocr_tsquery_v4,
    # search_ocr_v4, search_v4.
    superseded = {"search_v2", "search_ocr_v3", "ocr_tsquery_v3", "ocr_tsquery_v2", "term_tsquery_v2"}
    assert not (superseded | {"search_v3", "query_mode_v1", "requeue_v1"}) & names
    # And those 0011 dropped: the stable names and runtime queries moved to the versions taking a people filter.
    replaced_by_0011 = {
        "search_v4",
        "search_ocr_v4",
        "search_hybrid_tsquery_v2",
        "search_hybrid_tsquery_v3",
        "search_text_tsquery_v1",
        "search_ocr_tsquery_v2",
        "text_candidates_v1",
        "description_candidates_v1",
        "ocr_candidates_v2",
        "search_clip_v2",
    }
    assert not replaced_by_0011 & names
    assert {
        "ocr_tsquery_v4",
        "ocr_tsquery_v5",
        "search_ocr_v5",
        "search_v5",
        "person_terms_v1",
        "people_assets_v1",
        "query_mode_v2",
        "term_tsquery_v3",
        "cjk_words_v3",
        "capped_query_v1",
    } <= names
