"""Hypothesis strategies shared by the query-language and the SQL-parity tests."""

from __future__ import annotations

from hypothesis import strategies as st

# Pieces of query text that matter to the parser and the tokenizers: syntax characters, mode prefixes in
# every width and case, quotes of every kind, apostrophes, CJK (traditional and simplified, Han, kana,
# Hangul), words that fold (ß, é), emoji, compatibility forms, and white space of all kinds.
QUERY_PIECES = [
    '"',
    "-",
    ":",
    "ocr:",
    "OCR:",
    "clip:",
    "ＯＣＲ：",
    "clıp:",
    "“",
    "”",
    "＂",
    "'",
    "’",
    "\\",
    "发票",
    "水餃",
    "增值税",
    "春季上新",
    "中华人民共和国",
    "wild",
    "life",
    "Straße",
    "musée",
    "😀",
    "👍🏽",
    "ﬁ",
    "①",
    "İ",
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

# Any assigned character (PostgreSQL's NFKC tables may be of another Unicode version than Python's, so
# unassigned code points are left out of parity tests; surrogates and NUL cannot be sent at all).
ASSIGNED = st.characters(min_codepoint=1, max_codepoint=0x10FFFF, blacklist_categories=("Cs", "Cn"))
ANY_CHAR = st.characters(min_codepoint=1, max_codepoint=0x10FFFF, blacklist_categories=("Cs",))
HAN = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FD5)


def query_texts(chars: st.SearchStrategy[str], *, max_pieces: int = 12, nul: bool = False) -> st.SearchStrategy[str]:
    """Query strings made of :data:`QUERY_PIECES`, single characters of ``chars`` and short texts of them.

    ``nul`` adds the NUL character to the pieces (the parser must survive it; the database cannot take it).
    """
    pieces = st.sampled_from(QUERY_PIECES + (["\x00"] if nul else []))
    return st.lists(st.one_of(pieces, chars, st.text(chars, max_size=5)), max_size=max_pieces).map("".join)
