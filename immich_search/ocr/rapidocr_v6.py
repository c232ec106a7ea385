"""Text recognition with RapidOCR 3.x (package ``rapidocr``) and the PP-OCRv6 small models its wheel bundles."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image

from immich_search.errors import ConfigError
from immich_search.ocr_engine import OcrLine, normalised_box

# The wheel's own files (rapidocr/models/, rapidocr 3.10): given by path, RapidOCR never downloads.
_BUNDLED = {
    "Det": "PP-OCRv6_det_small.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
}


class RapidOcrV6Engine:
    """RapidOCR 3.x: PP-OCRv6 small detection and recognition, with its 0/180-degree line classifier.

    Args:
        min_score: lines recognised with a lower confidence are dropped (RapidOCR's ``text_score``, 0.5).
        threads: onnxruntime intra-op threads per model (``None``: onnxruntime's default, one per core).
        det_max_side: the longer side, in pixels, of the image the detector sees (``None``: RapidOCR's
            default, a shorter side of at least 736 px); recognition still reads the full image.

    Raises:
        ConfigError: ``rapidocr`` 3.x is not installed (``pip install 'immich-search[ocr-v6]'``) or its
            wheel lacks the bundled models.
    """

    engine = "rapidocr-v6"

    def __init__(self, min_score: float = 0.5, threads: int | None = None, det_max_side: int | None = None) -> None:
        try:
            import rapidocr
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise ConfigError(
                "OCR engine rapidocr-v6 needs the package rapidocr 3.x: pip install 'immich-search[ocr-v6]'"
            ) from exc
        models = Path(rapidocr.__file__).parent / "models"
        # "error": its warning for every photo without text would flood the sync log.
        params: dict[str, object] = {"Global.text_score": min_score, "Global.log_level": "error"}
        for stage, name in _BUNDLED.items():
            path = models / name
            if not path.is_file():
                raise ConfigError(f"rapidocr's wheel lacks its bundled model {path}; reinstall rapidocr 3.x")
            params[f"{stage}.model_path"] = str(path)
        if threads is not None:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = max(1, int(threads))
        if det_max_side is not None:
            params["Det.limit_type"] = "max"
            params["Det.limit_side_len"] = int(det_max_side)
        self._engine = RapidOCR(params=params)
        self.model = f"PP-OCRv6 small + cls (rapidocr {metadata.version('rapidocr')})"

    def recognize(self, image: Image.Image) -> list[OcrLine]:
        """Recognise the text of an RGB image; lines in RapidOCR's reading order (empty: no text)."""
        width, height = image.size
        pixels = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])  # OpenCV's BGR
        output = self._engine(pixels)
        if output.boxes is None or output.txts is None:
            return []
        lines: list[OcrLine] = []
        for box, text, score in zip(output.boxes, output.txts, output.scores, strict=True):
            text = str(text).strip()
            if text:
                lines.append(OcrLine(text=text, score=float(score), box=normalised_box(box, width, height)))
        return lines
