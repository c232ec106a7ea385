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


def ocr_engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--ocr-engine`` and ``--ocr-det-max-side``; the command receives ``ocr_engine`` and
    ``ocr_det_max_side`` (``None``: the engine's default)."""
    from immich_search.ocr.registry import DEFAULT_ENGINE, DET_MAX_SIDE_ENV, ENGINE_ENV, ENGINES

    for decorator in reversed(
        [
            click.option(
                "--ocr-engine",
                type=click.Choice(list(ENGINES)),
                envvar=ENGINE_ENV,
                default=DEFAULT_ENGINE,
                show_default=True,
                help=f"The OCR engine that reads previews (env {ENGINE_ENV}); every OCR row records it, see "
                "`immich-search status`. Changing it leaves indexed photos as they are: `sync --force` "
                "re-reads the library with the new one.",
            ),
            click.option(
                "--ocr-det-max-side",
                type=click.IntRange(32, 8192),
                envvar=DET_MAX_SIDE_ENV,
                metavar="PX",
                help=f"Longest side in pixels of the image the text detector sees (env {DET_MAX_SIDE_ENV}; default: "
                "the engine's own, 1600 for faster-paddle, a shorter side of at least 736 for RapidOCR). Lower "
                "is faster and misses small text; recognition always reads the full preview.",
            ),
        ]
    ):
        command = decorator(command)
    return command
