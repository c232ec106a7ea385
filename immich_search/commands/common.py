"""What the commands share: the global settings, the consoles, and small helpers (reachable and migrated
database, the searching user, printing hits, the progress bar).

Every command takes the database from ``--database-url``, else ``--embedded DIR``, else Immich's own
``DB_URL`` / ``DB_*`` variables, so the ``.env`` beside Immich's docker-compose.yml works unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from immich_search.config import check_database_url, database_url_from_env
from immich_search.errors import ConfigError, ImmichSearchError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
"""click settings of every command: ``-h`` as well as ``--help``, help text up to 110 columns."""

console = Console(stderr=False)
"""Standard output, for results."""

err_console = Console(stderr=True)
"""Standard error, for warnings and progress."""


@dataclass
class Settings:
    """Global options shared by every command (``ctx.obj``)."""

    database_url: str | None
    embedded: str | None

    def resolve_url(self) -> str:
        """Return the database URL to use, starting the embedded server when asked.

        Raises:
            ConfigError: no database was given, or the URL given cannot be a PostgreSQL URL.
        """
        if self.database_url:
            return check_database_url(self.database_url)
        if self.embedded:
            from immich_search.embedded import start_embedded

            return start_embedded(self.embedded)
        from_env = database_url_from_env()
        if from_env:
            return from_env
        raise ConfigError(
            "no database given: pass --database-url postgresql://USER:PASS@HOST:5432/immich, set Immich's "
            "DB_HOSTNAME/DB_USERNAME/DB_PASSWORD/DB_DATABASE_NAME (e.g. from Immich's .env), or use "
            "--embedded DIR for a local PostgreSQL"
        )


pass_settings = click.make_pass_decorator(Settings)
"""Decorator passing the :class:`Settings` to a command as its first argument."""


def check_reachable(url: str) -> None:
    """Connect once and close: a clear one-line error, not SQLAlchemy's traceback, when the server is down.

    Raises:
        ImmichSearchError: the database cannot be reached (see :func:`immich_search.db.connect`).
    """
    from immich_search.db import connect

    connect(url).close()


def require_migrated(target) -> None:
    """Check that schema ``immich_search`` is at the newest revision.

    Args:
        target: a database URL (one connection is opened, and a clear error given when the server is
            down) or an open psycopg connection (e.g. a pool's, so a command needs no extra connection).

    Raises:
        ImmichSearchError: unreachable, or the schema is missing or out of date (run ``migrate``).
    """
    from immich_search import migrate as migrations
    from immich_search.db import connect
    from immich_search.sqlfiles import query

    if isinstance(target, str):
        with connect(target) as conn:
            return require_migrated(conn)
    (migrated,) = target.execute(query("has_schema_revision")).fetchone()
    row = target.execute(query("schema_revision")).fetchone() if migrated else None
    if row is None or row[0] != migrations.head_revision():
        raise ImmichSearchError("schema immich_search is missing or out of date: run `immich-search migrate`")


def resolve_user(pool, who: str | None) -> tuple[str, str]:
    """Return ``(user id, email)`` for ``who`` (e-mail or id), or the only user when ``who`` is None.

    Raises:
        ConfigError: no such user, or several users and none named.
    """
    from immich_search.sqlfiles import query

    with pool.connection() as conn:
        if who:
            row = conn.execute(query("find_user"), {"who": who}).fetchone()
            if row is None:
                raise ConfigError(f"no Immich user with e-mail or id {who!r}")
            return str(row[0]), row[1]
        rows = conn.execute(query("list_users")).fetchall()
    if len(rows) == 1:
        return str(rows[0][0]), rows[0][1]
    if not rows:
        raise ConfigError("the database has no Immich user")
    raise ConfigError("several Immich users: pass --user EMAIL (results are limited to what that user may see)")


def print_hits(hits, out: Console | None = None) -> None:
    """Print search hits as a table (file name, score, snippet) on ``out`` (default: standard output)."""
    out = out or console
    if not hits:
        out.print("[yellow]no matches[/yellow]")
        return
    table = Table("#", "file", "score", "snippet")
    for rank, hit in enumerate(hits, 1):
        table.add_row(str(rank), hit.original_file_name, f"{hit.score:.3f}", hit.snippet)
    out.print(table)


def progress_bar() -> Progress:
    """Return a progress bar on standard error, drawn only on a terminal."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not err_console.is_terminal,
    )
