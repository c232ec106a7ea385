"""`immich-search serve` in front of Immich v3.1's own server.

serve runs as a user runs it (the command, on a real port); Immich answers who the caller is, and every
answer is checked against Immich's OpenAPI spec (../shared/immich/immich-openapi-specs.json).
"""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.immich_openapi import errors
from tests.real_immich import ensure_indexed, psql_search_ids, serving, text_photo

pytestmark = pytest.mark.real_immich
QUERY = {"query": "ocr:发票"}


@pytest.fixture(scope="module")
def serve(real_immich):
    """``immich-search serve`` in front of the real Immich; yields its base URL."""
    ensure_indexed(real_immich)
    with serving(real_immich) as url:
        yield url


def ids_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert errors("SearchResponseDto", body) == []
    return [item["id"] for item in body["assets"]["items"]]


def test_ocr_search_for_every_credential_kind(real_immich, serve):
    expected = {
        "admin": psql_search_ids(real_immich, ["ocr:发票"], real_immich.admin_id),
        "bob": psql_search_ids(real_immich, ["ocr:发票"], real_immich.bob_id),
    }
    assert expected["admin"] and expected["bob"]
    token = real_immich.login("admin@example.com")
    with httpx.Client(base_url=f"{serve}/api", timeout=30) as client:
        kinds = {
            "x-api-key": client.post("/search/smart", json=QUERY, headers={"x-api-key": real_immich.admin_key}),
            "?apiKey=": client.post("/search/smart", json=QUERY, params={"apiKey": real_immich.admin_key}),
            "Bearer": client.post("/search/smart", json=QUERY, headers={"Authorization": f"Bearer {token}"}),
            "cookie": client.post("/search/smart", json=QUERY, headers={"Cookie": f"immich_access_token={token}"}),
        }
        for kind, response in kinds.items():
            assert set(ids_of(response)) == expected["admin"], kind
        bob = client.post("/search/smart", json=QUERY, headers={"x-api-key": real_immich.bob_key})
        assert set(ids_of(bob)) == expected["bob"]


def test_no_or_a_wrong_credential_is_immichs_401(real_immich, serve):
    for headers in ({}, {"x-api-key": "not-a-key"}, {"Authorization": "Bearer not-a-token"}):
        served = httpx.post(f"{serve}/api/search/smart", json=QUERY, headers=headers, timeout=30)
        direct = httpx.post(f"{real_immich.url}/api/search/smart", json=QUERY, headers=headers, timeout=30)
        assert served.status_code == 401, (headers, served.text)
        assert served.json() == direct.json()  # Immich's own words, e.g. {"message": "Invalid API key"}


def test_shared_link_keys_pass_through(real_immich, serve):
    admin = real_immich.admin_key
    with real_immich.api(admin) as immich:
        album = next(a for a in immich.get("/albums").json() if a["albumName"] == "eval album")
        link = immich.post("/shared-links", json={"type": "ALBUM", "albumId": album["id"]}).json()
    try:
        direct = httpx.get(f"{real_immich.url}/api/shared-links/me", params={"key": link["key"]}, timeout=30)
        served = httpx.get(f"{serve}/api/shared-links/me", params={"key": link["key"]}, timeout=30)
        assert served.status_code == direct.status_code == 200
        # Passed through unchanged. (Immich's own answer breaks its spec here: `album.albumUsers` is [] for
        # a shared-link caller where SharedLinkResponseDto asks for at least one item; not ours to mend.)
        assert served.json() == direct.json() and served.json()["album"]["id"] == album["id"]
        # A smart search with a shared-link key is Immich's to answer, with whatever Immich says.
        direct = httpx.post(f"{real_immich.url}/api/search/smart", params={"key": link["key"]}, json=QUERY)
        served = httpx.post(f"{serve}/api/search/smart", params={"key": link["key"]}, json=QUERY)
        assert (served.status_code, served.json()) == (direct.status_code, direct.json())
    finally:
        with real_immich.api(admin) as immich:
            immich.delete(f"/shared-links/{link['id']}")


def test_uploads_and_downloads_pass_through(real_immich, serve):
    photo = text_photo("PARROT")
    headers = {"x-api-key": real_immich.admin_key}
    with httpx.Client(base_url=f"{serve}/api", timeout=60, headers=headers) as client:
        response = client.post(
            "/assets",
            files={"assetData": ("parrot.jpg", photo, "image/jpeg")},
            data={
                "filename": "parrot.jpg",
                "fileCreatedAt": "2024-02-01T10:00:00.000Z",
                "fileModifiedAt": "2024-02-01T10:00:00.000Z",
            },
        )
        assert response.status_code == 201, response.text
        assert errors("AssetMediaResponseDto", response.json()) == []
        asset = response.json()["id"]
        try:
            original = client.get(f"/assets/{asset}/original")
            assert original.status_code == 200
            assert hashlib.sha1(original.content).digest() == hashlib.sha1(photo).digest()
            real_immich.wait_for_preview(asset)
            preview = client.get(f"/assets/{asset}/thumbnail", params={"size": "preview"})
            assert preview.status_code == 200 and preview.headers["content-type"] == "image/jpeg"
        finally:
            real_immich.delete(real_immich.admin_key, [asset], force=True)
