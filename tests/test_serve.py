"""``immich-search serve`` in process: searches answered, passed through, refused; pages, filters, safety.

serve and the fake Immich (tests/fake_immich.py) talk through ``httpx.ASGITransport``; the ranking runs on
a real PostgreSQL (both test servers). Real sockets (websockets, timeouts, streaming) are in
tests/test_serve_network.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from immich_search.cli import cli
from immich_search.db import open_pool
from immich_search.ranking.ocr_search import SearchHit, search_ocr
from immich_search.serve import smart_search
from immich_search.serve.app import ServeConfig, create_app
from immich_search.serve.searchers import build_plain_searcher, ocr_searcher, with_statement_timeout
from tests import immich_openapi
from tests.conftest import scratch_database
from tests.fake_immich import FakeImmich, add_asset, add_four_users, running

pytestmark = pytest.mark.anyio

IMMICH = "http://immich.test"

# name: (owner, OCR lines, options); ages in days decide the order of equal scores (newest first).
PHOTOS = {
    "bob-invoice.jpg": ("bob", ["INVOICE no 7"], {"age_days": 0.5}),
    **{f"invoice-{i}.jpg": ("alice", [f"INVOICE no {i}"], {"age_days": i}) for i in range(1, 6)},
    "invoice-archived.jpg": ("alice", ["INVOICE no 8"], {"age_days": 6, "visibility": "archive"}),
    "invoice-favourite.jpg": ("alice", ["INVOICE no 9"], {"age_days": 7, "favourite": True, "city": "Berlin"}),
    "invoice-video.mp4": ("alice", ["INVOICE no 10"], {"age_days": 8, "asset_type": "VIDEO"}),
    "invoice-locked.jpg": ("alice", ["INVOICE locked"], {"age_days": 9, "visibility": "locked"}),
    "invoice-trashed.jpg": ("alice", ["INVOICE trashed"], {"age_days": 10, "trashed": True}),
    "invoice-hidden.jpg": ("alice", ["INVOICE hidden"], {"age_days": 11, "visibility": "hidden"}),
    "fapiao.jpg": ("alice", ["增值税电子普通发票"], {"age_days": 12}),
    "bob-invoice-archived.jpg": ("bob", ["INVOICE bob archived"], {"age_days": 13, "visibility": "archive"}),
    "bob-invoice-locked.jpg": ("bob", ["INVOICE bob locked"], {"age_days": 14, "visibility": "locked"}),
    "carol-invoice.jpg": ("carol", ["INVOICE carol"], {"age_days": 15}),
    "dave-invoice.jpg": ("dave", ["INVOICE dave"], {"age_days": 16}),
}
ALICE_INVOICES = [
    "bob-invoice.jpg",
    *[f"invoice-{i}.jpg" for i in range(1, 6)],
    "invoice-archived.jpg",
    "invoice-favourite.jpg",
    "invoice-video.mp4",
]
"""What alice may find for `ocr:invoice`, best first: her timeline and archive, bob's timeline (a partner who
shares in her timeline). Never her locked, trashed or hidden photos, bob's archive or locked folder, carol's
(a partner not in her timeline) or dave's (a stranger)."""


@dataclass
class Library:
    url: str
    pool: object
    users: dict[str, str]
    assets: dict[str, str]

    def name(self, asset_id: str) -> str:
        return {v: k for k, v in self.assets.items()}[asset_id]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def library(server, migrated_template):
    """Four users (bob shares with alice in timeline, carol not in timeline, dave nothing) and their photos."""
    with scratch_database(server, migrated_template) as url:
        with psycopg.connect(url) as conn:
            users = add_four_users(conn)
            assets = {
                photo: add_asset(conn, users[owner], photo, lines, **options)
                for photo, (owner, lines, options) in PHOTOS.items()
            }
        pool = open_pool(url)
        yield Library(url, pool, users, assets)
        pool.close()


@pytest.fixture
def fake(library) -> FakeImmich:
    return FakeImmich().load(library.url)


