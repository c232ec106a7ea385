"""OCR search quality on the dev corpus: this project against two baselines, on a real PostgreSQL.

What it does, end to end and with the real code paths:

1. an Immich-shaped database (``sql/immich/v3_1_subset.sql``), migrated to our head revision;
2. the corpus's photos imported as one user's library, as Immich stores one (originals and previews);
3. the real sync pipeline (``OcrSync.run_once``, the OCR engine of ``--ocr-engine`` on CPU, by default the
   default engine) over every preview;
4. every query of ``queries.json`` run by four methods, its top ``k`` scored against the judgements.

Methods:

* ``ours (python)``: ``search_ocr(pool, "ocr:<query>", user, tokenizer="python")``, the query tokenised
  in Python (folding, jieba, CJK bigrams, prefix and infix words) and ranked by the stable
  ``immich_search.search_ocr_tsquery`` (exact matches first, then the fuzzy fallback).
* ``ours (sql)``: the same search done entirely in SQL (the stable ``immich_search.search_ocr``: jieba's
  segmentation done in SQL over jieba's dictionary), what a psql user gets.
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
* ``zhparser`` (zhparser servers only, e.g. ``.ci/start-zhparser.sh``): PostgreSQL's own segmentation
  instead of ours, over the same stored OCR text: ``to_tsvector('immich_search.zh', fold_v2(text)) @@
  plainto_tsquery('immich_search.zh', fold_v2(query))`` (the same folding as ours, so only the
  segmentation differs), ranked by ``ts_rank_cd``, the user's photos only. ``zhparser (multi)`` is the
  same with ``zhparser.multi_short`` and ``zhparser.multi_duality`` on (short words inside long ones and
  two-character pieces added, at index and query time alike), zhparser's recall setting. Elsewhere the
  rows read ``n/a``.

Metrics (``immich_search.ranking.metrics``; Manning, Raghavan and Schütze, *Introduction to Information
Retrieval*, 2008, sections 8.3-8.4):

* recall@k: the fraction of a query's relevant photos found in its top k, averaged over queries;
* MRR: the reciprocal rank of the first relevant photo in the top k (0 when none), averaged over queries;
* no-text hits: results in the top k, summed over all queries, that are photos without text (the
  ``neg_*`` photos and any photo whose OCR text is empty): a false hit by construction;
* other hits: results in the top k, summed over all queries, that the judgements do not list: false hits
  where the judgements are complete, so an upper bound on them (how much a method floods);
* fuzzy hits (ours only): results in the top k found only by the fuzzy fallback (score below 0.5), and
  how many of them the judgements list;
* OCR throughput: images per second of the sync pass (decode, OCR and write; model loading excluded),
  and the median time per query of each method. Times are only compared within one run.

Known-item queries: the judged queries are few, so a second table draws queries from the photos' own OCR
text (seeded, so every run draws the same): per photo with text, a word of 5 to 20 letters (what a person
would type) as OCR read it (``word``), the same word with one letter changed, as if OCR had misread it
(``typo``), two to four CJK characters (``cjk``), and four to six CJK characters with one replaced by a
common character (``cjk typo``). A query's relevant photos are those whose OCR text holds the original
(folded, spaces removed), so the table measures the matching and the flooding without hand judgements;
recall@k and other hits as above, per kind. They test the method, not a fit to the judged queries. Two
kinds test precision (issue 16, drawn from a generator of their own so the others keep their queries):
``cjk pair``, two adjacent CJK characters (its other hits count photos that merely hold both characters
apart, e.g. ``包邮`` in "包括 ... 邮局"), and ``glued phrase``, two words joined by ``:``, ``/`` or ``-`` in a
line (``NAME:WORD``, ``LH/RH``, ``PALAIS-ROYAL``) searched as the quoted phrase ``"NAME WORD"``.

Usage::

    .venv/bin/python benchmarks/ocr_search_quality.py                 # embedded PostgreSQL in a temp dir
    .venv/bin/python benchmarks/ocr_search_quality.py --database-url postgresql://.../scratch --json out.json

``--database-url`` must name a scratch database: the corpus is imported into it and indexed (photos
already there are skipped, so a second run over the same database measures no OCR throughput; rows of an
older tokenizer are re-tokenised from their stored lines by the sync, as in production).
"""

