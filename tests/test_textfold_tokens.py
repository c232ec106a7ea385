"""Folding and index-time tokens: Python's fold() and SQL's fold_v1() agree; tokens survive ::tsvector."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from immich_search.sqlfiles import read_sql
from immich_search.sqlgen.tables import fold_char_sql, fold_sql
from immich_search.textfold import fold, fold_table
from immich_search.tokens import (
    FUZZY_MAX_LENGTH,
    FUZZY_MIN_LENGTH,
    INFIX_MAX_WORD,
    MAX_POSITION,
    Token,
    document_tokens,
    fuzzy_keys,
    fuzzy_query_lexemes,
    infix_lexemes,
    jieba_pieces,
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


def test_committed_fold_char_sql_is_generated():
    """sql/schema/0003_fold_char.sql (the rows behind fold_v2) is exactly what fold_char_sql() generates."""
    assert read_sql("schema/0003_fold_char.sql") == fold_char_sql()


def test_fold_char_table_holds_the_fold_table(conn):
    rows = dict(conn.execute("SELECT source, target FROM immich_search.fold_char").fetchall())
    assert rows == fold_table()


FOLDS = ["fold_v1", "fold_v2"]


@pytest.fixture
def fold_conn(request, conn):
    """The connection where the parametrized fold function is installed."""
    return (
        request.getfixturevalue("first_release_conn") if request.node.callspec.params["function"] == "fold_v1" else conn
    )


@pytest.mark.parametrize("function", FOLDS)
@pytest.mark.parametrize("text", TRICKY)
def test_sql_fold_equals_python_fold(fold_conn, function, text):
    assert fold_conn.execute(f"SELECT immich_search.{function}(%s)", (text,)).fetchone()[0] == fold(text)


@pytest.mark.parametrize("function", FOLDS)
def test_sql_fold_of_null_is_null(fold_conn, function):
    assert fold_conn.execute(f"SELECT immich_search.{function}(NULL)").fetchone()[0] is None


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
def test_sql_fold_equals_python_fold_property(conn, first_release_conn, text):
    assert first_release_conn.execute("SELECT immich_search.fold_v1(%s)", (text,)).fetchone()[0] == fold(text)
    assert conn.execute("SELECT immich_search.fold_v2(%s)", (text,)).fetchone()[0] == fold(text)


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
        ("00gate", 4),  # glued across the line break
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


def test_words_are_glued_across_lines():
    tokens = by_lexeme(document_tokens(["WILD", "LIFE", "CROSSING"]))
    assert tokens["wild"] == {1} and tokens["life"] == {2}
    assert tokens["wildlife"] == {1} and tokens["lifecrossing"] == {2}


def test_no_glue_across_lines_through_cjk_or_single_letters():
    tokens = by_lexeme(document_tokens(["WILD 小", "LIFE", "A", "B"]))
    assert "wildlife" not in tokens
    assert not any(lexeme.startswith(("lifea", "ab")) for lexeme in tokens)


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


def test_infix_lexemes():
    lexemes = infix_lexemes("cleanhandswithsoap")
    assert "~handswithsoap" in lexemes and "~withsoap" in lexemes and "~soap" in lexemes
    assert "~oap" not in lexemes, "suffixes of four characters or more"
    assert "~cleanhandswithsoap" not in lexemes, "the word itself is its own lexeme"
    assert infix_lexemes("sale") == []
    assert infix_lexemes("sales") == ["~ales"]
    assert infix_lexemes("x" * (INFIX_MAX_WORD + 1)) == []


def test_document_words_get_infix_and_fuzzy_lexemes_at_their_position():
    tokens = by_lexeme(document_tokens(["Wash Cleanhandswithsoap", "Detmolder StraBe 8"]))
    assert tokens["~handswithsoap"] == {2} and tokens["~soap"] == {2}
    assert tokens["^5^strae"] == {4}, "StraBe without its B"
    assert not any(lexeme.startswith("~ash") for lexeme in tokens), "wash is too short for infix lexemes"
    assert not any(lexeme.startswith("^") and lexeme.endswith("8") for lexeme in tokens), "no keys for numbers"


def test_fuzzy_keys():
    assert fuzzy_keys("strabe") == ["^1^trabe", "^2^srabe", "^3^stabe", "^4^strbe", "^5^strae", "^6^strab"]
    assert fuzzy_keys("sale") == [], "four letters: too short to tell a misread from another word"
    assert fuzzy_keys("05251") == [], "numbers: one digit away is another number"
    assert fuzzy_keys("by631") != []
    assert fuzzy_keys("x" * FUZZY_MAX_LENGTH) != [] and fuzzy_keys("x" * (FUZZY_MAX_LENGTH + 1)) == []


def one_edit(a: str, b: str) -> bool:
    """Levenshtein distance of exactly one (a reference implementation for the key scheme)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def doc_lexemes(word: str) -> set[str]:
    return {word, *fuzzy_keys(word)}


