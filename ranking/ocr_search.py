"""OCR search: rank assets by the text in them, only among those the user may see.

Two query paths find the same photos: ``tokenizer="python"`` builds the tsqueries here (jieba, see
:mod:`immich_search.ranking.ocr_query`) and ranks them with ``immich_search.search_ocr_tsquery``;
``tokenizer="sql"`` hands the query text to ``immich_search.search_ocr``, what a psql user calls. Both
rank exact matches first, then the fuzzy fallback (one misread character) below them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache

from psycopg_pool import ConnectionPool

from immich_search.ranking.ocr_query import build_ocr_query, jieba_segmenter
from immich_search.ranking.people_filter import people_photos
from immich_search.ranking.query_language import Mode, parse
from immich_search.sqlfiles import query


@dataclass(frozen=True)
class SearchHit:
    """One ranked asset: ``score`` in [0, 1] (higher is better; exact matches >= 0.5, fuzzy-only ones below),
    ``snippet`` the matching OCR lines."""

    asset_id: str
    original_file_name: str
    score: float
    snippet: str

    def as_json(self) -> dict:
        """Return the hit as a JSON-ready dict."""
        return asdict(self)


@cache
def _segmenter():
    return jieba_segmenter()


def search_ocr(
    pool: ConnectionPool,
    text: str,
    user_id: str,
    *,
    limit: int = 10,
    offset: int = 0,
    include_locked: bool = False,
    tokenizer: str = "python",
    person_ids: Sequence[str] = (),
) -> list[SearchHit]:
    """Rank the user's visible assets by their OCR text, best first.

    Args:
        pool: connections to Immich's database, migrated.
        text: the query in the search-bar language (``ocr:`` prefix optional here).
        user_id: the caller (uuid string); results are limited to what Immich would show them.
        limit, offset: the page of results.
        include_locked: also search the caller's locked folder.
        tokenizer: ``"python"`` (jieba segmentation) or ``"sql"`` (the psql path, tokenised in SQL).
        person_ids: Immich person ids (Immich's ``personIds``, from serve): only photos showing each of them,
            as ``person:`` terms do (python tokenizer only).

    Returns:
        Up to ``limit`` hits; empty for a query with no searchable character. ``person:`` terms keep only
        photos showing every person named (in SQL, before the page is cut); alone, they list those photos
        newest first (score 1, no snippet).

    Raises:
        ValueError: ``tokenizer`` is neither ``python`` nor ``sql``, or ``person_ids`` with ``sql``.
    """
    params = {"user_id": user_id, "k": limit, "offset": offset, "include_locked": include_locked}
    if tokenizer == "sql" and person_ids:
        raise ValueError("person_ids need the python tokenizer (psql's search_ocr takes person: terms only)")
    if tokenizer == "sql":
        sql, params = query("search_ocr_sql"), {**params, "query": text}
    elif tokenizer == "python":
        parsed = parse(text, default_mode=Mode.OCR)
        if (parsed.people or person_ids) and not parsed.has_text:
            return _people_hits(pool, parsed.people, user_id, limit, offset, include_locked, person_ids)
        built = build_ocr_query(parsed, _segmenter())
        if built.loose is None:
            return []
        params = {
            **params,
            "loose": built.loose,
            "strict": built.strict,
            "people": list(parsed.people),
            "person_ids": list(person_ids),
        }
        sql = query("search_ocr_tsquery")
    else:
        raise ValueError(f"tokenizer must be 'python' or 'sql', not {tokenizer!r}")
    with pool.connection() as conn:
        # No server-side prepared statement: each query's text differs, so one would not be reused, and
        # the v1 functions (still in place after a downgrade) rebuild the tsquery per row under a generic plan.
        rows = conn.execute(sql, params, prepare=False).fetchall()
    return [SearchHit(str(a), name, float(score), snippet or "") for a, name, score, snippet in rows]


def search_text(
    pool: ConnectionPool,
    text: str,
    user_id: str,
    *,
    limit: int = 10,
    offset: int = 0,
    include_locked: bool = False,
    use_ocr: bool = True,
    use_description: bool = True,
    person_ids: Sequence[str] = (),
) -> list[SearchHit]:
    """Rank the user's visible assets by OCR text and/or vision-model descriptions, best first.

    ``desc:`` queries read descriptions only; plain queries without a CLIP model read both. The score of an
    asset is the better of its two (as :func:`search_ocr` scores); the snippet gives the matching OCR lines
    and ``description: ...`` when the description matched. Arguments as :func:`search_ocr` (jieba
    tokenizer only; ``person:`` terms as there).

    Returns:
        Up to ``limit`` hits; empty for a query with no searchable character.
    """
    parsed = parse(text, default_mode=Mode.OCR)
    if (parsed.people or person_ids) and not parsed.has_text:
        return _people_hits(pool, parsed.people, user_id, limit, offset, include_locked, person_ids)
    built = build_ocr_query(parsed, _segmenter())
    if built.loose is None:
        return []
    params = {
        "user_id": user_id,
        "k": limit,
        "offset": offset,
        "include_locked": include_locked,
        "loose": built.loose,
        "strict": built.strict,
        "use_ocr": use_ocr,
        "use_description": use_description,
        "people": list(parsed.people),
        "person_ids": list(person_ids),
    }
    with pool.connection() as conn:
        rows = conn.execute(query("search_text_tsquery"), params, prepare=False).fetchall()
    return [SearchHit(str(a), name, float(score), snippet or "") for a, name, score, snippet in rows]


def _people_hits(
    pool, names, user_id: str, limit: int, offset: int, include_locked: bool, person_ids: Sequence[str] = ()
) -> list[SearchHit]:
    """``person:`` terms alone: the photos showing every person named, newest first (score 1, no snippet)."""
    photos = people_photos(
        pool, names, user_id, limit=limit, offset=offset, include_locked=include_locked, person_ids=person_ids
    )
    return [SearchHit(asset_id, name, 1.0, "") for asset_id, name in photos]
