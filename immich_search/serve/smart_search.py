"""``POST /api/search/smart`` as Immich's clients send it: validation, filters, pages and the answer.

The request is Immich's ``SmartSearchDto`` (``server/src/dtos/search.dto.ts``); the answer its
``SearchResponseDto``. Pages work as Immich's do (``server/src/services/search.service.ts``): ``page``
from 1 (default 1), ``size`` 1 to 1000 (default 100), ``nextPage`` the next page number as a string when
there is one, else ``null``; ``total`` and ``count`` are the number of items on the page; ``albums`` is
empty.

Filters serve applies itself, checked on each hit's ``AssetResponseDto`` with Immich's semantics
(``searchAssetBuilder`` in ``server/src/utils/database.ts``): ``visibility`` (``timeline`` or ``archive``),
``isFavorite``, ``isOffline``, ``isMotion``, ``type``, ``libraryId``, ``takenAfter``/``takenBefore``
(``fileCreatedAt``), ``createdAfter``/``createdBefore``, ``updatedAfter``/``updatedBefore``, ``city``,
``state``, ``country``, ``make``, ``model``, ``lensModel`` and ``rating`` (``null`` meaning "not set"), and
``withExif`` (without it the items carry no ``exifInfo``, as in Immich). ``personIds`` is applied by the
searcher itself, in the ranking (every person given has a visible face on the photo, Immich's ``hasPeople``).
``language`` is ignored. A request with any other filter (:data:`PASSED_THROUGH_FILTERS`) is Immich's to answer.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from immich_search.ranking.query_language import Mode, mode_prefix, parse
from immich_search.serve.errors import BadRequest

DEFAULT_PAGE_SIZE = 100
"""Immich's default ``size`` for smart search."""

MAX_PAGE_SIZE = 1000
MAX_SAFE_INTEGER = 2**53 - 1
"""JavaScript's largest exact integer: the upper bound of ``page`` in Immich's spec."""

MAX_QUERY_LENGTH = 1000
"""Longest query serve answers, in characters (a CLIP text model reads 52 tokens; OCR lines are short)."""

MAX_OFFSET = 2**31 - 1
"""Deepest result offset the ranking functions take (a PostgreSQL ``integer``); deeper pages are empty."""

UUID_V4 = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$")
"""Immich's ``z.uuidv4()``, the pattern of the spec's uuid fields."""

DATE_TIME = re.compile(
    r"^(?:(?:\d\d[2468][048]|\d\d[13579][26]|\d\d0[48]|[02468][048]00|[13579][26]00)-02-29|\d{4}-(?:"
    r"(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|(?:02)-(?:0[1-9]|1\d|2[0-8])))"
    r"T(?:(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d+)?)?(?:Z|([+-](?:[01]\d|2[0-3]):[0-5]\d)))$"
)
"""Immich's ``z.iso.datetime({offset: true})``, the spec's date-time pattern."""

VISIBILITIES = ("archive", "timeline", "hidden", "locked")
ASSET_TYPES = ("IMAGE", "VIDEO", "AUDIO", "OTHER")


@dataclass(frozen=True)
class _Rule:
    kind: str  # string | uuid | int | bool | enum | datetime | uuids
    nullable: bool = False
    minimum: int | None = None
    maximum: int | None = None
    values: tuple[str, ...] = ()


_DATE_FIELDS = (
    "createdAfter",
    "createdBefore",
    "updatedAfter",
    "updatedBefore",
    "trashedAfter",
    "trashedBefore",
    "takenAfter",
    "takenBefore",
)
RULES: dict[str, _Rule] = {
    "query": _Rule("string"),
    "queryAssetId": _Rule("uuid"),
    "language": _Rule("string"),
    "page": _Rule("int", minimum=1, maximum=MAX_SAFE_INTEGER),
    "size": _Rule("int", minimum=1, maximum=MAX_PAGE_SIZE),
    "libraryId": _Rule("uuid", nullable=True),
    "type": _Rule("enum", values=ASSET_TYPES),
    "visibility": _Rule("enum", values=VISIBILITIES),
    "rating": _Rule("int", nullable=True, minimum=1, maximum=5),
    "ocr": _Rule("string"),
    "personIds": _Rule("uuids"),
    "albumIds": _Rule("uuids"),
    "tagIds": _Rule("uuids", nullable=True),
    **{name: _Rule("datetime") for name in _DATE_FIELDS},
    **{name: _Rule("string", nullable=True) for name in ("city", "state", "country", "make", "model", "lensModel")},
    **{
        name: _Rule("bool")
        for name in (
            "isEncoded",
            "isFavorite",
            "isMotion",
            "isOffline",
            "isNotInAlbum",
            "withDeleted",
            "withExif",
        )
    },
}
"""``SmartSearchDto``'s fields and their rules (Immich's zod schema; unknown fields are ignored, as zod does)."""

