"""The ``immich-search`` commands, one module each; :mod:`immich_search.commands.common` holds what they
share (settings, consoles, helpers) and :mod:`immich_search.commands.options` their shared options.
:mod:`immich_search.cli` assembles them into one click group; no command imports it."""
