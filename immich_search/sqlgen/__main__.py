"""``python -m immich_search.sqlgen tables|schema URL|immich-subset``: rewrite the generated SQL files.

* ``tables``: ``sql/schema/0001_fold_v1.sql``, ``0003_fold_char.sql`` and ``0003_cjk_dictionary.sql``;
* ``schema URL``: ``sql/schema.sql``, described from a database migrated to head (e.g. a scratch copy of
  Immich's schema: ``createdb x && psql x -f sql/immich/v3_1_subset.sql && immich-search --database-url
  postgresql:///x migrate``);
* ``immich-subset [--check]``: ``sql/immich/v3_1_subset.sql`` from Immich's own schema dump
  ``sql/immich/schema-v3.1.0.sql`` (see :mod:`immich_search.sqlgen.immich_subset`).
"""

from __future__ import annotations

import sys
from pathlib import Path

SQL = Path(__file__).resolve().parents[2] / "sql"


def main(argv: list[str]) -> int:
    """Run the generator named by ``argv``; return the exit status (2 for a usage error)."""
    if argv[:1] == ["tables"]:
        from immich_search.sqlgen.tables import cjk_dictionary_sql, fold_char_sql, fold_sql

        for name, text in (
            ("0001_fold_v1.sql", fold_sql()),
            ("0003_fold_char.sql", fold_char_sql()),
            ("0003_cjk_dictionary.sql", cjk_dictionary_sql()),
        ):
            (SQL / "schema" / name).write_text(text, encoding="utf-8")
        return 0
    if argv[:1] == ["schema"] and len(argv) == 2:
        import psycopg

        from immich_search.sqlgen.schema import describe_schema

        with psycopg.connect(argv[1]) as conn:
            (SQL / "schema.sql").write_text(describe_schema(conn), encoding="utf-8")
        return 0
    if argv[:1] == ["immich-subset"]:
        from immich_search.sqlgen.immich_subset import main as immich_subset

        return immich_subset(argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
