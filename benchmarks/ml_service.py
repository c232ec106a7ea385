"""``immich-search ml`` under load: what the HTTP service adds to the models it serves, and its memory.

What runs:

1. ``immich-search ml`` as its own process (the command, as users start it), on 127.0.0.1, with a tiny
   cn-clip of ViT-B-16's real signature (``tests/clip_fixtures.py``, 512-d) or, with
   ``--clip-model-dir``, a real cn-clip export; OCR with the real RapidOCR engine (bundled PP-OCRv4);
2. this process: the clients (httpx, one thread each) sending Immich's own ``/predict`` requests
   (multipart ``entries`` + ``image`` / ``text``), and, interleaved in the same run, the same work
   in-process: decode the image bytes and call the same model through the same code
   (:class:`~immich_search.ml.clip.ClipService`, :class:`~immich_search.ml.ocr.OcrService`) with the
   same thread settings.

Figures per workload (CLIP visual, CLIP textual, OCR) at 1 and 4 concurrent clients: requests per second,
median and p95 latency, through the service and in-process, and the service's overhead at 1 client
(median through the service / median in-process - 1; target <= 10 % for real models). Then the
service's resident memory (RSS, from /proc) after a warm-up and after ``--memory-requests`` more
requests (CLIP and OCR mixed): growth should stay flat.

The clients share this machine's CPUs with the service, so the 4-client figures measure the machine as
much as the service; the 1-client overhead is the figure that matters.

Usage::

    .venv/bin/python benchmarks/ml_service.py                   # tiny CLIP + real OCR
    .venv/bin/python benchmarks/ml_service.py --clip-model-dir ~/.local/share/immich-search/models
    .venv/bin/python benchmarks/ml_service.py --requests 40 --ocr-requests 8 --json ml.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from PIL import Image, ImageDraw, ImageFont

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # tests.clip_fixtures, tests.ml_fixtures

CLIP_NAME = "cn-clip/ViT-B-16__openai"


def photo(size=(1440, 1080)) -> bytes:
    """A preview-sized JPEG with some structure (gradient and text), as Immich sends previews."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.text((80, 200), "HELLO WORLD 2024", fill=(255, 0, 0), font=ImageFont.load_default(size=96))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def ocr_photo() -> bytes:
    """A smaller text photo for OCR (a receipt-sized preview)."""
    image = Image.new("RGB", (720, 540), (250, 250, 245))
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(("TOTAL 128.00", "CASH 200.00", "CHANGE 72.00", "THANK YOU")):
        draw.text((60, 60 + row * 110), line, fill=(20, 20, 20), font=ImageFont.load_default(size=56))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


