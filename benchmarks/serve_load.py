"""Load on ``immich-search serve``: searches per second and latency, and what passthrough adds.

What runs, each in its own process, all on this machine:

1. a real PostgreSQL (embedded pgserver in a temporary folder, or ``--database-url`` for a scratch
   database) holding an Immich-shaped library: one user, ``--assets`` photos with synthetic OCR text
   (written as ``immich-search sync`` writes it), migrated to our head revision;
2. the fake Immich of the tests (``tests/fake_immich.py``: ``/api/users/me``, ``/api/assets/{id}``,
   ``/api/server/ping``...) under uvicorn;
3. ``immich-search serve``'s app in front of it under uvicorn, as the command runs it;
4. this process as the clients (httpx, asyncio).

Measurements:

* ``ocr:`` searches through serve, as Immich's web client sends them (``{page: 1, withExif: true, query,
  visibility: "timeline", language}``; page size 100 unless ``--size``), with 1, 8 and 32 concurrent
  clients, each level for ``--seconds``: searches per second, median and p95 latency;
* passthrough: ``GET /api/server/ping`` and ``GET /api/assets/{id}`` through serve and straight to the fake,
  interleaved in the same run (one client, then 8): median and p95 of each, and the difference (what serve
  adds).

Every answered search costs serve one ranking query and ``size`` (+ a few) ``GET /api/assets/{id}`` calls
to the upstream, so the figures measure the fake Immich's speed as much as serve's: they compare
configurations on one machine, not installations. The clients share this machine's CPUs with both
servers and the database.

``--real-immich`` measures against a real Immich server instead (``benchmarks/serve_load_real.py``:
serve's ``ocr:`` page of 100 next to Immich's own metadata page of 100, with CPU of serve, Immich and
PostgreSQL). It uploads 500 photos to that server: use a dedicated instance.

Usage::

    .venv/bin/python benchmarks/serve_load.py                       # embedded PostgreSQL, 2000 photos
    .venv/bin/python benchmarks/serve_load.py --seconds 10 --json serve_load.json
    .venv/bin/python benchmarks/serve_load.py --database-url postgresql://.../scratch
    set -a; eval "$(REAL_IMMICH_DIR=... REAL_IMMICH_PORT=... ../shared/real-immich/psql.sh --env)"; set +a
    .venv/bin/python benchmarks/serve_load.py --real-immich --seconds 20 --json serve_real.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import httpx
import psycopg

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # tests.fake_immich

from immich_search import migrate  # noqa: E402
from immich_search.demo import ensure_immich_schema  # noqa: E402

WORDS = ["INVOICE", "RECEIPT", "TOTAL", "PARKING", "TICKET", "MENU", "BOARDING", "PASS", "SALE", "COFFEE"]
CHINESE = ["发票", "收据", "合计", "停车", "车票", "菜单", "登机牌", "优惠", "咖啡", "增值税"]
QUERIES = [f"ocr:{w.lower()}" for w in WORDS] + [f"ocr:{c}" for c in CHINESE]


# -- setup ---------------------------------------------------------------------------------------------------


def build_library(url: str, assets: int, seed: int = 7) -> str:
    """Create an Immich-shaped library of ``assets`` photos with OCR text for one user; return the user id."""
    from tests.fake_immich import add_asset, add_user

    rng = random.Random(seed)
    with psycopg.connect(url) as conn:
        user_id = add_user(conn, f"bench-{uuid.uuid4().hex[:8]}@example.com")
        for index in range(assets):
            lines = [
                " ".join(rng.sample(WORDS, 2)) + f" {rng.randint(1, 999)}",
                "".join(rng.sample(CHINESE, 2)),
                f"{rng.choice(WORDS)} {rng.randint(10, 99)}.{rng.randint(0, 99):02d}",
            ]
            visibility = "archive" if index % 10 == 0 else "timeline"
            add_asset(conn, user_id, f"photo-{index:05d}.jpg", lines, age_days=index / 24, visibility=visibility)
        conn.commit()
    return user_id


def free_port() -> int:
    """A localhost port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_fake(url: str, port: int, tokens: dict[str, str]) -> None:
    """Child process: the fake Immich under uvicorn."""
    import uvicorn

    from tests.fake_immich import FakeImmich, Session

    fake = FakeImmich().load(url)
    fake.sessions.update({token: Session(user_id) for token, user_id in tokens.items()})
    uvicorn.run(fake.app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def run_serve(url: str, immich_url: str, port: int, pool_size: int) -> None:
    """Child process: serve's app under uvicorn, set up as ``immich-search serve`` sets it up."""
    import uvicorn

    from immich_search.db import open_pool
    from immich_search.ranking.ocr_search import search_ocr
    from immich_search.serve.app import ServeConfig, create_app
    from immich_search.serve.searchers import ocr_searcher

    pool = open_pool(url, max_size=pool_size)
    search_ocr(pool, "ocr:warm up", "00000000-0000-0000-0000-000000000000", limit=1)
    app = create_app(ServeConfig(immich_url=immich_url), ocr_searcher=ocr_searcher(pool))
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )


