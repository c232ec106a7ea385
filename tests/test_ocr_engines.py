"""OCR engines (issue 16): every engine reads real text offline, the orientation fallback, the engine of every
row in status and doctor, moving a library to another engine, and `ocr:` precision on CJK pairs and glued
punctuation. Real engines on rendered photos, a real PostgreSQL."""

from __future__ import annotations

import hashlib

import psycopg
import pytest
from click.testing import CliRunner
from PIL import Image

from immich_search import immich_rows
from immich_search.cli import cli
from immich_search.demo import import_library
from immich_search.errors import ConfigError
from immich_search.ocr import registry
from immich_search.ocr.orientation import OrientationFallback, quality, unturn_box
from immich_search.ocr.reading_order import reading_order
from immich_search.ocr.registry import DEFAULT_ENGINE, ENGINES, build_engine, engine_installed
from immich_search.ocr_engine import OcrLine
from immich_search.ranking.ocr_search import search_ocr
from tests.fake_immich import add_asset, add_user
from tests.test_sync import assets_by_name, ocr_rows, plain_photo, text_photo

TINY = "faster-paddle-tiny"
"""The fastest engine (PP-OCRv6 tiny, no angle classifier: the orientation fallback's tests use it)."""


@pytest.fixture(scope="module")
def sign(tmp_path_factory):
    """A rendered road sign, upright."""
    path = text_photo(tmp_path_factory.mktemp("sign"), "sign.jpg", ["WILD LIFE", "CROSSING"])
    return Image.open(path).convert("RGB")


@pytest.fixture(scope="module")
def engines():
    return {}


def engine(engines, name):
    if name not in engines:
        engines[name] = build_engine(name, threads=2)
    return engines[name]


def text_of(lines: list[OcrLine]) -> str:
    return " ".join(line.text for line in lines).upper()


@pytest.mark.parametrize("name", list(ENGINES))
def test_every_engine_reads_the_sign_offline(engines, sign, name):
    """Each engine loads the models its wheel bundles (tests never reach the internet) and reads the sign."""
    ocr = engine(engines, name)
    assert ocr.engine == name and ocr.model
    lines = ocr.recognize(sign)
    assert "WILD" in text_of(lines) and "CROSSING" in text_of(lines).replace(" ", ""), lines
    for line in lines:
        assert len(line.box) == 8 and all(0.0 <= v <= 1.0 for v in line.box) and 0.5 <= line.score <= 1.0
    first = next(line for line in lines if "WILD" in line.text.upper())
    assert first.box[1] < 0.5, "the first line is in the upper half of the sign"


@pytest.mark.parametrize("name", list(ENGINES))
def test_every_engine_reads_nothing_on_a_plain_photo(engines, tmp_path, name):
    photo = Image.open(plain_photo(tmp_path, "plain.jpg", (120, 130, 140))).convert("RGB").resize((640, 480))
    assert engine(engines, name).recognize(photo) == []


@pytest.mark.parametrize("degrees", [180, 90, 270])
def test_faster_paddle_reads_turned_text(engines, sign, degrees):
    """faster-paddle has no angle classifier; the orientation fallback reads the sign turned, boxes mapped back."""
    ocr = engine(engines, TINY)
    upright = ocr.recognize(sign)
    before = ocr.retries
    turned = ocr.recognize(sign.rotate(degrees, expand=True))
    assert "WILD" in text_of(turned), turned
    # Upside-down lines read as low-confidence garbage first; a sideways line may already read right when
    # the recogniser turns the tall crop itself.
    assert ocr.retries == before + 1 if degrees == 180 else ocr.retries <= before + 1
    wild = next(line for line in turned if "WILD" in line.text.upper())
    xs, ys = wild.box[0::2], wild.box[1::2]
    centre = (sum(xs) / 4, sum(ys) / 4)
    # In the turned image, the first line is where the upright sign's first line went.
    upright_wild = next(line for line in upright if "WILD" in line.text.upper())
    expected = unturn_box(upright_wild.box, 360 - degrees)  # turning by d is undone by turning by 360 - d
    ex, ey = sum(expected[0::2]) / 4, sum(expected[1::2]) / 4
    assert abs(centre[0] - ex) < 0.15 and abs(centre[1] - ey) < 0.15, (centre, (ex, ey))


