"""``immich-search serve`` over real sockets: streaming both ways, websockets, an upstream that is slow or gone.

serve and the fake Immich each run under uvicorn on a free localhost port (tests/fake_immich.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time

import httpx
import psycopg
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from immich_search.db import open_pool
from immich_search.ranking.ocr_search import search_ocr
from immich_search.serve.app import ServeConfig, create_app
from immich_search.serve.searchers import ocr_searcher
from tests.conftest import scratch_database
from tests.fake_immich import MIB, PATTERN, FakeImmich, add_asset, add_user, free_port, running

pytestmark = pytest.mark.anyio

TIMEOUT = 0.5
"""serve's timeout in these tests, seconds: a slow upstream must be answered 504 soon after it."""


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def library(server, migrated_template):
    with scratch_database(server, migrated_template) as url:
        with psycopg.connect(url) as conn:
            alice = add_user(conn, "alice@example.com")
            for i in range(10):
                add_asset(conn, alice, f"receipt-{i}.jpg", [f"RECEIPT {i}", "增值税发票"], age_days=i)
        pool = open_pool(url)
        search_ocr(pool, "ocr:warm up", alice, limit=1)  # loads jieba's dictionary (a second) before timing anything
        yield {"url": url, "pool": pool, "alice": alice}
        pool.close()


@pytest.fixture
def fake(library) -> FakeImmich:
    return FakeImmich().load(library["url"])


@contextlib.contextmanager
def serve_over(library, immich_url: str, **settings):
    """serve on a real port in front of ``immich_url``; yields serve's base URL."""
    settings.setdefault("timeout", TIMEOUT)
    app = create_app(ServeConfig(immich_url=immich_url, **settings), ocr_searcher=ocr_searcher(library["pool"]))
    # As `immich-search serve` runs uvicorn: X-Forwarded-For is passed on, not taken as the client's address.
    with running(app, proxy_headers=False, server_header=False, date_header=False) as url:
        yield url


@contextlib.contextmanager
def stack(library, fake, **settings):
    """The fake Immich and serve in front of it, both on real ports; yields serve's base URL."""
    with running(fake.app) as immich_url, serve_over(library, immich_url, **settings) as url:
        yield url


def ws_url(http_url: str, path: str) -> str:
    return "ws" + http_url[4:] + path


# ---------------------------------------------------------------------------------------------------------
# streaming


async def test_downloads_stream_through_unchanged(library, fake):
    size = 8 * MIB
    expected = hashlib.sha256((PATTERN * (size // len(PATTERN) + 1))[:size]).hexdigest()
    with stack(library, fake) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            for chunked in ("0", "1"):
                digest, length = hashlib.sha256(), 0
                async with client.stream("GET", f"/api/test/download?size={size}&chunked={chunked}") as response:
                    assert response.status_code == 200
                    assert response.headers["content-disposition"] == 'attachment; filename="x.bin"'
                    if chunked == "1":
                        assert "content-length" not in response.headers
                        assert response.headers["transfer-encoding"] == "chunked"
                    else:
                        assert response.headers["content-length"] == str(size)
                    async for chunk in response.aiter_raw():
                        digest.update(chunk)
                        length += len(chunk)
                assert length == size and digest.hexdigest() == expected, chunked
            head = await client.head("/api/test/echo")
            assert head.status_code == 200 and head.content == b""


async def test_uploads_stream_through_unchanged(library, fake):
    piece = bytes(range(256)) * 4096  # 1 MiB

    async def body():
        for _ in range(8):
            yield piece
            await asyncio.sleep(0)

    expected = hashlib.sha256(piece * 8).hexdigest()
    with stack(library, fake) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            chunked = await client.post("/api/test/upload", content=body())
            sized = await client.put(
                "/api/test/upload", content=body(), headers={"content-length": str(8 * len(piece))}
            )
    for response in (chunked, sized):
        assert response.status_code == 201, response.text
        assert response.json() == {"length": 8 * len(piece), "sha256": expected}


async def test_concurrent_searches_over_sockets(library, fake):
    token = fake.login(library["alice"])
    # Generous timeouts: this checks that concurrent searches page correctly, not how fast they are (12 at
    # once timed out at 10 s on a 2-core machine loaded by other test runs).
    with stack(library, fake, timeout=60) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/api/search/smart",
                        json={"query": "ocr:发票", "size": 4, "page": 1 + i % 3},
                        headers={"cookie": f"immich_access_token={token}"},
                    )
                    for i in range(12)
                )
            )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    first_pages = [r.json()["assets"]["items"] for i, r in enumerate(responses) if i % 3 == 0]
    assert all(page == first_pages[0] for page in first_pages) and len(first_pages[0]) == 4
    assert [r.json()["assets"]["nextPage"] for r in responses[:3]] == ["2", "3", None]


