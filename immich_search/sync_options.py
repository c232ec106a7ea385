"""Command-line options shared by ``sync`` and ``reprocess``: where previews come from, where text comes from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def preview_source_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--media-root``, ``--immich-media-location``, ``--source``, ``--immich-url`` and ``--api-key``.

    The command receives ``media_root``, ``immich_media_location``, ``source`` (``files`` | ``api``),
    ``immich_url`` and ``api_keys`` (the raw comma-separated string or ``None``).
    """
    for decorator in reversed(
        [
            click.option(
                "--media-root",
                envvar="IMMICH_SEARCH_MEDIA_ROOT",
                type=click.Path(file_okay=False),
                help="This host's path to Immich's media root (UPLOAD_LOCATION); default $IMMICH_MEDIA_LOCATION "
                "or /data.",
            ),
            click.option(
                "--immich-media-location",
                metavar="PATH",
                help="The media root as Immich stores it in paths (default: /data or /usr/src/app/upload, detected).",
            ),
            click.option(
                "--source",
                type=click.Choice(["files", "api"]),
                default="files",
                show_default=True,
                help="Read previews from Immich's media files, or download them through Immich's API "
                "(--immich-url, --api-key).",
            ),
            click.option(
                "--immich-url",
                envvar="IMMICH_URL",
                metavar="URL",
                help="Immich's address for --source api, e.g. http://immich:2283 (env IMMICH_URL).",
            ),
            click.option(
                "--api-key",
                "api_keys",
                envvar="IMMICH_API_KEY",
                metavar="KEY[,KEY...]",
                help="Immich API keys for --source api, comma-separated, one per user (env IMMICH_API_KEY).",
            ),
        ]
    ):
        command = decorator(command)
    return command


def ocr_source_option(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add ``--ocr-source auto|immich|rapidocr`` with ``default``; the command receives ``ocr_source``."""
    return click.option(
        "--ocr-source",
        type=click.Choice(["auto", "immich", "rapidocr"]),
        default=default,
        show_default=True,
        help="auto: Immich's own OCR (v2.2+) where it has run, RapidOCR for the rest; immich: only Immich's; "
        "rapidocr: only RapidOCR.",
    )
