"""Alembic revisions of schema immich_search (installed as immich_search.migrations)."""
