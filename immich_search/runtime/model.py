"""Chinese-CLIP encoders: images and texts -> L2-normalised float32 feature vectors.

The models are cn-clip's own ONNX exports (``cn_clip/deploy/pytorch_to_onnx.py``), one file per
encoder:

* image model: input ``image`` float32 ``[B, 3, S, S]`` -> output ``unnorm_image_features`` ``[B, d]``;
* text model: input ``text`` int64 ``[B, 52]`` -> output ``unnorm_text_features`` ``[B, d]``.

cn-clip exports with a fixed batch of 1 (``B`` = 1): such models are called once per item. A model
exported with a dynamic batch axis (a ``dim_param``, or an unknown size) is called once per chunk of up
to ``max_batch`` items. The signature is checked when an encoder is built, so a wrong or damaged file
fails at start-up with a :class:`ModelError` that says what is wrong, not at the first photo.

Outputs are divided by their L2 norm (as cn-clip's deployment guide does before any similarity), so
cosine similarity is a dot product; pgvector's ``<=>`` on them is ``1 - cosine``.

:class:`ClipModel` puts a variant's two encoders and the tokenizer together from a model directory laid
out as :mod:`immich_search.runtime.manifest` describes; each encoder is loaded on first use (a search needs
only the text model, sync only the image model).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from immich_search.runtime.manifest import (
    ModelVariant,
    default_model_dir,
    load_manifest,
    present_precisions,
    variant_dir,
)
from immich_search.runtime.preprocess import preprocess_images
from immich_search.runtime.session import (
    ModelError,
    OnnxSession,
    Session,
    TensorSpec,
    default_onnx_providers,
)
from immich_search.runtime.tokenizer import ClipTokenizer, find_vocab_file

IMAGE_INPUT = "image"
IMAGE_OUTPUT = "unnorm_image_features"
TEXT_INPUT = "text"
TEXT_OUTPUT = "unnorm_text_features"
"""Tensor names cn-clip's exporter gives (``input_names`` / ``output_names`` in pytorch_to_onnx.py)."""

DEFAULT_MAX_BATCH = 32
"""Items per call for models with a dynamic batch axis; bounds memory for large inputs."""

_OUTPUT_DTYPES = ("float32", "float16")


