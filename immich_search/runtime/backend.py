"""Where cn-clip runs: the CPU, a CUDA GPU (onnxruntime-gpu) or a Rockchip NPU (rknnlite), by option or env.

``--device`` / ``IMMICH_SEARCH_DEVICE``:

* ``auto`` (default): onnxruntime with CUDA first when this onnxruntime offers it, else the CPU;
* ``cpu``: onnxruntime on the CPU only;
* ``cuda``: onnxruntime with ``CUDAExecutionProvider`` (needs the ``onnxruntime-gpu`` build; refused
  with a clear message otherwise);
* ``rknn``: ``.rknn`` conversions of the models on a Rockchip NPU through ``rknnlite``, one runtime
  per NPU core (``--npu-cores`` / ``IMMICH_SEARCH_NPU_CORES``, default ``0,1,2``: the RK3588's three;
  ``auto`` for one runtime with ``NPU_CORE_AUTO`` on other boards). Calls are spread over the cores
  (:class:`~immich_search.runtime.session.RknnSession`). The files sit beside the ONNX ones, named like
  them with ``.rknn`` instead of ``.onnx`` (``vit-b-16.img.fp32.rknn``), converted with rknn-toolkit2
  for the board.

The options (:func:`immich_search.commands.options.device_options`) are read by every command that loads
cn-clip (``sync``, ``search``, ``ml`` ...); they set the environment variables, so sync's worker processes
inherit the choice.
"""

from __future__ import annotations

import os
from pathlib import Path

from immich_search.errors import ConfigError
from immich_search.runtime.manifest import default_model_dir, load_manifest, variant_dir
from immich_search.runtime.model import ClipModel, image_signature, text_signature
from immich_search.runtime.session import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    RKNN_DEFAULT_CORES,
    ModelError,
    RknnSession,
    Session,
    available_onnx_providers,
)
from immich_search.runtime.tokenizer import find_vocab_file

DEVICE_ENV = "IMMICH_SEARCH_DEVICE"
NPU_CORES_ENV = "IMMICH_SEARCH_NPU_CORES"
DEVICES = ("auto", "cpu", "cuda", "rknn")


def configured_device(env: dict[str, str] | None = None) -> str:
    """Return the device from ``IMMICH_SEARCH_DEVICE`` (default ``auto``).

    Raises:
        ConfigError: an unknown value.
    """
    value = (env if env is not None else os.environ).get(DEVICE_ENV, "auto").strip().lower() or "auto"
    if value not in DEVICES:
        raise ConfigError(f"{DEVICE_ENV}={value!r} is not one of {', '.join(DEVICES)}")
    return value


def parse_npu_cores(value: str | None) -> tuple[int, ...] | None:
    """Parse ``0,1,2`` into core numbers; ``auto`` -> ``None`` (one runtime, ``NPU_CORE_AUTO``).

    Default (``None`` or empty): :data:`~immich_search.runtime.session.RKNN_DEFAULT_CORES`.

    Raises:
        ConfigError: not a comma-separated list of distinct core numbers 0-7, nor ``auto``.
    """
    if value is None or not value.strip():
        return RKNN_DEFAULT_CORES
    if value.strip().lower() == "auto":
        return None
    try:
        cores = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError as error:
        raise ConfigError(f"NPU cores {value!r}: expected numbers such as 0,1,2 or 'auto'") from error
    if not cores or len(set(cores)) != len(cores) or any(not 0 <= core <= 7 for core in cores):
        raise ConfigError(f"NPU cores {value!r}: expected distinct numbers 0-7 such as 0,1,2")
    return cores


