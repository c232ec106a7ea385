"""Who is calling: the caller's credentials, shown to Immich (``GET /api/users/me``), the answer cached briefly.

serve never decides on its own who a caller is. It forwards what Immich reads (see Immich's
``server/src/services/auth.service.ts``): the cookie ``immich_access_token``, ``Authorization: Bearer``,
``x-api-key``, ``x-immich-user-token``, ``x-immich-session-token`` and the query parameters ``apiKey`` and
``sessionKey``. Immich's answer (a ``UserAdminResponseDto``) is cached for a few seconds per credential, so
paging through results costs one identity call, not one per page.

Shared links (``x-immich-share-key``, ``x-immich-share-slug``, ``?key=``, ``?slug=``) are never answered
from our tables: such requests pass through to Immich.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

from immich_search.serve.errors import PassThrough, ServeError, UpstreamAnswer
from immich_search.serve.pages import DatabaseCredential
from immich_search.serve.upstream import Upstream

ACCESS_COOKIE = "immich_access_token"
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-immich-user-token", "x-immich-session-token")
CREDENTIAL_PARAMS = ("apiKey", "sessionKey")
SHARED_LINK_HEADERS = ("x-immich-share-key", "x-immich-share-slug")
SHARED_LINK_PARAMS = ("key", "slug")
CONTEXT_HEADERS = ("user-agent",)
"""Sent along with the credentials: Immich records the client of a session from them."""

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class Credentials:
    """What a request carries that Immich authenticates.

    Attributes:
        headers: ``(name, value)`` pairs to send with every call made on the caller's behalf (the
            credential headers, the whole ``Cookie`` header, ``User-Agent``).
        params: credential query parameters (``apiKey``, ``sessionKey``) to send along.
        shared_link: the request uses a shared link (Immich's own rules apply: pass it through).
        cache_key: a digest of the credential Immich authenticates the request by (:func:`immich_credential`);
            ``None`` when the request carries none.
        effective: that credential as ``(kind, value)``, kind ``"session"`` or ``"api_key"``.
    """

    headers: tuple[tuple[str, str], ...]
    params: tuple[tuple[str, str], ...]
    shared_link: bool
    cache_key: str | None
    effective: tuple[str, str] | None = None

    @property
    def database(self) -> DatabaseCredential | None:
        """The credential as Immich's tables store it (sha256), for :func:`.pages.check_credential`."""
        if self.effective is None:
            return None
        kind, value = self.effective
        return DatabaseCredential(kind, hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest())

    @classmethod
    def from_request(cls, request: Request) -> Credentials:
        """Collect the credentials of ``request``."""
        found = request.headers
        query = request.query_params
        headers = [(name, found[name]) for name in CREDENTIAL_HEADERS if name in found]
        if "cookie" in found:  # every Cookie header, as Immich reads them (joined)
            headers.append(("cookie", "; ".join(found.getlist("cookie"))))
        headers += [(name, found[name]) for name in CONTEXT_HEADERS if name in found]
        params = tuple((name, query[name]) for name in CREDENTIAL_PARAMS if name in query)
        shared = any(found.get(name) for name in SHARED_LINK_HEADERS) or any(
            query.get(name) for name in SHARED_LINK_PARAMS
        )
        effective = immich_credential(request)
        cache_key = None
        if effective is not None:
            # The credential Immich reads, and only it: two requests share an identity only when Immich
            # authenticates them by the same secret.
            kind, value = effective
            cache_key = hashlib.sha256(f"{kind}\x00{value}".encode("utf-8", "surrogatepass")).hexdigest()
        return cls(tuple(headers), params, shared, cache_key, effective)


def parse_cookie(header: str) -> dict[str, str]:
    """Parse a ``Cookie`` header as Immich does (the ``cookie`` package 1.x, ``parseCookie``).

    The FIRST value of a repeated name wins (Starlette keeps the last), names and values are trimmed of
    spaces and tabs, and a value with ``%`` is URI-decoded when it decodes.
    """
    found: dict[str, str] = {}
    index, length = 0, len(header)
    while index < length:
        eq = header.find("=", index)
        if eq == -1:
            break
        end = header.find(";", index)
        end = length if end == -1 else end
        if eq > end:
            index = header.rfind(";", 0, eq) + 1
            continue
        name = header[index:eq].strip(" \t")
        if name not in found:
            value = header[eq + 1 : end].strip(" \t")
            if "%" in value:
                with contextlib.suppress(UnicodeDecodeError, ValueError):
                    value = urllib.parse.unquote(value, errors="strict")
            found[name] = value
        index = end + 1
    return found


def immich_credential(request: Request) -> tuple[str, str] | None:
    """Return the credential Immich authenticates ``request`` by, as ``(kind, value)``, or ``None``.

    Immich's order (``AuthService.validate``): a session token from ``x-immich-user-token``,
    ``x-immich-session-token``, ``?sessionKey=``, ``Authorization: Bearer`` or the cookie
    ``immich_access_token`` (first that is non-empty), else an API key from ``x-api-key`` or ``?apiKey=``.
    Several ``Cookie`` headers are read as one, joined by ``; `` (as Node.js joins them).
    """
    headers, query = request.headers, request.query_params
    bearer = ""
    kind, _, token = headers.get("authorization", "").partition(" ")
    if kind.lower() == "bearer":
        bearer = token.split(" ", 1)[0]
    cookie = parse_cookie("; ".join(headers.getlist("cookie"))).get(ACCESS_COOKIE, "")
    session = (
        headers.get("x-immich-user-token")
        or headers.get("x-immich-session-token")
        or query.get("sessionKey")
        or bearer
        or cookie
    )
    if session:
        return "session", session
    api_key = headers.get("x-api-key") or query.get("apiKey")
    return ("api_key", api_key) if api_key else None


class IdentityCache:
    """Immich's answers to ``GET /api/users/me`` by credential, each kept ``ttl_seconds`` (0 turns it off).

    Bounded to ``max_entries`` (the oldest goes first). Only successful answers are kept. ``clock``
    returns seconds (default :func:`time.monotonic`; tests pass their own).
    """

    def __init__(
        self, ttl_seconds: float, max_entries: int = 4096, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, dict]] = OrderedDict()

    def get(self, key: str | None) -> dict | None:
        """Return the cached user for ``key``, or ``None`` when absent or expired."""
        if key is None or self.ttl_seconds <= 0:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        return entry[1]

    def drop(self, key: str | None) -> None:
        """Forget ``key`` (its credential was found revoked): the next search asks Immich again."""
        if key is not None:
            self._entries.pop(key, None)

    def put(self, key: str | None, user: dict) -> None:
        """Remember ``user`` for ``key`` for ``ttl_seconds``."""
        if key is None or self.ttl_seconds <= 0:
            return
        self._entries[key] = (self._clock() + self.ttl_seconds, user)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


