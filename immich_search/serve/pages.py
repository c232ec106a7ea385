"""Pages of ``AssetResponseDto`` built in the database, for Immich versions whose shape we checked.

An ``ocr:`` search (``POST /api/search/smart``) or a metadata search with ``ocr`` (``POST
/api/search/metadata``) is answered by one query (``serve_ocr_page`` in ``sql/queries/serve.sql``): the
OCR ranking, the request's filters and each item as Immich's own search endpoints build it
(``mapAsset`` over ``searchAssetBuilderLegacy``'s columns, Immich v3.1). No ``GET /api/assets/{id}``.

:data:`PARITY_VERSIONS` lists the Immich versions whose answers tests/test_real_immich_pages.py compared
field by field; with any other version serve fetches each item from Immich instead
(:mod:`immich_search.serve.app`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PARITY_VERSIONS = ((3, 1),)
"""``(major, minor)`` of the Immich versions whose items serve builds itself (checked by the parity test)."""

HONOURED_FILTERS = (
    "id",
    "type",
    "visibility",
    "libraryId",
    "isFavorite",
    "isOffline",
    "isMotion",
    "isEncoded",
    "isNotInAlbum",
    "withStacked",
    "personIds",
    "tagIds",
    "createdAfter",
    "createdBefore",
    "updatedAfter",
    "updatedBefore",
    "takenAfter",
    "takenBefore",
    "city",
    "state",
    "country",
    "make",
    "model",
    "lensModel",
    "rating",
)
"""Request fields applied in SQL, with ``searchAssetBuilderLegacy``'s semantics."""

_NULLABLE_EXIF = {
    "city": "city",
    "state": "state",
    "country": "country",
    "make": "make",
    "model": "model",
    "lensModel": "lens_model",
    "rating": "rating",
}
_DATES = {
    "createdAfter": "created_after",
    "createdBefore": "created_before",
    "updatedAfter": "updated_after",
    "updatedBefore": "updated_before",
    "takenAfter": "taken_after",
    "takenBefore": "taken_before",
}

# Immich's server/src/utils/mime-types.ts (v3.1): extension -> the first MIME type of its list.
_RAW = (
    "3fr ari arw cap cin cr2 cr3 crw dcr dng erf fff iiq k25 kdc mrw nef nrw orf ori pef raf raw rw2 rwl sr2 srf "
    "srw x3f"
)
_RAW_TYPES = {f".{ext}": f"image/{ext}" for ext in _RAW.split()} | {".psd": "image/psd"}
MIME_TYPES: dict[str, str] = {
    ".avif": "image/avif",
    ".bmp": "image/bmp",
    ".gif": "image/gif",
    ".jpeg": "image/jpeg",
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    **_RAW_TYPES,
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".hif": "image/hif",
    ".insp": "image/jpeg",
    ".jp2": "image/jp2",
    ".jpe": "image/jpeg",
    ".jxl": "image/jxl",
    ".mpo": "image/jpeg",
    ".svg": "image/svg",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".3gp": "video/3gpp",
    ".3gpp": "video/3gpp",
    ".avi": "video/avi",
    ".flv": "video/x-flv",
    ".insv": "video/mp4",
    ".m2t": "video/mp2t",
    ".m2ts": "video/mp2t",
    ".m4v": "video/x-m4v",
    ".mkv": "video/x-matroska",
    ".mov": "video/quicktime",
    ".mp4": "video/mp4",
    ".mpe": "video/mpeg",
    ".mpeg": "video/mpeg",
    ".mpg": "video/mpeg",
    ".mts": "video/mp2t",
    ".mxf": "application/mxf",
    ".ts": "video/mp2t",
    ".vob": "video/mpeg",
    ".webm": "video/webm",
    ".wmv": "video/x-ms-wmv",
    ".xmp": "application/xml",
}
"""Immich's ``mimeTypes.lookup`` table (``server/src/utils/mime-types.ts``); anything else is
``application/octet-stream``."""


def mime_type(filename: str) -> str:
    """Return Immich's ``originalMimeType`` for ``filename`` (its extension, case-insensitively).

    Immich's ``getFilenameExtension`` is ``path.extname``: the text from the last dot of the base name,
    none for a name that starts with its only dot.
    """
    base = filename.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    extension = base[dot:].lower() if dot > 0 else ""
    return MIME_TYPES.get(extension, "application/octet-stream")