def test_unturn_box_inverts_pil_rotation():
    box = (0.1, 0.2, 0.3, 0.2, 0.3, 0.4, 0.1, 0.4)
    assert unturn_box(unturn_box(box, 180), 180) == pytest.approx(box)
    assert unturn_box(unturn_box(box, 90), 270) == pytest.approx(box)
    # A point near the top-left corner of an image turned 90 degrees counter-clockwise was near its
    # top-right corner before.
    assert unturn_box((0.0, 0.0) * 4, 90)[:2] == (1.0, 0.0)
    with pytest.raises(ValueError):
        unturn_box(box, 45)


class MarkedEngine:
    """Reads confidently only when the red marker pixel is at the top-left (the image is upright)."""

    engine = "marked"
    model = "marked 1"

    def __init__(self, tall: bool = False):
        self.calls = 0
        self.tall = tall

    def recognize(self, image):
        self.calls += 1
        width, height = image.size
        box = (0.1, 0.1, 0.2, 0.1, 0.2, 0.9, 0.1, 0.9) if self.tall else (0.1, 0.1, 0.9, 0.1, 0.9, 0.2, 0.1, 0.2)
        if image.getpixel((0, 0)) == (255, 0, 0):
            return [OcrLine("HELLOWORLD", 0.98, box), OcrLine("x", 0.3, box)]
        return [OcrLine("OJJ3H", 0.45, box)]


def marked(size=(40, 20), corner="top-left"):
    image = Image.new("RGB", size, (255, 255, 255))
    spot = {"top-left": (0, 0), "bottom-right": (size[0] - 1, size[1] - 1), "top-right": (size[0] - 1, 0)}
    image.putpixel(spot[corner], (255, 0, 0))
    return image


def test_fallback_leaves_a_confident_reading_alone():
    inner = MarkedEngine()
    lines = OrientationFallback(inner).recognize(marked())
    assert [line.text for line in lines] == ["HELLOWORLD"], "lines under the minimum score are dropped"
    assert inner.calls == 1


def test_fallback_turns_a_poor_reading_and_maps_boxes_back():
    inner = MarkedEngine()
    fallback = OrientationFallback(inner)
    lines = fallback.recognize(marked(corner="bottom-right"))
    assert [line.text for line in lines] == ["HELLOWORLD"] and inner.calls == 2 and fallback.retries == 1
    assert lines[0].box == pytest.approx(unturn_box((0.1, 0.1, 0.9, 0.1, 0.9, 0.2, 0.1, 0.2), 180))


def test_fallback_tries_sideways_for_tall_boxes():
    inner = MarkedEngine(tall=True)
    # Turned 270 degrees counter-clockwise, the top-right corner comes to the top-left.
    lines = OrientationFallback(inner).recognize(marked(size=(20, 40), corner="top-right"))
    assert [line.text for line in lines] == ["HELLOWORLD"] and inner.calls == 3


def test_fallback_keeps_the_first_reading_when_turning_does_not_help():
    class Garbage(MarkedEngine):
        def recognize(self, image):
            self.calls += 1
            return [OcrLine("ZZ", 0.6, (0.1, 0.1, 0.9, 0.1, 0.9, 0.2, 0.1, 0.2))]

    inner = Garbage()
    lines = OrientationFallback(inner).recognize(marked())
    assert [line.text for line in lines] == ["ZZ"] and inner.calls == 2
    assert quality(lines) == pytest.approx(2 * 0.36)


# ---------------------------------------------------------------------------------------------------------
# reading order (faster-paddle returns its lines in detection order)


def rect(text: str, x1: float, y1: float, x2: float, y2: float, score: float = 0.99) -> OcrLine:
    """A line with an axis-aligned box, normalised corners clockwise from top-left."""
    return OcrLine(text, score, (x1, y1, x2, y1, x2, y2, x1, y2))


def order_of(lines: list[OcrLine], width: int = 1000, height: int = 1000) -> list[str]:
    return [line.text for line in reading_order(lines, width, height)]


def test_reading_order_reads_a_sign_top_to_bottom():
    """A sign's lines, the bottom one detected first (what faster-paddle did with WILD LIFE / CROSSING)."""
    lines = [rect("SLOW", 0.1, 0.03, 0.9, 0.28), rect("CROSSING", 0.08, 0.71, 0.9, 0.89),
             rect("WILD LIFE", 0.08, 0.54, 0.9, 0.72), rect("DOWN", 0.1, 0.24, 0.9, 0.49)]  # fmt: skip
    assert order_of(lines) == ["SLOW", "DOWN", "WILD LIFE", "CROSSING"]


