"""``person:`` terms in search: the photos of the people a query names, and the names that match nobody.

The filter itself runs in SQL, inside every search branch (``immich_search.people_assets_v1``, revision
0011): a photo must show every person named, among the caller's own people (Immich shows people only to
their owner), names compared case-insensitively after NFKC, hidden people included. This module answers the
two questions around it: ``person:张三`` alone (the person's photos, newest first, as
``immich_search.photos_of_v1`` orders them) and which names match none of the caller's people (for the
CLI's hint).
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg_pool import ConnectionPool

from immich_search.sqlfiles import query


def people_photos(
    pool: ConnectionPool,
    names: Sequence[str],
    user_id: str,
    *,
    limit: int = 10,
    offset: int = 0,
    include_locked: bool = False,
    person_ids: Sequence[str] = (),
) -> list[tuple[str, str]]:
    """Return a page of the photos ``user_id`` may see that show every person in ``names``, newest first.

    Args:
        pool: connections to Immich's database, migrated (revision 0011 or later).
        names: person names as typed (``ParsedQuery.people``); empty gives no photos.
        user_id: the caller (uuid string); visibility is Immich's (``can_see_v2``).
        limit, offset: the page.
        include_locked: also the caller's locked folder.
        person_ids: Immich person ids (serve's ``personIds``): the photos must show each of them too.

    Returns:
        ``(asset id, original file name)`` pairs, newest first (the search functions make them hits with
        score 1.0 and no snippet: there is no ranking but the date).
    """
    if not names and not person_ids:
        return []
    params = {
        "people": list(names),
        "person_ids": list(person_ids),
        "user_id": user_id,
        "k": limit,
        "offset": offset,
        "include_locked": include_locked,
    }
    with pool.connection() as conn:
        rows = conn.execute(query("search_people_photos"), params).fetchall()
    return [(str(asset_id), name) for asset_id, name in rows]


def unknown_people(pool: ConnectionPool, names: Sequence[str], user_id: str) -> list[str]:
    """Return the names among ``names`` that none of ``user_id``'s people has (lower case, NFKC, in order).

    A query naming one of them finds nothing; the CLI says so instead of showing an empty list silently.
    """
    if not names:
        return []
    with pool.connection() as conn:
        rows = conn.execute(query("people_named"), {"people": list(names), "user_id": user_id}).fetchall()
    return [name for name, person_id in rows if person_id is None]
