"""The SQL query tokenizer is the exact twin of the Python one (jieba's segmentation included), and never raises.

The parity that matters is that of the newest builders (``ocr_tsquery_v4`` and ``build_ocr_query`` with
``jieba_segmenter()``); revision 0001's ``segments_v1`` is checked beside its v2 (same, with ``fold_v2``).
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from immich_search.ranking.ocr_query import (
    MAX_SEGMENTED_RUN,
    build_ocr_query,
    cjk_words,
    jieba_segmenter,
    query_units,
)
from immich_search.ranking.query_language import _SPACE, parse
from immich_search.sqlfiles import read_sql
from immich_search.sqlgen.tables import cjk_dictionary_sql
from immich_search.textfold import fold
from immich_search.tokens import (
    CJK_CLASS,
    JIEBA_HAN_CLASS,
    WORD_CLASS,
    fuzzy_keys,
    fuzzy_query_lexemes,
    segments,
    sql_regex_class,
)
from tests.conftest import corpus_queries
from tests.strategies import ANY_CHAR, ASSIGNED, HAN, query_texts

REPO = Path(__file__).resolve().parents[1]
FUNCTIONS_SQL = (REPO / "sql" / "schema" / "0001_ocr_functions.sql").read_text(encoding="utf-8")
QUALITY_SQL = (REPO / "sql" / "schema" / "0003_search_quality.sql").read_text(encoding="utf-8")
ENGINES_SQL = (REPO / "sql" / "schema" / "0007_ocr_engines.sql").read_text(encoding="utf-8")
DB_SETTINGS = settings(max_examples=200, deadline=None)
SEGMENTER = jieba_segmenter()


def regex_classes(sql: str) -> list[str]:
    """Bodies of the bracket expressions in the SQL text's regular expressions (in order).

    Array subscripts (``hit[1]``) are left out.
    """
    return [body for body in re.findall(r"\[(\^?[^\[\]]+)\]", sql) if not re.fullmatch(r"[0-9, ]+", body)]


def function_body(name: str, sql: str = FUNCTIONS_SQL) -> str:
    start = sql.index(f"CREATE FUNCTION immich_search.{name}(")
    end = sql.find("CREATE FUNCTION", start + 1)
    return sql[start : end if end > 0 else len(sql)]


@pytest.mark.parametrize(("name", "sql"), [("segments_v1", FUNCTIONS_SQL), ("segments_v2", QUALITY_SQL)])
def test_sql_character_classes_equal_python_classes(name, sql):
    classes = regex_classes(function_body(name, sql))
    cjk, word = sql_regex_class(CJK_CLASS), sql_regex_class(WORD_CLASS)
    # '^[CJK]+$' decides the kind; '[CJK]+|[WORD]+' finds the segments.
    assert classes == [cjk, cjk, word]


@pytest.mark.parametrize(
    ("name", "sql"),
    [("ocr_tsquery_v1", FUNCTIONS_SQL), ("ocr_tsquery_v2", QUALITY_SQL), ("ocr_tsquery_v4", ENGINES_SQL)],
)
def test_sql_white_space_class_equals_python_class(name, sql):
    expected = "".join({" ": " ", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f", "\v": "\\v"}[c] for c in _SPACE)
    classes = regex_classes(function_body(name, sql))
    spaces = [c.lstrip("^") for c in classes if c.lstrip("^") not in ('"',)]
    assert spaces and all(c == expected for c in spaces), classes


def test_v2_character_classes_equal_python_classes():
    han = sql_regex_class(JIEBA_HAN_CLASS)
    assert regex_classes(function_body("cjk_words_v2", QUALITY_SQL)) == [han, "^" + han, han]
    word = sql_regex_class(WORD_CLASS)
    assert word in regex_classes(function_body("fuzzy_tsquery_v2", QUALITY_SQL))
    assert f"'^[{word}]+$'" in function_body("fuzzy_tsquery_v2", QUALITY_SQL)
    assert f"char_length(piece) <= {MAX_SEGMENTED_RUN}" in function_body("cjk_words_v2", QUALITY_SQL)
    assert [word] == regex_classes(function_body("snippet_v2", QUALITY_SQL))[-1:]


@pytest.mark.parametrize("function", ["segments_v1", "segments_v2"])
def test_sql_character_classes_match_the_same_characters(conn, first_release_conn, function):
    """Probe each class edge in the database: the same characters are CJK / word characters."""
    conn = first_release_conn if function == "segments_v1" else conn
    probes = []
    for body in (CJK_CLASS, WORD_CLASS):
        for low, high in re.findall(r"(.)-(.)", body):
            for code in (ord(low) - 1, ord(low), ord(high), ord(high) + 1):
                if 0 < code < 0x110000 and not 0xD800 <= code <= 0xDFFF:
                    probes.append(chr(code))
    for char in probes:
        rows = conn.execute(
            f"SELECT kind, segment FROM immich_search.{function}(%s) ORDER BY ordinal", (char,)
        ).fetchall()
        assert [tuple(r) for r in rows] == segments(fold(char)), hex(ord(char))


def compare(conn: psycopg.Connection, query: str) -> None:
    """Assert SQL's ocr_tsquery_v4(query, strict) equals Python's build_ocr_query with jieba, loose and strict
    (both read the query capped at MAX_QUERY_CHARS)."""
    built = build_ocr_query(parse(query), SEGMENTER)
    sql_loose, sql_strict, py_loose, py_strict = conn.execute(
        "SELECT immich_search.ocr_tsquery_v4(%(q)s, false)::text, immich_search.ocr_tsquery_v4(%(q)s, true)::text,"
        "       %(loose)s::tsquery::text, %(strict)s::tsquery::text",
        {"q": query, "loose": built.loose, "strict": built.strict},
    ).fetchone()
    assert (sql_loose, sql_strict) == (py_loose, py_strict), query


def corpus_variants() -> list[str]:
    try:
        texts = [entry["query"] for entry in corpus_queries()]
    except FileNotFoundError:
        texts = []
    texts += [
        "wild life crossing",
        "发票 金额",
        "小菜",
        "Straße",
        "musée",
        "it's",
        "S.A.L.E",
        "发票金额",
        "东京タワー",
        "中华人民共和国国务院",
        "研究生命起源",
        "結婚的和尚未結婚的",
        "ABC发票123",
        "cleanhands",
        "K-U-N-D-E-N",
    ]
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
    "发票" * (MAX_SEGMENTED_RUN // 2),  # the longest Han run that is cut into words
    "发票" * (MAX_SEGMENTED_RUN // 2) + "发",  # one more: matched whole
    "発票\u9fd6\u9fff发票",  # Han beyond jieba's class
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
        assert conn.execute("SELECT immich_search.ocr_tsquery_v4(%s)", (query,)).fetchone()[0] is None
        assert conn.execute("SELECT immich_search.ocr_tsquery(%s)", (query,)).fetchone()[0] is None
    assert build_ocr_query(parse("-word")).loose is None


def test_known_shapes(conn):
    """A few exact outputs, so that the two sides cannot agree on something wrong."""

    def sql(query: str, strict: bool = False) -> str | None:
        return conn.execute("SELECT immich_search.ocr_tsquery(%s, %s)::text", (query, strict)).fetchone()[0]

    assert sql("ocr:发票") == "'发票'"
    assert sql("增值税") == "'增值' <-> '值税'"
    assert sql("水餃") == "'水饺'"
    assert sql("发") == "'发'"
    assert sql("发票金额") == "'发票' & '金额' | '发票' <-> '票金' <-> '金额'", "jieba's words, each anywhere"
    assert sql('"发票金额"') == "'发票' <-> '票金' <-> '金额'", "a quoted run stays one phrase"
    assert sql("春季上新") == "'春季' & '上' & '新' | '春季' <-> '季上' <-> '上新'", "a word anchors the run"
    assert sql("包邮") == "'包邮'", "two characters jieba leaves apart match next to each other only"
    assert sql("北京和上海") == "'北京' & '和' & '上海' | '北京' <-> '京和' <-> '和上' <-> '上海'"
    kana = "'东京' & 'タワ' <-> 'ワー' | '东京' <-> '京タ' <-> 'タワ' <-> 'ワー'"
    assert sql("东京タワー") == kana, "kana stay whole"
    assert sql("增值税") == "'增值' <-> '值税'", "one word: no whole-run alternative"
    assert sql("Invoice") == "'invoice':* | '~invoice':*"
    assert sql("Invoice", True) == "'invoice'"
    assert sql("tax") == "'tax':*", "no infix match under four characters"
    assert sql("wild life") == "( 'wild':* | '~wild':* ) & ( 'life':* | '~life':* ) | 'wildlife':* | '~wildlife':*"
    assert sql('"wild life"', True) == "'wild' <-> 'life' | 'wildlife'"
    assert sql("sale -crossing") == "( 'sale':* | '~sale':* ) & !( 'crossing':* | '~crossing':* )"


_QUERIES = query_texts(st.one_of(ASSIGNED, HAN))


@DB_SETTINGS
@given(query=_QUERIES)
def test_parity_property(conn, query):
    compare(conn, query)


_ANY_TEXT = query_texts(ANY_CHAR, max_pieces=15)


@DB_SETTINGS
@given(query=_ANY_TEXT, strict=st.booleans())
def test_sql_tokenizer_never_raises(conn, query, strict):
    result = conn.execute("SELECT immich_search.ocr_tsquery_v4(%s, %s)::text", (query, strict)).fetchone()[0]
    assert result is None or result.strip()
    # And the full search function answers too (no user: no rows, but no error either).
    conn.execute(
        "SELECT count(*) FROM immich_search.search_ocr(%s, '00000000-0000-0000-0000-000000000000')", (query,)
    ).fetchone()


@DB_SETTINGS
@given(query=_ANY_TEXT)
def test_fuzzy_tsquery_never_raises(conn, query):
    """The fuzzy query of any loose query is a valid tsquery (or NULL), with the loose query inside it."""
    loose, fuzzy = conn.execute(
        "SELECT q::text, immich_search.fuzzy_tsquery_v2(q)::text FROM immich_search.ocr_tsquery_v4(%s) AS q",
        (query,),
    ).fetchone()
    if fuzzy is not None:
        assert loose is not None
        for operand in re.findall(r"'(?:[^']|'')*'", loose):
            assert operand in fuzzy


def test_fuzzy_tsquery_of_cjk_runs(conn):
    def fuzzy(query: str) -> str | None:
        return conn.execute(
            "SELECT immich_search.fuzzy_tsquery_v2(immich_search.ocr_tsquery(%s))::text", (query,)
        ).fetchone()[0]

    assert fuzzy("春季上") is None, "three characters: no fuzzy matching"
    assert fuzzy('"春季上新"') == (
        "'春季' <-> '季上' <-> '上新' | '季上' <-> '上新' | '春' <2> '上新' | '春季' <3> '新' | '春季' <-> '季上'"
    )
    assert "'物抽' <-> '抽奖'" in fuzzy("购物抽奖"), "the run is found inside jieba's words"


@DB_SETTINGS
@given(text=st.text(ASSIGNED, max_size=30))
def test_segments_parity_property(conn, first_release_conn, text):
    expected = segments(fold(text))
    for function, connection in (("segments_v1", first_release_conn), ("segments_v2", conn)):
        sql = f"SELECT kind, segment FROM immich_search.{function}(%s) ORDER BY ordinal"
        assert [tuple(r) for r in connection.execute(sql, (text,)).fetchall()] == expected, function


# ---------------------------------------------------------------------------------------------------------
# jieba's segmentation in SQL (cjk_words_v2 over the table cjk_word)


def test_committed_dictionary_sql_is_generated():
    """sql/schema/0003_cjk_dictionary.sql is exactly jieba's dictionary as cjk_dictionary_sql() writes it."""
    assert read_sql("schema/0003_cjk_dictionary.sql") == cjk_dictionary_sql()


