"""Moving a library to another OCR engine: queue the photos another engine read (``sync --reread-other-engines``)."""

from __future__ import annotations

import psycopg

from immich_search.sqlfiles import query


def queue_other_engines(url: str, engine: str) -> int:
    """Put every photo our OCR read with another engine than ``engine`` at the head of the OCR queue.

    Rows from Immich's own OCR (``source = 'immich'``) are left alone; CLIP jobs are not touched.

    Args:
        url: libpq URL of a migrated database.
        engine: the engine that is to read them (a name of :data:`immich_search.ocr.registry.ENGINES`).

    Returns:
        The number of OCR jobs queued.
    """
    with psycopg.connect(url) as conn:
        return int(conn.execute(query("requeue_other_engines"), {"engine": engine}).fetchone()[0])
