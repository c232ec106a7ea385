"""Search latency and filtered-vector recall on synthetic libraries of 100k and 1M assets.

For each library size it builds, in a scratch database on a real PostgreSQL:

* ``public.asset`` rows (Immich's schema subset) spread over owners: one *large* owner (40% of the
  library), one *small* owner (1%), the rest shared by 58 others; the small owner also sees a partner's
  timeline (another 1%). 5% of assets are archived, 1% locked, 1% trashed.
* ``immich_search.ocr`` rows: 30% of assets have text (most photos show none), each 1 to 4 lines drawn
  from the RapidOCR lines of the dev-corpus photos (``../shared/corpus/dev/rapidocr_1.4.4_baseline.json``),
  tokenised by the real index tokenizer;
* ``immich_search.clip`` rows: L2-normalised float32 vectors of d = 512 (ViT-B-16's dimension), drawn
  around 1,000 random centres (CLIP embeddings of a photo library are clustered, not uniform on the
  sphere; ``--uniform`` draws uniform unit vectors instead, the hardest case for HNSW), and the HNSW index
  built after loading (``immich_search.clip_create_index_v1``; its build time is printed).

Then, per owner filter (large, small), it times 100 queries of each kind with the SQL functions the
CLI and psql use, and the same queries as an *exact scan* in the same run (no GIN, no HNSW;
every visible row scored):

* ocr-only: ``immich_search.search_ocr(text, user, 10)`` (the SQL-only query path), texts from the
  corpus's queries;
* vector-only: ``immich_search.search_clip_v3(vector, user, 10)``; query vectors are drawn like the
  library's;
* hybrid: ``immich_search.search(text, vector, user, 10)`` (RRF over 100 candidates per branch);

and reports p50/p95 latency in milliseconds and recall@10 of the filtered vector branch against the exact
scan (the fraction of the exact top 10 that the indexed search returns, averaged over queries).

Usage::

    .venv/bin/python benchmarks/search_latency.py --database-url postgresql://postgres@127.0.0.1:55433/postgres
    .venv/bin/python benchmarks/search_latency.py --sizes 100000 --queries 50      # quicker
    .venv/bin/python benchmarks/search_latency.py                                   # embedded PostgreSQL

``--database-url`` is an admin URL: a database ``immich_search_latency_<size>`` is created (and dropped
first when it exists) for each size. Timings are wall-clock through psycopg on the same machine, so they
include a local round trip; compare rows of one run, not runs on different machines.

The exact scans: GIN off (``enable_bitmapscan = off``: the OCR match is tested on every row) and
``SET immich_search.exact_limit`` to its maximum (every visible vector scored, no HNSW); b-tree lookups stay.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg
from pgvector import Vector
from pgvector.psycopg import register_vector

from immich_search import migrate
from immich_search.sqlfiles import read_sql
from immich_search.tokens import TOKENIZER_VERSION, document_tokens, tsvector_literal

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "dev"
DIM = 512
CENTRES = 1000
K = 10


def with_db(url: str, dbname: str) -> str:
    """Return ``url`` pointing at database ``dbname``."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**info)


def unit_vectors(rng: np.random.Generator, n: int, centres: np.ndarray | None) -> np.ndarray:
    """``n`` L2-normalised float32 rows of length DIM: around ``centres``, or uniform when ``None``."""
    if centres is None:
        rows = rng.standard_normal((n, DIM), dtype=np.float32)
    else:
        rows = centres[rng.integers(0, len(centres), n)] + 0.08 * rng.standard_normal((n, DIM), dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


TEXT_SHARE = 0.30
"""Share of assets with OCR text (an assumption: screenshots, documents, signs among everyday photos)."""
DISTINCT_TEXTS = 5000


def corpus_lines(corpus: Path) -> list[str]:
    """Every OCR line of the dev-corpus photos (RapidOCR 1.4.4 baseline)."""
    baseline = json.loads((corpus / "rapidocr_1.4.4_baseline.json").read_text(encoding="utf-8"))
    return [line for entry in baseline.values() for line in entry["texts"]]


def synthetic_texts(rng: np.random.Generator, lines: list[str], n: int) -> list[list[str]]:
    """``n`` distinct-ish OCR texts of 1 to 4 corpus lines each."""
    return [[lines[i] for i in rng.integers(0, len(lines), rng.integers(1, 5))] for _ in range(n)]


def owners_for(n: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, int]]:
    """Owner index per asset: 0 = large (40%), 1 = small (1%), 2 = the small owner's partner (1%), 3.. rest."""
    owner = rng.integers(3, 61, n)
    shares = rng.random(n)
    owner[shares < 0.40] = 0
    owner[(shares >= 0.40) & (shares < 0.41)] = 1
    owner[(shares >= 0.41) & (shares < 0.42)] = 2
    return owner, {"large": 0, "small": 1}


