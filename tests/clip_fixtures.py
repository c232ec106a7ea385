"""Tiny stand-ins for cn-clip's ONNX models and vocabulary, built with the ``onnx`` package (no weights).

The models have the real tensor names, types and shapes of cn-clip's exports, so every code path of
the runtime (signature checks, batching, normalisation, ClipModel, ``models verify``) runs against a
real onnxruntime session, and they are small enough to build in milliseconds:

* image model: ``image`` float32 ``[1|batch, 3, S, S]`` -> ``unnorm_image_features`` ``[1|batch, d]``:
  the per-channel mean of the (normalised) pixels ``m`` (3 values), times a fixed ``3 x 8`` matrix
  ``colour_map`` into an 8-dimensional *latent* space, times a fixed ``8 x d`` matrix ``expand`` with
  orthonormal rows (so it keeps lengths and angles).
* text model: ``text`` int64 ``[1|batch, 52]`` -> ``unnorm_text_features`` ``[1|batch, d]``: each token
  id looks up an 8-dimensional latent row of ``token_table`` (rows of ``[PAD]``, ``[CLS]`` and ``[SEP]``
  are zero), the rows are averaged over the 52 positions, then times the same ``expand``.

So a one-word text and a solid-colour photo meet exactly when the word's latent row equals the colour's
latent vector, which :meth:`TinyClip.align` sets up ("a known photo nearest to a known text by
construction")::

    from tests.clip_fixtures import CN_CLIP_IDS, TinyClip, write_vocab

    tiny = TinyClip(embed_dim=512)                 # 512 = ViT-B-16's dimension, as the manifest says
    tiny.align(CN_CLIP_IDS["红"], (255, 0, 0))     # 红 ("red") points where a red photo points
    tiny.align(CN_CLIP_IDS["蓝"], (0, 0, 255))     # 蓝 ("blue") where a blue one does
    folder = tiny.write_model_dir(tmp_path)       # <tmp>/ViT-B-16/vit-b-16.{img,txt}.fp32.onnx + vocab
    model = ClipModel.load(tmp_path, "ViT-B-16", providers=["CPUExecutionProvider"])
    # model.encode_texts(["红"]) @ model.encode_images([red, blue]).T  -> red scores 1.0

Broken variants for error paths: ``write_image_model(path, input_name="pixels")``,
``input_dtype=np.float16``, ``batch=2``, ``image_size=256``, ``output_name=...``;
``write_text_model(path, input_dtype=np.int32)``, ``context_length=64``; :func:`write_corrupt_model`.
``external_data=True`` saves the weights in ``<file>.extra_file`` as cn-clip's fp16 exports do.

:func:`write_vocab` writes a ``vocab.txt`` whose tokens sit at their real cn-clip ids
(:data:`CN_CLIP_IDS`, read from ``cn_clip/clip/vocab.txt``), padding the other lines with
``[unused<n>]`` fillers that the tokenizer can never produce.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from immich_search.runtime.manifest import load_manifest
from immich_search.runtime.preprocess import CLIP_MEAN, CLIP_STD

OPSET = 13  # cn-clip's exporter uses opset_version=13
IR_VERSION = 8  # loadable by every onnxruntime >= 1.10
LATENT_DIM = 8

# Real ids in cn-clip's vocab.txt (Chinese-CLIP commit 31863c7, cn_clip 1.6.0), line number - 1.
CN_CLIP_IDS: dict[str, int] = {
    "[PAD]": 0,
    "[UNK]": 100,
    "[CLS]": 101,
    "[SEP]": 102,
    "[MASK]": 103,
    "!": 106,
    "#": 108,
    ",": 117,
    "-": 118,
    "i": 151,
    "一": 671,
    "发": 1355,
    "只": 1372,
    "图": 1745,
    "年": 2399,
    "截": 2779,
    "机": 3322,
    "狗": 4318,
    "猫": 4344,
    "票": 4873,
    "红": 5273,
    "色": 5682,
    "蓝": 5905,
    "飞": 7607,
    "，": 8024,
    "##4": 8159,
    "iphone": 8210,
    "in": 8217,
    "cafe": 8377,
    "world": 8572,
    "123": 8604,
    "hello": 8701,
    "202": 9707,
    "456": 12570,
}
SPECIAL_IDS = (0, 101, 102)  # [PAD], [CLS], [SEP]: zero rows in the text model's token table
VOCAB_SIZE = 21128

_ONNX_TYPES = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float16): TensorProto.FLOAT16,
    np.dtype(np.float64): TensorProto.DOUBLE,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.int32): TensorProto.INT32,
}


def write_vocab(path: str | Path, tokens: Mapping[str, int] | None = None, size: int | None = None) -> Path:
    """Write a ``vocab.txt`` with ``tokens`` at their ids (default :data:`CN_CLIP_IDS`).

    Lines no token claims hold ``[unused<n>]``; ``size`` (default: largest id + 1) sets the line count,
    e.g. ``VOCAB_SIZE`` for a file as long as cn-clip's.
    """
    tokens = dict(CN_CLIP_IDS if tokens is None else tokens)
    count = max(tokens.values()) + 1 if size is None else size
    lines = [f"[unused{index}]" for index in range(count)]
    for token, index in tokens.items():
        lines[index] = token
    path = Path(path)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_corrupt_model(path: str | Path) -> Path:
    """Write a file that is not an ONNX model (the first bytes of one, then garbage)."""
    path = Path(path)
    path.write_bytes(b"\x08\x08\x12\x07pytorch" + bytes(range(256)) * 4)
    return path


def _orthonormal_rows(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Return a ``rows x cols`` float32 matrix with orthonormal rows (``rows <= cols``)."""
    q, _ = np.linalg.qr(rng.standard_normal((cols, rows)))
    return q.T.astype(np.float32)