def sql_words(conn: psycopg.Connection, run: str) -> list[str]:
    return conn.execute("SELECT immich_search.cjk_words_v2(%s)", (run,)).fetchone()[0]


# Real text: jieba's choices between competing words (ties, long words, single characters) show here.
SENTENCES = [
    "我来到北京清华大学",
    "他来到了网易杭研大厦",
    "小明硕士毕业于中国科学院计算所后在日本京都大学深造",
    "结婚的和尚未结婚的",
    "研究生命起源",
    "南京市长江大桥",
    "工信处女干事每月经过下属科室都要亲口交代24口交换机等技术性器件的安装工作",
    "增值税电子普通发票",
    "春季美衣薄款外套全新上市",
    "宝剑锋从磨砺出梅花香自苦寒来",
    "假一赔十正品促销大桶装更划算",
    "中华人民共和国国务院办公厅关于进一步加强",
    "龟龄鹤算龠龢",
]


@pytest.mark.parametrize("run", SENTENCES)
def test_cjk_words_equal_jieba(conn, run):
    assert sql_words(conn, run) == cjk_words(run, SEGMENTER) == SEGMENTER(run)


@pytest.mark.parametrize("run", [*SENTENCES, "包邮", "顺丰包邮", "包", "东京タワー", "发票\u9fd6\u9fd7税"])
def test_query_units_equal_sql(conn, run):
    """cjk_words_v3 (revision 0007) keeps a run jieba cuts into single characters only whole, as query_units."""
    units = conn.execute("SELECT immich_search.cjk_words_v3(%s)", (run,)).fetchone()[0]
    assert units == query_units(run, SEGMENTER)
    assert "".join(units) == run
    words = cjk_words(run, SEGMENTER)
    assert units == ([run] if all(len(word) == 1 for word in words) else words)


