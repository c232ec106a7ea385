"""Upside-down and sideways text for an engine without an angle classifier (faster-paddle).

A text detector finds lines whatever their orientation, but a recogniser trained on upright lines reads an
upside-down line as confident-looking garbage of low confidence (``29E1E180686121S0E7`` at 0.78 for an
upside-down ID card number) and a sideways line as a tall box. So: read the image as it is; when the
reading is poor (its confidence, weighted by characters, is below :data:`RETRY_BELOW`), read it again
turned 180 degrees or, when its text lies mostly in tall boxes, 90 and 270 degrees, and keep the reading
with the most confident characters. Boxes are mapped back to the image as it was given.

The cost is one to two more passes over the photos that trigger it (few: upright printed text reads at a
confidence near 1); photos without any detected text never trigger it. ``benchmarks/ocr_engines.py``
measures both the gain and the cost.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from PIL import Image

from immich_search.ocr_engine import OcrLine

RETRY_BELOW = 0.9
"""Char-weighted mean confidence under which a reading is tried in other orientations. Upright printed
text reads at 0.95-1.0 with PP-OCRv6; upside-down text at 0.3-0.8 (measured on the dev corpus's two
rotated photos and on rotated copies of upright ones, benchmarks/ocr_engines.py)."""

TALL_SHARE = 0.5
"""A poor reading whose characters lie mostly (more than this share) in boxes taller than wide, by
:data:`TALL_RATIO`, is tried turned 90 and 270 degrees: a horizontal line turned sideways is such a box."""

TALL_RATIO = 1.5
"""A box this many times taller than wide holds a sideways line (or a vertical CJK column)."""

BETTER_BY = 1.1
"""A turned reading replaces the first only when its quality (:func:`quality`) is this many times higher,
so that noise does not swap a fair reading for an equal one."""


class Engine(Protocol):
    """What the fallback wraps: an engine that returns every line it read, whatever its confidence."""

    engine: str
    model: str

    def recognize(self, image: Image.Image) -> list[OcrLine]:
        """Recognise an RGB image."""


def quality(lines: list[OcrLine]) -> float:
    """Return the confident characters of a reading: the sum over lines of ``len(text) * score**2``.

    Squaring the confidence makes ten characters at 0.4 (garbage) worth less than two at 1.0.
    """
    return sum(len(line.text) * line.score**2 for line in lines)


def mean_confidence(lines: list[OcrLine]) -> float:
    """Return the confidence of a reading weighted by characters (1.0 for an empty reading)."""
    chars = sum(len(line.text) for line in lines)
    return sum(len(line.text) * line.score for line in lines) / chars if chars else 1.0


def _box_size(box: tuple[float, ...], width: int, height: int) -> tuple[float, float]:
    xs, ys = box[0::2], box[1::2]
    return (max(xs) - min(xs)) * width, (max(ys) - min(ys)) * height


def tall_share(lines: list[OcrLine], width: int, height: int) -> float:
    """Return the share of characters in boxes :data:`TALL_RATIO` times taller than wide (0 when no text)."""
    chars = sum(len(line.text) for line in lines)
    if not chars:
        return 0.0
    tall = 0
    for line in lines:
        box_width, box_height = _box_size(line.box, width, height)
        if len(line.text) > 1 and box_height > TALL_RATIO * box_width:
            tall += len(line.text)
    return tall / chars


def unturn_box(box: tuple[float, ...], degrees: int) -> tuple[float, ...]:
    """Map a normalised box read on the image turned ``degrees`` counter-clockwise (PIL's
    ``rotate(degrees, expand=True)``, 90, 180 or 270) back to the image as given.

    Raises:
        ValueError: ``degrees`` is not 90, 180 or 270.
    """
    points = list(zip(box[0::2], box[1::2], strict=True))
    if degrees == 180:
        mapped = [(1 - x, 1 - y) for x, y in points]
    elif degrees == 90:
        # Turned 90 degrees counter-clockwise, the point (x, y) went to (y, 1 - x).
        mapped = [(1 - y, x) for x, y in points]
    elif degrees == 270:
        mapped = [(y, 1 - x) for x, y in points]
    else:
        raise ValueError(f"degrees must be 90, 180 or 270, got {degrees}")
    return tuple(value for point in mapped for value in point)


class OrientationFallback:
    """Reads an image again turned when the first reading looks upside-down or sideways.

    Args:
        inner: the engine, built to return every line whatever its confidence (``min_score=0``).
        min_score: lines of the kept reading with a lower confidence are dropped (RapidOCR's 0.5).

    Attributes:
        engine, model: the inner engine's (``model`` gains ``+ orientation fallback``).
        retries: images read again so far (for benchmarks).
    """

    def __init__(self, inner: Engine, min_score: float = 0.5) -> None:
        self._inner = inner
        self._min_score = min_score
        self.engine = inner.engine
        self.model = f"{inner.model} + orientation fallback"
        self.retries = 0

    def recognize(self, image: Image.Image) -> list[OcrLine]:
        """Recognise an RGB image in its best orientation; boxes are in the image as given."""
        image = image.convert("RGB")
        width, height = image.size
        best = self._inner.recognize(image)
        turns: tuple[int, ...] = ()
        if best and mean_confidence(best) < RETRY_BELOW:
            # Mostly tall boxes: lines turned sideways (a recogniser reads a tall crop turned one way only).
            turns = (270, 90) if tall_share(best, width, height) > TALL_SHARE else (180,)
        if turns:
            self.retries += 1
        best_quality = quality(best)
        for degrees in turns:
            lines = self._inner.recognize(image.rotate(degrees, expand=True))
            if quality(lines) > BETTER_BY * best_quality:
                best = [replace(line, box=unturn_box(line.box, degrees)) for line in lines]
                best_quality = quality(lines)
        return [line for line in best if line.score >= self._min_score]
