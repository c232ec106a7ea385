"""The CLI's CLIP model options (``--clip``, ``--clip-model-dir``, ``--clip-arch``) and how they load.

Semantic search is optional: without a model, sync indexes OCR text only and plain queries are answered
by OCR alone, and the user is told exactly which files are missing and how to get them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from immich_search.clip_model import ClipModel
from immich_search.errors import ImmichSearchError
from immich_search.model_backend import device_options, load_clip
from immich_search.model_manifest import MODEL_DIR_ENV
from immich_search.model_session import ModelError


def clip_model_location(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--clip-model-dir`` and ``--clip-arch`` to a click command.

    The command receives ``clip_model_dir`` (a path or ``None``) and ``clip_arch`` (``None`` for the
    manifest's default). ``--device`` and ``--npu-cores`` (:func:`~immich_search.model_backend.device_options`)
    come with them and reach :func:`load_clip_model` through the environment.
    """
    command = device_options(command)
    command = click.option(
        "--clip-arch",
        metavar="ARCH",
        envvar="IMMICH_SEARCH_CLIP_ARCH",
        help="cn-clip variant (see `immich-search models list`; default ViT-B-16).",
    )(command)
    return click.option(
        "--clip-model-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=MODEL_DIR_ENV,
        help=f"Folder of the cn-clip ONNX models (env {MODEL_DIR_ENV}).",
    )(command)


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


def download_hint(arch: str | None) -> str:
    """Return what to run to get ``arch``'s model files: ``models download`` where an export is published."""
    from immich_search.model_download import downloadable_archs
    from immich_search.model_manifest import load_manifest

    try:
        name = load_manifest().variant(arch).arch
    except ImmichSearchError:
        return "see `immich-search models list`"
    if name in downloadable_archs():
        return f"to download it run `immich-search models download {name}`"
    return f"no published export of {name}: export it with `immich-search models export --arch {name}`"


def load_clip_model(
    clip: bool | None, model_dir: Path | None, arch: str | None, role: str
) -> tuple[ClipModel | None, str | None]:
    """Load the cn-clip model the options name, ready for ``role`` (``image`` or ``text``).

    Returns:
        ``(model, None)`` when it loaded; ``(None, reason)`` when it is off or missing and not required
        (``reason`` says what is missing and how to get it; ``None`` when turned off with ``--no-clip``).

    Raises:
        ModelError: ``clip`` is ``True`` and the model cannot be loaded.
        ConfigError: an unknown ``arch``.
    """
    if clip is False:
        return None, None
    try:
        model = load_clip(model_dir, arch)
        # Build the encoder now: a wrong file fails here, with its path, not halfway through a sync.
        _ = model.image_encoder if role == "image" else model.text_encoder
    except ModelError as error:
        error = ModelError(f"{error}; {download_hint(arch)}")
        if clip:
            raise error from None
        return None, f"semantic search is off: {error}"
    return model, None
