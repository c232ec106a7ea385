"""The SQL query tokenizer is the exact twin of the Python one (with no segmenter), and never raises."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from immich_search.ranking.ocr_query import build_ocr_query
from immich_search.ranking.query_language import _SPACE, parse

from immich_search.textfold import fold
from immich_search.tokens import CJK_CLASS, WORD_CLASS, segments, sql_regex_class
from tests.conftest import corpus_queries

REPO = Path(__file__).resolve().parents[1]
FUNCTIONS_SQL = (REPO / "sql" / "schema" / "0001_ocr_functions.sql").read_text(encoding="utf-8")
DB_SETTINGS = settings(max_examples=200, deadline=None)


def regex_classes(sql: str) -> list[str]:
    """Bodies of the bracket expressions in the SQL text's regular expressions (in order).

    Array subscripts (``hit[1]``) are left out.
    """
    return [body for body in re.findall(r"\[(\^?[^\[\]]+)\]", sql) if not re.fullmatch(r"[0-9, ]+", body)]


def function_body(name: str) -> str:
    start = FUNCTIONS_SQL.index(f"CREATE FUNCTION immich_search.{name}(")
    end = FUNCTIONS_SQL.find("CREATE FUNCTION", start + 1)
    return FUNCTIONS_SQL[start : end if end > 0 else len(FUNCTIONS_SQL)]


def test_sql_character_classes_equal_python_classes():
    classes = regex_classes(function_body("segments_v1"))
    cjk, word = sql_regex_class(CJK_CLASS), sql_regex_class(WORD_CLASS)
    # '^[CJK]+$' decides the kind; '[CJK]+|[WORD]+' finds the segments.
    assert classes == [cjk, cjk, word]


def test_sql_white_space_class_equals_python_class():
    expected = "".join({" ": " ", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f", "\v": "\\v"}[c] for c in _SPACE)
    classes = regex_classes(function_body("ocr_tsquery_v1"))
    spaces = [c.lstrip("^") for c in classes if c.lstrip("^") not in ('"',)]
    assert spaces and all(c == expected for c in spaces), classes


def test_sql_character_classes_match_the_same_characters(conn):
    """Probe each class edge in the database: the same characters are CJK / word characters."""
    probes = []
    for body in (CJK_CLASS, WORD_CLASS):
        for low, high in re.findall(r"(.)-(.)", body):
            for code in (ord(low) - 1, ord(low), ord(high), ord(high) + 1):
                if 0 < code < 0x110000 and not 0xD800 <= code <= 0xDFFF:
                    probes.append(chr(code))
    for char in probes:
        rows = conn.execute(
            "SELECT kind, segment FROM immich_search.segments_v1(%s) ORDER BY ordinal", (char,)
        ).fetchall()
        assert [tuple(r) for r in rows] == segments(fold(char)), hex(ord(char))


def compare(conn: psycopg.Connection, query: str) -> None:
    """Assert SQL's ocr_tsquery_v1(query, strict) equals Python's build_ocr_query, loose and strict."""
    built = build_ocr_query(parse(query), segmenter=None)
    sql_loose, sql_strict, py_loose, py_strict = conn.execute(
        "SELECT immich_search.ocr_tsquery_v1(%(q)s, false)::text, immich_search.ocr_tsquery_v1(%(q)s, true)::text,"
        "       %(loose)s::tsquery::text, %(strict)s::tsquery::text",
        {"q": query, "loose": built.loose, "strict": built.strict},
    ).fetchone()
    assert (sql_loose, sql_strict) == (py_loose, py_strict), query


def corpus_variants() -> list[str]:
    try:
        texts = [entry["query"] for entry in corpus_queries()]
    except FileNotFoundError:
        texts = []
    texts += ["wild life crossing", "发票 金额", "小菜", "Straße", "musée", "it's", "S.A.L.E"]
    variants: list[str] = []
    for text in texts:
        variants += [
            text,
            f"ocr:{text}",
            f"OCR: {text}",
            f"ＯＣＲ：{text}",
            f"clip:{text}",
            f'"{text}"',
            f'ocr:"{text}"',
            f"“{text}”",
            f'"{text}',  # unterminated quote
            f"{text} -crossing",
            f'ocr:{text} -"wild life"',
            f"-{text}",
            f'-"{text}" bar',
            f"{text} 发票",
            f"  {text}\t\u3000",
        ]
    return variants


CORPUS_VARIANTS = corpus_variants()


def test_corpus_queries_found():
    assert len(CORPUS_VARIANTS) > 100


def test_parity_on_corpus_queries(conn):
    for query in CORPUS_VARIANTS:
        compare(conn, query)


EDGE_QUERIES = [
    "",
    " ",
    '"',
    '""',
    '" "',
    "-",
    "--",
    "- -",
    '-"',
    '-""',
    '"""0',  # PostgreSQL's longest-alternative regexes once read these as one word
    '""x',
    '"abc"def',
    '-"x"y',
    '--"z"',
    '"wild life"crossing',
    "ocr:",
    "ocr: ",
    "clip:",
    "ocr:ocr:",
    ":",
    "'",
    "''",
    "'; drop table x; --",
    "😀",
    "😀 发票",
    "a",
    "a b",
    "a b c",
    "wild-life",
    "e-mail",
    "发票-金额",
    '"wild life" crossing',
    'crossing "wild life"',
    '"发票 wild"',
    "a\\b",
    "x" * 3000,
    "发" * 1200,
    " ".join(["w"] * 50),
    "\u200b",
    "\x1c\x1d\x1e\x1f",
    "\u00a0nbsp\u2009thin",
    "a\u3000b",
    "ｏｃｒ：ＷＩＬＤ　ＬＩＦＥ",
]