def test_reading_order_keeps_a_column_together():
    """A title set beside a list of names: by rows the names would fall between the title's two lines
    (ENGLISH, JILL, ANNA, LANGUAGE, ...); by columns the title stays whole."""
    lines = [rect("ENGLISH", 0.36, 0.12, 0.83, 0.30), rect("JILL CARTER", 0.03, 0.14, 0.26, 0.22),
             rect("ANNA CHARLES", 0.03, 0.29, 0.32, 0.36), rect("LANGUAGE", 0.36, 0.40, 0.94, 0.59),
             rect("GARRETT DOYLE", 0.03, 0.42, 0.35, 0.51), rect("PAUL MORRIS", 0.03, 0.56, 0.29, 0.65)]  # fmt: skip
    assert order_of(lines) == ["JILL CARTER", "ANNA CHARLES", "GARRETT DOYLE", "PAUL MORRIS", "ENGLISH", "LANGUAGE"]


def test_reading_order_reads_a_heading_before_its_columns():
    lines = [rect("right one", 0.55, 0.30, 0.95, 0.40), rect("left one", 0.05, 0.30, 0.45, 0.40),
             rect("HEADING ACROSS", 0.05, 0.05, 0.95, 0.20), rect("left two", 0.05, 0.45, 0.45, 0.55),
             rect("right two", 0.55, 0.45, 0.95, 0.55)]  # fmt: skip
    assert order_of(lines) == ["HEADING ACROSS", "left one", "left two", "right one", "right two"]


def test_reading_order_reads_a_row_left_to_right_and_vertical_columns_right_to_left():
    row = [rect("LIFE", 0.52, 0.58, 0.87, 0.70), rect("WILD", 0.11, 0.59, 0.48, 0.69)]
    assert order_of(row) == ["WILD", "LIFE"]
    # Words whose boxes overlap in height are one row, even when their tops differ a little.
    assert order_of([rect("B", 0.5, 0.12, 0.6, 0.2), rect("A", 0.1, 0.1, 0.2, 0.18)]) == ["A", "B"]
    # Classical Chinese set in vertical columns is read from the right.
    columns = [rect("已取之時不參", 0.10, 0.05, 0.20, 0.95), rect("有許是是非非", 0.70, 0.05, 0.80, 0.95),
               rect("是非不得問之", 0.40, 0.05, 0.50, 0.95)]  # fmt: skip
    assert order_of(columns, 834, 2036) == ["有許是是非非", "是非不得問之", "已取之時不參"]
    assert reading_order([]) == []


@pytest.fixture(scope="module")
def cover(tmp_path_factory):
    """A rendered book cover: a two-line title beside four names in smaller type, rows interleaved."""
    from PIL import ImageDraw, ImageFont

    from tests.test_sync import LATIN_FONT

    small, big = ImageFont.truetype(LATIN_FONT, 30), ImageFont.truetype(LATIN_FONT, 84)
    image = Image.new("RGB", (900, 420), (250, 250, 240))
    draw = ImageDraw.Draw(image)
    for row, name in enumerate(["JILL CARTER", "ANNA CHARLES", "GARRETT DOYLE", "PAUL MORRIS"]):
        draw.text((30, 60 + 60 * row), name, font=small, fill=(20, 20, 20))
    draw.text((330, 40), "ENGLISH", font=big, fill=(120, 20, 20))
    draw.text((330, 160), "LANGUAGE", font=big, fill=(120, 20, 20))
    return image


def test_faster_paddle_reads_a_title_beside_a_list_as_one_phrase(engines, cover):
    """faster-paddle's own order puts names between the title's lines (ENGLISH, JILL CARTER, ANNA CHARLES,
    LANGUAGE, ...): the stored text then breaks the phrase "english language"; in reading order it holds."""
    texts = [line.text.upper().replace(" ", "") for line in engine(engines, TINY).recognize(cover)]
    assert "ENGLISH" in texts and "LANGUAGE" in texts, texts
    assert texts.index("LANGUAGE") == texts.index("ENGLISH") + 1, texts
    assert {"JILLCARTER", "PAULMORRIS"} <= set(texts), texts


