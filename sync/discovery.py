"""Incremental discovery: find new and changed assets and queue their jobs.

Two cursors follow Immich's uuid-v7 ``"updateId"`` columns: ``asset`` (new, edited, trashed or restored
assets) and ``asset_file`` previews (a preview regenerated after an edit or rotation, Immich #30992). A
job is requeued only when its preview changed, so a second run does no repeated work.

Each task keeps its own pair of cursors, so a task enabled later (``clip`` once a model is installed)
walks the whole library once while the others carry on from where they were.

Both queries are index range scans on Immich's own ``"updateId"`` indexes (``asset_updateId_idx``,
``asset_file_updateId_idx``), so a poll that finds nothing new costs two index probes: ``sync --watch``
polls every few seconds. Processes on many machines may discover at once; an advisory lock lets one at
a time walk the cursors (the others wait, then find the cursors moved on, or with ``wait=False`` skip
discovery and get on with the queue the discoverer is filling).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg
from psycopg_pool import ConnectionPool

from immich_search.sqlfiles import query

log = logging.getLogger(__name__)

ZERO_UUID = "00000000-0000-0000-0000-000000000000"
PAGE_SIZE = 2000
DISCOVERY_LOCK_KEY = 0x1A5E_D15C
"""Advisory lock id held while discovering (an arbitrary constant unique to this project)."""
CURSORS = (("asset", "discover_changed_assets"), ("asset_file_preview", "discover_changed_previews"))
"""(cursor name, query) pairs; the ``ocr`` task uses the names as they are (revision 0001's), other
tasks prefix them with ``<task>:``."""


def cursor_name(task: str, name: str) -> str:
    """Return the cursor name of ``task`` for the Immich table cursor ``name``."""
    return name if task == "ocr" else f"{task}:{name}"


def discover(pool: ConnectionPool, tasks: Sequence[str], *, force: bool = False, wait: bool = True) -> int:
    """Queue jobs for every asset with a preview that changed since the last call.

    Args:
        pool: connections to Immich's database, migrated.
        tasks: the tasks to queue per asset (``("ocr",)``, ``("ocr", "clip")``).
        force: rescan from the beginning and requeue every job, done or not.
        wait: when another process is discovering, wait for it (``True``) or return 0 at once.

    Returns:
        The number of (asset, task) jobs queued or requeued.

    Raises:
        psycopg.OperationalError: the database went away (discovery is idempotent: call it again).
    """
    with pool.connection() as lock:
        if wait:
            lock.execute(query("discovery_lock"), {"key": DISCOVERY_LOCK_KEY})
        elif not lock.execute(query("discovery_try_lock"), {"key": DISCOVERY_LOCK_KEY}).fetchone()[0]:
            lock.commit()
            return 0
        lock.commit()
        try:
            return sum(_discover_task(pool, task, force) for task in tasks)
        finally:
            try:
                lock.execute(query("discovery_unlock"), {"key": DISCOVERY_LOCK_KEY})
                lock.commit()
            except psycopg.Error:  # the connection broke: the server released the lock with it
                log.debug("discovery unlock failed", exc_info=True)


def _discover_task(pool: ConnectionPool, task: str, force: bool) -> int:
    queued = 0
    # A forced rescan walks every asset once; the preview cursor has nothing to add to it.
    for base_name, query_name in CURSORS[:1] if force else CURSORS:
        name = cursor_name(task, base_name)
        with pool.connection() as conn:
            row = conn.execute(query("get_cursor"), {"name": name}).fetchone()
        cursor = ZERO_UUID if force or row is None else str(row[0])
        while True:
            with pool.connection() as conn, conn.transaction():
                rows = conn.execute(query(query_name), {"cursor": cursor, "limit": PAGE_SIZE}).fetchall()
                if not rows:
                    break
                ready = [(asset_id, preview) for asset_id, _, preview, live in rows if live and preview]
                if ready:
                    result = conn.execute(
                        query("enqueue_jobs"),
                        {
                            "asset_ids": [asset_id for asset_id, _ in ready],
                            "preview_update_ids": [preview for _, preview in ready],
                            "tasks": [task],
                            "force": force,
                        },
                    )
                    queued += result.rowcount
                cursor = str(rows[-1][1])
                conn.execute(query("set_cursor"), {"name": name, "update_id": cursor})
            if len(rows) < PAGE_SIZE:
                break
    return queued