def wait_listening(port: int, process: multiprocessing.Process, seconds: float = 60) -> None:
    """Block until something accepts connections on ``port``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not process.is_alive():
            raise RuntimeError(f"the server process for port {port} exited ({process.exitcode})")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {seconds} s")


# -- measuring -----------------------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


async def search_load(base: str, token: str, clients: int, seconds: float, size: int) -> dict:
    """``clients`` concurrent clients searching for ``seconds``; returns rate and latencies (ms)."""
    latencies: list[float] = []
    errors = 0
    items = 0
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def one_client(index: int) -> None:
            nonlocal errors, items
            rng = random.Random(index)
            headers = {"cookie": f"immich_access_token={token}"}
            while time.monotonic() < stop:
                body = {
                    "page": 1,
                    "withExif": True,
                    "query": rng.choice(QUERIES),
                    "visibility": "timeline",
                    "language": "en",
                    "size": size,
                }
                started = time.perf_counter()
                response = await client.post("/api/search/smart", json=body, headers=headers)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    errors += 1
                else:
                    items += len(response.json()["assets"]["items"])

        started = time.perf_counter()
        await asyncio.gather(*(one_client(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "searches": len(latencies),
        "errors": errors,
        "searches_per_second": len(latencies) / elapsed,
        "median_ms": statistics.median(latencies),
        "p95_ms": percentile(latencies, 0.95),
        "items_per_search": items / max(1, len(latencies) - errors),
    }


async def passthrough_load(serve: str, immich: str, token: str, path: str, requests: int, clients: int) -> dict:
    """The same GET through serve and straight to the upstream, interleaved; latencies in ms."""
    timings: dict[str, list[float]] = {"serve": [], "direct": []}
    headers = {"cookie": f"immich_access_token={token}"}
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def worker(count: int) -> None:
            for index in range(count):
                for route in ("serve", "direct") if index % 2 == 0 else ("direct", "serve"):
                    base = serve if route == "serve" else immich
                    started = time.perf_counter()
                    response = await client.get(base + path, headers=headers)
                    timings[route].append((time.perf_counter() - started) * 1000)
                    if response.status_code != 200:
                        raise RuntimeError(f"{route} {path}: {response.status_code} {response.text[:200]}")

        for _ in range(20):  # warm the connections
            await client.get(serve + path, headers=headers)
            await client.get(immich + path, headers=headers)
        await asyncio.gather(*(worker(requests // clients) for _ in range(clients)))
    result = {"path": path, "clients": clients, "requests": len(timings["serve"])}
    for route, values in timings.items():
        result[f"{route}_median_ms"] = statistics.median(values)
        result[f"{route}_p95_ms"] = percentile(values, 0.95)
    result["added_median_ms"] = result["serve_median_ms"] - result["direct_median_ms"]
    result["added_p95_ms"] = result["serve_p95_ms"] - result["direct_p95_ms"]
    return result


# -- main ----------------------------------------------------------------------------------------------------


def main() -> int:
    """Run the benchmark; print the table (and write --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="a scratch database (default: an embedded PostgreSQL in a temp dir)")
    parser.add_argument("--assets", type=int, default=2000, help="photos in the library (default 2000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per concurrency level (default 5)")
    parser.add_argument("--size", type=int, default=100, help="page size of the searches (Immich's web: 100)")
    parser.add_argument("--passthrough-requests", type=int, default=800, help="requests per passthrough run")
    parser.add_argument("--pool-size", type=int, default=8, help="serve's database connections (default 8)")
    parser.add_argument("--clients", default="1,8,32", help="concurrency levels, comma-separated (default 1,8,32)")
    parser.add_argument("--no-passthrough", action="store_true", help="skip the passthrough measurements")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--real-immich",
        action="store_true",
        help="against the real Immich named by REAL_IMMICH_* (uploads --photos photos: a dedicated instance!)",
    )
    parser.add_argument("--photos", type=int, default=500, help="--real-immich: benchmark photos (default 500)")
    parser.add_argument(
        "--index",
        choices=["sync", "drawn"],
        default="sync",
        help="--real-immich: index the photos by OCR (sync, default) or by the text they were drawn with",
    )
    args = parser.parse_args()
    if args.real_immich:
        import serve_load_real

        if args.clients == "1,8,32":
            args.clients = "1,8"
        figures = serve_load_real.run(args)
        serve_load_real.report(figures)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
        return 0

    temp_dir = None
    server = None
    if args.database_url:
        url = args.database_url
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

            temp_dir = Path(tempfile.mkdtemp(prefix="serve-load-"))
            server = pgserver.get_server(temp_dir, cleanup_mode="stop")
        url = server.get_uri("postgres")
    processes: list[multiprocessing.Process] = []
    try:
        print(f"library: {args.assets} photos ...", file=sys.stderr)
        ensure_immich_schema(url)
        migrate.upgrade(url)
        user_id = build_library(url, args.assets)
        token = uuid.uuid4().hex
        context = multiprocessing.get_context("spawn")
        fake_port, serve_port = free_port(), free_port()
        immich = f"http://127.0.0.1:{fake_port}"
        serve = f"http://127.0.0.1:{serve_port}"
        processes.append(context.Process(target=run_fake, args=(url, fake_port, {token: user_id}), daemon=True))
        processes.append(context.Process(target=run_serve, args=(url, immich, serve_port, args.pool_size), daemon=True))
        for process in processes:
            process.start()
        wait_listening(fake_port, processes[0])
        wait_listening(serve_port, processes[1])
        with psycopg.connect(url) as conn:
            asset_id = str(conn.execute("SELECT id FROM public.asset LIMIT 1").fetchone()[0])

        async def run_all() -> dict:
            await search_load(serve, token, 4, 1.0, args.size)  # warm-up
            levels = [int(level) for level in args.clients.split(",")]
            searches = [await search_load(serve, token, c, args.seconds, args.size) for c in levels]
            passthrough = []
            for path in () if args.no_passthrough else ("/api/server/ping", f"/api/assets/{asset_id}"):
                for clients in (1, 8):
                    passthrough.append(
                        await passthrough_load(serve, immich, token, path, args.passthrough_requests, clients)
                    )
            return {"searches": searches, "passthrough": passthrough}

        figures = asyncio.run(run_all())
    finally:
        for process in processes:
            process.terminate()
            process.join(10)
        if server is not None:
            server.cleanup()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)

    figures["setup"] = {
        "assets": args.assets,
        "page_size": args.size,
        "seconds_per_level": args.seconds,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "database": "embedded PostgreSQL 16 (pgserver)" if server is not None else "--database-url",
    }
    print(
        f"\nserve_load: {args.assets} photos, page size {args.size}, {args.seconds:g} s per level, "
        f"{os.cpu_count()} CPUs; fake Immich, serve and clients on this machine"
    )
    print("\nocr: searches through serve (the web client's request: visibility timeline, withExif)")
    print(
        f"{'clients':>8} {'searches/s':>11} {'median ms':>10} {'p95 ms':>8} {'searches':>9} {'errors':>7} {'items':>6}"
    )
    for row in figures["searches"]:
        print(
            f"{row['clients']:>8} {row['searches_per_second']:>11.1f} {row['median_ms']:>10.1f} {row['p95_ms']:>8.1f} "
            f"{row['searches']:>9} {row['errors']:>7} {row['items_per_search']:>6.0f}"
        )
    print("\npassthrough: the same GET through serve and straight to the fake Immich, interleaved")
    print(
        f"{'path':<22} {'clients':>7} {'direct med':>10} {'serve med':>10} {'added med':>10} "
        f"{'direct p95':>10} {'serve p95':>10} {'added p95':>10}"
    )
    for row in figures["passthrough"]:
        path = "/api/assets/{id}" if row["path"].startswith("/api/assets/") else row["path"]
        print(
            f"{path:<22} {row['clients']:>7} {row['direct_median_ms']:>10.2f} {row['serve_median_ms']:>10.2f} "
            f"{row['added_median_ms']:>10.2f} {row['direct_p95_ms']:>10.2f} {row['serve_p95_ms']:>10.2f} "
            f"{row['added_p95_ms']:>10.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
