"""A fake Immich for serve's tests and benchmark: a Starlette app serving the endpoints serve calls.

Shapes follow Immich's OpenAPI spec (``../shared/immich/immich-openapi-specs.json``, v3.1.0) and its
authentication rules (``server/src/services/auth.service.ts``); users, partners and assets are read from
a real Immich-shaped database (:meth:`FakeImmich.load`), so access decisions match the ranking's data.

Immich's routes:

* ``GET /api/users/me``: ``UserAdminResponseDto``; 401 ``Authentication required`` / ``Invalid user token``
  / ``Invalid API key``; 403 for a shared link or an API key without ``user.read``;
* ``GET /api/assets/{id}``: ``AssetResponseDto`` for the owner (the locked folder only with an elevated
  session) and for partners (not locked); 400 ``Not found or no asset.read access`` otherwise;
* ``POST /api/search/smart``: Immich's own answer (no items), the body recorded in ``smart_requests``;
* ``GET /api/server/ping``: ``{"res": "pong"}``;
* websocket ``/api/socket.io/``: says who is connected, then echoes; ``close:CODE`` closes with CODE.

Routes for passthrough tests (``/api/test/...``): ``echo`` (any method), ``download?size=&chunked=``,
``upload``, ``slow?seconds=``, ``cookies``, ``status/{code}``, ``redirect``.

Every route can be slowed (``delays[route] = seconds``) or made to fail (``failures[route] = status``);
``calls`` counts requests per route.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import psycopg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from immich_search import immich_rows

MIB = 1024 * 1024
PATTERN = bytes(i % 251 for i in range(251 * 264))  # a 64 KiB chunk from any offset below 251
"""What ``/api/test/download`` repeats: byte ``n`` of a download is ``n % 251``."""


@dataclass
class Session:
    """A login: the user and whether the session is elevated (PIN entered: the locked folder is open)."""

    user_id: str
    elevated: bool = False


@dataclass
class ApiKey:
    """An API key: the user and its permissions (``all`` grants everything)."""

    user_id: str
    permissions: tuple[str, ...] = ("all",)


def _utc_iso(value) -> str | None:
    """Immich's timestamps: ISO 8601 in UTC with milliseconds and ``Z``."""
    if value is None:
        return None
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass
class FakeImmich:
    """The fake: data, sessions, recorded calls and the Starlette ``app``."""

    users: dict[str, dict] = field(default_factory=dict)
    assets: dict[str, dict] = field(default_factory=dict)
    partners: set[tuple[str, str]] = field(default_factory=set)  # (sharedById, sharedWithId)
    sessions: dict[str, Session] = field(default_factory=dict)
    api_keys: dict[str, ApiKey] = field(default_factory=dict)
    calls: Counter = field(default_factory=Counter)
    smart_requests: list[dict] = field(default_factory=list)
    delays: dict[str, float] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.app = Starlette(
            routes=[
                Route("/api/users/me", self.users_me, methods=["GET"]),
                Route("/api/assets/{asset_id}", self.asset, methods=["GET"]),
                Route("/api/search/smart", self.smart_search, methods=["POST"]),
                Route("/api/server/ping", self.ping, methods=["GET"]),
                Route(
                    "/api/test/echo",
                    self.echo,
                    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                ),
                Route("/api/test/download", self.download, methods=["GET"]),
                Route("/api/test/upload", self.upload, methods=["POST", "PUT"]),
                Route("/api/test/slow", self.slow, methods=["GET"]),
                Route("/api/test/cookies", self.cookies, methods=["GET"]),
                Route("/api/test/status/{code:int}", self.status, methods=["GET", "POST"]),
                Route("/api/test/redirect", self.redirect, methods=["GET"]),
                WebSocketRoute("/api/socket.io/", self.socket_io),
            ]
        )

    # -- data -----------------------------------------------------------------------------------------------

    def load(self, database_url: str) -> FakeImmich:
        """Read users, partners and assets (with EXIF) from an Immich-shaped database; return ``self``."""
        with psycopg.connect(database_url) as conn:
            conn.row_factory = psycopg.rows.dict_row
            self.users = {str(row["id"]): row for row in conn.execute('SELECT * FROM public."user"')}
            self.partners = {
                (str(row["sharedById"]), str(row["sharedWithId"]))
                for row in conn.execute('SELECT "sharedById", "sharedWithId" FROM public.partner')
            }
            rows = conn.execute(
                'SELECT a.*, e.make, e.model, e.city, e.state, e.country, e.description, e."dateTimeOriginal", '
                'e."exifImageWidth", e."exifImageHeight", e."fileSizeInByte", e.orientation, '
                'e."assetId" IS NOT NULL AS has_exif FROM public.asset a '
                'LEFT JOIN public.asset_exif e ON e."assetId" = a.id'
            ).fetchall()
        self.assets = {str(row["id"]): row for row in rows}
        return self

    def login(self, user_id: str, *, elevated: bool = False) -> str:
        """Start a session for ``user_id``; return its token."""
        token = uuid.uuid4().hex
        self.sessions[token] = Session(user_id, elevated)
        return token

    def add_api_key(self, user_id: str, permissions: tuple[str, ...] = ("all",)) -> str:
        """Create an API key for ``user_id`` with ``permissions``; return the key."""
        key = uuid.uuid4().hex
        self.api_keys[key] = ApiKey(user_id, permissions)
        return key

    def user_dto(self, user_id: str) -> dict:
        """Return ``UserAdminResponseDto``."""
        user = self.users[user_id]
        return {
            "id": user_id,
            "email": user["email"],
            "name": user["name"],
            "avatarColor": "primary",
            "profileImagePath": "",
            "profileChangedAt": _utc_iso(user["createdAt"]),
            "createdAt": _utc_iso(user["createdAt"]),
            "updatedAt": _utc_iso(user["updatedAt"]),
            "deletedAt": _utc_iso(user["deletedAt"]),
            "isAdmin": bool(user["isAdmin"]),
            "license": None,
            "oauthId": "",
            "quotaSizeInBytes": None,
            "quotaUsageInBytes": 0,
            "shouldChangePassword": False,
            "status": "active",
            "storageLabel": None,
        }

    def asset_dto(self, asset_id: str) -> dict:
        """Return ``AssetResponseDto`` as ``GET /api/assets/{id}`` does (with owner, EXIF, people, tags)."""
        row = self.assets[asset_id]
        owner = self.user_dto(str(row["ownerId"]))
        dto = {
            "id": asset_id,
            "ownerId": str(row["ownerId"]),
            "owner": {key: owner[key] for key in ("id", "email", "name", "avatarColor", "profileImagePath")}
            | {"profileChangedAt": owner["profileChangedAt"]},
            "type": row["type"],
            "originalPath": row["originalPath"],
            "originalFileName": row["originalFileName"],
            "originalMimeType": "video/mp4" if row["type"] == "VIDEO" else "image/jpeg",
            "checksum": base64.b64encode(bytes(row["checksum"])).decode(),
            "createdAt": _utc_iso(row["createdAt"]),
            "fileCreatedAt": _utc_iso(row["fileCreatedAt"]),
            "fileModifiedAt": _utc_iso(row["fileModifiedAt"]),
            "localDateTime": _utc_iso(row["localDateTime"]),
            "updatedAt": _utc_iso(row["updatedAt"]),
            "duration": None,
            "hasMetadata": True,
            "width": row["width"],
            "height": row["height"],
            "isArchived": row["visibility"] == "archive",
            "isEdited": bool(row["isEdited"]),
            "isFavorite": bool(row["isFavorite"]),
            "isOffline": bool(row["isOffline"]),
            "isTrashed": row["deletedAt"] is not None,
            "visibility": row["visibility"],
            "thumbhash": None,
            "livePhotoVideoId": str(row["livePhotoVideoId"]) if row["livePhotoVideoId"] else None,
            "libraryId": str(row["libraryId"]) if row["libraryId"] else None,
            "duplicateId": None,
            "people": [],
            "tags": [],
        }
        if row["has_exif"]:
            dto["exifInfo"] = {
                "make": row["make"],
                "model": row["model"],
                "lensModel": None,
                "city": row["city"],
                "state": row["state"],
                "country": row["country"],
                "description": row["description"],
                "dateTimeOriginal": _utc_iso(row["dateTimeOriginal"]),
                "exifImageWidth": row["exifImageWidth"],
                "exifImageHeight": row["exifImageHeight"],
                "fileSizeInByte": row["fileSizeInByte"],
                "orientation": row["orientation"],
                "rating": None,
                "timeZone": None,
            }
        return dto

    # -- Immich's rules -------------------------------------------------------------------------------------

    @staticmethod
    def error(status: int, message: str) -> JSONResponse:
        """Immich v3's error answer: ``{"message"}`` and the correlation id in a header."""
        return JSONResponse({"message": message}, status_code=status, headers={"X-Correlation-ID": uuid.uuid4().hex})

    def authenticate(self, request: Request, permission: str) -> Session | Response:
        """Return the caller's session, or Immich's 401/403 answer (auth.service.ts's order of checks)."""
        headers, query = request.headers, request.query_params
        if headers.get("x-immich-share-key") or query.get("key") or headers.get("x-immich-share-slug"):
            return self.error(403, "Forbidden")  # serve's routes are no shared-link routes
        token = (
            headers.get("x-immich-user-token")
            or headers.get("x-immich-session-token")
            or query.get("sessionKey")
            or (headers.get("authorization", "")[7:] if headers.get("authorization", "").startswith("Bearer ") else "")
            or request.cookies.get("immich_access_token")
        )
        if token:
            session = self.sessions.get(token)
            return session if session is not None else self.error(401, "Invalid user token")
        key = headers.get("x-api-key") or query.get("apiKey")
        if key:
            api_key = self.api_keys.get(key)
            if api_key is None:
                return self.error(401, "Invalid API key")
            if "all" not in api_key.permissions and permission not in api_key.permissions:
                return self.error(403, f"Missing required permission: {permission}")
            return Session(api_key.user_id)
        return self.error(401, "Authentication required")

    async def _enter(self, route: str) -> Response | None:
        self.calls[route] += 1
        if self.delays.get(route):
            await asyncio.sleep(self.delays[route])
        if self.failures.get(route):
            return self.error(self.failures[route], "Internal server error")
        return None

    # -- Immich's routes ------------------------------------------------------------------------------------

    async def users_me(self, request: Request) -> Response:
        """``GET /api/users/me``."""
        failed = await self._enter("users/me")
        if failed:
            return failed
        session = self.authenticate(request, "user.read")
        if isinstance(session, Response):
            return session
        return JSONResponse(self.user_dto(session.user_id))

    async def asset(self, request: Request) -> Response:
        """``GET /api/assets/{id}``: owner or partner access, as Immich's access checks."""
        failed = await self._enter("assets/{id}")
        if failed:
            return failed
        session = self.authenticate(request, "asset.read")
        if isinstance(session, Response):
            return session
        asset_id = request.path_params["asset_id"].lower()
        row = self.assets.get(asset_id)
        if row is not None:
            owner = str(row["ownerId"])
            if owner == session.user_id and (row["visibility"] != "locked" or session.elevated):
                return JSONResponse(self.asset_dto(asset_id))
            if (owner, session.user_id) in self.partners and row["visibility"] != "locked":
                return JSONResponse(self.asset_dto(asset_id))
        return self.error(400, "Not found or no asset.read access")

    async def smart_search(self, request: Request) -> Response:
        """``POST /api/search/smart``: Immich's own (CLIP) answer; here always empty, the body recorded."""
        failed = await self._enter("search/smart")
        if failed:
            return failed
        raw = await request.body()
        try:
            self.smart_requests.append(json.loads(raw))
        except ValueError:
            self.smart_requests.append({"raw": raw.decode("utf-8", "replace")})
            return self.error(400, "Unexpected token in JSON")
        session = self.authenticate(request, "asset.read")
        if isinstance(session, Response):
            return session
        empty = {"total": 0, "count": 0, "items": [], "facets": []}
        return JSONResponse(
            {"albums": empty, "assets": {**empty, "nextPage": None}}, headers={"x-fake-immich": "smart-search"}
        )

    async def ping(self, request: Request) -> Response:
        """``GET /api/server/ping``."""
        failed = await self._enter("server/ping")
        return failed or JSONResponse({"res": "pong"})

    async def socket_io(self, websocket: WebSocket) -> None:
        """A stand-in for Immich's socket.io websocket: greets with the user, echoes, closes on request."""
        self.calls["socket.io"] += 1
        protocols = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol=protocols[0] if protocols else None)
        token = websocket.cookies.get("immich_access_token") or websocket.headers.get("x-immich-user-token")
        session = self.sessions.get(token or "")
        await websocket.send_json(
            {
                "user": session.user_id if session else None,
                "query": websocket.url.query,
                "subprotocol": protocols[0] if protocols else None,
                "forwardedFor": websocket.headers.get("x-forwarded-for"),
            }
        )
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text is not None and text.startswith("close:"):
                    await websocket.close(code=int(text[6:]), reason="bye")
                    return
                if text is not None:
                    await websocket.send_text(f"echo:{text}")
                else:
                    await websocket.send_bytes(b"echo:" + (message.get("bytes") or b""))
        except WebSocketDisconnect:
            return

    # -- passthrough test routes ----------------------------------------------------------------------------

    async def echo(self, request: Request) -> Response:
        """Any method: what arrived (method, raw path, query, headers in order, body digest)."""
        self.calls["test/echo"] += 1
        body = await request.body()
        return JSONResponse(
            {
                "method": request.method,
                "path": request.scope.get("raw_path", b"").decode("latin-1"),
                "query": request.scope.get("query_string", b"").decode("latin-1"),
                "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]],
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "body_length": len(body),
            },
            status_code=200 if request.method != "POST" else 201,
            headers={"x-fake-immich": "echo"},
        )

    async def download(self, request: Request) -> Response:
        """``size`` bytes (default 1 MiB) in 64 KiB chunks; ``chunked=1`` leaves out Content-Length."""
        self.calls["test/download"] += 1
        size = int(request.query_params.get("size", MIB))

        async def chunks():
            sent = 0
            while sent < size:
                piece = min(65536, size - sent)
                start = sent % 251
                yield PATTERN[start : start + piece]
                sent += piece
                await asyncio.sleep(0)

        headers = {"content-type": "application/octet-stream", "content-disposition": 'attachment; filename="x.bin"'}
        if request.query_params.get("chunked") != "1":
            headers["content-length"] = str(size)
        return StreamingResponse(chunks(), headers=headers)

    async def upload(self, request: Request) -> Response:
        """Reads the body as a stream; answers its length and SHA-256."""
        self.calls["test/upload"] += 1
        digest, length = hashlib.sha256(), 0
        async for chunk in request.stream():
            digest.update(chunk)
            length += len(chunk)
        return JSONResponse({"length": length, "sha256": digest.hexdigest()}, status_code=201)

    async def slow(self, request: Request) -> Response:
        """Answers after ``seconds``."""
        self.calls["test/slow"] += 1
        await asyncio.sleep(float(request.query_params.get("seconds", "5")))
        return PlainTextResponse("late")

    async def cookies(self, request: Request) -> Response:
        """201 with two ``Set-Cookie`` headers and a custom header."""
        response = PlainTextResponse("cookies", status_code=201, headers={"x-custom": "kept"})
        response.set_cookie("immich_access_token", "abc", httponly=True)
        response.set_cookie("immich_is_authenticated", "true")
        return response

    async def status(self, request: Request) -> Response:
        """Answers with the status code in the path (no body for 204 and 304)."""
        code = request.path_params["code"]
        if code in (204, 304):
            return Response(status_code=code)
        return JSONResponse({"status": code}, status_code=code)

    async def redirect(self, request: Request) -> Response:
        """A 302 to ``/auth/login`` (serve must not follow it)."""
        return RedirectResponse("/auth/login?autoLaunch=0", status_code=302)


