"""``serve_load.py --real-immich``: serve's ``ocr:`` page of 100 next to Immich's own metadata page of 100,
on a real Immich server (issue 14).

What it does, in one run:

1. the library: makes sure the admin user of the server named by the ``REAL_IMMICH_*`` variables
   (``../shared/real-immich/psql.sh --env``) owns at least ``--photos`` (default 500) benchmark photos:
   distinct JPEGs with three words of text each (``bench-NNNNN.jpg``), uploaded through Immich's API
   (``POST /api/assets``) when missing; then ``immich-search migrate`` and ``sync`` index their text (OCR
   of Immich's previews). **This uploads to the server: point it at a dedicated instance**, never at one
   whose library matters (the photos stay there for the next run; nothing else is changed);
2. ``immich-search serve`` in front of it (a subprocess, as users run it);
3. the clients (this process, httpx): at 1 and 8 concurrent clients, each for ``--seconds``, alternately
   through serve (``POST /api/search/smart`` ``{"query": "ocr:WORD", page 1, size 100, withExif,
   visibility timeline}``, the web app's request) and straight to Immich (``POST /api/search/metadata``
   ``{page 1, size 100, withExif, visibility timeline}``, Immich's own page of 100 for the same user).

Figures per phase: searches/s, p50 and p95 latency (ms), items per page, Immich calls per answered
search (serve's ``X-Immich-Search-Upstream-Calls``), and CPU milliseconds per search of serve, of Immich
(its process group) and of PostgreSQL (the postmaster and its children), from ``/proc``. Targets
(issue 14): serve's p95 <= 2x Immich's at 1 and at 8 clients; at most 2 Immich calls per search.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg

WORDS = [
    "INVOICE", "RECEIPT", "TOTAL", "PARKING", "TICKET", "MENU", "BOARDING", "COFFEE", "LIBRARY", "STATION",
]  # fmt: skip
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
PREFIX = "bench-"


def photo_lines(index: int) -> list[str]:
    """The three lines of text drawn on benchmark photo ``index`` (three of :data:`WORDS`, and the index)."""
    words = random.Random(index).sample(WORDS, 3)
    return [f"{words[0]} {index}", words[1], words[2]]


def photo(index: int) -> bytes:
    """A distinct 960x540 JPEG with :func:`photo_lines` in large letters."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (960, 540), (250, 248, 240))
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, 90) if Path(FONT).is_file() else ImageFont.load_default(size=90)
    for row, line in enumerate(photo_lines(index)):
        draw.text((60, 60 + 140 * row), line, font=font, fill=(10, 10, 10))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def ensure_library(env: dict, photos: int, index: str = "sync") -> None:
    """Upload the missing ``bench-NNNNN.jpg`` photos as the admin, wait for their previews, index them.

    ``index``: ``"sync"`` runs ``immich-search sync`` (OCR of Immich's previews, as users index); ``"drawn"``
    writes the text each photo was drawn with as its OCR row (as sync writes rows), for photos sync has not
    indexed yet: the same search work, without the OCR (about 10 photos a minute on 2 busy cores).
    """
    url, db_url, key = env["REAL_IMMICH_URL"], env["REAL_IMMICH_DB_URL"], env["REAL_IMMICH_ADMIN_API_KEY"]
    with psycopg.connect(db_url) as conn:
        present = {
            name
            for (name,) in conn.execute(
                'SELECT "originalFileName" FROM asset WHERE "ownerId" = %s AND "originalFileName" LIKE %s '
                'AND "deletedAt" IS NULL',
                (env["REAL_IMMICH_ADMIN_ID"], PREFIX + "%"),
            )
        }
    missing = [index for index in range(photos) if f"{PREFIX}{index:05d}.jpg" not in present]
    print(f"library: {len(present)} benchmark photos present, uploading {len(missing)}", file=sys.stderr)

    def upload(index: int) -> None:
        name = f"{PREFIX}{index:05d}.jpg"
        when = f"2023-{1 + index % 12:02d}-{1 + index % 28:02d}T10:00:00.000Z"
        with httpx.Client(base_url=f"{url}/api", headers={"x-api-key": key}, timeout=120) as client:
            response = client.post(
                "/assets",
                files={"assetData": (name, photo(index), "image/jpeg")},
                data={"filename": name, "fileCreatedAt": when, "fileModifiedAt": when},
            )
            response.raise_for_status()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(upload, missing))
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        with psycopg.connect(db_url) as conn:
            waiting = conn.execute(
                'SELECT count(*) FROM asset a WHERE a."originalFileName" LIKE %s AND NOT EXISTS ('
                "SELECT 1 FROM asset_file f WHERE f.\"assetId\" = a.id AND f.type = 'preview')",
                (PREFIX + "%",),
            ).fetchone()[0]
        if waiting == 0:
            break
        time.sleep(2)
    else:
        raise RuntimeError("Immich did not make every preview within 30 minutes")
    media = env["REAL_IMMICH_MEDIA_LOCATION"]
    steps = [["migrate"]]
    if index == "sync":
        steps.append(["sync", "--media-root", media, "--immich-media-location", media])
    for args in steps:
        print(f"immich-search {args[0]} ...", file=sys.stderr)
        subprocess.run([*immich_search(), "--database-url", db_url, *args], check=True, env=product_env())
    if index == "drawn":
        write_drawn_text(db_url)


