"""Loading the cn-clip model the options name (``--clip``, ``--clip-model-dir``, ``--clip-arch``).

Semantic search is optional: without a model, sync indexes OCR text only and plain queries are answered
by OCR alone, and the user is told exactly which files are missing and how to get them.
"""

from __future__ import annotations

import os

from immich_search.errors import ImmichSearchError
from immich_search.runtime.model import ClipModel
from immich_search.runtime.session import ModelError


def download_hint(arch: str | None) -> str:
    """Return what to run to get ``arch``'s model files: ``models download`` where an export is published."""
    from immich_search.runtime.download import downloadable_archs
    from immich_search.runtime.manifest import load_manifest

    try:
        name = load_manifest().variant(arch).arch
    except ImmichSearchError:
        return "see `immich-search models list`"
    if name in downloadable_archs():
        return f"to download it run `immich-search models download {name}`"
    return f"no published export of {name}: export it with `immich-search models export --arch {name}`"


def load_clip_model(
    clip: bool | None, model_dir: str | os.PathLike[str] | None, arch: str | None, role: str
) -> tuple[ClipModel | None, str | None]:
    """Load the cn-clip model the options name, ready for ``role`` (``image`` or ``text``).

    Args:
        clip: ``True`` (required), ``False`` (off) or ``None`` (used when present).
        model_dir: the model folder, ``None`` for the default (env ``IMMICH_SEARCH_MODEL_DIR``, else the
            user's data folder; see :meth:`ClipModel.load`).
        arch: the cn-clip variant, ``None`` for the manifest's default.
        role: ``"image"`` (sync) or ``"text"`` (search): which encoder is built now.

    Returns:
        ``(model, None)`` when it loaded; ``(None, reason)`` when it is off or missing and not required
        (``reason`` says what is missing and how to get it; ``None`` when turned off with ``--no-clip``).

    Raises:
        ModelError: ``clip`` is ``True`` and the model cannot be loaded.
        ConfigError: an unknown ``arch``.
    """
    if clip is False:
        return None, None
    from immich_search.runtime.backend import load_clip

    try:
        model = load_clip(model_dir, arch)  # on the device of --device / IMMICH_SEARCH_DEVICE
        # Build the encoder now: a wrong file fails here, with its path, not halfway through a sync.
        _ = model.image_encoder if role == "image" else model.text_encoder
    except ModelError as error:
        error = ModelError(f"{error}; {download_hint(arch)}")
        if clip:
            raise error from None
        return None, f"semantic search is off: {error}"
    return model, None
