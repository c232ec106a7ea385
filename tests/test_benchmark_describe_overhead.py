"""benchmarks/describe_overhead.py still runs: a miniature run (4 previews, two stand-in hosts) on a real
PostgreSQL, checking that its figures add up (the figures themselves are printed by the benchmark, never
timed here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_describe_overhead_benchmark_runs(db):
    spec = importlib.util.spec_from_file_location("describe_overhead", REPO / "benchmarks" / "describe_overhead.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    figures = module.run(db, images=4, round_size=2, delay_s=0.0, max_concurrent=2)
    assert figures["images"] == 4 and figures["direct_images_per_s"] > 0 and figures["task_images_per_s"] > 0
    in_flight = figures["max_in_flight_per_host"]
    # Hosts are asked in order: the second only gets work when the first has no free slot.
    assert all(0 <= n <= 2 for n in in_flight["server"] + in_flight["client"]) and in_flight["server"][0] >= 1
