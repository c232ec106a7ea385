"""``sync --watch``: keep up with Immich, woken by LISTEN/NOTIFY, polling the ``updateId`` cursors otherwise.

Immich's own tables carry no trigger of ours, so nothing tells us at once that a photo was uploaded:
the watcher polls discovery every ``interval`` seconds, which costs two index probes when nothing changed
(see :mod:`immich_search.sync.discovery`). Our own queue does notify: a statement that leaves a job
pending and due (``immich_search.requeue(...)`` from psql, ``immich-search reprocess``, discovery by
another process, a released job) sends ``NOTIFY immich_search_sync`` (revision 0004's trigger on
``immich_search.job``), and every watcher wakes at once. The watcher also wakes when the next retry's
backoff or an orphaned lease runs out. Trashed and deleted photos need no sync: every search filters
``"deletedAt"`` and our rows go with Immich's by ``ON DELETE CASCADE``.

A notification is only a hint; the work always comes from the queue, so a lost notification (a dropped
connection) costs at most one ``interval``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg

from immich_search.db import CONNECT_TIMEOUT_S
from immich_search.sync.pipeline import DATABASE_ERRORS, SyncPipeline, SyncReport

log = logging.getLogger(__name__)

CHANNEL = "immich_search_sync"
"""The NOTIFY channel of revision 0004's ``immich_search.job_notify_v1`` trigger."""

DEFAULT_INTERVAL_S = 5.0
"""Seconds between polls of the ``updateId`` cursors."""


class Listener:
    """A dedicated autocommit connection that LISTENs on :data:`CHANNEL`; reconnects after an outage.

    Args:
        conninfo: libpq connection string of the database.
        kwargs: extra ``psycopg.connect`` arguments (the pool's).
    """

    def __init__(self, conninfo: str, kwargs: dict | None = None) -> None:
        self.conninfo = conninfo
        self.kwargs = {"connect_timeout": CONNECT_TIMEOUT_S, **(kwargs or {})}
        self._conn: psycopg.Connection | None = None

    def listen(self) -> bool:
        """Make sure the connection is up and listening; return whether it had to be (re)made.

        A watcher listens before its first pass, so nothing notified during that pass is missed.
        """
        if self._conn is not None and not self._conn.closed:
            return False
        return self._connect() is not None

    def _connect(self) -> psycopg.Connection | None:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            self._conn = psycopg.connect(self.conninfo, autocommit=True, **self.kwargs)
            self._conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error:
            log.debug("cannot LISTEN (the database is away?); polling only", exc_info=True)
            self._conn = None
        return self._conn

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds for a notification; return whether one came.

        Without a working connection it simply sleeps (polling goes on); when the connection had to be
        made again, it returns ``True`` at once: notifications may have been missed meanwhile.
        """
        if self.listen():
            return True
        conn = self._conn
        if conn is None:
            time.sleep(max(timeout_s, 0.0))
            return False
        try:
            got = False
            for _ in conn.notifies(timeout=max(timeout_s, 0.0), stop_after=1):
                got = True
            if got:  # drain the ones that came together, so they do not wake the next wait
                for _ in conn.notifies(timeout=0.0):
                    pass
            return got
        except psycopg.Error:
            log.debug("LISTEN connection lost; reconnecting at the next wait", exc_info=True)
            self.close()
            return False

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None


def watch(
    pipeline: SyncPipeline,
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    force: bool = False,
    discover_changes: bool = True,
    stop: threading.Event | None = None,
    on_report: Callable[[SyncReport], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    wake_slice_s: float = 1.0,
) -> None:
    """Run passes until ``stop`` is set: one at once, then one after every wake-up.

    Args:
        pipeline: the pipeline to run (its pool's conninfo is used for LISTEN).
        interval_s: seconds between polls when nothing notifies.
        force: redo every asset in the first pass.
        discover_changes: look for new and changed assets in each pass.
        stop: set it to end the loop after the current pass (e.g. from a signal handler).
        on_report: called with the report of every pass.
        on_progress: passed to every pass.
        wake_slice_s: the longest single wait, so ``stop`` and heartbeats are seen promptly.

    Raises:
        DatabaseUnavailableError: the database stayed away longer than the pipeline's outage timeout.
    """
    stop = stop or threading.Event()
    listener = Listener(pipeline.pool.conninfo, pipeline.pool.kwargs)
    names = list(pipeline.tasks)
    listener.listen()  # before the first pass: a requeue during it wakes the next wait
    try:
        while not stop.is_set():
            report = pipeline.run_once(force=force, discover_changes=discover_changes, on_progress=on_progress)
            force = False
            if on_report:
                on_report(report)
            deadline = time.monotonic() + interval_s
            try:
                due = pipeline.queue.next_due_s(names)
            except DATABASE_ERRORS:
                due = None  # the next pass waits the outage out
            if due is not None:
                deadline = min(deadline, time.monotonic() + max(due, 0.0) + 0.05)
            last_beat = time.monotonic()
            while not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or listener.wait(min(left, wake_slice_s)):
                    break
                if time.monotonic() - last_beat >= pipeline.heartbeat_s:
                    pipeline.heartbeat()
                    last_beat = time.monotonic()
    finally:
        listener.close()
