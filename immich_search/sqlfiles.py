"""Load the project's SQL by name: every runtime query and schema object lives in a ``.sql`` file.

``sql/`` (installed as the package ``immich_search.sql``) holds:

* ``schema/NNNN_name.sql``: schema objects applied by alembic revisions, by file name;
* ``queries/*.sql``: runtime queries, each file holding one or more blocks headed ``-- name: NAME``;
* ``immich/*.sql``: Immich-shaped schema for tests and the demo.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_BLOCK = re.compile(r"^-- name: (?P<name>[a-z0-9_]+)\s*$", re.MULTILINE)


def read_sql(relative_path: str) -> str:
    """Return the text of ``sql/<relative_path>``.

    Raises:
        FileNotFoundError: no such file in the installed package.
    """
    return resources.files("immich_search.sql").joinpath(relative_path).read_text(encoding="utf-8")


@cache
def queries() -> dict[str, str]:
    """Return every named runtime query of ``sql/queries/*.sql`` as ``{name: sql}``.

    Raises:
        ValueError: two blocks share a name.
    """
    found: dict[str, str] = {}
    folder = resources.files("immich_search.sql").joinpath("queries")
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".sql"):
            continue
        text = entry.read_text(encoding="utf-8")
        marks = list(_BLOCK.finditer(text))
        for index, mark in enumerate(marks):
            end = marks[index + 1].start() if index + 1 < len(marks) else len(text)
            name = mark.group("name")
            if name in found:
                raise ValueError(f"query {name!r} is defined twice (second time in {entry.name})")
            found[name] = text[mark.end() : end].strip()
    return found


def query(name: str) -> str:
    """Return the runtime query called ``name``.

    Raises:
        KeyError: no query has that name.
    """
    try:
        return queries()[name]
    except KeyError:
        raise KeyError(f"no SQL query named {name!r} in sql/queries/") from None