OCR_ENTRIES = {
    "ocr": {
        "detection": {"modelName": "PP-OCRv5_mobile", "options": {"minScore": 0.5, "maxResolution": 736}},
        "recognition": {"modelName": "PP-OCRv5_mobile", "options": {"minScore": 0.8}},
    }
}


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_clients(call: Callable[[], None], clients: int, requests: int) -> tuple[float, list[float]]:
    """Run ``requests`` calls over ``clients`` threads; return (elapsed s, latencies s)."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker():
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            started = time.perf_counter()
            call()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies


def p95(values: list[float]) -> float:
    """95th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, int(round(0.95 * len(ordered))) - 1)]


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clip-model-dir", type=Path, help="a real cn-clip model folder (default: tiny model)")
    parser.add_argument("--requests", type=int, default=200, help="CLIP requests per measurement")
    parser.add_argument("--ocr-requests", type=int, default=12, help="OCR requests per measurement")
    parser.add_argument("--memory-requests", type=int, default=1000, help="requests between the memory readings")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (service and in-process)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    from immich_search.ml.clip import ClipService
    from immich_search.ml.images import decode_image
    from immich_search.ml.ocr import OcrService, parse_ocr_options, rapidocr_factory
    from immich_search.runtime.model import ClipModel
    from tests.ml_fixtures import free_port, tiny_clip_dir

    work = Path(tempfile.mkdtemp(prefix="ml-bench-"))
    model_dir = args.clip_model_dir
    if model_dir is None:
        model_dir = work / "models"
        tiny_clip_dir(model_dir)
    kind = "real" if args.clip_model_dir else "tiny"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "immich_search.cli",
        "ml",
        "--port",
        str(port),
        "--clip-model-dir",
        str(model_dir),
        "--device",
        "cpu",
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    service = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    figures: dict = {"clip_model": kind, "cpus": os.cpu_count(), "load_average": os.getloadavg()[0]}
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "/ping", timeout=1).text == "pong":
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or service.poll() is not None:
                raise SystemExit("ml did not start")
            time.sleep(0.3)

        clip = ClipService(
            ClipModel.load(model_dir, "ViT-B-16", providers=["CPUExecutionProvider"], threads=args.threads)
        )
        clip.warm_up()
        ocr = OcrService(rapidocr_factory(args.threads))
        options = parse_ocr_options(OCR_ENTRIES["ocr"])
        ocr.engine(options)
        image_bytes, ocr_bytes = photo(), ocr_photo()
        client = httpx.Client(base_url=url, timeout=300, limits=httpx.Limits(max_connections=8))

        def post(entries, **parts):
            files = {"entries": (None, json.dumps(entries))}
            for name, value in parts.items():
                files[name] = ("blob", value) if isinstance(value, bytes) else (None, value)
            response = client.post("/predict", files=files)
            response.raise_for_status()

        workloads = {
            "clip-visual": (
                lambda: post({"clip": {"visual": {"modelName": CLIP_NAME}}}, image=image_bytes),
                lambda: clip.encode_image(decode_image(image_bytes)),
                args.requests,
            ),
            "clip-textual": (
                lambda: post({"clip": {"textual": {"modelName": CLIP_NAME, "options": {}}}}, text="海边的日落"),
                lambda: clip.encode_text("海边的日落"),
                args.requests,
            ),
            "ocr": (
                lambda: post(OCR_ENTRIES, image=ocr_bytes),
                lambda: ocr.recognize(decode_image(ocr_bytes), options),
                args.ocr_requests,
            ),
        }
        for name, (through_service, in_process, count) in workloads.items():
            through_service(), in_process()  # warm
            for clients in (1, 4):
                # interleaved halves (service, in-process, service, in-process) share the machine's moods
                row: dict[str, list] = {"service": [], "in_process": []}
                for _ in range(2):
                    for label, call in (("service", through_service), ("in_process", in_process)):
                        row[label].append(run_clients(call, clients, max(1, count // 2)))
                result = {}
                for label, parts in row.items():
                    elapsed = sum(part[0] for part in parts)
                    latencies = [value for part in parts for value in part[1]]
                    result[label] = {
                        "requests_per_s": round(len(latencies) / elapsed, 2),
                        "median_ms": round(statistics.median(latencies) * 1000, 2),
                        "p95_ms": round(p95(latencies) * 1000, 2),
                    }
                result["overhead_median"] = round(
                    result["service"]["median_ms"] / result["in_process"]["median_ms"] - 1, 3
                )
                figures[f"{name}@{clients}"] = result
                print(
                    f"{name:13s} {clients} client(s): service {result['service']}, "
                    f"in-process {result['in_process']}, overhead {result['overhead_median']:+.1%}",
                    flush=True,
                )

        # memory: warm up, then --memory-requests more (mostly CLIP, every 50th OCR)
        for _ in range(100):
            workloads["clip-visual"][0]()
        before = rss_mb(service.pid)
        for index in range(args.memory_requests):
            if index % 50 == 49:
                workloads["ocr"][0]()
            elif index % 2:
                workloads["clip-textual"][0]()
            else:
                workloads["clip-visual"][0]()
        after = rss_mb(service.pid)
        figures["memory"] = {
            "rss_mb_after_warm_up": round(before, 1),
            "rss_mb_after_more": round(after, 1),
            "requests": args.memory_requests,
            "growth_mb": round(after - before, 1),
        }
        print(
            f"memory: RSS {before:.1f} MiB after warm-up, {after:.1f} MiB after {args.memory_requests} "
            f"more requests ({after - before:+.1f} MiB)",
            flush=True,
        )
    finally:
        service.terminate()
        service.wait(timeout=30)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
