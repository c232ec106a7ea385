"""A sync worker process for tests: ``python -m tests.sync_worker_main DATABASE_URL MEDIA_ROOT LEASE_S``.

It runs exactly what ``immich-search sync`` runs for one worker (``run_sync``), one pass, with the fake
:class:`tests.sync_fakes.SlowEngine` (steered by ``SYNC_TEST_*`` variables) instead of RapidOCR.
"""

from __future__ import annotations

import logging
import sys

from immich_search.sync.workers import WorkerSpec, run_sync

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    database_url, media_root, lease_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
    spec = WorkerSpec(
        database_url=database_url,
        media_root=media_root,
        immich_media_location="/data",
        ocr_source="rapidocr",
        ocr_engine="tests.sync_fakes:SlowEngine",
        clip=False,
        batch_size=2,
        lease_s=lease_s,
        heartbeat_s=lease_s / 10,
    )
    report = run_sync(spec)
    print(f"done {report.done} failed {report.failed}", flush=True)
