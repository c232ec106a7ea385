"""The fuzzy fallback (one misread character), infix matching and the v2 search functions, on real servers.

Both query paths (Python, SQL) and psql's stable name must find the same photos; fuzzy hits always rank
below exact ones; words two edits away, numbers and short words never match fuzzily.
"""

from __future__ import annotations

import re

import psycopg
import pytest
from psycopg import sql

from immich_search import migrate
from immich_search.db import open_pool
from immich_search.ranking.ocr_search import SearchHit, search_ocr
from immich_search.textfold import fold
from immich_search.tokens import FUZZY_MIN_LENGTH, OCR_CONFUSIONS, WORD_CLASS
from tests.conftest import scratch_database
from tests.fake_immich import add_asset, add_user

TOKENIZERS = ["python", "sql", "psql"]

PHOTOS = {
    "paderborn.jpg": ["33102 Paderborn", "Tel.:05251/56677"],
    "paderbom.jpg": ["33102 PADERBOM"],  # rn read as m
    "paderboin.jpg": ["Paderboin Dom"],  # r read as i
    "padrebom.jpg": ["Padrebom"],  # two edits: never found for paderborn
    "strasse.jpg": ["Detmolder Straße 8"],
    "strabe.jpg": ["Alina Schunk", "Detmolder StraBe 8"],  # ß read as B
    "phone.jpg": ["Tel. 05252/56677"],  # one digit away from 05251: another number
    "sole.jpg": ["SOLE", "Cleanhandswithsoap"],
    "sale.jpg": ["SALE 50%"],
    "menu.jpg": ["牛肉麵 120", "水餃 80"],
    "poster.jpg": ["春上", "低至", "季新", "春季美衣薄款外套全新上市"],  # a two-column title read row-wise
    "lottery.jpg": ["防物抽奖 精装礼品"],  # 购物抽奖 with 购 misread
}


@pytest.fixture(scope="module")
def library(server, migrated_template):
    with scratch_database(server, migrated_template) as url:
        with psycopg.connect(url) as conn:
            user = add_user(conn, "fuzzy@example.com")
            assets = {
                photo: add_asset(conn, user, photo, lines, age_days=i + 1)
                for i, (photo, lines) in enumerate(PHOTOS.items())
            }
        pool = open_pool(url)
        yield {"url": url, "pool": pool, "user": user, "assets": assets}
        pool.close()


def search(lib, text: str, tokenizer: str, *, limit: int = 50, offset: int = 0) -> list[SearchHit]:
    if tokenizer == "psql":
        with psycopg.connect(lib["url"]) as conn:
            rows = conn.execute(
                "SELECT * FROM immich_search.search_ocr(%s, %s, %s, %s)", (text, lib["user"], limit, offset)
            ).fetchall()
        return [SearchHit(str(a), n, float(s), sn) for a, n, s, sn in rows]
    return search_ocr(lib["pool"], text, lib["user"], limit=limit, offset=offset, tokenizer=tokenizer)


def names(hits: list[SearchHit]) -> list[str]:
    return [hit.original_file_name for hit in hits]


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_fuzzy_hits_rank_below_every_exact_hit(library, tokenizer):
    hits = search(library, "ocr:paderborn", tokenizer)
    assert names(hits) == ["paderborn.jpg", "paderboin.jpg", "paderbom.jpg"] or names(hits) == [
        "paderborn.jpg",
        "paderbom.jpg",
        "paderboin.jpg",
    ]
    exact, *fuzzy = hits
    assert 0.5 <= exact.score <= 1.0
    assert all(0.0 < hit.score < 0.5 for hit in fuzzy)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_sharp_s_read_as_b(library, tokenizer):
    hits = search(library, "straße", tokenizer)
    assert names(hits) == ["strasse.jpg", "strabe.jpg"]
    assert hits[1].snippet == "Detmolder StraBe 8", "the fuzzy hit's snippet shows the line with the near miss"
    assert names(search(library, "STRASSE", tokenizer)) == ["strasse.jpg", "strabe.jpg"]


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_fuzzy_phrase_and_words(library, tokenizer):
    assert names(search(library, '"detmolder strasse"', tokenizer)) == ["strasse.jpg", "strabe.jpg"]
    assert names(search(library, "33102 paderborn", tokenizer)) == ["paderborn.jpg", "paderbom.jpg"]


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_no_flood(library, tokenizer):
    assert "padrebom.jpg" not in names(search(library, "paderborn", tokenizer)), "two edits away"
    assert names(search(library, "05251", tokenizer)) == ["paderborn.jpg"], "numbers are never fuzzy"
    assert names(search(library, "sale", tokenizer)) == ["sale.jpg"], "four letters: never fuzzy"
    assert search(library, "牛肉饭", tokenizer) == [], "no fuzzy matching of CJK runs under four characters"
    assert search(library, "购买抽奖", tokenizer) == [], "two characters off"


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_one_misread_cjk_character(library, tokenizer):
    (hit,) = search(library, "购物抽奖", tokenizer)
    assert hit.original_file_name == "lottery.jpg" and hit.score < 0.5
    assert hit.snippet == "防物抽奖 精装礼品"
    (hit,) = search(library, "牛肉麵條", tokenizer)
    assert hit.original_file_name == "menu.jpg" and hit.score < 0.5, "牛肉麵 and one character more"


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_dropped_spaces_and_infix(library, tokenizer):
    for query in ["clean hands", "hands", "soap", "hands with soap", "cleanhandswithsoap"]:
        assert names(search(library, query, tokenizer)) == ["sole.jpg"], query
    assert search(library, "oap", tokenizer) == []


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_two_column_title(library, tokenizer):
    """春季上新 read row-wise as 春上 | 季新: jieba's words (春季, 上, 新) each match somewhere, on both paths."""
    assert names(search(library, "春季上新", tokenizer)) == ["poster.jpg"]
    assert search(library, '"春季上新"', tokenizer) == [], "quoted, the run must appear as it is"


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_paging_across_the_tiers(library, tokenizer):
    everything = [hit.asset_id for hit in search(library, "paderborn", tokenizer)]
    pages = [
        hit.asset_id for offset in range(4) for hit in search(library, "paderborn", tokenizer, limit=1, offset=offset)
    ]
    assert pages == everything


