"""``immich-search status``: where the sync stands (jobs, lag behind Immich, throughput, workers, errors)."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from immich_search.commands.common import Settings, console, pass_settings, require_migrated


def print_status(status, out: Console) -> None:
    """Print a :class:`~immich_search.sync.status.SyncStatus` as tables on ``out``."""
    from immich_search.sync.status import STATES, UNDISCOVERED_CAP, describe_later, human_seconds

    jobs = Table("task", *STATES, "runnable now", "oldest waiting", title="jobs")
    for task in sorted(set(status.counts) | set(status.waiting)):
        counts = status.counts.get(task, {})
        runnable, oldest = status.waiting.get(task, (0, None))
        jobs.add_row(task, *(str(counts.get(state, 0)) for state in STATES), str(runnable), human_seconds(oldest))
    if not jobs.rows:
        jobs.add_row("-", *("0" for _ in STATES), "0", "-")
    out.print(jobs)

    lag = Table("task", "not yet discovered", "seen Immich's changes up to", "behind", title="behind Immich")
    for item in status.lag:
        ahead = f"{item.undiscovered}+" if item.undiscovered >= UNDISCOVERED_CAP else str(item.undiscovered)
        seen = item.cursor_time.strftime("%Y-%m-%d %H:%M:%S %Z") if item.cursor_time else "never"
        behind = "up to date" if item.undiscovered == 0 else human_seconds(item.behind_s)
        lag.add_row(item.task, ahead, seen, behind)
    out.print(lag)

    rate = status.throughput
    eta = "" if status.eta_s is None else f"; the backlog clears in about {human_seconds(status.eta_s)}"
    if status.eta_s is None and not any(jobs for jobs, _ in status.waiting.values()) and status.later:
        eta = "; nothing is runnable now"
    out.print(
        f"throughput: {rate.get('last_minute', 0)} jobs in the last minute, {rate.get('last_10_minutes', 0)} in "
        f"10 minutes ({status.per_second:.2f}/s), {rate.get('last_hour', 0)} in the last hour{eta}"
    )

    if status.later:
        out.print(f"waiting: {describe_later(status.later)}")

    if status.ocr_engines:
        engines = Table("engine", "model", "photos", "latest", title="OCR text read by")
        for row in status.ocr_engines:
            latest = row["latest"].strftime("%Y-%m-%d %H:%M:%S %Z") if row["latest"] else "-"
            engines.add_row(row["engine"], row["model"], str(row["photos"]), latest)
        out.print(engines)
        ours = {row["engine"] for row in status.ocr_engines if row["engine"] != "immich"}
        if len(ours) > 1:
            out.print(
                "photos were read by more than one OCR engine; `immich-search sync --reread-other-engines "
                "--ocr-engine NAME` re-reads the others with NAME"
            )
    else:
        out.print("OCR text: none indexed yet")
    if status.into_immich:
        counts = status.into_immich
        written = counts.get("written", 0) + counts.get("unchanged", 0)
        out.print(
            f"descriptions into Immich (--write-immich): {written} written, {counts.get('kept', 0)} written by a "
            f"person kept, {counts.get('locked', 0)} in the locked folder left alone, {counts.get('failed', 0)} "
            "not written yet (retried; see recent errors)"
        )

    if status.workers:
        workers = Table("worker", "source", "tasks", "state", "done", "failed", "last heartbeat", title="workers")
        for worker in status.workers:
            state = worker["state"] if worker["alive"] else f"[red]silent ({worker['state']})[/red]"
            workers.add_row(
                worker["id"],
                worker["source"],
                ",".join(worker["tasks"]),
                state,
                str(worker["jobs_done"]),
                str(worker["jobs_failed"]),
                f"{human_seconds(worker['silent_s'])} ago",
            )
        out.print(workers)
    else:
        out.print("workers: none running (start one with `immich-search sync --watch`)")

    if status.recent_errors:
        errors = Table("asset", "task", "state", "attempts", "error", title="recent errors")
        for error in status.recent_errors:
            errors.add_row(
                error["asset_id"], error["task"], error["state"], str(error["attempts"]), error["last_error"]
            )
        out.print(errors)
    else:
        out.print("recent errors: none")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--errors", default=10, show_default=True, type=click.IntRange(0, 1000), help="Recent errors to list.")
@pass_settings
def status(settings: Settings, as_json: bool, errors: int) -> None:
    """Show where the sync stands: jobs by task and state, how far behind Immich, throughput, workers, errors.

    "Behind Immich" counts the photos Immich changed that discovery has not queued yet, and how old the
    newest change it has seen is compared with Immich's newest. Workers on every machine are listed with
    their last heartbeat; one silent for minutes has died (its jobs are taken over when its leases expire).

    \b
    Examples:
      immich-search status
      immich-search status --json --errors 50
    """
    from immich_search.db import connect
    from immich_search.sync.status import sync_status

    url = settings.resolve_url()
    require_migrated(url)
    with connect(url) as conn:
        result = sync_status(conn, errors=errors)
    if as_json:
        click.echo(json.dumps(result.as_json(), ensure_ascii=False, indent=2))
    else:
        print_status(result, console)
