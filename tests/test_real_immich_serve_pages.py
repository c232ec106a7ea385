"""`immich-search serve` answering from its own pages in front of Immich v3.1 (issue 14).

The ``ocr:`` page of the search bar (``POST /api/search/smart``) and Immich's own OCR search type
(``POST /api/search/metadata`` with ``ocr``) come from one database query: the items equal Immich's own,
at most two calls go to Immich (who is calling, which version), filters are applied in SQL. And the four
attacker findings: two cookies, refused or revoked credentials, odd request targets.
"""

from __future__ import annotations

import socket
import uuid

import httpx
import pytest

from tests.immich_openapi import errors
from tests.real_immich import ensure_indexed, psql_search_ids, serving

pytestmark = pytest.mark.real_immich
WEB_PAGE = {"page": 1, "withExif": True, "isVisible": True, "visibility": "timeline", "language": "en"}
"""What Immich's web app sends with a search (plus the query or ``ocr``)."""


@pytest.fixture(scope="module")
def serve(real_immich):
    """``immich-search serve`` in front of the real Immich; yields its base URL."""
    ensure_indexed(real_immich)
    with serving(real_immich) as url:
        yield url


def immich_item(server, key: str, asset_id: str) -> dict:
    """Immich's own search item for one asset (``POST /api/search/metadata`` with ``id``, ``withExif``)."""
    with server.api(key) as client:
        items = client.post("/search/metadata", json={"id": asset_id, "withExif": True}).json()["assets"]["items"]
    assert len(items) == 1
    return items[0]


