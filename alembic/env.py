"""Alembic environment: runs revisions on the connection handed over by immich_search.migrate.

The version table lives in schema ``immich_search``, never in Immich's ``public``.
"""

from alembic import context

VERSION_SCHEMA = "immich_search"

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    version_table_schema=VERSION_SCHEMA,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
