"""OCR search quality on the dev corpus: this project against two baselines, on a real PostgreSQL.

What it does, end to end and with the real code paths:

1. an Immich-shaped database (``sql/immich/v3_1_subset.sql``), migrated to our head revision;
2. the corpus's photos imported as one user's library, as Immich stores one (originals and previews);
3. the real sync pipeline (``OcrSync.run_once``, RapidOCR on CPU) over every preview;
4. every query of ``queries.json`` run by four methods, its top ``k`` scored against the judgements.

Methods:

* ``ours (python)``: ``search_ocr(pool, "ocr:<query>", user, tokenizer="python")``, the query tokenised
  in Python (jieba, CJK bigrams, folding) and ranked by ``immich_search.search_ocr_tsquery_v1``.
* ``ours (sql)``: the same search done entirely in SQL (``immich_search.search_ocr_v1``), what a psql
  user gets.
* ``plain substring``: a photo matches when the query, case-folded, is a substring of its OCR text (the
  recognised lines joined by a newline, as stored in ``immich_search.ocr.text``); ranked by the number of
  occurrences, then file name. What a naive ``ILIKE '%query%'`` over the same OCR text would find.
* ``Immich native``: Immich's own OCR matching (v2.2+, ``server/src/utils/database.ts``): the text of the
  boxes joined by spaces and tokenised by Immich's ``tokenizeForSearch`` (CJK runs to overlapping bigrams,
  other text split on white space), the query tokenised the same way, and a photo matches when
  ``f_unaccent(text) %>> f_unaccent(query)`` (pg_trgm strict word similarity, default threshold 0.5).
  Immich gives no relevance order, so matches are listed by file name. It runs in SQL over a temporary
  table holding the tokenised text of *our* OCR lines, so the comparison is of the matching, not of the
  OCR models (Immich itself runs PP-OCRv5). It needs pg_trgm, which the embedded server lacks: there the
  row reads ``n/a``.

Metrics (``immich_search.ranking.metrics``; Manning, Raghavan and Schütze, *Introduction to Information
Retrieval*, 2008, sections 8.3-8.4):

* recall@k: the fraction of a query's relevant photos found in its top k, averaged over queries;
* MRR: the reciprocal rank of the first relevant photo in the top k (0 when none), averaged over queries;
* no-text hits: results in the top k, summed over all queries, that are photos without text (the
  ``neg_*`` photos and any photo whose OCR text is empty): a false hit by construction;
* OCR throughput: images per second of the sync pass (decode, OCR and write; model loading excluded),
  and the median time per query of each method. Times are only compared within one run.

Usage::

    .venv/bin/python benchmarks/ocr_search_quality.py                 # embedded PostgreSQL in a temp dir
    .venv/bin/python benchmarks/ocr_search_quality.py --database-url postgresql://.../scratch --json out.json

``--database-url`` must name a scratch database: the corpus is imported into it and indexed (photos
already there are skipped, so a second run over the same database measures no OCR throughput).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from immich_search.ranking.metrics import evaluate
from immich_search.ranking.ocr_search import search_ocr
from immich_search.sync.pipeline import OcrSync
from immich_search.sync.sources import MediaFileSource
from rich.console import Console
from rich.table import Table

from immich_search import migrate
from immich_search.db import open_pool
from immich_search.demo import IMAGE_SUFFIXES, IMMICH_MEDIA_LOCATION, ensure_immich_schema, import_library
from immich_search.ocr_engine import RapidOcrEngine

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "corpus" / "dev"
BENCH_EMAIL = "ocr-quality-bench@immich-search.local"
NOT_AVAILABLE = "n/a (pg_trgm not installed on this server)"


# --- Immich's OCR matching ------------------------------------------------------------------------------

def _immich_is_cjk(code: int) -> bool:
    """Immich's ``isCJK`` (UTF-16 code unit ranges): Han, Hangul syllables, Hiragana, Katakana, Ext. A."""
    return (
        0x4E00 <= code <= 0x9FFF
        or 0xAC00 <= code <= 0xD7AF
        or 0x3040 <= code <= 0x309F
        or 0x30A0 <= code <= 0x30FF
        or 0x3400 <= code <= 0x4DBF
    )


