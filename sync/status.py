"""Where the sync stands: jobs by task and state, recent errors, throughput, workers, lag behind Immich.

Every figure is one cheap query (``sql/queries/sync.sql``, ``status_*``): the lag reads Immich's newest
``"updateId"`` by a backward index scan and counts undiscovered assets by an index range scan (capped at
:data:`UNDISCOVERED_CAP`); throughput and errors use revision 0004's partial indexes on ``job``. The
counts by state group the job table (one row per asset and task): a sequential scan, fine for a command a
person runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

import psycopg

from immich_search.sqlfiles import query

UNDISCOVERED_CAP = 100_000
"""Undiscovered assets are counted up to this many (shown as "100000+")."""

STATES = ("pending", "running", "done", "failed")


@dataclass
class TaskLag:
    """How far one task's discovery is behind Immich.

    Attributes:
        task: ``ocr`` | ``clip``.
        cursor_time: the time of the last Immich change discovery has seen (``None``: never ran).
        behind_s: seconds between Immich's newest asset change and that cursor (0: caught up).
        undiscovered: live assets changed since, not yet queued (capped at :data:`UNDISCOVERED_CAP`).
    """

    task: str
    cursor_time: datetime | None
    behind_s: float
    undiscovered: int


@dataclass
class LaterJobs:
    """Jobs of one task that no worker may take yet, and when the first of them can run.

    Attributes:
        task: ``ocr`` | ``clip``.
        reason: ``leased`` (held by a worker until its lease expires; a killed worker's jobs wait for
            that) or ``backoff`` (waiting to be retried after a failure).
        jobs: how many.
        next_s: seconds until the first of them becomes runnable (>= 0).
    """

    task: str
    reason: str
    jobs: int
    next_s: float


def human_seconds(seconds: float | None) -> str:
    """Format a duration for people: ``42 s``, ``7 min``, ``3.5 h``, ``2.0 d``; ``-`` for ``None``."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def later_jobs(conn: psycopg.Connection) -> list[LaterJobs]:
    """Return the jobs that are neither runnable now nor finished, per task and reason (leased, backoff)."""
    return [
        LaterJobs(task, reason, int(jobs), float(next_s))
        for task, reason, jobs, next_s in conn.execute(query("status_later"))
    ]


def describe_later(later: list[LaterJobs]) -> str:
    """Say in one line what waits and when it runs, e.g. ``3 ocr jobs leased by a worker (the first lease
    expires in 4 min), 2 clip jobs in retry backoff (the first is due in 42 s)``; empty when nothing waits."""
    parts = []
    for item in later:
        when = human_seconds(item.next_s)
        if item.reason == "leased":
            parts.append(f"{item.jobs} {item.task} job(s) leased by a worker (the first lease expires in {when})")
        else:
            parts.append(f"{item.jobs} {item.task} job(s) in retry backoff (the first is due in {when})")
    return ", ".join(parts)


@dataclass
class SyncStatus:
    """The answer of :func:`sync_status`.

    Attributes:
        counts: ``{task: {state: jobs}}`` (states pending, running, done, failed).
        waiting: ``{task: (jobs runnable now, seconds the oldest has waited)}``.
        throughput: jobs finished ``{"last_minute", "last_10_minutes", "last_hour"}``.
        per_second: jobs per second over the last 10 minutes.
        lag: one :class:`TaskLag` per task with a cursor.
        workers: rows of ``immich_search.worker`` (id, host, pid, tasks, source, state, jobs_done,
            jobs_failed, started_at, heartbeat_at, silent_s, alive).
        recent_errors: the newest jobs with an error (asset_id, task, state, attempts, last_error, updated_at).
        eta_s: seconds to clear what is runnable and undiscovered at the recent rate (``None``: no rate,
            or nothing is runnable while :attr:`later` jobs wait).
        later: jobs not yet runnable (:class:`LaterJobs`: leased, or in retry backoff).
        ocr_engines: OCR rows by what read them: ``{"engine", "model", "photos", "latest"}`` (most photos
            first; engine ``immich`` for Immich's own OCR).
        into_immich: descriptions written into Immich (``--write-immich``) by the outcome of their last try:
            ``{"written" | "unchanged" | "kept" | "locked" | "failed": assets}`` (empty when never used).
    """

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    waiting: dict[str, tuple[int, float]] = field(default_factory=dict)
    throughput: dict[str, int] = field(default_factory=dict)
    per_second: float = 0.0
    lag: list[TaskLag] = field(default_factory=list)
    workers: list[dict] = field(default_factory=list)
    recent_errors: list[dict] = field(default_factory=list)
    eta_s: float | None = None
    later: list[LaterJobs] = field(default_factory=list)
    ocr_engines: list[dict] = field(default_factory=list)
    into_immich: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict:
        """Return the status as JSON-ready data (times as ISO 8601 strings)."""
        return _jsonable(asdict(self))