from __future__ import annotations

import argparse
import json
import random
import re
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
from rich.console import Console
from rich.table import Table

from immich_search import migrate
from immich_search.db import open_pool
from immich_search.demo import IMAGE_SUFFIXES, IMMICH_MEDIA_LOCATION, ensure_immich_schema, import_library
from immich_search.ocr.registry import DEFAULT_ENGINE, ENGINES, build_engine
from immich_search.ranking.metrics import evaluate
from immich_search.ranking.ocr_search import search_ocr
from immich_search.sync.pipeline import OcrSync
from immich_search.sync.sources import MediaFileSource
from immich_search.textfold import fold
from immich_search.tokens import CJK_CLASS, WORD_CLASS

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "corpus" / "dev"
BENCH_EMAIL = "ocr-quality-bench@immich-search.local"
NOT_AVAILABLE = "n/a (pg_trgm not installed on this server)"
NO_ZHPARSER = "n/a (zhparser not installed on this server)"
ZHPARSER_METHODS = {"zhparser": (), "zhparser (multi)": ("zhparser.multi_short", "zhparser.multi_duality")}
"""The zhparser rows: name -> the boolean ``zhparser.*`` settings turned on (zhparser README, CONFIGURATION)."""
ZHPARSER_SQL = """
SELECT a."originalFileName"
FROM immich_search.ocr o JOIN public.asset a ON a.id = o.asset_id,
     plainto_tsquery('immich_search.zh', immich_search.fold_v2(%(query)s)) AS q,
     to_tsvector('immich_search.zh', immich_search.fold_v2(o.text)) AS v
WHERE a."ownerId" = %(user)s AND v @@ q
ORDER BY ts_rank_cd(v, q) DESC, a."originalFileName"
LIMIT %(k)s
"""
COMMON_HAN = "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生"
"""Frequent Han characters (the head of any frequency list), the misreads of ``cjk typo`` queries."""
FUZZY_SCORE_BELOW = 0.5
"""Scores of fuzzy-only hits are below this (immich_search.search_ocr_tsquery_v3 puts exact ones above)."""


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
    other_hits: int = 0
    fuzzy_hits: int | None = None
    fuzzy_relevant: int | None = None
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
            "other_hits": self.other_hits,
            "fuzzy_hits": self.fuzzy_hits,
            "fuzzy_relevant": self.fuzzy_relevant,
            "median_query_ms": round(self.median_query_ms, 2),
            "misses": self.misses,
        }


def measure(
    name: str,
    run_query: Callable[[str], list[str]],
    queries: list[dict],
    k: int,
    no_text: set[str],
    fuzzy: Callable[[str], set[str]] | None = None,
) -> MethodResult:
    """Evaluate one method: recall@k, MRR, false hits on text-free photos, other hits and the median time.

    ``fuzzy``, when given, returns the documents of a query's top k that only the fuzzy fallback found.
    """
    timings: list[float] = []
    results: dict[str, list[str]] = {}

    def timed(query: str) -> list[str]:
        started = time.perf_counter()
        ranked = list(run_query(query))[:k]
        timings.append((time.perf_counter() - started) * 1000)
        results[query] = ranked
        return ranked

    recall, mrr, misses = evaluate(timed, queries, k)
    relevant = {item["query"]: set(item["relevant"]) for item in queries}
    hits = [f"{query} -> {doc}" for query, ranked in results.items() for doc in ranked if doc in no_text]
    other = sum(len(set(ranked) - relevant[query]) for query, ranked in results.items())
    result = MethodResult(
        name,
        recall=recall,
        mrr=mrr,
        no_text_hits=len(hits),
        no_text_hit_list=hits,
        other_hits=other,
        misses=misses,
        median_query_ms=statistics.median(timings),
    )
    if fuzzy is not None:
        found = {query: fuzzy(query) for query in results}
        result.fuzzy_hits = sum(len(docs) for docs in found.values())
        result.fuzzy_relevant = sum(len(docs & relevant[query]) for query, docs in found.items())
    return result


