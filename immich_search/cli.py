"""The ``immich-search`` command line: the click group that assembles the commands.

The commands live in :mod:`immich_search.commands`, one module each; they never import this module.
Every command takes the database from ``--database-url``, else ``--embedded DIR``, else Immich's own
``DB_URL`` / ``DB_*`` variables, so the ``.env`` beside Immich's docker-compose.yml works unchanged.
"""

from __future__ import annotations

import logging

import click

from immich_search import __version__
from immich_search.commands.common import CONTEXT_SETTINGS, Settings
from immich_search.commands.demo import demo
from immich_search.commands.doctor import doctor
from immich_search.commands.embed import embed
from immich_search.commands.migrate import migrate
from immich_search.commands.ml import ml
from immich_search.commands.models import models
from immich_search.commands.models_download import download_command
from immich_search.commands.people import people
from immich_search.commands.reprocess import reprocess
from immich_search.commands.search import search
from immich_search.commands.serve import serve
from immich_search.commands.status import status
from immich_search.commands.sync import sync
from immich_search.errors import ImmichSearchError


class UserFacingGroup(click.Group):
    """A click group that prints our errors as one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context):  # noqa: D102
        try:
            return super().invoke(ctx)
        except ImmichSearchError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=UserFacingGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--database-url",
    envvar="IMMICH_SEARCH_DATABASE_URL",
    metavar="URL",
    help="PostgreSQL URL of Immich's database (env IMMICH_SEARCH_DATABASE_URL; default: Immich's DB_* vars).",
)
@click.option(
    "--embedded",
    envvar="IMMICH_SEARCH_EMBEDDED",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Start or reuse an embedded PostgreSQL with pgvector at DIR (env IMMICH_SEARCH_EMBEDDED).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(__version__, prog_name="immich-search")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, embedded: str | None, verbose: int) -> None:
    """Chinese full-text, OCR and Chinese-CLIP search for Immich, inside PostgreSQL.

    \b
    Examples:
      immich-search --database-url postgresql://postgres:postgres@localhost:5432/immich migrate
      immich-search sync --media-root /mnt/immich-library
      immich-search search 'ocr:发票' --user alice@example.com
    """
    if database_url and embedded:
        raise click.UsageError("give either --database-url or --embedded, not both")
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = Settings(database_url=database_url, embedded=embedded)


for command in (migrate, doctor, sync, search, embed, demo, status, reprocess, serve, models, ml, people):
    cli.add_command(command)
# `models download`: published ONNX exports (immich_search/runtime/download.py).
models.add_command(download_command)


def main() -> None:
    """Entry point of the ``immich-search`` script."""
    cli(prog_name="immich-search")


if __name__ == "__main__":
    main()
