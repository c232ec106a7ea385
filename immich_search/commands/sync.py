"""``immich-search sync``: index new and changed photos (OCR text and CLIP vectors)."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import click

from immich_search.commands.common import (
    CONTEXT_SETTINGS,
    Settings,
    err_console,
    pass_settings,
    progress_bar,
    require_migrated,
)
from immich_search.commands.describe_options import describe_options
from immich_search.commands.options import (
    clip_model_options,
    ocr_engine_options,
    ocr_source_option,
    preview_source_options,
)
from immich_search.progress_log import DEFAULT_INTERVAL_S as DEFAULT_PROGRESS_INTERVAL_S
from immich_search.progress_log import ProgressLog
from immich_search.runtime.loading import load_clip_model

EXIT_JOBS_WAITING = 75
"""Exit status of a one-pass sync that leaves jobs to run later (leased by another or a killed worker, or
in retry backoff): ``EX_TEMPFAIL`` of sysexits.h, "try again later". 0 means nothing is left to do now."""


@click.command(context_settings=CONTEXT_SETTINGS)
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
@describe_options
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
    describe=None,
    write_immich: str = "none",
) -> None:
    """Index new and changed photos: OCR text, with a cn-clip model image vectors, with a vision LLM
    (--describe-host) descriptions, for search.

    Each preview is read and decoded once for both. A second run does no repeated work. A missing or
    corrupt preview is recorded on its job with the reason (see the summary and `immich-search status`)
    and never stops the run; what can succeed later is retried with backoff. A database restart pauses
    the run until the database is back. Any number of sync processes, on any machines, share one queue.
    Changing the CLIP model (--clip-arch) re-embeds the library, as in Immich. On a terminal a progress
    bar shows how far it is; elsewhere (docker logs) and with --watch, a `sync progress` line does.
    A single pass exits 0 when nothing is left to do, and 75 (EX_TEMPFAIL) when jobs wait to run later
    (leased by another or a killed worker, or in retry backoff); it says which and when.

    \b
    Examples:
      immich-search sync --media-root /srv/immich/library
      immich-search sync --clip-model-dir /models --clip-arch ViT-B-16
      immich-search sync --force
      immich-search sync --watch --workers 2
      IMMICH_URL=http://immich:2283 IMMICH_API_KEY=key1,key2 immich-search sync --source api --watch
      immich-search sync --ocr-source immich   # index what Immich's own OCR found, in minutes
      immich-search sync --force --ocr-engine faster-paddle-tiny   # re-read the whole library with another engine
      immich-search sync --describe-host http://gpu:11434 --describe-model qwen2.5vl:3b --max-concurrent 4
      immich-search sync --describe-host http://gpu:11434 --describe-model qwen2.5vl:3b --write-immich missing
    """
    from immich_search.db import connect
    from immich_search.sync.api_source import split_api_keys
    from immich_search.sync.immich_write import build_writer, database_now, summary_line
    from immich_search.sync.status import describe_later, later_jobs
    from immich_search.sync.workers import WorkerSpec, build_source, run_sync, task_names

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
        describe=describe,
        write_immich=write_immich,
    )
    source = build_source(spec)  # a wrong media root, URL or missing key is reported before anything else
    writer = build_writer(write_immich, spec.immich_url, spec.api_keys)  # the same for --write-immich
    if writer is not None:
        writer.close()  # each worker builds its own
    url = settings.resolve_url()
    require_migrated(url)
    # After the database check (an unreachable database is the one line to read), before any job is queued.
    warning = getattr(source, "layout_warning", lambda: None)()
    if warning:
        click.echo(f"warning: {warning}", err=True)  # one line: it often lands in a log
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
    label = " + ".join(
        ["OCR"]
        + (["CLIP"] if spec.clip is not False else [])
        + ([f"describe (into Immich: {write_immich})" if write_immich != "none" else "describe"] if describe else [])
    )

    def print_report(report) -> None:
        if not (report.queued or report.done or report.failed or not watch):
            return
        per_task = ", ".join(f"{name} {count}" for name, count in sorted(report.by_task.items()))
        paused = f", paused {report.pauses}x for the database" if report.pauses else ""
        if report.deferred:
            paused += f", {report.deferred} waiting for a vision host"
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
        if write_immich != "none":
            with connect(url) as conn:
                since = database_now(conn)
        with progress_bar() as progress:
            bar = progress.add_task(label, total=None)
            if err_console.is_terminal:
                on_progress = lambda done, total: progress.update(bar, completed=done, total=total)  # noqa: E731
            else:  # no bar can be drawn (docker logs, a pipe): log lines instead
                on_progress = ProgressLog(label, progress_interval)
            report = run_sync(spec, workers=workers, force=force, clip_model=model, on_progress=on_progress)
        print_report(report)
        if write_immich != "none":
            with connect(url) as conn:
                line = summary_line(conn, write_immich, since)
            if line:
                click.echo(line)
        tasks = set(task_names(spec, spec.clip is not False))
        with connect(url) as conn:
            later = [item for item in later_jobs(conn) if item.task in tasks]
        if later:
            click.echo(
                f"not finished: {describe_later(later)}; run sync again after that (or keep `sync --watch` running)",
                err=True,
            )
            sys.exit(EXIT_JOBS_WAITING)
    except KeyboardInterrupt:
        click.echo("stopped; jobs in progress were given back to the queue", err=True)
        sys.exit(130)
