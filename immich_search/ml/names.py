"""Which CLIP model names Immich may send to ``ml``, and which cn-clip variant answers each.

Immich checks its CLIP model name against its own list (``CLIP_MODEL_INFO`` in Immich's
``server/src/constants.ts``) and sizes ``smart_search.embedding`` from that list's dimension. Both
Immich's server and its machine-learning service keep only the part after the last ``/`` of the name,
so a *marked* name such as ``cn-clip/ViT-B-16__openai`` passes Immich's check (as ``ViT-B-16__openai``,
512 dimensions) and tells the reader which model really answers.

The table :data:`CN_CLIP_IMMICH_NAMES` gives, per cn-clip variant, the name to type in Immich: a name
of Immich's list with the variant's dimension. :func:`resolve_clip_name` decides what to do with a name:

* a name of the table (marked or not): served when it names the loaded variant; refused otherwise
  (the same dimension but another model would mix two models' vectors in one column);
* cn-clip's own names (``ViT-B-16``, ``chinese-clip-vit-base-patch16``): the same rule;
* any other name of Immich's list: served by the loaded variant when the dimensions agree (a user who
  only changes the URL keeps working), refused when they differ (Immich would store vectors of the
  wrong length, or fail to);
* anything else: refused as unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

from immich_search.ml.errors import RequestError
from immich_search.runtime.manifest import ModelVariant, load_manifest

CN_CLIP_IMMICH_NAMES: dict[str, str] = {
    "RN50": "cn-clip/RN50__openai",
    "ViT-B-16": "cn-clip/ViT-B-16__openai",
    "ViT-L-14": "cn-clip/ViT-L-14__openai",
    "ViT-L-14-336": "cn-clip/ViT-L-14-336__openai",
    "ViT-H-14": "cn-clip/ViT-H-14__laion2b-s32b-b79k",
}
"""cn-clip architecture -> the model name to type in Immich's settings (same dimension in Immich's list:
RN50 1024, ViT-B-16 512, ViT-L-14 768, ViT-L-14-336 768, ViT-H-14 1024; cn-clip's ``_MODEL_INFO``)."""

IMMICH_CLIP_DIMENSIONS: dict[str, int] = {
    "RN101__openai": 512,
    "RN101__yfcc15m": 512,
    "ViT-B-16__laion400m_e31": 512,
    "ViT-B-16__laion400m_e32": 512,
    "ViT-B-16__openai": 512,
    "ViT-B-32__laion2b-s34b-b79k": 512,
    "ViT-B-32__laion2b_e16": 512,
    "ViT-B-32__laion400m_e31": 512,
    "ViT-B-32__laion400m_e32": 512,
    "ViT-B-32__openai": 512,
    "XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k": 512,
    "XLM-Roberta-Large-Vit-B-32": 512,
    "RN50x4__openai": 640,
    "ViT-B-16-plus-240__laion400m_e31": 640,
    "ViT-B-16-plus-240__laion400m_e32": 640,
    "XLM-Roberta-Large-Vit-B-16Plus": 640,
    "LABSE-Vit-L-14": 768,
    "RN50x16__openai": 768,
    "ViT-B-16-SigLIP-256__webli": 768,
    "ViT-B-16-SigLIP-384__webli": 768,
    "ViT-B-16-SigLIP-512__webli": 768,
    "ViT-B-16-SigLIP-i18n-256__webli": 768,
    "ViT-B-16-SigLIP__webli": 768,
    "ViT-L-14-336__openai": 768,
    "ViT-L-14-quickgelu__dfn2b": 768,
    "ViT-L-14__laion2b-s32b-b82k": 768,
    "ViT-L-14__laion400m_e31": 768,
    "ViT-L-14__laion400m_e32": 768,
    "ViT-L-14__openai": 768,
    "XLM-Roberta-Large-Vit-L-14": 768,
    "nllb-clip-base-siglip__mrl": 768,
    "nllb-clip-base-siglip__v1": 768,
    "RN50__cc12m": 1024,
    "RN50__openai": 1024,
    "RN50__yfcc15m": 1024,
    "RN50x64__openai": 1024,
    "ViT-H-14-378-quickgelu__dfn5b": 1024,
    "ViT-H-14-quickgelu__dfn5b": 1024,
    "ViT-H-14__laion2b-s32b-b79k": 1024,
    "ViT-L-16-SigLIP-256__webli": 1024,
    "ViT-L-16-SigLIP-384__webli": 1024,
    "ViT-g-14__laion2b-s12b-b42k": 1024,
    "XLM-Roberta-Large-ViT-H-14__frozen_laion5b_s13b_b90k": 1024,
    "ViT-SO400M-14-SigLIP-384__webli": 1152,
    "nllb-clip-large-siglip__mrl": 1152,
    "nllb-clip-large-siglip__v1": 1152,
    "ViT-B-16-SigLIP2__webli": 768,
    "ViT-B-32-SigLIP2-256__webli": 768,
    "ViT-L-16-SigLIP2-256__webli": 1024,
    "ViT-L-16-SigLIP2-384__webli": 1024,
    "ViT-L-16-SigLIP2-512__webli": 1024,
    "ViT-SO400M-14-SigLIP2__webli": 1152,
    "ViT-SO400M-14-SigLIP2-378__webli": 1152,
    "ViT-SO400M-16-SigLIP2-256__webli": 1152,
    "ViT-SO400M-16-SigLIP2-384__webli": 1152,
    "ViT-SO400M-16-SigLIP2-512__webli": 1152,
    "ViT-gopt-16-SigLIP2-256__webli": 1536,
    "ViT-gopt-16-SigLIP2-384__webli": 1536,
}
"""Immich v3.1.0's ``CLIP_MODEL_INFO`` (``server/src/constants.ts``): model name -> ``dimSize``."""


