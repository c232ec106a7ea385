"""Sync throughput on the dev corpus: the whole pipeline against the bare model loop, 2 workers, memory.

What it measures, in one run, on a real PostgreSQL, with real RapidOCR (CPU), over the corpus's photos
(``../shared/corpus/dev/images``) imported as one user's library as Immich stores one (an Immich-shaped
database, JPEG previews with the shorter side at most 1440 px under ``thumbs/``), repeated until there
are ``--images`` assets (each copy its own asset, preview file and checksum):

1. **end to end**: ``SyncPipeline.run_once`` (discovery, queue claims and leases, reading and decoding
   each preview, OCR, tokenising, writing and acknowledging each batch in one transaction), one worker in
   this process, one pipeline for the whole run (as ``sync --watch`` keeps one);
2. **bare model loop**: ``engine.recognize(image)`` with the same engine over the same images in the same
   order, decoded beforehand (no I/O, no database): the ceiling;
3. the resident memory of this process after every 100 images;
4. **2 workers**: ``run_sync(..., workers=2)`` (what ``immich-search sync --workers 2`` runs: two
   processes, each with its own RapidOCR on cores / 2 threads) against ``run_sync(..., workers=1)`` (one
   worker in this process, onnxruntime on every core) over the same ``--worker-images`` assets, requeued;
5. **Immich's own OCR** (``--ocr-source immich``): the lines of part 1 copied into Immich's ``asset_ocr``
   (one row per box, as Immich v2.2+ stores them, ``asset_job_status."ocrAt"`` stamped), every asset
   requeued, one pass of ``SyncPipeline`` that reads those rows instead of the previews: how fast a
   library Immich already OCR'd becomes searchable.

The runs are interleaved in rounds (1 and 2: 100 new assets imported, then both over those 100, the
order alternating; 4: rounds of half the worker images, both orders), so a change in machine load during
the benchmark (other processes, frequency scaling) weighs on both sides of each comparison alike.

Figures: images per second of each; ratio = end to end / bare loop (target >= 0.90, i.e. overhead
<= 10 %); 2-worker speed-up = 2-worker rate / 1-worker rate (wall times include starting the workers and
loading their models); RSS per 100 images and its growth from the first 100 to the last (target: none
beyond noise over 1,000 images). Loading the model of part 1 and 2 is excluded. Times are only
compared within one run.

Usage::

    .venv/bin/python benchmarks/sync_throughput.py                  # embedded PostgreSQL in a temp dir
    .venv/bin/python benchmarks/sync_throughput.py --images 500 --worker-images 200 --json out.json
    .venv/bin/python benchmarks/sync_throughput.py --database-url postgresql://.../scratch

``--database-url`` must name a scratch database: the library is written into it (Immich's tables are
created when missing).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import psycopg
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from immich_search import migrate  # noqa: E402
from immich_search.db import open_pool  # noqa: E402
from immich_search.demo import IMAGE_SUFFIXES, IMMICH_MEDIA_LOCATION, ensure_immich_schema, make_preview  # noqa: E402
from immich_search.ocr_engine import RapidOcrEngine  # noqa: E402
from immich_search.sync.decode import decode_preview  # noqa: E402
from immich_search.sync.pipeline import SyncPipeline  # noqa: E402
from immich_search.sync.sources import MediaFileSource  # noqa: E402
from immich_search.sync.tasks import OcrTask  # noqa: E402
from immich_search.sync.workers import WorkerSpec, run_sync, sigterm_as_interrupt  # noqa: E402
from immich_search.tokens import document_tokens  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "corpus" / "dev"
BENCH_EMAIL = "sync-bench@immich-search.local"


def rss_mib() -> float:
    """Resident memory of this process in MiB (Linux ``/proc``; ``ru_maxrss`` elsewhere, a peak)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def import_repeated(url: str, images: list[Path], count: int, media_root: Path, offset: int = 0) -> list[str]:
    """Import ``count`` assets cycling through ``images`` from position ``offset`` (one preview per asset).

    Returns the asset ids in import order.
    """
    ids: list[str] = []
    with psycopg.connect(url) as conn:
        user_id = conn.execute(
            'INSERT INTO public."user" (email, name) VALUES (%s, %s) ON CONFLICT (email) DO UPDATE SET name = '
            "excluded.name RETURNING id",
            (BENCH_EMAIL, "Bench"),
        ).fetchone()[0]
        rows = []
        for index in range(offset, offset + count):
            asset_id = str(uuid.uuid4())
            source = images[index % len(images)]
            relative = f"thumbs/{user_id}/{asset_id[:2]}/{asset_id[2:4]}/{asset_id}_preview.jpeg"
            target = media_root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_preview(source))
            checksum = hashlib.sha1(f"{index}:{source.name}".encode()).digest()
            rows.append((asset_id, user_id, f"{IMMICH_MEDIA_LOCATION}/upload/{asset_id}{source.suffix}", source.name,
                         checksum, f"{IMMICH_MEDIA_LOCATION}/{relative}"))  # fmt: skip
            ids.append(asset_id)
        with conn.cursor() as cur:
            cur.executemany(
                'INSERT INTO public.asset (id, "ownerId", type, "originalPath", "originalFileName", checksum, '
                '"checksumAlgorithm", "fileCreatedAt", "fileModifiedAt", "localDateTime") '
                "VALUES (%s, %s, 'IMAGE', %s, %s, %s, 'sha1', now(), now(), now())",
                [row[:5] for row in rows],
            )
            cur.executemany(
                "INSERT INTO public.asset_file (\"assetId\", type, path) VALUES (%s, 'preview', %s)",
                [(row[0], row[5]) for row in rows],
            )
        conn.commit()
    return ids


