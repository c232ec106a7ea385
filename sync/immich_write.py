"""Descriptions into Immich's own description field (``sync --write-immich missing|all``).

Immich shows ``asset_exif.description`` in its info panel and searches it (its metadata search's
``description`` filter). The describe task can put its descriptions there, always through Immich's API with
the asset owner's API key, never by writing Immich's tables:

* ``GET /api/assets/{id}`` reads the current text (``exifInfo.description``, ``""`` when none);
* ``PUT /api/assets/{id}`` with ``{"description": TEXT}`` (``UpdateAssetDto``, permission ``asset.update``,
  which Immich v3.1 grants to the owner only: a partner's or album member's key is refused) sets it. Immich
  then also writes the text into the asset's XMP sidecar (``<original>.xmp``, job ``SidecarWrite``), as it
  does for a description typed in its web app.

What we wrote is recorded in ``immich_search.immich_description`` (revision 0010): the text, its SHA-256,
when and by whose key. Modes:

* ``none``: Immich is never called.
* ``missing``: write where Immich's description is empty, or is still exactly the text we wrote last time
  (a newer description replaces our own older one); a text a person wrote or edited is never touched.
* ``all``: write everywhere, replacing whatever Immich had, a person's text included.

A photo in the locked folder is left alone in every mode: Immich lets only a session with the PIN entered
read or change it, never an API key.

API keys come from ``IMMICH_API_KEY`` (comma-separated, one per user), as for ``sync --source api``; each
key's user comes from ``GET /api/users/me``. Faults: Immich unreachable, timing out or answering 429/5xx
(after a few quick retries), or refusing a key (401/403) make the write retryable; an asset whose owner has
no key, or that Immich does not know (400/404), fails for good with the reason. The description stays in our
table either way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import psycopg

from immich_search.errors import ConfigError
from immich_search.sqlfiles import query
from immich_search.sync.api_source import ApiSource, TransientApiError, immich_message
from immich_search.sync.errors import JobError, PermanentJobError, RetryableJobError

log = logging.getLogger(__name__)

WRITE_MODES = ("none", "missing", "all")
"""``--write-immich`` values (see the module doc)."""

WRITE_CONCURRENCY = 4
"""Assets written into Immich at once (each is one GET and at most one PUT, a few ms on Immich's side)."""


@dataclass(frozen=True)
class WriteItem:
    """One description to write: ``asset_id``, ``owner_id`` (Immich user id, ``None`` when unknown),
    ``text`` (the new description), ``ours`` (the text we wrote last time, ``None`` when never), ``locked``
    (the photo is in the locked folder)."""

    asset_id: str
    owner_id: str | None
    text: str
    ours: str | None
    locked: bool = False


@dataclass(frozen=True)
class WriteResult:
    """What happened in Immich: ``action`` is ``written`` (PUT done), ``unchanged`` (Immich already had
    exactly this text), ``kept`` (``missing`` left a person's text alone) or ``locked`` (not tried: a photo
    in the locked folder); ``text`` is our description, ``previous`` Immich's text before (``""`` when none or
    not read), ``owner_id`` the user whose key was used (``""`` when none)."""

    asset_id: str
    action: str
    text: str
    previous: str
    owner_id: str


class ImmichDescriptionWriter:
    """Writes descriptions into Immich with each asset owner's API key.

    Args:
        api: Immich's API with the users' keys (an :class:`ApiSource`; its retries apply).
        mode: ``missing`` or ``all`` (``none`` needs no writer).

    Raises:
        ConfigError: an unknown mode, or ``none``.
    """

    def __init__(self, api: ApiSource, mode: str) -> None:
        if mode not in WRITE_MODES or mode == "none":
            raise ConfigError(f"--write-immich for a writer must be missing or all, got {mode!r}")
        self.api = api
        self.mode = mode

    @property
    def base_url(self) -> str:
        """Immich's address (no trailing ``/`` or ``/api``)."""
        return self.api.base_url

    def _owner_key(self, item: WriteItem) -> int:
        """Index of the owner's key in ``IMMICH_API_KEY``.

        Raises:
            RetryableJobError: Immich unreachable, or refusing a key when asked who it belongs to.
            PermanentJobError: no key of the asset's owner.
        """
        try:
            users = self.api.check()
        except ConfigError as exc:
            raise RetryableJobError(f"description stored; not written into Immich: {exc}") from None
        for user in users:
            if item.owner_id and user.user_id == item.owner_id:
                return user.index
        known = ", ".join(user.email or user.user_id for user in users) or "nobody"
        raise PermanentJobError(
            f"description stored; not written into Immich: IMMICH_API_KEY has no key of the asset's owner "
            f"(user {item.owner_id or 'unknown'}; keys of: {known}). Immich lets only the owner change a "
            "description: add the owner's key, then `immich-search reprocess ID --describe ...` (the stored "
            "description is written, the vision model is not asked again)"
        )

    def _call(self, method: str, item: WriteItem, index: int, **kwargs) -> dict:
        """``method /api/assets/{id}`` with key ``index``; the answer's JSON.

        Raises:
            RetryableJobError: unreachable/busy after retries, or the key refused (401/403).
            PermanentJobError: Immich does not let this key see or change the asset (400/404) or answered
                something else unexpected.
        """
        what = "read" if method == "GET" else "write"
        try:
            response = self.api.request(method, f"/api/assets/{item.asset_id}", index, **kwargs)
        except TransientApiError as exc:
            raise RetryableJobError(
                f"description stored; not written into Immich: cannot reach Immich at {self.base_url}: {exc}"
            ) from None
        status = response.status_code
        if status == 200:
            body = response.json()
            return body if isinstance(body, dict) else {}
        detail = f"{status}: {immich_message(response)}"
        if status in (401, 403):
            raise RetryableJobError(
                f"description stored; not written into Immich: Immich at {self.base_url} refused API key "
                f"#{index + 1} of IMMICH_API_KEY ({detail}); it needs the permissions user.read, asset.read and "
                "asset.update (or all)"
            )
        raise PermanentJobError(
            f"description stored; not written into Immich: Immich answered the {what} of the asset with {detail}"
        )

    def write(self, item: WriteItem) -> WriteResult:
        """Write one description as :attr:`mode` says.

        Raises:
            RetryableJobError: Immich unreachable or busy, a key refused.
            PermanentJobError: no key of the owner, or Immich refused the asset.
        """
        if item.locked:
            # Immich v3.1 lets only a session with the PIN entered (elevated permission) read or change a photo
            # in the locked folder; an API key never may (checkOwnerAccess). The description stays ours.
            return WriteResult(item.asset_id, "locked", item.text, "", "")
        index = self._owner_key(item)
        asset = self._call("GET", item, index)
        previous = (asset.get("exifInfo") or {}).get("description") or ""
        owner = str(item.owner_id)
        if previous == item.text:
            return WriteResult(item.asset_id, "unchanged", item.text, previous, owner)
        if self.mode == "missing" and previous.strip() and previous != item.ours:
            # A person's text (typed in Immich, or from the file's own metadata): never replaced by `missing`.
            return WriteResult(item.asset_id, "kept", item.text, previous, owner)
        self._call("PUT", item, index, json={"description": item.text})
        return WriteResult(item.asset_id, "written", item.text, previous, owner)

    def write_many(self, items: Sequence[WriteItem]) -> list[WriteResult | JobError]:
        """Write ``items`` concurrently (at most :data:`WRITE_CONCURRENCY` at once), in order; a failure is
        returned as that item's :class:`JobError`."""

        def one(item: WriteItem) -> WriteResult | JobError:
            try:
                return self.write(item)
            except JobError as exc:
                return exc

        if not items:
            return []
        with ThreadPoolExecutor(max_workers=min(len(items), WRITE_CONCURRENCY), thread_name_prefix="immich") as pool:
            return list(pool.map(one, items))

    def close(self) -> None:
        """Close the HTTP client."""
        self.api.close()


def build_writer(mode: str, immich_url: str | None, api_keys: Sequence[str]) -> ImmichDescriptionWriter | None:
    """Return the writer ``--write-immich mode`` asks for (``None`` for ``none``).

    Raises:
        ConfigError: an unknown mode, no Immich address, no API key, or a bad URL.
    """
    if mode not in WRITE_MODES:
        raise ConfigError(f"--write-immich must be one of {', '.join(WRITE_MODES)}, got {mode!r}")
    if mode == "none":
        return None
    if not immich_url:
        raise ConfigError(
            f"--write-immich {mode} writes through Immich's API: set its address with --immich-url or IMMICH_URL "
            "(e.g. http://immich:2283)"
        )
    if not api_keys:
        raise ConfigError(
            f"--write-immich {mode} needs the owners' API keys: --api-key or IMMICH_API_KEY, comma-separated, "
            "one per user (Immich lets only an asset's owner change its description)"
        )
    return ImmichDescriptionWriter(ApiSource(immich_url, api_keys), mode)


def database_now(conn: psycopg.Connection) -> datetime:
    """The database's clock (``last_attempt_at`` is stamped by it): pass it to :func:`summary_line` later."""
    return conn.execute(query("database_now")).fetchone()[0]


def summary_line(conn: psycopg.Connection, mode: str, since: datetime) -> str | None:
    """One line saying what the passes since ``since`` did in Immich (``None`` when nothing): descriptions
    written, a person's text kept, photos of the locked folder left alone, writes that failed and wait to be
    retried. Counted from our record (``immich_search.immich_description``), so it covers every worker process."""
    written, kept, locked, failed = conn.execute(query("immich_write_summary"), {"since": since}).fetchone()
    if not (written or kept or locked or failed):
        return None
    parts = [f"{written} description(s) written", f"{kept} written by a person kept"]
    if locked:
        parts.append(f"{locked} in the locked folder left alone (an API key may not change them)")
    parts.append(f"{failed} not written yet (the description is stored; retried later)")
    return f"into Immich (--write-immich {mode}): " + ", ".join(parts)
