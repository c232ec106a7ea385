"""Search tokens for OCR text: what goes into the ``tsvector`` and how a query term becomes a ``tsquery``.

The scheme needs no database extension, so a stock Immich database (no zhparser) and the embedded server
answer the same queries, and the SQL query tokenizer (``immich_search.ocr_tsquery_v4``) can mirror it:

* Text is folded first (:func:`immich_search.textfold.fold`).
* CJK (Han, kana, Hangul) runs give every character (unigram) and every overlapping pair (bigram) at the
  character's position, so any CJK substring of two or more characters is a ``<->`` phrase of bigrams.
  Runs continue across OCR lines: text split over boxes (``小 | 菜``) still matches ``小菜``.
* Other letters and digits form words (Latin, Thai, ...). Extra lexemes help noisy OCR, each at the
  position of the word it comes from:

  - the word glued to the next one, on its line or across a line break (``wild life`` and ``WILD |
    LIFE`` also give ``wildlife``), for words the OCR split;
  - for runs of single letters (``S.A.L.E``, ``K-U-N-D-E-N``), the letters joined (``sale``, ``kunden``);
  - infix lexemes: ``~`` + every suffix of four or more letters of a word (``cleanhandswithsoap`` gives
    ``~handswithsoap``, ``~withsoap``, ``~soap``...), so that a query word matched as a prefix of them
    (``'~hands':*``) finds words inside text whose spaces the OCR dropped;
  - fuzzy keys: ``^i^`` + the word with its i-th character deleted, for words of five to 32 characters
    with a letter; a query word whose own keys meet them is one edit (a misread, a dropped or an extra
    character) away, which is how ``immich_search.fuzzy_tsquery_v2`` finds ``StraBe`` for ``straße``.

  ``~`` and ``^`` are no word characters, so these lexemes never collide with a word, and no query word
  matches them unless the query asks for them.
* A query word also matches as a prefix (``clean`` finds ``cleanhandswithsoap``), ranked below an exact
  match by the second, strict query; several query words also match glued together as a prefix.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from immich_search.textfold import fold

TOKENIZER_VERSION = 2
"""Bumped whenever index-time tokens change; rows with an older version are re-tokenised from their stored
lines at the start of a sync run (:mod:`immich_search.sync.retokenize`). 2: infix and fuzzy lexemes, words
glued across line breaks."""

MAX_LEXEME_BYTES = 2046
"""PostgreSQL rejects lexemes of 2 KiB or more (``MAXSTRLEN`` in ``src/include/tsearch/ts_type.h``)."""

MAX_POSITION = 16383
"""Largest position a ``tsvector`` stores (``MAXENTRYPOS - 1``, ts_type.h); later ones are clamped."""

# Han (CJK Unified Ideographs + Extension A + Compatibility + Extensions B..), kana, Hangul syllables.
CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ffff"
# Word characters, listed explicitly rather than as \\w so that PostgreSQL's regular expressions (whose
# classes follow the database's locale: ASCII only under "C") match exactly the same characters:
# ASCII letters and digits, Latin-1 and Latin Extended letters, Greek, Cyrillic, Hebrew, Arabic,
# Devanagari, Thai (with its vowel signs) and Latin Extended Additional.
WORD_CLASS = (
    "0-9A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0370-\u03ff\u0400-\u04ff"
    "\u0590-\u05ff\u0600-\u06ff\u0900-\u097f\u0e00-\u0e7f\u1e00-\u1eff"
)
# The characters jieba cuts with its dictionary (``re_han_default`` in jieba/__init__.py, 0.42); it emits
# every other character of a run on its own.
JIEBA_HAN_CLASS = "\u4e00-\u9fd5"

INFIX_MARK = "~"
"""First character of an infix lexeme (``~`` + a suffix of a word); not a word character."""

INFIX_MIN_LENGTH = 4
"""Shortest suffix indexed, and shortest query word matched inside words: shorter ones (``ing``, ``ion``)
would match inside most long words."""

INFIX_MAX_WORD = 64
"""Longer words (OCR garbage, long numbers) get no infix lexemes: their suffixes would bloat the vector."""

FUZZY_MARK = "^"
"""First character of a fuzzy key (``^i^`` + the word without its i-th character); not a word character."""

FUZZY_MIN_LENGTH = 5
"""Shortest word matched with one edit. Elasticsearch's ``AUTO`` fuzziness allows one edit from three
characters; OCR text of a whole library is larger and fuzzy hits are a fallback, so five here."""

FUZZY_MAX_LENGTH = 32
"""Longest word given fuzzy keys (one key per character); longer ones are glued OCR text."""

OCR_CONFUSIONS = {"rn": "m", "cl": "d", "vv": "w", "ss": "ß"}
"""Two letters that OCR reads as one glyph, or one glyph it reads as two letters: the textbook
many-to-one confusions of Latin-script OCR (narrow letter pairs against one wide glyph), which plain edit
distance counts as two edits. ``ss`` stands for ``ß``, which :func:`~immich_search.textfold.fold` expands
to ``ss``; OCR models trained mostly on English read that glyph as ``B`` (``StraBe`` on German receipts).
The fuzzy fallback counts such a swap as one edit."""

_CJK_RUN = re.compile(f"[{CJK_CLASS}]+")
_SEGMENT = re.compile(f"[{CJK_CLASS}]+|[{WORD_CLASS}]+")
_HAN_OR_OTHER = re.compile(f"[{JIEBA_HAN_CLASS}]+|[^{JIEBA_HAN_CLASS}]+")
_SPLIT_GLYPHS = {glyph: pair for pair, glyph in OCR_CONFUSIONS.items() if glyph != "ß"}  # fold() leaves no ß
_DIGITS = re.compile("[0-9]+")  # ASCII digits only, as the SQL twin reads them
_LETTER_SPACED = 3  # at least this many one-letter words in a row are joined (S.A.L.E -> sale)


@dataclass(frozen=True)
class Token:
    """One lexeme at one position of a document (positions start at 1, as in ``tsvector``)."""

    lexeme: str
    position: int


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
        a word and its glued, letter-joined, infix and fuzzy variants). Lexemes of more than
        :data:`MAX_LEXEME_BYTES` are dropped and positions past :data:`MAX_POSITION` clamped.
    """
    tokens: list[Token] = []
    position = 0
    cjk_tail = ""  # last CJK character of the previous line when that line ended in CJK
    last_word: tuple[str, int] = ("", 0)  # last word of the previous line when that line ended in a word
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
                tokens.extend(Token(lexeme, position) for lexeme in infix_lexemes(text) + fuzzy_keys(text))
                words_in_line.append((text, position))
        if segments and segments[0][0] == "word":
            # A word split over two boxes or lines: glue it across the break too (WILD | LIFE -> wildlife).
            tokens.extend(_glued(last_word, words_in_line[0]))
        tokens.extend(_word_variants(words_in_line))
        last_kind = segments[-1][0] if segments else None
        cjk_tail = segments[-1][1][-1] if last_kind == "cjk" else ""
        last_word = words_in_line[-1] if last_kind == "word" else ("", 0)
    return [
        Token(t.lexeme, min(t.position, MAX_POSITION))
        for t in tokens
        if 0 < len(t.lexeme.encode("utf-8")) <= MAX_LEXEME_BYTES
    ]


