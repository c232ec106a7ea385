"""Hybrid search: OCR text and cn-clip semantics fused in PostgreSQL (``search_hybrid_tsquery_v4``).

The query language decides the branches: ``ocr:`` text only, ``clip:`` vector only, plain queries both.
The Python side only builds the inputs (jieba tsqueries, the CLIP text vector); ranking, visibility and
fusion happen in SQL, the same functions psql users call.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from typing import Protocol

import numpy as np
from pgvector import Vector
from psycopg_pool import ConnectionPool

from immich_search.errors import ImmichSearchError
from immich_search.ranking.ocr_query import build_ocr_query, jieba_segmenter
from immich_search.ranking.people_filter import people_photos
from immich_search.ranking.query_language import Mode, mode_prefix, parse
from immich_search.sqlfiles import query

log = logging.getLogger(__name__)

FUSIONS = ("rrf", "convex")
DEFAULT_CANDIDATES = 100
"""Rows each branch contributes to the fusion (at least limit + offset)."""


class TextEncoder(Protocol):
    """What hybrid search needs of a CLIP model (:class:`immich_search.runtime.model.ClipModel` has it)."""

    @property
    def name(self) -> str:
        """The model name stored with every vector."""

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 ``[len(texts), d]``."""


class SemanticSearchUnavailable(ImmichSearchError):
    """A ``clip:`` query without a usable CLIP model, or vectors made by another model."""


@dataclass(frozen=True)
class HybridHit:
    """One ranked asset.

    ``score``: the fused score (RRF: sum of weight / (60 + rank); convex: in [0, 1]); ``ocr_rank`` and
    ``clip_rank``: 1-based ranks in each branch, ``None`` when absent there; ``ocr_score`` in [0, 1];
    ``clip_score``: cosine similarity in [-1, 1].
    """

    asset_id: str
    original_file_name: str
    score: float
    snippet: str
    ocr_rank: int | None = None
    clip_rank: int | None = None
    ocr_score: float | None = None
    clip_score: float | None = None

    def as_json(self) -> dict:
        """Return the hit as a JSON-ready dict."""
        return asdict(self)


def active_clip_model(pool: ConnectionPool) -> str | None:
    """Return the model name of the stored vectors (setting ``clip_model``), ``None`` before the first sync."""
    with pool.connection() as conn:
        row = conn.execute(query("active_clip_model")).fetchone()
    return row[0] if row else None