def base_name(name: str) -> str:
    """Return the part of a model name after its last ``/`` (what Immich itself looks up)."""
    return name.rsplit("/", 1)[-1].strip()


def immich_name(variant: ModelVariant) -> str:
    """Return the name to type in Immich for ``variant`` (from :data:`CN_CLIP_IMMICH_NAMES`)."""
    return CN_CLIP_IMMICH_NAMES[variant.arch]


@dataclass(frozen=True)
class ClipNameMatch:
    """How a requested CLIP model name maps onto the loaded variant.

    Attributes:
        requested: the name as Immich sent it.
        dimension: the vector length Immich expects for it.
        exact: True when the name is the loaded variant's own (table or cn-clip name); False when it is
            another model of Immich's list that merely has the same dimension.
    """

    requested: str
    dimension: int
    exact: bool


def _cn_clip_arch(base: str) -> str | None:
    """Return the cn-clip architecture a base name stands for (table name, arch or model name), or None."""
    lowered = base.lower()
    for arch, name in CN_CLIP_IMMICH_NAMES.items():
        if base_name(name).lower() == lowered:
            return arch
    for arch, variant in load_manifest().variants.items():
        if lowered in (arch.lower(), variant.name.lower()):
            return arch
    return None


def resolve_clip_name(name: object, loaded: ModelVariant) -> ClipNameMatch:
    """Check that the loaded cn-clip ``loaded`` may answer for the CLIP model ``name``.

    Args:
        name: ``modelName`` from Immich's request (any JSON value; only strings are accepted).
        loaded: the variant this service runs.

    Returns:
        the match (dimension = ``loaded.embed_dim``).

    Raises:
        RequestError: 422 for a missing, unknown or mismatched name (the message says which name to
            type instead).
    """
    wanted = immich_name(loaded)
    if not isinstance(name, str) or not name.strip():
        raise RequestError(422, f"CLIP modelName missing; this service answers for {wanted!r}")
    base = base_name(name)
    arch = _cn_clip_arch(base)
    if arch is not None:
        if arch != loaded.arch:
            raise RequestError(
                422,
                f"CLIP model {name!r} names cn-clip {arch}, but this service runs cn-clip {loaded.arch} "
                f"({loaded.embed_dim} dimensions): set Immich's CLIP model to {wanted!r} "
                f"or start `immich-search ml --clip-arch {arch}`",
            )
        return ClipNameMatch(requested=name, dimension=loaded.embed_dim, exact=True)
    dimension = IMMICH_CLIP_DIMENSIONS.get(base)
    if dimension is None:
        raise RequestError(
            422, f"unknown CLIP model {name!r} (not in Immich's model list); this service answers for {wanted!r}"
        )
    if dimension != loaded.embed_dim:
        raise RequestError(
            422,
            f"CLIP model {name!r} has {dimension} dimensions in Immich, but this service runs cn-clip "
            f"{loaded.arch} with {loaded.embed_dim}: set Immich's CLIP model to {wanted!r}",
        )
    return ClipNameMatch(requested=name, dimension=dimension, exact=False)
