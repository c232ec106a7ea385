"""Where a model runs: a session wraps one inference backend behind the same small interface.

As in Immich's machine-learning service (``immich_ml``), a model says *what* to compute (its inputs,
outputs, pre- and post-processing; see :mod:`immich_search.runtime.model`) and a session says *where*:

* :class:`OnnxSession`: onnxruntime on the CPU, or CUDA when onnxruntime reports the CUDA execution
  provider (the ``onnxruntime-gpu`` build); providers are configurable.
* :class:`RknnSession`: Rockchip's ``rknnlite`` runtime on the NPU of an RK3588, one runtime instance per
  NPU core (core masks ``NPU_CORE_0`` .. ``NPU_CORE_2``), calls spread over the free instances. The
  backend is optional and found by a guarded import.

Both expose ``inputs`` and ``outputs`` (tuples of :class:`TensorSpec`) and ``run(feeds) -> dict``.
Every failure to load or run a model raises :class:`ModelError` with a message meant for the user.
"""

from __future__ import annotations

import contextlib
import os
import queue
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from immich_search.errors import ConfigError, ImmichSearchError

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"

# onnxruntime's element type strings (``NodeArg.type``) -> numpy dtype names; see onnxruntime's
# ``onnxruntime/python/onnxruntime_pybind_mlvalue.cc`` and the ONNX ``TensorProto.DataType`` list.
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(bfloat16)": "bfloat16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "str",
}


class ModelError(ImmichSearchError):
    """A model file is missing, unreadable, corrupt or of the wrong shape, or inference failed.

    ``str(error)`` names the file and says what is wrong (and, where known, what to do about it).
    """


class BackendUnavailableError(ImmichSearchError):
    """An optional inference backend (``rknnlite``, CUDA) was asked for but is not installed here."""


@dataclass(frozen=True)
class TensorSpec:
    """The declared name, element type and shape of one model input or output.

    Attributes:
        name: the tensor's name in the model graph (for example ``image``).
        dtype: numpy dtype name of the elements (``float32``, ``int64``, ...); ``str(ort type)`` when
            the type has no numpy equivalent.
        shape: one entry per axis: a positive ``int`` for a fixed size, ``None`` for a dynamic axis (an
            ONNX ``dim_param`` such as ``batch``, or an unknown or negative size).
    """

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        """Return ``name dtype [d0,d1,..]`` with ``?`` for dynamic axes, for messages."""
        dims = ",".join("?" if dim is None else str(dim) for dim in self.shape)
        return f"{self.name} {self.dtype} [{dims}]"


