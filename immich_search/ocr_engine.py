"""Text recognition with RapidOCR 1.x (``rapidocr-onnxruntime``, its bundled PP-OCRv4 models by default).

The other engines are in :mod:`immich_search.ocr`; :class:`OcrLine` is what every engine returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image

from immich_search.errors import ConfigError


@dataclass(frozen=True)
class OcrLine:
    """One recognised text box.

    Attributes:
        text: the recognised text.
        score: recognition confidence, 0-1.
        box: the four corners ``(x1, y1, x2, y2, x3, y3, x4, y4)`` clockwise from top-left, each
            normalised to 0-1 by the image's width and height (as Immich's ``asset_ocr`` stores them).
    """

    text: str
    score: float
    box: tuple[float, ...]

    def as_json(self) -> dict:
        """Return the line as stored in ``immich_search.ocr.lines``."""
        return {"text": self.text, "score": round(self.score, 4), "box": [round(v, 5) for v in self.box]}


def normalised_box(corners, width: int, height: int) -> tuple[float, ...]:
    """Return four ``(x, y)`` pixel corners as ``(x1, y1, ..., x4, y4)``, each clamped to 0-1 of the image.

    Args:
        corners: four points (any sequence of two numbers each), clockwise from top-left, in pixels.
        width, height: the image's size in pixels (both > 0).
    """
    flat: list[float] = []
    for x, y in corners:
        flat.extend((min(max(float(x) / width, 0.0), 1.0), min(max(float(y) / height, 0.0), 1.0)))
    return tuple(flat)


class RapidOcrEngine:
    """RapidOCR detection + classification + recognition on CPU (onnxruntime), engine ``rapidocr-v4``.

    Args:
        det_model_path, rec_model_path, cls_model_path: ONNX files replacing the bundled PP-OCRv4
            models (e.g. PP-OCRv5 exports); ``None`` keeps the bundled one.
        min_score: lines recognised with a lower confidence are dropped (RapidOCR's ``text_score``,
            default 0.5 in its config.yaml).
        threads: onnxruntime intra-op threads per model (``None``: onnxruntime's default, one per core);
            several sync workers on one machine share the cores this way.
        rapidocr_options: further RapidOCR parameters by their keyword names (``det_box_thresh``: the
            detection score a box needs, default 0.5; ``max_side_len``: longer image side, in pixels,
            above which the image is scaled down before OCR, default 2000).
        det_max_side: the longer side, in pixels, of the image the detector sees (``None``: RapidOCR's
            default, a shorter side of at least 736 px); recognition still reads the full image.

    Raises:
        ConfigError: a model path does not exist.
    """

    engine = "rapidocr-v4"

    def __init__(
        self,
        det_model_path: str | None = None,
        rec_model_path: str | None = None,
        cls_model_path: str | None = None,
        min_score: float = 0.5,
        threads: int | None = None,
        rapidocr_options: dict[str, object] | None = None,
        det_max_side: int | None = None,
    ) -> None:
        from rapidocr_onnxruntime import RapidOCR

        options: dict[str, object] = {**(rapidocr_options or {}), "text_score": min_score}
        if threads is not None:
            options["intra_op_num_threads"] = max(1, int(threads))
        if det_max_side is not None:
            options["det_limit_type"] = "max"
            options["det_limit_side_len"] = int(det_max_side)
        for key, value in (
            ("det_model_path", det_model_path),
            ("rec_model_path", rec_model_path),
            ("cls_model_path", cls_model_path),
        ):
            if value is not None:
                if not Path(value).is_file():
                    raise ConfigError(f"OCR model file not found: {value}")
                options[key] = value
        self._engine = RapidOCR(**options)
        custom = any(v is not None for v in (det_model_path, rec_model_path, cls_model_path))
        version = metadata.version("rapidocr-onnxruntime")
        self.model = f"rapidocr-onnxruntime {version} ({'custom' if custom else 'PP-OCRv4'})"

    def recognize(self, image: Image.Image) -> list[OcrLine]:
        """Recognise the text of an RGB image.

        Args:
            image: a loaded ``RGB`` PIL image of any size.

        Returns:
            Lines in RapidOCR's reading order (top to bottom, then left to right); empty when the image
            has no text.
        """
        width, height = image.size
        # RapidOCR follows OpenCV's channel order (BGR).
        pixels = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        result, _ = self._engine(pixels)
        lines: list[OcrLine] = []
        for box, text, score in result or []:
            text = str(text).strip()
            if not text:
                continue
            lines.append(OcrLine(text=text, score=float(score), box=normalised_box(box, width, height)))
        return lines
