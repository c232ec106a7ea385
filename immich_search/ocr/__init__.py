"""OCR engines behind one interface (``.engine``, ``.model``, ``.recognize(image) -> list[OcrLine]``).

:mod:`~immich_search.ocr.registry` names them and builds one by name; the engines live in
:mod:`~immich_search.ocr_engine` (RapidOCR 1.x, PP-OCRv4), :mod:`~immich_search.ocr.rapidocr_v6` (RapidOCR 3.x,
PP-OCRv6) and :mod:`~immich_search.ocr.faster_paddle` (faster-paddle, PP-OCRv6 tiny/small);
:mod:`~immich_search.ocr.orientation` reads upside-down and sideways text for an engine without an angle
classifier.
"""