def write_drawn_text(db_url: str) -> None:
    """Give each benchmark photo without an OCR row the text it was drawn with (``upsert_ocr``, sync's row)."""
    from immich_search.ocr_engine import OcrLine
    from immich_search.sqlfiles import query
    from immich_search.sync.pipeline import ocr_row

    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            'SELECT a.id, a."originalFileName" FROM asset a WHERE a."originalFileName" LIKE %s '
            "AND NOT EXISTS (SELECT 1 FROM immich_search.ocr o WHERE o.asset_id = a.id)",
            (PREFIX + "%",),
        ).fetchall()
        for asset_id, name in rows:
            lines = photo_lines(int(name.removeprefix(PREFIX).removesuffix(".jpg")))
            box = (0.1, 0.1, 0.9, 0.1, 0.9, 0.2, 0.1, 0.2)
            ocr_lines = [OcrLine(text, 0.95, box) for text in lines]
            conn.execute(query("upsert_ocr"), ocr_row(str(asset_id), ocr_lines, "benchmark-drawn-text"))
    print(f"indexed {len(rows)} photos with the text they were drawn with", file=sys.stderr)


def immich_search() -> list[str]:
    """The ``immich-search`` entry point of this interpreter's environment."""
    script = Path(sys.executable).with_name("immich-search")
    return [str(script)] if script.exists() else [sys.executable, "-m", "immich_search.cli"]


