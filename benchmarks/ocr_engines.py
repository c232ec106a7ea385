"""OCR engines compared on the dev corpus, in one run: text found, search quality, false text, speed, memory.

Every engine of ``immich_search.ocr.registry.ENGINES`` (or those of ``--engines``) gets its own worker
process (so that each peak RSS is its own) and its own database, holding the corpus imported as one user's
library as Immich stores one (originals, JPEG previews with the longer side at most 1440 px). The parent
drives the workers in turn, never two at once, and interleaves them: each round runs every engine's
``sync`` pass and then its bare loop, the engines' order rotating from round to round, so that a change in
machine load weighs on every engine alike. Per engine:

* **text recall**: of the (query, relevant photo) pairs of ``queries.json``, those whose query occurs in
  the photo's OCR text as the sync stored it (both folded, spaces and line breaks removed);
* **recall@k / MRR**: ``ocr:`` search (the Python query path, ``search_ocr``) over the engine's own index,
  scored against the judgements (``immich_search.ranking.metrics.evaluate``);
* **no-text hits**: search results, summed over the queries, that are photos without text (``neg_*``);
  **false lines**: lines the engine read on those photos;
* **rotated**: text recall over the pairs of ``--rotated`` photos turned 180 and 90 degrees (seeded choice;
  the corpus also holds two photos that are upside-down as taken, in the upright figures);
* **sync img/s**: images per second of ``OcrSync.run_once(force=True)`` end to end (discovery, queue,
  reading and decoding previews, OCR, tokenising, writing); **bare img/s**: ``engine.recognize`` over
  ``--bare-images`` of the same previews (evenly spaced by name), decoded beforehand; both the median over
  the rounds; **x v4**: sync img/s over that of
  ``rapidocr-v4`` (the engine of earlier versions) in the same run;
* **sync RSS**: the worker process's ``ru_maxrss`` after its first ``sync`` pass (models, a decoded batch,
  its pool: what a ``sync`` worker needs); **peak RSS**: at the end, with every preview decoded for the
  bare loop and the turned copies on top;
* **retries**: images the orientation fallback read again (faster-paddle only).

Each engine gets ``--threads`` threads (default: every core). Times are only compared within one run; on
a machine shared with other work, say so when quoting them.

Usage::

    .venv/bin/python benchmarks/ocr_engines.py                       # embedded PostgreSQL in a temp dir
    .venv/bin/python benchmarks/ocr_engines.py --engines faster-paddle-tiny,rapidocr-v4 --rounds 1 --limit 10
    .venv/bin/python benchmarks/ocr_engines.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus" / "dev"
EMAIL = "ocr-engines-bench@immich-search.local"
BASELINE = "rapidocr-v4"


def squash(text: str) -> str:
    """Fold text and drop spaces and line breaks (how text recall compares a query with OCR text)."""
    from immich_search.textfold import fold

    return fold(text).replace(" ", "").replace("\n", "")


def text_recall(pairs: list[tuple[str, str]], texts: dict[str, str]) -> int:
    """Count the ``(query, photo)`` pairs whose query occurs in the photo's text (:func:`squash` of both)."""
    return sum(1 for query, name in pairs if name in texts and squash(query) in squash(texts[name]))


def load_previews(media_root: Path, url: str) -> dict[str, object]:
    """Decode every preview of the database's library, as the sync does; ``{file name: RGB image}``."""
    import psycopg
    from PIL import Image

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            'SELECT a."originalFileName", f.path FROM public.asset a '
            "JOIN public.asset_file f ON f.\"assetId\" = a.id AND f.type = 'preview'"
        ).fetchall()
    from immich_search.demo import IMMICH_MEDIA_LOCATION

    previews = {}
    for name, path in rows:
        relative = Path(path).relative_to(IMMICH_MEDIA_LOCATION)
        with Image.open(media_root / relative) as image:
            previews[name] = image.convert("RGB")
    return previews


