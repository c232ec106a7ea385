"""``immich-search doctor``'s OCR check: the configured engine loads, and which engines read the stored text."""

from __future__ import annotations

import os

import psycopg

from immich_search.errors import ImmichSearchError
from immich_search.ocr.registry import DEFAULT_ENGINE, ENGINE_ENV
from immich_search.sqlfiles import query

OK, WARN, FAIL = "ok", "warn", "fail"
"""The statuses of :class:`immich_search.doctor.Check` (doctor wraps this module's findings in one)."""


def ocr_engine_check(conn: psycopg.Connection | None) -> tuple[str, str, str]:
    """Build the engine ``sync`` would use (``$IMMICH_SEARCH_OCR_ENGINE`` or the default) and compare it
    with the engines of the stored OCR rows.

    Args:
        conn: a migrated database, or ``None`` when the schema is not migrated (nothing to compare).

    Returns:
        ``(status, detail, fix)`` of doctor's check "OCR engine": fail when the engine cannot be built, warn
        when photos were read by another of our engines (the fix re-reads them), ok otherwise (fix empty).
    """
    from immich_search.ocr.registry import build_engine

    name = os.environ.get(ENGINE_ENV) or DEFAULT_ENGINE
    try:
        engine = build_engine(name)
    except ImmichSearchError as error:
        return FAIL, str(error), f"install the engine's package, or set {ENGINE_ENV}"
    detail = f"{name}: {engine.model}"
    if conn is None:
        return OK, detail, ""
    rows = conn.execute(query("status_ocr_engines")).fetchall()
    conn.commit()
    counts: dict[str, int] = {}
    for row_engine, _, photos, _ in rows:
        counts[row_engine] = counts.get(row_engine, 0) + int(photos)
    if counts:
        detail += "; indexed: " + ", ".join(f"{key} {value}" for key, value in counts.items())
    others = sum(value for key, value in counts.items() if key not in (name, "immich"))
    if others:
        return (
            WARN,
            f"{detail} ({others} photos read by another engine)",
            f"immich-search sync --reread-other-engines --ocr-engine {name}",
        )
    return OK, detail, ""
