"""OCR for ``ml``: our engine (:class:`~immich_search.ocr_engine.RapidOcrEngine`) with Immich's options.

Immich sends, with every OCR request, the detection score a box needs (``detection.options.minScore``,
default 0.5), the recognition score a text needs (``recognition.options.minScore``, default 0.8) and
``maxResolution`` (default 736). They map onto RapidOCR as:

* detection ``minScore`` -> RapidOCR's ``det_box_thresh`` (boxes scoring lower are dropped);
* ``maxResolution``: an image whose longer side is larger is scaled down to it (bilinear, as
  RapidOCR's own ``max_side_len`` does) before detection and recognition; boxes are normalised, so they
  stay valid for the original;
* recognition ``minScore`` -> lines whose recognition score is lower are dropped.

The box threshold is a construction parameter of RapidOCR, so one engine is kept per distinct value
(Immich sends the same one every time; at most :data:`MAX_ENGINES` are kept, least recently used first
out). RapidOCR 1.x does not report detection scores, so ``boxScore`` carries the line's recognition
score; every box did pass the detection threshold.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from immich_search.ml.errors import RequestError
from immich_search.ocr_engine import OcrLine, RapidOcrEngine

DEFAULT_DETECTION_SCORE = 0.5
DEFAULT_RECOGNITION_SCORE = 0.8
DEFAULT_MAX_RESOLUTION = 736
"""Immich v3.1.0's OCR defaults (``server/src/config.ts``: minDetectionScore, minRecognitionScore,
maxResolution), used when a request leaves an option out."""

MAX_ENGINES = 4
"""Engines (distinct detection score thresholds) kept loaded at once (~40 MB each)."""

MAX_RESOLUTION_LIMIT = 10_000
"""Largest ``maxResolution`` accepted, in pixels (MT-Photos refuses images over 10,000 px too)."""


class OcrEngine(Protocol):
    """What ``ml`` needs of an OCR engine: RGB PIL image -> lines with normalised boxes."""

    model: str

    def recognize(self, image: Image.Image) -> list[OcrLine]:
        """Return the image's text lines (see :class:`~immich_search.ocr_engine.OcrLine`)."""
        ...


EngineFactory = Callable[[float], OcrEngine]
"""Builds an engine for a detection score threshold (0-1)."""


def rapidocr_factory(threads: int | None = None) -> EngineFactory:
    """Return an :data:`EngineFactory` building :class:`RapidOcrEngine` (bundled PP-OCRv4 models).

    ``threads`` is onnxruntime's intra-op thread count per model (``None``: one per core).
    """

    def build(box_threshold: float) -> OcrEngine:
        return RapidOcrEngine(
            min_score=0.0,  # recognition scores are filtered per request, not per engine
            threads=threads,
            # The request's maxResolution scales the image before it gets here (see recognize).
            rapidocr_options={"det_box_thresh": box_threshold, "max_side_len": MAX_RESOLUTION_LIMIT},
        )

    return build


@dataclass(frozen=True)
class OcrOptions:
    """One request's OCR options (Immich's names in brackets).

    Attributes:
        detection_score: box score threshold, 0-1 (``detection.options.minScore``).
        recognition_score: text score threshold, 0-1 (``recognition.options.minScore``).
        max_resolution: longer image side in pixels above which the image is scaled down
            (``detection.options.maxResolution``).
    """

    detection_score: float = DEFAULT_DETECTION_SCORE
    recognition_score: float = DEFAULT_RECOGNITION_SCORE
    max_resolution: int = DEFAULT_MAX_RESOLUTION