def test_cjk_words_keep_other_pieces_whole(conn):
    for run in ["东京タワー", "한국어", "カタカナ", "𠀀𠀁发票", "发票\u9fd6\u9fd7税", "㐀㐁"]:
        assert sql_words(conn, run) == cjk_words(run, SEGMENTER), run
    assert sql_words(conn, "东京タワー") == ["东京", "タワー"]
    long_run = "发票" * MAX_SEGMENTED_RUN
    assert sql_words(conn, long_run) == [long_run]


@DB_SETTINGS
@given(run=st.text(HAN, min_size=1, max_size=12))
def test_cjk_words_equal_jieba_property(conn, run):
    assert sql_words(conn, run) == cjk_words(run, SEGMENTER)


_COMMON = [*SENTENCES, *"的了在是我有和人这中大为上个国"]


@DB_SETTINGS
@given(run=st.lists(st.sampled_from(_COMMON), min_size=1, max_size=6).map("".join))
def test_cjk_words_of_real_text_equal_jieba_property(conn, run):
    assert sql_words(conn, run) == cjk_words(run, SEGMENTER)


# ---------------------------------------------------------------------------------------------------------
# Fuzzy keys and terms: SQL twins of tokens.fuzzy_keys and tokens.fuzzy_query_lexemes


_WORDS = st.text(st.sampled_from("abcdlmnrsvw0123éßαд"), max_size=36).map(fold)