def test_registry_errors():
    with pytest.raises(ConfigError, match="unknown OCR engine 'tesseract'"):
        build_engine("tesseract")
    with pytest.raises(ConfigError, match="at least 32"):
        build_engine(TINY, det_max_side=8)


def test_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(registry.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install rapidocr"):
        build_engine("rapidocr-v6")


def test_det_max_side_reaches_the_engine():
    small = build_engine(TINY, threads=1, det_max_side=736)
    assert small._inner._engine.config["det_max_side"] == 736


# ---------------------------------------------------------------------------------------------------------
# the CLI: --ocr-engine, env, status, doctor, moving a library


def test_engine_choice_status_doctor_and_moving(db, tmp_path):
    photos = [
        text_photo(tmp_path / "photos", "sign.jpg", ["WILD LIFE"]),
        plain_photo(tmp_path / "photos", "b.jpg", (1, 2, 3)),
    ]
    import_library(db, photos, tmp_path / "media")
    runner = CliRunner()
    base = ["--database-url", db]
    sync = [*base, "sync", "--media-root", str(tmp_path / "media"), "--no-clip"]

    bad = runner.invoke(cli, [*sync, "--ocr-engine", "tesseract"])
    assert bad.exit_code == 2 and "tesseract" in bad.output and "faster-paddle-tiny" in bad.output

    other = "rapidocr-v4"  # not the default: the library is then moved to the default
    assert other != DEFAULT_ENGINE
    first = runner.invoke(cli, sync, env={"IMMICH_SEARCH_OCR_ENGINE": other})
    assert first.exit_code == 0, first.output
    rows = ocr_rows(db)
    assert {row["engine"] for row in rows.values()} == {other}
    assert "PP-OCRv4" in rows["sign.jpg"]["model"] and "WILD" in rows["sign.jpg"]["text"].upper()

    status = runner.invoke(cli, [*base, "status"], env={"COLUMNS": "200"})
    assert status.exit_code == 0 and "OCR text read by" in status.output and other in status.output

    doctor = runner.invoke(cli, [*base, "doctor"], env={"COLUMNS": "400"})
    assert "OCR engine" in doctor.output and "read by another engine" in doctor.output, doctor.output
    assert "--reread-other-engines" in doctor.output

    again = runner.invoke(cli, sync)  # the default engine, nothing new: nothing is read again
    assert again.exit_code == 0 and {row["engine"] for row in ocr_rows(db).values()} == {other}

    moved = runner.invoke(cli, [*sync, "--reread-other-engines"])
    assert moved.exit_code == 0 and "queued 2 photo(s)" in moved.output, moved.output
    rows = ocr_rows(db)
    assert {row["engine"] for row in rows.values()} == {DEFAULT_ENGINE}
    assert "PP-OCRv6 tiny" in rows["sign.jpg"]["model"] and "WILD" in rows["sign.jpg"]["text"].upper()
    status = runner.invoke(cli, [*base, "status", "--json"])
    assert status.exit_code == 0 and f'"engine": "{DEFAULT_ENGINE}"' in status.output
    doctor = runner.invoke(cli, [*base, "doctor"], env={"COLUMNS": "400"})
    assert "read by another engine" not in doctor.output and f"{DEFAULT_ENGINE} 2" in doctor.output


def test_default_engine_is_faster_paddle_tiny():
    """faster-paddle-tiny is the default: it meets issue 16's bar for one (README, "OCR engines"), and it is a
    core dependency, so a plain install can run it."""
    assert DEFAULT_ENGINE == "faster-paddle-tiny"
    assert engine_installed(DEFAULT_ENGINE)


def test_without_faster_paddle_the_default_is_pp_ocr_v4(monkeypatch):
    """faster-paddle has x86_64 Linux wheels only: on an arm64 host (pyproject does not install it there)
    the default is rapidocr-v4, which runs everywhere."""
    import importlib.util

    from immich_search.ocr import registry

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "faster_paddle" else real(name, *a)
    )
    assert registry._default_engine() == "rapidocr-v4"
    monkeypatch.undo()
    assert registry._default_engine() == "faster-paddle-tiny"


