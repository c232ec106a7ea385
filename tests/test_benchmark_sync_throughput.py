"""benchmarks/sync_throughput.py still runs: a miniature run (2 corpus photos, 4 assets, real RapidOCR,
real worker processes) on a real PostgreSQL, checking that its figures add up.

The figures themselves are the benchmark's business (printed, never timed here); this test only keeps the
script working as the code it measures changes.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import psycopg
from rich.console import Console

from tests.conftest import corpus_dir

REPO = Path(__file__).resolve().parents[1]


def load_benchmark():
    """Import benchmarks/sync_throughput.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("sync_throughput", REPO / "benchmarks" / "sync_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sync_throughput_benchmark_runs(db, tmp_path):
    benchmark = load_benchmark()
    corpus = tmp_path / "corpus"
    (corpus / "images").mkdir(parents=True)
    for name in ("en_book_01.jpg", "en_crate_01.jpg"):
        shutil.copy(corpus_dir() / "images" / name, corpus / "images" / name)
    console = Console(file=(tmp_path / "out.txt").open("w"), width=120)

    figures = benchmark.run_benchmark(db, corpus, 4, 2, tmp_path / "media", console)
    benchmark.print_figures(figures, console)

    assert figures["images"] == 4 and figures["distinct_images"] == 2
    for key in ("bare_model_loop", "end_to_end"):
        assert figures[key]["seconds"] > 0 and figures[key]["images_per_second"] > 0
    assert figures["ratio"] > 0
    assert figures["workers"]["images"] == 2
    assert figures["workers"]["speed_up"] > 0
    assert [count for count, _ in figures["rss_mib_per_100_images"]] == [4]
    assert figures["immich_ocr_reuse"]["images"] == 4 and figures["immich_ocr_reuse"]["images_per_second"] > 0
    with psycopg.connect(db) as conn:
        # Every benchmark asset ends indexed once, the requeued ones included; nothing is left leased.
        states = conn.execute(
            "SELECT state, count(*), count(lease_owner) FROM immich_search.job WHERE task = 'ocr' GROUP BY state"
        ).fetchall()
        sources = conn.execute("SELECT source, count(*) FROM immich_search.ocr GROUP BY source").fetchall()
    assert states == [("done", 4, 0)]
    assert sources == [("immich", 4)], "the last part re-indexed every asset from Immich's own OCR"
    assert "ratio end to end / bare loop" in (tmp_path / "out.txt").read_text()
