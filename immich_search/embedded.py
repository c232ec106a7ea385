"""The embedded default: a real PostgreSQL 16 with pgvector started by the project itself (pgserver).

pgserver (https://github.com/orm011/pgserver) ships PostgreSQL 16 and pgvector 0.6.2 in a wheel, with no
contrib modules (no pg_trgm, no unaccent); the SQL of this project detects that and works without them.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import platformdirs

from immich_search.errors import ConfigError, DatabaseUnavailableError

EMBEDDED_DATABASE = "immich"
"""Name of the Immich-shaped database created inside the embedded server."""


def default_embedded_dir() -> Path:
    """Return the default data directory of the embedded server: ``<user data dir>/immich-search/pg``."""
    return Path(platformdirs.user_data_dir("immich-search")) / "pg"


def start_embedded(data_dir: str | os.PathLike[str], database: str = EMBEDDED_DATABASE) -> str:
    """Start (or reuse) the embedded PostgreSQL at ``data_dir`` and make sure ``database`` exists.

    The server keeps running while any process uses it and stops when the last one exits (pgserver's
    ``cleanup_mode='stop'``), so consecutive CLI commands reuse one data directory. pgserver counts its
    users in ``DIR/.handle_pids.json`` and stops the server at the exit of the last one; a user killed
    with SIGKILL never leaves that list, and the server would then run for ever. So processes that no
    longer exist are struck from the list first (see :func:`prune_dead_users`), and SIGTERM (``kill``,
    ``docker stop``) ends this process through Python's exit handlers, which stop the server when it is
    the last user. A server left by a killed command thus stops when the next command using it exits.

    Args:
        data_dir: directory of the cluster; created with ``initdb`` when empty.
        database: database to create if missing.

    Returns:
        A libpq URL (Unix socket) for ``database``.

    Raises:
        ConfigError: pgserver is not installed (install the ``embedded`` extra).
        DatabaseUnavailableError: the server could not be started.
    """
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); pgserver copes.
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as exc:  # optional extra
        raise ConfigError(
            "the embedded PostgreSQL needs the pgserver package: pip install 'immich-search[embedded]'"
        ) from exc
    path = Path(data_dir).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    prune_dead_users(path)
    _exit_on_sigterm()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = pgserver.get_server(path, cleanup_mode="stop")
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
        if "(1 row)" not in exists:
            server.psql(f'CREATE DATABASE "{database}";')
        return server.get_uri(database)
    except Exception as exc:  # pgserver raises plain exceptions with initdb/pg_ctl output
        raise DatabaseUnavailableError(f"could not start the embedded PostgreSQL at {path}: {exc}") from exc


HANDLE_PIDS = ".handle_pids.json"
"""pgserver's list of the processes using a data directory (``pgserver/postgres_server.py``)."""


def prune_dead_users(data_dir: Path) -> list[int]:
    """Strike processes that no longer exist from pgserver's list of users of ``data_dir``.

    Returns:
        The process ids struck (empty when the list is missing, unreadable or all alive).
    """
    import json

    handle = data_dir / HANDLE_PIDS
    try:
        pids = [int(pid) for pid in json.loads(handle.read_text())]
    except (OSError, ValueError, TypeError):
        return []
    dead = [pid for pid in pids if not _alive(pid)]
    if dead:
        handle.write_text(json.dumps([pid for pid in pids if pid not in dead]))
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into a normal exit (exit handlers run) when nothing else handles it."""
    import signal
    import sys
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
