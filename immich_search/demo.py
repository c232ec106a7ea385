"""``immich-search demo``: an Immich-shaped library, indexed and searched, on a real PostgreSQL.

The library is built as Immich stores one (Immich v3.1, ``server/src/cores/storage.core.ts``): a user,
``asset`` rows with ``originalFileName``, originals under ``/data/upload/<user>/<xx>/<yy>/``, JPEG
previews with the shorter side at most 1440 px under ``/data/thumbs/<user>/<xx>/<yy>/<id>_preview.jpeg``
and their ``asset_file`` rows. The files live under the demo's work directory, mapped like a real
``UPLOAD_LOCATION``.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import platformdirs
import psycopg
from PIL import Image, ImageDraw, ImageFont, ImageOps
from rich.console import Console
from rich.progress import Progress

from immich_search import immich_rows, migrate
from immich_search.db import connect, open_pool
from immich_search.ocr.registry import DEFAULT_ENGINE
from immich_search.ranking.ocr_search import search_ocr
from immich_search.sqlfiles import read_sql
from immich_search.sync.pipeline import OcrSync
from immich_search.sync.sources import MediaFileSource
from immich_search.textfold import fold
from immich_search.tokens import segments

DEMO_EMAIL = "demo@immich-search.local"
IMMICH_MEDIA_LOCATION = "/data"
PREVIEW_SIZE = 1440
"""Immich's default preview size: the shorter side, in pixels (``image.preview.size``)."""
PREVIEW_QUALITY = 80
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}

# Font files that carry CJK glyphs on common systems (Debian/Ubuntu fonts-noto-cjk, Fedora, macOS).
CJK_FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/System/Library/Fonts/PingFang.ttc",
)
LATIN_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
)

# (file name, lines, background, needs a CJK font). Invented texts in the spirit of everyday photos.
GENERATED_PHOTOS = (
    ("invoice_2024.jpg", ["增值税电子普通发票", "发票代码 011002300111", "合计 ¥ 128.00"], (250, 248, 240), True),
    ("train_ticket.jpg", ["南昌 → 上海虹桥", "G1372 二等座", "2024年05月01日 08:15开"], (214, 232, 250), True),
    ("street_sign.jpg", ["愚园路", "Yuyuan Rd."], (30, 70, 160), True),
    ("noodle_menu.jpg", ["牛肉麵 120", "水餃 10顆 80", "酸辣湯 40"], (255, 236, 210), True),
    ("road_sign.jpg", ["SLOW DOWN", "WILD LIFE", "CROSSING"], (250, 210, 40), False),
    ("boarding_pass.jpg", ["BOARDING PASS", "Gate 23  Seat 14C", "PEK → SFO"], (235, 235, 235), False),
    ("receipt_de.jpg", ["Delphin Apotheke", "Detmolder Straße 8", "Summe EUR 19,90"], (255, 255, 255), False),
)
GENERATED_QUERIES = (
    "ocr:发票",
    "ocr:二等座",
    "ocr:牛肉面",
    "ocr:水饺",
    "ocr:wildlife",
    'ocr:"boarding pass"',
    "ocr:summe",
)


def _font(candidates: tuple[str, ...], size: int) -> ImageFont.FreeTypeFont | None:
    for path in candidates:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return None


def generate_photos(folder: Path) -> tuple[list[Path], list[str]]:
    """Render the demo's photos with text into ``folder``.

    Chinese photos are made only when a CJK font is found (see :data:`CJK_FONT_CANDIDATES`); Latin ones
    use DejaVu or Liberation when present, else Pillow's built-in font at a larger size.

    Returns:
        The image files and the example queries that fit them.
    """
    folder.mkdir(parents=True, exist_ok=True)
    cjk = _font(CJK_FONT_CANDIDATES, 96)
    latin = _font(LATIN_FONT_CANDIDATES, 96) or cjk or ImageFont.load_default(size=96)
    made: list[Path] = []
    for name, lines, background, needs_cjk in GENERATED_PHOTOS:
        font = cjk if needs_cjk else latin
        if font is None:
            continue
        image = Image.new("RGB", (1800, 1200), background)
        draw = ImageDraw.Draw(image)
        ink = (255, 255, 255) if sum(background) < 300 else (20, 20, 20)
        for row, line in enumerate(lines):
            draw.text((120, 200 + row * 260), line, font=font, fill=ink)
        path = folder / name
        image.save(path, quality=92)
        made.append(path)
    plain = Image.new("RGB", (1600, 1200), (90, 140, 90))  # a photo without text
    ImageDraw.Draw(plain).ellipse((500, 300, 1100, 900), fill=(200, 60, 50))
    plain.save(folder / "no_text.jpg", quality=92)
    made.append(folder / "no_text.jpg")
    queries = [q for q in GENERATED_QUERIES if cjk is not None or not _has_han(q)]
    return made, queries


def _has_han(text: str) -> bool:
    return any("\u4e00" <= char <= "\u9fff" for char in text)


