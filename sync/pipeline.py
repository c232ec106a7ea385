"""The sync pipeline: claim a batch -> read and decode previews -> OCR and CLIP -> write -> acknowledge.

A batch holds the jobs of up to ``batch_size`` assets for every enabled task; each preview is read and
decoded once and handed to every task that asset has a job for. Reading and decoding the next batch
runs in a background thread while the current batch is computed, so the models, which dominate the
time, are kept busy. Each batch is written in one transaction together with the acknowledgements of its
jobs. A failure is recorded on its job and never stops the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from immich_search.sync.decode import decode_preview
from immich_search.sync.discovery import discover
from immich_search.sync.errors import JobError
from immich_search.sync.queue import ClaimedJob, JobQueue
from immich_search.sync.sources import MediaFileSource, PreviewRequest
from immich_search.sync.tasks import OcrTask, Task, ocr_row
from PIL import Image
from psycopg_pool import ConnectionPool

from immich_search.ocr_engine import RapidOcrEngine
from immich_search.sqlfiles import query

__all__ = ["DEFAULT_BATCH_SIZE", "OcrSync", "SyncPipeline", "SyncReport", "ocr_row"]

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 16
"""Assets per claimed batch (one transaction each)."""

ProgressCallback = Callable[[int, int], None]
"""Called with (jobs finished so far, jobs known) after each batch."""


@dataclass
class SyncReport:
    """What one pass did: jobs ``done``, ``failed`` (recorded with a reason), ``seconds`` of wall time.

    ``errors`` lists ``(asset id, "task: reason")``; ``by_task`` counts finished jobs per task.
    """

    queued: int = 0
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)
    by_task: dict[str, int] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        """Finished jobs per second of wall time (0 when nothing ran)."""
        return (self.done + self.failed) / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Asset:
    """One claimed asset: its jobs (one per task) and its decoded preview or the reason it has none."""

    asset_id: str
    jobs: list[ClaimedJob]
    image: Image.Image | None = None
    error: JobError | None = None


class SyncPipeline:
    """Runs the enabled tasks over the queue.

    Args:
        pool: connections to Immich's database (migrated).
        source: where preview bytes come from.
        tasks: what to compute, e.g. ``[OcrTask(), ClipTask(model)]`` (names must be distinct).
        batch_size: assets per claimed batch.
        queue: the job queue (default: a new worker identity on ``pool``).

    Raises:
        ValueError: no task, or two tasks with one name.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        source: MediaFileSource,
        tasks: Sequence[Task],
        batch_size: int = DEFAULT_BATCH_SIZE,
        queue: JobQueue | None = None,
    ) -> None:
        names = [task.name for task in tasks]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"tasks must be distinct and at least one, got {names}")
        self.pool = pool
        self.source = source
        self.tasks = {task.name: task for task in tasks}
        self.batch_size = batch_size
        self.queue = queue or JobQueue(pool)
        self._prepared = False

    def run_once(self, *, force: bool = False, on_progress: ProgressCallback | None = None) -> SyncReport:
        """Discover changes, then process every due job until the queue is empty.

        Args:
            force: requeue every asset, even those already done.
            on_progress: progress callback ``(finished, total)``.

        Returns:
            A :class:`SyncReport` of this pass.
        """
        started = time.monotonic()
        if not self._prepared:
            for task in self.tasks.values():
                task.prepare(self.pool)
            self._prepared = True
        names = list(self.tasks)
        report = SyncReport(queued=discover(self.pool, names, force=force))
        total = self.queue.count_runnable(names)
        finished = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as reader:
            pending: Future[list[_Asset]] | None = self._prefetch(reader)
            try:
                while pending is not None:
                    batch = pending.result()
                    if not batch:
                        break
                    pending = self._prefetch(reader)  # overlap reading the next batch with inference
                    finished += self._process(batch, report)
                    if on_progress:
                        on_progress(finished, max(total, finished))
            finally:
                if pending is not None:
                    pending.cancel()
                    try:
                        pending.result()
                    except Exception:  # noqa: BLE001 - shutting down; release() returns its jobs
                        log.debug("prefetch failed during shutdown", exc_info=True)
                self.queue.release()
        report.seconds = time.monotonic() - started
        return report

    def _prefetch(self, reader: ThreadPoolExecutor) -> Future[list[_Asset]]:
        return reader.submit(self._claim_and_decode)

    def _claim_and_decode(self) -> list[_Asset]:
        # Every runnable task of an asset is claimed together (claim_jobs), so its preview is decoded once.
        jobs = self.queue.claim(list(self.tasks), self.batch_size)
        if not jobs:
            return []
        assets: dict[str, _Asset] = {}
        for job in jobs:
            assets.setdefault(job.asset_id, _Asset(job.asset_id, [])).jobs.append(job)
        with self.pool.connection() as conn:
            rows = conn.execute(query("job_inputs"), {"asset_ids": list(assets)}).fetchall()
        paths = {str(asset_id): path for asset_id, path, _ in rows}
        for asset in assets.values():
            try:
                data = self.source.read(PreviewRequest(asset.asset_id, paths.get(asset.asset_id)))
                asset.image = decode_preview(data)
            except JobError as exc:
                asset.error = exc
        return list(assets.values())

    def _process(self, batch: list[_Asset], report: SyncReport) -> int:
        results: list[tuple[ClaimedJob, dict]] = []
        failures: list[tuple[ClaimedJob, JobError]] = []
        for name, task in self.tasks.items():
            todo = [(asset, job) for asset in batch for job in asset.jobs if job.task == name]
            ready = [(asset, job) for asset, job in todo if asset.image is not None]
            failures += [(job, asset.error) for asset, job in todo if asset.error is not None]
            if not ready:
                continue
            outputs = task.run([asset.asset_id for asset, _ in ready], [asset.image for asset, _ in ready])
            for (_, job), output in zip(ready, outputs, strict=True):
                if isinstance(output, JobError):
                    failures.append((job, output))
                else:
                    results.append((job, output))
        for job, error in failures:
            self.queue.fail(job, str(error), error.retryable)
            report.failed += 1
            report.errors.append((job.asset_id, f"{job.task}: {error}"))
            log.warning("asset %s (%s): %s", job.asset_id, job.task, error)
        with self.pool.connection() as conn, conn.transaction():
            for job, row in results:
                if self.queue.complete(conn, job):
                    self.tasks[job.task].write(conn, row)
                    report.done += 1
                    report.by_task[job.task] = report.by_task.get(job.task, 0) + 1
                else:
                    log.warning("asset %s: lease lost to another worker; its result is discarded", job.asset_id)
        return len(results) + len(failures)


class OcrSync(SyncPipeline):
    """The OCR task alone (the sync as it runs without a CLIP model).

    Args:
        pool, source, batch_size, queue: as :class:`SyncPipeline`.
        engine: the OCR engine (created lazily when ``None``).
    """

    def __init__(
        self,
        pool: ConnectionPool,
        source: MediaFileSource,
        engine: RapidOcrEngine | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        queue: JobQueue | None = None,
    ) -> None:
        super().__init__(pool, source, [OcrTask(engine)], batch_size=batch_size, queue=queue)
