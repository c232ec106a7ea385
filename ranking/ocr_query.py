"""Build the full-text ``tsquery`` pair of a parsed query (the Python query path).

Two queries come out of a parsed query:

* ``loose``: what must match. CJK parts are ``<->`` phrases of bigrams; words match as prefixes
  (``'clean':*`` finds ``cleanhandswithsoap``); several words also match glued together as a prefix
  (``safety evacuation`` finds ``safetyevacuationarea``); ``-term`` excludes.
* ``strict``: the same without prefixes, used only for ranking, so exact words rank first.

The SQL function ``immich_search.ocr_tsquery_v1(query, strict)`` builds the same pair in the database for
psql users; with ``segmenter=None`` this module produces exactly its output (tests prove it). With the
default segmenter, jieba splits a CJK run into words that must each appear, rather than the whole run as
one phrase: ``发票金额`` then finds ``发票 ... 金额``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from immich_search.ranking.query_language import ParsedQuery, Term

from immich_search.textfold import fold
from immich_search.tokens import MAX_LEXEME_BYTES, cjk_lexemes, quote_lexeme, segments

Segmenter = Callable[[str], Sequence[str]]


@dataclass(frozen=True)
class OcrQuery:
    """A pair of ``tsquery`` literals (cast with ``::tsquery``); both ``None`` when nothing can match."""

    loose: str | None
    strict: str | None


def jieba_segmenter() -> Segmenter:
    """Return jieba's precise-mode segmenter (dictionary only, no HMM, so it is deterministic)."""
    import jieba

    jieba.setLogLevel(logging.WARNING)

    def cut(run: str) -> list[str]:
        return [word for word in jieba.lcut(run, HMM=False) if word.strip()]

    return cut


def _cjk_expr(run: str) -> str | None:
    lexemes = [lexeme for lexeme in cjk_lexemes(run) if len(lexeme.encode()) <= MAX_LEXEME_BYTES]
    if not lexemes:
        return None
    return "(" + " <-> ".join(quote_lexeme(lexeme) for lexeme in lexemes) + ")"


def _word_expr(word: str, strict: bool) -> str | None:
    if len(word.encode()) > MAX_LEXEME_BYTES:
        return None
    return quote_lexeme(word) if strict else quote_lexeme(word) + ":*"


def _term_expr(term: Term, strict: bool, segmenter: Segmenter | None) -> str | None:
    """One term as a tsquery expression, or None when it has no searchable character."""
    parts: list[str] = []
    words: list[str] = []
    has_cjk = False
    for kind, text in segments(fold(term.text)):
        if kind == "cjk":
            has_cjk = True
            runs = [text] if term.phrase or segmenter is None else list(segmenter(text)) or [text]
            parts.extend(expr for run in runs if (expr := _cjk_expr(run)))
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
        segmenter: splits a CJK run into words (see :func:`jieba_segmenter`); ``None`` keeps each run
            whole, exactly as the SQL function ``immich_search.ocr_tsquery_v1`` does.

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
