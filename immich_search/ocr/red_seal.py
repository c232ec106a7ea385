"""Read a line again where a red seal covers it: from the red channel, where the seal disappears.

Chinese invoices, receipts, certificates and letters carry red seals (公章, 发票专用章) stamped over printed
text; the seal's strokes cross the characters and the recogniser misreads them (faster-paddle-tiny read
天津增值税电子普通发票 as 天津增值环电子普通发票 at 0.80 on the dev corpus's invoice). In the red channel a
red seal is about as bright as the paper while black or blue print stays dark, so reading that channel of
the line gives the print alone (the same title at 1.00). faster-paddle has no recognition-only call, so a
re-read runs its detector on the line's crop too: the step is kept to lines read with low confidence whose
box a seal visibly crosses, and the new reading replaces the old only when it is more confident. Text
printed in red (the seal's own text, a red sign) vanishes in that channel, so its reading is kept.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from immich_search.ocr.orientation import RETRY_BELOW, mean_confidence
from immich_search.ocr.reading_order import reading_order
from immich_search.ocr_engine import OcrLine

REREAD_BELOW = RETRY_BELOW
"""A line read with less confidence than this may be read again: the orientation fallback's bar for a poor
reading (0.9)."""
MIN_RED_SHARE = 0.1
"""The share of a line's box that must be seal red for a re-read: a seal's ring and characters crossing a
line cover a tenth of its box or more, a red letter, logo or underline in or beside it much less."""
PAD_X = 0.5
"""Margin added left and right of a line's box, as a share of its height (the detector's boxes are tight
and the recogniser reads the first and last character better with some paper beside them). None is added
above and below, so that the crop holds no neighbouring line."""


def red_share(crop: Image.Image) -> float:
    """Return the share (0-1) of ``crop``'s pixels that are seal red: red clearly above green and blue.

    "Clearly" is R > 1.4 x G, R > 1.4 x B and R > 120 (0-255): seal ink (about (200, 40, 50)) and the pale
    edges JPEG's chroma subsampling gives its thin strokes in a preview pass (at 1.7 x the invoice's seal
    no longer did in the benchmark's previews); skin and grey or blue print do not. Brown and orange may:
    that only costs a re-read, kept when it reads better.
    """
    rgb = np.asarray(crop.convert("RGB"), dtype=np.int32)
    if rgb.size == 0:
        return 0.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    red = (r > 120) & (r * 10 > g * 14) & (r * 10 > b * 14)
    return float(red.mean())


def lift_red_seals(
    image: Image.Image, lines: list[OcrLine], read: Callable[[Image.Image], list[OcrLine]]
) -> list[OcrLine]:
    """Return ``lines`` with those a red seal spoiled read again from the red channel of their box.

    Args:
        image: the RGB image ``lines`` were read from.
        lines: the engine's lines (boxes normalised 0-1, :class:`~immich_search.ocr_engine.OcrLine`).
        read: the engine's own detection + recognition of an image (a line's crop here).

    Returns:
        The lines in the same order with the same boxes; a line whose re-read is more confident (weighted
        by characters) takes its text (parts in reading order, joined by a space) and confidence.
    """
    width, height = image.size
    out: list[OcrLine] = []
    for line in lines:
        crop = _line_crop(image, line, width, height) if line.score < REREAD_BELOW else None
        if crop is None or red_share(crop) < MIN_RED_SHARE:
            out.append(line)
            continue
        red = crop.getchannel("R").convert("RGB")
        again = reading_order([part for part in read(red) if part.text.strip()], *red.size)
        confidence = mean_confidence(again)  # 1.0 for no text: `again` is checked first
        if again and confidence > line.score:
            out.append(OcrLine(" ".join(part.text.strip() for part in again), confidence, line.box))
        else:
            out.append(line)
    return out


def _line_crop(image: Image.Image, line: OcrLine, width: int, height: int) -> Image.Image | None:
    """The line's box widened by :data:`PAD_X`, in pixels of ``image``; ``None`` when under 8 px a side."""
    xs, ys = line.box[0::2], line.box[1::2]
    top, bottom = min(ys) * height, max(ys) * height
    pad = PAD_X * (bottom - top)
    box = (
        max(0, int(min(xs) * width - pad)),
        max(0, int(top)),
        min(width, int(max(xs) * width + pad) + 1),
        min(height, int(bottom) + 1),
    )
    if box[2] - box[0] < 8 or box[3] - box[1] < 8:
        return None
    return image.crop(box)
