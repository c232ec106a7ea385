"""Folding and index-time tokens: Python's fold() and SQL's fold_v1() agree; tokens survive ::tsvector."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from immich_search.sqlfiles import read_sql
from immich_search.textfold import fold, fold_sql, fold_table
from immich_search.tokens import (
    MAX_POSITION,
    Token,
    document_tokens,
    quote_lexeme,
    segments,
    tsvector_literal,
)

REPO = Path(__file__).resolve().parents[1]
DB_SETTINGS = settings(max_examples=150, deadline=None)


# ---------------------------------------------------------------------------------------------------------
# fold()


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("ＡＢＣ１２３", "abc123"),  # full-width forms (NFKC)
        ("ＯＣＲ：发票", "ocr:发票"),
        ("\u3000", " "),  # ideographic space
        ("Hello WORLD", "hello world"),
        ("musée", "musee"),
        ("MUSÉE", "musee"),
        ("Crème Brûlée", "creme brulee"),
        ("Ångström", "angstrom"),
        ("naïve façade", "naive facade"),
        ("Straße", "strasse"),
        ("STRASSE", "strasse"),
        ("ẞ", "ss"),  # capital sharp s
        ("水餃", "水饺"),
        ("蔥油餅", "葱油饼"),
        ("牛肉麵", "牛肉面"),
        ("發票", "发票"),
        ("发票", "发票"),  # simplified stays
        ("ﬁ", "fi"),  # ligature (NFKC)
        ("①②", "12"),
        ("Ⅻ", "xii"),
        ("ΑΘΗΝΑ", "αθηνα"),
        ("Ελλάδα", "ελλαδα"),
        ("МОСКВА", "москва"),
        ("Ёлка", "елка"),
        ("Việt Nam", "viet nam"),
        ("", ""),
        ("123 !?", "123 !?"),
        ("😀", "😀"),
    ],
)
def test_fold_cases(raw, folded):
    assert fold(raw) == folded


def test_fold_is_idempotent_on_examples():
    for text in ["Straße 水餃 ＡＢＣ musée", "ΣΊΣΥΦΟΣ", "蔥油餅 İstanbul"]:
        assert fold(fold(text)) == fold(text)


def test_fold_table_is_one_to_one_and_resolved():
    table = fold_table()
    assert table, "the fold table must not be empty"
    for source, target in table.items():
        assert len(source) == 1 and len(target) == 1
        assert source != target
        # Chains are resolved: applying the table once is enough, as translate() does.
        assert target not in table, (source, target)


def test_committed_fold_sql_is_generated():
    """sql/schema/0001_fold_v1.sql is exactly what fold_sql() generates (regenerate it, never hand-edit)."""
    committed = (REPO / "sql" / "schema" / "0001_fold_v1.sql").read_text(encoding="utf-8")
    assert committed == fold_sql()
    assert read_sql("schema/0001_fold_v1.sql") == fold_sql()


TRICKY = [
    "",
    " ",
    "Hello, World!",
    "ＡＢＣ１２３ ＯＣＲ：",
    "musée MUSÉE Crème brûlée",
    "Straße ẞ STRASSE",
    "水餃 蔥油餅 牛肉麵 發票 增值稅",
    "It's O'Doherty’s",
    "back\\slash 'quote' \"dq\"",
    "tab\tnew\nline\r\n",
    "ﬁ ﬂ ① Ⅻ ㍿ ㌔",
    "ΣΊΣΥΦΟΣ Ελλάδα",
    "МОСКВА Ёлка",
    "Việt Nam Đà Nẵng",
    "😀👍🏽 emoji",
    "半角ｶﾀｶﾅ ﾊﾟﾋﾟ",
    "한국어 텍스트",
    "𠀀𠀁 extension B",
    "\u00a0nbsp\u2009thin\u200bzw",
    "İstanbul ǅ ǈ",
]


@pytest.mark.parametrize("text", TRICKY)
def test_sql_fold_equals_python_fold(conn, text):
    assert conn.execute("SELECT immich_search.fold_v1(%s)", (text,)).fetchone()[0] == fold(text)


def test_sql_fold_of_null_is_null(conn):
    assert conn.execute("SELECT immich_search.fold_v1(NULL)").fetchone()[0] is None


# Printable-ish BMP text that both sides read the same way: no surrogates (not valid UTF-8), no NUL
# (PostgreSQL text cannot hold it), only code points assigned in Python's Unicode version (PostgreSQL's
# NFKC tables may be of another Unicode version and differ on code points unassigned in one of them).
_BMP_ASSIGNED = st.characters(min_codepoint=1, max_codepoint=0xFFFF, blacklist_categories=("Cs", "Cn"))
_FOLD_TEXT = st.text(
    st.one_of(
        _BMP_ASSIGNED,
        st.sampled_from(sorted(fold_table())),  # every character the table folds
        st.sampled_from(list("ßẞ水餃蔥油餅ＡＯＣＲ：éÉ' \t\n")),
    ),
    max_size=40,
)


@DB_SETTINGS
@given(text=_FOLD_TEXT)
def test_sql_fold_equals_python_fold_property(conn, text):
    assert conn.execute("SELECT immich_search.fold_v1(%s)", (text,)).fetchone()[0] == fold(text)


# ---------------------------------------------------------------------------------------------------------
# document_tokens()


def by_lexeme(tokens: list[Token]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for token in tokens:
        out.setdefault(token.lexeme, set()).add(token.position)
    return out


def test_cjk_unigrams_and_bigrams_with_positions():
    tokens = by_lexeme(document_tokens(["发票代码"]))
    assert tokens == {
        "发": {1},
        "发票": {1},
        "票": {2},
        "票代": {2},
        "代": {3},
        "代码": {3},
        "码": {4},
    }


def test_cjk_is_folded_before_tokenising():
    tokens = by_lexeme(document_tokens(["水餃"]))
    assert tokens == {"水": {1}, "水饺": {1}, "饺": {2}}


def test_mixed_cjk_and_words_positions_follow_reading_order():
    tokens = document_tokens(["合计 ¥ 128.00", "Gate 23"])
    assert [(t.lexeme, t.position) for t in tokens if len(t.lexeme) > 0] == [
        ("合", 1),
        ("合计", 1),
        ("计", 2),
        ("128", 3),
        ("00", 4),
        ("12800", 3),
        ("gate", 5),
        ("23", 6),
        ("gate23", 5),
    ]


def test_cross_line_cjk_bigram():
    tokens = by_lexeme(document_tokens(["小", "菜"]))
    assert tokens["小"] == {1}
    assert tokens["菜"] == {2}
    assert tokens["小菜"] == {1}, "the pair spanning the line break is a bigram too"


def test_no_cross_line_bigram_when_a_word_intervenes():
    tokens = by_lexeme(document_tokens(["小 abc", "菜"]))
    assert "小菜" not in tokens


def test_glued_words():
    tokens = by_lexeme(document_tokens(["wild life crossing"]))
    assert tokens["wild"] == {1} and tokens["life"] == {2} and tokens["crossing"] == {3}
    assert tokens["wildlife"] == {1}
    assert tokens["lifecrossing"] == {2}


def test_words_are_not_glued_across_lines():
    tokens = by_lexeme(document_tokens(["WILD", "LIFE"]))
    assert "wildlife" not in tokens
    assert tokens["wild"] == {1} and tokens["life"] == {2}


@pytest.mark.parametrize(
    ("line", "joined"),
    [("S.A.L.E", "sale"), ("K-U-N-D-E-N", "kunden"), ("S A L E 50%", "sale"), ("o p e n", "open")],
)
def test_letter_spaced_words_are_joined(line, joined):
    tokens = by_lexeme(document_tokens([line]))
    assert joined in tokens
    assert tokens[joined] == {1}


def test_two_single_letters_are_not_joined():
    tokens = by_lexeme(document_tokens(["A B"]))
    assert "ab" not in tokens


def test_apostrophes_join_words():
    tokens = by_lexeme(document_tokens(["It's O'Doherty’s"]))
    assert "its" in tokens and "odohertys" in tokens
    assert "it" not in tokens and "s" not in tokens


def test_empty_and_symbol_only_lines_give_no_tokens():
    assert document_tokens([]) == []
    assert document_tokens(["", "   ", "→ ¥ %!"]) == []


def test_positions_are_clamped():
    tokens = document_tokens([" ".join(["w"] * 2 + ["word"] * (MAX_POSITION + 10))])
    assert max(t.position for t in tokens) == MAX_POSITION


def test_segments():
    assert segments(fold("发票 Invoice 2024年")) == [
        ("cjk", "发票"),
        ("word", "invoice"),
        ("word", "2024"),
        ("cjk", "年"),
    ]


def test_quote_lexeme():
    assert quote_lexeme("it's") == "'it''s'"
    assert quote_lexeme("a\\b") == "'a\\\\b'"


# ---------------------------------------------------------------------------------------------------------
# tsvector_literal() in the database


def stored(conn: psycopg.Connection, literal: str) -> dict[str, set[int]]:
    rows = conn.execute("SELECT lexeme, positions FROM unnest(%s::tsvector)", (literal,)).fetchall()
    return {lexeme: set(positions or []) for lexeme, positions in rows}


def test_tsvector_literal_round_trips(conn):
    lines = ["增值税电子普通发票", "It's a back\\slash 'quoted' WILD LIFE", "S.A.L.E", "小", "菜", "ÉCOLE Straße"]
    tokens = document_tokens(lines)
    literal = tsvector_literal(tokens)
    assert stored(conn, literal) == by_lexeme(tokens)


def test_cross_line_phrase_matches_in_the_database(conn):
    literal = tsvector_literal(document_tokens(["今日", "小", "菜 特价"]))
    match = conn.execute(
        "SELECT %(v)s::tsvector @@ to_tsquery('simple', '小 <-> 菜'),"
        "       %(v)s::tsvector @@ '小菜'::tsquery,"
        "       %(v)s::tsvector @@ immich_search.ocr_tsquery_v1('小菜'),"
        "       %(v)s::tsvector @@ immich_search.ocr_tsquery_v1('日小菜'),"
        "       %(v)s::tsvector @@ to_tsquery('simple', '菜 <-> 小')",
        {"v": literal},
    ).fetchone()
    assert match == (True, True, True, True, False)


def test_glued_and_letter_spaced_lexemes_match_in_the_database(conn):
    literal = tsvector_literal(document_tokens(["WILD LIFE", "S.A.L.E", "K-U-N-D-E-N"]))
    for query, expected in [
        ("wildlife", True),
        ("sale", True),
        ("kunden", True),
        ("wild life", True),
        ("lifewild", False),
    ]:
        got = conn.execute(
            "SELECT %s::tsvector @@ immich_search.ocr_tsquery_v1(%s, true)", (literal, query)
        ).fetchone()[0]
        assert got is expected, query


_LINES = st.lists(
    st.text(
        st.one_of(
            st.characters(min_codepoint=1, max_codepoint=0x2FFFF, blacklist_categories=("Cs",)),
            st.sampled_from(list("'’\\ \t水餃小菜abcSALE.-")),
        ),
        max_size=30,
    ),
    max_size=5,
)


@DB_SETTINGS
@given(lines=_LINES)
def test_tsvector_literal_round_trips_property(conn, lines):
    lines = [line.replace("\x00", "") for line in lines]
    tokens = document_tokens(lines)
    assert stored(conn, tsvector_literal(tokens)) == by_lexeme(tokens)
