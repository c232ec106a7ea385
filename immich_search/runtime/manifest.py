"""The Chinese-CLIP model manifest (``models/manifest.json``) and where model files live on disk.

The manifest lists cn-clip's five variants (RN50, ViT-B-16 (default), ViT-L-14, ViT-L-14-336, ViT-H-14)
with their embedding dimension, input resolution, the ONNX file names cn-clip's exporter writes, known
checksums and the PyTorch checkpoint each is exported from; ``models/README.md`` explains the fields.

On disk a model directory holds one folder per variant, named after the architecture, with the files
under the names the exporter gave them, and optionally cn-clip's ``vocab.txt`` at the top::

    <model dir>/vocab.txt
    <model dir>/ViT-B-16/vit-b-16.img.fp32.onnx
    <model dir>/ViT-B-16/vit-b-16.txt.fp32.onnx

Files placed directly in the model directory (no variant folder) are found too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import platformdirs

from immich_search.errors import ConfigError
from immich_search.runtime.session import ModelError

MODEL_DIR_ENV = "IMMICH_SEARCH_MODEL_DIR"
"""Environment variable that overrides the default model directory."""

ROLES = ("image", "text")
"""The two encoders of a CLIP model, in the order files are listed."""


@dataclass(frozen=True)
class ModelFile:
    """One ONNX file of a variant.

    Attributes:
        role: ``image`` or ``text``.
        precision: ``fp32`` or ``fp16`` (the fp16 exports keep float32 inputs and outputs).
        file: file name as cn-clip's exporter writes it, e.g. ``vit-b-16.img.fp32.onnx``.
        sha256: hex SHA-256 of the file, or ``None`` when no published checksum is known.
        external_data: companion files that hold the weights (``<file>.extra_file``), needed beside it.
    """

    role: str
    precision: str
    file: str
    sha256: str | None
    external_data: tuple[str, ...]


@dataclass(frozen=True)
class Checkpoint:
    """The PyTorch checkpoint a variant's ONNX files are exported from.

    Attributes:
        file: checkpoint file name (``clip_cn_vit-b-16.pt``), as in cn-clip's ``_MODELS``.
        url: direct download URL on the Hugging Face Hub (what cn-clip's ``_download`` fetches).
        huggingface, modelscope: the model pages linked from cn-clip's README.
        sha256: hex SHA-256, or ``None`` when unknown.
    """

    file: str
    url: str
    huggingface: str
    modelscope: str
    sha256: str | None


@dataclass(frozen=True)
class ModelVariant:
    """One cn-clip variant.

    Attributes:
        arch: cn-clip's architecture name (``ViT-B-16``), as ``--model-arch`` of its exporter takes it.
        name: the official model name (``chinese-clip-vit-base-patch16``); stored with every vector.
        embed_dim: length of the feature vectors (512 for ViT-B-16).
        image_size: side in pixels of the square input image (224; 336 for ViT-L-14-336).
        context_length: padded text length in tokens (52).
        vision_backbone, text_backbone: the encoders, for display.
        parameters: parameter count as cn-clip's README gives it (``188M``), for display.
        file_prefix: the exporter's ``--save-onnx-path`` base name (``vit-b-16``).
        files: precision -> role -> :class:`ModelFile`.
        checkpoint: the PyTorch checkpoint.
        default: whether this is the manifest's default variant.
    """

    arch: str
    name: str
    embed_dim: int
    image_size: int
    context_length: int
    vision_backbone: str
    text_backbone: str
    parameters: str
    file_prefix: str
    files: Mapping[str, Mapping[str, ModelFile]]
    checkpoint: Checkpoint
    default: bool = False

    @property
    def precisions(self) -> tuple[str, ...]:
        """Return the precisions this variant has files for, in the manifest's order of preference."""
        return tuple(self.files)

    def file(self, role: str, precision: str) -> ModelFile:
        """Return the :class:`ModelFile` for ``role`` (image/text) and ``precision`` (fp32/fp16).

        Raises:
            ConfigError: unknown role or precision.
        """
        if precision not in self.files:
            raise ConfigError(f"{self.arch} has no {precision!r} files; known: {', '.join(self.files)}")
        if role not in self.files[precision]:
            raise ConfigError(f"unknown model role {role!r}; expected one of {', '.join(ROLES)}")
        return self.files[precision][role]

    def all_files(self, precision: str) -> list[str]:
        """Return every file name one precision needs (models, then their external data)."""
        names: list[str] = []
        for role in ROLES:
            entry = self.file(role, precision)
            names.extend([entry.file, *entry.external_data])
        return names


@dataclass(frozen=True)
class VocabInfo:
    """cn-clip's vocabulary: file name, size, SHA-256 and the special tokens' ids."""

    file: str
    size: int
    sha256: str | None
    special_ids: Mapping[str, int]


@dataclass(frozen=True)
class Manifest:
    """The whole manifest: variants by architecture, the default, the vocabulary, tensor names.

    Attributes:
        variants: arch -> :class:`ModelVariant`, in manifest order.
        default_arch: the variant used when none is configured (``ViT-B-16``).
        precisions: precisions in order of preference (``fp32`` first: it runs everywhere; fp16
            needs float16 kernels, which onnxruntime has on CUDA).
        vocab: the tokenizer vocabulary's description.
        image_input, image_output, text_input, text_output: tensor names of cn-clip's ONNX exports.
    """

    variants: Mapping[str, ModelVariant]
    default_arch: str
    precisions: tuple[str, ...]
    context_length: int
    vocab: VocabInfo
    image_input: str
    image_output: str
    text_input: str
    text_output: str

    def variant(self, arch: str | None = None) -> ModelVariant:
        """Return the variant named ``arch`` (case-insensitive), or the default when ``arch`` is None.

        Raises:
            ConfigError: no variant has that name (the message lists the known ones).
        """
        if arch is None:
            return self.variants[self.default_arch]
        for known, variant in self.variants.items():
            if known.lower() == arch.strip().lower():
                return variant
        raise ConfigError(f"unknown cn-clip model {arch!r}; known: {', '.join(self.variants)}")


def _read_manifest_text() -> str:
    """Return the packaged ``manifest.json``; falls back to the source tree when not installed."""
    try:
        return resources.files("immich_search.models").joinpath("manifest.json").read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        # Running from a source checkout (PYTHONPATH=repo root): the package-dir mapping
        # immich_search.models -> models/ only exists once installed.
        source = Path(__file__).resolve().parent.parent / "models" / "manifest.json"
        return source.read_text("utf-8")


def parse_manifest(data: Mapping[str, Any]) -> Manifest:
    """Build a :class:`Manifest` from the decoded JSON, checking the fields the code relies on.

    Raises:
        ModelError: a field is missing or has the wrong type, or the default variant is not listed.
    """
    try:
        precisions = tuple(str(item) for item in data["precisions"])
        context_length = int(data["context_length"])
        variants: dict[str, ModelVariant] = {}
        for arch, entry in data["variants"].items():
            files = {
                precision: {
                    role: ModelFile(
                        role=role,
                        precision=precision,
                        file=str(entry["files"][precision][role]["file"]),
                        sha256=_sha(entry["files"][precision][role].get("sha256")),
                        external_data=tuple(entry["files"][precision][role].get("external_data", ())),
                    )
                    for role in ROLES
                }
                for precision in precisions
                if precision in entry["files"]
            }
            checkpoint = entry["checkpoint"]
            variants[arch] = ModelVariant(
                arch=arch,
                name=str(entry["name"]),
                embed_dim=int(entry["embed_dim"]),
                image_size=int(entry["image_size"]),
                context_length=int(entry.get("context_length", context_length)),
                vision_backbone=str(entry["vision_backbone"]),
                text_backbone=str(entry["text_backbone"]),
                parameters=str(entry.get("parameters", "")),
                file_prefix=str(entry["file_prefix"]),
                files=files,
                checkpoint=Checkpoint(
                    file=str(checkpoint["file"]),
                    url=str(checkpoint["url"]),
                    huggingface=str(checkpoint.get("huggingface", "")),
                    modelscope=str(checkpoint.get("modelscope", "")),
                    sha256=_sha(checkpoint.get("sha256")),
                ),
                default=arch == data["default_arch"],
            )
        vocab = data["vocab"]
        manifest = Manifest(
            variants=variants,
            default_arch=str(data["default_arch"]),
            precisions=precisions,
            context_length=context_length,
            vocab=VocabInfo(
                file=str(vocab["file"]),
                size=int(vocab["size"]),
                sha256=_sha(vocab.get("sha256")),
                special_ids={str(key): int(value) for key, value in vocab["special_ids"].items()},
            ),
            image_input=str(data["image"]["input"]),
            image_output=str(data["image"]["output"]),
            text_input=str(data["text"]["input"]),
            text_output=str(data["text"]["output"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ModelError(f"invalid model manifest: {type(error).__name__}: {error}") from error
    if manifest.default_arch not in manifest.variants:
        raise ModelError(f"invalid model manifest: default {manifest.default_arch!r} is not a variant")
    return manifest


def _sha(value: Any) -> str | None:
    """Validate an optional hex SHA-256 (64 hex digits, stored lower case)."""
    if value is None:
        return None
    text = str(value).lower()
    if len(text) != 64 or any(char not in "0123456789abcdef" for char in text):
        raise ValueError(f"not a hex SHA-256: {value!r}")
    return text


@cache
def load_manifest() -> Manifest:
    """Return the packaged manifest (parsed once per process).

    Raises:
        ModelError: the packaged file is missing or invalid (a broken installation).
    """
    try:
        data = json.loads(_read_manifest_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ModelError(f"cannot read the model manifest models/manifest.json: {error}") from error
    return parse_manifest(data)


def default_model_dir(env: Mapping[str, str] | None = None) -> Path:
    """Return the model directory: ``$IMMICH_SEARCH_MODEL_DIR``, else ``<user data dir>/immich-search/models``
    (platformdirs' user data directory: ``~/.local/share`` on Linux).
    """
    env = os.environ if env is None else env
    configured = env.get(MODEL_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_data_dir("immich-search")) / "models"


def variant_dir(model_dir: str | os.PathLike[str], variant: ModelVariant) -> Path:
    """Return the folder that holds ``variant``'s files under ``model_dir``.

    ``<model_dir>/<arch>`` when it exists or when neither it nor ``model_dir`` holds any of the variant's
    files (where an export should go); ``model_dir`` itself when the files lie there directly.
    """
    root = Path(model_dir)
    nested = root / variant.arch
    if nested.is_dir():
        return nested
    names = {name for precision in variant.precisions for name in variant.all_files(precision)}
    if any((root / name).is_file() for name in names):
        return root
    return nested


def present_precisions(directory: str | os.PathLike[str], variant: ModelVariant) -> list[str]:
    """Return the precisions whose two model files (image and text) both exist in ``directory``.

    External data files are not checked here (``models verify`` does); the order is the manifest's.
    """
    folder = Path(directory)
    return [
        precision
        for precision in variant.precisions
        if all((folder / variant.file(role, precision).file).is_file() for role in ROLES)
    ]