class Session(Protocol):
    """What a model needs from a backend: its signature and a way to run it."""

    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the model once on ``feeds`` (input name -> array) and return output name -> array."""
        ...


def _normalise_dim(dim: Any) -> int | None:
    """Map an onnxruntime dimension (int, ``dim_param`` string or ``None``) to ``int`` or ``None``."""
    if isinstance(dim, (int, np.integer)) and int(dim) > 0:
        return int(dim)
    return None


def _spec_from_node_arg(arg: Any) -> TensorSpec:
    """Convert an onnxruntime ``NodeArg`` into a :class:`TensorSpec`."""
    dtype = _ORT_TYPES.get(arg.type, str(arg.type))
    shape = arg.shape if isinstance(arg.shape, (list, tuple)) else []
    return TensorSpec(name=arg.name, dtype=dtype, shape=tuple(_normalise_dim(dim) for dim in shape))


def available_onnx_providers() -> list[str]:
    """Return the execution providers this onnxruntime build offers, in onnxruntime's order.

    ``CUDAExecutionProvider`` appears only with the ``onnxruntime-gpu`` build; it being listed does not
    prove that a GPU and CUDA libraries are present (onnxruntime then falls back to the CPU and warns).
    """
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def default_onnx_providers() -> list[str]:
    """Return the providers used when none are configured: CUDA first when available, then the CPU."""
    available = available_onnx_providers()
    chosen = [CUDA_PROVIDER] if CUDA_PROVIDER in available else []
    return [*chosen, CPU_PROVIDER]


class OnnxSession:
    """An onnxruntime ``InferenceSession`` for one ``.onnx`` file.

    Args:
        path: the ``.onnx`` file. A model saved with external data (cn-clip's FP16 exports keep their
            weights in ``<name>.onnx.extra_file``) needs that file beside it, under its original name.
        providers: onnxruntime execution providers in order of preference; default
            :func:`default_onnx_providers`. Every name must be offered by this onnxruntime build.
        intra_op_threads: threads onnxruntime uses inside one operator; ``None`` or 0 lets it decide
            (one per physical core).

    Attributes:
        path: the model file.
        inputs, outputs: the model's declared signature.
        providers: the providers onnxruntime actually enabled (it drops CUDA when it cannot load it).

    Raises:
        ModelError: the file is missing, not a readable ONNX model, or refers to missing external data.
        ConfigError: a requested provider is not offered by this onnxruntime build.

    ``run`` is safe to call from several threads at once (onnxruntime sessions are thread-safe).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: Sequence[str] | None = None,
        intra_op_threads: int | None = None,
    ) -> None:
        import onnxruntime

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file not found: {self.path}")
        available = available_onnx_providers()
        wanted = list(providers) if providers else default_onnx_providers()
        missing = [name for name in wanted if name not in available]
        if missing:
            raise ConfigError(
                f"onnxruntime provider(s) {', '.join(missing)} not available here; "
                f"this onnxruntime offers {', '.join(available)}"
            )
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: fp16 exports make onnxruntime chatty
        if intra_op_threads:
            options.intra_op_num_threads = int(intra_op_threads)
        try:
            self._session = onnxruntime.InferenceSession(str(self.path), sess_options=options, providers=wanted)
        except Exception as error:  # onnxruntime raises its own pybind11 exception types
            raise ModelError(
                f"cannot load ONNX model {self.path}: {_first_line(error)} "
                "(is the file complete, and is any .extra_file it needs beside it?)"
            ) from error
        self.inputs = tuple(_spec_from_node_arg(arg) for arg in self._session.get_inputs())
        self.outputs = tuple(_spec_from_node_arg(arg) for arg in self._session.get_outputs())
        self.providers = list(self._session.get_providers())

    def run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the model once.

        Args:
            feeds: input name -> array of the declared dtype and a compatible shape.
            output_names: outputs to compute; default all.

        Returns:
            output name -> numpy array, for the requested outputs.

        Raises:
            ModelError: onnxruntime rejected the inputs or failed during inference.
        """
        names = list(output_names) if output_names else [spec.name for spec in self.outputs]
        try:
            values = self._session.run(names, dict(feeds))
        except Exception as error:
            raise ModelError(f"inference with {self.path.name} failed: {_first_line(error)}") from error
        return dict(zip(names, values, strict=True))

    def __repr__(self) -> str:
        return f"OnnxSession({str(self.path)!r}, providers={self.providers!r})"


RKNN_DEFAULT_CORES = (0, 1, 2)
"""The RK3588 has three NPU cores; ``rknnlite`` names their masks ``NPU_CORE_0`` .. ``NPU_CORE_2``."""


def _import_rknnlite() -> Any:
    """Return ``rknnlite.api.RKNNLite`` or raise :class:`BackendUnavailableError`."""
    try:
        from rknnlite.api import RKNNLite
    except ImportError as error:
        raise BackendUnavailableError(
            "the RKNN backend needs Rockchip's rknn-toolkit-lite2 (module rknnlite), which is not "
            "installed; install its wheel for this board and Python version, or use the ONNX backend"
        ) from error
    return RKNNLite


class RknnSession:
    """A ``.rknn`` model on the RK3588 NPU through ``rknnlite``: one runtime instance per NPU core.

    ``rknnlite`` cannot report a model's tensor names, so the caller declares the signature (for the
    CLIP models the same names and shapes as the ONNX exports). ``run`` takes a free instance, runs it
    and gives it back, so up to ``len(cores)`` threads infer at once, one per core.

    Args:
        path: the ``.rknn`` file, converted with rknn-toolkit2 for the target platform.
        inputs, outputs: the declared signature, in the model's input and output order.
        cores: NPU core numbers, one runtime instance each (core mask ``RKNNLite.NPU_CORE_<n>``);
            ``None`` makes one instance with ``NPU_CORE_AUTO`` (boards other than the RK3588).
        data_format: layout of 4-D inputs as passed to ``RKNNLite.inference`` (``nchw`` like ONNX).

    Raises:
        BackendUnavailableError: ``rknnlite`` is not installed.
        ModelError: the file is missing, or ``load_rknn`` / ``init_runtime`` fails.
        ConfigError: a core number is not one ``rknnlite`` defines a mask for.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        cores: Sequence[int] | None = RKNN_DEFAULT_CORES,
        data_format: str = "nchw",
    ) -> None:
        rknnlite_class = _import_rknnlite()
        self.path = Path(path)
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.data_format = data_format
        if not self.path.is_file():
            raise ModelError(f"model file not found: {self.path}")
        masks = []
        for core in cores if cores is not None else [None]:
            attribute = "NPU_CORE_AUTO" if core is None else f"NPU_CORE_{core}"
            if not hasattr(rknnlite_class, attribute):
                raise ConfigError(f"rknnlite has no core mask {attribute} (NPU core {core!r})")
            masks.append((attribute, getattr(rknnlite_class, attribute)))
        self._free: queue.Queue[Any] = queue.Queue()
        self._instances: list[Any] = []
        try:
            for attribute, mask in masks:
                runtime = rknnlite_class(verbose=False)
                self._instances.append(runtime)
                if runtime.load_rknn(str(self.path)) != 0:
                    raise ModelError(f"rknnlite could not load {self.path} (is it an .rknn file?)")
                if runtime.init_runtime(core_mask=mask) != 0:
                    raise ModelError(
                        f"rknnlite could not start {self.path.name} on {attribute} "
                        "(is this an RK3588, and was the model converted for it?)"
                    )
                self._free.put(runtime)
        except BaseException:
            self.close()
            raise

    @property
    def instance_count(self) -> int:
        """Return how many runtime instances (NPU cores) serve this session."""
        return len(self._instances)

    def run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the model once on a free NPU core; blocks while every core is busy.

        Args:
            feeds: input name -> array, for every declared input.
            output_names: outputs to return; default all.

        Returns:
            output name -> numpy array.

        Raises:
            ModelError: an input is missing, or rknnlite returned no result.
        """
        missing = [spec.name for spec in self.inputs if spec.name not in feeds]
        if missing:
            raise ModelError(f"{self.path.name}: missing input(s) {', '.join(missing)}")
        arrays = [np.ascontiguousarray(feeds[spec.name]) for spec in self.inputs]
        formats = [self.data_format if array.ndim == 4 else "nchw" for array in arrays]
        runtime = self._free.get()
        try:
            results = runtime.inference(inputs=arrays, data_format=formats)
        except Exception as error:
            raise ModelError(f"inference with {self.path.name} failed: {_first_line(error)}") from error
        finally:
            self._free.put(runtime)
        if results is None or len(results) < len(self.outputs):
            raise ModelError(f"inference with {self.path.name} returned no result")
        values = {spec.name: np.asarray(value) for spec, value in zip(self.outputs, results, strict=False)}
        names = list(output_names) if output_names else [spec.name for spec in self.outputs]
        return {name: values[name] for name in names}

    def close(self) -> None:
        """Release every runtime instance; the session is unusable afterwards."""
        for runtime in self._instances:
            with contextlib.suppress(Exception):  # releasing is best effort during cleanup
                runtime.release()
        self._instances = []

    def __repr__(self) -> str:
        return f"RknnSession({str(self.path)!r}, instances={self.instance_count})"


def _first_line(error: BaseException) -> str:
    """Return the first non-empty line of an exception's message (onnxruntime's are long)."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__