def load_photos(conn: psycopg.Connection, user_id: str) -> list[Photo]:
    """Every photo of the benchmark user with its stored OCR text ('' when it has no OCR row)."""
    rows = conn.execute(
        "SELECT a.id, a.\"originalFileName\", coalesce(o.text, ''), coalesce(o.lines, '[]'::jsonb) "
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


def known_item_queries(photos: list[Photo], seed: int = 6) -> dict[str, list[dict]]:
    """Draw ``word``, ``typo`` and ``cjk`` queries from the photos' OCR lines (see the module docstring).

    Returns:
        ``{kind: [{"query": str, "relevant": [file names]}]}``, at most one query per photo and kind.
    """
    rng = random.Random(seed)
    # The kinds added later draw from their own generator, so the earlier kinds keep their queries.
    later = random.Random(seed + 1)
    squashed = {p.name: fold(p.text).replace(" ", "").replace("\n", "") for p in photos if p.has_text}
    drawn: dict[str, list[dict]] = {
        "word": [], "typo": [], "cjk": [], "cjk typo": [], "cjk pair": [], "glued phrase": []
    }  # fmt: skip

    def add(kind: str, query: str, original: str) -> None:
        needle = fold(original)
        relevant = sorted(name for name, text in squashed.items() if needle in text)
        if relevant:
            drawn[kind].append({"query": query, "relevant": relevant})

    for photo in photos:
        if not photo.has_text:
            continue
        words = sorted(
            {w for w in re.findall(f"[{WORD_CLASS}]+", " ".join(photo.lines)) if 5 <= len(w) <= 20 and not w.isdigit()}
        )
        if words:
            word = rng.choice(words)
            add("word", word, word)
            at = rng.randrange(1, len(word))
            letter = rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c != word[at].lower()])
            add("typo", word[:at] + letter + word[at + 1 :], word)
        runs = sorted({r for r in re.findall(f"[{CJK_CLASS}]+", " ".join(photo.lines)) if len(r) >= 2})
        if runs:
            run = rng.choice(runs)
            length = rng.randint(2, min(4, len(run)))
            start = rng.randrange(0, len(run) - length + 1)
            add("cjk", run[start : start + length], run[start : start + length])
        long_runs = [r for r in runs if len(r) >= 4]
        if long_runs:
            run = rng.choice(long_runs)
            length = rng.randint(4, min(6, len(run)))
            start = rng.randrange(0, len(run) - length + 1)
            original = run[start : start + length]
            at = rng.randrange(length)
            common = rng.choice([c for c in COMMON_HAN if c != original[at]])
            add("cjk typo", original[:at] + common + original[at + 1 :], original)
        if runs:
            run = later.choice(runs)
            start = later.randrange(0, len(run) - 1)
            add("cjk pair", run[start : start + 2], run[start : start + 2])
        # Whole words only: the lookahead finds overlapping pairs (A-B and B-C in A-B-C), the lookbehind keeps
        # it from starting inside a word (never "H RH" out of "LH/RH": nobody types half a word).
        pairs = re.findall(
            f"(?<![{WORD_CLASS}])(?=([{WORD_CLASS}]+[:/-][{WORD_CLASS}]+)(?![{WORD_CLASS}]))", " ".join(photo.lines)
        )
        glued = sorted(set(pairs))
        glued = [g for g in glued if not re.fullmatch(r"[0-9:/-]+", g)]  # dates and times are no phrase
        if glued:
            original = later.choice(glued)
            add("glued phrase", '"' + re.sub("[:/-]", " ", original) + '"', original)
    return drawn


