"""A fake Immich for the sync's API mode: the three endpoints ``ApiSource`` calls, over real HTTP.

Shapes follow Immich's OpenAPI spec (``../shared/immich/immich-openapi-specs.json``, v3.1.0):

* ``GET /api/users/me`` -> ``UserAdminResponseDto`` (subset); 401 ``Invalid API key``;
* ``POST /api/search/metadata`` (``MetadataSearchDto``: ``page``, ``size`` <= 1000, ``updatedAfter``,
  ``withDeleted``) -> ``SearchResponseDto`` with ``assets.items`` (``AssetResponseDto`` subset) and
  ``assets.nextPage``; the caller's assets and those of partners sharing in timeline, never locked ones
  (Immich's ``searchMetadata``);
* ``GET /api/assets/{id}/thumbnail?size=preview`` -> the preview file Immich stored
  (``asset_file`` type preview), ``image/jpeg``; 400 ``Not found or no asset.view access`` when the key's
  user is neither the owner nor a partner; 404 when the asset has no preview.

Everything is read from a real Immich-shaped database and media folder at request time, so assets added
during a test are served too. ``faults[(route, asset_id)]`` is a list of statuses to answer before
answering normally; ``calls`` records ``(route, asset_id or None, key)``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _error(status: int, message: str, error: str) -> JSONResponse:
    return JSONResponse({"message": message, "error": error, "statusCode": status}, status_code=status)


@dataclass
class FakeImmichSync:
    """The fake: API keys (key -> user id), the database and media root it reads, recorded calls."""

    database_url: str
    media_root: Path
    media_location: str = "/data"
    keys: dict[str, str] = field(default_factory=dict)
    faults: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    calls: list[tuple[str, str | None, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app = Starlette(
            routes=[
                Route("/api/users/me", self.users_me, methods=["GET"]),
                Route("/api/search/metadata", self.search_metadata, methods=["POST"]),
                Route("/api/assets/{asset_id}/thumbnail", self.thumbnail, methods=["GET"]),
            ]
        )

    def add_key(self, user_id: str) -> str:
        """Create an API key for ``user_id``; return it."""
        key = uuid.uuid4().hex
        self.keys[key] = user_id
        return key

    def _user(self, request: Request) -> str | None:
        return self.keys.get(request.headers.get("x-api-key", ""))

    def _fault(self, route: str, asset_id: str) -> int | None:
        pending = self.faults.get((route, asset_id))
        return pending.pop(0) if pending else None

    def _visible_owners(self, conn: psycopg.Connection, user_id: str) -> list[str]:
        partners = conn.execute(
            'SELECT "sharedById" FROM public.partner WHERE "sharedWithId" = %s AND "inTimeline"', (user_id,)
        ).fetchall()
        return [user_id] + [str(row[0]) for row in partners]

    async def users_me(self, request: Request) -> Response:
        user_id = self._user(request)
        self.calls.append(("users_me", None, request.headers.get("x-api-key", "")))
        if user_id is None:
            return _error(401, "Invalid API key", "Unauthorized")
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                'SELECT id, email, name, "isAdmin" FROM public."user" WHERE id = %s', (user_id,)
            ).fetchone()
        return JSONResponse({"id": str(row[0]), "email": row[1], "name": row[2], "isAdmin": row[3]})

    async def search_metadata(self, request: Request) -> Response:
        user_id = self._user(request)
        self.calls.append(("search_metadata", None, request.headers.get("x-api-key", "")))
        if user_id is None:
            return _error(401, "Invalid API key", "Unauthorized")
        body = await request.json()
        page, size = int(body.get("page") or 1), int(body.get("size") or 250)
        if not 1 <= size <= 1000:
            return _error(400, "size must not be greater than 1000", "Bad Request")
        with psycopg.connect(self.database_url) as conn:
            owners = self._visible_owners(conn, user_id)
            rows = conn.execute(
                'SELECT id, "ownerId", type, "originalFileName", "updatedAt", "deletedAt", visibility::text '
                "FROM public.asset WHERE \"ownerId\" = ANY(%s::uuid[]) AND visibility <> 'locked' "
                'AND (%s OR "deletedAt" IS NULL) AND (%s::timestamptz IS NULL OR "updatedAt" > %s::timestamptz) '
                'ORDER BY "fileCreatedAt" DESC, id LIMIT %s OFFSET %s',
                (
                    owners,
                    bool(body.get("withDeleted")),
                    body.get("updatedAfter"),
                    body.get("updatedAfter"),
                    size + 1,
                    (page - 1) * size,
                ),
            ).fetchall()
        items = [
            {
                "id": str(asset_id),
                "ownerId": str(owner),
                "type": kind,
                "originalFileName": name,
                "updatedAt": _iso(updated),
                "isTrashed": deleted is not None,
                "visibility": visibility,
            }
            for asset_id, owner, kind, name, updated, deleted, visibility in rows[:size]
        ]
        return JSONResponse(
            {
                "albums": {"total": 0, "count": 0, "items": [], "facets": []},
                "assets": {
                    "total": len(items),
                    "count": len(items),
                    "items": items,
                    "facets": [],
                    "nextPage": str(page + 1) if len(rows) > size else None,
                },
            }
        )

    async def thumbnail(self, request: Request) -> Response:
        asset_id = request.path_params["asset_id"]
        key = request.headers.get("x-api-key", "")
        self.calls.append(("thumbnail", asset_id, key))
        fault = self._fault("thumbnail", asset_id)
        if fault:
            return _error(fault, "injected fault", "Fault")
        user_id = self._user(request)
        if user_id is None:
            return _error(401, "Invalid API key", "Unauthorized")
        if request.query_params.get("size") != "preview":
            return _error(400, "this fake serves size=preview only", "Bad Request")
        with psycopg.connect(self.database_url) as conn:
            owners = self._visible_owners(conn, user_id)
            row = conn.execute(
                'SELECT a."ownerId", a.visibility::text, f.path FROM public.asset a LEFT JOIN public.asset_file f '
                'ON f."assetId" = a.id AND f.type = \'preview\' AND f."isEdited" = false WHERE a.id = %s',
                (asset_id,),
            ).fetchone()
        if row is None or str(row[0]) not in owners or row[1] == "locked":
            return _error(400, "Not found or no asset.view access", "Bad Request")
        if row[2] is None:
            return _error(404, "Asset media not found", "Not Found")
        path = self.media_root / row[2].removeprefix(self.media_location + "/")
        if not path.is_file():
            return _error(404, "Asset media not found", "Not Found")
        return Response(path.read_bytes(), media_type="image/jpeg")


def free_port() -> int:
    """A free TCP port on localhost."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(fake: FakeImmichSync) -> Iterator[str]:
    """Run ``fake`` with uvicorn on a free localhost port in a thread; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake Immich did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
