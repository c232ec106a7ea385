"""Previews through Immich's HTTP API, for hosts that cannot see Immich's media files (``--source api``).

The queue, discovery and results stay in Immich's database as with the media files; only the bytes come
another way: ``GET /api/assets/{id}/thumbnail?size=preview`` (operation ``viewAsset``, permission
``asset.view``) returns the very preview file Immich stored, so both sources index the same pixels.

Authentication is an API key in the ``x-api-key`` header. An API key sees what its user sees (own assets,
partners', shared albums'), so ``IMMICH_API_KEY`` may hold several comma-separated keys, one per user.
Each key's user comes from ``GET /api/users/me``; an asset is fetched with its owner's key. For an asset
whose owner has no key, the keys' asset lists (``POST /api/search/metadata``, paginated, ``updatedAfter``
for later refreshes; own and partner assets, as Immich's search lists them) tell which key can see it.

Faults: connection errors, timeouts, 429 and 5xx are retried a few times with exponential backoff
(tenacity), then recorded on the job as retryable (the queue retries later); 404 (no preview yet) is
retryable; an asset no key may see is a permanent failure with the reason; a preview over
:data:`MAX_PREVIEW_BYTES` is refused.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import httpx
import tenacity

from immich_search.errors import ConfigError
from immich_search.sync.errors import PermanentJobError, RetryableJobError
from immich_search.sync.sources import PreviewRequest

log = logging.getLogger(__name__)

MAX_PREVIEW_BYTES = 100 * 1024 * 1024
"""Largest preview downloaded (Immich's previews are a few hundred KB)."""

PAGE_SIZE = 1000
"""Assets per ``search/metadata`` page (Immich's maximum)."""

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
"""HTTP statuses worth retrying at once: the server is busy or restarting."""


def split_api_keys(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Return the API keys of ``IMMICH_API_KEY`` (comma-separated) or a list, blanks removed."""
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else list(value)
    return tuple(part.strip() for part in parts if part and part.strip())


def normalise_base_url(url: str) -> str:
    """Return Immich's server URL without a trailing ``/`` or ``/api`` (both spellings are common).

    Raises:
        ConfigError: not an http(s) URL.
    """
    url = (url or "").strip().rstrip("/")
    if url.endswith("/api"):
        url = url[: -len("/api")]
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"IMMICH_URL must be Immich's http(s) address, e.g. http://immich:2283 (got {url!r})")
    return url


@dataclass(frozen=True)
class ApiUser:
    """The user behind an API key: ``index`` (position in ``IMMICH_API_KEY``), ``user_id``, ``email``."""

    index: int
    user_id: str
    email: str


class TransientApiError(Exception):
    """A failure worth retrying at once (connection error, timeout, 429, 5xx); raised by
    :meth:`ApiSource.request` once its retries are spent."""


class ApiSource:
    """Reads previews through Immich's API with one or more API keys.

    Args:
        base_url: Immich's address as this host reaches it (``IMMICH_URL``, e.g. ``http://immich:2283``).
        api_keys: one or more API keys (``IMMICH_API_KEY``, comma-separated), each with ``asset.view``,
            ``asset.read`` and ``user.read`` (or ``all``).
        timeout_s: seconds per HTTP request.
        retries: attempts per request for transient failures.
        backoff_s: first wait between attempts, doubling up to 8 times that.
        refresh_s: at most one refresh of the keys' asset lists per this many seconds.
        client: the ``httpx.Client`` to use (tests); default a new one.

    Raises:
        ConfigError: no key, or a bad URL.
    """

    name = "api"

    def __init__(
        self,
        base_url: str,
        api_keys: str | Sequence[str],
        *,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        refresh_s: float = 60.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self.api_keys = split_api_keys(api_keys)
        if not self.api_keys:
            raise ConfigError("--source api needs an API key: set IMMICH_API_KEY (several: comma-separated)")
        self.retries = max(1, retries)
        self.backoff_s = backoff_s
        self.refresh_s = refresh_s
        self.client = client or httpx.Client(timeout=timeout_s, follow_redirects=True)
        self._users: list[ApiUser] | None = None
        self._visible: dict[str, int] = {}  # asset id -> index of a key that lists it
        self._listed_until: dict[int, str] = {}  # key index -> newest updatedAt seen
        self._last_refresh = float("-inf")
        self._lock = threading.Lock()

    # -- keys and users -------------------------------------------------------------------------------------

    def check(self) -> list[ApiUser]:
        """Ask Immich who each key belongs to (``GET /api/users/me``); cached.

        Raises:
            ConfigError: Immich is unreachable or refuses a key (the message names the key's position,
                never the key).
        """
        with self._lock:
            if self._users is None:
                self._users = [self._whoami(index) for index in range(len(self.api_keys))]
            return list(self._users)

    def _whoami(self, index: int) -> ApiUser:
        where = f"API key #{index + 1} of IMMICH_API_KEY"
        try:
            response = self.request("GET", "/api/users/me", index)
        except TransientApiError as exc:
            raise ConfigError(f"cannot reach Immich at {self.base_url}: {exc}") from None
        if response.status_code in (401, 403):
            status = f"{response.status_code}: {immich_message(response)}"
            raise ConfigError(f"Immich at {self.base_url} refused {where} ({status})")
        if response.status_code != 200:
            raise ConfigError(f"Immich at {self.base_url} answered {response.status_code} for {where}")
        body = response.json()
        return ApiUser(index=index, user_id=str(body["id"]), email=str(body.get("email", "")))

    # -- HTTP -----------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, index: int, **kwargs) -> httpx.Response:
        """One request to Immich with API key ``index`` (position in ``api_keys``), retried on transient
        failures; other statuses are returned as they are.

        ``kwargs`` go to ``httpx.Client.request`` (``json=``, ``params=``); ``accept=`` sets the Accept header.

        Raises:
            TransientApiError: Immich unreachable, timing out, or busy (429, 5xx) after ``retries`` attempts.
        """
        headers = {"x-api-key": self.api_keys[index], "Accept": kwargs.pop("accept", "application/json")}

        def attempt() -> httpx.Response:
            try:
                response = self.client.request(method, self.base_url + path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                raise TransientApiError(f"{type(exc).__name__}: {exc}") from None
            if response.status_code in RETRY_STATUSES:
                raise TransientApiError(f"Immich answered {response.status_code}")
            return response

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientApiError),
            stop=tenacity.stop_after_attempt(self.retries),
            wait=tenacity.wait_exponential(multiplier=self.backoff_s, min=self.backoff_s, max=8 * self.backoff_s),
            reraise=True,
        )
        return retrying(attempt)

    # -- listing --------------------------------------------------------------------------------------------

    def list_assets(self, index: int, updated_after: str | None = None) -> Iterator[dict]:
        """Yield the assets key ``index`` may list (``AssetResponseDto`` dicts), page by page.

        Uses ``POST /api/search/metadata`` (``withDeleted``, oldest change last; ``updatedAfter`` when
        given, an ISO 8601 time).

        Raises:
            RetryableJobError: Immich is unreachable or answered an error.
        """
        page: int | None = 1
        while page is not None:
            body: dict = {"page": page, "size": PAGE_SIZE, "withDeleted": True}
            if updated_after:
                body["updatedAfter"] = updated_after
            try:
                response = self.request("POST", "/api/search/metadata", index, json=body)
            except TransientApiError as exc:
                raise RetryableJobError(f"cannot list assets through Immich's API: {exc}") from None
            if response.status_code != 200:
                status = f"{response.status_code}: {immich_message(response)}"
                raise RetryableJobError(f"Immich answered search/metadata with {status}")
            assets = response.json().get("assets") or {}
            yield from assets.get("items") or []
            next_page = assets.get("nextPage")
            page = int(next_page) if next_page else None

    def _refresh_listing(self) -> None:
        """Add assets listed by each key since the last refresh to the asset -> key map (throttled)."""
        now = time.monotonic()
        if now - self._last_refresh < self.refresh_s:
            return
        self._last_refresh = now
        for index in range(len(self.api_keys)):
            newest = self._listed_until.get(index)
            for item in self.list_assets(index, newest):
                self._visible.setdefault(str(item["id"]), index)
                updated = item.get("updatedAt")
                if updated and (newest is None or updated > newest):
                    newest = updated
            if newest:
                self._listed_until[index] = newest

    def _keys_for(self, request: PreviewRequest) -> list[int]:
        """Key indexes to try for an asset: its owner's keys, then a key that lists it."""
        users = self.check()
        chosen = [user.index for user in users if request.owner_id and user.user_id == request.owner_id]
        if chosen:
            return chosen
        if request.asset_id not in self._visible:
            self._refresh_listing()
        if request.asset_id in self._visible:
            return [self._visible[request.asset_id]]
        return []

    # -- previews -------------------------------------------------------------------------------------------

    def read(self, request: PreviewRequest) -> bytes:
        """Download the asset's preview (JPEG, as Immich stored it).

        Raises:
            RetryableJobError: Immich unreachable or busy after retries, no preview yet (404), a key
                rejected (401).
            PermanentJobError: no API key may see the asset; the preview is larger than
                :data:`MAX_PREVIEW_BYTES`.
        """
        try:
            candidates = self._keys_for(request)
        except ConfigError as exc:
            raise RetryableJobError(str(exc)) from None
        if not candidates:
            raise PermanentJobError(
                f"none of the {len(self.api_keys)} API keys may see this asset "
                f"(owner {request.owner_id or 'unknown'}): "
                "add a key of its owner to IMMICH_API_KEY, then requeue what failed "
                "(psql: SELECT immich_search.requeue_failed();)"
            )
        denied = []
        for index in candidates:
            try:
                response = self.request(
                    "GET",
                    f"/api/assets/{request.asset_id}/thumbnail",
                    index,
                    params={"size": "preview"},
                    accept="image/*",
                )
            except TransientApiError as exc:
                raise RetryableJobError(f"cannot download the preview through Immich's API: {exc}") from None
            if response.status_code == 200:
                data = response.content
                if len(data) > MAX_PREVIEW_BYTES:
                    raise PermanentJobError(f"preview too large: {len(data):,} bytes (limit {MAX_PREVIEW_BYTES:,})")
                return data
            if response.status_code == 404:
                raise RetryableJobError("Immich has no preview for this asset yet (404)")
            if response.status_code == 401:
                raise RetryableJobError(f"Immich rejected API key #{index + 1} (401): {immich_message(response)}")
            denied.append(f"key #{index + 1}: {response.status_code} {immich_message(response)}")
        raise PermanentJobError("Immich refused the preview to every key that may see it (" + "; ".join(denied) + ")")

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()


def immich_message(response: httpx.Response) -> str:
    """Immich's error message (``{"message": ...}``), else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip()
    if isinstance(body, dict) and body.get("message"):
        message = body["message"]
        return "; ".join(map(str, message)) if isinstance(message, list) else str(message)
    return str(body)[:200]