PASSED_THROUGH_FILTERS = (
    "albumIds",
    "tagIds",
    "isNotInAlbum",
    "isEncoded",
    "trashedAfter",
    "trashedBefore",
    "withDeleted",
    "visibility=hidden",
    "visibility=locked",
    "ocr",
)
"""Filters serve does not apply; a request that uses one is passed through to Immich."""

_EXIF_FILTERS = ("city", "state", "country", "make", "model", "lensModel", "rating")
_DATE_FILTERS = {
    "takenAfter": ("fileCreatedAt", True),
    "takenBefore": ("fileCreatedAt", False),
    "createdAfter": ("createdAt", True),
    "createdBefore": ("createdAt", False),
    "updatedAfter": ("updatedAt", True),
    "updatedBefore": ("updatedAt", False),
}
_FLAG_FILTERS = ("isFavorite", "isOffline")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def _check(path: str, rule: _Rule, value: Any) -> list[str]:
    """Return the problems of one field as ``[path] message`` lines (empty when valid)."""
    if value is None:
        return [] if rule.nullable else [f"[{path}] Invalid input: expected {_expected(rule)}, received null"]
    kind = rule.kind
    if kind in ("string", "uuid", "enum", "datetime") and not isinstance(value, str):
        return [f"[{path}] Invalid input: expected string, received {_json_type(value)}"]
    if kind == "uuid" and not UUID_V4.match(value):
        return [f"[{path}] Invalid UUID"]
    if kind == "enum" and value not in rule.values:
        options = "|".join(f'"{option}"' for option in rule.values)
        return [f"[{path}] Invalid option: expected one of {options}"]
    if kind == "datetime" and not DATE_TIME.match(value):
        return [f"[{path}] Invalid input: expected ISO 8601 datetime string (e.g. 2024-01-01T00:00:00.000Z)"]
    if kind == "bool" and not isinstance(value, bool):
        return [f"[{path}] Invalid input: expected boolean, received {_json_type(value)}"]
    if kind == "int":
        if not _is_int(value):
            received = _json_type(value)
            return [f"[{path}] Invalid input: expected int, received {received}"]
        if rule.minimum is not None and value < rule.minimum:
            return [f"[{path}] Too small: expected number to be >={rule.minimum}"]
        if rule.maximum is not None and value > rule.maximum:
            return [f"[{path}] Too big: expected number to be <={rule.maximum}"]
    if kind == "uuids":
        if not isinstance(value, list):
            return [f"[{path}] Invalid input: expected array, received {_json_type(value)}"]
        problems = []
        for index, item in enumerate(value):
            problems += _check(f"{path}.{index}", _Rule("uuid"), item)
        return problems
    return []


def _expected(rule: _Rule) -> str:
    return {"uuids": "array", "bool": "boolean", "int": "int"}.get(rule.kind, "string")


