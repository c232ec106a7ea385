"""Database configuration: an explicit URL, Immich's own ``DB_*`` variables, or the embedded server.

Immich's server reads ``DB_URL`` or ``DB_HOSTNAME``, ``DB_PORT``, ``DB_USERNAME``, ``DB_PASSWORD`` and
``DB_DATABASE_NAME`` (defaults ``database``, ``5432``, ``postgres``, ``postgres``, ``immich``; see Immich's
``server/src/repositories/config.repository.ts``). Reading the same names lets a user reuse Immich's
``.env`` file unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import quote

from immich_search.errors import ConfigError

# Immich's defaults for its database variables (server/src/repositories/config.repository.ts).
IMMICH_DB_DEFAULTS = {
    "DB_HOSTNAME": "database",
    "DB_PORT": "5432",
    "DB_USERNAME": "postgres",
    "DB_PASSWORD": "postgres",
    "DB_DATABASE_NAME": "immich",
}


def check_database_url(url: str, source: str = "--database-url") -> str:
    """Return ``url`` when libpq can read it (a ``postgresql://`` URL or a ``key=value`` string).

    Args:
        url: the connection string as given.
        source: where it came from, for the message (``--database-url``, ``DB_URL``).

    Raises:
        ConfigError: libpq cannot parse it; the message gives libpq's reason and the expected shape.
    """
    import psycopg

    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(
            f"{source} is not a PostgreSQL URL ({reason}): expected postgresql://USER:PASSWORD@HOST:5432/DATABASE"
        ) from None
    return url


def database_url_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """Build a libpq URL from Immich's database variables.

    Args:
        env: the environment to read (default ``os.environ``).

    Returns:
        ``DB_URL`` when set; otherwise a ``postgresql://`` URL from the ``DB_*`` parts when at least one
        of them is set (the others take Immich's defaults); ``None`` when none is set.

    Raises:
        ConfigError: ``DB_PORT`` is not a number, or ``DB_URL`` is not a PostgreSQL URL.
    """
    env = os.environ if env is None else env
    if env.get("DB_URL"):
        return check_database_url(env["DB_URL"], "DB_URL")
    if not any(env.get(name) for name in IMMICH_DB_DEFAULTS):
        return None
    parts = {name: env.get(name) or default for name, default in IMMICH_DB_DEFAULTS.items()}
    if not parts["DB_PORT"].isdigit():
        raise ConfigError(f"DB_PORT must be a port number, got {parts['DB_PORT']!r}")
    user = quote(parts["DB_USERNAME"], safe="")
    password = quote(parts["DB_PASSWORD"], safe="")
    database = quote(parts["DB_DATABASE_NAME"], safe="")
    return f"postgresql://{user}:{password}@{parts['DB_HOSTNAME']}:{parts['DB_PORT']}/{database}"