def immich_tokenize(text: str) -> list[str]:
    """Tokenise like Immich's ``tokenizeForSearch`` (``server/src/utils/database.ts``, v2.2 to v3.1).

    Characters with a code of 32 or less separate tokens; a run of CJK characters gives its overlapping
    bigrams (a lone CJK character gives itself); any other run of characters is one token. No case or
    accent folding here: pg_trgm folds case, ``f_unaccent`` accents.

    >>> immich_tokenize("增值税 发 No.12")
    ['增值', '值税', '发', 'No.12']
    """
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        code = ord(text[i])
        if code <= 32:
            i += 1
            continue
        start = i
        if _immich_is_cjk(code):
            while i < n and _immich_is_cjk(ord(text[i])):
                i += 1
            if i - start == 1:
                tokens.append(text[start])
            else:
                tokens.extend(text[k : k + 2] for k in range(start, i - 1))
        else:
            while i < n and ord(text[i]) > 32 and not _immich_is_cjk(ord(text[i])):
                i += 1
            tokens.append(text[start:i])
    return tokens


# --- the run -------------------------------------------------------------------------------------------

@dataclass
class Photo:
    """One photo of the benchmark library as indexed: its file name, OCR text and lines' texts."""

    asset_id: str
    name: str
    text: str
    lines: list[str]

    @property
    def has_text(self) -> bool:
        """Whether OCR found any text (``neg_*`` photos are treated as text-free whatever OCR says)."""
        return bool(self.text.strip()) and not self.name.startswith("neg_")


@dataclass
class MethodResult:
    """The figures of one method over all queries."""

    name: str
    available: bool = True
    note: str = ""
    recall: float = 0.0
    mrr: float = 0.0
    no_text_hits: int = 0
    no_text_hit_list: list[str] = field(default_factory=list)
    misses: dict[str, list[str]] = field(default_factory=dict)
    median_query_ms: float = 0.0

    def as_json(self) -> dict:
        """Return the figures as a JSON-ready dict."""
        if not self.available:
            return {"available": False, "note": self.note}
        return {
            "available": True,
            "recall_at_k": round(self.recall, 4),
            "mrr": round(self.mrr, 4),
            "no_text_hits": self.no_text_hits,
            "no_text_hit_list": self.no_text_hit_list,
            "median_query_ms": round(self.median_query_ms, 2),
            "misses": self.misses,
        }


def measure(name: str, run_query: Callable[[str], list[str]], queries: list[dict], k: int,
            no_text: set[str]) -> MethodResult:
    """Evaluate one method: recall@k, MRR, false hits on text-free photos and the median query time."""
    timings: list[float] = []
    results: dict[str, list[str]] = {}

    def timed(query: str) -> list[str]:
        started = time.perf_counter()
        ranked = list(run_query(query))[:k]
        timings.append((time.perf_counter() - started) * 1000)
        results[query] = ranked
        return ranked

    recall, mrr, misses = evaluate(timed, queries, k)
    hits = [f"{query} -> {doc}" for query, ranked in results.items() for doc in ranked if doc in no_text]
    return MethodResult(name, recall=recall, mrr=mrr, no_text_hits=len(hits), no_text_hit_list=hits,
                        misses=misses, median_query_ms=statistics.median(timings))


def load_photos(conn: psycopg.Connection, user_id: str) -> list[Photo]:
    """Every photo of the benchmark user with its stored OCR text ('' when it has no OCR row)."""
    rows = conn.execute(
        'SELECT a.id, a."originalFileName", coalesce(o.text, \'\'), coalesce(o.lines, \'[]\'::jsonb) '
        "FROM public.asset a LEFT JOIN immich_search.ocr o ON o.asset_id = a.id "
        'WHERE a."ownerId" = %s ORDER BY a."originalFileName"',
        (user_id,),
    ).fetchall()
    return [
        Photo(str(asset_id), name, text, [line.get("text", "") for line in lines])
        for asset_id, name, text, lines in rows
    ]


def substring_search(photos: list[Photo], k: int) -> Callable[[str], list[str]]:
    """Baseline: case-insensitive substring of the query in the OCR text; most occurrences first."""
    folded = [(photo.name, photo.text.casefold()) for photo in photos]

    def run(query: str) -> list[str]:
        needle = query.casefold()
        counted = [(-text.count(needle), name) for name, text in folded if needle and needle in text]
        return [name for _, name in sorted(counted)[:k]]

    return run