@DB_SETTINGS
@given(word=_WORDS)
def test_fuzzy_keys_equal_python_property(conn, word):
    assert conn.execute("SELECT immich_search.fuzzy_keys_v2(%s)", (word,)).fetchone()[0] == fuzzy_keys(word)


@DB_SETTINGS
@given(word=_WORDS)
def test_fuzzy_terms_equal_python_property(conn, word):
    terms = conn.execute("SELECT immich_search.fuzzy_terms_v2(%s)", (word,)).fetchone()[0]
    assert sorted(terms) == fuzzy_query_lexemes(word)


def test_fuzzy_terms_of_ineligible_words_are_empty(conn):
    for word in ["sale", "12345", "a" * 33, ""]:
        assert conn.execute("SELECT immich_search.fuzzy_terms_v2(%s)", (word,)).fetchone()[0] == []
        assert fuzzy_query_lexemes(word) == []


def test_fuzzy_confusions_equal_python(conn):
    from immich_search.tokens import OCR_CONFUSIONS

    sql = function_body("fuzzy_terms_v2", QUALITY_SQL)
    assert "IN (" + ", ".join(f"'{pair}'" for pair in OCR_CONFUSIONS) + ")" in sql
    for word in ["modern", "clean", "wwvvw", "strasse", "dummy", "rnrnrn", "mdwmdw"]:
        terms = conn.execute("SELECT immich_search.fuzzy_terms_v2(%s)", (word,)).fetchone()[0]
        assert sorted(terms) == fuzzy_query_lexemes(word), word