def has_pg_trgm(conn: psycopg.Connection) -> bool:
    """Whether pg_trgm is installed in the database (its ``%>>`` operator is needed)."""
    return conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").fetchone() is not None


def immich_native_search(conn: psycopg.Connection, photos: list[Photo], k: int) -> Callable[[str], list[str]]:
    """Baseline: Immich's OCR match (``%>>`` on tokenised text) in SQL, over a temporary table.

    The table mirrors Immich's ``ocr_search``: one row per photo, its boxes' text joined by spaces and
    tokenised by :func:`immich_tokenize`. Matches are listed by file name (Immich has no relevance order).
    """
    unaccent = (
        "public.f_unaccent" if conn.execute("SELECT to_regprocedure('public.f_unaccent(text)')").fetchone()[0] else ""
    )
    conn.execute("CREATE TEMP TABLE immich_ocr_search (asset_id uuid PRIMARY KEY, name text, text text)")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO immich_ocr_search VALUES (%s, %s, %s)",
            [(p.asset_id, p.name, " ".join(immich_tokenize(" ".join(p.lines)))) for p in photos if p.lines],
        )
    conn.commit()
    sql = f"SELECT name FROM immich_ocr_search WHERE {unaccent}(text) %%>> {unaccent}(%s) ORDER BY name LIMIT %s"

    def run(query: str) -> list[str]:
        rows = conn.execute(sql, (" ".join(immich_tokenize(query)), k)).fetchall()
        conn.commit()
        return [name for (name,) in rows]

    return run


def uses_zhparser(conn: psycopg.Connection) -> bool:
    """Whether ``immich_search.zh`` is on zhparser here (the migrations record it in our settings)."""
    row = conn.execute("SELECT value FROM immich_search.setting WHERE key = 'text_search_parser'").fetchone()
    conn.commit()
    return row is not None and row[0] == "zhparser"


def zhparser_search(url: str, user_id: str, k: int, settings: tuple[str, ...]) -> Callable[[str], list[str]]:
    """Ranking by zhparser's segmentation (``ZHPARSER_SQL``) on its own connection, ``settings`` turned on.

    The connection stays open for the process (the benchmark's lifetime): settings are per session.
    """
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SELECT to_tsvector('immich_search.zh', '')")  # loads zhparser, which defines its settings
    for name in settings:
        conn.execute(f"SET {name} = on")

    def run(query: str) -> list[str]:
        return [name for (name,) in conn.execute(ZHPARSER_SQL, {"query": query, "user": user_id, "k": k})]

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


