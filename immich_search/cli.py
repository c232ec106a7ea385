"""The ``immich-search`` command line.

Every command takes the database from ``--database-url``, else ``--embedded DIR``, else Immich's own
``DB_URL`` / ``DB_*`` variables, so the ``.env`` beside Immich's docker-compose.yml works unchanged.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from immich_search import __version__
from immich_search.clip_options import clip_model_location, clip_model_options, load_clip_model
from immich_search.config import database_url_from_env
from immich_search.errors import ConfigError, ImmichSearchError
from immich_search.model_commands import models as models_group
from immich_search.progress_log import DEFAULT_INTERVAL_S as DEFAULT_PROGRESS_INTERVAL_S
from immich_search.progress_log import ProgressLog
from immich_search.reprocess_command import reprocess as reprocess_command
from immich_search.serve.command import serve as serve_command
from immich_search.status_command import status as status_command
from immich_search.sync_options import ocr_engine_options, ocr_source_option, preview_source_options

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
console = Console(stderr=False)
err_console = Console(stderr=True)


@dataclass
class Settings:
    """Global options shared by every command."""

    database_url: str | None
    embedded: str | None

    def resolve_url(self) -> str:
        """Return the database URL to use, starting the embedded server when asked.

        Raises:
            ConfigError: no database was given.
        """
        if self.database_url:
            return self.database_url
        if self.embedded:
            from immich_search.embedded import start_embedded

            return start_embedded(self.embedded)
        from_env = database_url_from_env()
        if from_env:
            return from_env
        raise ConfigError(
            "no database given: pass --database-url postgresql://USER:PASS@HOST:5432/immich, set Immich's "
            "DB_HOSTNAME/DB_USERNAME/DB_PASSWORD/DB_DATABASE_NAME (e.g. from Immich's .env), or use "
            "--embedded DIR for a local PostgreSQL"
        )


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


pass_settings = click.make_pass_decorator(Settings)


@cli.command()
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
    _check_reachable(url)
    if downgrade:
        migrations.downgrade(url, downgrade)
        click.echo(f"downgraded to {downgrade}")
    else:
        migrations.upgrade(url)
        click.echo(f"schema immich_search at revision {migrations.current_revision(url)}")


def _check_reachable(url: str) -> None:
    from immich_search.db import connect

    connect(url).close()


@cli.command()
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


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not err_console.is_terminal,
    )


@cli.command()
@preview_source_options
@ocr_source_option("auto")
@ocr_engine_options
@click.option("--force", is_flag=True, help="Redo every asset, even those already indexed.")
@click.option(
    "--reread-other-engines",
    is_flag=True,
    help="First queue the photos another OCR engine read, so that --ocr-engine reads them again (OCR only; "
    "CLIP vectors stay).",
)
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1, 1000))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes on this machine (each loads its own models); more machines may run sync too.",
)
@click.option("--watch", is_flag=True, help="Keep running: index new and changed photos within seconds.")
@click.option(
    "--interval",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.5),
    help="Seconds between --watch polls (a psql requeue or another worker's news wakes it at once).",
)
@click.option(
    "--progress-interval",
    default=DEFAULT_PROGRESS_INTERVAL_S,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds between progress lines where no progress bar is drawn (--watch, docker logs, a pipe).",
)
@clip_model_options
@pass_settings
def sync(
    settings: Settings,
    media_root: str | None,
    immich_media_location: str | None,
    source: str,
    immich_url: str | None,
    api_keys: str | None,
    ocr_source: str,
    ocr_engine: str,
    ocr_det_max_side: int | None,
    force: bool,
    reread_other_engines: bool,
    batch_size: int,
    workers: int,
    watch: bool,
    interval: float,
    progress_interval: float,
    clip: bool | None,
    clip_model_dir: Path | None,
    clip_arch: str | None,
) -> None:
    """Index new and changed photos: OCR text and, with a cn-clip model, image vectors for search.

    Each preview is read and decoded once for both. A second run does no repeated work. A missing or
    corrupt preview is recorded on its job with the reason (see the summary and `immich-search status`)
    and never stops the run; what can succeed later is retried with backoff. A database restart pauses
    the run until the database is back. Any number of sync processes, on any machines, share one queue.
    Changing the CLIP model (--clip-arch) re-embeds the library, as in Immich. On a terminal a progress
    bar shows how far it is; elsewhere (docker logs) and with --watch, a `sync progress` line does.

    \b
    Examples:
      immich-search sync --media-root /srv/immich/library
      immich-search sync --clip-model-dir /models --clip-arch ViT-B-16
      immich-search sync --force
      immich-search sync --watch --workers 2
      IMMICH_URL=http://immich:2283 IMMICH_API_KEY=key1,key2 immich-search sync --source api --watch
      immich-search sync --ocr-source immich   # index what Immich's own OCR found, in minutes
      immich-search sync --force --ocr-engine rapidocr-v6   # re-read the whole library with another engine
    """
    from immich_search.sync.api_source import split_api_keys
    from immich_search.sync.workers import WorkerSpec, build_source, run_sync

    spec = WorkerSpec(
        database_url="",
        source=source,
        media_root=media_root,
        immich_media_location=immich_media_location,
        immich_url=immich_url,
        api_keys=split_api_keys(api_keys),
        ocr_source=ocr_source,
        ocr_engine=ocr_engine,
        ocr_det_max_side=ocr_det_max_side,
        clip=clip,
        clip_model_dir=str(clip_model_dir) if clip_model_dir else None,
        clip_arch=clip_arch,
        batch_size=batch_size,
    )
    build_source(spec)  # a wrong media root, URL or missing key is reported before anything else
    url = settings.resolve_url()
    _require_migrated(url)
    if reread_other_engines:
        from immich_search.ocr.moving import queue_other_engines

        queued = queue_other_engines(url, ocr_engine)
        click.echo(f"queued {queued} photo(s) read by another OCR engine than {ocr_engine}", err=True)
    model, why_not = load_clip_model(clip, clip_model_dir, clip_arch, "image")
    if why_not:
        err_console.print(f"[yellow]{why_not}[/yellow]\n[yellow]indexing OCR text only.[/yellow]")
    if workers > 1 and model is not None:
        model = None  # each worker process loads its own
        spec = replace(spec, clip=True)
    elif model is None:
        spec = replace(spec, clip=False)
    spec = replace(spec, database_url=url)
    label = "OCR + CLIP" if spec.clip is not False else "OCR"

    def print_report(report) -> None:
        if not (report.queued or report.done or report.failed or not watch):
            return
        per_task = ", ".join(f"{name} {count}" for name, count in sorted(report.by_task.items()))
        paused = f", paused {report.pauses}x for the database" if report.pauses else ""
        # A watcher's output is a log: each pass's line says when.
        stamp = f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} " if watch else ""
        click.echo(
            f"{stamp}queued {report.queued}, indexed {report.done}{f' ({per_task})' if per_task else ''}, "
            f"failed {report.failed} in {report.seconds:.1f} s ({report.images_per_second:.2f} jobs/s){paused}"
        )
        for asset_id, error in report.errors[:20]:
            click.echo(f"  {asset_id}: {error}", err=True)

    try:
        if watch:
            click.echo(f"watching for new and changed photos ({label}, {workers} worker(s)); Ctrl-C stops", err=True)
            run_sync(
                spec,
                workers=workers,
                watch_mode=True,
                interval_s=interval,
                force=force,
                clip_model=model,
                on_report=print_report,
                on_progress=ProgressLog(label, progress_interval),
            )
            return
        with _progress() as progress:
            bar = progress.add_task(label, total=None)
            if err_console.is_terminal:
                on_progress = lambda done, total: progress.update(bar, completed=done, total=total)  # noqa: E731
            else:  # no bar can be drawn (docker logs, a pipe): log lines instead
                on_progress = ProgressLog(label, progress_interval)
            report = run_sync(spec, workers=workers, force=force, clip_model=model, on_progress=on_progress)
        print_report(report)
    except KeyboardInterrupt:
        click.echo("stopped; jobs in progress were given back to the queue", err=True)
        sys.exit(130)


def _require_migrated(url: str) -> None:
    from immich_search import migrate as migrations

    _check_reachable(url)  # a clear one-line error, not SQLAlchemy's traceback, when the server is down
    if migrations.current_revision(url) != migrations.head_revision():
        raise ImmichSearchError("schema immich_search is missing or out of date: run `immich-search migrate`")


def resolve_user(pool, who: str | None) -> tuple[str, str]:
    """Return ``(user id, email)`` for ``who`` (e-mail or id), or the only user when ``who`` is None.

    Raises:
        ConfigError: no such user, or several users and none named.
    """
    from immich_search.sqlfiles import query

    with pool.connection() as conn:
        if who:
            row = conn.execute(query("find_user"), {"who": who}).fetchone()
            if row is None:
                raise ConfigError(f"no Immich user with e-mail or id {who!r}")
            return str(row[0]), row[1]
        rows = conn.execute(query("list_users")).fetchall()
    if len(rows) == 1:
        return str(rows[0][0]), rows[0][1]
    if not rows:
        raise ConfigError("the database has no Immich user")
    raise ConfigError("several Immich users: pass --user EMAIL (results are limited to what that user may see)")


@cli.command()
@click.argument("query")
@click.option("--user", "who", metavar="EMAIL|ID", help="Search as this Immich user (default: the only user).")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--offset", default=0, type=click.IntRange(0))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, best first.")
@click.option(
    "--tokenizer",
    type=click.Choice(["python", "sql"]),
    default="python",
    show_default=True,
    help="Tokenise the query with jieba in Python, or in SQL exactly as psql users get it.",
)
@click.option("--include-locked", is_flag=True, help="Also search the user's locked folder.")
@click.option(
    "--mode",
    type=click.Choice(["ocr", "clip", "hybrid"]),
    help="Override the query's mode (default: its prefix, ocr: or clip:, else hybrid).",
)
@click.option(
    "--fusion",
    type=click.Choice(["rrf", "convex"]),
    default="rrf",
    show_default=True,
    help="Hybrid fusion: reciprocal rank fusion (k=60) or a convex combination of normalised scores.",
)
@click.option("--ocr-weight", default=1.0, show_default=True, type=click.FloatRange(0), help="Weight of the text.")
@click.option("--clip-weight", default=1.0, show_default=True, type=click.FloatRange(0), help="Weight of CLIP.")
@clip_model_options
@pass_settings
def search(
    settings: Settings,
    query: str,
    who: str | None,
    limit: int,
    offset: int,
    as_json: bool,
    tokenizer: str,
    include_locked: bool,
    mode: str | None,
    fusion: str,
    ocr_weight: float,
    clip_weight: float,
    clip: bool | None,
    clip_model_dir: Path | None,
    clip_arch: str | None,
) -> None:
    """Search photos by the text in them and by what they show, ranked in the database.

    QUERY uses the search-bar language: `ocr:发票` (text only), `clip:一只猫` (CLIP only), a plain
    query ranks by both (needs a cn-clip model, else text only); quotes make phrases, `-word` excludes.

    \b
    Examples:
      immich-search search '一只猫' --user alice@example.com
      immich-search search 'ocr:发票' --user alice@example.com
      immich-search search 'ocr:"wild life" -crossing' --limit 20 --json
      immich-search search 'clip:海边的日落' --clip-model-dir /models
      immich-search search '生日蛋糕' --fusion convex --ocr-weight 0.6 --clip-weight 0.4
    """
    from immich_search.db import open_pool
    from immich_search.ranking.hybrid_search import search as hybrid_search
    from immich_search.ranking.ocr_search import search_ocr
    from immich_search.ranking.query_language import Mode, parse

    if ocr_weight + clip_weight == 0:
        raise click.BadParameter("--ocr-weight and --clip-weight cannot both be 0", param_hint="weights")
    url = settings.resolve_url()
    _require_migrated(url)
    chosen = Mode(mode) if mode else parse(query).mode
    model = None
    if chosen is not Mode.OCR:
        model, why_not = load_clip_model(True if chosen is Mode.CLIP else clip, clip_model_dir, clip_arch, "text")
        if why_not:
            err_console.print(f"[yellow]{why_not}[/yellow]\n[yellow]ranking by OCR text only.[/yellow]")
    with open_pool(url) as pool:
        user_id, _ = resolve_user(pool, who)
        if chosen is Mode.OCR or (chosen is Mode.HYBRID and model is None):
            hits = search_ocr(
                pool, query, user_id, limit=limit, offset=offset, include_locked=include_locked, tokenizer=tokenizer
            )
        else:
            hits = hybrid_search(
                pool,
                query,
                user_id,
                limit=limit,
                offset=offset,
                include_locked=include_locked,
                encoder=model,
                mode=chosen,
                fusion=fusion,
                ocr_weight=ocr_weight,
                clip_weight=clip_weight,
                tokenizer=tokenizer,
            )
    if as_json:
        click.echo(json.dumps([hit.as_json() for hit in hits], ensure_ascii=False, indent=2))
        return
    print_hits(hits)


@cli.command()
@click.argument("text", required=False)
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Embed this image.")
@clip_model_location
def embed(text: str | None, image: Path | None, clip_model_dir: Path | None, clip_arch: str | None) -> None:
    """Print the cn-clip vector of TEXT (or of --image) as a pgvector literal, for psql.

    \b
    Examples:
      immich-search embed '一只猫'
      immich-search embed --image cat.jpg
      psql "$DB_URL" -c "SELECT * FROM immich_search.search('一只猫', '$(immich-search embed 一只猫)', '<user id>')"
    """
    from PIL import Image, UnidentifiedImageError

    if (text is None) == (image is None):
        raise click.UsageError("give either TEXT or --image")
    model, _ = load_clip_model(True, clip_model_dir, clip_arch, "text" if text is not None else "image")
    if text is not None:
        vector = model.encode_texts([text])[0]
    else:
        try:
            with Image.open(image) as opened:
                vector = model.encode_images([opened.convert("RGB")])[0]
        except (UnidentifiedImageError, OSError) as error:
            raise click.BadParameter(f"cannot read {image}: {error}", param_hint="--image") from error
    click.echo("[" + ",".join(f"{value:.7g}" for value in vector) + "]")


def print_hits(hits, out: Console | None = None) -> None:
    """Print search hits as a table (file name, score, snippet) on ``out`` (default: standard output)."""
    out = out or console
    if not hits:
        out.print("[yellow]no matches[/yellow]")
        return
    table = Table("#", "file", "score", "snippet")
    for rank, hit in enumerate(hits, 1):
        table.add_row(str(rank), hit.original_file_name, f"{hit.score:.3f}", hit.snippet)
    out.print(table)


@cli.command()
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
    run_demo(url, images=images, workdir=workdir, console=console, progress=_progress())


# `immich-search models list|verify|export`: the Chinese-CLIP model files (immich_search/model_commands.py).
cli.add_command(models_group)
# `immich-search serve`: the HTTP service in front of Immich for its search bar (immich_search/serve/).
cli.add_command(serve_command)
# `immich-search status` and `reprocess`: the sync's state, and regenerating single photos (issue 5).
cli.add_command(status_command)
cli.add_command(reprocess_command)


def main() -> None:
    """Entry point of the ``immich-search`` script."""
    cli(prog_name="immich-search")


if __name__ == "__main__":
    main()