def _glued(first: tuple[str, int], second: tuple[str, int]) -> list[Token]:
    # Single letters are handled by the letter-run join; gluing them adds only noise.
    if len(first[0]) > 1 and len(second[0]) > 1:
        return [Token(first[0] + second[0], first[1])]
    return []


def _word_variants(words: list[tuple[str, int]]) -> list[Token]:
    """Glued pairs and joined single-letter runs for the words of one line ('' marks a break)."""
    variants: list[Token] = []
    for first, second in zip(words, words[1:], strict=False):
        variants.extend(_glued(first, second))
    run: list[tuple[str, int]] = []
    for word, position in [*words, ("", 0)]:
        if len(word) == 1 and word.isalpha():
            run.append((word, position))
            continue
        if len(run) >= _LETTER_SPACED:
            variants.append(Token("".join(w for w, _ in run), run[0][1]))
        run = []
    return variants


def infix_lexemes(word: str) -> list[str]:
    """Return the infix lexemes of a (folded) word: ``~`` + each proper suffix of 4 or more characters.

    >>> infix_lexemes("washhands")
    ['~ashhands', '~shhands', '~hhands', '~hands', '~ands']
    """
    if len(word) > INFIX_MAX_WORD:
        return []
    return [INFIX_MARK + word[start:] for start in range(1, len(word) - INFIX_MIN_LENGTH + 1)]