def test_paths_agree_on_results(library):
    queries = [
        "paderborn",
        "straße",
        '"detmolder strasse"',
        "33102 -paderborn",
        "hands",
        "春季上新",
        "sole",
        "购物抽奖",
    ]
    for text in queries:
        python = [(h.asset_id, round(h.score, 5), h.snippet) for h in search(library, text, "python")]
        in_sql = [(h.asset_id, round(h.score, 5), h.snippet) for h in search(library, text, "sql")]
        assert python == in_sql, text


def words_of(lines: list[str]) -> set[str]:
    return set(re.findall(f"[{WORD_CLASS}]+", fold(" ".join(lines)).replace("'", "")))


def near_miss(query: str, word: str) -> bool:
    """One edit, or one OCR confusion (OCR_CONFUSIONS) either way; a pair may also become any one letter."""
    from tests.test_textfold_tokens import one_edit

    if one_edit(query, word):
        return True
    for pair, glyph in OCR_CONFUSIONS.items():
        for start in (m.start() for m in re.finditer(f"(?={pair})", query)):
            rest = query[:start] + query[start + 2 :]
            if word == rest or (len(word) == len(rest) + 1 and word[:start] + word[start + 1 :] == rest):
                return True
        if glyph != "ß" and any(word == query[:i] + pair + query[i + 1 :] for i, c in enumerate(query) if c == glyph):
            return True
    return False


def test_every_fuzzy_hit_holds_a_near_miss(library):
    """Whatever a one-word query finds only fuzzily holds a word one edit away (or an OCR confusion)."""
    vocabulary = {word for lines in PHOTOS.values() for word in words_of(lines) if len(word) >= FUZZY_MIN_LENGTH}
    for query in sorted(vocabulary):
        for hit in search(library, query, "sql"):
            if hit.score >= 0.5:
                continue
            words = words_of(PHOTOS[hit.original_file_name])
            assert any(near_miss(query, word) for word in words), (query, hit)


def test_tsqueries_are_built_once_per_call_under_a_generic_plan(library):
    """A prepared statement with a generic plan must not rebuild the tsqueries for every row."""
    with psycopg.connect(library["url"]) as conn:
        conn.execute("SET track_functions = 'all'")
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute("PREPARE s(text, uuid) AS SELECT * FROM immich_search.search_ocr($1, $2, 50)")
        for _ in range(6):
            rows = conn.execute(sql.SQL("EXECUTE s('paderborn', {})").format(library["user"])).fetchall()
            assert len(rows) == 3
        calls = dict(
            conn.execute(
                "SELECT funcname, calls FROM pg_stat_xact_user_functions WHERE schemaname = 'immich_search' "
                "AND funcname IN ('ocr_tsquery_v4', 'fuzzy_tsquery_v2', 'search_ocr_tsquery_v3')"
            ).fetchall()
        )
    # Per call: the loose and strict queries once each; the fuzzy query once for the candidates and once
    # more for the snippets of the page's fuzzy hits (never per row).
    assert calls == {"ocr_tsquery_v4": 12, "fuzzy_tsquery_v2": 12, "search_ocr_tsquery_v3": 6}


def test_stable_names_point_at_the_newest_versions(library):
    with psycopg.connect(library["url"]) as conn:
        for name, newest in (("search_ocr", "_v5("), ("search_ocr_tsquery", "_v3("), ("ocr_tsquery", "_v5(")):
            body = conn.execute(
                "SELECT pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'immich_search' AND p.proname = %s",
                (name,),
            ).fetchone()[0]
            assert newest in body, name


FUNCTIONS = """
SELECT p.oid::regprocedure::text || ' ' || md5(pg_get_functiondef(p.oid))
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'immich_search'
UNION ALL
SELECT 'rel ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'immich_search'
UNION ALL
SELECT 'setting ' || key FROM immich_search.setting
ORDER BY 1
"""


def test_revision_0003_down_restores_revision_0002(immich_db):
    migrate.upgrade(immich_db, "0002")
    with psycopg.connect(immich_db) as conn:
        before = [row[0] for row in conn.execute(FUNCTIONS)]
    migrate.upgrade(immich_db)
    migrate.downgrade(immich_db, "0002")
    with psycopg.connect(immich_db) as conn:
        assert [row[0] for row in conn.execute(FUNCTIONS)] == before
