"""The rankings serve answers with, as :class:`~immich_search.serve.app.Searcher` callables.

* :func:`ocr_searcher`: ``ocr:`` queries, :func:`immich_search.ranking.ocr_search.search_ocr`.
* :func:`desc_searcher`: ``desc:`` queries, descriptions only (:func:`~immich_search.ranking.ocr_search.search_text`).
* :func:`build_plain_searcher`: plain and ``clip:`` queries, the hybrid ranking
  (``immich_search.ranking.hybrid_search``) with an optional cn-clip text encoder, or ``None`` when they
  pass through to Immich.

Locked assets are never searched: Immich shows the locked folder only to an elevated session (PIN), which
serve cannot see, so every searcher here runs with ``include_locked=False``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from immich_search.errors import ConfigError

PLAIN_QUERY_MODES = ("hybrid", "passthrough")


def with_statement_timeout(database_url: str, seconds: float) -> str:
    """Return ``database_url`` as a libpq conninfo whose sessions cancel any statement after ``seconds``.

    serve's searches give up after ``--timeout`` seconds (504); this makes PostgreSQL give up too, so a
    pathological query does not keep a pooled connection busy after its client got its answer.

    Raises:
        psycopg.ProgrammingError: ``database_url`` cannot be parsed.
    """
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(database_url)
    milliseconds = max(1, int(seconds * 1000))
    info["options"] = f"{info.get('options') or ''} -c statement_timeout={milliseconds}".strip()
    return psycopg.conninfo.make_conninfo(**info)


def ocr_searcher(pool) -> Callable[..., Sequence[Any]]:
    """Return a searcher for ``ocr:`` queries over ``pool`` (a psycopg ``ConnectionPool`` on a migrated DB).

    ``person_ids`` (Immich's ``personIds``) keeps only photos showing every person given, in the ranking.
    """
    from immich_search.ranking.ocr_search import search_ocr

    def search(text: str, user_id: str, *, limit: int, offset: int, person_ids: Sequence[str] = ()):
        return search_ocr(pool, text, user_id, limit=limit, offset=offset, include_locked=False, person_ids=person_ids)

    return search


def desc_searcher(pool) -> Callable[..., Sequence[Any]]:
    """Return a searcher for ``desc:`` queries over ``pool``: the descriptions a vision model wrote
    (``immich-search sync --describe-host``), ranked by
    :func:`immich_search.ranking.ocr_search.search_text` without the OCR text. Immich knows no ``desc:``, so
    serve answers these itself whether or not plain queries pass through. ``person_ids`` (Immich's
    ``personIds``) keeps only photos showing every person given, in the ranking."""
    from immich_search.ranking.ocr_search import search_text

    def search(text: str, user_id: str, *, limit: int, offset: int, person_ids: Sequence[str] = ()):
        return search_text(
            pool,
            text,
            user_id,
            limit=limit,
            offset=offset,
            include_locked=False,
            use_ocr=False,
            person_ids=person_ids,
        )

    return search


def hybrid_searcher(pool, search_function: Callable[..., Sequence[Any]], encoder=None) -> Callable[..., Sequence[Any]]:
    """Return a searcher calling ``search_function`` (``hybrid_search.search_query``'s signature) with ``encoder``;
    ``person_ids`` (Immich's ``personIds``) is handed on."""

    def search(text: str, user_id: str, *, limit: int, offset: int, person_ids: Sequence[str] = ()):
        return search_function(
            pool,
            text,
            user_id,
            limit=limit,
            offset=offset,
            include_locked=False,
            encoder=encoder,
            person_ids=person_ids,
        )

    return search


def build_plain_searcher(
    pool,
    plain_queries: str | None,
    clip_model_dir: str | os.PathLike[str] | None,
    clip_arch: str | None = None,
) -> tuple[Callable[..., Sequence[Any]] | None, str]:
    """Build what answers plain (and ``clip:``) queries, as the ``serve`` options ask.

    Args:
        pool: the database pool.
        plain_queries: ``"hybrid"``, ``"passthrough"``, or ``None`` for the default: hybrid when
            ``clip_model_dir`` is given, else passthrough.
        clip_model_dir: the cn-clip model folder (:meth:`immich_search.runtime.model.ClipModel.load`); the
            text encoder is loaded now, so a wrong file fails at start-up. Without one, hybrid ranks plain
            queries by OCR text alone and ``clip:`` queries pass through.
        clip_arch: the cn-clip variant (default: the manifest's).

    Returns:
        ``(searcher or None, description)``: ``None`` means plain queries pass through to Immich; the
        description says what answers them (and why, when hybrid search is unavailable).

    Raises:
        ConfigError: ``plain_queries`` is unknown, or is ``"hybrid"`` and the hybrid ranking is not
            installed.
        ModelError: the model in ``clip_model_dir`` cannot be loaded.
    """
    if plain_queries is not None and plain_queries not in PLAIN_QUERY_MODES:
        raise ConfigError(f"--plain-queries must be hybrid or passthrough, not {plain_queries!r}")
    mode = plain_queries or ("hybrid" if clip_model_dir is not None else "passthrough")
    if mode == "passthrough":
        return None, "passed through to Immich"
    try:
        # Imported here: the hybrid ranking is optional, and serve works without it.
        from immich_search.ranking import hybrid_search
    except ImportError as exc:
        reason = f"the hybrid ranking (immich_search.ranking.hybrid_search) is not available: {exc}"
        if plain_queries == "hybrid":
            raise ConfigError(f"--plain-queries hybrid: {reason}") from exc
        return None, f"passed through to Immich ({reason})"
    encoder = None
    if clip_model_dir is not None:
        from immich_search.runtime.model import ClipModel

        encoder = ClipModel.load(clip_model_dir, clip_arch)
        _ = encoder.text_encoder  # load now: a missing or broken file fails at start-up, with its path
        described = f"hybrid: OCR text and {encoder.name} ({encoder.precision})"
    else:
        described = "hybrid without a CLIP model: OCR text only"
    return hybrid_searcher(pool, hybrid_search.search_query, encoder), described