def l2_normalise(features: np.ndarray) -> np.ndarray:
    """Divide each row of ``features`` ``[n, d]`` by its L2 norm; returns float32 ``[n, d]``.

    Raises:
        ModelError: a row is not finite (NaN or infinity, e.g. an fp16 overflow) or is all zeros.
    """
    values = np.asarray(features, dtype=np.float32)
    if not np.all(np.isfinite(values)):
        raise ModelError("the model returned NaN or infinite features")
    norms = np.linalg.norm(values, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise ModelError("the model returned an all-zero feature vector")
    return (values / norms).astype(np.float32, copy=False)


def image_signature(image_size: int, embed_dim: int, batch: int | None = 1) -> tuple[TensorSpec, TensorSpec]:
    """Return the (input, output) :class:`TensorSpec` of a cn-clip image model (for backends like RKNN).

    ``batch`` 1 is cn-clip's export; ``None`` declares a dynamic batch axis.
    """
    return (
        TensorSpec(IMAGE_INPUT, "float32", (batch, 3, image_size, image_size)),
        TensorSpec(IMAGE_OUTPUT, "float32", (batch, embed_dim)),
    )


def text_signature(context_length: int, embed_dim: int, batch: int | None = 1) -> tuple[TensorSpec, TensorSpec]:
    """Return the (input, output) :class:`TensorSpec` of a cn-clip text model (for backends like RKNN)."""
    return (
        TensorSpec(TEXT_INPUT, "int64", (batch, context_length)),
        TensorSpec(TEXT_OUTPUT, "float32", (batch, embed_dim)),
    )


class _Encoder:
    """What both encoders share: signature checks, batching, normalisation."""

    _kind = "model"

    def __init__(
        self,
        session: Session,
        input_name: str,
        input_dtype: str,
        input_tail: tuple[int | None, ...],
        output_name: str,
        embed_dim: int | None,
        max_batch: int,
    ) -> None:
        self.session = session
        self.input_name = input_name
        self.output_name = output_name
        self.max_batch = max(1, int(max_batch))
        where = Path(getattr(session, "path", "model")).name
        expected = TensorSpec(input_name, input_dtype, (1, *input_tail)).describe()
        found = ", ".join(spec.describe() for spec in session.inputs) or "no inputs"
        if len(session.inputs) != 1 or session.inputs[0].name != input_name:
            raise ModelError(
                f"{where} is not a cn-clip {self._kind} model: expected one input {expected}, found {found}"
            )
        spec = session.inputs[0]
        if spec.dtype != input_dtype:
            raise ModelError(f"{where}: input {input_name!r} has type {spec.dtype}, expected {input_dtype}")
        if len(spec.shape) != 1 + len(input_tail):
            raise ModelError(f"{where}: input is {spec.describe()}, expected {expected}")
        for position, (actual, wanted) in enumerate(zip(spec.shape[1:], input_tail, strict=True), start=1):
            if actual is not None and wanted is not None and actual != wanted:
                raise ModelError(f"{where}: input axis {position} has size {actual}, expected {wanted} ({expected})")
        self.dynamic_batch = self._batch_kind(where, spec)
        outputs = {output.name: output for output in session.outputs}
        if output_name not in outputs:
            names = ", ".join(outputs) or "none"
            raise ModelError(f"{where}: no output {output_name!r} (outputs: {names})")
        output = outputs[output_name]
        if output.dtype not in _OUTPUT_DTYPES:
            raise ModelError(f"{where}: output {output_name!r} has type {output.dtype}, expected float32")
        if len(output.shape) != 2:
            raise ModelError(f"{where}: output is {output.describe()}, expected [batch, dim]")
        declared = output.shape[1]
        if declared is not None and embed_dim is not None and declared != embed_dim:
            raise ModelError(f"{where}: output has {declared} dimensions, expected {embed_dim}")
        self.embed_dim: int | None = declared if declared is not None else embed_dim
        self._where = where

    @staticmethod
    def _batch_kind(where: str, spec: TensorSpec) -> bool:
        """Return True for a dynamic batch axis, False for a batch fixed at 1; else raise ModelError."""
        batch = spec.shape[0]
        if batch is None:
            return True
        if batch == 1:
            return False
        raise ModelError(f"{where}: input batch size is fixed at {batch}; only 1 or dynamic is supported")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """Run the model over ``batch`` (first axis = items) and return normalised float32 ``[n, d]``."""
        count = batch.shape[0]
        if count == 0:
            return np.zeros((0, self.embed_dim or 0), dtype=np.float32)
        step = self.max_batch if self.dynamic_batch else 1
        parts = []
        for start in range(0, count, step):
            chunk = batch[start : start + step]
            result = self.session.run({self.input_name: chunk}, [self.output_name])[self.output_name]
            result = np.asarray(result)
            if result.ndim != 2 or result.shape[0] != chunk.shape[0]:
                raise ModelError(f"{self._where}: returned shape {list(result.shape)} for {chunk.shape[0]} input(s)")
            if self.embed_dim is not None and result.shape[1] != self.embed_dim:
                raise ModelError(f"{self._where}: returned {result.shape[1]} dimensions, expected {self.embed_dim}")
            self.embed_dim = result.shape[1]
            parts.append(result)
        return l2_normalise(np.concatenate(parts, axis=0))


class ClipImageEncoder(_Encoder):
    """cn-clip's image encoder: PIL images -> L2-normalised float32 features ``[n, d]``.

    Args:
        session: a loaded model (:class:`~immich_search.runtime.session.OnnxSession` or ``RknnSession``)
            with one input ``image`` float32 ``[1 or dynamic, 3, S, S]`` and an output
            ``unnorm_image_features`` float32 (or float16) ``[batch, d]``.
        image_size: ``S`` in pixels; default taken from the model's input shape (required when the
            model declares dynamic spatial axes).
        embed_dim: expected ``d``; checked against the model when both are known.
        max_batch: items per call when the batch axis is dynamic.

    Raises:
        ModelError: the session's signature is not that of a cn-clip image model (the message names the
            file and the mismatch), or ``image_size`` disagrees with the model.
    """

    _kind = "image"

    def __init__(
        self,
        session: Session,
        image_size: int | None = None,
        embed_dim: int | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        inputs = session.inputs
        declared = inputs[0].shape[2:] if len(inputs) == 1 and len(inputs[0].shape) == 4 else ()
        static = {dim for dim in declared if dim is not None}
        where = Path(getattr(session, "path", "model")).name
        if len(static) > 1:
            raise ModelError(f"{where}: input {inputs[0].describe()} is not square")
        if image_size is None:
            if len(static) != 1 and len(declared) == 2:
                raise ModelError(f"{where}: input {inputs[0].describe()} has no fixed size; give image_size")
            image_size = static.pop() if static else None
        super().__init__(
            session, IMAGE_INPUT, "float32", (3, image_size, image_size), IMAGE_OUTPUT, embed_dim, max_batch
        )
        self.image_size: int = int(image_size) if image_size is not None else 0

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        image_size: int | None = None,
        embed_dim: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> ClipImageEncoder:
        """Load an ONNX image model with onnxruntime and check its signature.

        Raises:
            ModelError: missing, corrupt or wrong-signature file. ConfigError: unavailable provider.
        """
        return cls(OnnxSession(path, providers), image_size=image_size, embed_dim=embed_dim)

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return the model input for ``images``: float32 ``[n, 3, S, S]`` (see :mod:`..runtime.preprocess`).

        Separate from :meth:`encode_pixels` so that decoding threads can prepare batches while another
        thread runs the model. Raises ``OSError`` for an image PIL cannot decode.
        """
        return preprocess_images(images, self.image_size)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Encode preprocessed images ``[n, 3, S, S]`` float32 into normalised float32 ``[n, d]``.

        Raises:
            ValueError: ``pixels`` has the wrong shape.
            ModelError: inference failed or returned unusable features.
        """
        pixels = np.asarray(pixels, dtype=np.float32)
        expected = (3, self.image_size, self.image_size)
        if pixels.ndim != 4 or pixels.shape[1:] != expected:
            raise ValueError(f"expected pixels of shape [n, {', '.join(map(str, expected))}], got {pixels.shape}")
        return self._run(pixels)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Encode PIL images into L2-normalised float32 features ``[len(images), d]``.

        Raises:
            OSError: PIL cannot decode an image.
            ModelError: inference failed or returned unusable features.
        """
        return self.encode_pixels(self.preprocess(images))


class ClipTextEncoder(_Encoder):
    """cn-clip's text encoder: strings -> L2-normalised float32 features ``[n, d]``.

    Args:
        session: a loaded model with one input ``text`` int64 ``[1 or dynamic, L]`` and an output
            ``unnorm_text_features`` float32 (or float16) ``[batch, d]``.
        tokenizer: cn-clip's tokenizer; its context length must equal ``L`` when the model fixes ``L``.
        embed_dim: expected ``d``; checked against the model when both are known.
        max_batch: items per call when the batch axis is dynamic.

    Raises:
        ModelError: the session's signature is not that of a cn-clip text model.
    """

    _kind = "text"

    def __init__(
        self,
        session: Session,
        tokenizer: ClipTokenizer,
        embed_dim: int | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        super().__init__(session, TEXT_INPUT, "int64", (tokenizer.context_length,), TEXT_OUTPUT, embed_dim, max_batch)
        self.tokenizer = tokenizer

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        tokenizer: ClipTokenizer,
        embed_dim: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> ClipTextEncoder:
        """Load an ONNX text model with onnxruntime and check its signature.

        Raises:
            ModelError: missing, corrupt or wrong-signature file. ConfigError: unavailable provider.
        """
        return cls(OnnxSession(path, providers), tokenizer, embed_dim=embed_dim)

    def encode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """Encode token ids int64 ``[n, context_length]`` into normalised float32 ``[n, d]``.

        Raises:
            ValueError: ``tokens`` has the wrong shape.
            ModelError: inference failed or returned unusable features.
        """
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.ndim != 2 or tokens.shape[1] != self.tokenizer.context_length:
            raise ValueError(f"expected tokens [n, {self.tokenizer.context_length}], got {tokens.shape}")
        return self._run(tokens)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Encode strings into L2-normalised float32 features ``[len(texts), d]``.

        Texts longer than 50 tokens are truncated, as cn-clip does. Raises :class:`ModelError` when
        inference fails.
        """
        if isinstance(texts, str):
            texts = [texts]
        return self.encode_tokens(self.tokenizer(list(texts)))


SessionFactory = Callable[[Path], Session]
"""Builds a session for a model file; the default loads it with onnxruntime."""


class ClipModel:
    """A cn-clip variant ready to encode: the image and text encoders and the tokenizer, from a folder.

    Use :meth:`load`; the encoders are built on first use (thread-safe), so a process that only
    searches never loads the image model.

    Attributes:
        variant: the manifest entry (``variant.name`` is the model name to store with vectors,
            ``variant.embed_dim`` the vector length).
        directory: the folder holding the model files.
        precision: ``fp32`` or ``fp16``.
        image_path, text_path: the two ONNX files.
        vocab_path: cn-clip's ``vocab.txt``.
    """

    def __init__(
        self,
        variant: ModelVariant,
        directory: str | os.PathLike[str],
        precision: str,
        vocab_path: str | os.PathLike[str],
        session_factory: SessionFactory | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self.variant = variant
        self.directory = Path(directory)
        self.precision = precision
        self.image_path = self.directory / variant.file("image", precision).file
        self.text_path = self.directory / variant.file("text", precision).file
        self.vocab_path = Path(vocab_path)
        self.max_batch = max_batch
        self._session_factory: SessionFactory = session_factory or OnnxSession
        self._lock = threading.Lock()
        self._image: ClipImageEncoder | None = None
        self._text: ClipTextEncoder | None = None
        self._tokenizer: ClipTokenizer | None = None

    @classmethod
    def load(
        cls,
        model_dir: str | os.PathLike[str] | None = None,
        arch: str | None = None,
        precision: str | None = None,
        providers: Sequence[str] | None = None,
        vocab_path: str | os.PathLike[str] | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        threads: int | None = None,
    ) -> ClipModel:
        """Locate a variant's files; nothing is loaded into memory yet.

        Args:
            model_dir: the model directory; default :func:`~immich_search.runtime.manifest.default_model_dir`.
            arch: cn-clip architecture (``ViT-B-16``...); default the manifest's default.
            precision: ``fp32`` or ``fp16``; default the first present in the manifest's order (fp32
                first: it loads everywhere, while fp16 exports made with torch 2 may not).
            providers: onnxruntime providers; default CUDA when available, then CPU.
            vocab_path: cn-clip's vocab.txt; default found by
                :func:`~immich_search.runtime.tokenizer.find_vocab_file`.
            max_batch: items per call for models with a dynamic batch axis.
            threads: onnxruntime intra-op threads per model; default onnxruntime's (one per core).

        Raises:
            ConfigError: unknown ``arch`` or ``precision``, or an unavailable provider.
            ModelError: the variant's files or the vocabulary are not there (the message says which
                files were expected where).
        """
        manifest = load_manifest()
        variant = manifest.variant(arch)
        root = Path(model_dir) if model_dir is not None else default_model_dir()
        folder = variant_dir(root, variant)
        chosen_providers = list(providers) if providers else default_onnx_providers()
        present = present_precisions(folder, variant)
        if precision is not None:
            variant.file("image", precision)  # raises ConfigError for an unknown precision
            if precision not in present:
                missing = [name for name in variant.all_files(precision) if not (folder / name).is_file()]
                raise ModelError(f"cn-clip {variant.arch} {precision} files missing in {folder}: {', '.join(missing)}")
        elif not present:
            expected = " and ".join(variant.file(role, variant.precisions[0]).file for role in ("image", "text"))
            raise ModelError(
                f"no cn-clip {variant.arch} model in {folder}: expected {expected} (or another precision); "
                f"export them with `immich-search models export --arch {variant.arch} --checkpoint PATH`"
            )
        else:
            precision = present[0]  # the manifest's order: fp32 first
        vocab = find_vocab_file(folder, root, explicit=str(vocab_path) if vocab_path is not None else None)

        def factory(path: Path) -> Session:
            return OnnxSession(path, chosen_providers, intra_op_threads=threads)

        return cls(variant, folder, precision, vocab, session_factory=factory, max_batch=max_batch)

    @property
    def name(self) -> str:
        """Return the model name stored with every vector (``chinese-clip-vit-base-patch16``)."""
        return self.variant.name

    @property
    def embed_dim(self) -> int:
        """Return the feature vector length (512 for ViT-B-16)."""
        return self.variant.embed_dim

    @property
    def tokenizer(self) -> ClipTokenizer:
        """Return the tokenizer (loads vocab.txt on first use; raises :class:`ModelError`)."""
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = ClipTokenizer.from_file(self.vocab_path, self.variant.context_length)
            return self._tokenizer

    @property
    def image_encoder(self) -> ClipImageEncoder:
        """Return the image encoder, loading the image model on first use (raises :class:`ModelError`)."""
        with self._lock:
            if self._image is None:
                self._image = ClipImageEncoder(
                    self._session_factory(self.image_path),
                    image_size=self.variant.image_size,
                    embed_dim=self.variant.embed_dim,
                    max_batch=self.max_batch,
                )
            return self._image

    @property
    def text_encoder(self) -> ClipTextEncoder:
        """Return the text encoder, loading the text model on first use (raises :class:`ModelError`)."""
        tokenizer = self.tokenizer
        with self._lock:
            if self._text is None:
                self._text = ClipTextEncoder(
                    self._session_factory(self.text_path),
                    tokenizer,
                    embed_dim=self.variant.embed_dim,
                    max_batch=self.max_batch,
                )
            return self._text

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Encode PIL images into L2-normalised float32 ``[n, embed_dim]`` (see :class:`ClipImageEncoder`)."""
        return self.image_encoder.encode_images(images)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Encode strings into L2-normalised float32 ``[n, embed_dim]`` (see :class:`ClipTextEncoder`)."""
        return self.text_encoder.encode_texts(texts)

    def __repr__(self) -> str:
        return f"ClipModel({self.variant.arch!r}, {self.precision!r}, {str(self.directory)!r})"
