"""Command-line options shared by several commands, each declared once here.

* where previews come from and where text comes from (``sync``, ``reprocess``);
* the OCR engine and its detector size (``sync``, ``reprocess``);
* the cn-clip model folder and variant (``sync``, ``search``, ``embed``, ``reprocess``, ``serve``,
  ``models``) and ``--clip/--no-clip``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from immich_search.ocr.registry import DEFAULT_ENGINE, DET_MAX_SIDE_ENV, ENGINE_ENV, ENGINES
from immich_search.runtime.backend import DEVICE_ENV, DEVICES, NPU_CORES_ENV
from immich_search.runtime.manifest import MODEL_DIR_ENV

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


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
                help="Immich's address for --source api and --write-immich, e.g. http://immich:2283 (env IMMICH_URL).",
            ),
            click.option(
                "--api-key",
                "api_keys",
                envvar="IMMICH_API_KEY",
                metavar="KEY[,KEY...]",
                help="Immich API keys for --source api and --write-immich, comma-separated, one per user "
                "(env IMMICH_API_KEY).",
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


def model_dir_option(*names: str, read_env: bool = True, help: str | None = None) -> Decorator:
    """Return the option naming the cn-clip model folder (a :class:`~pathlib.Path` or ``None``).

    Args:
        names: the option's names and parameter name; default ``--clip-model-dir`` (``models`` uses
            ``--model-dir``).
        read_env: also read ``$IMMICH_SEARCH_MODEL_DIR``. ``serve`` does not: a model folder given to
            serve switches plain queries to the hybrid ranking, which must be asked for, not inherited
            from the image's environment.
        help: the help text; default says where the folder is looked for.
    """
    default_help = (
        f"Folder of the cn-clip ONNX models (env {MODEL_DIR_ENV}; default <user data dir>/immich-search/models)."
    )
    return click.option(
        *(names or ("--clip-model-dir",)),
        type=click.Path(file_okay=False, path_type=Path),
        envvar=MODEL_DIR_ENV if read_env else None,
        help=help or default_help,
    )


def clip_arch_option(*names: str, read_env: bool = True) -> Decorator:
    """Return the option naming the cn-clip variant (``ViT-B-16``...; ``None`` for the manifest's default)."""
    return click.option(
        *(names or ("--clip-arch",)),
        metavar="ARCH",
        envvar="IMMICH_SEARCH_CLIP_ARCH" if read_env else None,
        help="cn-clip variant (see `immich-search models list`; default ViT-B-16).",
    )


def clip_model_location(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--clip-model-dir`` and ``--clip-arch`` to a click command.

    The command receives ``clip_model_dir`` (a path or ``None``) and ``clip_arch`` (``None`` for the
    manifest's default). ``--device`` and ``--npu-cores`` (:func:`device_options`) come with them and reach
    the model loader through the environment.
    """
    return device_options(model_dir_option()(clip_arch_option()(command)))


def clip_model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--clip/--no-clip`` and :func:`clip_model_location`'s options to a click command.

    The command also receives ``clip``: ``True`` (required), ``False`` (off) or ``None`` (when a model is
    present).
    """
    command = clip_model_location(command)
    return click.option(
        "--clip/--no-clip",
        default=None,
        help="Require semantic search (fail without a model), or turn it off; default: on when a model is present.",
    )(command)


def _export_env(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """Return a click callback that puts a given value into the environment (for child processes)."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value:
            os.environ[name] = str(value)
        return value

    return callback


def device_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--device`` and ``--npu-cores`` to a click command (values go to the environment, not kwargs)."""
    command = click.option(
        "--npu-cores",
        metavar="LIST",
        expose_value=False,
        callback=_export_env(NPU_CORES_ENV),
        help=f"With --device rknn: NPU cores to use, one runtime each (default 0,1,2; 'auto'; env {NPU_CORES_ENV}).",
    )(command)
    return click.option(
        "--device",
        type=click.Choice(DEVICES, case_sensitive=False),
        expose_value=False,
        callback=_export_env(DEVICE_ENV),
        help=f"Where cn-clip runs: auto (CUDA if onnxruntime-gpu, else CPU), cpu, cuda, rknn (env {DEVICE_ENV}).",
    )(command)