@dataclass(frozen=True)
class PageRequest:
    """One page to build.

    Attributes:
        user_id: the caller (uuid text, lower case).
        page: 1-based page number; size: items per page (1..1000).
        with_exif: add ``exifInfo`` (and, as Immich's inner join does, leave out assets without EXIF).
        filters: the request's fields among :data:`HONOURED_FILTERS` (validated JSON values).
        scan: ranked hits read at most when a filter is set (deeper pages come out empty).
    """

    user_id: str
    page: int
    size: int
    with_exif: bool
    filters: Mapping[str, Any]
    scan: int = 5000

    def params(
        self, loose: str | None, strict: str | None, ids: list[str] | None = None, people: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Return the parameters of ``serve_ocr_page`` for the tsqueries ``loose`` and ``strict`` (or, with
        ``ids``, for those assets in that order instead of a ranking) and the query's ``person:`` names
        ``people`` (with ``loose`` None: those people's photos, newest first)."""
        offset = (self.page - 1) * self.size
        filtered = bool(self.filters)
        wanted = offset + self.size + 1
        f = self.filters
        params: dict[str, Any] = {
            "ids": ids,
            "people": list(people),
            "loose": loose,
            "strict": strict,
            "user_id": self.user_id,
            # Unfiltered, the ranking's first offset + size + 1 hits make the page; filtered, up to `scan`.
            "k": max(wanted, self.scan) if filtered else wanted,
            "limit": self.size + 1,
            "offset": offset,
            "with_exif": self.with_exif,
            "asset_id": f.get("id"),
            "visibility": f.get("visibility"),
            "type": f.get("type"),
            "library_id": f.get("libraryId"),
            "is_favorite": f.get("isFavorite"),
            "is_offline": f.get("isOffline"),
            "is_motion": f.get("isMotion"),
            "is_encoded": f.get("isEncoded"),
            "without_stacked": f.get("withStacked") is False,
            "not_in_album": f.get("isNotInAlbum") is True,
            "without_tags": "tagIds" in f and f["tagIds"] is None,
            "person_ids": list(f["personIds"]) if f.get("personIds") else None,
            "tag_ids": list(f["tagIds"]) if f.get("tagIds") else None,
        }
        for name, param in _DATES.items():
            params[param] = f.get(name) or None
        for name, param in _NULLABLE_EXIF.items():
            params[f"{param}_set"] = name in f
            params[param] = f.get(name)
        return params


def item_from_row(file_name: str, item: dict, exif: dict | None, with_exif: bool) -> dict:
    """Return the ``AssetResponseDto`` of one ``serve_ocr_page`` row (adds ``originalMimeType``/``exifInfo``)."""
    item = {**item, "originalMimeType": mime_type(file_name)}
    if with_exif and exif is not None:
        item["exifInfo"] = exif
    return item


class CredentialRefused(Exception):
    """Immich's own tables say the caller's credential would not be allowed this search (revoked, expired,
    another user's, or an API key without ``asset.read``): Immich must answer the request itself."""


@dataclass(frozen=True)
class DatabaseCredential:
    """The credential Immich authenticates a request by, as its tables store it.

    Attributes:
        kind: ``"session"`` (a session token: cookie, Bearer, ``x-immich-user-token`` ...) or
            ``"api_key"``.
        hashed: ``sha256(value)`` (32 bytes), how Immich stores both (``CryptoRepository.hashSha256``).
    """

    kind: str
    hashed: bytes


def check_credential(conn, credential: DatabaseCredential | None, user_id: str) -> None:
    """Check in Immich's tables that ``credential`` still belongs to ``user_id`` and may search.

    ``None`` (no credential serve can check) passes. Runs on the page's own connection, so a revoked key
    is refused from the next search on, whatever the identity cache holds.

    Raises:
        CredentialRefused: the credential is unknown, expired, another user's, or lacks ``asset.read``.
    """
    from immich_search.sqlfiles import query

    if credential is None:
        return
    if credential.kind == "session":
        row = conn.execute(query("serve_session_credential"), {"hashed": credential.hashed}).fetchone()
        allowed = row is not None and str(row[0]).lower() == user_id
    else:
        row = conn.execute(query("serve_api_key_credential"), {"hashed": credential.hashed}).fetchone()
        allowed = row is not None and str(row[0]).lower() == user_id and bool(row[1])
    if not allowed:
        raise CredentialRefused(f"Immich's {credential.kind.replace('_', ' ')} table does not allow this search")


_SEGMENTER = None


def _segmenter():
    global _SEGMENTER
    if _SEGMENTER is None:
        from immich_search.ranking.ocr_query import jieba_segmenter

        _SEGMENTER = jieba_segmenter()
    return _SEGMENTER


def ocr_page(
    pool, text: str, request: PageRequest, credential: DatabaseCredential | None = None
) -> tuple[list[dict], bool]:
    """Rank ``text`` by OCR for ``request.user_id`` and build one page of ``AssetResponseDto`` items.

    Args:
        pool: a psycopg ``ConnectionPool`` on Immich's database (migrated).
        text: the query in the search-bar language (``ocr:`` prefix optional; ``person:`` terms keep only
            photos showing every person named, in the ranking, as the request's ``personIds`` do).
        request: the page, the caller and the filters.
        credential: checked first (:func:`check_credential`) on the same connection.

    Returns:
        ``(items, has_next)``: the items best first (at most ``request.size``), and whether a next page
        exists. A query with no searchable character gives ``([], False)``.

    Raises:
        CredentialRefused: see :func:`check_credential`.
        psycopg.Error: the database failed (the pool's ``PoolTimeout`` when it cannot be reached).
    """
    from immich_search.ranking.ocr_query import build_ocr_query
    from immich_search.ranking.query_language import Mode, parse
    from immich_search.sqlfiles import query

    parsed = parse(text, default_mode=Mode.OCR)
    built = build_ocr_query(parsed, _segmenter())
    # person: terms alone (or with Immich's personIds only) list those people's photos, newest first.
    listing = bool(parsed.people or request.filters.get("personIds")) and not parsed.has_text
    with pool.connection() as conn:
        check_credential(conn, credential, request.user_id)
        if built.loose is None and not listing:
            return [], False
        # No server-side prepared statement: each query's text and filters differ (see search_ocr).
        params = request.params(built.loose, built.strict, people=parsed.people)
        rows = conn.execute(query("serve_ocr_page"), params, prepare=False)
        rows = rows.fetchall()
    items = [item_from_row(name, item, exif, request.with_exif) for name, item, exif in rows[: request.size]]
    return items, len(rows) > request.size


METADATA_PAGE_SIZE = 250
"""Immich's default ``size`` of ``POST /api/search/metadata`` (``SearchService.searchMetadata``)."""

_METADATA_ONLY_STRINGS = (
    "description",
    "checksum",
    "originalFileName",
    "originalPath",
    "previewPath",
    "thumbnailPath",
    "encodedVideoPath",
    "deviceId",
    "deviceAssetId",
)


def honoured_filters(body: Mapping[str, Any]) -> dict[str, Any]:
    """Return the filters of a validated search body that change the result, among :data:`HONOURED_FILTERS`.

    As Immich reads them: ``false`` for ``isNotInAlbum`` and ``true`` for ``withStacked`` are no filter, nor
    are empty lists, ``libraryId: null`` or empty dates; ``tagIds: null`` means "no tags" and ``city: null``
    (and the other EXIF fields) "not set".
    """
    found: dict[str, Any] = {}
    for name in ("id", "type", "libraryId", *_DATES):
        if body.get(name):
            found[name] = body[name]
    if body.get("visibility") in ("timeline", "archive"):
        found["visibility"] = body["visibility"]
    for name in ("isFavorite", "isOffline", "isMotion", "isEncoded"):
        if isinstance(body.get(name), bool):
            found[name] = body[name]
    if body.get("isNotInAlbum") is True and not body.get("albumIds"):
        found["isNotInAlbum"] = True
    if body.get("withStacked") is False:
        found["withStacked"] = False
    if body.get("personIds"):
        found["personIds"] = [str(person).lower() for person in body["personIds"]]
    if "tagIds" in body and body["tagIds"] != []:
        found["tagIds"] = [str(tag).lower() for tag in body["tagIds"]] if body["tagIds"] is not None else None
    for name in _NULLABLE_EXIF:
        if name in body:
            found[name] = body[name]
    return found


def unhonoured_filters(body: Mapping[str, Any]) -> list[str]:
    """Return the fields of a search body that the page query cannot apply as Immich does (the request then
    passes through to Immich): ``albumIds`` (Immich then searches everyone's assets in albums the caller
    may read), ``withDeleted``, ``trashedAfter``/``trashedBefore``, ``visibility`` ``hidden``/``locked``,
    ``withPeople`` and the text and path filters of metadata search (``description``, ``originalFileName``,
    ``originalPath``, ``checksum``, ``previewPath``, ``thumbnailPath``, ``encodedVideoPath``, ``deviceId``,
    ``deviceAssetId``). (A smart search that also carries Immich's own ``ocr`` filter passes through too.)"""
    found = ["albumIds"] if body.get("albumIds") else []
    found += [name for name in ("withDeleted", "withPeople") if body.get(name) is True]
    found += [name for name in ("trashedAfter", "trashedBefore", *_METADATA_ONLY_STRINGS) if body.get(name)]
    if body.get("visibility") in ("hidden", "locked"):
        found.append(f"visibility={body['visibility']}")
    return found


def metadata_problems(body: Mapping[str, Any]) -> str:
    """Return why Immich's ``MetadataSearchDto`` schema would reject ``body`` ("" when it would not).

    The fields it shares with ``SmartSearchDto`` are checked by :func:`smart_search.validate`'s rules; the
    others here. A body Immich rejects passes through, so the caller gets Immich's own 400.
    """
    from immich_search.serve.errors import BadRequest
    from immich_search.serve.smart_search import UUID_V4, validate

    shared = {key: value for key, value in body.items() if key not in ("query", "queryAssetId", "language")}
    try:
        validate(shared)
    except BadRequest as error:
        return error.message
    if "id" in body and not (isinstance(body["id"], str) and UUID_V4.match(body["id"])):
        return "[id] Invalid UUID"
    for name in ("withStacked", "withPeople"):
        if name in body and not isinstance(body[name], bool):
            return f"[{name}] expected boolean"
    if "order" in body and body["order"] not in ("asc", "desc"):
        return "[order] Invalid option"
    for name in _METADATA_ONLY_STRINGS:
        if name in body and not isinstance(body[name], str):
            return f"[{name}] expected string"
    return ""


SERVE_POOL = {"wait_timeout": 1.0, "connect_timeout": 2, "check": True}
"""serve's database pool settings (:func:`immich_search.db.open_pool`): with the database down a search
gets its 503 after about a second (libpq's shortest connect timeout is 2 s, the pool's wait 1 s), and a
connection broken by a database restart is replaced when handed out, not found broken by a search."""


def items_by_id(pool, ids: list[str], request: PageRequest) -> list[dict]:
    """Return the ``AssetResponseDto`` items of the assets ``ids`` that ``request.user_id`` may see, in that
    order, with ``request``'s filters and ``withExif`` (page and size are ignored: every id is read).

    Raises:
        psycopg.Error: the database failed.
    """
    from immich_search.sqlfiles import query

    params = {**request.params(None, None, ids=list(ids)), "limit": len(ids) + 1, "offset": 0}
    with pool.connection() as conn:
        rows = conn.execute(query("serve_ocr_page"), params, prepare=False).fetchall()
    return [item_from_row(name, item, exif, request.with_exif) for name, item, exif in rows]


def warm_up(pool, user_id: str) -> bool:
    """Build one (empty) page for ``user_id`` (a user who sees nothing) with a Chinese query: loads jieba's
    dictionary (seconds) and checks the page query against this database before the first real search.

    Returns whether the page query ran. When it does not (an Immich whose tables differ from v3.1's), a
    warning is logged and nothing is raised: serve then only uses it for the versions it was checked on.
    """
    import logging

    import psycopg

    try:
        ocr_page(pool, "ocr:发票 warm up", PageRequest(user_id, 1, 1, True, {}))
    except psycopg.Error as exc:
        logging.getLogger("immich_search.serve").warning("the page query does not run on this database: %s", exc)
        return False
    return True