def product_env() -> dict[str, str]:
    """This environment without Immich's own DB_*/IMMICH_* variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "IMMICH_"))}


# -- CPU -----------------------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def cpu_seconds(pids: set[int]) -> float:
    """utime + stime of ``pids`` (seconds)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def processes(where: callable) -> set[int]:
    """Pids whose ``/proc/PID/stat`` fields (from ``state`` on) satisfy ``where(pid, fields)``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and where(int(entry.name), fields):
                found.add(int(entry.name))
    return found


def groups(home: Path, serve_pid: int) -> dict[str, set[int]]:
    """The processes of serve, Immich (its process group) and PostgreSQL (postmaster and children)."""
    immich_group = int((home / "run" / "immich.pid").read_text().split()[0])
    postmaster = int((home / "pg" / "data" / "postmaster.pid").read_text().split()[0])
    return {
        "serve": {serve_pid},
        "immich": processes(lambda pid, f: int(f[2]) == immich_group),
        "postgres": processes(lambda pid, f: pid == postmaster or int(f[1]) == postmaster),
    }


# -- load ----------------------------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


async def load(base: str, path: str, bodies, key: str, clients: int, seconds: float, pids) -> dict:
    """``clients`` concurrent clients posting ``bodies(rng)`` to ``base + path`` for ``seconds``."""
    latencies: list[float] = []
    errors, items, calls, answered = 0, 0, 0, 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120, headers={"x-api-key": key}) as client:
        for _ in range(3):  # warm: connections, caches
            await client.post(path, json=bodies(random.Random(0)))
        before = {name: cpu_seconds(group) for name, group in pids.items()}
        stop = time.monotonic() + seconds

        async def one_client(index: int) -> None:
            nonlocal errors, items, calls, answered
            rng = random.Random(index)
            while time.monotonic() < stop:
                started = time.perf_counter()
                response = await client.post(path, json=bodies(rng))
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    errors += 1
                    continue
                items += len(response.json()["assets"]["items"])
                if "x-immich-search-upstream-calls" in response.headers:
                    answered += 1
                    calls += int(response.headers["x-immich-search-upstream-calls"])

        started = time.perf_counter()
        await asyncio.gather(*(one_client(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
        after = {name: cpu_seconds(group) for name, group in pids.items()}
    done = max(1, len(latencies))
    return {
        "clients": clients,
        "searches": len(latencies),
        "errors": errors,
        "searches_per_second": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies),
        "p95_ms": percentile(latencies, 0.95),
        "items_per_search": items / max(1, len(latencies) - errors),
        "upstream_calls_per_search": calls / answered if answered else None,
        **{f"cpu_ms_per_search_{name}": (after[name] - before[name]) * 1000 / done for name in pids},
    }


def run(args) -> dict:
    """Run the real-Immich benchmark (see the module docstring); return the figures."""
    env = os.environ
    missing = [n for n in ("REAL_IMMICH_URL", "REAL_IMMICH_DB_URL", "REAL_IMMICH_ADMIN_API_KEY") if not env.get(n)]
    if missing:
        raise SystemExit(f"--real-immich needs {', '.join(missing)} (eval ../shared/real-immich/psql.sh --env)")
    home = Path(env.get("REAL_IMMICH_DIR", Path.home() / ".cache" / "immich-search-real-immich"))
    ensure_library(dict(env), args.photos, args.index)
    from tests.fake_immich import free_port

    port = free_port()
    serve_url = f"http://127.0.0.1:{port}"
    command = [*immich_search(), "--database-url", env["REAL_IMMICH_DB_URL"], "serve"]
    command += ["--immich-url", env["REAL_IMMICH_URL"], "--port", str(port)]
    process = subprocess.Popen(command, env=product_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{serve_url}/api/server/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise RuntimeError(f"serve did not start: {process.stderr.read().decode()[-2000:]}")
        pids = groups(home, process.pid)
        key, size = env["REAL_IMMICH_ADMIN_API_KEY"], args.size
        page = {"page": 1, "size": size, "withExif": True, "visibility": "timeline"}

        def ocr_body(rng):
            return {**page, "query": f"ocr:{rng.choice(WORDS).lower()}", "language": "en"}

        def metadata_body(rng):
            return dict(page)

        async def phases() -> list[dict]:
            rows = []
            for clients in [int(c) for c in args.clients.split(",")]:
                for name, base, path, bodies in (
                    ("serve ocr: page", serve_url, "/api/search/smart", ocr_body),
                    ("Immich metadata page", env["REAL_IMMICH_URL"], "/api/search/metadata", metadata_body),
                ):
                    row = await load(base, path, bodies, key, clients, args.seconds, pids)
                    rows.append({"what": name, **row})
            return rows

        rows = asyncio.run(phases())
    finally:
        process.terminate()
        process.wait(30)
    return {"real_immich": rows, "photos": args.photos, "page_size": args.size, "cpus": os.cpu_count()}


def report(figures: dict) -> None:
    """Print the table and the targets."""
    print(
        f"\nserve_load --real-immich: {figures['photos']}+ photos, page size {figures['page_size']}, "
        f"{figures['cpus']} CPUs; Immich, PostgreSQL, serve and clients on this machine"
    )
    head = f"{'':<22}{'clients':>8}{'searches/s':>11}{'p50 ms':>9}{'p95 ms':>9}{'items':>7}{'calls':>7}"
    print(head + f"{'CPU ms/search: serve':>22}{'Immich':>8}{'PG':>7}{'errors':>7}")
    for row in figures["real_immich"]:
        calls = row["upstream_calls_per_search"]
        print(
            f"{row['what']:<22}{row['clients']:>8}{row['searches_per_second']:>11.1f}{row['p50_ms']:>9.1f}"
            f"{row['p95_ms']:>9.1f}{row['items_per_search']:>7.0f}{'-' if calls is None else f'{calls:.2f}':>7}"
            f"{row['cpu_ms_per_search_serve']:>22.1f}{row['cpu_ms_per_search_immich']:>8.1f}"
            f"{row['cpu_ms_per_search_postgres']:>7.1f}{row['errors']:>7}"
        )
    rows = figures["real_immich"]
    for ours, theirs in zip(rows[::2], rows[1::2], strict=True):
        ratio = ours["p95_ms"] / theirs["p95_ms"]
        verdict = "met" if ratio <= 2 else "MISSED"
        print(f"target p95 <= 2x Immich's at {ours['clients']} clients: {ratio:.2f}x ({verdict})")