@contextlib.asynccontextmanager
async def serve(library, fake, *, plain_searcher=None, clock=None, **settings):
    """An httpx client talking to serve, which talks to the fake Immich; both in process."""
    config = ServeConfig(immich_url=IMMICH, **settings)
    extra = {"clock": clock} if clock else {}
    app = create_app(
        config,
        ocr_searcher=ocr_searcher(library.pool),
        plain_searcher=plain_searcher,
        transport=httpx.ASGITransport(app=fake.app),
        **extra,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve.test") as client:
        yield client
    await app.state.service.aclose()


def cookie(token: str) -> dict[str, str]:
    return {"cookie": f"immich_access_token={token}"}


def names(library, response) -> list[str]:
    return [library.name(item["id"]) for item in response.json()["assets"]["items"]]


def assert_contract(payload: dict) -> None:
    problems = immich_openapi.errors("SearchResponseDto", payload)
    assert not problems, problems


def assert_immich_error(response, status: int, *fragments: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"message", "error", "statusCode", "correlationId"}, body
    assert body["statusCode"] == status and body["error"]
    assert response.headers["x-correlation-id"] == body["correlationId"]
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    return body


# ---------------------------------------------------------------------------------------------------------
# answered searches


async def test_ocr_query_is_answered_from_the_ranking(library, fake):
    alice = library.users["alice"]
    async with serve(library, fake) as client:
        response = await client.post(
            "/api/search/smart",
            json={"query": "ocr:invoice", "page": 1, "withExif": True, "language": "en"},
            headers=cookie(fake.login(alice)),
        )
    assert response.status_code == 200, response.text
    assert response.headers["x-immich-search"] == "ocr"
    payload = response.json()
    assert_contract(payload)
    expected = [hit.asset_id for hit in search_ocr(library.pool, "ocr:invoice", alice, limit=100)]
    assert [item["id"] for item in payload["assets"]["items"]] == expected, "rank order kept"
    assert names(library, response) == ALICE_INVOICES
    assert payload["albums"] == {"total": 0, "count": 0, "items": [], "facets": []}
    assert payload["assets"]["count"] == payload["assets"]["total"] == len(ALICE_INVOICES)
    assert payload["assets"]["nextPage"] is None and payload["assets"]["facets"] == []
    assert all(item == fake.asset_dto(item["id"]) for item in payload["assets"]["items"]), "Immich's own DTOs"
    assert fake.smart_requests == [], "Immich's smart search was not asked"
    assert fake.calls["assets/{id}"] == len(ALICE_INVOICES)


async def test_chinese_and_prefix_variants(library, fake):
    token = fake.login(library.users["alice"])
    async with serve(library, fake) as client:
        for query in ("ocr:发票", "  OCR : 發票 ", "ｏｃｒ：发票"):
            response = await client.post("/api/search/smart", json={"query": query}, headers=cookie(token))
            assert response.status_code == 200, (query, response.text)
            assert names(library, response) == ["fapiao.jpg"], query


@pytest.mark.parametrize("kind", ["cookie", "bearer", "api-key", "user-token", "session-token", "query-api-key"])
async def test_every_kind_of_credential(library, fake, kind):
    alice = library.users["alice"]
    token, key = fake.login(alice), fake.add_api_key(alice)
    headers, params = {
        "cookie": (cookie(token), {}),
        "bearer": ({"authorization": f"Bearer {token}"}, {}),
        "api-key": ({"x-api-key": key}, {}),
        "user-token": ({"x-immich-user-token": token}, {}),
        "session-token": ({"x-immich-session-token": token}, {}),
        "query-api-key": ({}, {"apiKey": key}),
    }[kind]
    async with serve(library, fake) as client:
        response = await client.post("/api/search/smart", json={"query": "ocr:invoice"}, headers=headers, params=params)
    assert response.status_code == 200, response.text
    assert names(library, response) == ALICE_INVOICES


async def test_identity_is_cached_briefly(library, fake):
    now = [1000.0]
    token = fake.login(library.users["alice"])
    async with serve(library, fake, clock=lambda: now[0], auth_cache_seconds=10) as client:
        for _ in range(3):
            response = await client.post("/api/search/smart", json={"query": "ocr:发票"}, headers=cookie(token))
            assert response.status_code == 200
        assert fake.calls["users/me"] == 1
        now[0] += 11
        await client.post("/api/search/smart", json={"query": "ocr:发票"}, headers=cookie(token))
        assert fake.calls["users/me"] == 2, "asked again after the cache time"
        other = fake.login(library.users["bob"])
        await client.post("/api/search/smart", json={"query": "ocr:发票"}, headers=cookie(other))
        assert fake.calls["users/me"] == 3, "cached per credential"


async def test_no_or_bad_credentials_get_immichs_own_401(library, fake):
    async with serve(library, fake) as client:
        cases = [
            ({}, "Authentication required"),
            (cookie("forged"), "Invalid user token"),
            ({"authorization": "Bearer forged"}, "Invalid user token"),
            ({"x-api-key": "forged"}, "Invalid API key"),
        ]
        for headers, message in cases:
            response = await client.post(
                "/api/search/smart", json={"query": "ocr:invoice", "size": 5000}, headers=headers
            )
            assert response.status_code == 401, response.text
            assert response.json() == {"message": message}, "Immich's body, unchanged (and before validation)"
            assert response.headers["x-correlation-id"], "Immich's headers too"
    assert fake.calls["assets/{id}"] == 0


@pytest.mark.parametrize("where", ["header", "query", "slug"])
async def test_shared_links_pass_through(library, fake, where):
    token = fake.login(library.users["alice"])
    headers, params = cookie(token), {}
    if where == "header":
        headers["x-immich-share-key"] = "some-share-key"
    elif where == "slug":
        headers["x-immich-share-slug"] = "some-slug"
    else:
        params["key"] = "some-share-key"
    body = {"query": "ocr:invoice"}
    async with serve(library, fake) as client:
        response = await client.post("/api/search/smart", json=body, headers=headers, params=params)
    assert fake.smart_requests == [body], "Immich answered"
    assert response.status_code == 403 and response.json() == {"message": "Forbidden"}
    assert fake.calls["users/me"] == 0 and fake.calls["assets/{id}"] == 0


# ---------------------------------------------------------------------------------------------------------
# safety: never an asset the caller may not see


async def test_each_user_sees_only_what_immich_shows_them(library, fake):
    async with serve(library, fake) as client:
        found = {}
        for who in ("alice", "bob", "carol", "dave"):
            response = await client.post(
                "/api/search/smart",
                json={"query": "ocr:invoice"},
                headers=cookie(fake.login(library.users[who], elevated=True)),
            )
            assert response.status_code == 200, response.text
            found[who] = names(library, response)
    assert found["alice"] == ALICE_INVOICES
    assert found["bob"] == ["bob-invoice.jpg", "bob-invoice-archived.jpg"], "own timeline and archive only"
    assert found["carol"] == ["carol-invoice.jpg"]
    assert found["dave"] == ["dave-invoice.jpg"]
    everything = {name for names_ in found.values() for name in names_}
    assert (
        not {"invoice-locked.jpg", "bob-invoice-locked.jpg", "invoice-trashed.jpg", "invoice-hidden.jpg"} & everything
    )
    assert fake.calls["assets/{id}"] == sum(len(v) for v in found.values()), "nothing else was even fetched"


async def test_what_a_ranking_returns_wrongly_is_still_never_shown(library, fake):
    """A plain-query searcher that returns everything: locked, trashed, hidden, others' photos, junk ids."""
    every_id = list(library.assets.values()) + [str(uuid.uuid4()), "not-a-uuid", "../../api/users/me"]

    def everything(text, user_id, *, limit, offset):
        return [SearchHit(asset_id, "", 1.0, "") for asset_id in every_id[offset : offset + limit]]

    # An elevated session: Immich itself would hand out the locked photo's DTO.
    token = fake.login(library.users["alice"], elevated=True)
    async with serve(library, fake, plain_searcher=everything) as client:
        response = await client.post("/api/search/smart", json={"query": "anything"}, headers=cookie(token))
    assert response.status_code == 200, response.text
    shown = set(names(library, response))
    assert not shown & {
        "invoice-locked.jpg",
        "invoice-trashed.jpg",
        "invoice-hidden.jpg",
        "bob-invoice-archived.jpg",
        "bob-invoice-locked.jpg",
        "dave-invoice.jpg",
    }
    assert set(ALICE_INVOICES) | {"fapiao.jpg"} <= shown


# ---------------------------------------------------------------------------------------------------------
# pages


async def test_pages_work_as_immichs(library, fake):
    token = fake.login(library.users["alice"])
    pages, next_pages = [], []
    async with serve(library, fake) as client:
        page = 1
        while page:
            response = await client.post(
                "/api/search/smart", json={"query": "ocr:invoice", "page": page, "size": 2}, headers=cookie(token)
            )
            assert response.status_code == 200, response.text
            assert_contract(response.json())
            pages.append(names(library, response))
            next_pages.append(response.json()["assets"]["nextPage"])
            page = int(response.json()["assets"]["nextPage"] or 0)
        for beyond in (6, 2**31, 2**53 - 1):
            response = await client.post(
                "/api/search/smart", json={"query": "ocr:invoice", "page": beyond, "size": 1000}, headers=cookie(token)
            )
            assert response.status_code == 200 and response.json()["assets"]["items"] == [], beyond
            assert response.json()["assets"]["nextPage"] is None
    assert next_pages == ["2", "3", "4", "5", None]
    assert [len(p) for p in pages] == [2, 2, 2, 2, 1]
    assert [name for p in pages for name in p] == ALICE_INVOICES


async def test_filtered_pages_continue_where_the_last_stopped(library, fake):
    token = fake.login(library.users["alice"])
    body = {"query": "ocr:invoice", "size": 3, "visibility": "timeline", "withExif": True}
    got, next_pages = [], []
    async with serve(library, fake) as client:
        for page in (1, 2, 3):
            response = await client.post("/api/search/smart", json={**body, "page": page}, headers=cookie(token))
            assert response.status_code == 200, response.text
            got += names(library, response)
            next_pages.append(response.json()["assets"]["nextPage"])
    timeline = [name for name in ALICE_INVOICES if name != "invoice-archived.jpg"]
    assert got == timeline and next_pages == ["2", "3", None]
    assert fake.calls["assets/{id}"] <= len(ALICE_INVOICES) + 6, "later pages reuse the scan, not start over"


def test_scan_progress_is_kept_for_later_pages_only():
    now = [0.0]
    cache = smart_search.ScanCache(ttl_seconds=300, max_entries=2, clock=lambda: now[0])
    first = cache.state("a", fresh=True)
    assert cache.state("a") is first, "page 2 continues"
    assert cache.state("a", fresh=True) is not first, "a new page 1 starts afresh"
    kept = cache.state("a")
    now[0] += 301
    assert cache.state("a") is not kept, "expired"
    cache.state("b"), cache.state("c")
    assert len(cache._entries) == 2, "bounded"


# ---------------------------------------------------------------------------------------------------------
# filters


def _days_ago(days: float) -> str:
    when = datetime.now(timezone.utc) - timedelta(days=days)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


FILTERS = [
    ({"visibility": "timeline"}, [n for n in ALICE_INVOICES if n != "invoice-archived.jpg"]),
    ({"visibility": "archive"}, ["invoice-archived.jpg"]),
    ({"isFavorite": True}, ["invoice-favourite.jpg"]),
    ({"isFavorite": False}, [n for n in ALICE_INVOICES if n != "invoice-favourite.jpg"]),
    ({"type": "VIDEO"}, ["invoice-video.mp4"]),
    ({"city": "Berlin"}, ["invoice-favourite.jpg"]),
    ({"city": None}, [n for n in ALICE_INVOICES if n != "invoice-favourite.jpg"]),
    ({"isMotion": True}, []),
    ({"rating": None, "isOffline": False}, ALICE_INVOICES),
    ({"personIds": [], "albumIds": [], "tagIds": [], "isNotInAlbum": False, "withDeleted": False}, ALICE_INVOICES),
    ({"takenAfter": "TAKEN_AFTER"}, ["bob-invoice.jpg", "invoice-1.jpg", "invoice-2.jpg"]),
    (
        {"takenBefore": "TAKEN_BEFORE", "visibility": "timeline"},
        ["invoice-5.jpg", "invoice-favourite.jpg", "invoice-video.mp4"],
    ),
]


@pytest.mark.parametrize(("filters", "expected"), FILTERS, ids=[json.dumps(f) for f, _ in FILTERS])
async def test_honoured_filters(library, fake, filters, expected):
    dates = {"TAKEN_AFTER": _days_ago(2.5), "TAKEN_BEFORE": _days_ago(4.5)}
    filters = {k: dates.get(v, v) if isinstance(v, str) else v for k, v in filters.items()}
    token = fake.login(library.users["alice"])
    async with serve(library, fake) as client:
        response = await client.post(
            "/api/search/smart", json={"query": "ocr:invoice", **filters}, headers=cookie(token)
        )
    assert response.status_code == 200, response.text
    assert response.headers["x-immich-search"] == "ocr"
    assert names(library, response) == expected
    assert_contract(response.json())


async def test_with_exif(library, fake):
    token = fake.login(library.users["alice"])
    async with serve(library, fake) as client:
        without = await client.post("/api/search/smart", json={"query": "ocr:发票"}, headers=cookie(token))
        with_exif = await client.post(
            "/api/search/smart", json={"query": "ocr:发票", "withExif": True}, headers=cookie(token)
        )
    assert "exifInfo" not in without.json()["assets"]["items"][0]
    assert "exifInfo" in with_exif.json()["assets"]["items"][0]
    assert_contract(without.json())


PASSED_THROUGH = [  # personIds is honoured (tests/test_person_search.py)
    {"albumIds": [str(uuid.uuid4())]},
    {"tagIds": None},
    {"tagIds": [str(uuid.uuid4())]},
    {"isNotInAlbum": True},
    {"isEncoded": False},
    {"withDeleted": True},
    {"visibility": "locked"},
    {"visibility": "hidden"},
    {"trashedAfter": "2024-01-01T00:00:00.000Z"},
    {"ocr": "invoice"},
]


@pytest.mark.parametrize("filters", PASSED_THROUGH, ids=[json.dumps(f) for f in PASSED_THROUGH])
async def test_other_filters_pass_through_to_immich(library, fake, filters):
    body = {"query": "ocr:invoice", "page": 1, **filters}
    async with serve(library, fake) as client:
        response = await client.post("/api/search/smart", json=body, headers=cookie(fake.login(library.users["alice"])))
    assert response.status_code == 200 and response.headers["x-fake-immich"] == "smart-search"
    assert fake.smart_requests == [body], "the body Immich got is the client's"
    assert fake.calls["assets/{id}"] == 0


# ---------------------------------------------------------------------------------------------------------
# plain queries: passthrough by default, pluggable


async def test_plain_queries_pass_through_by_default(library, fake):
    token = fake.login(library.users["alice"])
    bodies = [
        {"query": "a cat on a sofa", "page": 1, "withExif": True, "visibility": "timeline", "language": "en"},
        {"queryAssetId": library.assets["invoice-1.jpg"]},
        {"query": "   "},
        {"query": 42},
    ]
    async with serve(library, fake) as client:
        for body in bodies:
            response = await client.post("/api/search/smart", json=body, headers=cookie(token))
            assert response.headers.get("x-fake-immich") == "smart-search", body
            assert "x-immich-search" not in response.headers
        raw = b'{"query":  "exact bytes \\u732b" }'
        await client.post(
            "/api/search/smart", content=raw, headers={**cookie(token), "content-type": "application/json"}
        )
        clip = await client.post("/api/search/smart", json={"query": "clip:一只猫", "page": 2}, headers=cookie(token))
    assert fake.smart_requests[: len(bodies)] == bodies
    assert fake.smart_requests[len(bodies)] == json.loads(raw)
    assert clip.status_code == 200
    assert fake.smart_requests[-1] == {"query": "一只猫", "page": 2}, "Immich's CLIP gets the query without clip:"
    assert fake.calls["users/me"] == 0, "passed through before any identity call"


async def test_plain_query_searcher_is_pluggable(library, fake):
    calls = []

    def plain(text, user_id, *, limit, offset):
        calls.append((text, user_id, limit, offset))
        order = ["invoice-3.jpg", "fapiao.jpg", "invoice-1.jpg"]
        return [SearchHit(library.assets[n], n, 1.0 / (i + 1), "") for i, n in enumerate(order)][
            offset : offset + limit
        ]

    alice = library.users["alice"]
    token = fake.login(alice)
    async with serve(library, fake, plain_searcher=plain) as client:
        plain_answer = await client.post(
            "/api/search/smart", json={"query": "发票 合计", "size": 2}, headers=cookie(token)
        )
        clip_answer = await client.post("/api/search/smart", json={"query": "clip:一只猫"}, headers=cookie(token))
        ocr_answer = await client.post("/api/search/smart", json={"query": "ocr:发票"}, headers=cookie(token))
    assert plain_answer.headers["x-immich-search"] == "plain" and clip_answer.headers["x-immich-search"] == "plain"
    assert names(library, plain_answer) == ["invoice-3.jpg", "fapiao.jpg"]
    assert plain_answer.json()["assets"]["nextPage"] == "2"
    assert_contract(plain_answer.json())
    assert calls[0] == ("发票 合计", alice, 3, 0), "size + 1 from the page's offset"
    assert calls[1][0] == "clip:一只猫", "clip: queries go to the plain-query searcher, prefix kept"
    assert ocr_answer.headers["x-immich-search"] == "ocr" and names(library, ocr_answer) == ["fapiao.jpg"]
    assert len(calls) == 2 and fake.smart_requests == []


async def test_a_failing_plain_query_searcher_leaves_the_answer_to_immich(library, fake):
    def broken(text, user_id, *, limit, offset):
        raise RuntimeError("no vectors")

    headers = cookie(fake.login(library.users["alice"]))
    async with serve(library, fake, plain_searcher=broken) as client:
        plain = await client.post("/api/search/smart", json={"query": "一只猫"}, headers=headers)
        clip = await client.post("/api/search/smart", json={"query": "clip: 一只猫"}, headers=headers)
    for response in (plain, clip):
        assert response.status_code == 200 and response.headers["x-fake-immich"] == "smart-search"
    assert fake.smart_requests == [{"query": "一只猫"}, {"query": "一只猫"}]


async def test_searches_beyond_the_limit_wait_their_turn(library, fake):
    running, most = [0], [0]
    lock = threading.Lock()

    def plain(text, user_id, *, limit, offset):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return [SearchHit(library.assets["invoice-1.jpg"], "", 1.0, "")]

    headers = cookie(fake.login(library.users["alice"]))
    async with serve(library, fake, plain_searcher=plain, max_concurrent_searches=2) as client:
        responses = await asyncio.gather(
            *(client.post("/api/search/smart", json={"query": f"q{i}"}, headers=headers) for i in range(6))
        )
    assert [names(library, r) for r in responses] == [["invoice-1.jpg"]] * 6
    assert most[0] == 2


async def test_async_plain_query_searcher(library, fake):
    async def plain(text, user_id, *, limit, offset):
        return [SearchHit(library.assets["invoice-2.jpg"], "", 1.0, "")]

    async with serve(library, fake, plain_searcher=plain) as client:
        response = await client.post(
            "/api/search/smart", json={"query": "x"}, headers=cookie(fake.login(library.users["alice"]))
        )
    assert names(library, response) == ["invoice-2.jpg"]


# ---------------------------------------------------------------------------------------------------------
# bad input


BAD_FIELDS = [
    ({"size": 0}, "[size] Too small: expected number to be >=1"),
    ({"size": 1001}, "[size] Too big: expected number to be <=1000"),
    ({"size": "10"}, "[size] Invalid input: expected int, received string"),
    ({"size": True}, "[size] Invalid input: expected int, received boolean"),
    ({"size": None}, "[size] Invalid input: expected int, received null"),
    ({"page": 0}, "[page] Too small"),
    ({"page": 1.5}, "[page] Invalid input: expected int"),
    ({"page": 2**53}, "[page] Too big"),
    ({"visibility": "everything"}, "[visibility] Invalid option"),
    ({"type": "image"}, "[type] Invalid option"),
    ({"takenAfter": "yesterday"}, "[takenAfter] Invalid input: expected ISO 8601"),
    ({"takenAfter": "2024-02-30T00:00:00Z"}, "[takenAfter]"),
    ({"personIds": ["nope"]}, "[personIds.0] Invalid UUID"),
    ({"personIds": "nope"}, "[personIds] Invalid input: expected array"),
    ({"libraryId": "nope"}, "[libraryId] Invalid UUID"),
    ({"withExif": "yes"}, "[withExif] Invalid input: expected boolean, received string"),
    ({"city": 5}, "[city] Invalid input: expected string, received number"),
    ({"rating": 6}, "[rating] Too big"),
    ({"language": ["en"]}, "[language] Invalid input: expected string, received array"),
    ({"queryAssetId": "x"}, "[queryAssetId] Invalid UUID"),
    ({"query": "ocr:" + "a" * 1000}, "[query] Too long"),
    ({"query": "ocr:in\x00voice"}, "[query] must not contain NUL"),
    ({"query": "ocr:\ud800"}, "[query] is not valid Unicode"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_FIELDS, ids=[m for _, m in BAD_FIELDS])
async def test_invalid_fields_get_immich_style_400s(library, fake, fields, message):
    body = {"query": "ocr:invoice", **fields}
    async with serve(library, fake) as client:
        response = await client.post(
            "/api/search/smart",
            content=json.dumps(body).encode(),
            headers={**cookie(fake.login(library.users["alice"])), "content-type": "application/json"},
        )
    assert_immich_error(response, 400, message)
    assert response.json()["error"] == "Bad Request"
    assert fake.smart_requests == [] and fake.calls["assets/{id}"] == 0


@pytest.mark.parametrize(
    "raw",
    [b'{"query": "ocr:x"', b'{"query": "ocr:x", "size": NaN}', b"\xff\xfe", b"[" * 100000 + b"]" * 100000],
    ids=["truncated", "NaN", "not UTF-8", "nested"],
)
async def test_malformed_json_gets_a_400(library, fake, raw):
    async with serve(library, fake) as client:
        response = await client.post("/api/search/smart", content=raw, headers={"content-type": "application/json"})
    assert_immich_error(response, 400, "not valid JSON")


async def test_too_large_a_body_gets_a_413(library, fake):
    async with serve(library, fake, max_body_bytes=1000) as client:
        response = await client.post("/api/search/smart", json={"query": "ocr:" + "x" * 2000})
    assert_immich_error(response, 413, "too large")


@pytest.mark.parametrize(
    "query",
    [
        'ocr:"',
        "ocr:-",
        "ocr:--",
        "ocr:'; DROP TABLE public.asset; --",
        "ocr:\\",
        "ocr:&|!<->():*",
        "ocr:%_",
        "ocr:    ",
        "ocr:" + "发" * 996,
        "ocr:\u200b\ufeff",
        "ocr:𠀀𪜀",
        'ocr:" -"" -',
    ],
)
async def test_hostile_queries_are_answered_safely(library, fake, query):
    async with serve(library, fake) as client:
        response = await client.post(
            "/api/search/smart", json={"query": query}, headers=cookie(fake.login(library.users["alice"]))
        )
    assert response.status_code == 200, response.text
    assert_contract(response.json())
    with psycopg.connect(library.url) as conn:
        assert conn.execute("SELECT count(*) FROM public.asset").fetchone()[0] == len(PHOTOS)


# ---------------------------------------------------------------------------------------------------------
# Immich refusing or failing


async def test_api_key_without_user_read_is_left_to_immich(library, fake):
    key = fake.add_api_key(library.users["alice"], ("asset.read",))
    async with serve(library, fake) as client:
        response = await client.post("/api/search/smart", json={"query": "ocr:invoice"}, headers={"x-api-key": key})
    assert response.status_code == 200 and response.headers["x-fake-immich"] == "smart-search"


async def test_api_key_without_asset_read_gets_immichs_403(library, fake):
    key = fake.add_api_key(library.users["alice"], ("user.read",))
    async with serve(library, fake) as client:
        response = await client.post("/api/search/smart", json={"query": "ocr:invoice"}, headers={"x-api-key": key})
    assert response.status_code == 403
    assert response.json() == {"message": "Missing required permission: asset.read"}


async def test_immich_failing_on_assets_gives_a_502(library, fake):
    fake.failures["assets/{id}"] = 500
    async with serve(library, fake) as client:
        response = await client.post(
            "/api/search/smart", json={"query": "ocr:invoice"}, headers=cookie(fake.login(library.users["alice"]))
        )
    assert_immich_error(response, 502, "Immich answered 500 to GET /api/assets/")


async def test_a_database_that_is_gone_gives_a_503(library, fake, server, migrated_template):
    with scratch_database(server, migrated_template) as url:
        pool = open_pool(url, max_size=1)
        pool.close()  # a closed pool: every search fails as with a database that went away
        app = create_app(
            ServeConfig(immich_url=IMMICH), ocr_searcher=ocr_searcher(pool), transport=httpx.ASGITransport(app=fake.app)
        )
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve.test") as client:
            response = await client.post(
                "/api/search/smart", json={"query": "ocr:invoice"}, headers=cookie(fake.login(library.users["alice"]))
            )
        await app.state.service.aclose()
    assert_immich_error(response, 503, "OCR search is unavailable")


async def test_a_slow_database_is_cut_short(library, fake):
    """serve's pool cancels statements after --timeout: a runaway query frees its connection."""
    pool = open_pool(with_statement_timeout(library.url, 0.3), max_size=1)

    def slow(text, user_id, *, limit, offset):
        with pool.connection() as conn:
            conn.execute("SELECT pg_sleep(5)")
        return []

    app = create_app(ServeConfig(immich_url=IMMICH), ocr_searcher=slow, transport=httpx.ASGITransport(app=fake.app))
    started = time.monotonic()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve.test") as client:
        response = await client.post(
            "/api/search/smart", json={"query": "ocr:invoice"}, headers=cookie(fake.login(library.users["alice"]))
        )
    await app.state.service.aclose()
    assert_immich_error(response, 503, "OCR search is unavailable", "statement timeout")
    assert time.monotonic() - started < 3
    with pool.connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,), "the connection is usable again"
    pool.close()


def test_statement_timeout_keeps_other_options():
    url = with_statement_timeout("postgresql://u:p@db:5432/immich?options=-c%20search_path%3Dpublic", 30)
    info = psycopg.conninfo.conninfo_to_dict(url)
    assert info["options"] == "-c search_path=public -c statement_timeout=30000"
    assert (info["host"], info["dbname"], info["password"]) == ("db", "immich", "p")


# ---------------------------------------------------------------------------------------------------------
# passthrough (in process; streaming, websockets and timeouts over real sockets in test_serve_network.py)


async def test_requests_pass_through_unchanged(library, fake):
    async with serve(library, fake) as client:
        for method in ("GET", "PUT", "PATCH", "DELETE", "OPTIONS"):
            response = await client.request(
                method,
                "/api/test/echo?b=2&a=%2F%20x&a=1",
                headers={
                    "x-custom": "one",
                    "authorization": "Bearer abc",
                    "connection": "keep-alive, x-hop",
                    "x-hop": "dropped",
                    "te": "trailers",
                    "x-forwarded-for": "203.0.113.9",
                },
                content=b"payload" if method in ("PUT", "PATCH") else None,
            )
            assert response.status_code == 200, (method, response.text)
            echo = response.json()
            assert echo["method"] == method and echo["path"] == "/api/test/echo"
            assert echo["query"] == "b=2&a=%2F%20x&a=1"
            got = dict(echo["headers"])
            assert got["x-custom"] == "one" and got["authorization"] == "Bearer abc"
            assert "x-hop" not in got and "te" not in got, "hop-by-hop headers stay behind"
            assert got["x-forwarded-for"].startswith("203.0.113.9, ")
            assert got["host"] == "serve.test", "Host kept, as Immich's proxy guide sets it"
            assert response.headers["x-fake-immich"] == "echo"
        posted = await client.post("/api/test/echo", content=b"x" * 100000)
        assert posted.status_code == 201 and posted.json()["body_length"] == 100000
        head = await client.head("/api/test/echo")
        assert head.status_code == 200 and head.headers["x-fake-immich"] == "echo"


async def test_statuses_cookies_and_redirects_pass_through(library, fake):
    async with serve(library, fake) as client:
        cookies = await client.get("/api/test/cookies")
        assert cookies.status_code == 201 and cookies.headers["x-custom"] == "kept"
        assert len(cookies.headers.get_list("set-cookie")) == 2
        for code in (204, 304, 404, 500):
            assert (await client.get(f"/api/test/status/{code}")).status_code == code
        redirect = await client.get("/api/test/redirect")
        assert redirect.status_code == 302 and redirect.headers["location"] == "/auth/login?autoLaunch=0"
        wrong_method = await client.get("/api/search/smart")
        assert wrong_method.status_code == 405 and fake.smart_requests == [], "Immich's 405, not ours"
        unknown = await client.get("/api/nothing/here")
        assert unknown.status_code == 404


# ---------------------------------------------------------------------------------------------------------
# the request rules agree with the spec's SmartSearchDto


SAMPLES = [
    {"query": "ocr:x"},
    {"query": "ocr:x", "page": 1, "size": 1000, "withExif": True, "visibility": "timeline", "language": "zh-CN"},
    {"query": "ocr:x", "takenAfter": "2024-01-01T00:00:00.000Z", "takenBefore": "2024-02-29T10:00+08:00"},
    {"query": "ocr:x", "rating": None, "city": None, "tagIds": None, "libraryId": None},
    {"query": "ocr:x", "personIds": [str(uuid.uuid4())], "type": "VIDEO", "isMotion": False},
    *({"query": "ocr:x", **fields} for fields, _ in BAD_FIELDS if "query" not in fields),
]


@pytest.mark.parametrize("body", SAMPLES, ids=[json.dumps(s)[:60] for s in SAMPLES])
def test_request_rules_match_the_spec(body):
    spec_ok = not immich_openapi.errors("SmartSearchDto", body)
    try:
        smart_search.validate(body)
        ours_ok = True
    except Exception:
        ours_ok = False
    assert ours_ok == spec_ok, body


# ---------------------------------------------------------------------------------------------------------
# the command


@pytest.fixture
def runner(monkeypatch):
    for name in ("IMMICH_URL", "IMMICH_SEARCH_DATABASE_URL", "IMMICH_SEARCH_EMBEDDED", "DB_URL", "DB_HOSTNAME"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


class Started:
    """What the command handed to uvicorn.run; ``during(app)`` runs while the command is still up."""

    def __init__(self) -> None:
        self.runs: list[tuple[object, dict]] = []
        self.during = None


@pytest.fixture
def started(monkeypatch):
    """Replace uvicorn.run: record the app and options, run ``started.during(app)`` instead of listening."""
    import uvicorn

    record = Started()

    def run(app, **options):
        record.runs.append((app, options))
        if record.during is not None:
            record.during(app)

    monkeypatch.setattr(uvicorn, "run", run)
    return record


def test_serve_needs_immich_url(runner, library, started):
    result = runner.invoke(cli, ["--database-url", library.url, "serve"])
    assert result.exit_code != 0 and "IMMICH_URL" in result.output and "Traceback" not in result.output
    bad = runner.invoke(cli, ["--database-url", library.url, "serve", "--immich-url", "ftp://immich"])
    assert bad.exit_code != 0 and "--immich-url" in bad.output and "http://immich-server:2283" in bad.output
    assert started.runs == []


def test_serve_command_end_to_end(runner, library, fake, started, monkeypatch):
    answers = {}

    def exercise(app):
        async def requests():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve.test") as client:
                token = fake.login(library.users["alice"])
                answers["ocr"] = await client.post(
                    "/api/search/smart", json={"query": "ocr:发票"}, headers=cookie(token)
                )
                answers["plain"] = await client.post("/api/search/smart", json={"query": "发票"}, headers=cookie(token))
            await app.state.service.aclose()

        asyncio.run(requests())

    started.during = exercise
    with running(fake.app) as immich_url:
        monkeypatch.setenv("IMMICH_URL", immich_url)
        result = runner.invoke(cli, ["--database-url", library.url, "serve", "--port", "9999", "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    assert f"in front of Immich at {immich_url}" in result.output
    assert "plain queries passed through to Immich" in result.output
    ((app, options),) = started.runs
    assert options["host"] == "0.0.0.0" and options["port"] == 9999
    assert app.state.service.plain_searcher is None
    assert names(library, answers["ocr"]) == ["fapiao.jpg"]
    assert answers["plain"].headers["x-fake-immich"] == "smart-search"


def test_serve_without_the_hybrid_module(runner, library, started, monkeypatch, tmp_path):
    import immich_search.ranking

    monkeypatch.delattr(immich_search.ranking, "hybrid_search", raising=False)
    monkeypatch.setitem(sys.modules, "immich_search.ranking.hybrid_search", None)  # its import fails
    args = ["--database-url", library.url, "serve", "--immich-url", IMMICH]
    implied = runner.invoke(cli, [*args, "--clip-model-dir", str(tmp_path)])
    assert implied.exit_code == 0, implied.output
    assert "passed through to Immich (the hybrid ranking" in implied.output
    assert started.runs[-1][0].state.service.plain_searcher is None
    explicit = runner.invoke(cli, [*args, "--plain-queries", "hybrid"])
    assert explicit.exit_code != 0 and "not available" in explicit.output and "Traceback" not in explicit.output


def test_serve_with_hybrid_plain_queries(runner, library, started):
    found = []
    started.during = lambda app: found.extend(
        app.state.service.plain_searcher("发票", library.users["alice"], limit=5, offset=0)
    )
    result = runner.invoke(
        cli, ["--database-url", library.url, "serve", "--immich-url", IMMICH, "--plain-queries", "hybrid"]
    )
    assert result.exit_code == 0, result.output
    assert "hybrid without a CLIP model" in result.output
    assert [library.name(hit.asset_id) for hit in found] == ["fapiao.jpg"]


def test_build_plain_searcher_defaults(library, tmp_path):
    assert build_plain_searcher(library.pool, None, None) == (None, "passed through to Immich")
    assert build_plain_searcher(library.pool, "passthrough", tmp_path)[0] is None
    with pytest.raises(Exception, match="no cn-clip"):
        build_plain_searcher(library.pool, None, tmp_path)  # a model dir without a model fails loudly
