"""Exceptions that carry a message meant for the user (the CLI prints them without a traceback)."""


class ImmichSearchError(Exception):
    """Base class of every error immich-search raises on purpose; ``str(error)`` is user-facing."""


class ConfigError(ImmichSearchError):
    """The configuration is incomplete or contradictory (no database URL, bad media root, ...)."""


class DatabaseUnavailableError(ImmichSearchError):
    """The database cannot be reached or refused the connection; the message says which and why."""


class SchemaError(ImmichSearchError):
    """The database lacks something immich-search needs (a table, an extension, our migrations)."""