def _dim(value: int | None, name: str) -> int | str:
    """Map a fixed size to itself and ``None`` to a symbolic ``dim_param``."""
    return name if value is None else value


@dataclass
class TinyClip:
    """Deterministic tiny cn-clip image and text models sharing one latent space (see module docstring).

    Attributes:
        embed_dim: output dimension ``d`` (use the manifest's, e.g. 512, with :class:`ClipModel`).
        image_size: side of the declared image input.
        vocab_size: rows of the token table (cn-clip: 21,128).
        seed: seed of the fixed random matrices.
        colour_map: float32 ``[3, 8]``; token_table: float32 ``[vocab_size, 8]``; expand: ``[8, d]``.
    """

    embed_dim: int = 8
    image_size: int = 224
    vocab_size: int = VOCAB_SIZE
    seed: int = 0
    colour_map: np.ndarray = field(init=False)
    token_table: np.ndarray = field(init=False)
    expand: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if self.embed_dim < LATENT_DIM:
            raise ValueError(f"embed_dim must be at least {LATENT_DIM}")
        rng = np.random.default_rng(self.seed)
        self.colour_map = rng.standard_normal((3, LATENT_DIM)).astype(np.float32)
        self.token_table = rng.standard_normal((self.vocab_size, LATENT_DIM)).astype(np.float32)
        self.token_table[list(SPECIAL_IDS)] = 0.0
        self.expand = _orthonormal_rows(LATENT_DIM, self.embed_dim, rng)

    # -- what the models compute ------------------------------------------------------------------

    @staticmethod
    def normalised_colour(rgb: Sequence[int]) -> np.ndarray:
        """Return a solid colour's pixel values after cn-clip's normalisation: float32 ``[3]``."""
        values = np.asarray(rgb, dtype=np.float32) / np.float32(255)
        return (values - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)

    def colour_latent(self, rgb: Sequence[int]) -> np.ndarray:
        """Return the latent vector ``[8]`` the image model computes for a solid ``rgb`` image."""
        return self.normalised_colour(rgb) @ self.colour_map

    def align(self, token_id: int, rgb: Sequence[int]) -> None:
        """Make the one-token text ``token_id`` point exactly where a solid ``rgb`` photo points."""
        self.token_table[token_id] = self.colour_latent(rgb)

    def expected_image_feature(self, rgb: Sequence[int]) -> np.ndarray:
        """Return the normalised feature ``[d]`` the image model gives a solid ``rgb`` image."""
        feature = self.colour_latent(rgb) @ self.expand
        return feature / np.linalg.norm(feature)

    def expected_text_feature(self, token_ids: Sequence[int]) -> np.ndarray:
        """Return the normalised feature ``[d]`` the text model gives a padded row of token ids."""
        feature = self.token_table[np.asarray(token_ids)].mean(axis=0) @ self.expand
        return feature / np.linalg.norm(feature)

    # -- writing models ---------------------------------------------------------------------------

    def _save(self, graph: onnx.GraphProto, path: Path, external_data: bool) -> Path:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = IR_VERSION
        model.producer_name = "immich-search tests"
        onnx.checker.check_model(model)
        path.parent.mkdir(parents=True, exist_ok=True)
        if external_data:
            onnx.save_model(
                model,
                str(path),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=f"{path.name}.extra_file",
                size_threshold=64,
            )
        else:
            onnx.save_model(model, str(path))
        return path

    def write_image_model(
        self,
        path: str | Path,
        *,
        batch: int | None = 1,
        input_name: str = "image",
        output_name: str = "unnorm_image_features",
        input_dtype: type | np.dtype = np.float32,
        image_size: int | None = None,
        external_data: bool = False,
    ) -> Path:
        """Write the image model to ``path``.

        Args:
            batch: declared batch size; ``None`` declares a dynamic axis ``batch``.
            input_name, output_name, input_dtype: the signature (change them to build broken models).
            image_size: declared spatial size (default ``self.image_size``); ``0`` declares dynamic axes.
            external_data: keep weights in ``<file>.extra_file`` (as cn-clip's fp16 exports do).
        """
        size = self.image_size if image_size is None else image_size
        spatial = _dim(size or None, "side")
        nodes = []
        source = input_name
        if np.dtype(input_dtype) != np.float32:
            nodes.append(helper.make_node("Cast", [input_name], ["as_float"], to=TensorProto.FLOAT))
            source = "as_float"
        nodes += [
            helper.make_node("ReduceMean", [source], ["channel_means"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["channel_means", "colour_map"], ["latent"]),
            helper.make_node("MatMul", ["latent", "expand"], [output_name]),
        ]
        graph = helper.make_graph(
            nodes,
            "tiny_cn_clip_image",
            [
                helper.make_tensor_value_info(
                    input_name,
                    _ONNX_TYPES[np.dtype(input_dtype)],
                    [_dim(batch, "batch"), 3, spatial, spatial],
                )
            ],
            [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [_dim(batch, "batch"), self.embed_dim])],
            initializer=[
                numpy_helper.from_array(self.colour_map, "colour_map"),
                numpy_helper.from_array(self.expand, "expand"),
            ],
        )
        return self._save(graph, Path(path), external_data)

    def write_text_model(
        self,
        path: str | Path,
        *,
        batch: int | None = 1,
        context_length: int | None = 52,
        input_name: str = "text",
        output_name: str = "unnorm_text_features",
        input_dtype: type | np.dtype = np.int64,
        external_data: bool = False,
    ) -> Path:
        """Write the text model to ``path`` (arguments as :meth:`write_image_model`).

        ``context_length`` ``None`` declares a dynamic sequence axis.
        """
        nodes = [
            helper.make_node("Gather", ["token_table", input_name], ["rows"], axis=0),
            helper.make_node("ReduceMean", ["rows"], ["latent"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["latent", "expand"], [output_name]),
        ]
        graph = helper.make_graph(
            nodes,
            "tiny_cn_clip_text",
            [
                helper.make_tensor_value_info(
                    input_name,
                    _ONNX_TYPES[np.dtype(input_dtype)],
                    [_dim(batch, "batch"), _dim(context_length, "tokens")],
                )
            ],
            [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [_dim(batch, "batch"), self.embed_dim])],
            initializer=[
                numpy_helper.from_array(self.token_table, "token_table"),
                numpy_helper.from_array(self.expand, "expand"),
            ],
        )
        return self._save(graph, Path(path), external_data)

    def write_model_dir(
        self,
        model_dir: str | Path,
        arch: str = "ViT-B-16",
        precisions: Sequence[str] = ("fp32",),
        batch: int | None = 1,
        vocab: bool = True,
    ) -> Path:
        """Write a variant's image and text models under ``<model_dir>/<arch>/`` with the manifest's names.

        ``fp16`` files are saved with their weights in ``<file>.extra_file``, as cn-clip's exporter does
        (the graph stays float32: only the file layout matters here). With ``vocab`` a tiny vocab.txt
        (:func:`write_vocab`, all 21,128 lines) goes to ``<model_dir>/vocab.txt``. ``embed_dim`` and
        ``image_size`` must match the variant's. Returns the variant folder.
        """
        variant = load_manifest().variant(arch)
        if (self.embed_dim, self.image_size) != (variant.embed_dim, variant.image_size):
            raise ValueError(f"{arch} needs embed_dim={variant.embed_dim}, image_size={variant.image_size}")
        folder = Path(model_dir) / variant.arch
        for precision in precisions:
            external = bool(variant.file("image", precision).external_data)
            self.write_image_model(folder / variant.file("image", precision).file, batch=batch, external_data=external)
            external = bool(variant.file("text", precision).external_data)
            self.write_text_model(folder / variant.file("text", precision).file, batch=batch, external_data=external)
        if vocab:
            write_vocab(Path(model_dir) / "vocab.txt", size=VOCAB_SIZE)
        return folder
