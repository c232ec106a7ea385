"""The ASGI application of ``immich-search serve`` (Starlette).

``POST /api/search/smart`` whose query serve answers (``ocr:...``, and plain or ``clip:`` queries when a
plain-query searcher is configured), and ``POST /api/search/metadata`` with ``ocr`` (the search bar's own
OCR type), are ranked by immich_search and answered in Immich's own ``SearchResponseDto``; everything else,
websockets included, passes through to Immich (:mod:`immich_search.serve.upstream`). The steps of an
answered ``ocr:`` search:

1. who is calling: Immich's ``GET /api/users/me`` with the caller's credentials (cached briefly);
2. the body checked as Immich checks it (smart search: a 400 in Immich's shape; metadata search: passed
   through, so that Immich says what is wrong);
3. which Immich it is (``GET /api/server/version``, cached): for a version whose items the parity test
   covers (:data:`~immich_search.serve.pages.PARITY_VERSIONS`), one database query checks the credential
   in Immich's tables and builds the whole page (:func:`~immich_search.serve.pages.ocr_page`);
4. otherwise (and for plain queries) the ranking in a worker thread, then each asset's ``AssetResponseDto``
   from ``GET /api/assets/{id}`` with the caller's credentials, concurrently, kept in rank order; what
   Immich refuses, or what is trashed, locked, hidden or a partner's archive, is dropped.

A search that is not answered within the timeout gets a 504, an unreachable Immich a 502, an unreachable
database a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import psycopg
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from immich_search.errors import DatabaseUnavailableError
from immich_search.serve import pages, smart_search
from immich_search.serve.errors import BadRequest, PassThrough, ServeError, UpstreamAnswer, error_response
from immich_search.serve.identity import Credentials, IdentityCache, identify
from immich_search.serve.upstream import CALLS, Upstream, forward_response_headers

log = logging.getLogger("immich_search.serve")

SMART_SEARCH_PATHS = ("/api/search/smart", "/api/search/smart/")
METADATA_SEARCH_PATHS = ("/api/search/metadata", "/api/search/metadata/")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DEADLINE_GRACE_SECONDS = 0.25
"""A search's own deadline comes this long after its Immich calls' (which then say which call was slow)."""
ANSWERED_BY_HEADER = "X-Immich-Search"
"""Response header on the searches serve answered itself: ``ocr`` or ``plain``."""
UPSTREAM_CALLS_HEADER = "X-Immich-Search-Upstream-Calls"
"""Response header on the searches serve answered itself: how many calls to Immich the answer took."""


class Searcher(Protocol):
    """A ranking: asset ids the user may see for a search-bar query, best first.

    Called in a worker thread (it may block on the database); it may also be a coroutine function.
    Returns objects with an ``asset_id`` attribute (:class:`~immich_search.ranking.ocr_search.SearchHit`).
    It must apply Immich's visibility rules itself and never return a locked asset.
    """

    def __call__(
        self, text: str, user_id: str, *, limit: int, offset: int, person_ids: Sequence[str] = ()
    ) -> Sequence[Any]:
        """Return up to ``limit`` hits from rank ``offset`` (0-based) on; with ``person_ids`` (Immich's
        ``personIds``, given only when the request has them) only photos showing every one of them."""


class PageSource(Protocol):
    """Builds a page in the database: :func:`immich_search.serve.pages.ocr_page` with its pool bound.

    Called in a worker thread; returns ``(items, has_next)``; raises
    :class:`~immich_search.serve.pages.CredentialRefused` or a database error.
    """

    def __call__(
        self, text: str, request: pages.PageRequest, credential: pages.DatabaseCredential | None = None
    ) -> tuple[list[dict], bool]:
        """Return one page of ``AssetResponseDto`` items and whether a next page exists."""


@dataclass(frozen=True)
class ServeConfig:
    """Settings of the service.

    Attributes:
        immich_url: Immich's address as this service reaches it (``http://immich-server:2283``).
        timeout: seconds: for each connect, read and write to Immich, and for a whole answered search.
        auth_cache_seconds: how long Immich's answer to ``/api/users/me`` is reused per credential (0: never).
        max_body_bytes: largest search request body read (Immich's own JSON limit, 10 MiB); larger is 413.
        asset_concurrency: ``GET /api/assets/{id}`` calls in flight at once per search.
        max_concurrent_searches: searches ranked and fetched at once; more wait their turn (within their
            deadline), so that under load some searches finish in time rather than all of them late.
        max_scan: ranked hits read at most per filtered query (deeper pages are empty).
        scan_cache_seconds: how long a filtered ranking's progress is kept for its next pages.
        version_cache_seconds: how long Immich's ``/api/server/version`` answer is reused (it decides
            whether pages are built in the database, :data:`~immich_search.serve.pages.PARITY_VERSIONS`).
    """

    immich_url: str
    timeout: float = 30.0
    auth_cache_seconds: float = 10.0
    max_body_bytes: int = 10 * 1024 * 1024
    asset_concurrency: int = 16
    max_concurrent_searches: int = 8
    max_scan: int = 5000
    scan_cache_seconds: float = 300.0
    version_cache_seconds: float = 60.0


@dataclass(frozen=True)
class _Plan:
    kind: str  # "ocr" | "desc" | "plain"
    searcher: Searcher
    query: str
    body: dict
    endpoint: str = "smart"  # "smart" | "metadata"


class SearchService:
    """The state behind the app: the upstream client, the caches and the searchers.

    Args:
        config: the settings.
        ocr_searcher: answers ``ocr:`` queries.
        plain_searcher: answers plain and ``clip:`` queries; ``None`` passes them through to Immich.
        page_source: builds ``ocr:`` pages in the database (:func:`immich_search.serve.pages.ocr_page`
            bound to a pool); ``None``, or an Immich version outside ``PARITY_VERSIONS``, fetches each item
            with ``GET /api/assets/{id}`` instead.
        transport: an httpx transport for the upstream (tests pass ``httpx.ASGITransport(fake_immich)``).
        clock: seconds, for the caches (default :func:`time.monotonic`).
        desc_searcher: answers ``desc:`` queries (vision-model descriptions); ``None`` treats them as plain.

    Raises:
        ValueError: ``config.immich_url`` is not an http(s) URL.
    """

    def __init__(
        self,
        config: ServeConfig,
        *,
        ocr_searcher: Searcher,
        plain_searcher: Searcher | None = None,
        page_source: PageSource | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock=time.monotonic,
        desc_searcher: Searcher | None = None,
    ) -> None:
        self.config = config
        self.page_source = page_source
        self._clock = clock
        self._version: tuple[float, tuple[int, ...] | None] | None = None
        self._version_logged: object = _NOT_LOGGED
        self.upstream = Upstream(config.immich_url, timeout=config.timeout, transport=transport)
        self.identities = IdentityCache(config.auth_cache_seconds, clock=clock)
        self.scans = smart_search.ScanCache(config.scan_cache_seconds, clock=clock)
        self.ocr_searcher = ocr_searcher
        self.plain_searcher = plain_searcher
        self.desc_searcher = desc_searcher
        self._search_slots: asyncio.Semaphore | None = None

    async def aclose(self) -> None:
        """Release the upstream connections."""
        await self.upstream.aclose()

    # -- routes -------------------------------------------------------------------------------------------

    async def smart_search(self, request: Request) -> Response:
        """``POST /api/search/smart``: answer the queries serve ranks, pass the others through."""
        return await self._search_route(request, "smart")

    async def metadata_search(self, request: Request) -> Response:
        """``POST /api/search/metadata``: answer one with ``ocr`` (the search bar's OCR type) from our
        ranking when its filters can be applied in SQL; pass every other one through."""
        return await self._search_route(request, "metadata")

    async def _search_route(self, request: Request, endpoint: str) -> Response:
        try:
            body = await self._read_body(request)
        except ServeError as error:
            return error.response()
        try:
            plan = self._plan(request, body) if endpoint == "smart" else self._plan_metadata(request, body)
        except PassThrough as passing:
            log.debug("search passed through: %s", passing.reason)
            return await self.upstream.proxy(request, body=passing.body if passing.body is not None else body)
        except ServeError as error:
            return error.response()
        started = time.perf_counter()
        calls = [0]
        CALLS.set(calls)  # this request's own task: its Immich calls are counted here
        try:
            deadline = time.monotonic() + self.config.timeout
            answer = await asyncio.wait_for(
                self._answer(request, plan, deadline), self.config.timeout + DEADLINE_GRACE_SECONDS
            )
        except asyncio.TimeoutError:
            message = f"immich-search could not answer this search within {self.config.timeout:g} s"
            log.warning("%s (Immich at %s or the database is slow)", message, self.upstream.display)
            return error_response(504, message)
        except PassThrough as passing:
            log.info("search passed through: %s", passing.reason)
            return await self.upstream.proxy(request, body=passing.body if passing.body is not None else body)
        except UpstreamAnswer as refused:
            return _relay(refused.response)
        except ServeError as error:
            if error.status >= 500:
                log.warning("search failed: %s", error.message)
            return error.response()
        log.info(
            "%s search page %s: %d items in %.0f ms",
            plan.kind,
            plan.body.get("page", 1),
            len(answer["assets"]["items"]),
            (time.perf_counter() - started) * 1000,
        )
        return JSONResponse(answer, headers={ANSWERED_BY_HEADER: plan.kind, UPSTREAM_CALLS_HEADER: str(calls[0])})

    async def passthrough(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every other request, HTTP or websocket: to Immich and back, unchanged."""
        if scope["type"] == "websocket":
            await self.upstream.proxy_websocket(WebSocket(scope, receive, send))
            return
        response = await self.upstream.proxy(Request(scope, receive, send))
        await response(scope, receive, send)

    # -- steps --------------------------------------------------------------------------------------------

    async def _read_body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length", "")
        too_large = ServeError(413, f"request entity too large (more than {limit} bytes)")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    def _plan(self, request: Request, body: bytes) -> _Plan:
        """Decide who answers; raise :class:`PassThrough` for Immich, :class:`BadRequest` for broken JSON."""
        if Credentials.from_request(request).shared_link:
            raise PassThrough("shared link")
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise PassThrough(f"content type {media_type or 'missing'}")
        data = smart_search.parse_json_body(body)
        if not isinstance(data, dict) or not isinstance(data.get("query"), str):
            raise PassThrough("no text query")
        query = data["query"].strip()
        if not query:
            raise PassThrough("empty query")
        mode = smart_search.query_mode(query)
        if mode == "ocr":
            return _Plan("ocr", self.ocr_searcher, query, data)
        if mode == "desc" and self.desc_searcher is not None:
            return _Plan("desc", self.desc_searcher, query, data)
        if self.plain_searcher is not None:
            return _Plan("plain", self.plain_searcher, query, data)
        raise PassThrough(f"{mode} query, no plain-query searcher configured", body=_for_immich(query, data))

    def _plan_metadata(self, request: Request, body: bytes) -> _Plan:
        """A metadata search with ``ocr`` text is ours; anything else, or anything Immich would refuse
        (bad JSON, a field its schema rejects), is Immich's to answer, in its own words."""
        if self.page_source is None:
            raise PassThrough("no database pages")
        if Credentials.from_request(request).shared_link:
            raise PassThrough("shared link")
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise PassThrough(f"content type {media_type or 'missing'}")
        try:
            data = smart_search.parse_json_body(body)
        except BadRequest as error:
            raise PassThrough(error.message) from None
        if not isinstance(data, dict) or not isinstance(data.get("ocr"), str) or not data["ocr"].strip():
            raise PassThrough("no ocr text")
        problems = pages.metadata_problems(data)
        if problems:
            raise PassThrough(f"Immich rejects this body: {problems}")
        return _Plan("ocr", self.ocr_searcher, data["ocr"].strip(), data, endpoint="metadata")

    async def _answer(self, request: Request, plan: _Plan, deadline: float) -> dict:
        """Answer an ``ocr:`` (or plain) search; Immich's calls must all be done by ``deadline`` (monotonic)."""
        credentials = Credentials.from_request(request)
        user = await identify(self.upstream, credentials, self.identities, timeout=_remaining(deadline))
        if plan.endpoint == "smart":
            smart_search.validate(plan.body)
        if plan.kind == "ocr" and self.page_source is not None and await self._builds_pages(deadline):
            unhonoured = pages.unhonoured_filters(plan.body)
            if plan.endpoint == "smart" and plan.body.get("ocr"):
                unhonoured.append("ocr")  # Immich's own OCR filter on top of a smart search: Immich's to answer
            if unhonoured:
                raise PassThrough(f"filters applied by Immich only: {', '.join(unhonoured)}")
            if self._search_slots is None:
                self._search_slots = asyncio.Semaphore(self.config.max_concurrent_searches)
            async with self._search_slots:
                return await self._database_page(plan, credentials, user["id"])
        if plan.endpoint == "metadata":
            raise PassThrough("this Immich version's items are not built here")
        passed = smart_search.passed_through_filters(plan.body)
        if passed:
            raise PassThrough(f"filters serve does not apply: {', '.join(passed)}")
        if self._search_slots is None:  # created in the running loop
            self._search_slots = asyncio.Semaphore(self.config.max_concurrent_searches)
        async with self._search_slots:
            return await self._search(plan, credentials, user["id"], deadline)

    async def _builds_pages(self, deadline: float) -> bool:
        """Whether Immich's version is one whose items serve builds itself (``/api/server/version``,
        cached ``version_cache_seconds``); logs once per version when it is not."""
        now = self._clock()
        if self._version is None or self._version[0] <= now:
            version = await self._immich_version(deadline)
            self._version = (now + self.config.version_cache_seconds, version)
        version = self._version[1]
        supported = version is not None and tuple(version[:2]) in pages.PARITY_VERSIONS
        if not supported and self._version_logged != version:
            self._version_logged = version
            shown = ".".join(map(str, version)) if version else "unknown"
            log.warning(
                "Immich %s is not a version whose search items immich-search builds itself (%s): "
                "each ocr: result is fetched with GET /api/assets/{id} instead (slower), and metadata "
                "searches with ocr pass through to Immich",
                shown,
                ", ".join(f"{major}.{minor}" for major, minor in pages.PARITY_VERSIONS),
            )
        return supported

    async def _immich_version(self, deadline: float) -> tuple[int, ...] | None:
        response = await self.upstream.call(
            "GET", "/api/server/version", headers=(("accept", "application/json"),), timeout=_remaining(deadline)
        )
        try:
            data = response.json() if response.status_code == 200 else None
            return tuple(int(data[part]) for part in ("major", "minor", "patch"))
        except (ValueError, TypeError, KeyError):
            return None

    async def _database_page(self, plan: _Plan, credentials: Credentials, user_id: str) -> dict:
        default_size = smart_search.DEFAULT_PAGE_SIZE if plan.endpoint == "smart" else pages.METADATA_PAGE_SIZE
        page = int(plan.body.get("page") or 1)
        size = int(plan.body.get("size") or default_size)
        if (page - 1) * size + size + 1 > smart_search.MAX_OFFSET:
            return smart_search.search_response([], None)
        request = pages.PageRequest(
            user_id=user_id,
            page=page,
            size=size,
            with_exif=plan.body.get("withExif") is True,
            filters=pages.honoured_filters(plan.body),
            scan=self.config.max_scan,
        )
        try:
            items, has_next = await run_in_threadpool(self.page_source, plan.query, request, credentials.database)
        except pages.CredentialRefused as refused:
            self.identities.drop(credentials.cache_key)
            raise PassThrough(str(refused)) from None
        except Exception as exc:
            raise _search_error(exc) from exc
        return smart_search.search_response(items, str(page + 1) if has_next else None)

    async def _search(self, plan: _Plan, credentials: Credentials, user_id: str, deadline: float) -> dict:
        page = int(plan.body.get("page") or 1)
        size = int(plan.body.get("size") or smart_search.DEFAULT_PAGE_SIZE)
        asset_filter = smart_search.AssetFilter.from_body(plan.body)
        state = None
        if asset_filter:
            key = "\x00".join((user_id, plan.kind, plan.query, asset_filter.key, *sorted(_person_ids(plan.body))))
            state = self.scans.state(key, fresh=page == 1)

        async def rank(limit: int, offset: int) -> list[str]:
            return await self._rank(plan, user_id, limit, offset)

        async def fetch(ids: Sequence[str]) -> dict[str, dict | None]:
            return await self._fetch_assets(credentials, ids, deadline)

        items, has_next = await smart_search.collect_page(
            rank,
            fetch,
            page=page,
            size=size,
            user_id=user_id,
            asset_filter=asset_filter,
            state=state,
            max_scan=self.config.max_scan,
        )
        if plan.body.get("withExif") is not True:
            items = [{key: value for key, value in item.items() if key != "exifInfo"} for item in items]
        return smart_search.search_response(items, str(page + 1) if has_next else None)

    async def _rank(self, plan: _Plan, user_id: str, limit: int, offset: int) -> list[str]:
        try:
            # Immich's personIds, applied in the ranking; only passed when given, so that a searcher without
            # the keyword still answers every other search.
            people = {"person_ids": _person_ids(plan.body)} if plan.body.get("personIds") else {}
            hits = await run_in_threadpool(plan.searcher, plan.query, user_id, limit=limit, offset=offset, **people)
            if inspect.isawaitable(hits):
                hits = await hits
        except Exception as exc:
            if plan.kind == "plain":
                log.warning("plain-query search failed, Immich answers instead: %s", exc)
                raise PassThrough(
                    f"plain-query searcher failed: {exc}", body=_for_immich(plan.query, plan.body)
                ) from exc
            raise _search_error(exc) from exc
        ids = list(dict.fromkeys(str(hit.asset_id).lower() for hit in hits))  # unique, in rank order
        return ids[:limit]

    async def _fetch_assets(
        self, credentials: Credentials, ids: Sequence[str], deadline: float
    ) -> dict[str, dict | None]:
        """Return ``{id: AssetResponseDto or None}``; ``None`` where Immich says not found or no access."""
        gate = asyncio.Semaphore(self.config.asset_concurrency)
        headers = (*credentials.headers, ("accept", "application/json"))

        async def one(asset_id: str) -> dict | None:
            if not _UUID.match(asset_id):
                return None
            async with gate:
                response = await self.upstream.call(
                    "GET",
                    f"/api/assets/{asset_id}",
                    headers=headers,
                    params=credentials.params,
                    timeout=_remaining(deadline),
                )
            if response.status_code in (401, 403):
                raise UpstreamAnswer(response)
            if response.status_code in (400, 404):
                return None  # not found, or no access: never shown
            if response.status_code != 200:
                raise ServeError(502, f"Immich answered {response.status_code} to GET /api/assets/{asset_id}")
            try:
                asset = response.json()
            except ValueError:
                raise ServeError(502, f"Immich's answer to GET /api/assets/{asset_id} is not JSON") from None
            if not isinstance(asset, dict) or str(asset.get("id", "")).lower() != asset_id:
                return None
            return asset

        results = await asyncio.gather(*(one(asset_id) for asset_id in ids), return_exceptions=True)
        for result in results:  # an Immich refusal first: it is the caller's answer
            if isinstance(result, UpstreamAnswer):
                raise result
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return dict(zip(ids, results, strict=True))


_NOT_LOGGED = object()


def _person_ids(body: dict) -> list[str]:
    """Immich's ``personIds`` of a (validated) search body, lower case, as sent (duplicates kept: Immich counts
    them); ``[]`` when absent."""
    return [str(person).lower() for person in body.get("personIds") or ()]


def _remaining(deadline: float) -> float:
    return max(0.001, deadline - time.monotonic())


def _search_error(exc: Exception) -> ServeError:
    if isinstance(exc, (DatabaseUnavailableError, psycopg.OperationalError)):
        return ServeError(503, f"OCR search is unavailable: the database did not answer ({exc})")
    if isinstance(exc, psycopg.DataError):
        return BadRequest(f"[query] cannot be searched: {exc}")
    log.exception("OCR search failed")
    return ServeError(500, f"OCR search failed: {type(exc).__name__}")


def _for_immich(query: str, data: dict) -> bytes | None:
    """The body to pass to Immich for a plain or ``clip:`` query: ``None`` (the client's own) for a plain
    one; without the prefix for ``clip:`` (Immich's own smart search is CLIP already)."""
    if smart_search.query_mode(query) != "clip":
        return None
    stripped = smart_search.strip_mode_prefix(query)
    return _json_bytes({**data, "query": stripped}) if stripped else None


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _relay(response: httpx.Response) -> Response:
    """Return a buffered upstream response as it came (its body already decoded by httpx)."""
    relayed = Response(response.content, status_code=response.status_code)
    headers = [
        (name, value)
        for name, value in forward_response_headers(response.headers.raw)
        if name not in (b"content-length", b"content-encoding")
    ]
    relayed.raw_headers = [*headers, (b"content-length", str(len(response.content)).encode())]
    return relayed


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error answering %s %s", request.method, request.url.path)
    return error_response(500, "Internal server error")


def create_app(
    config: ServeConfig,
    *,
    ocr_searcher: Searcher,
    plain_searcher: Searcher | None = None,
    page_source: PageSource | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock=time.monotonic,
    desc_searcher: Searcher | None = None,
) -> Starlette:
    """Return the ASGI app of ``immich-search serve``; ``app.state.service`` is its :class:`SearchService`.

    Args: as :class:`SearchService`. The upstream connections are closed at lifespan shutdown (or with
    ``await app.state.service.aclose()`` when no server runs the lifespan, as with ``httpx.ASGITransport``).

    Raises:
        ValueError: ``config.immich_url`` is not an http(s) URL.
    """
    service = SearchService(
        config,
        ocr_searcher=ocr_searcher,
        plain_searcher=plain_searcher,
        page_source=page_source,
        transport=transport,
        clock=clock,
        desc_searcher=desc_searcher,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        await service.aclose()

    routes = [Route(path, service.smart_search, methods=["POST"]) for path in SMART_SEARCH_PATHS]
    routes += [Route(path, service.metadata_search, methods=["POST"]) for path in METADATA_SEARCH_PATHS]
    routes.append(Mount("", app=service.passthrough))
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={Exception: _server_error})
    app.state.service = service
    return app
