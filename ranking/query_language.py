"""The search-bar query language: ``ocr:发票``, ``clip:一只猫``, plain hybrid queries, quotes, ``-exclude``.

Grammar (DESIGN.md, "Query language"):

* an optional mode prefix ``ocr:`` (OCR text only), ``desc:`` (vision-model descriptions only) or
  ``clip:`` (vector only), case-insensitive; without one the query is hybrid;
* terms separated by white space; ``"..."`` makes a phrase (an unterminated quote runs to the end);
* a leading ``-`` excludes a term or phrase;
* ``person:NAME`` or ``person:"Two Words"`` (``person`` case-insensitive), anywhere in the query and as many
  as wanted: only photos showing every person named (the caller's people, names compared case-insensitively
  after NFKC; see docs/people.md). They are taken out before the mode prefix is read, so
  ``person:张三 ocr:发票`` is an ``ocr:`` query. ``-person:NAME`` is no person term (it excludes the text
  ``person:NAME``).

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
    people: tuple[str, ...] = ()
    """The names of the ``person:`` terms, in order (NFKC, as typed otherwise); a photo must show them all."""
    has_text: bool = True
    """Something besides ``person:`` terms and the mode prefix was typed; ``person:张三`` alone lists that
    person's photos, newest first."""
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

# One token of the query after its mode prefix, with the white space before it: a phrase, a person term
# (quoted or not), or a word. The SQL twin is immich_search.person_terms_v1 (revision 0011): PostgreSQL's
# regular expressions take the longest alternative where Python's take the first, so the alternatives are
# made exclusive (a word never starts where a phrase or a person term does) and both read the same tokens.
_PERSON = "[Pp][Ee][Rr][Ss][Oo][Nn]:"
_TOKEN = re.compile(
    rf'([{_SPACE}]*)(?:(-?"[^"]*(?:"|$))|{_PERSON}"([^"]*)(?:"|$)|{_PERSON}([^{_SPACE}"][^{_SPACE}]*)'
    rf'|((?!-?"|{_PERSON}[^{_SPACE}])-?[^{_SPACE}]+))'
)


def split_people(text: str) -> tuple[tuple[str, ...], str]:
    """Take the ``person:`` terms out of a query (NFKC-normalised, curly quotes already straightened).

    Returns ``(names, rest)``: the non-empty names in order (a quoted name without its outer white space),
    and the query without them: its mode prefix, then every other token with the white space before it
    (trailing white space dropped). Without person terms ``rest`` reads exactly as ``text``. Twin of
    ``immich_search.person_terms_v1``.
    """
    prefix = _PREFIX.match(text)
    head = text[: prefix.end()] if prefix else ""
    names: list[str] = []
    kept: list[str] = [head]
    for match in _TOKEN.finditer(text, len(head)):
        space, phrase, quoted, word, other = match.groups()
        if quoted is not None or word is not None:
            name = quoted.strip(_SPACE) if quoted is not None else word
            if name:
                names.append(name)
            kept.append(space)
        else:
            kept.append(space + (phrase if phrase is not None else other))
    return tuple(names), "".join(kept)


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
    people, text = split_people(text.translate(_QUOTES))
    mode, text = mode_prefix(text)
    mode = mode or default_mode
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
    return ParsedQuery(
        mode=mode,
        terms=tuple(terms),
        text=clip_text,
        truncated=truncated,
        people=people,
        has_text=bool(text.strip(_SPACE)),
    )