def test_reprocess_with_another_engine(db, tmp_path):
    import_library(db, [text_photo(tmp_path / "photos", "sign.jpg", ["WILD LIFE"])], tmp_path / "media")
    asset = assets_by_name(db)["sign.jpg"]
    base = ["--database-url", db, "reprocess", asset, "--ocr", "--media-root", str(tmp_path / "media")]
    result = CliRunner().invoke(cli, [*base, "--ocr-engine", "rapidocr-v6"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    row = ocr_rows(db)["sign.jpg"]
    assert row["engine"] == "rapidocr-v6" and "PP-OCRv6 small" in row["model"] and "WILD" in row["text"].upper()


def test_migration_backfills_the_engine(immich_db):
    from immich_search import migrate

    migrate.upgrade(immich_db, "0004")
    with psycopg.connect(immich_db) as conn:
        owner = add_user(conn, "old@example.com")
        ids = {}
        for name, source in (("a.jpg", "rapidocr"), ("b.jpg", "immich")):
            ids[source] = str(
                immich_rows.insert_asset(conn, owner, f"/data/{name}", name, hashlib.sha1(name.encode()).digest())
            )
            conn.execute(
                "INSERT INTO immich_search.ocr (asset_id, source, model, tokenizer_version) VALUES (%s, %s, 'm', 2)",
                (ids[source], source),
            )
    migrate.upgrade(immich_db)
    with psycopg.connect(immich_db) as conn:
        engines = dict(conn.execute("SELECT asset_id::text, engine FROM immich_search.ocr").fetchall())
        assert conn.execute("SELECT immich_search.ocr_tsquery('包邮')::text").fetchone()[0] == "'包邮'"
    assert engines == {ids["rapidocr"]: "rapidocr-v4", ids["immich"]: "immich"}
    migrate.downgrade(immich_db, "0004")
    with psycopg.connect(immich_db) as conn:
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'immich_search' "
            "AND table_name = 'ocr'")}  # fmt: skip
        assert "engine" not in columns and "model" in columns
        assert conn.execute("SELECT immich_search.ocr_tsquery('包邮')::text").fetchone()[0] == "'包' & '邮' | '包邮'"


# ---------------------------------------------------------------------------------------------------------
# `ocr:` precision


@pytest.mark.parametrize("tokenizer", ["python", "sql"])
def test_cjk_pair_needs_the_characters_together(db, tokenizer):
    with psycopg.connect(db) as conn:
        owner = add_user(conn, "pair@example.com")
        add_asset(conn, owner, "apart.jpg", ["包括运费", "中国邮局"], age_days=1)
        add_asset(conn, owner, "together.jpg", ["顺丰包邮"], age_days=2)
        add_asset(conn, owner, "words.jpg", ["春季新款", "全场上新"], age_days=3)
    from immich_search.db import open_pool

    with open_pool(db) as pool:

        def names(query: str) -> list[str]:
            return [hit.original_file_name for hit in search_ocr(pool, query, owner, limit=10, tokenizer=tokenizer)]

        assert names("ocr:包邮") == ["together.jpg"]
        assert names("ocr:顺丰包邮") == ["together.jpg"]
        assert names("ocr:上新") == ["words.jpg"]


@pytest.mark.parametrize("tokenizer", ["python", "sql"])
@pytest.mark.parametrize(
    ("line", "phrase"),
    [
        ("NAME:WORD here", '"name word"'),
        ("Wiper Lever LH/RH", '"lever lh"'),
        ("Wiper Lever LH/RH", '"lh rh"'),
        ("Théâtre du PALAIS-ROYAL", '"du palais royal"'),
        ("ZU ZAHLEN EURO:8,83", '"euro 8"'),
    ],
)
def test_glued_punctuation_does_not_hide_words_from_a_phrase(db, tokenizer, line, phrase):
    with psycopg.connect(db) as conn:
        owner = add_user(conn, "glue@example.com")
        add_asset(conn, owner, "glued.jpg", [line], age_days=1)
        add_asset(conn, owner, "other.jpg", ["something else entirely"], age_days=2)
    from immich_search.db import open_pool

    with open_pool(db) as pool:
        hits = search_ocr(pool, "ocr:" + phrase, owner, limit=10, tokenizer=tokenizer)
    assert [hit.original_file_name for hit in hits] == ["glued.jpg"]
    assert hits[0].score >= 0.5, "an exact match, not the fuzzy fallback"