def onnx_providers(device: str) -> list[str]:
    """Return onnxruntime providers for ``device`` (``auto``, ``cpu`` or ``cuda``).

    Raises:
        ConfigError: ``cuda`` without the CUDA provider in this onnxruntime build.
    """
    available = available_onnx_providers()
    if device == "cpu":
        return [CPU_PROVIDER]
    if device == "cuda":
        if CUDA_PROVIDER not in available:
            raise ConfigError(
                "--device cuda: this onnxruntime has no CUDAExecutionProvider; install onnxruntime-gpu "
                f"instead of onnxruntime (offered here: {', '.join(available)})"
            )
        return [CUDA_PROVIDER, CPU_PROVIDER]
    return [CUDA_PROVIDER, CPU_PROVIDER] if CUDA_PROVIDER in available else [CPU_PROVIDER]


def rknn_path(onnx_path: Path) -> Path:
    """Return the ``.rknn`` file that stands for an ONNX model file (same name, ``.rknn`` suffix)."""
    return onnx_path.with_suffix(".rknn")


def _npu_cores(npu_cores: tuple[int, ...] | None | str) -> tuple[int, ...] | None:
    """Resolve a ``npu_cores`` argument: ``""`` reads ``IMMICH_SEARCH_NPU_CORES``, a string is parsed."""
    if npu_cores == "":
        return parse_npu_cores(os.environ.get(NPU_CORES_ENV))
    return parse_npu_cores(npu_cores) if isinstance(npu_cores, str) else npu_cores


def load_clip(
    model_dir: str | os.PathLike[str] | None = None,
    arch: str | None = None,
    device: str | None = None,
    npu_cores: tuple[int, ...] | None | str = "",
    threads: int | None = None,
) -> ClipModel:
    """Locate a cn-clip variant for ``device``; the encoders load on first use, as :meth:`ClipModel.load`.

    Args:
        model_dir, arch: as :meth:`ClipModel.load`.
        device: ``auto``, ``cpu``, ``cuda`` or ``rknn``; default :func:`configured_device`.
        npu_cores: core numbers for ``rknn``; ``""`` reads ``IMMICH_SEARCH_NPU_CORES``; ``None`` is
            ``NPU_CORE_AUTO``.
        threads: onnxruntime intra-op threads (ignored on the NPU).

    Raises:
        ConfigError: an unknown device or arch, or CUDA asked for without onnxruntime-gpu.
        ModelError: the files are missing (the message names them).
        BackendUnavailableError: ``rknn`` without ``rknnlite`` installed.
    """
    device = device or configured_device()
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device != "rknn":
        return ClipModel.load(model_dir, arch, providers=onnx_providers(device), threads=threads)
    cores = _npu_cores(npu_cores)
    variant = load_manifest().variant(arch)
    root = Path(model_dir) if model_dir is not None else default_model_dir()
    folder = variant_dir(root, variant)
    present = [
        precision
        for precision in variant.precisions
        if all(rknn_path(folder / variant.file(role, precision).file).is_file() for role in ("image", "text"))
    ]
    if not present:
        expected = " and ".join(
            rknn_path(Path(variant.file(role, variant.precisions[0]).file)).name for role in ("image", "text")
        )
        raise ModelError(
            f"no RKNN conversion of cn-clip {variant.arch} in {folder}: expected {expected}, converted with "
            "rknn-toolkit2 from the ONNX files (`immich-search models download` fetches those); see docs/ml.md"
        )
    vocab = find_vocab_file(folder, root)
    image_spec = image_signature(variant.image_size, variant.embed_dim)
    text_spec = text_signature(variant.context_length, variant.embed_dim)

    def factory(path: Path) -> Session:
        spec = image_spec if path.name == variant.file("image", present[0]).file else text_spec
        return RknnSession(rknn_path(path), [spec[0]], [spec[1]], cores=cores)

    return ClipModel(variant, folder, present[0], vocab, session_factory=factory)


def model_concurrency(device: str | None = None, npu_cores: tuple[int, ...] | None | str = "") -> int:
    """Return how many calls of one model can usefully run at once: the NPU core count, else 1."""
    device = device or configured_device()
    if device != "rknn":
        return 1
    cores = _npu_cores(npu_cores)
    return 1 if cores is None else len(cores)
