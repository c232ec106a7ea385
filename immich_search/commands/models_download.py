"""The click command ``immich-search models download`` (the work is in :mod:`immich_search.runtime.download`)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from immich_search.errors import ImmichSearchError
from immich_search.runtime.manifest import MODEL_DIR_ENV


@click.command(name="download")
@click.argument("arch", default="ViT-B-16")
@click.option(
    "--model-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=MODEL_DIR_ENV,
    help=f"Model directory (env {MODEL_DIR_ENV}) [default: the user data folder].",
)
@click.option(
    "--base-url",
    envvar="IMMICH_SEARCH_MODEL_BASE_URL",
    metavar="URL",
    help="Fetch every file from URL<file name> instead (a mirror; env IMMICH_SEARCH_MODEL_BASE_URL).",
)
@click.option("--no-verify", is_flag=True, help="Do not load and test the models afterwards.")
def download_command(arch: str, model_dir: Path | None, base_url: str | None, no_verify: bool) -> None:
    """Download the published ONNX export of cn-clip ARCH (default ViT-B-16, about 760 MB), resuming
    an interrupted download, checking checksums where known, then verifying the models.

    \b
    Examples:
      immich-search models download ViT-B-16
      immich-search models download ViT-B-16 --base-url https://my-mirror.example/cn-clip/
      immich-search models download --model-dir /var/lib/immich-search/models
    """
    from immich_search.commands.models import verify_variants
    from immich_search.runtime.download import download_variant

    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), transient=False
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done, total=total)

        try:
            results = download_variant(arch, model_dir, base_url, progress=progress)
        except ImmichSearchError as error:
            raise click.ClickException(str(error)) from error
    for path, outcome in results:
        click.echo(f"{outcome:>10}  {path}")
    if no_verify:
        return
    try:
        reports = verify_variants(model_dir, arch)
    except ImmichSearchError as error:
        raise click.ClickException(str(error)) from error
    for report in reports:
        for check in report.checks:
            if not check.ok:
                click.echo(f"  FAIL {check.name}: {check.detail}")
    failed = [f"{r.arch} {r.precision}" for r in reports if not r.ok]
    if failed:
        raise click.ClickException(f"downloaded, but verification failed for {', '.join(failed)}")
    click.echo(f"verified: {', '.join(f'{r.arch} {r.precision}' for r in reports)}")
