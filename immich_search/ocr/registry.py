"""The OCR engines by name, and how ``--ocr-engine`` / ``IMMICH_SEARCH_OCR_ENGINE`` builds one.

Every engine has ``engine`` (its name here, stored on each OCR row), ``model`` (what read the text, with
versions, stored too) and ``recognize(image) -> list[OcrLine]``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from immich_search.errors import ConfigError

ENGINE_ENV = "IMMICH_SEARCH_OCR_ENGINE"
"""Environment variable naming the OCR engine (as ``--ocr-engine``)."""

DET_MAX_SIDE_ENV = "IMMICH_SEARCH_OCR_DET_MAX_SIDE"
"""Environment variable for the detector's longest side in pixels (as ``--ocr-det-max-side``)."""


@dataclass(frozen=True)
class EngineInfo:
    """One engine: its ``name``, the ``package`` (distribution) it needs and a one-line ``summary``."""

    name: str
    package: str
    module: str
    summary: str


ENGINES: dict[str, EngineInfo] = {
    info.name: info
    for info in (
        EngineInfo(
            "faster-paddle-tiny",
            "faster-paddle",
            "faster_paddle",
            "PP-OCRv6 tiny (faster-paddle), orientation fallback, reading order, red seals; default: 4.2x faster",
        ),
        EngineInfo(
            "faster-paddle-small",
            "faster-paddle",
            "faster_paddle",
            "PP-OCRv6 small (faster-paddle), orientation fallback, reading order",
        ),
        EngineInfo("rapidocr-v6", "rapidocr", "rapidocr", "PP-OCRv6 small + angle classifier (RapidOCR 3.x)"),
        EngineInfo(
            "rapidocr-v4",
            "rapidocr-onnxruntime",
            "rapidocr_onnxruntime",
            "PP-OCRv4 + angle classifier (RapidOCR 1.x); earlier versions' default",
        ),
    )
}


def engine_installed(name: str) -> bool:
    """Return whether the package engine ``name`` needs is importable (without importing it).

    Raises:
        ConfigError: ``name`` is no engine of :data:`ENGINES`.
    """
    return importlib.util.find_spec(engine_info(name).module) is not None


def engine_info(name: str) -> EngineInfo:
    """Return the :class:`EngineInfo` of ``name``.

    Raises:
        ConfigError: an unknown name (the message lists the known ones).
    """
    try:
        return ENGINES[name]
    except KeyError:
        raise ConfigError(f"unknown OCR engine {name!r}: one of {', '.join(ENGINES)}") from None


PREFERRED_ENGINE = "faster-paddle-tiny"
FALLBACK_ENGINE = "rapidocr-v4"


def _default_engine() -> str:
    # faster-paddle publishes x86_64 Linux wheels only (pyproject installs it there); on arm64 hosts
    # (Raspberry Pi, RK3588) PP-OCRv4, which runs everywhere, is the default.
    return PREFERRED_ENGINE if engine_installed(PREFERRED_ENGINE) else FALLBACK_ENGINE


DEFAULT_ENGINE = _default_engine()
"""The engine ``sync`` and ``reprocess`` use unless told (``--ocr-engine``, ``IMMICH_SEARCH_OCR_ENGINE``):
``faster-paddle-tiny`` where faster-paddle is installed (x86_64 Linux, a core dependency there), else
``rapidocr-v4``.
Chosen by issue 16's bar for the default, measured by benchmarks/ocr_engines.py (README, "OCR engines"):
at least as many dev-corpus pairs as PP-OCRv4 (58 of 62 against 56), no false text on photos without
text, at least 3x PP-OCRv4's sync (4.24x in the same run), 531 MiB per sync worker (PP-OCRv4: 1.1 GB),
``ocr:`` recall@10 and MRR 0.961 on the dev corpus (as PP-OCRv4)."""


def build_engine(name: str = DEFAULT_ENGINE, threads: int | None = None, det_max_side: int | None = None):
    """Build the engine called ``name``.

    Args:
        name: one of :data:`ENGINES`.
        threads: CPU threads the engine may use (``None``: its default, every core).
        det_max_side: the longer side in pixels of the image its detector sees (``None``: the engine's
            default; Immich's own OCR uses 736).

    Returns:
        An engine (``engine``, ``model``, ``recognize``); faster-paddle's wrapped in
        :class:`~immich_search.ocr.orientation.OrientationFallback`.

    Raises:
        ConfigError: an unknown name, a package that is not installed, or ``det_max_side`` below 32.
    """
    info = engine_info(name)
    if det_max_side is not None and det_max_side < 32:
        raise ConfigError(f"the detector's longest side must be at least 32 px, got {det_max_side}")
    builders: dict[str, Callable[[], object]] = {
        "faster-paddle-tiny": lambda: _faster_paddle("tiny", threads, det_max_side),
        "faster-paddle-small": lambda: _faster_paddle("small", threads, det_max_side),
        "rapidocr-v6": lambda: _rapidocr_v6(threads, det_max_side),
        "rapidocr-v4": lambda: _rapidocr_v4(threads, det_max_side),
    }
    if not engine_installed(name):
        raise ConfigError(f"OCR engine {name} needs the package {info.package}: pip install {info.package}")
    return builders[name]()


def _faster_paddle(size: str, threads: int | None, det_max_side: int | None):
    from immich_search.ocr.faster_paddle import FasterPaddleEngine
    from immich_search.ocr.orientation import OrientationFallback

    return OrientationFallback(FasterPaddleEngine(size, min_score=0.0, threads=threads, det_max_side=det_max_side))


def _rapidocr_v6(threads: int | None, det_max_side: int | None):
    from immich_search.ocr.rapidocr_v6 import RapidOcrV6Engine

    return RapidOcrV6Engine(threads=threads, det_max_side=det_max_side)


def _rapidocr_v4(threads: int | None, det_max_side: int | None):
    from immich_search.ocr_engine import RapidOcrEngine

    return RapidOcrEngine(threads=threads, det_max_side=det_max_side)
