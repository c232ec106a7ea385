"""Build the full-text ``tsquery`` pair of a parsed query (the Python query path).

Two queries come out of a parsed query:

* ``loose``: what must match. CJK runs are cut into words with jieba (a run cut into single characters
  only, ``包邮``, which jieba does not know, must appear as written) and every word must appear, as a
  ``<->`` phrase of its bigrams (``发票金额`` finds ``发票 ... 金额``), or the whole run as one phrase (the
  same matches; it ranks the run as typed first and gives the fuzzy fallback the run); words match as prefixes
  (``'clean':*`` finds ``cleanhandswithsoap``) and, from four characters on, inside words too
  (``'~hands':*`` finds it as well, see :mod:`immich_search.tokens`); several words also match glued
  together (``safety evacuation`` finds ``safetyevacuationarea``); ``-term`` excludes.
* ``strict``: the same with exact words only, used only for ranking, so exact words rank first.

The SQL function ``immich_search.ocr_tsquery_v4(query, strict)`` builds the same pair in the database for
psql users, with a twin of jieba's segmentation over jieba's own dictionary (table
``immich_search.cjk_word``); with ``segmenter=jieba_segmenter()`` this module produces exactly its output
(``tests/test_sql_parity.py``). The fuzzy fallback (one misread character) is added in SQL from the
loose query, by ``immich_search.fuzzy_tsquery_v2``, for both paths.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

from immich_search.ranking.query_language import ParsedQuery, Term
from immich_search.textfold import fold
from immich_search.tokens import (
    INFIX_MARK,
    INFIX_MIN_LENGTH,
    JIEBA_HAN_CLASS,
    MAX_LEXEME_BYTES,
    cjk_lexemes,
    jieba_pieces,
    quote_lexeme,
    segments,
)

Segmenter = Callable[[str], Sequence[str]]

MAX_SEGMENTED_RUN = 64
"""Han runs longer than this (pasted sentences) are matched whole, as one phrase, not cut into words: it
bounds the work of the SQL twin of jieba (one dictionary probe per character and word length)."""

_HAN_RUN = re.compile(f"[{JIEBA_HAN_CLASS}]+")


@dataclass(frozen=True)
class OcrQuery:
    """A pair of ``tsquery`` literals (cast with ``::tsquery``); both ``None`` when nothing can match."""

    loose: str | None
    strict: str | None


@cache
def _jieba_tokenizer():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    # A private instance: words another module adds to jieba's global tokenizer must not change what
    # this path finds (the SQL twin knows only jieba's own dictionary).
    return jieba.Tokenizer()


def jieba_segmenter() -> Segmenter:
    """Return jieba's precise-mode segmenter (dictionary only, no HMM, so it is deterministic).

    It cuts a run of Han characters (``[\\u4e00-\\u9fd5]``) into words with jieba's own dictionary, as
    ``jieba.lcut(run, HMM=False)`` does; ``immich_search.cjk_words_v2`` is its SQL twin.
    """
    tokenizer = _jieba_tokenizer()

    def cut(run: str) -> list[str]:
        return [word for word in tokenizer.lcut(run, HMM=False) if word.strip()]

    return cut


def jieba_dictionary() -> tuple[dict[str, int], int]:
    """Return jieba's dictionary as ``({word: frequency}, total)``, read as jieba reads it.

    Only words of Han characters with a frequency above 0 are kept (the only ones jieba's segmentation of
    a Han run can use); ``total`` is the sum over every entry, as jieba's ``gen_pfdict`` computes it (it
    enters every word's log probability).
    """
    tokenizer = _jieba_tokenizer()
    tokenizer.check_initialized()
    words = {word: freq for word, freq in tokenizer.FREQ.items() if freq > 0 and _HAN_RUN.fullmatch(word)}
    return words, tokenizer.total


def cjk_words(run: str, segmenter: Segmenter | None) -> list[str]:
    """Cut a folded CJK run into the words that must each appear (twin of ``immich_search.cjk_words_v2``).

    Han pieces of up to :data:`MAX_SEGMENTED_RUN` characters go through ``segmenter``; other pieces (kana,
    Hangul, rarer Han blocks), longer Han pieces, and every piece when ``segmenter`` is ``None`` stay whole.
    """
    if segmenter is None:
        return [run]
    words: list[str] = []
    for piece in jieba_pieces(run):
        if _HAN_RUN.fullmatch(piece) and len(piece) <= MAX_SEGMENTED_RUN:
            words.extend(segmenter(piece) or [piece])
        else:
            words.append(piece)
    return words


def query_units(run: str, segmenter: Segmenter | None) -> list[str]:
    """The units of a folded CJK query run that must each appear (twin of ``immich_search.cjk_words_v3``).

    :func:`cjk_words`, except that a run jieba cuts into single characters only (a word it does not know,
    ``包邮``) is one unit, the run itself: its characters anywhere in a photo (``包括 ... 邮局``) are no
    evidence of it. A run with a word of two or more characters keeps jieba's cut (``春季上新``: ``春季``,
    ``上``, ``新``), the word anchoring the match.
    """
    words = cjk_words(run, segmenter)
    if len(words) > 1 and all(len(word) == 1 for word in words):
        return ["".join(words)]
    return words


def _cjk_expr(run: str) -> str | None:
    lexemes = [lexeme for lexeme in cjk_lexemes(run) if len(lexeme.encode()) <= MAX_LEXEME_BYTES]
    if not lexemes:
        return None
    return "(" + " <-> ".join(quote_lexeme(lexeme) for lexeme in lexemes) + ")"


def _word_expr(word: str, strict: bool) -> str | None:
    """A word: exact when strict; else a prefix, or inside a word as well from INFIX_MIN_LENGTH on."""
    if len(word.encode()) > MAX_LEXEME_BYTES:
        return None
    if strict:
        return quote_lexeme(word)
    infix = INFIX_MARK + word
    if len(word) < INFIX_MIN_LENGTH or len(infix.encode()) > MAX_LEXEME_BYTES:
        return quote_lexeme(word) + ":*"
    return f"({quote_lexeme(word)}:* | {quote_lexeme(infix)}:*)"


def _term_expr(term: Term, strict: bool, segmenter: Segmenter | None) -> str | None:
    """One term as a tsquery expression, or None when it has no searchable character."""
    parts: list[str] = []
    words: list[str] = []
    has_cjk = False
    for kind, text in segments(fold(term.text)):
        if kind == "cjk":
            has_cjk = True
            runs = [text] if term.phrase else query_units(text, segmenter)
            exprs = [expr for run in runs if (expr := _cjk_expr(run))]
            if len(exprs) > 1 and (whole := _cjk_expr(text)):
                # The whole run as a phrase too: it matches nothing the words miss (its bigrams hold them),
                # ranks the run as typed first and lets the fuzzy fallback find it with one character misread.
                exprs = ["(" + " & ".join(exprs) + " | " + whole + ")"]
            parts.extend(exprs)
        else:
            words.append(text)
            if not term.phrase and (expr := _word_expr(text, strict)):
                parts.append(expr)
    if term.phrase and words and not has_cjk:
        exact = [quote_lexeme(word) for word in words if len(word.encode()) <= MAX_LEXEME_BYTES]
        phrase = "(" + " <-> ".join(exact) + ")" if exact else None
        glued = _word_expr("".join(words), strict) if len(words) > 1 else None
        parts.append(f"({phrase} | {glued})" if phrase and glued else phrase or glued or "")
    elif term.phrase and words:
        parts.extend(expr for word in words if (expr := _word_expr(word, strict)))
    parts = [part for part in parts if part]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else "(" + " & ".join(parts) + ")"


def _glued_words(terms: Sequence[Term]) -> str | None:
    """Words of all plain positive terms glued together, when there are two or more and no CJK."""
    words: list[str] = []
    for term in terms:
        if term.phrase:
            return None
        for kind, text in segments(fold(term.text)):
            if kind == "cjk":
                return None
            words.append(text)
    return "".join(words) if len(words) > 1 else None


def build_ocr_query(parsed: ParsedQuery, segmenter: Segmenter | None = None) -> OcrQuery:
    """Build the loose and strict ``tsquery`` literals of ``parsed``.

    Args:
        parsed: output of :func:`immich_search.ranking.query_language.parse`.
        segmenter: cuts a Han run into words (see :func:`jieba_segmenter`, the SQL twin's); ``None`` keeps
            each CJK run whole.

    Returns:
        An :class:`OcrQuery`; ``OcrQuery(None, None)`` when no positive term has a searchable character
        (then nothing matches, as in Immich when the query is empty).
    """
    built: list[str] = []
    for strict in (False, True):
        positive = [expr for term in parsed.positive if (expr := _term_expr(term, strict, segmenter))]
        if not positive:
            return OcrQuery(None, None)
        expr = positive[0] if len(positive) == 1 else "(" + " & ".join(positive) + ")"
        glued = _glued_words(parsed.positive)
        if glued and len(parsed.positive) > 1 and (alternative := _word_expr(glued, strict)):
            expr = f"({expr} | {alternative})"
        for term in parsed.negative:
            if excluded := _term_expr(term, False, segmenter):
                expr = f"{expr} & !{excluded}"
        built.append(expr)
    return OcrQuery(loose=built[0], strict=built[1])