def reuse_library(admin_url: str, size: int, uniform: bool) -> dict | None:
    """The library of an earlier ``--keep`` run, its functions refreshed; ``None`` when there is none.

    The vectors and their index (the slow part to build) are moved aside, the schema goes down to
    revision 0001 (which keeps the OCR rows) and up again, installing the current ranking functions, and
    the vectors come back.
    """
    name = f"immich_search_latency_{size}"
    with psycopg.connect(admin_url) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            return None
    url = with_db(admin_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('immich_search.clip')").fetchone()[0] is not None:
            conn.execute("ALTER TABLE immich_search.clip SET SCHEMA public")
            conn.execute("ALTER TABLE public.clip RENAME TO immich_search_bench_clip")
    migrate.downgrade(url, "0001")
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE immich_search.clip")
        conn.execute("ALTER TABLE public.immich_search_bench_clip SET SCHEMA immich_search")
        conn.execute("ALTER TABLE immich_search.immich_search_bench_clip RENAME TO clip")
        conn.execute(
            "INSERT INTO immich_search.setting VALUES ('clip_model', 'bench-512') "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
    rng = np.random.default_rng(size)
    centres = None if uniform else unit_vectors(rng, CENTRES, None)
    with psycopg.connect(url) as conn:
        users = [
            str(conn.execute('SELECT id FROM public."user" WHERE email = %s', (f"u{i}@bench",)).fetchone()[0])
            for i in range(61)
        ]
        assets = conn.execute("SELECT count(*) FROM public.asset").fetchone()[0]
        kind = conn.execute(
            "SELECT amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam WHERE c.relname = 'clip_embedding_idx'"
        ).fetchone()[0]
    if assets != size:
        raise SystemExit(f"{name} holds {assets} assets, not {size}: run without --reuse")
    return {
        "url": url,
        "users": users,
        "centres": centres,
        "timings": {"load_s": float("nan"), "index_build_s": float("nan"), "index": kind},
    }


def build_library(admin_url: str, size: int, uniform: bool, console) -> dict:
    """Create and fill ``immich_search_latency_<size>``; return its URL, users and build timings."""
    name = f"immich_search_latency_{size}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_db(admin_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(read_sql("immich/v3_1_subset.sql"))
    migrate.upgrade(url)
    rng = np.random.default_rng(size)
    centres = None if uniform else unit_vectors(rng, CENTRES, None)
    owner_of, _ = owners_for(size, rng)
    texts = synthetic_texts(rng, corpus_lines(CORPUS), DISTINCT_TEXTS)
    text_rows = [("\n".join(lines), tsvector_literal(document_tokens(lines))) for lines in texts]
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        register_vector(conn)
        users = [
            str(
                conn.execute('INSERT INTO public."user" (email) VALUES (%s) RETURNING id', (f"u{i}@bench",)).fetchone()[
                    0
                ]
            )
            for i in range(61)
        ]
        conn.execute(
            'INSERT INTO public.partner ("sharedById", "sharedWithId", "inTimeline") VALUES (%s, %s, true)',
            (users[2], users[1]),
        )
        conn.execute("SELECT immich_search.clip_configure_v1('bench-512', %s)", (DIM,))
        conn.execute("DROP INDEX immich_search.clip_embedding_idx")  # built once after loading: much faster
        visibility = np.where(rng.random(size) < 0.05, "archive", "timeline").astype(object)
        visibility[rng.random(size) < 0.01] = "locked"
        trashed = rng.random(size) < 0.01
        text_choice = rng.integers(0, len(text_rows), size)
        has_text = rng.random(size) < TEXT_SHARE
        chunk = 50_000
        for begin in range(0, size, chunk):
            end = min(begin + chunk, size)
            ids = [uuid.uuid4() for _ in range(begin, end)]
            vectors = unit_vectors(rng, end - begin, centres)
            with conn.cursor().copy(
                'COPY public.asset (id, "ownerId", type, "originalPath", "originalFileName", checksum, '
                '"checksumAlgorithm", "fileCreatedAt", "fileModifiedAt", "localDateTime", visibility, status, '
                '"deletedAt") FROM STDIN'
            ) as copy:
                for offset, asset_id in enumerate(ids):
                    i = begin + offset
                    copy.write_row(
                        (
                            asset_id,
                            users[owner_of[i]],
                            "IMAGE",
                            f"/data/{i}.jpg",
                            f"{i}.jpg",
                            i.to_bytes(20, "big"),
                            "sha1",
                            "2025-06-01",
                            "2025-06-01",
                            "2025-06-01",
                            visibility[i],
                            "trashed" if trashed[i] else "active",
                            "2026-01-01" if trashed[i] else None,
                        )
                    )
            with conn.cursor().copy(
                "COPY immich_search.ocr (asset_id, source, model, text, search_vector, tokenizer_version) FROM STDIN"
            ) as copy:
                for offset, asset_id in enumerate(ids):
                    if has_text[begin + offset]:
                        text, vector = text_rows[text_choice[begin + offset]]
                        copy.write_row((asset_id, "rapidocr", "bench", text, vector, TOKENIZER_VERSION))
            with conn.cursor().copy(
                "COPY immich_search.clip (asset_id, model, embedding) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["uuid", "text", "vector"])
                for asset_id, vector in zip(ids, vectors, strict=True):
                    copy.write_row((asset_id, "bench-512", vector))
            conn.commit()
            console(f"  loaded {end:,} / {size:,} assets")
        timings["load_s"] = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '4GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        kind = conn.execute("SELECT immich_search.clip_create_index_v1()").fetchone()[0]
        conn.commit()
        timings["index_build_s"] = time.perf_counter() - started
        timings["index"] = kind
        conn.execute("ANALYZE")
        conn.commit()
    return {"url": url, "users": users, "centres": centres, "timings": timings}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values`` (linear interpolation)."""
    return float(np.percentile(np.asarray(values), q))


def timed(conn: psycopg.Connection, sql: str, params: tuple) -> tuple[float, list]:
    """Run one query; return (milliseconds, rows)."""
    started = time.perf_counter()
    rows = conn.execute(sql, params, prepare=False).fetchall()
    return (time.perf_counter() - started) * 1000, rows


def exact_settings(conn: psycopg.Connection, exact: bool) -> None:
    """Exact scans (no GIN: bitmap scans off; no HNSW: every visible vector scored) or the normal plans.

    B-tree lookups (asset by owner, vectors by primary key) stay on: an exact scan is the brute-force
    answer over the caller's visible rows, not a plan without any index.
    """
    conn.execute(f"SET enable_bitmapscan = {'off' if exact else 'on'}")
    conn.execute(f"SET immich_search.exact_limit = {2**31 - 1 if exact else 10000}")


KINDS: dict[str, Callable[[str, Vector, str, bool], tuple[str, tuple]]] = {
    "ocr-only": lambda text, vector, user, exact: (
        "SELECT asset_id FROM immich_search.search_ocr(%s, %s, 10)",
        (f"ocr:{text}", user),
    ),
    "vector-only": lambda text, vector, user, exact: (
        "SELECT asset_id FROM immich_search.search_clip_v3(%s, %s, 10)",
        (vector, user),
    ),
    "hybrid": lambda text, vector, user, exact: (
        "SELECT asset_id FROM immich_search.search(%s, %s, %s, 10)",
        (text, vector, user),
    ),
}


def measure(library: dict, queries: int, console) -> list[dict]:
    """Time every kind of query under each owner filter, indexed and exact; recall@10 of the vector branch."""
    rng = np.random.default_rng(99)
    query_texts = [q["query"] for q in json.loads((CORPUS / "queries.json").read_text(encoding="utf-8"))]
    texts = [query_texts[i % len(query_texts)] for i in range(queries)]
    vectors = [Vector(v) for v in unit_vectors(rng, queries, library["centres"])]
    rows = []
    with psycopg.connect(library["url"], autocommit=True) as conn:
        register_vector(conn)
        for owner_name, owner_index in (("large", 0), ("small", 1)):
            user = library["users"][owner_index]
            visible = conn.execute(
                'SELECT count(*) FROM public.asset a WHERE immich_search.can_see_v2(a."ownerId", a.visibility::text, '
                'a."deletedAt", %(u)s, ARRAY(SELECT "sharedById" FROM public.partner '
                'WHERE "sharedWithId" = %(u)s AND "inTimeline"), false)',
                {"u": user},
            ).fetchone()[0]
            for kind, build in KINDS.items():
                results = {}
                for exact in (False, True):
                    exact_settings(conn, exact)
                    latencies, answers = [], []
                    for text, vector in zip(texts, vectors, strict=True):
                        ms, found = timed(conn, *build(text, vector, user, exact))
                        latencies.append(ms)
                        answers.append([r[0] for r in found])
                    results[exact] = (latencies, answers)
                exact_settings(conn, False)
                recall = None
                if kind == "vector-only":
                    recall = statistics.fmean(
                        len(set(got) & set(want)) / max(len(want), 1)
                        for got, want in zip(results[False][1], results[True][1], strict=True)
                    )
                row = {
                    "owner": owner_name,
                    "visible": visible,
                    "kind": kind,
                    "p50_ms": percentile(results[False][0], 50),
                    "p95_ms": percentile(results[False][0], 95),
                    "exact_p50_ms": percentile(results[True][0], 50),
                    "exact_p95_ms": percentile(results[True][0], 95),
                    "recall_at_10": recall,
                }
                rows.append(row)
                console(
                    f"  {owner_name:5} {kind:11} p50 {row['p50_ms']:8.1f} ms  p95 {row['p95_ms']:8.1f} ms   exact "
                    f"p50 {row['exact_p50_ms']:8.1f} ms  p95 {row['exact_p95_ms']:8.1f} ms"
                    + (f"   recall@10 {recall:.3f}" if recall is not None else "")
                )
    return rows


def start_embedded(workdir: Path) -> str:
    """Start pgserver (PostgreSQL 16, pgvector 0.6.2) in ``workdir``; return its admin URL."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        return pgserver.get_server(workdir, cleanup_mode="stop").get_uri("postgres")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table per library size (and write JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="admin URL of the server (default: embedded pgserver in a temp dir)")
    parser.add_argument("--sizes", default="100000,1000000", help="library sizes, comma-separated")
    parser.add_argument("--queries", type=int, default=100, help="queries per kind and filter")
    parser.add_argument("--uniform", action="store_true", help="uniform unit vectors instead of clustered ones")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept library of the same size (implies --keep)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    url = args.database_url or start_embedded(Path(tempfile.mkdtemp(prefix="immich-search-latency-")))
    with psycopg.connect(url) as conn:
        server = conn.execute("SELECT version()").fetchone()[0].split(",")[0]
        pgvector = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    print(
        f"{server}, pgvector {pgvector[0] if pgvector else '?'}, d = {DIM}, "
        f"{'uniform' if args.uniform else 'clustered'} vectors, {args.queries} queries per row",
        flush=True,
    )
    report = []
    for size in (int(s) for s in args.sizes.split(",")):
        print(f"library of {size:,} assets", flush=True)
        library = (reuse_library(url, size, args.uniform) if args.reuse else None) or build_library(
            url, size, args.uniform, lambda line: print(line, flush=True)
        )
        timings = library["timings"]
        print(
            f"  load {timings['load_s']:.0f} s, {timings['index']} index build {timings['index_build_s']:.0f} s",
            flush=True,
        )
        rows = measure(library, args.queries, lambda line: print(line, flush=True))
        report.append({"size": size, "timings": timings, "rows": rows})
        if not (args.keep or args.reuse):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "immich_search_latency_{size}" WITH (FORCE)')
    print()
    print("| assets | owner (visible) | query | p50 ms | p95 ms | exact p50 ms | exact p95 ms | recall@10 |")
    print("|---|---|---|---|---|---|---|---|")
    for entry in report:
        for row in entry["rows"]:
            recall = f"{row['recall_at_10']:.3f}" if row["recall_at_10"] is not None else ""
            print(
                f"| {entry['size']:,} | {row['owner']} ({row['visible']:,}) | {row['kind']} | {row['p50_ms']:.1f} | "
                f"{row['p95_ms']:.1f} | {row['exact_p50_ms']:.1f} | {row['exact_p95_ms']:.1f} | {recall} |"
            )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