def worker(name: str, url: str, media_root: str, threads: int, rotated: list[str], bare: list[str], conn) -> None:
    """Serve one engine to the parent over ``conn``: commands ``sync``, ``bare``, ``rotated``, ``rss``, ``stop``."""
    import resource

    from immich_search.db import open_pool
    from immich_search.demo import IMMICH_MEDIA_LOCATION
    from immich_search.ocr.registry import build_engine
    from immich_search.sync.pipeline import OcrSync
    from immich_search.sync.sources import MediaFileSource

    warnings.simplefilter("ignore")
    started = time.perf_counter()
    engine = build_engine(name, threads=threads)
    load_s = time.perf_counter() - started
    previews: dict[str, object] = {}  # decoded on first need, after the sync passes' peak RSS is taken
    sync_rss = 0.0
    with open_pool(url) as pool:
        sync = OcrSync(pool, MediaFileSource(media_root, IMMICH_MEDIA_LOCATION), engine=engine)
        conn.send({"model": engine.model, "load_s": load_s})
        while True:
            try:
                command = conn.recv()
            except EOFError:  # the parent is gone
                break
            if command == "stop":
                break
            retries_before = getattr(engine, "retries", 0)
            if command == "sync":
                report = sync.run_once(force=True)
                if not previews:
                    sync_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                answer = {"done": report.done, "failed": report.failed, "seconds": report.seconds}
            elif command == "bare":
                previews = previews or load_previews(Path(media_root), url)
                texts, begin = {}, time.perf_counter()
                for file_name in bare:
                    texts[file_name] = "\n".join(line.text for line in engine.recognize(previews[file_name]))
                answer = {"seconds": time.perf_counter() - begin, "texts": texts, "images": len(bare)}
            elif command == "rotated":
                previews = previews or load_previews(Path(media_root), url)
                texts, begin = {}, time.perf_counter()
                for degrees in (180, 90):
                    for file_name in rotated:
                        lines = engine.recognize(previews[file_name].rotate(degrees, expand=True))
                        texts[f"{degrees}:{file_name}"] = "\n".join(line.text for line in lines)
                answer = {"seconds": time.perf_counter() - begin, "texts": texts, "images": 2 * len(rotated)}
            else:  # rss
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                answer = {"peak_rss_mib": peak, "sync_rss_mib": sync_rss}
            answer["retries"] = getattr(engine, "retries", 0) - retries_before
            conn.send(answer)
    sync.close()


def prepare_database(url: str, images: list[Path], media_root: Path) -> str:
    """Create Immich's tables, migrate, import the corpus; return the user's id."""
    from immich_search import migrate
    from immich_search.demo import ensure_immich_schema, import_library

    ensure_immich_schema(url)
    migrate.upgrade(url)
    return import_library(url, images, media_root, email=EMAIL)


def search_quality(url: str, user_id: str, queries: list[dict], k: int, no_text: set[str]) -> dict:
    """recall@k, MRR@k and no-text hits of ``ocr:`` search (Python path) over the database's index."""
    from immich_search.db import open_pool
    from immich_search.ranking.metrics import evaluate
    from immich_search.ranking.ocr_search import search_ocr

    hits_no_text = 0
    with open_pool(url) as pool:

        def run(query: str) -> list[str]:
            nonlocal hits_no_text
            names = [hit.original_file_name for hit in search_ocr(pool, "ocr:" + query, user_id, limit=k)]
            hits_no_text += sum(1 for name in names if name in no_text)
            return names

        recall, mrr, misses = evaluate(run, queries, k)
    return {"recall": recall, "mrr": mrr, "no_text_hits": hits_no_text, "misses": misses}


def stored_texts(url: str) -> dict[str, str]:
    """The OCR text the sync stored, by file name."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            'SELECT a."originalFileName", o.text FROM immich_search.ocr o JOIN public.asset a ON a.id = o.asset_id'
        ).fetchall()
    return dict(rows)


def false_lines(url: str, no_text: set[str]) -> int:
    """Lines stored for the photos without text."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            'SELECT a."originalFileName", jsonb_array_length(o.lines) FROM immich_search.ocr o '
            "JOIN public.asset a ON a.id = o.asset_id"
        ).fetchall()
    return sum(count for name, count in rows if name in no_text)


