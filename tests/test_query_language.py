"""The search-bar query language: modes, phrases, exclusions; parse() never raises."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from immich_search.ranking.query_language import Mode, ParsedQuery, Term, parse
from tests.strategies import query_texts


@pytest.mark.parametrize(
    ("query", "mode", "terms"),
    [
        ("ocr:发票", Mode.OCR, [Term("发票")]),
        ("OCR:发票", Mode.OCR, [Term("发票")]),
        ("Ocr : 发票", Mode.OCR, [Term("发票")]),
        ("  ocr:  invoice  ", Mode.OCR, [Term("invoice")]),
        ("ＯＣＲ：发票", Mode.OCR, [Term("发票")]),  # full-width prefix and colon (NFKC)
        ("ｏｃｒ：发票", Mode.OCR, [Term("发票")]),
        ("clip:一只猫", Mode.CLIP, [Term("一只猫")]),
        ("CLIP: a cat", Mode.CLIP, [Term("a"), Term("cat")]),
        ("一只猫", Mode.HYBRID, [Term("一只猫")]),
        ("red car", Mode.HYBRID, [Term("red"), Term("car")]),
        ("ocrx:foo", Mode.HYBRID, [Term("ocrx:foo")]),  # not a prefix
        ("foo ocr:bar", Mode.HYBRID, [Term("foo"), Term("ocr:bar")]),  # only at the start
        ("ocr:ocr:x", Mode.OCR, [Term("ocr:x")]),  # one prefix only
        ("clıp:x", Mode.HYBRID, [Term("clıp:x")]),  # dotless i is not an ASCII 'i'
    ],
)
def test_modes(query, mode, terms):
    parsed = parse(query)
    assert parsed.mode is mode
    assert list(parsed.terms) == terms


def test_default_mode():
    assert parse("发票", default_mode=Mode.OCR).mode is Mode.OCR
    assert parse("clip:猫", default_mode=Mode.OCR).mode is Mode.CLIP


@pytest.mark.parametrize(
    ("query", "terms"),
    [
        ('"boarding pass"', [Term("boarding pass", phrase=True)]),
        ('ocr:"boarding pass" gate', [Term("boarding pass", phrase=True), Term("gate")]),
        ('"  spaced   out  "', [Term("spaced   out", phrase=True)]),
        ("“智能 手机”", [Term("智能 手机", phrase=True)]),  # curly quotes of a Chinese keyboard
        ("＂full width＂", [Term("full width", phrase=True)]),
        ('"unterminated quote', [Term("unterminated quote", phrase=True)]),
        ('a "b c', [Term("a"), Term("b c", phrase=True)]),
        ('""', []),
        ('" "', []),
        ('"', []),
        ('"a"b', [Term("a", phrase=True), Term("b")]),
        ('x"y', [Term('x"y')]),  # a quote inside a word is part of it
    ],
)
def test_quotes(query, terms):
    assert list(parse(query).terms) == terms


@pytest.mark.parametrize(
    ("query", "terms"),
    [
        ("sale -crossing", [Term("sale"), Term("crossing", negated=True)]),
        ('wild -"life crossing"', [Term("wild"), Term("life crossing", phrase=True, negated=True)]),
        ("-发票", [Term("发票", negated=True)]),
        ("a - b", [Term("a"), Term("-"), Term("b")]),  # a lone dash is a plain word (it has nothing to match)
        ("a -- b", [Term("a"), Term("b")]),
        ("e-mail", [Term("e-mail")]),  # a dash inside a word is no exclusion
        ("--x", [Term("-x", negated=True)]),
        ('-""', []),
    ],
)
def test_exclusions(query, terms):
    assert list(parse(query).terms) == terms


def test_positive_negative_and_clip_text():
    parsed = parse('clip: red "sports car" -blue -"police car"')
    assert parsed.positive == (Term("red"), Term("sports car", phrase=True))
    assert parsed.negative == (Term("blue", negated=True), Term("police car", phrase=True, negated=True))
    assert parsed.text == "red sports car"


@pytest.mark.parametrize("query", ["", " ", "\t\n", "\u3000", "ocr:", "ocr:   ", "clip:", None])
def test_empty(query):
    parsed = parse(query)
    assert parsed.terms == ()
    assert parsed.text == ""


def test_white_space_of_all_kinds_separates_terms():
    parsed = parse("a\tb\nc\rd\fe\vf\u3000g")  # NFKC turns the ideographic space into a space
    assert [t.text for t in parsed.terms] == list("abcdefg")


def test_terms_keep_their_text_unfolded():
    assert parse("Straße MUSÉE 水餃").terms == (Term("Straße"), Term("MUSÉE"), Term("水餃"))


_QUERIES = query_texts(st.characters(), max_pieces=15, nul=True)


@settings(max_examples=500, deadline=None)
@given(query=_QUERIES)
def test_parse_never_raises(query):
    parsed = parse(query)
    assert isinstance(parsed, ParsedQuery)
    assert parsed.mode in (Mode.OCR, Mode.CLIP, Mode.HYBRID)
    for term in parsed.terms:
        assert term.text, "no empty terms"
        assert term.text == term.text.strip(" \t\n\r\f\v")
    assert parsed.text == " ".join(t.text for t in parsed.positive)


@settings(max_examples=300, deadline=None)
@given(query=_QUERIES)
def test_parse_is_stable_under_its_own_prefix(query):
    """Adding 'ocr:' in front of a query without a prefix gives OCR mode and the same terms."""
    plain = parse(query)
    if plain.mode is not Mode.HYBRID:
        return
    prefixed = parse("ocr:" + query)
    assert prefixed.mode is Mode.OCR
    # The prefix swallows the white space after it; the terms are the same.
    assert prefixed.terms == parse(query.lstrip()).terms or prefixed.terms == plain.terms


def test_lone_dash_adds_nothing_to_the_query():
    from immich_search.ranking.ocr_query import build_ocr_query

    assert build_ocr_query(parse("-")).loose is None
    assert build_ocr_query(parse("a - b")) == build_ocr_query(parse("a b"))
