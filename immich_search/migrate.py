"""Schema migrations: alembic revisions that apply named files of ``sql/schema/``.

``upgrade`` is safe to run at every start: it is idempotent and holds a PostgreSQL advisory lock, so two
containers starting at once apply each revision once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import psycopg
import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import immich_search
from alembic import command, op
from immich_search.db import CONNECT_TIMEOUT_S
from immich_search.errors import SchemaError
from immich_search.sqlfiles import query, read_sql

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


def _engine(url: str) -> sa.engine.Engine:
    """An engine on ``url`` (a libpq URL or ``key=value`` string), one fresh connection per use."""
    return sa.create_engine(
        "postgresql+psycopg://",
        creator=lambda: psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S),
        poolclass=sa.pool.NullPool,
    )


def _script_location() -> str:
    """The revisions folder: the repository's ``alembic/``, installed as ``immich_search/migrations``.

    It has no ``__init__.py`` on purpose: run from the repository root, a regular package named
    ``alembic`` would shadow the alembic library itself. So it is found by path: beside the package in
    an installed wheel, or at the repository root in a source checkout (editable install).
    """
    package_dir = Path(immich_search.__file__).resolve().parent
    for candidate in (package_dir / "migrations", package_dir.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return str(candidate)
    raise SchemaError(f"the migrations folder is missing (looked beside {package_dir})")


def _config(connection: sa.engine.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", _script_location())
    config.attributes["connection"] = connection
    return config


def _run(url: str, action: str, target: str) -> None:
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
            try:
                if action == "upgrade":
                    _require_immich_tables(connection)
                connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
                connection.commit()
                if action == "upgrade":
                    command.upgrade(_config(connection), target)
                    _follow_zhparser(connection)
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


def _follow_zhparser(connection: sa.engine.Connection) -> None:
    """Point ``immich_search.zh`` at the zhparser installed now (revision 0006), at every upgrade.

    A revision runs once; zhparser may be installed later (docker/postgres-zhparser), so this re-check
    is what makes "create the extension, then run migrate again" work. A no-op below revision 0006.
    """
    if connection.exec_driver_sql(query("zh_configure_exists")).scalar_one():
        connection.exec_driver_sql(query("zh_configure"))


def _require_immich_tables(connection: sa.engine.Connection) -> None:
    """Refuse to migrate a database that is not Immich's: our tables reference ``public.asset``."""
    missing = [
        table
        for table in ("asset", "asset_file", "user", "partner")
        if connection.exec_driver_sql("SELECT to_regclass(%s)", (f'public."{table}"',)).scalar_one() is None
    ]
    if missing:
        raise SchemaError(
            f"Immich's tables are missing here ({', '.join('public.' + t for t in missing)}): point "
            "--database-url (or DB_*) at Immich's own database, v2 or later"
        )


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
    config.set_main_option("script_location", _script_location())
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_revision(url: str) -> str | None:
    """Return the revision the database at ``url`` is at, or ``None`` when never migrated."""
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table_schema": SCHEMA})
            return context.get_current_revision()
    finally:
        engine.dispose()