def _score(options: Mapping[str, Any], default: float, where: str) -> float:
    """Read ``options["minScore"]`` as a float in 0..1 (422 otherwise)."""
    value = options.get("minScore", default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise RequestError(422, f"ocr {where}.options.minScore must be a number from 0 to 1, got {value!r}")
    return float(value)


def parse_ocr_options(entry: Any) -> OcrOptions:
    """Read Immich's OCR entry ``{"detection": {...}, "recognition": {...}}`` into :class:`OcrOptions`.

    Raises:
        RequestError: 422 for a malformed entry or an option out of range.
    """
    if not isinstance(entry, Mapping):
        raise RequestError(422, "ocr entry must be an object with 'detection' and 'recognition'")
    detection = entry.get("detection") or {}
    recognition = entry.get("recognition") or {}
    if not isinstance(detection, Mapping) or not isinstance(recognition, Mapping):
        raise RequestError(422, "ocr detection and recognition must be objects")
    for where, part in (("detection", detection), ("recognition", recognition)):
        name = part.get("modelName")
        # Any OCR model name is answered by our engine (Immich's setting is free text); a missing or
        # non-string one is a malformed request.
        if not isinstance(name, str) or not name.strip():
            raise RequestError(422, f"ocr {where}.modelName must be a non-empty string, got {name!r}")
    det_options = detection.get("options") or {}
    rec_options = recognition.get("options") or {}
    if not isinstance(det_options, Mapping) or not isinstance(rec_options, Mapping):
        raise RequestError(422, "ocr options must be objects")
    resolution = det_options.get("maxResolution", DEFAULT_MAX_RESOLUTION)
    if isinstance(resolution, bool) or not isinstance(resolution, (int, float)) or resolution != int(resolution):
        raise RequestError(422, f"ocr detection.options.maxResolution must be an integer, got {resolution!r}")
    if not 32 <= int(resolution) <= MAX_RESOLUTION_LIMIT:
        raise RequestError(
            422, f"ocr detection.options.maxResolution must be 32 to {MAX_RESOLUTION_LIMIT}, got {resolution}"
        )
    return OcrOptions(
        detection_score=_score(det_options, DEFAULT_DETECTION_SCORE, "detection"),
        recognition_score=_score(rec_options, DEFAULT_RECOGNITION_SCORE, "recognition"),
        max_resolution=int(resolution),
    )


class OcrService:
    """Engines per option pair, and the two answer formats (Immich's and MT-Photos').

    Args:
        factory: builds an engine for (detection threshold, max side); default RapidOCR.

    ``recognize`` is safe from several threads: engines are built under a lock, and RapidOCR's
    onnxruntime sessions may run concurrently when called without per-call options, as here.
    """

    def __init__(self, factory: EngineFactory | None = None) -> None:
        self._factory = factory or rapidocr_factory()
        self._engines: OrderedDict[float, OcrEngine] = OrderedDict()
        self._lock = threading.Lock()

    def engine(self, options: OcrOptions) -> OcrEngine:
        """Return (building on first use) the engine for ``options``' detection score."""
        key = round(options.detection_score, 3)
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = self._factory(key)
                self._engines[key] = engine
                while len(self._engines) > MAX_ENGINES:
                    self._engines.popitem(last=False)
            self._engines.move_to_end(key)
            return engine

    @property
    def model(self) -> str:
        """Return the engine's model description (builds the default engine if none is loaded)."""
        return self.engine(OcrOptions()).model

    def recognize(self, image: Image.Image, options: OcrOptions) -> list[OcrLine]:
        """Recognise ``image``'s text with ``options``; lines below the recognition score are dropped.

        Returns lines whose boxes are normalised to ``image`` (also when it was scaled down first).
        """
        longer = max(image.size)
        if longer > options.max_resolution:
            scale = options.max_resolution / longer
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.BILINEAR)
        lines = self.engine(options).recognize(image)
        return [line for line in lines if line.score >= options.recognition_score]


def immich_ocr_answer(lines: list[OcrLine], image: Image.Image) -> dict[str, Any]:
    """Return Immich's OCR answer for ``lines`` of ``image``.

    Shape (``OcrResponse`` in Immich's ``machine-learning.repository.ts``)::

        {"ocr": {"text": [str], "box": [x1,y1,x2,y2,x3,y3,x4,y4 per text, normalised 0-1],
                 "boxScore": [float], "textScore": [float]}, "imageHeight": int, "imageWidth": int}
    """
    box: list[float] = []
    for line in lines:
        box.extend(round(float(value), 6) for value in line.box)
    scores = [round(float(line.score), 6) for line in lines]
    return {
        "ocr": {"text": [line.text for line in lines], "box": box, "boxScore": list(scores), "textScore": scores},
        "imageHeight": image.height,
        "imageWidth": image.width,
    }


def _fixed(value: float) -> str:
    """Format a pixel value as MT-Photos does: ``str(round(value, 2))``."""
    return str(round(float(value), 2))


def mtphotos_ocr_answer(lines: list[OcrLine], image: Image.Image) -> dict[str, Any]:
    """Return mt-photos-ai's ``/ocr`` answer: texts, scores as ``"0.97"`` strings, pixel boxes as strings.

    Shape: ``{"result": {"texts": [str], "scores": [str], "boxes": [{"x", "y", "width", "height"}]}}``;
    ``x, y`` is the first corner, ``width`` the first edge's horizontal extent and ``height`` the
    vertical distance from the first to the third corner, in pixels, as mt-photos-ai computes them.
    """
    width, height = image.size
    texts, scores, boxes = [], [], []
    for line in lines:
        x1, y1, x2, _y2, _x3, y3 = (line.box[i] * (width if i % 2 == 0 else height) for i in range(6))
        boxes.append({"x": _fixed(x1), "y": _fixed(y1), "width": _fixed(x2 - x1), "height": _fixed(y3 - y1)})
        texts.append(line.text)
        scores.append(f"{line.score:.2f}")
    return {"result": {"texts": texts, "scores": scores, "boxes": boxes}}