def parse_json_body(body: bytes) -> Any:
    """Decode a JSON request body strictly (no ``NaN``/``Infinity``, as ``JSON.parse``).

    Raises:
        BadRequest: the body is not UTF-8 JSON.
    """

    def reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(body.decode("utf-8"), parse_constant=reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
        raise BadRequest(f"The request body is not valid JSON: {reason}") from exc


def validate(body: Mapping[str, Any]) -> None:
    """Check a ``SmartSearchDto`` the way Immich's zod schema does, plus serve's own limits on ``query``.

    Raises:
        BadRequest: one or more fields are invalid; the message lists each as ``[field] problem``.
    """
    problems: list[str] = []
    for name, rule in RULES.items():
        if name in body:
            problems += _check(name, rule, body[name])
    query = body.get("query")
    if isinstance(query, str):
        if len(query) > MAX_QUERY_LENGTH:
            problems.append(f"[query] Too long: expected at most {MAX_QUERY_LENGTH} characters, got {len(query)}")
        if "\x00" in query:
            problems.append("[query] must not contain NUL characters")
        try:
            query.encode("utf-8")
        except UnicodeEncodeError:
            problems.append("[query] is not valid Unicode (a lone surrogate)")
    if problems:
        raise BadRequest("; ".join(problems))


def query_mode(query: str) -> str:
    """Return ``"ocr"``, ``"clip"``, ``"desc"`` or ``"plain"``: the mode of a (trimmed) search-bar query.

    The mode prefix is read after the ``person:`` terms are taken out (``person:张三 ocr:发票`` is ``ocr``), as
    the query language reads it. ``person:`` terms alone (``person:张三``) are ``"ocr"``: the person's photos
    are listed from the database, as the OCR searcher and page do.
    """
    parsed = parse(query)
    if parsed.people and not parsed.has_text:
        return "ocr"
    return parsed.mode.value if parsed.mode is not Mode.HYBRID else "plain"


def strip_mode_prefix(query: str) -> str:
    """Return ``query`` without its ``ocr:``/``clip:`` prefix (NFKC-normalised when it had one)."""
    return mode_prefix(query)[1]


def passed_through_filters(body: Mapping[str, Any]) -> list[str]:
    """Return the filters of ``body`` that serve does not apply (see :data:`PASSED_THROUGH_FILTERS`).

    Empty lists, ``false`` for ``isNotInAlbum``/``withDeleted`` and an empty ``ocr`` are no filter (as in
    Immich); ``tagIds: null`` is one (assets without tags).
    """
    found = ["albumIds"] if body.get("albumIds") else []
    if "tagIds" in body and body["tagIds"] != []:
        found.append("tagIds")
    found += [name for name in ("isNotInAlbum", "withDeleted") if body.get(name) is True]
    if "isEncoded" in body:
        found.append("isEncoded")
    found += [name for name in ("trashedAfter", "trashedBefore", "ocr") if body.get(name)]
    if body.get("visibility") in ("hidden", "locked"):
        found.append(f"visibility={body['visibility']}")
    return found


def parse_datetime(text: Any) -> datetime | None:
    """Parse an ISO 8601 date-time with offset (``2024-01-01T00:00:00.000Z``); ``None`` when it is not one."""
    if not isinstance(text, str):
        return None
    match = re.match(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d)(?:\.(\d+))?)?(Z|[+-]\d\d:\d\d)$", text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if offset == "Z":
        zone = timezone.utc
    else:
        sign = 1 if offset[0] == "+" else -1
        zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=zone,
        )
    except ValueError:
        return None


@dataclass(frozen=True)
class AssetFilter:
    """The filters serve applies, as ``(field, value)`` pairs; checked on each hit's ``AssetResponseDto``.

    ``value`` is a bool, a string, ``None`` (for "not set"), an int (``rating``) or a timezone-aware
    :class:`~datetime.datetime` (date filters). An empty filter accepts everything.
    """

    conditions: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> AssetFilter:
        """Build the filter of a validated ``SmartSearchDto``."""
        conditions: list[tuple[str, Any]] = []
        if body.get("visibility") in ("timeline", "archive"):
            conditions.append(("visibility", body["visibility"]))
        for name in (*_FLAG_FILTERS, "isMotion"):
            if isinstance(body.get(name), bool):
                conditions.append((name, body[name]))
        if body.get("type"):
            conditions.append(("type", body["type"]))
        if body.get("libraryId"):
            conditions.append(("libraryId", body["libraryId"].lower()))
        for name in _DATE_FILTERS:
            if body.get(name):
                conditions.append((name, parse_datetime(body[name])))
        for name in _EXIF_FILTERS:
            if name in body:
                conditions.append((name, body[name]))
        return cls(tuple(sorted(conditions, key=lambda item: item[0])))

    def __bool__(self) -> bool:
        return bool(self.conditions)

    @property
    def key(self) -> str:
        """Return a stable text form of the filter (for cache keys)."""
        return json.dumps([[name, str(value)] for name, value in self.conditions])

    def matches(self, asset: Mapping[str, Any]) -> bool:
        """Return whether the ``AssetResponseDto`` ``asset`` passes every condition."""
        return all(_matches(name, value, asset) for name, value in self.conditions)


def _matches(name: str, value: Any, asset: Mapping[str, Any]) -> bool:
    if name in ("visibility", "type"):
        return asset.get(name) == value
    if name in _FLAG_FILTERS:
        return asset.get(name) is value
    if name == "isMotion":
        return (asset.get("livePhotoVideoId") is not None) is value
    if name == "libraryId":
        return str(asset.get("libraryId") or "").lower() == value
    if name in _DATE_FILTERS:
        field_name, after = _DATE_FILTERS[name]
        when = parse_datetime(asset.get(field_name))
        if when is None:
            return False
        return when >= value if after else when <= value
    if name in _EXIF_FILTERS:
        exif = asset.get("exifInfo")
        # Immich joins asset_exif for these filters: an asset without EXIF matches none of them.
        return isinstance(exif, Mapping) and exif.get(name) == value
    raise AssertionError(f"unknown filter {name}")


