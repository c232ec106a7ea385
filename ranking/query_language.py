"""The search-bar query language: ``ocr:发票``, ``clip:一只猫``, plain hybrid queries, quotes, ``-exclude``.

Grammar (DESIGN.md, "Query language"):

* an optional mode prefix ``ocr:`` (OCR text only) or ``clip:`` (vector only), case-insensitive; without
  one the query is hybrid;
* terms separated by white space; ``"..."`` makes a phrase (an unterminated quote runs to the end);
* a leading ``-`` excludes a term or phrase.

:func:`parse` never raises: whatever it cannot read as syntax it keeps as plain words.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from enum import Enum


class Mode(str, Enum):
    """Which branches answer a query."""

    OCR = "ocr"
    CLIP = "clip"
    HYBRID = "hybrid"


@dataclass(frozen=True)
class Term:
    """One query term: ``text`` as typed (unfolded), a quoted ``phrase`` or not, ``negated`` by ``-``."""

    text: str
    phrase: bool = False
    negated: bool = False


@dataclass(frozen=True)
class ParsedQuery:
    """A parsed query: its ``mode``, its ``terms`` and the ``text`` for the CLIP text encoder.

    ``text`` is the query without the mode prefix and without excluded terms.
    """

    mode: Mode
    terms: tuple[Term, ...] = field(default_factory=tuple)
    text: str = ""

    @property
    def positive(self) -> tuple[Term, ...]:
        """Terms that must match."""
        return tuple(term for term in self.terms if not term.negated)

    @property
    def negative(self) -> tuple[Term, ...]:
        """Terms that must not match."""
        return tuple(term for term in self.terms if term.negated)


# White space is spelled out (not \\s) so that the SQL twin in immich_search.ocr_tsquery_v1, whose
# classes depend on the database locale, reads queries exactly the same way. NFKC runs first and turns
# the ideographic space, full-width colon and full-width quote into their ASCII forms.
_SPACE = " \t\n\r\f\v"
# ASCII-only case folding: with full Unicode folding "clıp:" (dotless i) would match and then fail Mode().
_PREFIX = re.compile(rf"^[{_SPACE}]*(ocr|clip)[{_SPACE}]*:[{_SPACE}]*", re.IGNORECASE | re.ASCII)
_TERM = re.compile(rf'(-?)"([^"]*)(?:"|$)|(-?)([^{_SPACE}]+)')
# The curly quotes a Chinese keyboard types count as quotes.
_QUOTES = str.maketrans({"“": '"', "”": '"'})


def parse(query: str, default_mode: Mode = Mode.HYBRID) -> ParsedQuery:
    """Parse a search-bar query.

    Args:
        query: the raw query; any string, including empty and malformed ones.
        default_mode: the mode of a query without prefix.

    Returns:
        The parsed query; a query with no usable term has ``terms == ()``.
    """
    text = unicodedata.normalize("NFKC", query or "").translate(_QUOTES)
    mode = default_mode
    prefix = _PREFIX.match(text)
    if prefix:
        mode = Mode(prefix.group(1).lower())
        text = text[prefix.end() :]
    terms: list[Term] = []
    for match in _TERM.finditer(text):
        if match.group(2) is not None:
            body = match.group(2).strip(_SPACE)
            if body:
                terms.append(Term(body, phrase=True, negated=bool(match.group(1))))
            continue
        negated, word = bool(match.group(3)), match.group(4)
        if negated and word in {"-", ""}:
            continue
        terms.append(Term(word, negated=negated))
    clip_text = " ".join(term.text for term in terms if not term.negated)
    return ParsedQuery(mode=mode, terms=tuple(terms), text=clip_text)
