"""Search tokens for OCR text: what goes into the ``tsvector`` and how a query term becomes a ``tsquery``.

The scheme needs no database extension, so a stock Immich database (no zhparser) and the embedded server
answer the same queries, and the SQL query tokenizer (``immich_search.ocr_tsquery_v1``) can mirror it:

* Text is folded first (:func:`immich_search.textfold.fold`).
* CJK (Han, kana, Hangul) runs give every character (unigram) and every overlapping pair (bigram) at the
  character's position, so any CJK substring of two or more characters is a ``<->`` phrase of bigrams.
  Runs continue across OCR lines: text split over boxes (``小 | 菜``) still matches ``小菜``.
* Other letters and digits form words (Latin, Thai, ...). Two extra lexemes per word help noisy OCR:
  the word glued to the next one on its line (``wild life`` also gives ``wildlife``) and, for runs of
  single letters (``S.A.L.E``, ``K-U-N-D-E-N``), the letters joined (``sale``, ``kunden``).
* A query word also matches as a prefix (``clean`` finds ``cleanhandswithsoap``), ranked below an exact
  match by the second, strict query; several query words also match glued together as a prefix.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from immich_search.textfold import fold

TOKENIZER_VERSION = 1
"""Bumped whenever index-time tokens change; rows with an older version are re-tokenised by sync."""

MAX_LEXEME_BYTES = 2046
"""PostgreSQL rejects lexemes of 2 KiB or more (``MAXSTRLEN`` in ``src/include/tsearch/ts_type.h``)."""

MAX_POSITION = 16383
"""Largest position a ``tsvector`` stores (``MAXENTRYPOS - 1``, ts_type.h); later ones are clamped."""

# Han (CJK Unified Ideographs + Extension A + Compatibility + Extensions B..), kana, Hangul syllables.
CJK_CLASS = (
    "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
    "\U00020000-\U0002ffff"
)
# Word characters, listed explicitly rather than as \\w so that PostgreSQL's regular expressions (whose
# classes follow the database's locale: ASCII only under "C") match exactly the same characters:
# ASCII letters and digits, Latin-1 and Latin Extended letters, Greek, Cyrillic, Hebrew, Arabic,
# Devanagari, Thai (with its vowel signs) and Latin Extended Additional.
WORD_CLASS = (
    "0-9A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0370-\u03ff\u0400-\u04ff"
    "\u0590-\u05ff\u0600-\u06ff\u0900-\u097f\u0e00-\u0e7f\u1e00-\u1eff"
)
_CJK_RUN = re.compile(f"[{CJK_CLASS}]+")
_SEGMENT = re.compile(f"[{CJK_CLASS}]+|[{WORD_CLASS}]+")
_LETTER_SPACED = 3  # at least this many one-letter words in a row are joined (S.A.L.E -> sale)


@dataclass(frozen=True)
class Token:
    """One lexeme at one position of a document (positions start at 1, as in ``tsvector``)."""

    lexeme: str
    position: int


def is_cjk(char: str) -> bool:
    """Return whether ``char`` (one character) is CJK for tokenising purposes."""
    return bool(_CJK_RUN.fullmatch(char))


def _segments(line: str) -> Iterable[tuple[str, str]]:
    """Split a folded line into ('cjk', run) and ('word', word) segments in order."""
    # Apostrophes join (it's -> its, O'Doherty -> odoherty) rather than split words.
    for match in _SEGMENT.finditer(line.replace("'", "").replace("\u2019", "")):
        text = match.group(0)
        yield ("cjk" if _CJK_RUN.fullmatch(text) else "word", text)


def document_tokens(lines: Sequence[str]) -> list[Token]:
    """Tokenise OCR lines (in reading order) into positioned lexemes for a ``tsvector``.

    Args:
        lines: the recognised text lines, unfolded, in reading order.

    Returns:
        Tokens in position order; several tokens may share a position (a CJK unigram and its bigram,
        a word and its glued or letter-joined variants).
    """
    tokens: list[Token] = []
    position = 0
    cjk_tail = ""  # last CJK character of the previous line when that line ended in CJK
    for raw_line in lines:
        segments = list(_segments(fold(raw_line)))
        words_in_line: list[tuple[str, int]] = []
        for number, (kind, text) in enumerate(segments):
            if kind == "cjk":
                run = text
                if number == 0 and cjk_tail:
                    # Text split across boxes: the pair spanning the line break is a bigram too.
                    tokens.append(Token(cjk_tail + run[0], position))
                for offset, char in enumerate(run):
                    position += 1
                    tokens.append(Token(char, position))
                    if offset + 1 < len(run):
                        tokens.append(Token(run[offset : offset + 2], position))
                words_in_line.append(("", 0))  # CJK breaks glue and letter runs
            else:
                position += 1
                tokens.append(Token(text, position))
                words_in_line.append((text, position))
        tokens.extend(_word_variants(words_in_line))
        last_kind = segments[-1][0] if segments else None
        cjk_tail = segments[-1][1][-1] if last_kind == "cjk" else ""
    return [
        Token(t.lexeme, min(t.position, MAX_POSITION))
        for t in tokens
        if 0 < len(t.lexeme.encode("utf-8")) <= MAX_LEXEME_BYTES
    ]


def _word_variants(words: list[tuple[str, int]]) -> list[Token]:
    """Glued pairs and joined single-letter runs for the words of one line ('' marks a break)."""
    variants: list[Token] = []
    for (first, position), (second, _) in zip(words, words[1:], strict=False):
        # Single letters are handled by the letter-run join below; gluing them adds only noise.
        if len(first) > 1 and len(second) > 1:
            variants.append(Token(first + second, position))
    run: list[tuple[str, int]] = []
    for word, position in [*words, ("", 0)]:
        if len(word) == 1 and word.isalpha():
            run.append((word, position))
            continue
        if len(run) >= _LETTER_SPACED:
            variants.append(Token("".join(w for w, _ in run), run[0][1]))
        run = []
    return variants


def tsvector_literal(tokens: Iterable[Token]) -> str:
    """Render tokens as a ``tsvector`` input literal (``'lexeme':1,4 'other':2``).

    The literal is cast with ``::tsvector`` (no parser or dictionary involved), so lexemes are stored
    exactly as tokenised.
    """
    positions: dict[str, set[int]] = defaultdict(set)
    for token in tokens:
        positions[token.lexeme].add(token.position)
    return " ".join(
        f"{quote_lexeme(lexeme)}:{','.join(str(p) for p in sorted(spots))}"
        for lexeme, spots in sorted(positions.items())
    )


def quote_lexeme(lexeme: str) -> str:
    """Quote a lexeme for ``tsvector``/``tsquery`` input: ``'it''s'``, backslashes doubled."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def segments(folded: str) -> list[tuple[str, str]]:
    """Split folded text into ``("cjk", run)`` and ``("word", word)`` segments, in order.

    Everything that is neither CJK nor a word character separates segments.
    """
    return list(_segments(folded))


def sql_regex_class(characters: str) -> str:
    """Render a regex character-class body with ``\\uXXXX`` / ``\\UXXXXXXXX`` escapes for PostgreSQL."""
    return "".join(
        char if char in "-" or char.isascii() and char.isalnum()
        else (f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
        for char in characters
    )


def cjk_lexemes(run: str) -> list[str]:
    """Return the lexemes a CJK run is matched by: ``[char]`` for one character, else its bigrams."""
    return [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]