# -- a library to search -------------------------------------------------------------------------------------


def add_user(conn, email: str) -> str:
    """Insert an Immich user; return its id."""
    return immich_rows.upsert_user(conn, email)


def add_four_users(conn) -> dict[str, str]:
    """alice, bob, carol and dave (user ids by name): bob shares with alice in her timeline, carol shares with
    alice but not in her timeline, dave shares nothing."""
    users = {who: add_user(conn, f"{who}@example.com") for who in ("alice", "bob", "carol", "dave")}
    immich_rows.share_partner(conn, users["bob"], users["alice"], in_timeline=True)
    immich_rows.share_partner(conn, users["carol"], users["alice"], in_timeline=False)
    return users


def add_asset(
    conn,
    owner: str,
    name: str,
    lines: list[str],
    *,
    age_days: float,
    visibility: str = "timeline",
    trashed: bool = False,
    favourite: bool = False,
    asset_type: str = "IMAGE",
    city: str | None = None,
) -> str:
    """Insert an asset with EXIF and its OCR row (as sync writes it, without running OCR); return its id."""
    from immich_search.ocr_engine import OcrLine
    from immich_search.sqlfiles import query
    from immich_search.sync.pipeline import ocr_row

    asset_id = str(uuid.uuid4())
    immich_rows.insert_asset(
        conn,
        owner,
        f"/data/upload/{owner}/{name}",
        name,
        hashlib.sha1(asset_id.encode()).digest(),
        asset_id=asset_id,
        asset_type=asset_type,
        taken_at=datetime.now(timezone.utc) - timedelta(days=age_days),
        visibility=visibility,
        trashed=trashed,
        favourite=favourite,
    )
    immich_rows.insert_exif(conn, asset_id, city=city)
    ocr_lines = [
        OcrLine(text, 0.95, (0.1, 0.1 * i, 0.9, 0.1 * i, 0.9, 0.1 * i + 0.05, 0.1, 0.1 * i + 0.05))
        for i, text in enumerate(lines)
    ]
    conn.execute(query("upsert_ocr"), ocr_row(asset_id, ocr_lines, "test-model"))
    return asset_id


# -- real sockets ----------------------------------------------------------------------------------------------


def free_port() -> int:
    """Return a localhost TCP port that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running(app, **config) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free localhost port in a thread; yield its ``http://127.0.0.1:PORT``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options = {"log_level": "warning", "lifespan": "on", "timeout_graceful_shutdown": 2, **config}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