@pytest.mark.parametrize(
    ("query", "word", "found"),
    [
        ("paderborn", "paderboin", True),  # misread
        ("paderborn", "paderbornn", True),  # extra character
        ("paderborn", "paderbrn", True),  # missing character
        ("strasse", "strabe", True),  # ß read as B
        ("strasse", "strae", True),  # ß dropped
        ("paderborn", "paderbom", True),  # rn read as m
        ("modern", "rnodern", True),  # m read as rn
        ("cleaner", "deaner", True),  # cl read as d
        ("clean", "dean", False),  # the photo's word has four letters: no keys
        ("dean", "clean", False),  # four letters: no fuzzy matching
        ("deans", "cleans", True),  # d read as cl
        ("paderborn", "padrebom", False),  # two edits
        ("paderborn", "paderborn", True),  # the word itself (exact matching finds it first anyway)
        ("summe", "summa", True),
        ("summe", "sum", False),
        ("could", "cold", False),  # one edit, but the photo's word is too short to tell from chance
    ],
)
def test_fuzzy_query_lexemes_meet_document_lexemes(query, word, found):
    assert bool(doc_lexemes(word) & set(fuzzy_query_lexemes(query))) is found


@DB_SETTINGS
@given(query=st.text("abcde", min_size=5, max_size=8), word=st.text("abcde", min_size=4, max_size=9))
def test_fuzzy_lexemes_meet_exactly_one_edit_away(query, word):
    """Without OCR_CONFUSIONS in the query, the keys meet exactly when the words are at most one edit apart
    and both have FUZZY_MIN_LENGTH characters or more."""
    meet = bool(doc_lexemes(word) & set(fuzzy_query_lexemes(query)))
    assert meet == (query == word or (one_edit(query, word) and len(word) >= FUZZY_MIN_LENGTH))


def test_jieba_pieces():
    assert jieba_pieces("东京タワー发票") == ["东京", "タワー", "发票"]
    assert jieba_pieces("한국") == ["한국"]


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
        "       %(v)s::tsvector @@ immich_search.ocr_tsquery('小菜'),"
        "       %(v)s::tsvector @@ immich_search.ocr_tsquery('日小菜'),"
        "       %(v)s::tsvector @@ to_tsquery('simple', '菜 <-> 小')",
        {"v": literal},
    ).fetchone()
    assert match == (True, True, True, True, False)


def test_glued_and_letter_spaced_lexemes_match_in_the_database(conn):
    literal = tsvector_literal(document_tokens(["WILD LIFE", "S.A.L.E", "K-U-N-D-E-N", "Cleanhandswithsoap"]))
    for query, expected in [
        ("wildlife", True),
        ("sale", True),
        ("kunden", True),
        ("wild life", True),
        ("lifewild", False),
        ("cleanhandswithsoap", True),
        ("clean hands", False),  # the strict query: exact words only
    ]:
        got = conn.execute("SELECT %s::tsvector @@ immich_search.ocr_tsquery(%s, true)", (literal, query)).fetchone()[0]
        assert got is expected, query


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("clean hands", True),  # glued words as a prefix
        ("hands", True),  # inside the glued text
        ("hands soap", True),
        ("with soap", True),
        ('"hands with soap"', True),
        ("soap", True),
        ("oap", False),  # too short to look inside words
        ("dirty hands", False),
    ],
)
def test_dropped_spaces_match_in_the_database(conn, query, expected):
    literal = tsvector_literal(document_tokens(["Cleanhandswithsoap"]))
    match = conn.execute("SELECT %s::tsvector @@ immich_search.ocr_tsquery(%s)", (literal, query)).fetchone()[0]
    assert match is expected


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