def _jsonable(value):
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _undiscovered(conn: psycopg.Connection, cursor) -> int:
    """Live assets changed after ``updateId`` ``cursor``, counted up to :data:`UNDISCOVERED_CAP`."""
    return int(conn.execute(query("status_undiscovered"), {"cursor": cursor, "cap": UNDISCOVERED_CAP}).fetchone()[0])


def sync_status(conn: psycopg.Connection, *, errors: int = 10, alive_s: float = 120.0) -> SyncStatus:
    """Collect the sync's status from a migrated database.

    Args:
        conn: a connection to Immich's database.
        errors: how many recent errors to list.
        alive_s: a worker silent for longer than this is shown as not alive (it died or hangs).

    Returns:
        A :class:`SyncStatus`.
    """
    status = SyncStatus()
    for task, state, jobs in conn.execute(query("job_counts")):
        status.counts.setdefault(task, dict.fromkeys(STATES, 0))[state] = int(jobs)
    for task, jobs, oldest_s in conn.execute(query("status_waiting")):
        status.waiting[task] = (int(jobs), float(oldest_s or 0.0))
    row = conn.execute(query("status_throughput")).fetchone()
    status.throughput = {"last_minute": int(row[0]), "last_10_minutes": int(row[1]), "last_hour": int(row[2])}
    status.per_second = status.throughput["last_10_minutes"] / 600.0
    (latest_time,) = conn.execute(query("status_immich_latest")).fetchone()
    for name, update_id, cursor_time, _ in conn.execute(query("status_cursors")).fetchall():
        if not (name == "asset" or name.endswith(":asset")):
            continue  # the preview cursors follow the asset cursors
        task = "ocr" if name == "asset" else name.split(":", 1)[0]
        behind = (latest_time - cursor_time).total_seconds() if latest_time and cursor_time else 0.0
        status.lag.append(TaskLag(task, cursor_time, max(behind, 0.0), _undiscovered(conn, update_id)))
    if not status.lag:  # discovery never ran: everything is ahead
        status.lag.append(TaskLag("ocr", None, 0.0, _undiscovered(conn, "00000000-0000-0000-0000-000000000000")))
    columns = ["id", "host", "pid", "tasks", "source", "state", "jobs_done", "jobs_failed", "started_at",
               "heartbeat_at", "silent_s"]  # fmt: skip
    for values in conn.execute(query("status_workers")):
        worker = dict(zip(columns, values, strict=True))
        worker["alive"] = worker["silent_s"] <= alive_s
        status.workers.append(worker)
    columns = ["asset_id", "task", "state", "attempts", "last_error", "updated_at"]
    status.recent_errors = [
        {**dict(zip(columns, values, strict=True)), "asset_id": str(values[0])}
        for values in conn.execute(query("recent_errors"), {"limit": errors})
    ]
    status.later = later_jobs(conn)
    status.ocr_engines = [
        {"engine": engine, "model": model, "photos": int(photos), "latest": latest}
        for engine, model, photos, latest in conn.execute(query("status_ocr_engines"))
    ]
    status.into_immich = {outcome: int(n) for outcome, n in conn.execute(query("status_immich_writes"))}
    backlog = sum(jobs for jobs, _ in status.waiting.values()) + sum(lag.undiscovered for lag in status.lag)
    if status.per_second > 0 and backlog > 0:
        status.eta_s = backlog / status.per_second
    elif backlog == 0 and not status.later:
        status.eta_s = 0.0
    return status