_PREVIEWS: dict[Path, bytes] = {}


def _preview(path: Path) -> bytes:
    """Immich's preview of a corpus photo (made once per photo)."""
    if path not in _PREVIEWS:
        _PREVIEWS[path] = make_preview(path.read_bytes())
    return _PREVIEWS[path]


def bare_loop(engine: RapidOcrEngine, decoded: list, offset: int, count: int) -> float:
    """Seconds the model alone takes over ``count`` images cycling through ``decoded`` from ``offset``."""
    started = time.perf_counter()
    for index in range(offset, offset + count):
        engine.recognize(decoded[index % len(decoded)])
    return time.perf_counter() - started


COPY_TO_IMMICH_OCR = """
INSERT INTO public.asset_ocr ("assetId", x1, y1, x2, y2, x3, y3, x4, y4, "boxScore", "textScore", text)
SELECT o.asset_id, (b ->> 0)::real, (b ->> 1)::real, (b ->> 2)::real, (b ->> 3)::real, (b ->> 4)::real,
       (b ->> 5)::real, (b ->> 6)::real, (b ->> 7)::real, (l ->> 'score')::real, (l ->> 'score')::real, l ->> 'text'
FROM immich_search.ocr o, jsonb_array_elements(o.lines) AS l, LATERAL (SELECT l -> 'box') AS box(b)
WHERE o.asset_id = ANY(%(ids)s::uuid[])
"""


def reuse_immich_ocr(url: str, media_root: Path, ids: list[str]) -> tuple[float, int]:
    """Part 5: index ``ids`` from Immich's own OCR (our lines copied into ``asset_ocr``).

    Returns:
        (images per second of the pass, assets it indexed).

    Raises:
        SystemExit: the pass did not index every asset from Immich's rows.
    """
    with psycopg.connect(url) as conn:
        conn.execute('DELETE FROM public.asset_ocr WHERE "assetId" = ANY(%(ids)s::uuid[])', {"ids": ids})
        conn.execute(COPY_TO_IMMICH_OCR, {"ids": ids})
        conn.execute(
            'INSERT INTO public.asset_job_status ("assetId", "ocrAt") SELECT unnest(%(ids)s::uuid[]), now() '
            'ON CONFLICT ("assetId") DO UPDATE SET "ocrAt" = excluded."ocrAt"',
            {"ids": ids},
        )
        conn.execute("SELECT immich_search.requeue(%s::uuid[], ARRAY['ocr'])", (ids,))
        conn.commit()
    with open_pool(url) as pool:
        # Source "immich" reads Immich's rows only: no preview is read and no model is loaded.
        task = OcrTask(source="immich")
        pipeline = SyncPipeline(pool, MediaFileSource(media_root, IMMICH_MEDIA_LOCATION), [task])
        report = pipeline.run_once(discover_changes=False)
        pipeline.close()
        with pool.connection() as conn:
            from_immich = conn.execute(
                "SELECT count(*) FROM immich_search.ocr WHERE asset_id = ANY(%(ids)s::uuid[]) AND source = 'immich'",
                {"ids": ids},
            ).fetchone()[0]
    if report.failed or from_immich != len(ids):
        raise SystemExit(f"Immich's OCR indexed {from_immich} of {len(ids)} ({report.errors[:3]})")
    return report.done / report.seconds, report.done