def search(
    pool: ConnectionPool,
    text: str,
    user_id: str,
    *,
    limit: int = 10,
    offset: int = 0,
    include_locked: bool = False,
    encoder: TextEncoder | None = None,
    mode: Mode | None = None,
    fusion: str = "rrf",
    ocr_weight: float = 1.0,
    clip_weight: float = 1.0,
    candidates: int = DEFAULT_CANDIDATES,
    tokenizer: str = "python",
    person_ids: Sequence[str] = (),
) -> list[HybridHit]:
    """Rank the user's visible assets by OCR text and CLIP semantics together, best first.

    Args:
        pool: connections to Immich's database, migrated.
        text: the query in the search-bar language (``ocr:``, ``clip:`` or plain).
        user_id: the caller (uuid string); results are limited to what Immich would show them.
        limit, offset: the page of results.
        include_locked: also search the caller's locked folder.
        encoder: the CLIP text encoder; without one a plain query is answered by OCR alone.
        mode: overrides the query's own mode (``--mode``).
        fusion: ``rrf`` (weighted reciprocal rank fusion, k = 60) or ``convex`` (normalised scores).
        ocr_weight, clip_weight: the branch weights (>= 0, not both 0).
        candidates: rows each branch contributes before fusion.
        tokenizer: ``python`` (jieba tsqueries) or ``sql`` (``immich_search.search``, as psql users call it;
            the mode then comes from the query's prefix, and ``mode=OCR`` only turns the vector off).
        person_ids: Immich person ids (Immich's ``personIds``, from serve): every branch keeps only photos
            showing each of them, as ``person:`` terms do (python tokenizer only).

    Returns:
        Up to ``limit`` hits; empty for a query with nothing to search.

    Raises:
        ValueError: unknown ``fusion`` or ``tokenizer``, bad weights, or ``person_ids`` with ``sql``.
        SemanticSearchUnavailable: a ``clip:`` query without ``encoder``, or the stored vectors were
            made by another model than ``encoder``.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, not {fusion!r}")
    if ocr_weight < 0 or clip_weight < 0 or ocr_weight + clip_weight == 0:
        raise ValueError(f"weights must be >= 0 and not both 0 (ocr {ocr_weight}, clip {clip_weight})")
    if tokenizer not in ("python", "sql"):
        raise ValueError(f"tokenizer must be 'python' or 'sql', not {tokenizer!r}")
    if tokenizer == "sql" and person_ids:
        raise ValueError("person_ids need the python tokenizer (psql's search takes person: terms only)")
    parsed = parse(text)
    mode = mode or parsed.mode
    if (parsed.people or person_ids) and not parsed.has_text and tokenizer == "python":
        # `person:张三` alone: that person's photos, newest first (psql's search_v5 does the same).
        photos = people_photos(
            pool,
            parsed.people,
            user_id,
            limit=limit,
            offset=offset,
            include_locked=include_locked,
            person_ids=person_ids,
        )
        return [HybridHit(a, name, 1.0, "", offset + n) for n, (a, name) in enumerate(photos, 1)]
    vector = None
    if mode in (Mode.CLIP, Mode.HYBRID) and parsed.text.strip():
        if encoder is None:
            if mode is Mode.CLIP:
                raise SemanticSearchUnavailable(
                    "a clip: query needs a cn-clip model: see `immich-search models list` and `models export`"
                )
        else:
            _check_model(pool, encoder)
            vector = Vector(np.asarray(encoder.encode_texts([parsed.text])[0], dtype=np.float32))
    params = {
        "vector": vector,
        "user_id": user_id,
        "k": limit,
        "offset": offset,
        "include_locked": include_locked,
        "fusion": fusion,
        "ocr_weight": ocr_weight,
        "clip_weight": clip_weight,
        "candidates": max(candidates, limit + offset),
        "people": list(parsed.people),
        "person_ids": list(person_ids),
    }
    if tokenizer == "sql":
        # psql's path: the SQL function reads the mode from the query's own prefix; an overriding mode
        # can only turn the vector branch off.
        sql, params = query("search_hybrid_sql"), {**params, "query": text}
        if mode is Mode.OCR:
            params["vector"] = None
        elif mode is Mode.DESC and parsed.mode is not Mode.DESC:
            params["query"] = "desc:" + mode_prefix(text)[1]  # --mode desc over a query without the prefix
    else:
        loose = strict = None
        if mode in (Mode.OCR, Mode.HYBRID):
            built = build_ocr_query(parsed, _segmenter())
            loose, strict = built.loose, built.strict
        if loose is None and vector is None:
            return []
        sql, params = query("search_hybrid_tsquery"), {**params, "loose": loose, "strict": strict}
    with pool.connection() as conn:
        # No server-side prepared statement (see ocr_search.search_ocr): a generic plan would rebuild the
        # tsqueries per row.
        rows = conn.execute(sql, params, prepare=False).fetchall()
    return [
        HybridHit(str(a), name, float(score), snippet or "", o_rank, c_rank, o_score, c_score)
        for a, name, score, snippet, o_rank, c_rank, o_score, c_score in rows
    ]


def search_query(
    pool: ConnectionPool,
    text: str,
    user_id: str,
    *,
    limit: int = 10,
    offset: int = 0,
    include_locked: bool = False,
    encoder: TextEncoder | None = None,
    mode: Mode | None = None,
    tokenizer: str = "python",
    person_ids: Sequence[str] = (),
    **fusion_options,
) -> list:
    """Answer a search-bar query with the ranking its mode calls for.

    ``ocr:`` queries: the OCR ranking; ``desc:`` queries and plain ones without a CLIP text encoder: OCR text
    and/or descriptions (:func:`~immich_search.ranking.ocr_search.search_text`; with ``tokenizer="sql"``
    psql's ``immich_search.search``, which ranks the same); others the hybrid ranking.

    Arguments as for :func:`search`; ``fusion_options`` (``fusion``, ``ocr_weight``, ``clip_weight``,
    ``candidates``) only matter for the hybrid ranking. ``person:`` terms restrict every branch to the photos
    showing every person named (in SQL, before fusion and paging); alone, they list those photos, newest first.

    Returns:
        :class:`~immich_search.ranking.ocr_search.SearchHit` rows from the OCR ranking, or
        :class:`HybridHit` rows from the hybrid one; both have ``asset_id``, ``original_file_name``,
        ``score``, ``snippet`` and ``as_json()``.

    Raises:
        As :func:`search` and :func:`~immich_search.ranking.ocr_search.search_ocr`.
    """
    from immich_search.ranking.ocr_search import search_ocr, search_text

    chosen = mode or parse(text).mode
    if tokenizer == "python" and (chosen is Mode.DESC or (chosen is Mode.HYBRID and encoder is None)):
        # desc: reads descriptions only; a plain query without a model reads OCR text and descriptions.
        return search_text(
            pool,
            text,
            user_id,
            limit=limit,
            offset=offset,
            include_locked=include_locked,
            use_ocr=chosen is not Mode.DESC,
            person_ids=person_ids,
        )
    if chosen is Mode.OCR:
        return search_ocr(
            pool,
            text,
            user_id,
            limit=limit,
            offset=offset,
            include_locked=include_locked,
            tokenizer=tokenizer,
            person_ids=person_ids,
        )
    return search(
        pool,
        text,
        user_id,
        limit=limit,
        offset=offset,
        include_locked=include_locked,
        encoder=encoder,
        mode=chosen,
        tokenizer=tokenizer,
        person_ids=person_ids,
        **fusion_options,
    )


@cache
def _segmenter():
    return jieba_segmenter()


def _check_model(pool: ConnectionPool, encoder: TextEncoder) -> None:
    stored = active_clip_model(pool)
    if stored is not None and stored != encoder.name:
        raise SemanticSearchUnavailable(
            f"the stored vectors were made by {stored}, not {encoder.name}: search with that model, or run "
            f"`immich-search sync` with {encoder.name} to re-embed the library"
        )
