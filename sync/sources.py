"""Where preview bytes come from: Immich's media files, mapped from Immich's container to this host.

Immich stores absolute paths as seen inside its own container (``asset_file.path``), under its media
root ``IMMICH_MEDIA_LOCATION`` (``/data`` since v1.137, ``/usr/src/app/upload`` before; Immich's
``server/src/constants.ts``). This host sees the same files at ``media_root``.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from immich_search.errors import ConfigError
from immich_search.sync.errors import PermanentJobError, RetryableJobError

IMMICH_MEDIA_LOCATIONS = ("/data", "/usr/src/app/upload")
"""Immich's media roots inside its container: current (v1.137+) and older releases."""


@dataclass(frozen=True)
class PreviewRequest:
    """A preview to fetch: the asset, the path Immich stored (``None`` when no preview exists yet) and the
    asset's owner (user id; the API source picks that user's API key)."""

    asset_id: str
    preview_path: str | None
    owner_id: str | None = None


class PreviewSource(Protocol):
    """Where preview bytes come from: :class:`MediaFileSource` or :class:`~immich_search.sync.api_source.ApiSource`.

    ``name`` is ``files`` or ``api``; :meth:`read` returns the preview's bytes or raises a
    :class:`~immich_search.sync.errors.JobError` saying why not and whether trying later can help.
    """

    name: str

    def read(self, request: PreviewRequest) -> bytes:
        """Return the preview's bytes."""


class MediaFileSource:
    """Reads previews from Immich's media files mounted on this host.

    Args:
        media_root: this host's view of Immich's media root (e.g. ``/mnt/immich`` holding ``thumbs/``).
        immich_media_location: the media root as Immich stored it in paths; ``None`` recognises both
            :data:`IMMICH_MEDIA_LOCATIONS`.

    Raises:
        ConfigError: ``media_root`` is not a directory.
    """

    name = "files"

    def __init__(self, media_root: str | os.PathLike[str], immich_media_location: str | None = None) -> None:
        self.media_root = Path(media_root)
        if not self.media_root.is_dir():
            raise ConfigError(
                f"media root {self.media_root} is not a directory: pass --media-root with the host path of "
                "Immich's UPLOAD_LOCATION (the folder holding thumbs/)"
            )
        self.prefixes = (immich_media_location,) if immich_media_location else IMMICH_MEDIA_LOCATIONS

    def layout_warning(self) -> str | None:
        """Return a warning when the media root does not look like Immich's (no ``thumbs/`` in it), else ``None``.

        Immich keeps every preview under ``UPLOAD_LOCATION/thumbs/<user>/...``; a media root without that
        folder (a parent or a sibling folder given by mistake) would fail every asset with "preview file not
        found". When a folder inside the root has ``thumbs/``, the warning names it.
        """
        if (self.media_root / "thumbs").is_dir():
            return None
        try:
            inside = sorted(child for child in self.media_root.iterdir() if (child / "thumbs").is_dir())
        except OSError:
            inside = []
        hint = f"; did you mean --media-root {inside[0]}?" if inside else ""
        return (
            f"media root {self.media_root} has no thumbs/ folder, where Immich keeps the previews: every asset "
            f"would fail with 'preview file not found'. Pass the host path of Immich's UPLOAD_LOCATION{hint}"
        )

    def local_path(self, stored_path: str) -> Path:
        """Map a path stored by Immich to this host.

        Raises:
            PermanentJobError: the path is outside Immich's media root or climbs out with ``..``.
        """
        stored = PurePosixPath(stored_path)
        if ".." in stored.parts:
            raise PermanentJobError(f"preview path {stored_path!r} contains '..'")
        for prefix in self.prefixes:
            root = PurePosixPath(prefix)
            if stored == root or root in stored.parents:
                return self.media_root.joinpath(*stored.relative_to(root).parts)
        if not stored.is_absolute():
            return self.media_root.joinpath(*stored.parts)
        raise PermanentJobError(
            f"preview path {stored_path!r} is not under Immich's media root {' or '.join(self.prefixes)}"
        )

    def read(self, request: PreviewRequest) -> bytes:
        """Return the preview's bytes.

        Raises:
            RetryableJobError: no preview yet, the file is missing, unreadable or an I/O error occurred.
            PermanentJobError: the path cannot be mapped, or it is a directory.
        """
        if not request.preview_path:
            raise RetryableJobError("Immich has not generated a preview for this asset yet")
        path = self.local_path(request.preview_path)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise RetryableJobError(f"preview file not found: {path}") from None
        except PermissionError:
            raise RetryableJobError(f"preview file not readable (permission denied): {path}") from None
        except IsADirectoryError:
            raise PermanentJobError(f"preview path is a directory: {path}") from None
        except OSError as exc:
            if exc.errno == errno.EISDIR:
                raise PermanentJobError(f"preview path is a directory: {path}") from None
            raise RetryableJobError(f"cannot read preview {path}: {exc.strerror or exc}") from None
