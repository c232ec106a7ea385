"""Re-tokenise stored OCR text after the tokenizer changed, without running OCR again.

Each ``immich_search.ocr`` row keeps the recognised ``lines`` it was indexed from and the
``tokenizer_version`` that built its ``search_vector``. When :data:`immich_search.tokens.TOKENIZER_VERSION`
moves on (new lexemes, say), :func:`retokenize_outdated` rebuilds the vectors of the older rows from
their lines; the sync calls it at the start of every run, where it costs one indexed query when nothing
is outdated. Several workers may run it at once: batches are claimed with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import logging

from psycopg_pool import ConnectionPool

from immich_search.sqlfiles import query
from immich_search.tokens import TOKENIZER_VERSION, document_tokens, tsvector_literal

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
"""Rows re-tokenised per transaction: short transactions, few round trips."""


def line_texts(lines: object) -> list[str]:
    """Return the texts of stored OCR ``lines`` (``[{"text": ..., ...}, ...]``, as the sync writes them).

    Entries that are not objects or have no string ``text`` are skipped, so a malformed row gives fewer
    tokens rather than an error.
    """
    if not isinstance(lines, list):
        return []
    return [line["text"] for line in lines if isinstance(line, dict) and isinstance(line.get("text"), str)]


def retokenize_outdated(pool: ConnectionPool, *, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Rebuild the search vectors of OCR rows older than :data:`TOKENIZER_VERSION` from their stored lines.

    Args:
        pool: connections to Immich's database, migrated.
        batch_size: rows per transaction (>= 1).

    Returns:
        How many rows this call rewrote (rows a concurrent worker holds are left to it).

    Raises:
        ValueError: ``batch_size`` < 1.
        psycopg.Error: the database failed; rows already rewritten stay rewritten.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    done = 0
    while True:
        with pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                query("claim_outdated_ocr"), {"version": TOKENIZER_VERSION, "limit": batch_size}
            ).fetchall()
            if not rows:
                break
            with conn.cursor() as cursor:
                cursor.executemany(
                    query("retokenize_ocr"),
                    [
                        {
                            "asset_id": asset_id,
                            "search_vector": tsvector_literal(document_tokens(line_texts(lines))),
                            "version": TOKENIZER_VERSION,
                        }
                        for asset_id, lines in rows
                    ],
                )
        done += len(rows)
    if done:
        log.info("re-tokenised %d OCR rows to tokenizer version %d", done, TOKENIZER_VERSION)
    return done
