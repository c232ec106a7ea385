"""The red-seal re-read (immich_search/ocr/red_seal.py): which lines are read again, from what, and which
reading is kept; and faster-paddle-tiny reading a rendered line with a red seal stamped across it."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw, ImageFont

from immich_search.ocr.red_seal import MIN_RED_SHARE, REREAD_BELOW, lift_red_seals, red_share
from immich_search.ocr.registry import build_engine, engine_installed
from immich_search.ocr_engine import OcrLine
from tests.test_sync import LATIN_FONT

SEAL_RED = (205, 35, 45)
WHOLE = (0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0)


def page(seal: bool) -> Image.Image:
    """A 600x100 line of dark print, crossed by a seal's red ring and strokes when ``seal``."""
    image = Image.new("RGB", (600, 100), (250, 250, 245))
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 35, 560, 65), fill=(20, 20, 20))
    if seal:
        draw.ellipse((200, -40, 380, 140), outline=SEAL_RED, width=24)
        draw.line((230, 10, 350, 90), fill=SEAL_RED, width=20)
        draw.line((230, 90, 350, 10), fill=SEAL_RED, width=20)
    return image


class Reader:
    """A stand-in for the engine's detection + recognition: answers ``reading`` and keeps what it was given."""

    def __init__(self, reading: list[OcrLine]) -> None:
        self.reading = reading
        self.seen: list[Image.Image] = []

    def __call__(self, image: Image.Image) -> list[OcrLine]:
        self.seen.append(image)
        return self.reading


def test_red_share_tells_seal_ink_from_print_and_skin():
    assert red_share(Image.new("RGB", (10, 10), SEAL_RED)) == 1.0
    assert red_share(Image.new("RGB", (10, 10), (225, 130, 140))) == 1.0, "a seal's pale, subsampled edge"
    for colour in ((20, 20, 20), (250, 250, 245), (224, 172, 150), (120, 100, 90), (40, 60, 200)):
        assert red_share(Image.new("RGB", (10, 10), colour)) == 0.0, colour
    assert red_share(page(seal=True)) >= MIN_RED_SHARE > red_share(page(seal=False))


def test_a_poor_line_under_a_seal_is_read_again_from_the_red_channel():
    image = page(seal=True)
    reader = Reader([OcrLine("增值税", 0.99, WHOLE), OcrLine("发票", 0.97, WHOLE)])
    lines = lift_red_seals(image, [OcrLine("增值环发票", 0.8, WHOLE)], reader)
    assert [(line.text, line.box) for line in lines] == [("增值税 发票", WHOLE)]
    assert lines[0].score == pytest.approx((0.99 * 3 + 0.97 * 2) / 5)
    (seen,) = reader.seen
    # The red channel: grey, the seal as bright as the paper, the print still dark.
    assert all(len(set(seen.getpixel((x, y)))) == 1 for x in range(0, 600, 37) for y in range(0, 100, 13))
    assert min(seen.getpixel((290, 15))) > 180, "the seal's stroke is as bright as the paper"
    assert max(seen.getpixel((100, 50))) < 60, "the print stays dark"


def test_the_reading_is_kept_unless_the_red_channel_reads_better():
    image = page(seal=True)
    line = OcrLine("国家税务总局", 0.7, WHOLE)  # e.g. the seal's own text: gone in the red channel
    assert lift_red_seals(image, [line], Reader([])) == [line]
    assert lift_red_seals(image, [line], Reader([OcrLine("国家", 0.6, WHOLE)])) == [line]


def test_confident_lines_and_lines_without_a_seal_are_never_read_again():
    reader = Reader([OcrLine("x", 1.0, WHOLE)])
    sure = OcrLine("发票", REREAD_BELOW, WHOLE)
    assert lift_red_seals(page(seal=True), [sure], reader) == [sure]
    poor = OcrLine("发栗", 0.5, WHOLE)
    assert lift_red_seals(page(seal=False), [poor], reader) == [poor]
    tiny_box = OcrLine("点", 0.5, (0.0, 0.0, 0.005, 0.0, 0.005, 0.01, 0.0, 0.01))
    assert lift_red_seals(page(seal=True), [tiny_box], reader) == [tiny_box]
    assert reader.seen == []


@pytest.mark.skipif(not engine_installed("faster-paddle-tiny"), reason="faster-paddle is not installed")
def test_faster_paddle_reads_a_line_a_red_seal_crosses():
    font = ImageFont.truetype(LATIN_FONT, 64) if LATIN_FONT else ImageFont.load_default(size=64)
    image = Image.new("RGB", (900, 200), (250, 250, 245))
    draw = ImageDraw.Draw(image)
    draw.text((40, 60), "INVOICE NUMBER 4711", font=font, fill=(20, 20, 20))
    draw.ellipse((330, 10, 570, 190), outline=SEAL_RED, width=16)
    draw.line((350, 60, 560, 150), fill=SEAL_RED, width=14)
    text = " ".join(line.text for line in build_engine("faster-paddle-tiny", threads=1).recognize(image))
    assert "INVOICE" in text.upper() and "4711" in text
