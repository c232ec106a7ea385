"""``immich-search people --source api``: the same report from Immich's HTTP API, for hosts without access to
Immich's database.

Calls (Immich v3.1, with the caller's API key in ``x-api-key``):

* ``GET /api/users/me`` (who the key belongs to), ``GET /api/partners?direction=shared-with`` (who shares
  with them in their timeline) and ``GET /api/assets/{id}`` (owner, visibility, trash), so that the asset
  asked about passes the same visibility rule as the database path (``can_see_v2``);
* ``GET /api/faces?id=ASSET`` for the faces, ordered by ``boundingBoxX1``; Immich fills ``person`` only for
  the caller's own people (``mapFaces``), as ``people_in_v1`` does;
* ``POST /api/search/metadata`` with ``personIds`` for the photos of each person, once with visibility
  ``timeline`` and once ``archive`` (Immich's default would also return hidden assets), newest first
  (``fileCreatedAt``, then id, descending, Immich's order), a partner's archive left out.
"""

from __future__ import annotations

import base64
from datetime import date, datetime

import httpx

from immich_search.errors import ImmichSearchError
from immich_search.people import Face, PeopleReport, Person, Photo

TIMEOUT_S = 60.0
"""Seconds one API call may take."""


class PeopleApi:
    """A small client of the Immich endpoints ``people --source api`` needs.

    Args:
        immich_url: Immich's address, e.g. ``http://immich-server:2283`` (``/api`` is added).
        api_key: the caller's API key (permissions asset.read, face.read, person.read, partner.read).
        client: an httpx client to use (tests); one is made and closed by :meth:`close` otherwise.
    """

    def __init__(self, immich_url: str, api_key: str, client: httpx.Client | None = None) -> None:
        self._base = immich_url.rstrip("/") + "/api"
        self._owned = client is None
        self._client = client or httpx.Client(timeout=TIMEOUT_S)
        self._headers = {"x-api-key": api_key, "accept": "application/json"}

    def close(self) -> None:
        """Close the HTTP client when this object made it."""
        if self._owned:
            self._client.close()

    def _call(self, method: str, path: str, **kwargs):
        """One call; returns the decoded JSON. 400/403/404 raise :class:`LookupError` (Immich answers 400
        "Not found or no asset.read access" for an asset the caller may not read).

        Raises:
            LookupError: the object does not exist or the key may not read it.
            ImmichSearchError: Immich cannot be reached, rejects the key (401), or fails.
        """
        try:
            response = self._client.request(method, self._base + path, headers=self._headers, **kwargs)
        except httpx.HTTPError as error:
            raise ImmichSearchError(f"Immich at {self._base} cannot be reached: {error}") from None
        if response.status_code == 401:
            raise ImmichSearchError("Immich refused the API key (401): check --api-key")
        if response.status_code in (400, 403, 404):
            raise LookupError(response.text[:200])
        if response.status_code >= 300:
            raise ImmichSearchError(f"Immich answered {response.status_code} to {method} {path}: {response.text[:200]}")
        return response.json()

    def user_id(self) -> str:
        """The id of the user the key belongs to."""
        return self._call("GET", "/users/me")["id"]

    def _partners_in_timeline(self) -> set[str]:
        """Ids of the users who share their library with the caller and show in the caller's timeline."""
        partners = self._call("GET", "/partners", params={"direction": "shared-with"})
        return {p["id"] for p in partners if p.get("inTimeline")}

    def may_see(self, asset_id: str, user_id: str) -> bool:
        """The database path's rule (``can_see_v2`` without locked): the caller's own timeline or archive,
        a timeline partner's timeline, never trashed."""
        try:
            asset = self._call("GET", f"/assets/{asset_id}")
        except LookupError:
            return False
        if asset.get("isTrashed"):
            return False
        if asset["ownerId"] == user_id:
            return asset.get("visibility") in ("timeline", "archive")
        return asset.get("visibility") == "timeline" and asset["ownerId"] in self._partners_in_timeline()

    def faces(self, asset_id: str) -> list[dict]:
        """``AssetFaceResponseDto`` objects of the asset (visible, not deleted), ordered by ``boundingBoxX1``."""
        return self._call("GET", "/faces", params={"id": asset_id})

    def person(self, person_id: str) -> dict:
        """``PersonResponseDto`` of one of the caller's people (``GET /api/people/{id}``)."""
        return self._call("GET", f"/people/{person_id}")

    def photos_of(self, person_id: str, user_id: str, limit: int, exclude: str | None) -> list[Photo]:
        """Up to ``limit`` photos of the person the caller may see, newest first, without ``exclude``."""
        if limit == 0:
            return []
        found = []
        for visibility in ("timeline", "archive"):
            body = {"personIds": [person_id], "visibility": visibility, "size": limit + 1, "order": "desc"}
            items = self._call("POST", "/search/metadata", json=body)["assets"]["items"]
            for item in items:
                if visibility == "archive" and item["ownerId"] != user_id:
                    continue  # a partner's archive is not shared
                found.append(item)
        found.sort(key=lambda item: (item["fileCreatedAt"], item["id"]), reverse=True)
        photos = [
            Photo(item["id"], item["originalFileName"], _timestamp(item["fileCreatedAt"]))
            for item in found
            if item["id"] != exclude
        ]
        return photos[:limit]

    def asset_by_checksum(self, checksum: bytes) -> str | None:
        """The id of an asset the caller may search with this SHA-1 (20 bytes), or ``None``."""
        body = {"checksum": base64.b64encode(checksum).decode(), "size": 1}
        items = self._call("POST", "/search/metadata", json=body)["assets"]["items"]
        return items[0]["id"] if items else None


def _timestamp(text: str | None) -> datetime | None:
    """An ISO 8601 timestamp of Immich (``...Z``) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def people_in_asset_api(
    api: PeopleApi, asset_id: str, *, limit: int = 10, include_hidden: bool = False
) -> PeopleReport:
    """:func:`immich_search.people.people_in_asset` through Immich's API; same report for the same library.

    Raises:
        LookupError: no such asset, or the caller may not see it.
        ImmichSearchError: Immich cannot be reached or refuses the key.
    """
    user_id = api.user_id()
    if not api.may_see(asset_id, user_id):
        raise LookupError(f"no asset {asset_id} that this user may see")
    faces: list[Face] = []
    people: dict[str, Person] = {}
    rows = sorted(api.faces(asset_id), key=lambda f: (f["boundingBoxX1"], f["boundingBoxY1"], f["id"]))
    for row in rows:
        person = row.get("person")
        if person and person.get("isHidden") and not include_hidden:
            continue
        box = (row["boundingBoxX1"], row["boundingBoxY1"], row["boundingBoxX2"], row["boundingBoxY2"])
        faces.append(Face(box, row["imageWidth"], row["imageHeight"], person["id"] if person else None, row["id"]))
        if person:
            if person["id"] not in people:
                birth = person.get("birthDate")
                people[person["id"]] = Person(
                    person["id"],
                    person.get("name") or "",
                    bool(person.get("isHidden")),
                    date.fromisoformat(birth) if birth else None,
                )
            people[person["id"]].faces += 1
    for person in people.values():
        person.photos = api.photos_of(person.id, user_id, limit, asset_id)
    return PeopleReport(asset_id, None, faces, list(people.values()))