def _fuzzy_eligible(word: str) -> bool:
    # Numbers are left out: a number one digit away is another number, not a misread one.
    return FUZZY_MIN_LENGTH <= len(word) <= FUZZY_MAX_LENGTH and not _DIGITS.fullmatch(word)


def _fuzzy_key(position: int, rest: str) -> str:
    return f"{FUZZY_MARK}{position}{FUZZY_MARK}{rest}"


def fuzzy_keys(word: str) -> list[str]:
    """Return the fuzzy keys a (folded) document word is indexed with: one per character, deleted.

    ``^i^rest`` is the word without its i-th character (1-based). Two words of the same length that
    share a key differ in that one character; a query word ``q`` equal to a key's ``rest`` is the word
    with one character fewer. Words shorter than :data:`FUZZY_MIN_LENGTH`, longer than
    :data:`FUZZY_MAX_LENGTH` or made of digits only get none.

    >>> fuzzy_keys("strabe")
    ['^1^trabe', '^2^srabe', '^3^stabe', '^4^strbe', '^5^strae', '^6^strab']
    """
    if not _fuzzy_eligible(word):
        return []
    return [_fuzzy_key(i, word[: i - 1] + word[i:]) for i in range(1, len(word) + 1)]


def fuzzy_query_lexemes(word: str) -> list[str]:
    """Return the lexemes that find document words one edit away from a (folded) query word.

    Python reference of the SQL function ``immich_search.fuzzy_terms_v2`` (tests compare them). Both words
    have at least :data:`FUZZY_MIN_LENGTH` characters:

    * a misread character at i: the key ``^i^`` + ``word`` without its i-th character;
    * an extra character in the photo, at i: the key ``^i^`` + ``word`` (i from 1 to len + 1);
    * a character missing in the photo: ``word`` without one character, a plain lexeme;
    * two letters read as one glyph (:data:`OCR_CONFUSIONS`: ``rn`` as ``m``, ``ss``, fold()'s ``ß``, as
      ``B``): the pair may be one misread or missing character (``straße`` finds ``StraBe``);
    * one glyph read as two letters (``m`` as ``rn``, ``d`` as ``cl``, ``w`` as ``vv``): plain lexemes.

    Returns:
        Sorted, distinct lexemes; empty for a word that gets no fuzzy matching (see :func:`fuzzy_keys`).
    """
    if not _fuzzy_eligible(word):
        return []
    found = set()
    # Plain lexemes (the photo's word shorter than the query's) only down to FUZZY_MIN_LENGTH: both words
    # must be long enough, as keys exist only for such document words.
    for i in range(1, len(word) + 1):
        rest = word[: i - 1] + word[i:]
        found.add(_fuzzy_key(i, rest))
        if len(rest) >= FUZZY_MIN_LENGTH:
            found.add(rest)
    for i in range(1, len(word) + 2):
        found.add(_fuzzy_key(i, word))
    for start in range(len(word) - 1):
        if word[start : start + 2] in OCR_CONFUSIONS:
            rest = word[:start] + word[start + 2 :]
            found.add(_fuzzy_key(start + 1, rest))
            if len(rest) >= FUZZY_MIN_LENGTH:
                found.add(rest)
    for start, char in enumerate(word):
        if char in _SPLIT_GLYPHS:
            found.add(word[:start] + _SPLIT_GLYPHS[char] + word[start + 1 :])
    return sorted(found)


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
        char
        if char in "-" or char.isascii() and char.isalnum()
        else (f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
        for char in characters
    )


def cjk_lexemes(run: str) -> list[str]:
    """Return the lexemes a CJK run is matched by: ``[char]`` for one character, else its bigrams."""
    return [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]


def jieba_pieces(run: str) -> list[str]:
    """Split a CJK run into pieces jieba cuts (``[\u4e00-\u9fd5]+``) and the pieces between them.

    >>> jieba_pieces("东京タワー")
    ['东京', 'タワー']
    """
    return _HAN_OR_OTHER.findall(run)
