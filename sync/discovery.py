"""Incremental discovery: find new and changed assets and queue their jobs.

Two cursors follow Immich's uuid-v7 ``"updateId"`` columns: ``asset`` (new, edited, trashed or restored
assets) and ``asset_file`` previews (a preview regenerated after an edit or rotation, Immich #30992). A
job is requeued only when its preview changed, so a second run does no repeated work.

Each task keeps its own pair of cursors, so a task enabled later (``clip`` once a model is installed)
walks the whole library once while the others carry on from where they were.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg_pool import ConnectionPool

from immich_search.sqlfiles import query

ZERO_UUID = "00000000-0000-0000-0000-000000000000"
PAGE_SIZE = 2000
CURSORS = (("asset", "discover_changed_assets"), ("asset_file_preview", "discover_changed_previews"))
"""(cursor name, query) pairs; the ``ocr`` task uses the names as they are (revision 0001's), other
tasks prefix them with ``<task>:``."""


def cursor_name(task: str, name: str) -> str:
    """Return the cursor name of ``task`` for the Immich table cursor ``name``."""
    return name if task == "ocr" else f"{task}:{name}"


def discover(pool: ConnectionPool, tasks: Sequence[str], *, force: bool = False) -> int:
    """Queue jobs for every asset with a preview that changed since the last call.

    Args:
        pool: connections to Immich's database, migrated.
        tasks: the tasks to queue per asset (``("ocr",)``, ``("ocr", "clip")``).
        force: rescan from the beginning and requeue every job, done or not.

    Returns:
        The number of (asset, task) jobs queued or requeued.
    """
    return sum(_discover_task(pool, task, force) for task in tasks)


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