def is_visible(asset: Mapping[str, Any], user_id: str) -> bool:
    """Return whether an ``AssetResponseDto`` may be shown to ``user_id`` in search results.

    A second check after the ranking's own SQL rules: never trashed, never ``locked`` or ``hidden``, and
    another user's (a partner's) only from their timeline.
    """
    if asset.get("isTrashed") is not False:
        return False
    visibility = asset.get("visibility")
    if visibility not in ("timeline", "archive"):
        return False
    return str(asset.get("ownerId", "")).lower() == user_id or visibility == "timeline"


def search_response(items: Sequence[Mapping[str, Any]], next_page: str | None) -> dict:
    """Return Immich's ``SearchResponseDto`` for one page of assets (no albums, no facets)."""
    return {
        "albums": {"total": 0, "count": 0, "items": [], "facets": []},
        "assets": {
            "total": len(items),
            "count": len(items),
            "items": list(items),
            "facets": [],
            "nextPage": next_page,
        },
    }


@dataclass
class ScanState:
    """A filtered ranking in progress: the accepted asset ids in rank order, how far the ranking was read."""

    accepted: list[str] = field(default_factory=list)
    scanned: int = 0
    exhausted: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ScanCache:
    """Filtered rankings by (user, query, filters), so that page 3 continues where page 2 stopped.

    Entries live ``ttl_seconds`` from their last use; at most ``max_entries`` are kept (oldest first out).
    A search for page 1 starts afresh, so a new search sees new photos.
    """

    def __init__(
        self, ttl_seconds: float = 300.0, max_entries: int = 256, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, ScanState]] = OrderedDict()

    def state(self, key: str, *, fresh: bool = False) -> ScanState:
        """Return the scan state for ``key``; a new one when absent, expired or ``fresh`` is true."""
        now = self._clock()
        entry = self._entries.get(key)
        state = entry[1] if entry is not None and entry[0] > now and not fresh else ScanState()
        self._entries[key] = (now + self.ttl_seconds, state)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return state


RankFn = Callable[[int, int], Awaitable[list[str]]]
"""``rank(limit, offset)``: asset ids of the ranking, best first."""
FetchFn = Callable[[Sequence[str]], Awaitable[dict[str, dict | None]]]
"""``fetch(ids)``: each id's ``AssetResponseDto`` as the caller sees it, ``None`` when not accessible."""


async def collect_page(
    rank: RankFn,
    fetch: FetchFn,
    *,
    page: int,
    size: int,
    user_id: str,
    asset_filter: AssetFilter,
    state: ScanState | None = None,
    max_scan: int = 5000,
) -> tuple[list[dict], bool]:
    """Return one page of visible, filtered assets in rank order and whether a next page exists.

    Without a filter the page is read straight from the ranking (``limit = size + 1`` decides the next
    page, as in Immich). With one, the ranking is read from the start in batches and each hit checked on
    its ``AssetResponseDto``; ``state`` keeps that progress for later pages. At most ``max_scan`` ranked
    hits are read per query: pages beyond them are empty.

    Raises:
        whatever ``rank`` and ``fetch`` raise.
    """
    offset = (page - 1) * size
    if not asset_filter:
        if offset + size + 1 > MAX_OFFSET:
            return [], False
        ids = await rank(size + 1, offset)
        assets = await fetch(ids[:size])
        items = [assets[i] for i in ids[:size] if assets.get(i) is not None and is_visible(assets[i], user_id)]
        return items, len(ids) > size
    state = state if state is not None else ScanState()
    need = offset + size + 1
    seen: dict[str, dict] = {}
    async with state.lock:
        while len(state.accepted) < need and not state.exhausted and state.scanned < max_scan:
            missing = need - len(state.accepted)
            rate = len(state.accepted) / state.scanned if state.scanned else 1.0
            batch = math.ceil(missing / max(rate, 0.05) * 1.1) + 1
            batch = max(1, min(batch, 1000, max_scan - state.scanned))
            ids = await rank(batch, state.scanned)
            assets = await fetch(ids)
            for asset_id in ids:
                asset = assets.get(asset_id)
                if asset is not None and is_visible(asset, user_id) and asset_filter.matches(asset):
                    state.accepted.append(asset_id)
                    seen[asset_id] = asset
            state.scanned += len(ids)
            state.exhausted = len(ids) < batch
        page_ids = state.accepted[offset : offset + size]
        has_next = len(state.accepted) > offset + size
    stale = [asset_id for asset_id in page_ids if asset_id not in seen]
    if stale:
        seen.update({k: v for k, v in (await fetch(stale)).items() if v is not None})
    items = [seen[i] for i in page_ids if i in seen and is_visible(seen[i], user_id) and asset_filter.matches(seen[i])]
    return items, has_next
