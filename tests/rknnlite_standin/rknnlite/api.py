"""``rknnlite.api.RKNNLite`` with the real API, running the "``.rknn``" file as an ONNX model on the CPU.

Same names and conventions as rknn-toolkit-lite2: ``RKNNLite(verbose=...)``, ``load_rknn(path)``,
``init_runtime(core_mask=...)``, ``inference(inputs=[...], data_format=[...])`` returning a list of
outputs, ``release()``; methods return 0 on success, -1 on failure; core masks ``NPU_CORE_AUTO`` 0,
``NPU_CORE_0`` 1, ``NPU_CORE_1`` 2, ``NPU_CORE_2`` 4, ``NPU_CORE_0_1_2`` 7. In tests the ``.rknn``
file is a copy of a tiny ONNX model. One runtime instance serves one call at a time, like one core.

For the tests, :data:`LOG` records which core mask ran each call and how many calls overlapped;
``RKNNLITE_STANDIN_DELAY_S`` adds a per-call delay so overlapping calls can be observed.
"""

from __future__ import annotations

import os
import threading
import time

import onnxruntime

LOG: dict = {"calls": [], "active": 0, "peak": 0, "active_masks": set(), "peak_masks": set(), "released": 0}
_LOCK = threading.Lock()


class RKNNLite:
    """The stand-in runtime (see the module docstring)."""

    NPU_CORE_AUTO = 0
    NPU_CORE_0 = 1
    NPU_CORE_1 = 2
    NPU_CORE_2 = 4
    NPU_CORE_0_1 = 3
    NPU_CORE_0_1_2 = 7

    def __init__(self, verbose: bool = False, verbose_file: str | None = None) -> None:
        self._session = None
        self._mask = None
        self._busy = threading.Lock()

    def load_rknn(self, path: str) -> int:
        """Load the model file; -1 when it cannot be read as a model."""
        try:
            self._session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception:
            return -1
        return 0

    def init_runtime(self, core_mask: int = NPU_CORE_AUTO, **kwargs) -> int:
        """Bind the runtime to ``core_mask``; -1 before a model is loaded."""
        if self._session is None:
            return -1
        self._mask = core_mask
        return 0

    def inference(self, inputs=None, data_format=None, **kwargs):
        """Run the model on ``inputs`` (a list, in input order); returns a list of outputs."""
        if self._session is None or self._mask is None:
            return None
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("one RKNNLite runtime was called from two threads at once")
        try:
            with _LOCK:
                LOG["active"] += 1
                LOG["peak"] = max(LOG["peak"], LOG["active"])
                LOG["active_masks"].add(self._mask)
                if len(LOG["active_masks"]) > len(LOG["peak_masks"]):
                    LOG["peak_masks"] = set(LOG["active_masks"])
                LOG["calls"].append(self._mask)
            time.sleep(float(os.environ.get("RKNNLITE_STANDIN_DELAY_S", "0")))
            names = [arg.name for arg in self._session.get_inputs()]
            return self._session.run(None, dict(zip(names, inputs, strict=True)))
        finally:
            with _LOCK:
                LOG["active"] -= 1
                LOG["active_masks"].discard(self._mask)
            self._busy.release()

    def release(self) -> None:
        """Free the runtime."""
        self._session = None
        with _LOCK:
            LOG["released"] += 1


def reset_log() -> None:
    """Clear :data:`LOG` (between tests)."""
    with _LOCK:
        LOG.update(calls=[], active=0, peak=0, active_masks=set(), peak_masks=set(), released=0)
