"""``immich-search migrate``: create, upgrade or remove schema immich_search."""

from __future__ import annotations

import click

from immich_search.commands.common import CONTEXT_SETTINGS, Settings, check_reachable, pass_settings


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--downgrade", metavar="REVISION", help="Revert to REVISION instead; 'base' removes everything.")
@pass_settings
def migrate(settings: Settings, downgrade: str | None) -> None:
    """Create or upgrade schema immich_search in Immich's database.

    Safe to run at every start: idempotent, and a lock keeps two starting containers from racing.
    Immich's own tables are never changed.

    \b
    Examples:
      immich-search migrate
      immich-search migrate --downgrade base   # remove immich-search completely
    """
    from immich_search import migrate as migrations

    url = settings.resolve_url()
    check_reachable(url)
    if downgrade:
        migrations.downgrade(url, downgrade)
        click.echo(f"downgraded to {downgrade}")
    else:
        migrations.upgrade(url)
        click.echo(f"schema immich_search at revision {migrations.current_revision(url)}")
