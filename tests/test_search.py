"""OCR search: ranking, phrases, exclusions, snippets and Immich's visibility rules, on both query paths."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg
import pytest

from immich_search import immich_rows
from immich_search.db import open_pool
from immich_search.ranking.ocr_search import SearchHit, search_ocr
from tests.conftest import scratch_database
from tests.fake_immich import add_asset, add_four_users

TOKENIZERS = ["python", "sql", "psql"]


@dataclass
class Library:
    url: str
    pool: object
    users: dict[str, str]
    assets: dict[str, str]  # name -> asset id

    @property
    def names(self) -> dict[str, str]:
        return {asset_id: name for name, asset_id in self.assets.items()}


# name: (owner, lines, options)
PHOTOS = {
    "exact.jpg": ("alice", ["SALE today"], {}),
    "prefix.jpg": ("alice", ["SALESMAN wanted"], {}),
    "phrase.jpg": ("alice", ["WILD LIFE CROSSING"], {}),
    "words.jpg": ("alice", ["life is", "not so wild"], {}),
    "invoice.jpg": ("alice", ["增值税电子普通发票", "发票代码 011002300111", "合计 ¥ 128.00"], {}),
    "menu.jpg": ("alice", ["牛肉麵 120", "水餃 10顆 80"], {}),
    "receipt.jpg": ("alice", ["Delphin Apotheke", "Detmolder Straße 8", "Summe EUR 19,90"], {}),
    "musee.jpg": ("alice", ["MUSÉE DU LOUVRE"], {}),
    "locked.jpg": ("alice", ["SALE locked"], {"visibility": "locked"}),
    "archived.jpg": ("alice", ["SALE archived"], {"visibility": "archive"}),
    "hidden.jpg": ("alice", ["SALE hidden"], {"visibility": "hidden"}),
    "trashed.jpg": ("alice", ["SALE trashed"], {"trashed": True}),
    "bob.jpg": ("bob", ["SALE bob"], {}),
    "bob_archived.jpg": ("bob", ["SALE bob archived"], {"visibility": "archive"}),
    "bob_locked.jpg": ("bob", ["SALE bob locked"], {"visibility": "locked"}),
    "carol.jpg": ("carol", ["SALE carol"], {}),
    "dave.jpg": ("dave", ["SALE dave"], {}),
}


@pytest.fixture(scope="module")
def library(server, migrated_template):
    """Four users and their photos with OCR rows (written as sync writes them, without running OCR).

    bob shares with alice in her timeline; carol shares with alice but not in her timeline; dave shares
    nothing. Nobody shares with bob. dave and carol share an album each with alice.
    """
    with scratch_database(server, migrated_template) as url:
        with psycopg.connect(url) as conn:
            users = add_four_users(conn)
            assets = {
                photo: add_asset(conn, users[owner], photo, lines, age_days=index + 1, **options)
                for index, (photo, (owner, lines, options)) in enumerate(PHOTOS.items())
            }
            # Albums shared with alice: as in Immich's smart search, they do not widen her search.
            immich_rows.insert_album(conn, users["dave"], "trip", [assets["dave.jpg"]], {users["alice"]: "viewer"})
            immich_rows.insert_album(conn, users["carol"], "shop", [assets["carol.jpg"]], {users["alice"]: "editor"})
        pool = open_pool(url)
        yield Library(url, pool, users, assets)
        pool.close()


def search(
    lib: Library,
    text: str,
    user: str = "alice",
    tokenizer: str = "python",
    *,
    limit: int = 50,
    include_locked: bool = False,
) -> list[SearchHit]:
    user_id = lib.users[user] if user in lib.users else user
    if tokenizer == "psql":
        with psycopg.connect(lib.url) as conn:
            rows = conn.execute(
                "SELECT * FROM immich_search.search_ocr(%s, %s, %s, include_locked => %s)",
                (text, user_id, limit, include_locked),
            ).fetchall()
        return [SearchHit(str(a), n, float(s), sn) for a, n, s, sn in rows]
    return search_ocr(lib.pool, text, user_id, limit=limit, include_locked=include_locked, tokenizer=tokenizer)


def names(lib: Library, hits: list[SearchHit]) -> list[str]:
    return [hit.original_file_name for hit in hits]


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_exact_word_ranks_above_prefix_match(library, tokenizer):
    hits = search(library, "ocr:sale", tokenizer=tokenizer)
    found = names(library, hits)
    assert "exact.jpg" in found and "prefix.jpg" in found, found
    assert found.index("exact.jpg") < found.index("prefix.jpg")
    assert found[-1] == "prefix.jpg", "every exact match ranks above the prefix-only one"
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 < s <= 1.0 for s in scores)


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_phrase(library, tokenizer):
    assert names(library, search(library, 'ocr:"wild life"', tokenizer=tokenizer)) == ["phrase.jpg"]
    both = names(library, search(library, "ocr:wild life", tokenizer=tokenizer))
    assert both == ["phrase.jpg", "words.jpg"], "adjacent words rank first"
    assert names(library, search(library, "wildlife", tokenizer=tokenizer)) == ["phrase.jpg"], "glued words"


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_exclusion(library, tokenizer):
    found = names(library, search(library, "ocr:sale -today", tokenizer=tokenizer))
    assert "exact.jpg" not in found
    assert "prefix.jpg" in found and "archived.jpg" in found
    found = names(library, search(library, 'wild -"not so"', tokenizer=tokenizer))
    assert found == ["phrase.jpg"]


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_chinese_and_folding(library, tokenizer):
    assert names(library, search(library, "ocr:发票", tokenizer=tokenizer)) == ["invoice.jpg"]
    assert names(library, search(library, "增值税", tokenizer=tokenizer)) == ["invoice.jpg"]
    assert names(library, search(library, "ocr:水饺", tokenizer=tokenizer)) == ["menu.jpg"]  # 水餃 in the photo
    assert names(library, search(library, "牛肉面", tokenizer=tokenizer)) == ["menu.jpg"]
    assert names(library, search(library, "ＳＵＭＭＥ", tokenizer=tokenizer)) == ["receipt.jpg"]
    assert names(library, search(library, "musee", tokenizer=tokenizer)) == ["musee.jpg"]
    assert names(library, search(library, "strasse", tokenizer=tokenizer)) == ["receipt.jpg"]
    assert search(library, "发票金额不存在的词", tokenizer=tokenizer) == []


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_snippets(library, tokenizer):
    (hit,) = search(library, "ocr:summe", tokenizer=tokenizer)
    assert hit.snippet == "Summe EUR 19,90"
    (hit,) = search(library, "straße", tokenizer=tokenizer)
    assert hit.snippet == "Detmolder Straße 8"
    (hit,) = search(library, "发票", tokenizer=tokenizer)
    assert hit.snippet == "增值税电子普通发票 … 发票代码 011002300111"
    (hit,) = search(library, "delphin summe", tokenizer=tokenizer)
    assert hit.snippet == "Delphin Apotheke … Summe EUR 19,90"


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_visibility(library, tokenizer):
    sale = "SALE"
    alice = set(names(library, search(library, sale, "alice", tokenizer)))
    assert alice == {"exact.jpg", "prefix.jpg", "archived.jpg", "bob.jpg"}, (
        "own timeline and archive, a partner's timeline shared in timeline; never locked, hidden, trashed, "
        "a partner's archive, a partner not in timeline, a stranger, an album shared with her"
    )
    alice_locked = set(names(library, search(library, sale, "alice", tokenizer, include_locked=True)))
    assert alice_locked == alice | {"locked.jpg"}
    bob = set(names(library, search(library, sale, "bob", tokenizer, include_locked=True)))
    assert bob == {"bob.jpg", "bob_archived.jpg", "bob_locked.jpg"}, "nobody shares with bob"
    assert set(names(library, search(library, sale, "bob", tokenizer))) == {"bob.jpg", "bob_archived.jpg"}
    assert set(names(library, search(library, sale, "carol", tokenizer))) == {"carol.jpg"}
    assert set(names(library, search(library, sale, "dave", tokenizer, include_locked=True))) == {"dave.jpg"}
    nobody = str(uuid.uuid4())
    assert search(library, sale, nobody, tokenizer) == []


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_limit_offset_and_stable_ties(library, tokenizer):
    everything = search(library, "sale", tokenizer=tokenizer, limit=50)
    assert len(everything) == 4
    pages = []
    for offset in range(4):
        if tokenizer == "psql":
            with psycopg.connect(library.url) as conn:
                rows = conn.execute(
                    "SELECT asset_id FROM immich_search.search_ocr('sale', %s, 1, %s)", (library.users["alice"], offset)
                ).fetchall()
            pages += [str(r[0]) for r in rows]
        else:
            pages += [
                h.asset_id
                for h in search_ocr(
                    library.pool, "sale", library.users["alice"], limit=1, offset=offset, tokenizer=tokenizer
                )
            ]
    assert pages == [hit.asset_id for hit in everything]
    assert [h.asset_id for h in search(library, "sale", tokenizer=tokenizer)] == [h.asset_id for h in everything]


def test_python_and_sql_tokenizers_agree_on_results(library):
    for text in ["sale", "wild life", '"wild life"', "发票", "水餃", "summe -delphin", "musée", "ocr:straße"]:
        python = [(h.asset_id, round(h.score, 5), h.snippet) for h in search(library, text, tokenizer="python")]
        sql = [(h.asset_id, round(h.score, 5), h.snippet) for h in search(library, text, tokenizer="sql")]
        assert python == sql, text


MALFORMED = [
    '"',
    "-",
    "ocr:",
    "'; drop table x; --",
    "x" * 10_000,
    "发票" * 1_000,
    "wild 发票 " * 100,
    "😀",
    "😀 sale",
    '"""',
    "---",
    "ocr:-",
    "clip:",
    "\\",
    "a:b:c",
    "( ) & | ! <->",
    "'sale':*",
    "sale & !today",
    "\x01\x02",
    "\u200b",
    " \t\n",
    "ＯＣＲ：",
    'ocr:"',
    '-"sale"',
    "'",
    "''",
]


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_malformed_queries_return_lists(library, tokenizer):
    for text in MALFORMED:
        hits = search(library, text, tokenizer=tokenizer)
        assert isinstance(hits, list), text
        for hit in hits:
            assert hit.asset_id in library.names
    # Query syntax characters are plain text, never tsquery operators.
    assert names(library, search(library, "sale & !today", tokenizer=tokenizer)) == ["exact.jpg"]
    assert search(library, "'; drop table x; --", tokenizer=tokenizer) == []
    with psycopg.connect(library.url) as conn:
        assert conn.execute("SELECT count(*) FROM public.asset").fetchone()[0] == len(PHOTOS)


def test_unknown_tokenizer_is_rejected(library):
    with pytest.raises(ValueError, match="tokenizer"):
        search_ocr(library.pool, "sale", library.users["alice"], tokenizer="zhparser")


def test_hits_as_json(library):
    (hit,) = search(library, "summe")
    assert hit.as_json() == {
        "asset_id": library.assets["receipt.jpg"],
        "original_file_name": "receipt.jpg",
        "score": hit.score,
        "snippet": "Summe EUR 19,90",
    }


def test_sql_tokenizer_is_never_run_as_a_prepared_statement(library):
    """No server-side prepared statement (search_ocr_v2 builds its tsqueries once per call anyway, see
    tests/test_fuzzy.py; under a generic plan search_ocr_v1 rebuilt them for every row)."""
    with open_pool(library.url, min_size=1, max_size=1) as pool:
        for _ in range(12):  # psycopg prepares a query after 5 executions by default
            search_ocr(pool, "sale", library.users["alice"], tokenizer="sql")
        with pool.connection() as conn:
            prepared = conn.execute(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%immich_search.search_ocr(%'"
            ).fetchone()[0]
    assert prepared == 0
