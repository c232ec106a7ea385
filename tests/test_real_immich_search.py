"""search as each user of the real Immich returns exactly what Immich would show that user.

Immich's rule (server/src/services/search.service.ts, getUserIdsToSearch and searchMetadata): the caller's
own photos and those of partners who share with the caller in the timeline; never trashed photos; never
the locked folder unless the caller's session is elevated; album sharing does not widen a search.
Trash, the locked folder and the album share are made through Immich's own API here.
"""

from __future__ import annotations

import uuid

import pytest

from tests.real_immich import ensure_indexed, psql_search_ids, search_ids, text_photo

pytestmark = pytest.mark.real_immich
# Queries over the seeded library that each find several photos of both users.
BROAD_QUERIES = ["ocr:发票", "ocr:the", "ocr:中国", "ocr:de", "ocr:1", "ocr:a", "ocr:价"]


@pytest.fixture(scope="module")
def library(real_immich):
    """Three admin photos reading PELICAN (one to trash, one to lock, one left alone) and a third user.

    carol is no one's partner; admin shares an album holding the plain photo with her.
    Everything is removed again afterwards.
    """
    ensure_indexed(real_immich)
    admin = real_immich.admin_key
    photos = {
        name: real_immich.upload(admin, text_photo("PELICAN", word), f"pelican-{name}.jpg")
        for name, word in (("trashed", "TRASH"), ("locked", "LOCKED"), ("plain", "PLAIN"))
    }
    real_immich.cli("sync", *real_immich.media_args())
    carol_email = f"carol-{uuid.uuid4().hex[:8]}@example.com"
    with real_immich.api(admin) as client:
        carol = client.post(
            "/admin/users", json={"email": carol_email, "password": "carol-pass", "name": "Carol"}
        ).json()["id"]
        album = client.post(
            "/albums",
            json={
                "albumName": "pelicans",
                "assetIds": [photos["plain"]],
                "albumUsers": [{"userId": carol, "role": "viewer"}],
            },
        ).json()["id"]
    token = real_immich.elevated_token("admin@example.com")
    real_immich.delete(admin, [photos["trashed"]], force=False)
    real_immich.set_visibility(token, [photos["locked"]], "locked")
    yield {"photos": photos, "carol": carol, "carol_email": carol_email, "album": album, "token": token}
    real_immich.set_visibility(token, [photos["locked"]], "timeline")
    real_immich.delete(admin, list(photos.values()), force=True)
    with real_immich.api(admin) as client:
        client.delete(f"/albums/{album}")
        client.request("DELETE", f"/admin/users/{carol}", json={"force": True})


def immich_visible(real_immich, key: str | None = None, token: str | None = None) -> set[str]:
    """Every asset id Immich's own metadata search shows the caller (own, partners in timeline, not locked)."""
    ids: set[str] = set()
    page: int | None = 1
    with real_immich.api(key, token) as client:
        while page:
            response = client.post("/search/metadata", json={"page": page, "size": 1000})
            response.raise_for_status()
            body = response.json()["assets"]
            ids |= {item["id"] for item in body["items"]}
            page = int(body["nextPage"]) if body["nextPage"] else None
    return ids


def test_each_user_finds_only_what_immich_shows_them(real_immich, library):
    found = {}
    for user_id, key in ((real_immich.admin_id, real_immich.admin_key), (real_immich.bob_id, real_immich.bob_key)):
        visible = immich_visible(real_immich, key)
        found[user_id] = psql_search_ids(real_immich, BROAD_QUERIES, user_id)
        assert found[user_id], user_id
        assert found[user_id] <= visible, f"{user_id} found photos Immich does not show: {found[user_id] - visible}"
    admin_own = set(real_immich.asset_ids(real_immich.admin_id).values())
    bob_own = set(real_immich.asset_ids(real_immich.bob_id).values())
    bob_found = found[real_immich.bob_id]
    assert bob_found & admin_own and bob_found & bob_own, "bob finds his own photos and his partner's"
    assert not found[real_immich.admin_id] & bob_own, "bob does not share with admin: admin never finds bob's photos"
    # The command line agrees with psql.
    cli = set(search_ids(real_immich, "ocr:发票", "bob@example.com"))
    assert cli == psql_search_ids(real_immich, ["ocr:发票"], real_immich.bob_id)


def test_trashed_and_locked_photos_are_never_found(real_immich, library):
    photos = library["photos"]
    for email in ("admin@example.com", "bob@example.com"):
        assert search_ids(real_immich, "ocr:pelican", email) == [photos["plain"]]
    assert photos["locked"] not in immich_visible(real_immich, real_immich.admin_key)
    # The owner asks for the locked folder explicitly; a partner never sees it.
    with_locked = search_ids(real_immich, "ocr:pelican", "admin@example.com", "--include-locked")
    assert set(with_locked) == {photos["plain"], photos["locked"]}
    assert search_ids(real_immich, "ocr:pelican", "bob@example.com", "--include-locked") == [photos["plain"]]


def test_a_photo_comes_back_when_restored_from_the_trash(real_immich, library):
    photos = library["photos"]
    real_immich.restore(real_immich.admin_key, [photos["trashed"]])
    try:
        assert set(search_ids(real_immich, "ocr:pelican", "admin@example.com")) == {photos["plain"], photos["trashed"]}
    finally:
        real_immich.delete(real_immich.admin_key, [photos["trashed"]], force=False)


def test_album_sharing_does_not_widen_search(real_immich, library):
    photos, carol = library["photos"], library["carol_email"]
    token = real_immich.login(carol, "carol-pass")
    with real_immich.api(token=token) as client:
        # The share works: Immich lets carol open the photo...
        assert client.get(f"/assets/{photos['plain']}").status_code == 200
    # ...but Immich's own search does not show it to her, and neither does ours.
    assert photos["plain"] not in immich_visible(real_immich, token=token)
    assert search_ids(real_immich, "ocr:pelican", carol) == []
    assert psql_search_ids(real_immich, BROAD_QUERIES, library["carol"]) == set()