@pytest.mark.parametrize("query", EDGE_QUERIES)
def test_parity_on_edge_queries(conn, query):
    compare(conn, query)


def test_nothing_searchable_is_null(conn):
    for query in ["", "   ", '"', "-", "ocr:", "😀", "-word", "!!!", None]:
        assert conn.execute("SELECT immich_search.ocr_tsquery_v1(%s)", (query,)).fetchone()[0] is None
    assert build_ocr_query(parse("-word")).loose is None


def test_known_shapes(conn):
    """A few exact outputs, so that the two sides cannot agree on something wrong."""

    def sql(query: str, strict: bool = False) -> str | None:
        return conn.execute("SELECT immich_search.ocr_tsquery_v1(%s, %s)::text", (query, strict)).fetchone()[0]

    assert sql("ocr:发票") == "'发票'"
    assert sql("增值税") == "'增值' <-> '值税'"
    assert sql("水餃") == "'水饺'"
    assert sql("发") == "'发'"
    assert sql("Invoice") == "'invoice':*"
    assert sql("Invoice", True) == "'invoice'"
    assert sql("wild life") == "'wild':* & 'life':* | 'wildlife':*"
    assert sql('"wild life"', True) == "'wild' <-> 'life' | 'wildlife'"
    assert sql("sale -crossing") == "'sale':* & !'crossing':*"


# Query text of every kind: syntax characters, prefixes, CJK, emoji, white space of all kinds, and any
# assigned character (PostgreSQL's NFKC tables may be of another Unicode version than Python's, so
# unassigned code points are left out of the parity test; surrogates and NUL cannot be sent at all).
_ASSIGNED = st.characters(min_codepoint=1, max_codepoint=0x10FFFF, blacklist_categories=("Cs", "Cn"))
_PIECES = st.sampled_from(
    [
        '"',
        "-",
        ":",
        "ocr:",
        "OCR:",
        "clip:",
        "ＯＣＲ：",
        "“",
        "”",
        "＂",
        "'",
        "’",
        "\\",
        "发票",
        "水餃",
        "增值税",
        "wild",
        "life",
        "Straße",
        "musée",
        "😀",
        "👍🏽",
        "ﬁ",
        "①",
        " ",
        "\t",
        "\n",
        "\r",
        "\f",
        "\v",
        "\u3000",
        "\u00a0",
        "\u2009",
        "\u200b",
        "\x1c",
        "\x85",
        "\u2028",
        "a",
        "S",
        "1",
        "한",
        "カ",
        "ｶ",
    ]
)

_QUERIES = st.lists(st.one_of(_PIECES, _ASSIGNED, st.text(_ASSIGNED, max_size=5)), max_size=12).map("".join)


@DB_SETTINGS
@given(query=_QUERIES)
def test_parity_property(conn, query):
    compare(conn, query)


_ANY_CHAR = st.characters(min_codepoint=1, max_codepoint=0x10FFFF, blacklist_categories=("Cs",))
_ANY_TEXT = st.lists(st.one_of(_PIECES, _ANY_CHAR, st.text(_ANY_CHAR, max_size=8)), max_size=15).map("".join)


@DB_SETTINGS
@given(query=_ANY_TEXT, strict=st.booleans())
def test_sql_tokenizer_never_raises(conn, query, strict):
    result = conn.execute("SELECT immich_search.ocr_tsquery_v1(%s, %s)::text", (query, strict)).fetchone()[0]
    assert result is None or result.strip()
    # And the full search function answers too (no user: no rows, but no error either).
    conn.execute(
        "SELECT count(*) FROM immich_search.search_ocr(%s, '00000000-0000-0000-0000-000000000000')", (query,)
    ).fetchone()


@DB_SETTINGS
@given(text=st.text(_ASSIGNED, max_size=30))
def test_segments_parity_property(conn, text):
    rows = conn.execute("SELECT kind, segment FROM immich_search.segments_v1(%s) ORDER BY ordinal", (text,)).fetchall()
    assert [tuple(r) for r in rows] == segments(fold(text))