def run_benchmark(url: str, corpus: Path, count: int, worker_count: int, media_root: Path, console: Console) -> dict:
    """Build the library in the database at ``url``, measure, and return the figures."""
    images = sorted(p for p in (corpus / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise SystemExit(f"no images under {corpus / 'images'}")
    ensure_immich_schema(url)
    migrate.upgrade(url)
    media_root.mkdir(parents=True, exist_ok=True)
    engine = RapidOcrEngine()
    decoded = [decode_preview(_preview(path)) for path in images]
    engine.recognize(decoded[0])  # warm up: first-call allocations are not the loop's
    document_tokens(["预热 warm-up"])  # load jieba's dictionary (a one-off second, like loading the model)
    console.print(f"{count} assets from {len(images)} distinct corpus photos ({corpus}), in rounds of 100")

    bare_s = e2e_s = 0.0
    done = 0
    ids: list[str] = []
    memory: list[tuple[int, float]] = []
    with open_pool(url) as pool:
        pipeline = SyncPipeline(pool, MediaFileSource(media_root, IMMICH_MEDIA_LOCATION), [OcrTask(engine)])
        for round_index, offset in enumerate(range(0, count, 100)):
            size = min(100, count - offset)
            ids += import_repeated(url, images, size, media_root, offset)
            for step in ("e2e", "bare") if round_index % 2 == 0 else ("bare", "e2e"):
                if step == "bare":
                    bare_s += bare_loop(engine, decoded, offset, size)
                else:
                    report = pipeline.run_once()
                    if report.failed or report.done != size:
                        raise SystemExit(f"the sync indexed {report.done} of {size} ({report.errors[:3]})")
                    e2e_s += report.seconds
                    done += report.done
            memory.append((offset + size, round(rss_mib(), 1)))
            console.print(
                f"  {offset + size:5d} images: end to end {done / e2e_s:.3f}/s, "
                f"bare loop {(offset + size) / bare_s:.3f}/s, RSS {memory[-1][1]:.0f} MiB"
            )
        pipeline.close()
    bare_rate, e2e_rate = count / bare_s, done / e2e_s

    spec = WorkerSpec(
        database_url=url,
        media_root=str(media_root),
        immich_media_location=IMMICH_MEDIA_LOCATION,
        ocr_source="rapidocr",
        clip=False,
    )
    one_s = two_s = 0.0
    half = max(worker_count // 2, 1)
    chunks = [ids[start : start + half] for start in range(0, worker_count, half)]
    for round_index, chunk in enumerate(chunks):
        for workers in (1, 2) if round_index % 2 == 0 else (2, 1):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT immich_search.requeue(%s::uuid[], ARRAY['ocr'])", (chunk,))
            started = time.perf_counter()
            report = run_sync(spec, workers=workers)
            seconds = time.perf_counter() - started
            if report.done != len(chunk):
                raise SystemExit(f"{workers} worker(s) indexed {report.done} of {len(chunk)}")
            if workers == 1:
                one_s += seconds
            else:
                two_s += seconds
            console.print(f"  {workers} worker(s) over {len(chunk)} images: {len(chunk) / seconds:.3f}/s")
    processed = sum(len(chunk) for chunk in chunks)
    one_rate, two_rate = processed / one_s, processed / two_s

    immich_rate, immich_done = reuse_immich_ocr(url, media_root, ids)
    console.print(f"  Immich's own OCR over {immich_done} assets: {immich_rate:.1f}/s")

    growth = memory[-1][1] - memory[0][1] if len(memory) >= 2 else 0.0
    return {
        "images": count,
        "distinct_images": len(images),
        "cpu_count": os.cpu_count(),
        "bare_model_loop": {"seconds": round(bare_s, 2), "images_per_second": round(bare_rate, 3)},
        "end_to_end": {"seconds": round(e2e_s, 2), "images_per_second": round(e2e_rate, 3)},
        "ratio": round(e2e_rate / bare_rate, 3),
        "overhead_percent": round((1 - e2e_rate / bare_rate) * 100, 1),
        "workers": {
            "images": processed,
            "one_worker": {"seconds": round(one_s, 2), "images_per_second": round(one_rate, 3)},
            "two_workers": {"seconds": round(two_s, 2), "images_per_second": round(two_rate, 3)},
            "speed_up": round(two_rate / one_rate, 3),
            "note": "wall times include starting the workers and loading their models",
        },
        "immich_ocr_reuse": {"images": immich_done, "images_per_second": round(immich_rate, 1)},
        "rss_mib_per_100_images": memory,
        "rss_growth_mib": round(growth, 1),
    }


def print_figures(figures: dict, console: Console) -> None:
    """Print the figures as tables."""
    table = Table("run", "images", "seconds", "images/s", title="sync throughput (RapidOCR, CPU)")
    for label, key in (("bare model loop", "bare_model_loop"), ("end to end, 1 worker, in process", "end_to_end")):
        row = figures[key]
        table.add_row(label, str(figures["images"]), f"{row['seconds']:.1f}", f"{row['images_per_second']:.3f}")
    workers = figures["workers"]
    for label, key in (("run_sync, 1 worker", "one_worker"), ("run_sync, 2 workers", "two_workers")):
        row = workers[key]
        table.add_row(label, str(workers["images"]), f"{row['seconds']:.1f}", f"{row['images_per_second']:.3f}")
    console.print(table)
    console.print(
        f"ratio end to end / bare loop: {figures['ratio']:.3f} (overhead {figures['overhead_percent']:.1f} %; "
        f"target >= 0.90)"
    )
    console.print(f"2-worker speed-up: {workers['speed_up']:.2f}x on {figures['cpu_count']} cores")
    reuse = figures["immich_ocr_reuse"]
    console.print(f"Immich's own OCR reused (--ocr-source immich): {reuse['images_per_second']:.1f} images/s "
                  f"over {reuse['images']}")  # fmt: skip
    marks = ", ".join(f"{n}: {mib:.0f}" for n, mib in figures["rss_mib_per_100_images"])
    console.print(f"resident memory (MiB) after N images: {marks}; growth {figures['rss_growth_mib']:+.1f} MiB")


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="corpus folder (holding images/)")
    parser.add_argument("--images", type=int, default=1000, help="assets in the library (corpus repeated)")
    parser.add_argument("--worker-images", type=int, default=500, help="assets for the 2-worker run")
    parser.add_argument("--database-url", help="a scratch database (default: an embedded PostgreSQL)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="immich-search-sync-bench-"))
    url = args.database_url
    with sigterm_as_interrupt():  # a SIGTERM, like Ctrl-C, still stops the embedded server
        try:
            if url is None:
                from immich_search.embedded import start_embedded

                url = start_embedded(workdir / "pg", database="immich")
            figures = run_benchmark(url, args.corpus, args.images, min(args.worker_images, args.images),
                                    workdir / "media", console)  # fmt: skip
        finally:
            if args.database_url is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    import pgserver

                    pgserver.get_server(workdir / "pg").cleanup()
            shutil.rmtree(workdir, ignore_errors=True)
    print_figures(figures, console)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
