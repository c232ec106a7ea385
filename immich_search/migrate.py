"""Schema migrations: alembic revisions that apply named files of ``sql/schema/``.

``upgrade`` is safe to run at every start: it is idempotent and holds a PostgreSQL advisory lock, so two
containers starting at once apply each revision once.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

import sqlalchemy as sa
from alembic import command, op
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from immich_search.errors import SchemaError
from immich_search.sqlfiles import read_sql

SCHEMA = "immich_search"
MIGRATION_LOCK_KEY = 0x1A5E_A4C4
"""Advisory lock id held while migrating (an arbitrary constant unique to this project)."""


def apply_sql_files(names: Sequence[str]) -> None:
    """Execute ``sql/<name>`` files in order inside the running alembic revision.

    Files are run whole on the psycopg connection with no parameters (psycopg then sends them as one
    simple query, untouched by placeholder processing), so they may hold ``DO`` blocks and dollar quoting.
    """
    driver_connection = op.get_bind().connection.driver_connection
    with driver_connection.cursor() as cursor:
        for name in names:
            cursor.execute(read_sql(name))


def _sqlalchemy_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _config(connection: sa.engine.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("immich_search.migrations")))
    config.attributes["connection"] = connection
    return config


def _run(url: str, action: str, target: str) -> None:
    engine = sa.create_engine(_sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
            try:
                connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
                connection.commit()
                if action == "upgrade":
                    command.upgrade(_config(connection), target)
                else:
                    command.downgrade(_config(connection), target)
                    if target == "base":
                        _drop_schema_if_empty(connection)
                connection.commit()
            finally:
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")
                connection.commit()
    finally:
        engine.dispose()


def _drop_schema_if_empty(connection: sa.engine.Connection) -> None:
    """After a downgrade to base, drop alembic's version table and the schema when nothing else is left."""
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {SCHEMA}.alembic_version")
    left = connection.exec_driver_sql(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
        (SCHEMA,),
    ).scalar_one()
    left += connection.exec_driver_sql(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s",
        (SCHEMA,),
    ).scalar_one()
    if left:
        raise SchemaError(f"schema {SCHEMA} still holds {left} objects after the downgrade; left in place")
    connection.exec_driver_sql(f"DROP SCHEMA {SCHEMA}")


def upgrade(url: str, target: str = "head") -> None:
    """Apply revisions up to ``target`` (default the newest) on the database at ``url``.

    Raises:
        sqlalchemy.exc.OperationalError: the database cannot be reached.
        sqlalchemy.exc.ProgrammingError: a revision failed (e.g. Immich's tables are missing).
    """
    _run(url, "upgrade", target)


def downgrade(url: str, target: str) -> None:
    """Revert revisions down to ``target``; ``"base"`` removes schema immich_search entirely."""
    _run(url, "downgrade", target)


def head_revision() -> str:
    """Return the newest revision id shipped with this version."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("immich_search.migrations")))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_revision(url: str) -> str | None:
    """Return the revision the database at ``url`` is at, or ``None`` when never migrated."""
    engine = sa.create_engine(_sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table_schema": SCHEMA})
            return context.get_current_revision()
    finally:
        engine.dispose()
