"""The search-bar query language: ``ocr:发票``, ``clip:一只猫``, plain hybrid queries, quotes, ``-exclude``.

Grammar (DESIGN.md, "Query language"):

* an optional mode prefix ``ocr:`` (OCR text only), ``desc:`` (vision-model descriptions only) or
  ``clip:`` (vector only), case-insensitive; without one the query is hybrid;
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
    DESC = "desc"
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
    truncated: bool = False
    """The query was longer than :data:`MAX_QUERY_CHARS` and only its beginning is searched."""

    @property
    def positive(self) -> tuple[Term, ...]:
        """Terms that must match."""
        return tuple(term for term in self.terms if not term.negated)

    @property
    def negative(self) -> tuple[Term, ...]:
        """Terms that must not match."""
        return tuple(term for term in self.terms if term.negated)


# White space is spelled out (not \\s) so that the SQL twin in immich_search.ocr_tsquery_v4, whose
# classes depend on the database locale, reads queries exactly the same way. NFKC runs first and turns
# the ideographic space, full-width colon and full-width quote into their ASCII forms.
_SPACE = " \t\n\r\f\v"
# ASCII-only case folding: with full Unicode folding "clıp:" (dotless i) would match and then fail Mode().
_PREFIX = re.compile(rf"^[{_SPACE}]*(ocr|clip|desc)[{_SPACE}]*:[{_SPACE}]*", re.IGNORECASE | re.ASCII)
_TERM = re.compile(rf'(-?)"([^"]*)(?:"|$)|(-?)([^{_SPACE}]+)')
MAX_QUERY_CHARS = 256
"""Characters of a query (after NFKC) that are searched; the rest is dropped. The SQL twin is
``immich_search.capped_query_v1`` (revision 0005). A bound keeps every query's tsquery small: a query of
3,000 U+FDFA (each NFKC-expands to 18 characters, four Arabic words) ran for a minute and then failed with
"value is too big in tsquery"; 256 characters of the worst kind are tokenised and searched well within a
second, and search-bar queries and OCR lines are far shorter."""

_NORMALISED_PREFIX = 4 * MAX_QUERY_CHARS
"""Characters normalised before the cut: NFKC never needs text this far on to decide the first
:data:`MAX_QUERY_CHARS` characters, and normalising a megabyte would cost more than the search."""


def capped(query: str) -> tuple[str, bool]:
    """Return ``(the query as searched, whether it was cut)``: NFKC, then at most :data:`MAX_QUERY_CHARS`.

    Twin of ``immich_search.capped_query_v1``; ``query`` is any string (``None`` reads as empty).
    """
    text = unicodedata.normalize("NFKC", (query or "")[:_NORMALISED_PREFIX])
    return text[:MAX_QUERY_CHARS], len(text) > MAX_QUERY_CHARS or len(query or "") > _NORMALISED_PREFIX


def mode_prefix(query: str) -> tuple[Mode | None, str]:
    """Split the mode prefix off a query: ``(Mode.OCR, rest)``, ``(Mode.CLIP, rest)``, ``(Mode.DESC, rest)``
    or ``(None, query)``.

    The one reader of the ``ocr:``/``clip:``/``desc:`` prefix (the SQL twin is ``immich_search.query_mode_v2``).
    ``rest`` is NFKC-normalised when there was a prefix (NFKC turns a full-width colon into ``:``);
    without one, ``query`` comes back unchanged.
    """
    normalised = unicodedata.normalize("NFKC", query or "")
    prefix = _PREFIX.match(normalised)
    if not prefix:
        return None, query
    return Mode(prefix.group(1).lower()), normalised[prefix.end() :]


# The curly quotes a Chinese keyboard types count as quotes.
_QUOTES = str.maketrans({"“": '"', "”": '"'})


def parse(query: str, default_mode: Mode = Mode.HYBRID) -> ParsedQuery:
    """Parse a search-bar query.

    Args:
        query: the raw query; any string, including empty and malformed ones.
        default_mode: the mode of a query without prefix.

    Returns:
        The parsed query; a query with no usable term has ``terms == ()``. Only the first
        :data:`MAX_QUERY_CHARS` characters (after NFKC) are read (``truncated`` says so).
    """
    text, truncated = capped(query)
    mode, text = mode_prefix(text)
    mode = mode or default_mode
    text = text.translate(_QUOTES)
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
    return ParsedQuery(mode=mode, terms=tuple(terms), text=clip_text, truncated=truncated)