def run(args: argparse.Namespace, workdir: Path) -> dict:
    """Set up one database and worker per engine, run the rounds, collect the figures."""
    from immich_search.demo import IMAGE_SUFFIXES
    from immich_search.embedded import start_embedded
    from immich_search.ocr.registry import ENGINES

    corpus = args.corpus.resolve()
    queries = json.loads((corpus / "queries.json").read_text(encoding="utf-8"))
    images = sorted(p for p in (corpus / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if args.limit:
        wanted = {name for item in queries for name in item["relevant"]}
        keep = [p for p in images if p.name in wanted][: args.limit] + [p for p in images if p.name.startswith("neg_")]
        images = sorted(set(keep))
        queries = [{**q, "relevant": [r for r in q["relevant"] if r in {p.name for p in images}]} for q in queries]
        queries = [q for q in queries if q["relevant"]]
    names = [n.strip() for n in args.engines.split(",")] if args.engines else list(ENGINES)
    for name in names:
        if name not in ENGINES:
            raise SystemExit(f"unknown engine {name!r}: one of {', '.join(ENGINES)}")
    no_text = {p.name for p in images if p.name.startswith("neg_")}
    pairs = [(q["query"], r) for q in queries for r in q["relevant"]]
    with_pairs = sorted({r for _, r in pairs})
    rotated = sorted(random.Random(16).sample(with_pairs, min(args.rotated, len(with_pairs))))
    rotated_pairs = [(query, f"{d}:{r}") for d in (180, 90) for query, r in pairs if r in rotated]
    threads = args.threads or os.cpu_count() or 1
    names_sorted = sorted(p.name for p in images)
    step = max(1, len(names_sorted) // max(1, args.bare_images))
    bare = names_sorted[::step][: args.bare_images]

    ctx = multiprocessing.get_context("spawn")
    workers: dict[str, tuple] = {}
    figures: dict[str, dict] = {}
    for name in names:
        media_root = workdir / f"media-{name}"
        media_root.mkdir()
        if args.database_url:
            url = args.database_url.rsplit("/", 1)[0] + f"/bench_ocr_{name.replace('-', '_')}"
            _create_database(args.database_url, url.rsplit("/", 1)[1])
        else:
            url = start_embedded(workdir / "pg", database=f"bench_ocr_{name.replace('-', '_')}")
        user_id = prepare_database(url, images, media_root)
        parent, child = ctx.Pipe()
        arguments = (name, url, str(media_root), threads, rotated, bare, child)
        process = ctx.Process(target=worker, args=arguments, daemon=True)
        process.start()
        info = parent.recv()
        workers[name] = (process, parent)
        figures[name] = {"model": info["model"], "load_s": info["load_s"], "url": url, "user_id": user_id,
                         "sync": [], "bare": [], "retries": 0}  # fmt: skip
        print(f"{name}: {info['model']} loaded in {info['load_s']:.2f} s", flush=True)

    def ask(name: str, command: str) -> dict:
        workers[name][1].send(command)
        return workers[name][1].recv()

    for number in range(args.rounds):
        order = names[number % len(names) :] + names[: number % len(names)]
        for name in order:
            report = ask(name, "sync")
            figures[name]["sync"].append(report["done"] / report["seconds"] if report["seconds"] else 0.0)
            figures[name]["sync_failed"] = report["failed"]
            figures[name]["retries"] += report["retries"]
            loop = ask(name, "bare")
            figures[name]["bare"].append(loop["images"] / loop["seconds"])
            print(
                f"round {number + 1} {name}: sync {figures[name]['sync'][-1]:.3f} img/s, "
                f"bare {figures[name]['bare'][-1]:.3f} img/s",
                flush=True,
            )
    if rotated:
        for name in names:
            answer = ask(name, "rotated")
            figures[name]["rotated_recall"] = text_recall(rotated_pairs, answer["texts"])
            figures[name]["rotated_s_per_image"] = answer["seconds"] / answer["images"]
            figures[name]["rotated_retries"] = answer["retries"]
    for name in names:
        memory = ask(name, "rss")
        figures[name]["peak_rss_mib"] = memory["peak_rss_mib"]
        figures[name]["sync_rss_mib"] = memory["sync_rss_mib"]
        workers[name][1].send("stop")
        workers[name][0].join(60)
    for name in names:
        entry = figures[name]
        entry["text_recall"] = text_recall(pairs, stored_texts(entry["url"]))
        entry["false_lines"] = false_lines(entry["url"], no_text)
        entry["search"] = search_quality(entry["url"], entry.pop("user_id"), queries, args.k, no_text)
        entry["sync_img_s"] = statistics.median(entry["sync"])
        entry["bare_img_s"] = statistics.median(entry["bare"])
        if args.database_url:
            _drop_database(args.database_url, entry["url"].rsplit("/", 1)[1])
        entry.pop("url")
    return {
        "corpus": str(corpus),
        "photos": len(images),
        "pairs": len(pairs),
        "rotated_photos": rotated,
        "rotated_pairs": len(rotated_pairs),
        "queries": len(queries),
        "k": args.k,
        "threads": threads,
        "rounds": args.rounds,
        "bare_images": len(bare),
        "cpu_count": os.cpu_count(),
        "engines": figures,
    }


def _create_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def _drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def print_report(figures: dict) -> None:
    """Print the table of :func:`run`'s figures."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200, soft_wrap=True)
    k = figures["k"]
    table = Table(
        title=f"OCR engines on {figures['photos']} photos, {figures['pairs']} pairs, {figures['queries']} queries "
        f"({figures['rounds']} round(s), {figures['threads']} thread(s) per engine)"
    )
    for column in ("engine", "model", "text recall", f"rotated ({figures['rotated_pairs']})", f"recall@{k}",
                   "MRR", "no-text hits", "false lines", "sync img/s", "bare img/s", "sync/bare", "x v4",
                   "sync RSS MiB", "peak RSS MiB", "retries"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("engine", "model") else "right")
    base = figures["engines"].get(BASELINE, {}).get("sync_img_s")
    for name, entry in figures["engines"].items():
        table.add_row(
            name,
            entry["model"],
            f"{entry['text_recall']}/{figures['pairs']}",
            str(entry.get("rotated_recall", "-")),
            f"{entry['search']['recall']:.3f}",
            f"{entry['search']['mrr']:.3f}",
            str(entry["search"]["no_text_hits"]),
            str(entry["false_lines"]),
            f"{entry['sync_img_s']:.3f}",
            f"{entry['bare_img_s']:.3f}",
            f"{entry['sync_img_s'] / entry['bare_img_s']:.2f}",
            f"{entry['sync_img_s'] / base:.2f}" if base else "-",
            f"{entry['sync_rss_mib']:.0f}",
            f"{entry['peak_rss_mib']:.0f}",
            str(entry["retries"]),
        )
    console.print(table)
    for name, entry in figures["engines"].items():
        if entry["search"]["misses"]:
            console.print(f"{name} misses: {entry['search']['misses']}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    sys.path.insert(0, str(REPO))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="corpus folder (default: %(default)s)")
    parser.add_argument("--engines", help="comma-separated engine names (default: all)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of sync + bare loop (default 2)")
    parser.add_argument("--bare-images", type=int, default=12, help="previews of the bare loop (default 12)")
    parser.add_argument("--rotated", type=int, default=12, help="photos read turned 180 and 90 degrees (default 12)")
    parser.add_argument("--limit", type=int, default=0, help="only this many photos with text (+ the no-text ones)")
    parser.add_argument("--threads", type=int, default=0, help="threads per engine (default: every core)")
    parser.add_argument("--k", type=int, default=10, help="cut-off for recall and MRR (default 10)")
    parser.add_argument(
        "--database-url", help="an admin URL of a server to create scratch databases on (default: embedded)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    workdir = Path(tempfile.mkdtemp(prefix="ocr-engines-"))
    try:
        figures = run(args, workdir)
    finally:
        if not args.database_url and (workdir / "pg").exists():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pgserver

                pgserver.get_server(workdir / "pg").cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    print_report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