def has_pg_trgm(conn: psycopg.Connection) -> bool:
    """Whether pg_trgm is installed in the database (its ``%>>`` operator is needed)."""
    return conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").fetchone() is not None


def immich_native_search(conn: psycopg.Connection, photos: list[Photo], k: int) -> Callable[[str], list[str]]:
    """Baseline: Immich's OCR match (``%>>`` on tokenised text) in SQL, over a temporary table.

    The table mirrors Immich's ``ocr_search``: one row per photo, its boxes' text joined by spaces and
    tokenised by :func:`immich_tokenize`. Matches are listed by file name (Immich has no relevance order).
    """
    unaccent = "public.f_unaccent" if conn.execute(
        "SELECT to_regprocedure('public.f_unaccent(text)')").fetchone()[0] else ""
    conn.execute("CREATE TEMP TABLE immich_ocr_search (asset_id uuid PRIMARY KEY, name text, text text)")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO immich_ocr_search VALUES (%s, %s, %s)",
            [(p.asset_id, p.name, " ".join(immich_tokenize(" ".join(p.lines)))) for p in photos if p.lines],
        )
    conn.commit()
    sql = (
        f"SELECT name FROM immich_ocr_search WHERE {unaccent}(text) %%>> {unaccent}(%s) "
        "ORDER BY name LIMIT %s"
    )

    def run(query: str) -> list[str]:
        rows = conn.execute(sql, (" ".join(immich_tokenize(query)), k)).fetchall()
        conn.commit()
        return [name for (name,) in rows]

    return run


def start_default_server(workdir: Path) -> str:
    """Start an embedded PostgreSQL (pgserver) with its data under ``workdir``; return its URL."""
    from immich_search.embedded import start_embedded

    return start_embedded(workdir / "pg", database="immich")