def run_benchmark(
    url: str, corpus: Path, k: int, media_root: Path, console: Console, engine_name: str = DEFAULT_ENGINE
) -> dict:
    """Build, index and query the library in the database at ``url``; return the figures."""
    queries = json.loads((corpus / "queries.json").read_text(encoding="utf-8"))
    images = sorted(p for p in (corpus / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    console.print(f"corpus {corpus}: {len(images)} photos, {len(queries)} queries, k = {k}")
    ensure_immich_schema(url)
    migrate.upgrade(url)
    user_id = import_library(url, images, media_root, email=BENCH_EMAIL)

    started = time.perf_counter()
    engine = build_engine(engine_name)
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

            def fuzzy_only(tokenizer: str) -> Callable[[str], set[str]]:
                def run(query: str) -> set[str]:
                    hits = search_ocr(pool, "ocr:" + query, user_id, limit=k, tokenizer=tokenizer)
                    return {hit.original_file_name for hit in hits if hit.score < FUZZY_SCORE_BELOW}

                return run

            ours("python")(queries[0]["query"])  # warm up: jieba loads its dictionary on first use
            methods = [
                measure("ours (python)", ours("python"), queries, k, no_text, fuzzy_only("python")),
                measure("ours (sql)", ours("sql"), queries, k, no_text, fuzzy_only("sql")),
                measure("plain substring", substring_search(photos, k), queries, k, no_text),
            ]
            runners: dict[str, Callable[[str], list[str]]] = {
                "ours (python)": ours("python"),
                "ours (sql)": ours("sql"),
                "plain substring": substring_search(photos, k),
            }
            if trigram:
                runners["Immich native"] = immich_native_search(conn, photos, k)
                methods.append(measure("Immich native", runners["Immich native"], queries, k, no_text))
            else:
                methods.append(MethodResult("Immich native", available=False, note=NOT_AVAILABLE))
            zhparser = uses_zhparser(conn)
            for name, settings in ZHPARSER_METHODS.items():
                if zhparser:
                    runners[name] = zhparser_search(url, user_id, k, settings)
                    methods.append(measure(name, runners[name], queries, k, no_text))
                else:
                    methods.append(MethodResult(name, available=False, note=NO_ZHPARSER))
            known = {
                kind: {name: measure(name, run, drawn, k, no_text) for name, run in runners.items()}
                for kind, drawn in known_item_queries(photos).items()
                if drawn
            }
            drawn_counts = {kind: len(drawn) for kind, drawn in known_item_queries(photos).items()}

    return {
        "corpus": str(corpus),
        "k": k,
        "server_version": server_version,
        "pg_trgm": trigram,
        "zhparser": zhparser,
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
        "known_item": {
            kind: {"queries": drawn_counts[kind], "methods": {name: m.as_json() for name, m in by_method.items()}}
            for kind, by_method in known.items()
        },
        "_methods": methods,
        "_known": known,
        "_known_counts": drawn_counts,
        "_photos": {p.name: p for p in photos},
    }


def _one_line(text: str, width: int = 90) -> str:
    flat = " | ".join(part for part in text.splitlines() if part.strip())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def print_report(figures: dict, console: Console) -> None:
    """Print the comparison table, the OCR throughput and the misses of our two query paths."""
    k = figures["k"]
    table = Table(
        title=f"OCR search quality, {figures['queries']} queries, {figures['photos']} photos "
        f"(PostgreSQL {figures['server_version']})"
    )
    table.add_column("method")
    table.add_column(f"recall@{k}", justify="right")
    table.add_column(f"MRR@{k}", justify="right")
    table.add_column(f"no-text hits@{k}", justify="right")
    table.add_column(f"other hits@{k}", justify="right")
    table.add_column("fuzzy hits (judged relevant)", justify="right")
    table.add_column("median ms/query", justify="right")
    for method in figures["_methods"]:
        if method.available:
            fuzzy = "" if method.fuzzy_hits is None else f"{method.fuzzy_hits} ({method.fuzzy_relevant})"
            table.add_row(
                method.name,
                f"{method.recall:.3f}",
                f"{method.mrr:.3f}",
                str(method.no_text_hits),
                str(method.other_hits),
                fuzzy,
                f"{method.median_query_ms:.1f}",
            )
        else:
            table.add_row(method.name, method.note, "", "", "", "", "")
    console.print(table)
    known = figures["_known"]
    if known:
        kinds = list(known)
        table = Table(title=f"Known-item queries drawn from the OCR text (recall@{k} / other hits@{k})")
        table.add_column("method")
        for kind in kinds:
            table.add_column(f"{kind} ({figures['_known_counts'][kind]} queries)", justify="right")
        for name in known[kinds[0]]:
            table.add_row(name, *(f"{known[kind][name].recall:.3f} / {known[kind][name].other_hits}" for kind in kinds))
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
            console.print(
                f"\n[bold]{method.name}[/bold]: hits on photos without text: " + "; ".join(method.no_text_hit_list)
            )
        if not method.name.startswith(("ours", "zhparser")):
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
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="corpus folder (default: %(default)s)")
    parser.add_argument("--k", type=int, default=10, help="cut-off for recall and MRR (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--ocr-engine", choices=list(ENGINES), default=DEFAULT_ENGINE, help="OCR engine (default: %(default)s)"
    )
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
        figures = run_benchmark(url, args.corpus.resolve(), args.k, media_root, console, args.ocr_engine)
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
