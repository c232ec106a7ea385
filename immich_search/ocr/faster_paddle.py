"""Text recognition with faster-paddle (PP-OCRv6 tiny or small in Rust + ONNX Runtime, models in its wheel).

faster-paddle has no angle classifier: wrap it in :class:`~immich_search.ocr.orientation.OrientationFallback`
(the registry does) to read upside-down and sideways text. Its boxes are axis-aligned rectangles, and come in
detection order, which is not reading order: the engine puts its lines in reading order
(:mod:`~immich_search.ocr.reading_order`), so that a phrase broken over lines stays adjacent in the text.
Lines a red seal spoiled are read again from the red channel (:mod:`~immich_search.ocr.red_seal`).
"""

from __future__ import annotations

import io
from importlib import metadata

from PIL import Image

from immich_search.errors import ConfigError
from immich_search.ocr.reading_order import reading_order
from immich_search.ocr.red_seal import lift_red_seals
from immich_search.ocr_engine import OcrLine, normalised_box

SIZES = ("tiny", "small")
"""The model sizes whose files the wheel bundles (``medium`` is downloaded at first use, so not offered)."""


class FasterPaddleEngine:
    """faster-paddle's PP-OCRv6 detection and recognition on CPU.

    Args:
        size: ``tiny`` or ``small`` (:data:`SIZES`).
        min_score: lines recognised with a lower confidence are dropped (0.5, RapidOCR's ``text_score``).
        threads: the engine's whole CPU budget (``None``: faster-paddle's default, the physical cores
            this process may use).
        det_max_side: the longer side, in pixels, of the image the detector sees (``None``: faster-paddle's
            1600); recognition crops come from the full image.

    Raises:
        ConfigError: faster-paddle is not installed, or ``size`` is not one of :data:`SIZES`.
    """

    def __init__(
        self, size: str = "tiny", min_score: float = 0.5, threads: int | None = None, det_max_side: int | None = None
    ) -> None:
        if size not in SIZES:
            raise ConfigError(f"faster-paddle model size must be one of {', '.join(SIZES)}, got {size!r}")
        try:
            from faster_paddle import OcrEngine
        except ImportError as exc:
            raise ConfigError("this OCR engine needs the package faster-paddle: pip install faster-paddle") from exc
        options: dict[str, object] = {"model_size": size}
        if threads is not None:
            options["threads"] = max(1, int(threads))
        if det_max_side is not None:
            options["det_max_side"] = int(det_max_side)
        self._engine = OcrEngine(**options)
        self._min_score = min_score
        self.engine = f"faster-paddle-{size}"
        self.model = f"PP-OCRv6 {size} (faster-paddle {metadata.version('faster-paddle')})"

    def recognize(self, image: Image.Image) -> list[OcrLine]:
        """Recognise the text of an RGB image; lines in reading order, those under a red seal read again
        (empty: no text)."""
        image = image.convert("RGB")
        lines = lift_red_seals(image, self._read(image), self._read)
        return reading_order(lines, *image.size)

    def _read(self, image: Image.Image) -> list[OcrLine]:
        """faster-paddle's lines of an RGB image, in its detection order, at or above ``min_score``."""
        width, height = image.size
        encoded = io.BytesIO()
        image.save(encoded, format="BMP")  # uncompressed: the cheapest encoding faster-paddle reads
        result = self._engine.ocr(encoded.getvalue())
        lines: list[OcrLine] = []
        for _, bound in sorted(result["bounds"].items()):
            text = str(bound["text"]).strip()
            score = float(bound["confidence"])
            if not text or score < self._min_score:
                continue
            (x1, y1), (x2, y2) = bound["topLeftCoord"], bound["bottomRightCoord"]
            corners = ((x1, y1), (x2, y1), (x2, y2), (x1, y2))
            lines.append(OcrLine(text=text, score=score, box=normalised_box(corners, width, height)))
        return lines