# ---------------------------------------------------------------------------------------------------------
# websockets


async def test_websocket_passes_through(library, fake):
    token = fake.login(library["alice"])
    with stack(library, fake) as url:
        async with connect(
            ws_url(url, "/api/socket.io/?EIO=4&transport=websocket"),
            additional_headers={"cookie": f"immich_access_token={token}", "x-forwarded-for": "198.51.100.7"},
            subprotocols=["immich"],
            open_timeout=5,
        ) as socket:
            assert socket.subprotocol == "immich"
            greeting = await asyncio.wait_for(socket.recv(), 5)
            assert '"user": "' + library["alice"] + '"' in greeting.replace('":"', '": "')
            assert "EIO=4&transport=websocket" in greeting and "198.51.100.7, 127.0.0.1" in greeting
            await socket.send("40")
            assert await asyncio.wait_for(socket.recv(), 5) == "echo:40"
            await socket.send(b"\x00\x01binary")
            assert await asyncio.wait_for(socket.recv(), 5) == b"echo:\x00\x01binary"
            await socket.send("close:4001")
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 5)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "bye"), "Immich's close code passed on"
        # The client closing first is passed on too (the fake sees a disconnect and the proxy ends cleanly).
        async with connect(ws_url(url, "/api/socket.io/"), open_timeout=5) as socket:
            await asyncio.wait_for(socket.recv(), 5)
        assert fake.calls["socket.io"] == 2


async def test_websocket_to_an_immich_that_is_gone_is_a_502(library):
    with serve_over(library, f"http://127.0.0.1:{free_port()}") as url:
        started = time.monotonic()
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(url, "/api/socket.io/"), open_timeout=5):
                pass
    assert refused.value.response.status_code == 502
    assert b"cannot reach Immich" in refused.value.response.body
    assert time.monotonic() - started < 3


async def test_a_refused_websocket_handshake_is_relayed(library, fake):
    with stack(library, fake) as url:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(url, "/api/no-such-socket"), open_timeout=5):
                pass
    assert refused.value.response.status_code == 403, "Starlette's refusal of an unknown websocket route"


# ---------------------------------------------------------------------------------------------------------
# slow or gone upstream: 504 and 502, never a hang


async def _timed(client: httpx.AsyncClient, method: str, path: str, **kwargs):
    started = time.monotonic()
    response = await client.request(method, path, **kwargs)
    return response, time.monotonic() - started


def assert_gateway_error(response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["statusCode"] == status and fragment in body["message"], body
    assert response.headers["x-correlation-id"] == body["correlationId"]


async def test_a_slow_immich_gives_a_504_within_the_timeout(library, fake):
    token = fake.login(library["alice"])
    headers = {"cookie": f"immich_access_token={token}"}
    with stack(library, fake) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            response, took = await _timed(client, "GET", "/api/test/slow?seconds=2")
            assert_gateway_error(response, 504, f"did not answer GET /api/test/slow within {TIMEOUT:g} s")
            assert took < TIMEOUT + 1.5

            fake.delays["users/me"] = 2
            response, took = await _timed(
                client, "POST", "/api/search/smart", json={"query": "ocr:发票"}, headers=headers
            )
            assert_gateway_error(response, 504, "did not answer GET /api/users/me")
            assert took < TIMEOUT + 1.5

            fake.delays["users/me"] = 0.3
            fake.delays["assets/{id}"] = 0.3  # each fast enough, both together too slow
            response, took = await _timed(
                client, "POST", "/api/search/smart", json={"query": "ocr:发票", "size": 10}, headers=headers
            )
            assert_gateway_error(response, 504, "did not answer GET /api/assets/")
            assert took < TIMEOUT + 1.5


async def test_an_immich_that_is_gone_gives_a_502(library):
    with serve_over(library, f"http://127.0.0.1:{free_port()}") as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            for method, path, body in (
                ("GET", "/api/server/ping", None),
                ("POST", "/api/search/smart", {"query": "ocr:x"}),
            ):
                response, took = await _timed(client, method, path, json=body)
                assert_gateway_error(response, 502, "cannot reach Immich at http://127.0.0.1:")
                assert took < 3
