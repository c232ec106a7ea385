"""``immich-search doctor``: check the database for everything immich-search needs."""

from __future__ import annotations

import sys

import click
from rich.table import Table

from immich_search.commands.common import CONTEXT_SETTINGS, Settings, console, pass_settings


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing; the exit status says whether all is well.")
@pass_settings
def doctor(settings: Settings, quiet: bool) -> None:
    """Check the database for everything immich-search needs, and say how to fix what is missing.

    Exits 1 when a required piece is missing; warnings are optional features.

    \b
    Example:
      immich-search doctor
    """
    from immich_search.db import connect
    from immich_search.doctor import FAIL, WARN, run_checks

    url = settings.resolve_url()
    with connect(url) as conn:
        checks = run_checks(conn, url)
    if not quiet:
        table = Table("check", "status", "detail", "how to fix")
        colours = {"ok": "green", WARN: "yellow", FAIL: "red"}
        for check in checks:
            colour = colours[check.status]
            fix = check.fix if check.status != "ok" else ""
            table.add_row(check.name, f"[{colour}]{check.status}[/{colour}]", check.detail, fix)
        console.print(table)
    if any(check.status == FAIL for check in checks):
        sys.exit(1)