async def identify(
    upstream: Upstream, credentials: Credentials, cache: IdentityCache, *, timeout: float | None = None
) -> dict:
    """Return the caller as Immich sees them: its ``UserAdminResponseDto`` (``id``, ``email``, ...).

    ``timeout``: seconds for Immich's answer (default: the upstream's).

    Raises:
        UpstreamAnswer: Immich answered 401 (no or bad credentials): relay Immich's own answer.
        PassThrough: Immich answered anything else but 200 (an API key without ``user.read``, a shared link
            ...): the request is Immich's to answer.
        ServeError: 502/504 when Immich is unreachable or slow, 502 when its answer makes no sense.
    """
    cached = cache.get(credentials.cache_key)
    if cached is not None:
        return cached
    response = await upstream.call(
        "GET",
        "/api/users/me",
        headers=(*credentials.headers, ("accept", "application/json")),
        params=credentials.params,
        timeout=timeout,
    )
    if response.status_code == 401:
        raise UpstreamAnswer(response)
    if response.status_code != 200:
        raise PassThrough(f"GET /api/users/me answered {response.status_code}")
    try:
        user = response.json()
    except ValueError:
        user = None
    if not isinstance(user, dict) or not isinstance(user.get("id"), str) or not _UUID.match(user["id"]):
        raise ServeError(502, "Immich's answer to GET /api/users/me has no user id")
    user = {**user, "id": user["id"].lower()}
    cache.put(credentials.cache_key, user)
    return user
