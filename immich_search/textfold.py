"""Text folding, identical at index and query time and identical in Python and SQL.

``fold(text)`` applies, in this order:

1. Unicode NFKC (full-width forms and compatibility ideographs to their plain forms);
2. a one-character-to-one-character table that folds case (``str.lower``), strips accents
   (``é`` -> ``e``, from the Unicode decomposition) and maps traditional to simplified Chinese
   (OpenCC's ``TSCharacters.txt``, first candidate of each entry);
3. ``ß`` -> ``ss`` (the one case fold that changes length and matters for OCR'd German).

The same table is compiled into the SQL function ``immich_search.fold_v1`` (``translate()``; revision
0001, dropped by 0005) and into the table ``immich_search.fold_char`` behind ``immich_search.fold_v2`` by
the build-time generators in :mod:`immich_search.sqlgen.tables`; ``tests/test_textfold_tokens.py`` proves
the committed SQL equals the generated one and the SQL folds exactly like Python.
"""

from __future__ import annotations

import unicodedata
from functools import cache
from pathlib import Path

# Blocks whose letters carry case or accents worth folding for photo text: Latin-1 Supplement, Latin
# Extended-A/B, IPA, Greek, Cyrillic, Latin Extended Additional, Greek Extended (Unicode code charts).
_CASED_RANGES = ((0x00C0, 0x024F), (0x0370, 0x03FF), (0x0400, 0x04FF), (0x1E00, 0x1EFF), (0x1F00, 0x1FFF))
_ASCII_UPPER = (0x0041, 0x005A)


def _strip_accents(char: str) -> str:
    decomposed = unicodedata.normalize("NFD", char)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _opencc_t2s_pairs() -> list[tuple[str, str]]:
    """Read OpenCC's traditional->simplified character table as (traditional, simplified) pairs."""
    import opencc  # opencc-python-reimplemented ships OpenCC's dictionaries as text files

    table = Path(opencc.__file__).parent / "dictionary" / "TSCharacters.txt"
    pairs = []
    for line in table.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        source, _, targets = line.partition("\t")
        target = targets.split(" ")[0].strip()
        if len(source) == 1 and len(target) == 1 and source != target:
            pairs.append((source, target))
    return pairs


@cache
def fold_table() -> dict[str, str]:
    """Return the one-to-one fold table ``{character: folded character}`` (see the module docstring)."""
    table: dict[str, str] = {}
    for low, high in (_ASCII_UPPER, *_CASED_RANGES):
        for code in range(low, high + 1):
            char = chr(code)
            folded = _strip_accents(char.lower())
            if len(folded) == 1 and folded != char and unicodedata.category(char)[0] == "L":
                table[char] = folded
    for traditional, simplified in _opencc_t2s_pairs():
        table.setdefault(traditional, simplified)
    # Resolve chains (a -> b -> c) so applying the table once is enough, as translate() does.
    for source, target in list(table.items()):
        seen = {source}
        while target in table and target not in seen:
            seen.add(target)
            target = table[target]
        table[source] = target
    return {source: target for source, target in table.items() if source != target}


@cache
def _translation() -> dict[int, str]:
    return {ord(source): target for source, target in fold_table().items()}


def fold(text: str) -> str:
    """Fold ``text`` for matching: NFKC, case, accents, traditional -> simplified Chinese, ``ß`` -> ``ss``.

    Args:
        text: any string.

    Returns:
        The folded string; its length may differ from ``text`` (NFKC and ``ß``).
    """
    return unicodedata.normalize("NFKC", text).translate(_translation()).replace("ß", "ss")
