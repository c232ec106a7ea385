"""The work queue in ``immich_search.job``: claim with ``FOR UPDATE SKIP LOCKED``, lease, acknowledge.

Many workers in many processes and machines share one queue: a claim takes due jobs no other
transaction holds and stamps a lease; a worker that dies leaves its lease to expire, and the job is
claimed again. A live worker renews its leases with a heartbeat (:meth:`JobQueue.heartbeat`, every
:data:`DEFAULT_LEASE_S` / 4 seconds), so a lease can be short: a dead worker's jobs are taken over within
a minute, a slow but living one keeps its own. Acknowledgements check the lease owner, so a worker whose
lease was taken over cannot overwrite the new owner's state. Each worker also keeps a row in
``immich_search.worker`` (what ``immich-search status`` lists).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg_pool import ConnectionPool

from immich_search.sqlfiles import query

DEFAULT_LEASE_S = 60.0
"""Seconds a claim is held, without a heartbeat, before another worker may take the job over."""

WORKER_FORGET_S = 3600.0
"""Rows of ``immich_search.worker`` silent for this long are removed (workers that died)."""

MAX_ATTEMPTS = 5
"""Attempts before a retryable failure becomes final."""

BACKOFF_BASE_S = 30.0
BACKOFF_MAX_S = 3600.0


def worker_id() -> str:
    """Return a unique lease owner name: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def next_due_s(pool: ConnectionPool, tasks: Sequence[str]) -> float | None:
    """Seconds until the next job of ``tasks`` becomes runnable (<= 0: now); ``None`` when none waits.

    A job waits for its retry backoff to end, or for the lease of a worker that stopped heartbeating.
    """
    with pool.connection() as conn:
        row = conn.execute(query("next_due"), {"tasks": list(tasks)}).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def retry_delay_s(attempts: int) -> float:
    """Exponential backoff in seconds after ``attempts`` attempts: 30 s, 60 s, 120 s, ... at most 1 h."""
    return min(BACKOFF_BASE_S * 2 ** max(attempts - 1, 0), BACKOFF_MAX_S)


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker holds: ``asset_id`` (str uuid), ``task`` (``ocr`` | ``clip`` | ``describe``),
    ``attempts`` so far."""

    asset_id: str
    task: str
    attempts: int


class JobQueue:
    """Claims and acknowledges jobs for one worker (``owner``).

    Args:
        pool: connections to Immich's database.
        owner: this worker's lease owner name (default :func:`worker_id`).
        lease_s: lease length in seconds.

    Attributes:
        done, failed: jobs this worker finished so far (reported by :meth:`heartbeat`).
        state: ``idle`` | ``working`` | ``paused`` (database outage), reported by :meth:`heartbeat`.
    """

    def __init__(self, pool: ConnectionPool, owner: str | None = None, lease_s: float = DEFAULT_LEASE_S):
        self.pool = pool
        self.owner = owner or worker_id()
        self.lease_s = lease_s
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.tasks: list[str] = []
        self.source = "files"
        self.done = 0
        self.failed = 0
        self.state = "idle"
        self.registered = False

    def claim(self, tasks: Sequence[str], limit: int, asset_ids: Sequence[str] | None = None) -> list[ClaimedJob]:
        """Claim the due jobs of ``tasks`` of up to ``limit`` assets (all of an asset's tasks together).

        Args:
            tasks: the task names to claim.
            limit: at most this many assets.
            asset_ids: claim only jobs of these assets (``None``: any).

        Returns an empty list when none is due.
        """
        params = {"tasks": list(tasks), "limit": limit, "owner": self.owner, "lease_s": self.lease_s}
        with self.pool.connection() as conn:
            if asset_ids is None:
                rows = conn.execute(query("claim_jobs"), params).fetchall()
            else:
                rows = conn.execute(query("claim_asset_jobs"), {**params, "asset_ids": list(asset_ids)}).fetchall()
        return [ClaimedJob(str(asset_id), task, attempts) for asset_id, task, attempts in rows]

    def count_runnable(self, tasks: Sequence[str]) -> int:
        """Return how many jobs of ``tasks`` are due now (pending, or running with an expired lease)."""
        with self.pool.connection() as conn:
            row = conn.execute(query("count_runnable"), {"tasks": list(tasks)}).fetchone()
        return int(row[0]) if row else 0

    def complete(self, conn: psycopg.Connection, job: ClaimedJob) -> bool:
        """Mark ``job`` done inside the caller's transaction; ``False`` if the lease was lost."""
        row = conn.execute(
            query("complete_job"), {"asset_id": job.asset_id, "task": job.task, "owner": self.owner}
        ).fetchone()
        return row is not None

    def fail(self, job: ClaimedJob, error: str, retryable: bool) -> None:
        """Record a failure: retried with backoff while attempts remain and ``retryable``, else final."""
        retry_in = retry_delay_s(job.attempts) if retryable and job.attempts < MAX_ATTEMPTS else None
        with self.pool.connection() as conn:
            conn.execute(
                query("fail_job"),
                {
                    "asset_id": job.asset_id,
                    "task": job.task,
                    "owner": self.owner,
                    "error": error[:2000],
                    "retry_in_s": retry_in,
                },
            )

    def defer(self, job: ClaimedJob, error: str, retry_in_s: float) -> None:
        """Put ``job`` back to wait ``retry_in_s`` seconds without counting this attempt (the asset is fine;
        a service it needs is away, e.g. every vision host)."""
        with self.pool.connection() as conn:
            conn.execute(
                query("defer_job"),
                {
                    "asset_id": job.asset_id,
                    "task": job.task,
                    "owner": self.owner,
                    "error": error[:2000],
                    "retry_in_s": retry_in_s,
                },
            )

    def release(self) -> None:
        """Give back every job this worker still holds (clean shutdown, e.g. Ctrl-C)."""
        with self.pool.connection() as conn:
            conn.execute(query("release_jobs"), {"owner": self.owner})

    def reserve(self, asset_ids: Sequence[str], tasks: Sequence[str]) -> list[ClaimedJob]:
        """Requeue the jobs of ``tasks`` of ``asset_ids`` and claim them for this worker, in one transaction.

        ``immich_search.requeue_v2`` resets them (a worker running one now loses its lease); claiming in
        the same transaction means no other worker, woken by the notification, takes them first. Hand
        them to :meth:`SyncPipeline.run_once <immich_search.sync.pipeline.SyncPipeline.run_once>`
        (``jobs=``) to process them.

        Returns:
            The jobs now held (assets that do not exist have none).
        """
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(query("requeue"), {"asset_ids": list(asset_ids), "tasks": list(tasks)})
            rows = conn.execute(
                query("claim_asset_jobs"),
                {
                    "asset_ids": list(asset_ids),
                    "tasks": list(tasks),
                    "limit": len(asset_ids),
                    "owner": self.owner,
                    "lease_s": self.lease_s,
                },
            ).fetchall()
        return [ClaimedJob(str(asset_id), task, attempts) for asset_id, task, attempts in rows]

    def next_due_s(self, tasks: Sequence[str]) -> float | None:
        """Seconds until the next job of ``tasks`` becomes runnable; see :func:`next_due_s`."""
        return next_due_s(self.pool, tasks)

    def register(self, tasks: Sequence[str], source: str) -> None:
        """Add this worker to ``immich_search.worker`` (and forget workers silent for an hour)."""
        self.tasks, self.source = list(tasks), source
        with self.pool.connection() as conn:
            conn.execute(query("prune_workers"), {"older_than_s": WORKER_FORGET_S})
            conn.execute(
                query("register_worker"),
                {"id": self.owner, "host": self.host, "pid": self.pid, "tasks": self.tasks, "source": source},
            )
        self.registered = True

    def heartbeat(self) -> None:
        """Renew every lease this worker holds and stamp its worker row with its counters and state.

        Raises:
            psycopg.OperationalError: the database is unreachable (the caller carries on; the leases
                simply run their course).
        """
        with self.pool.connection() as conn:
            conn.execute(query("extend_leases"), {"owner": self.owner, "lease_s": self.lease_s})
            if self.registered:
                conn.execute(
                    query("worker_heartbeat"),
                    {
                        "id": self.owner,
                        "host": self.host,
                        "pid": self.pid,
                        "tasks": self.tasks,
                        "source": self.source,
                        "state": self.state,
                        "done": self.done,
                        "failed": self.failed,
                    },
                )

    def unregister(self) -> None:
        """Remove this worker's row (clean exit)."""
        with self.pool.connection() as conn:
            conn.execute(query("unregister_worker"), {"id": self.owner})
        self.registered = False
