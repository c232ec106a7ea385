"""The work queue in ``immich_search.job``: claim with ``FOR UPDATE SKIP LOCKED``, lease, acknowledge.

Many workers in many processes and machines share one queue: a claim takes due jobs no other
transaction holds and stamps a lease; a worker that dies leaves its lease to expire, and the job is
claimed again. Acknowledgements check the lease owner, so a worker whose lease was taken over cannot
overwrite the new owner's state.
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

DEFAULT_LEASE_S = 300.0
"""Seconds a claim is held before another worker may take the job over."""

MAX_ATTEMPTS = 5
"""Attempts before a retryable failure becomes final."""

BACKOFF_BASE_S = 30.0
BACKOFF_MAX_S = 3600.0


def worker_id() -> str:
    """Return a unique lease owner name: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def retry_delay_s(attempts: int) -> float:
    """Exponential backoff in seconds after ``attempts`` attempts: 30 s, 60 s, 120 s, ... at most 1 h."""
    return min(BACKOFF_BASE_S * 2 ** max(attempts - 1, 0), BACKOFF_MAX_S)


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker holds: ``asset_id`` (str uuid), ``task`` (``ocr`` | ``clip``), ``attempts`` so far."""

    asset_id: str
    task: str
    attempts: int


class JobQueue:
    """Claims and acknowledges jobs for one worker (``owner``).

    Args:
        pool: connections to Immich's database.
        owner: this worker's lease owner name (default :func:`worker_id`).
        lease_s: lease length in seconds.
    """

    def __init__(self, pool: ConnectionPool, owner: str | None = None, lease_s: float = DEFAULT_LEASE_S):
        self.pool = pool
        self.owner = owner or worker_id()
        self.lease_s = lease_s

    def claim(self, tasks: Sequence[str], limit: int) -> list[ClaimedJob]:
        """Claim the due jobs of ``tasks`` of up to ``limit`` assets (all of an asset's tasks together).

        Returns an empty list when none is due.
        """
        with self.pool.connection() as conn:
            rows = conn.execute(
                query("claim_jobs"),
                {"tasks": list(tasks), "limit": limit, "owner": self.owner, "lease_s": self.lease_s},
            ).fetchall()
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

    def release(self) -> None:
        """Give back every job this worker still holds (clean shutdown, e.g. Ctrl-C)."""
        with self.pool.connection() as conn:
            conn.execute(query("release_jobs"), {"owner": self.owner})
