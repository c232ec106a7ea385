"""Immich as serve's upstream: API calls on the caller's behalf, HTTP and websocket passthrough.

Passthrough keeps requests and responses as they are: method, path and query string byte for byte, every
header except the hop-by-hop ones (RFC 9110 section 7.6.1), bodies streamed both ways without decoding
(a gzip answer stays gzip), status codes, redirects (never followed) and repeated headers such as
``Set-Cookie``. ``X-Forwarded-For`` gains the client's address and ``X-Forwarded-Proto`` is set when
missing, as a reverse proxy does.

Failures of the upstream never hang a client: a refused or broken connection is answered 502 and no
answer within the timeout 504, both with Immich-style bodies (:mod:`immich_search.serve.errors`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketState

from immich_search.serve.errors import ServeError

log = logging.getLogger("immich_search.serve")

HOP_BY_HOP = frozenset(
    b"connection keep-alive proxy-authenticate proxy-authorization proxy-connection te trailer trailers "
    b"transfer-encoding upgrade expect".split()
)
"""Headers that belong to one connection and are never forwarded (plus those named in ``Connection``).

``Expect: 100-continue`` is answered by the server serve runs in; it is not asked of Immich again."""

WEBSOCKET_OWN = frozenset(
    b"host content-length sec-websocket-key sec-websocket-version sec-websocket-extensions "
    b"sec-websocket-protocol sec-websocket-accept".split()
)
"""Handshake headers the websocket client library writes itself."""

WEBSOCKET_MAX_MESSAGE = 16 * 1024 * 1024
"""Largest websocket message relayed, in bytes (uvicorn's own default limit on the client side)."""

_UNSENDABLE_CLOSE_CODES = {1005: 1000, 1006: 1011, 1015: 1011}
"""Close codes that may not appear in a close frame (RFC 6455 section 7.4.1) and what to send instead."""

RawHeaders = list[tuple[bytes, bytes]]


def _connection_scoped(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    names = set(HOP_BY_HOP)
    for name, value in headers:
        if name.lower() == b"connection":
            names.update(token.strip().lower() for token in value.split(b",") if token.strip())
    return names


def forward_request_headers(scope: Mapping, *, websocket: bool = False) -> RawHeaders:
    """Return the headers to send upstream for the ASGI ``scope``'s request.

    Drops hop-by-hop headers (and, for a websocket, the handshake headers), appends the client's address
    to ``X-Forwarded-For`` and sets ``X-Forwarded-Proto`` when missing. ``Host`` is kept, as Immich's own
    reverse-proxy guide does (``proxy_set_header Host $host``).
    """
    raw: Sequence[tuple[bytes, bytes]] = scope.get("headers") or []
    drop = _connection_scoped(raw)
    if websocket:
        drop |= WEBSOCKET_OWN
    headers = [(name, value) for name, value in raw if name.lower() not in drop and name.lower() != b"x-forwarded-for"]
    forwarded_for = [value for name, value in raw if name.lower() == b"x-forwarded-for"]
    client = scope.get("client")
    if client:
        forwarded_for.append(str(client[0]).encode("latin-1"))
    if forwarded_for:
        headers.append((b"x-forwarded-for", b", ".join(forwarded_for)))
    if not any(name.lower() == b"x-forwarded-proto" for name, _ in raw):
        scheme = scope.get("scheme", "http")
        headers.append((b"x-forwarded-proto", {"ws": b"http", "wss": b"https"}.get(scheme, scheme.encode())))
    return headers


def forward_response_headers(raw: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    """Return an upstream response's headers without the hop-by-hop ones, repeated headers kept in order."""
    raw = list(raw)
    drop = _connection_scoped(raw)
    return [(name.lower(), value) for name, value in raw if name.lower() not in drop]


def _has_body(scope: Mapping) -> bool:
    for name, value in scope.get("headers") or []:
        if name.lower() == b"transfer-encoding" or (name.lower() == b"content-length" and value.strip() != b"0"):
            return True
    return False


_TARGET_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/%?")
"""Bytes a request target may carry as they are (RFC 3986 pchar, ``/``, ``?`` and ``%``)."""


def escape_target(raw: bytes) -> bytes:
    """Percent-encode the bytes of a request path or query that may not stand in a URL as they are
    (``#``, spaces, quotes, controls, bytes >= 0x80 ...), as a browser sends them; others are kept."""
    return b"".join(bytes((byte,)) if byte in _TARGET_SAFE else b"%%%02X" % byte for byte in raw)


def _raw_target(scope: Mapping) -> tuple[bytes, bytes]:
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
    return escape_target(raw_path), escape_target(scope.get("query_string", b""))


CALLS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("immich_search_upstream_calls", default=None)
"""Where :meth:`Upstream.call` counts its calls for the search being answered (a one-item list), if set."""


class Upstream:
    """Immich at ``base_url``: one pooled HTTP client for API calls and passthrough, and websocket relays.

    Args:
        base_url: Immich's address, ``http(s)://host[:port][/prefix]`` (e.g. ``http://immich-server:2283``).
        timeout: seconds to wait to connect, for each read and each write, and for a websocket handshake.
        transport: an httpx transport to use instead of the network (tests pass an ``ASGITransport``).
        max_connections: concurrent connections to Immich at most.

    Raises:
        ValueError: ``base_url`` is not an http or https URL with a host.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 128,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"Immich URL must look like http://immich-server:2283, not {base_url!r}")
        if url.query or url.fragment:
            raise ValueError(f"Immich URL must not have a query or fragment: {base_url!r}")
        self.base_url = url
        self.display = str(url.copy_with(username=None, password=None)).rstrip("/")
        self.timeout = timeout
        self._prefix = url.raw_path.rstrip(b"/")
        self._transport = transport
        self._max_connections = max_connections
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        """Return the pooled client, created on first use (inside the running event loop)."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport,
                timeout=httpx.Timeout(self.timeout),
                limits=httpx.Limits(max_connections=self._max_connections, max_keepalive_connections=64),
                follow_redirects=False,
                trust_env=False,  # Immich is reached directly, never through $HTTP_PROXY
            )
        return self._client

    async def aclose(self) -> None:
        """Close the pooled connections (call at shutdown)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def url(self, raw_path: bytes, query_string: bytes = b"") -> httpx.URL:
        """Return the upstream URL for a request target (``raw_path`` percent-encoded, as received)."""
        target = self._prefix + raw_path + (b"?" + query_string if query_string else b"")
        return self.base_url.copy_with(raw_path=target)

    def gateway_error(self, exc: httpx.HTTPError, what: str) -> ServeError:
        """Map a failed upstream exchange to 504 (no answer in time) or 502 (refused, broken, invalid)."""
        if isinstance(exc, httpx.TimeoutException):
            return ServeError(504, f"Immich at {self.display} did not answer {what} within {self.timeout:g} s")
        reason = str(exc) or type(exc).__name__
        return ServeError(502, f"cannot reach Immich at {self.display} ({what}): {reason}")

    async def call(
        self,
        method: str,
        path: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        params: Sequence[tuple[str, str]] = (),
        timeout: float | None = None,
    ) -> httpx.Response:
        """Make one API call to Immich and return its buffered response, whatever its status.

        Args:
            method, path: e.g. ``"GET"``, ``"/api/users/me"`` (``path`` already percent-encoded).
            headers, params: sent as given (the caller's credentials).
            timeout: seconds for this call (connect, each read and write) instead of the client's.

        Raises:
            ServeError: 502 when Immich cannot be reached or broke the exchange, 504 on a timeout.
        """
        counter = CALLS.get()
        if counter is not None:
            counter[0] += 1
        try:
            return await self.client.request(
                method,
                self.url(path.encode("ascii")),
                headers=list(headers),
                params=list(params) or None,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else httpx.Timeout(timeout),
            )
        except httpx.HTTPError as exc:
            raise self.gateway_error(exc, f"{method} {path}") from exc

    async def proxy(self, request: Request, body: bytes | None = None) -> Response:
        """Pass ``request`` to Immich and stream Immich's answer back unchanged.

        Args:
            request: the client's request; its body is streamed upstream unless ``body`` is given.
            body: the request body when it was already read (``Content-Length`` is then recomputed).

        Returns:
            Immich's response (status, headers, body streamed), or an Immich-style 502/504 when Immich is
            unreachable or does not start answering within the timeout.
        """
        scope = request.scope
        headers = forward_request_headers(scope)
        content: bytes | AsyncIterator[bytes] | None
        if body is not None:
            headers = [(name, value) for name, value in headers if name.lower() != b"content-length"]
            content = body
        else:
            content = request.stream() if _has_body(scope) else None
        raw_path, query = _raw_target(scope)
        what = f"{scope['method']} {raw_path.decode('latin-1')}"
        try:
            upstream_request = self.client.build_request(
                scope["method"], self.url(raw_path, query), headers=headers, content=content
            )
        except (httpx.InvalidURL, ValueError) as exc:  # e.g. a malformed percent escape
            log.info("request target refused: %s (%s)", what, exc)
            return ServeError(400, f"Invalid request target: {exc}").response()
        try:
            response = await self.client.send(upstream_request, stream=True)
        except httpx.HTTPError as exc:
            error = self.gateway_error(exc, what)
            log.warning("passthrough failed: %s", error.message)
            return error.response()
        relayed = StreamingResponse(self._relay(response, what), status_code=response.status_code)
        relayed.raw_headers = forward_response_headers(response.headers.raw)
        return relayed

    @staticmethod
    async def _relay(response: httpx.Response, what: str) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            # The status line is sent already: all that is left is to cut the body short.
            log.warning("Immich broke off its answer to %s: %s", what, str(exc) or type(exc).__name__)
        finally:
            await response.aclose()

    async def proxy_websocket(self, websocket: WebSocket) -> None:
        """Relay a websocket (Immich's ``/api/socket.io``) to Immich until either side closes.

        The upstream handshake comes first, with the client's headers and subprotocols; the client is
        accepted only when Immich accepted. A refused handshake is relayed as Immich's own HTTP answer, an
        unreachable Immich as 502 and a silent one as 504 (where the server supports websocket denial
        responses; otherwise the websocket is closed with code 1014 "bad gateway"). Text and binary
        messages are relayed as they are; close codes and reasons are passed on.
        """
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, WebSocketException

        scope = websocket.scope
        await websocket.receive()  # websocket.connect
        raw_path, query = _raw_target(scope)
        target = self.url(raw_path, query)
        uri = str(target.copy_with(scheme="wss" if target.scheme == "https" else "ws"))
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in forward_request_headers(scope, websocket=True)
            if name.lower() != b"user-agent"
        ]
        agents = [value.decode("latin-1") for name, value in scope.get("headers", []) if name.lower() == b"user-agent"]
        user_agent = agents[0] if agents else None
        what = f"websocket {raw_path.decode('latin-1')}"
        try:
            upstream = await connect(
                uri,
                additional_headers=headers,
                subprotocols=scope.get("subprotocols") or None,
                user_agent_header=user_agent,
                compression=None,
                open_timeout=self.timeout,
                max_size=WEBSOCKET_MAX_MESSAGE,
                proxy=None,
            )
        except InvalidStatus as exc:
            answer = exc.response
            denial = Response(answer.body or b"", status_code=answer.status_code)
            denial.raw_headers = forward_response_headers(
                (name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers.raw_items()
            )
            await _deny(websocket, denial)
            return
        except (OSError, asyncio.TimeoutError, WebSocketException) as exc:
            if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
                error = ServeError(504, f"Immich at {self.display} did not accept {what} within {self.timeout:g} s")
            else:
                error = ServeError(502, f"cannot reach Immich at {self.display} ({what}): {exc or type(exc).__name__}")
            log.warning("websocket passthrough failed: %s", error.message)
            await _deny(websocket, error.response())
            return
        async with upstream:
            await websocket.accept(subprotocol=upstream.subprotocol)
            await _pump(websocket, upstream)


async def _deny(websocket: WebSocket, response: Response) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=1014 if response.status_code in (502, 504) else 1008)


async def _pump(websocket: WebSocket, upstream) -> None:
    from websockets.exceptions import ConnectionClosed

    async def client_to_upstream() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                code = _UNSENDABLE_CLOSE_CODES.get(message.get("code", 1000), message.get("code", 1000))
                await upstream.close(code=code, reason=message.get("reason") or "")
                return
            if message.get("text") is not None:
                await upstream.send(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send(message["bytes"])

    async def upstream_to_client() -> None:
        try:
            async for data in upstream:
                if isinstance(data, str):
                    await websocket.send_text(data)
                else:
                    await websocket.send_bytes(data)
        except ConnectionClosed:
            pass

    tasks = [asyncio.ensure_future(client_to_upstream()), asyncio.ensure_future(upstream_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if websocket.client_state == WebSocketState.CONNECTED and websocket.application_state == WebSocketState.CONNECTED:
        code = upstream.close_code if upstream.close_code is not None else 1000
        try:
            await websocket.close(code=_UNSENDABLE_CLOSE_CODES.get(code, code), reason=upstream.close_reason or "")
        except RuntimeError:  # the client went away at the same moment
            pass