def make_preview(original: bytes) -> bytes:
    """Return Immich's preview of an image: EXIF-rotated, shorter side at most 1440 px, JPEG quality 80."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(original))).convert("RGB")
    shorter = min(image.size)
    if shorter > PREVIEW_SIZE:
        scale = PREVIEW_SIZE / shorter
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=PREVIEW_QUALITY)
    return out.getvalue()


def ensure_immich_schema(url: str) -> None:
    """Create the Immich-shaped tables (``sql/immich/v3_1_subset.sql``) when ``public.asset`` is missing."""
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('public.asset')").fetchone()[0] is None:
            conn.execute(read_sql("immich/v3_1_subset.sql"))


def import_library(url: str, photos: list[Path], media_root: Path, email: str = DEMO_EMAIL) -> str:
    """Add ``photos`` for the user ``email`` as Immich would store them; return the user's id.

    Photos already imported (same owner and checksum, Immich's own unique key) are skipped.
    """
    with connect(url) as conn:
        user_id = immich_rows.upsert_user(conn, email, "Demo")
        for path in photos:
            data = path.read_bytes()
            checksum = hashlib.sha1(data).digest()
            if immich_rows.asset_by_checksum(conn, user_id, checksum):
                continue
            asset_id = str(uuid.uuid4())
            shard = f"{user_id}/{asset_id[:2]}/{asset_id[2:4]}"
            original = f"upload/{shard}/{asset_id}{path.suffix.lower()}"
            preview = f"thumbs/{shard}/{asset_id}_preview.jpeg"
            for relative, content in ((original, data), (preview, make_preview(data))):
                target = media_root / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            # Immich's upload takes the file's dates from the client; the file's modification time here.
            modified = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
            immich_rows.insert_asset(
                conn,
                user_id,
                f"{IMMICH_MEDIA_LOCATION}/{original}",
                path.name,
                checksum,
                asset_id=asset_id,
                taken_at=modified,
            )
            immich_rows.insert_preview(conn, asset_id, f"{IMMICH_MEDIA_LOCATION}/{preview}")
            immich_rows.insert_exif(conn, asset_id, file_size=len(data))
        conn.commit()
    return user_id


def _queries_for(images: Path, pool, limit: int = 6) -> list[str]:
    """Example queries for user photos: ``queries.json`` beside or in the folder, else frequent words."""
    for candidate in (images / "queries.json", images.parent / "queries.json"):
        if candidate.is_file():
            try:
                entries = json.loads(candidate.read_text(encoding="utf-8"))
                return ["ocr:" + entry["query"] for entry in entries[:limit]]
            except (ValueError, KeyError, TypeError):
                break
    with pool.connection() as conn:
        texts = [text for (text,) in conn.execute("SELECT text FROM immich_search.ocr")]
    counts = Counter(segment for text in texts for kind, segment in segments(fold(text)) if len(segment) >= 2 and kind)
    return ["ocr:" + word for word, _ in counts.most_common(limit)]


def run_demo(url: str, *, images: Path | None, workdir: Path | None, console: Console, progress: Progress) -> None:
    """Build the library (generated photos, or ``images``), migrate, sync and print example searches."""
    workdir = workdir or Path(platformdirs.user_data_dir("immich-search")) / "demo"
    media_root = workdir / "media"
    media_root.mkdir(parents=True, exist_ok=True)
    if images is None:
        generated = workdir / "generated"
        shutil.rmtree(generated, ignore_errors=True)
        photos, queries = generate_photos(generated)
        if not any(_has_han(q) for q in queries):
            console.print("[yellow]no CJK font found (e.g. apt-get install fonts-noto-cjk): English photos only")
    else:
        photos = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        queries = []
    console.print(f"[bold]1/4[/bold] Immich-shaped library: {len(photos)} photos under {media_root}")
    ensure_immich_schema(url)
    user_id = import_library(url, photos, media_root)
    console.print("[bold]2/4[/bold] migrate: schema immich_search")
    migrate.upgrade(url)
    console.print(f"[bold]3/4[/bold] sync: OCR of every preview ({DEFAULT_ENGINE}, CPU)")
    with open_pool(url) as pool:
        with progress:
            task = progress.add_task("OCR", total=None)
            ocr = OcrSync(pool, MediaFileSource(media_root, IMMICH_MEDIA_LOCATION))
            try:
                report = ocr.run_once(
                    on_progress=lambda done, total: progress.update(task, completed=done, total=total)
                )
            finally:
                ocr.close()  # the worker row goes: `status` must not show the demo as a silent worker
        console.print(
            f"      indexed {report.done}, failed {report.failed} in {report.seconds:.1f} s"
            f" ({report.images_per_second:.2f} images/s)"
        )
        if images is not None:
            queries = _queries_for(images, pool)
        console.print("[bold]4/4[/bold] search")
        from immich_search.commands.common import print_hits

        for text in queries:
            console.print(f"\n[bold cyan]immich-search search {text!r}[/bold cyan]")
            print_hits(search_ocr(pool, text, user_id, limit=5), console)
    console.print(f"\nThe same ranking from psql:\n  SELECT * FROM immich_search.search_ocr('发票', '{user_id}');")
