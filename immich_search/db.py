"""Connections to Immich's PostgreSQL: a pool with pgvector's type registered on every connection."""

from __future__ import annotations

import psycopg
from psycopg_pool import ConnectionPool

from immich_search.config import check_database_url
from immich_search.errors import ConfigError, DatabaseUnavailableError

CONNECT_TIMEOUT_S = 10
"""Seconds libpq waits for the server before giving up (a down host must not hang a command)."""


def _register_vector(conn: psycopg.Connection) -> None:
    """Register pgvector's ``vector`` type on ``conn`` when the extension exists in its database."""
    row = conn.execute("SELECT 1 FROM pg_type WHERE typname = 'vector'").fetchone()
    if row is not None:
        from pgvector.psycopg import register_vector

        register_vector(conn)
    # End the implicit transaction so a pooled connection is returned idle.
    conn.commit()


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    """Open one connection to ``url`` with pgvector's type registered.

    Raises:
        DatabaseUnavailableError: the server is unreachable or refused the connection; the message
            names the host (never the password) and libpq's reason.
        ConfigError: ``url`` is not a PostgreSQL URL.
    """
    try:
        conn = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=autocommit)
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())  # libpq's message spans lines ("\n\tIs the server running...")
        raise DatabaseUnavailableError(f"cannot connect to the database {describe_url(url)}: {reason}") from exc
    except psycopg.ProgrammingError as exc:  # libpq cannot parse the URL (e.g. "notaurl")
        check_database_url(url, "the database URL")
        raise ConfigError(f"the database URL is not usable: {exc}") from exc
    _register_vector(conn)
    return conn


def open_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 4,
    wait_timeout: float = 30.0,
    connect_timeout: int = CONNECT_TIMEOUT_S,
    check: bool = False,
) -> ConnectionPool:
    """Open a connection pool on ``url``; connections have pgvector's type registered.

    Args:
        wait_timeout: seconds a caller waits for a connection before ``PoolTimeout`` (an
            ``OperationalError``): with the database down, how soon a request fails.
        connect_timeout: seconds libpq waits for the server on each new connection (libpq's minimum is 2).
        check: test each connection as it is handed out (one empty round trip), so that connections
            broken by a database restart are replaced instead of failing a request.

    Raises:
        DatabaseUnavailableError: no connection could be made within ``CONNECT_TIMEOUT_S`` seconds.
    """
    # Fail fast with libpq's own reason rather than the pool's generic timeout.
    connect(url).close()
    pool = ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={"connect_timeout": connect_timeout},
        configure=_register_vector,
        check=ConnectionPool.check_connection if check else None,
        timeout=wait_timeout,
        open=False,
    )
    pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
    return pool


def describe_url(url: str) -> str:
    """Return ``url`` without its password, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(unparseable URL)"
    info.pop("password", None)
    host = info.get("host", "localhost")
    port = info.get("port", "5432")
    return f"{info.get('user', '')}@{host}:{port}/{info.get('dbname', '')}"
