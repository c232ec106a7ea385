"""The describe task's overhead against calling the vision server directly, and requests in flight per host.

What it measures, in one run, on a real PostgreSQL, against the stand-in vision server of the tests
(``tests/vision_standin.py``: Ollama's ``/api/chat``, answering after ``--delay`` seconds as a model would):

1. **direct**: :func:`~immich_search.sync.vision.describe_many` over the JPEGs the task would send
   (encoded beforehand), with the same client settings: HTTP, failover bookkeeping and the concurrency
   bound only, no database, no decoding;
2. **describe task**: ``SyncPipeline.run_once`` with the describe task alone over the same number of new
   assets (discovery, claims, leases, reading and decoding each preview, JPEG encoding, the same requests,
   tokenising and writing each description, acknowledgements);
3. the most requests seen in flight at once on each of two hosts at ``--max-concurrent`` (default 4),
   counted by the server and by the client.

The two runs alternate in rounds of ``--round`` images, so a change of machine load weighs on both alike.
Figures: images per second of each; per-image overhead = (task time - direct time) / images, in ms.

Usage::

    .venv/bin/python benchmarks/describe_overhead.py --database-url postgresql://postgres@127.0.0.1/scratch

``--database-url`` must name a scratch database (Immich's tables are created when missing; the library
is written into it).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the stand-in server lives with the tests

from immich_search import migrate  # noqa: E402
from immich_search.db import open_pool  # noqa: E402
from immich_search.demo import IMMICH_MEDIA_LOCATION, ensure_immich_schema, import_library  # noqa: E402
from immich_search.sync.decode import decode_preview  # noqa: E402
from immich_search.sync.describe_task import DescribeTask, jpeg_bytes  # noqa: E402
from immich_search.sync.pipeline import SyncPipeline  # noqa: E402
from immich_search.sync.sources import MediaFileSource  # noqa: E402
from immich_search.sync.vision import VisionClient, VisionConfig, describe_many  # noqa: E402
from tests.vision_standin import VisionStandIn  # noqa: E402


def _photos(folder: Path, start: int, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        path = folder / f"bench{i:05d}.jpg"
        # 1440x1080 like Immich's previews; a row of black and white blocks (the bits of i) makes every
        # checksum unique (near colours alone can give the same JPEG bytes).
        image = Image.new("RGB", (1440, 1080), (200, 180, 77))
        for bit in range(16):
            colour = (0, 0, 0) if i >> bit & 1 else (255, 255, 255)
            image.paste(colour, (bit * 90, 0, bit * 90 + 90, 90))
        image.save(path, quality=85)
        paths.append(path)
    return paths


def run(url: str, images: int, round_size: int, delay_s: float, max_concurrent: int) -> dict:
    """Measure and return the figures (see the module doc)."""
    ensure_immich_schema(url)
    migrate.upgrade(url)
    work = Path(tempfile.mkdtemp(prefix="immich-search-describe-bench-"))
    (work / "media").mkdir()
    direct_s = task_s = 0.0
    done = 0
    with VisionStandIn("ollama", delay_s=delay_s) as one, VisionStandIn("ollama", delay_s=delay_s) as two:
        config = VisionConfig("ollama", (one.url, two.url), "stand-in", max_concurrent=max_concurrent)
        client = VisionClient(config)
        with open_pool(url) as pool:
            pipeline = SyncPipeline(
                pool, MediaFileSource(work / "media", IMMICH_MEDIA_LOCATION), [DescribeTask(config, client)]
            )
            rounds = 0
            while done < images:
                count = min(round_size, images - done)
                photos = _photos(work / "photos", done, count)
                import_library(url, photos, work / "media")
                jpegs = [jpeg_bytes(decode_preview(p.read_bytes())) for p in photos]
                order = ("direct", "task") if rounds % 2 == 0 else ("task", "direct")
                for side in order:
                    started = time.perf_counter()
                    if side == "direct":
                        results = describe_many(client, jpegs)
                        if any(isinstance(r, Exception) for r in results):
                            raise SystemExit(f"direct calls failed: {results}")
                        direct_s += time.perf_counter() - started
                    else:
                        report = pipeline.run_once()
                        if report.done != count or report.failed:
                            raise SystemExit(
                                f"task: {report.done} of {count} done, {report.deferred} waiting: {report.errors[:3]}"
                            )
                        task_s += time.perf_counter() - started
                done += count
                rounds += 1
            pipeline.close()
        client.close()
        in_flight = {"server": [one.max_in_flight, two.max_in_flight], "client": list(client.max_in_flight.values())}
    return {
        "images": images,
        "delay_s": delay_s,
        "max_concurrent": max_concurrent,
        "direct_images_per_s": images / direct_s,
        "task_images_per_s": images / task_s,
        "overhead_ms_per_image": 1000 * (task_s - direct_s) / images,
        "max_in_flight_per_host": in_flight,
    }


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a scratch database")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--round", type=int, default=50, help="images per alternating round")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds the stand-in takes per answer")
    parser.add_argument("--max-concurrent", type=int, default=4)
    args = parser.parse_args()
    figures = run(args.database_url, args.images, args.round, args.delay, args.max_concurrent)
    buffer = io.StringIO()
    for key, value in figures.items():
        print(f"{key:>24}: {value:.2f}" if isinstance(value, float) else f"{key:>24}: {value}", file=buffer)
    print(buffer.getvalue(), end="")


if __name__ == "__main__":
    main()