def stop_default_server(workdir: Path) -> None:
    """Stop the embedded server started by :func:`start_default_server`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        pgserver.get_server(workdir / "pg").cleanup()


def run_benchmark(url: str, corpus: Path, k: int, media_root: Path, console: Console) -> dict:
    """Build, index and query the library in the database at ``url``; return the figures."""
    queries = json.loads((corpus / "queries.json").read_text(encoding="utf-8"))
    images = sorted(p for p in (corpus / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    console.print(f"corpus {corpus}: {len(images)} photos, {len(queries)} queries, k = {k}")
    ensure_immich_schema(url)
    migrate.upgrade(url)
    user_id = import_library(url, images, media_root, email=BENCH_EMAIL)

    started = time.perf_counter()
    engine = RapidOcrEngine()
    load_s = time.perf_counter() - started
    with open_pool(url) as pool:
        report = OcrSync(pool, MediaFileSource(media_root, IMMICH_MEDIA_LOCATION), engine=engine).run_once()
        console.print(
            f"OCR ({engine.model}): {report.done} done, {report.failed} failed in {report.seconds:.1f} s "
            f"(model load {load_s:.1f} s excluded)"
        )
        with psycopg.connect(url) as conn:
            server_version = conn.execute("SHOW server_version").fetchone()[0]
            photos = load_photos(conn, user_id)
            trigram = has_pg_trgm(conn)
            threshold = None
            if trigram:
                conn.execute("SELECT 'a' %>> 'a'")  # loads pg_trgm, which defines its settings
                setting = "SELECT current_setting('pg_trgm.strict_word_similarity_threshold')"
                threshold = conn.execute(setting).fetchone()[0]
            conn.commit()
            no_text = {p.name for p in photos if not p.has_text}

            def ours(tokenizer: str) -> Callable[[str], list[str]]:
                def run(query: str) -> list[str]:
                    hits = search_ocr(pool, "ocr:" + query, user_id, limit=k, tokenizer=tokenizer)
                    return [hit.original_file_name for hit in hits]

                return run

            ours("python")(queries[0]["query"])  # warm up: jieba loads its dictionary on first use
            methods = [
                measure("ours (python)", ours("python"), queries, k, no_text),
                measure("ours (sql)", ours("sql"), queries, k, no_text),
                measure("plain substring", substring_search(photos, k), queries, k, no_text),
            ]
            if trigram:
                methods.append(measure("Immich native", immich_native_search(conn, photos, k), queries, k,
                                       no_text))
            else:
                methods.append(MethodResult("Immich native", available=False, note=NOT_AVAILABLE))

    return {
        "corpus": str(corpus),
        "k": k,
        "server_version": server_version,
        "pg_trgm": trigram,
        "strict_word_similarity_threshold": threshold,
        "photos": len(photos),
        "queries": len(queries),
        "no_text_photos": sorted(no_text),
        "ocr": {
            "model": engine.model,
            "done": report.done,
            "failed": report.failed,
            "seconds": round(report.seconds, 3),
            "images_per_second": round(report.images_per_second, 3),
            "model_load_seconds": round(load_s, 3),
        },
        "methods": {m.name: m.as_json() for m in methods},
        "_methods": methods,
        "_photos": {p.name: p for p in photos},
    }


def _one_line(text: str, width: int = 90) -> str:
    flat = " | ".join(part for part in text.splitlines() if part.strip())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def print_report(figures: dict, console: Console) -> None:
    """Print the comparison table, the OCR throughput and the misses of our two query paths."""
    k = figures["k"]
    table = Table(title=f"OCR search quality, {figures['queries']} queries, {figures['photos']} photos "
                        f"(PostgreSQL {figures['server_version']})")
    table.add_column("method")
    table.add_column(f"recall@{k}", justify="right")
    table.add_column(f"MRR@{k}", justify="right")
    table.add_column(f"no-text hits@{k}", justify="right")
    table.add_column("median ms/query", justify="right")
    for method in figures["_methods"]:
        if method.available:
            table.add_row(method.name, f"{method.recall:.3f}", f"{method.mrr:.3f}", str(method.no_text_hits),
                          f"{method.median_query_ms:.1f}")
        else:
            table.add_row(method.name, method.note, "", "", "")
    console.print(table)
    ocr = figures["ocr"]
    processed = ocr["done"] + ocr["failed"]
    rate = f"{ocr['images_per_second']:.2f} images/s" if processed else "n/a (nothing new to OCR)"
    console.print(
        f"OCR throughput: {rate} ({ocr['done']} done, {ocr['failed']} failed in {ocr['seconds']:.1f} s; "
        f"model {ocr['model']}, loading {ocr['model_load_seconds']:.1f} s not counted)"
    )
    no_text = figures["no_text_photos"]
    console.print(f"photos without text ({len(no_text)}): {', '.join(no_text)}")
    threshold = figures["strict_word_similarity_threshold"]
    if threshold is not None:
        console.print(f"Immich native: pg_trgm.strict_word_similarity_threshold = {threshold}")
    photos = figures["_photos"]
    for method in figures["_methods"]:
        if not method.available:
            continue
        if method.no_text_hit_list:
            console.print(f"\n[bold]{method.name}[/bold]: hits on photos without text: "
                          + "; ".join(method.no_text_hit_list))
        if not method.name.startswith("ours"):
            continue
        console.print(f"\n[bold]{method.name}[/bold]: {len(method.misses)} queries with misses")
        for query, missing in method.misses.items():
            for name in missing:
                text = photos[name].text if name in photos else ""
                console.print(f"  {query!r} -> {name}   OCR: {_one_line(text) or '(no text)'}", markup=False)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", help="URL of a scratch database (default: an embedded PostgreSQL in a temp dir)"
    )
    parser.add_argument(
        "--corpus", type=Path, default=DEFAULT_CORPUS, help="corpus folder (default: %(default)s)"
    )
    parser.add_argument("--k", type=int, default=10, help="cut-off for recall and MRR (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error("--k must be at least 1")
    console = Console(width=None if sys.stdout.isatty() else 120, soft_wrap=True)
    workdir = Path(tempfile.mkdtemp(prefix="ocr-quality-"))
    embedded = args.database_url is None
    try:
        url = start_default_server(workdir) if embedded else args.database_url
        media_root = workdir / "media"
        media_root.mkdir()
        figures = run_benchmark(url, args.corpus.resolve(), args.k, media_root, console)
    finally:
        if embedded:
            try:
                stop_default_server(workdir)
            except Exception as exc:  # noqa: BLE001 - the figures matter more than a clean stop
                console.print(f"[yellow]could not stop the embedded server: {exc}")
        shutil.rmtree(workdir, ignore_errors=True)
    print_report(figures, console)
    if args.json:
        public = {key: value for key, value in figures.items() if not key.startswith("_")}
        args.json.write_text(json.dumps(public, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        console.print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