def answered(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers.get("x-immich-search") == "ocr", "serve passed the search through"
    assert errors("SearchResponseDto", response.json()) == []
    assert int(response.headers["x-immich-search-upstream-calls"]) <= 2
    return response.json()["assets"]["items"]


def test_ocr_pages_equal_immichs_items_in_rank_order(real_immich, serve):
    key = real_immich.admin_key
    expected = psql_search_ids(real_immich, ["ocr:发票"], real_immich.admin_id)
    assert expected
    with httpx.Client(base_url=f"{serve}/api", headers={"x-api-key": key}, timeout=30) as client:
        smart = answered(client.post("/search/smart", json={**WEB_PAGE, "query": "ocr:发票"}))
        metadata = answered(client.post("/search/metadata", json={**WEB_PAGE, "ocr": "发票"}))
        again = client.post("/search/smart", json={**WEB_PAGE, "query": "ocr:发票"})
    assert {item["id"] for item in smart} == expected
    assert [item["id"] for item in metadata] == [item["id"] for item in smart]  # the same ranking
    for item in smart:
        assert item == immich_item(real_immich, key, item["id"])
    assert again.headers["x-immich-search-upstream-calls"] == "0"  # identity and version cached
    # A smart search that also carries Immich's own `ocr` filter is Immich's to answer.
    body = {"query": "ocr:发票", "ocr": "发票"}
    served = httpx.post(f"{serve}/api/search/smart", json=body, headers={"x-api-key": key}, timeout=30)
    direct = httpx.post(f"{real_immich.url}/api/search/smart", json=body, headers={"x-api-key": key}, timeout=30)
    assert "x-immich-search" not in served.headers
    assert (served.status_code, served.json()) == (direct.status_code, direct.json())


def test_metadata_ocr_filters_applied_in_sql(real_immich, serve):
    headers = {"x-api-key": real_immich.bob_key}
    with httpx.Client(base_url=f"{serve}/api", headers=headers, timeout=30) as client:

        def ids(**filters) -> list[str]:
            return [item["id"] for item in answered(client.post("/search/metadata", json={"ocr": "发票", **filters}))]

        everything = ids()
        assert everything  # bob sees admin's invoices (partner in timeline)
        assert ids(size=1) == everything[:1]
        second = client.post("/search/metadata", json={"ocr": "发票", "size": 1, "page": 2})
        assert [item["id"] for item in answered(second)] == everything[1:2]
        first = client.post("/search/metadata", json={"ocr": "发票", "size": 1}).json()
        assert first["assets"]["nextPage"] == ("2" if len(everything) > 1 else None)
        assert ids(isFavorite=True) == []
        assert ids(type="VIDEO") == [] and ids(type="IMAGE") == everything
        assert ids(takenAfter="2100-01-01T00:00:00.000Z") == []
        assert ids(takenBefore="2100-01-01T00:00:00.000Z") == everything
        assert ids(personIds=[str(uuid.uuid4())]) == []
        assert ids(tagIds=None) == everything  # no photo has a tag
        assert ids(city="Nowhere") == []
        assert ids(isNotInAlbum=True) == [i for i in everything if i not in album_assets(real_immich)]
        assert ids(id=everything[0]) == everything[:1]
        # albumIds is Immich's to answer (its own rules); Immich's own OCR table is empty here.
        album = next(iter(album_ids(real_immich)))
        passed = client.post("/search/metadata", json={"ocr": "发票", "albumIds": [album]})
        assert passed.status_code == 200 and "x-immich-search" not in passed.headers
        # A body Immich's schema rejects gets Immich's own 400.
        bad = client.post("/search/metadata", json={"ocr": "发票", "size": 0})
        direct = httpx.post(
            f"{real_immich.url}/api/search/metadata", json={"ocr": "发票", "size": 0}, headers=headers, timeout=30
        )
        assert (bad.status_code, bad.json()) == (direct.status_code, direct.json())


def album_ids(server) -> set[str]:
    import psycopg

    with psycopg.connect(server.db_url) as conn:
        return {str(row[0]) for row in conn.execute("SELECT id FROM album")}


def album_assets(server) -> set[str]:
    import psycopg

    with psycopg.connect(server.db_url) as conn:
        return {str(row[0]) for row in conn.execute('SELECT "assetId" FROM album_asset')}


def test_two_cookies_identify_as_immich_does(real_immich, serve):
    admin, bob = real_immich.login("admin@example.com"), real_immich.login("bob@example.com")
    body = {**WEB_PAGE, "query": "ocr:发票"}
    for first, second in ((admin, bob), (bob, admin)):
        cookie = f"immich_access_token={first}; immich_access_token={second}"
        served = httpx.post(f"{serve}/api/search/smart", json=body, headers={"Cookie": cookie}, timeout=30)
        who = httpx.get(f"{real_immich.url}/api/users/me", headers={"Cookie": cookie}, timeout=30).json()["id"]
        assert {item["id"] for item in answered(served)} == psql_search_ids(real_immich, ["ocr:发票"], who)
        # and the other credential alone is still itself, whatever the cache holds
        alone = httpx.post(
            f"{serve}/api/search/smart", json=body, headers={"Cookie": f"immich_access_token={second}"}, timeout=30
        )
        other = real_immich.admin_id if second == admin else real_immich.bob_id
        assert {item["id"] for item in answered(alone)} == psql_search_ids(real_immich, ["ocr:发票"], other)


@pytest.mark.parametrize("query", ["ocr:发票", "ocr:qqqzzzxxx"], ids=["matches", "matches-nothing"])
def test_refused_and_revoked_keys_get_immichs_own_answer(real_immich, serve, query):
    with real_immich.api(real_immich.admin_key) as immich:
        narrow = immich.post("/api-keys", json={"name": "no asset.read", "permissions": ["user.read"]}).json()
        revoked = immich.post("/api-keys", json={"name": "revoked soon", "permissions": ["all"]}).json()
    try:
        for endpoint, body in (("smart", {"query": query}), ("metadata", {"ocr": query.removeprefix("ocr:")})):
            headers = {"x-api-key": narrow["secret"]}
            served = httpx.post(f"{serve}/api/search/{endpoint}", json=body, headers=headers, timeout=30)
            direct = httpx.post(f"{real_immich.url}/api/search/{endpoint}", json=body, headers=headers, timeout=30)
            assert direct.status_code == 403
            assert (served.status_code, served.json()) == (direct.status_code, direct.json())
        headers = {"x-api-key": revoked["secret"]}
        assert httpx.post(f"{serve}/api/search/smart", json={"query": query}, headers=headers).status_code == 200
        with real_immich.api(real_immich.admin_key) as immich:
            immich.delete(f"/api-keys/{revoked['apiKey']['id']}").raise_for_status()
        for endpoint, body in (("smart", {"query": query}), ("metadata", {"ocr": query.removeprefix("ocr:")})):
            served = httpx.post(f"{serve}/api/search/{endpoint}", json=body, headers=headers, timeout=30)
            direct = httpx.post(f"{real_immich.url}/api/search/{endpoint}", json=body, headers=headers, timeout=30)
            assert direct.status_code == 401
            assert (served.status_code, served.json()) == (direct.status_code, direct.json())
    finally:
        with real_immich.api(real_immich.admin_key) as immich:
            for key in (narrow, revoked):
                immich.delete(f"/api-keys/{key['apiKey']['id']}")


def raw_request(url: str, target: bytes) -> int:
    """Send ``GET target`` as raw bytes (no client library escapes it); return the status code."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize(
    "target",
    [b"/api/server/ping#frag", b"/api/server/ping?x=a#b", b'/api/assets/"<{|}>^`', b"/api/%zz", b"/api/\xe4\xb8\xad"],
)
def test_odd_request_targets_never_give_a_500(real_immich, serve, target):
    served = raw_request(serve, target)
    assert served != 500 and served < 500, served


def test_no_leak_through_either_endpoint(real_immich, serve):
    """A photo of admin's with text, moved through archive, trash and the locked folder with Immich's own
    API: through both endpoints each user finds it exactly when Immich would show it to them."""
    from tests.real_immich import text_photo

    admin, bob = real_immich.admin_key, real_immich.bob_key
    asset = real_immich.upload(admin, text_photo("KESTREL 4711"), "kestrel.jpg")
    token = real_immich.elevated_token("admin@example.com")
    try:
        ensure_indexed(real_immich)

        def found(key: str) -> dict[str, bool]:
            with httpx.Client(base_url=f"{serve}/api", headers={"x-api-key": key}, timeout=30) as client:
                smart = answered(client.post("/search/smart", json={"query": "ocr:kestrel"}))
                metadata = answered(client.post("/search/metadata", json={"ocr": "kestrel"}))
            return {"smart": asset in {i["id"] for i in smart}, "metadata": asset in {i["id"] for i in metadata}}

        both, neither = {"smart": True, "metadata": True}, {"smart": False, "metadata": False}
        assert found(admin) == both and found(bob) == both  # bob: partner in timeline
        real_immich.set_visibility(token, [asset], "archive")
        assert found(admin) == both and found(bob) == neither  # a partner's archive is not shared
        real_immich.set_visibility(token, [asset], "timeline")
        real_immich.delete(admin, [asset], force=False)
        assert found(admin) == neither and found(bob) == neither  # trashed
        real_immich.restore(admin, [asset])
        real_immich.set_visibility(token, [asset], "locked")
        assert found(admin) == neither and found(bob) == neither  # the locked folder, even in a PIN session
        with httpx.Client(base_url=f"{serve}/api", headers={"Authorization": f"Bearer {token}"}) as client:
            assert asset not in {i["id"] for i in answered(client.post("/search/smart", json={"query": "ocr:kestrel"}))}
    finally:
        real_immich.set_visibility(token, [asset], "timeline")  # out of the locked folder, then deleted
        real_immich.delete(admin, [asset], force=True)
        real_immich.wait_until_gone(asset)


@pytest.mark.parametrize(
    "body, content_type",
    [(b"{not json", "application/json"), (b'{"ocr": "x"}', "text/plain"), (b'{"ocr": 5}', "application/json")],
    ids=["broken-json", "text-plain", "ocr-not-a-string"],
)
def test_odd_metadata_bodies_get_immichs_own_answer(real_immich, serve, body, content_type):
    headers = {"x-api-key": real_immich.admin_key, "content-type": content_type}
    served = httpx.post(f"{serve}/api/search/metadata", content=body, headers=headers, timeout=30)
    direct = httpx.post(f"{real_immich.url}/api/search/metadata", content=body, headers=headers, timeout=30)
    assert served.status_code == direct.status_code and served.status_code < 500
    assert "x-immich-search" not in served.headers
