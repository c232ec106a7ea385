"""Build-time SQL generators (never imported at run time): :mod:`.tables` writes the SQL made from Python
data, :mod:`.schema` describes the installed schema for ``sql/schema.sql``. ``python -m immich_search.sqlgen``
rewrites the generated files."""
