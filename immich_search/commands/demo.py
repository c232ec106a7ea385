"""``immich-search demo``: build an Immich-shaped library, index it and run example queries."""

from __future__ import annotations

from pathlib import Path

import click

from immich_search.commands.common import CONTEXT_SETTINGS, Settings, console, pass_settings, progress_bar


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Index these photos instead of the generated ones.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the demo library's media files go (default: under the user's data dir).",
)
@pass_settings
def demo(settings: Settings, images: Path | None, workdir: Path | None) -> None:
    """Build an Immich-shaped library, index it and run example `ocr:` queries.

    Runs on the embedded PostgreSQL unless --database-url is given (use a scratch database: the demo
    creates Immich's tables when they are missing).

    \b
    Examples:
      immich-search demo
      immich-search demo --images ~/Pictures/receipts
    """
    from immich_search.demo import run_demo

    # Never Immich's DB_* variables here: the demo writes an Immich-shaped library into its database.
    if settings.database_url:
        url = settings.database_url
    else:
        from immich_search.embedded import default_embedded_dir, start_embedded

        url = start_embedded(settings.embedded or default_embedded_dir())
    run_demo(url, images=images, workdir=workdir, console=console, progress=progress_bar())
