"""Immich's own OCR (v2.2+): index the text boxes Immich already recognised instead of running RapidOCR.

Immich's OCR job (``server/src/services/ocr.service.ts``) runs PP-OCRv5 on the preview, replaces the
asset's rows of ``asset_ocr`` (one per text box: normalised corners ``x1,y1 .. x4,y4``, ``boxScore``,
``textScore``, ``text``, ``isVisible``) and then stamps ``asset_job_status."ocrAt"``. Its rows are usable
for an asset when ``"ocrAt"`` is set and not older than the current preview (``asset_file."updatedAt"``):
after an edit or a rotation the preview is newer until Immich runs OCR again. An asset Immich OCR'd and
found no text in has ``"ocrAt"`` and no rows: it is indexed with empty text.

Reading these rows takes a query per batch and no image, so a library Immich already OCR'd becomes
searchable in minutes: ``--ocr-source auto`` (the default) uses them where they are fresh and RapidOCR for
the rest; ``--ocr-source immich`` uses only them and leaves the rest waiting for Immich.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from immich_search.ocr_engine import OcrLine
from immich_search.sqlfiles import query

IMMICH_OCR_MODEL = "immich asset_ocr"
"""The ``model`` stored with rows taken from Immich (``source`` is ``immich``)."""

OCR_SOURCES = ("auto", "immich", "rapidocr")
"""Values of ``--ocr-source``."""


def immich_ocr_available(conn: psycopg.Connection) -> bool:
    """Return whether this Immich database has its own OCR tables (Immich v2.2 and later)."""
    row = conn.execute(query("immich_ocr_available")).fetchone()
    return bool(row and row[0])


def _clamp(value: float) -> float:
    return min(max(float(value), 0.0), 1.0)


def immich_ocr_lines(conn: psycopg.Connection, asset_ids: Sequence[str]) -> dict[str, list[OcrLine] | None]:
    """Return Immich's OCR of each asset: its visible lines in reading order, or ``None`` when Immich has
    not (yet) OCR'd the asset's current preview.

    Args:
        conn: a connection to Immich's database (v2.2+: :func:`immich_ocr_available` is true).
        asset_ids: asset ids (str uuids).

    Returns:
        ``{asset id: [OcrLine, ...] | None}`` for every id given; lines are top to bottom, then left to
        right; boxes are Immich's normalised corners (clamped to 0-1); ``score`` is Immich's ``textScore``.
    """
    if not asset_ids:
        return {}
    ids = list(asset_ids)
    fresh = {str(asset_id): ok for asset_id, ok in conn.execute(query("immich_ocr_state"), {"asset_ids": ids})}
    lines: dict[str, list[OcrLine]] = {}
    for asset_id, text, score, *box in conn.execute(query("immich_ocr_lines"), {"asset_ids": ids}):
        text = (text or "").strip()
        if text:
            lines.setdefault(str(asset_id), []).append(
                OcrLine(text=text, score=_clamp(score), box=tuple(_clamp(v) for v in box))
            )
    return {asset_id: (lines.get(asset_id, []) if fresh.get(asset_id) else None) for asset_id in map(str, ids)}
