"""The sync pipeline: claim a batch -> read and decode previews -> OCR, CLIP, describe -> write -> acknowledge.

A batch holds the jobs of up to ``batch_size`` assets for every enabled task; each preview is read and
decoded once and handed to every task that asset has a job for (a task that can answer without the
image, such as OCR taken from Immich's own ``asset_ocr``, spares the read). Reading and decoding the next
batch runs in a background thread while the current batch is computed, so the models, which dominate the
time, are kept busy. Each batch is written in one transaction together with the acknowledgements of its
jobs. A failure is recorded on its job and never stops the run.

Faults: a heartbeat thread renews this worker's leases while it works, so a slow batch keeps its jobs
and a killed worker's jobs are taken over once its leases expire. When the database goes away (a
restart, a network cut) the pass pauses, probes the database with exponential backoff (tenacity) and
resumes where it was: the jobs it held go back to the queue and are claimed again, so nothing is lost and
nothing is written twice (a result is only written together with the acknowledgement of its lease).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg
import tenacity
from PIL import Image
from psycopg_pool import ConnectionPool, PoolTimeout

from immich_search.errors import DatabaseUnavailableError
from immich_search.sqlfiles import query
from immich_search.sync.decode import decode_preview
from immich_search.sync.discovery import discover
from immich_search.sync.errors import JobError
from immich_search.sync.queue import ClaimedJob, JobQueue
from immich_search.sync.sources import MediaFileSource, PreviewRequest, PreviewSource
from immich_search.sync.tasks import OcrTask, Task, ocr_row

__all__ = [
    "DATABASE_ERRORS",
    "DEFAULT_BATCH_SIZE",
    "OcrSync",
    "OutagePolicy",
    "SyncPipeline",
    "SyncReport",
    "ocr_row",
]

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 16
"""Assets per claimed batch (one transaction each)."""

DATABASE_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)
"""Errors that mean "the database is unreachable right now" (a restart, a network cut): wait and resume."""

ProgressCallback = Callable[[int, int], None]
"""Called with (jobs finished so far, jobs known) after each batch."""

T = TypeVar("T")


@dataclass
class SyncReport:
    """What one pass did: jobs ``done``, ``failed`` (recorded with a reason), ``seconds`` of wall time.

    ``errors`` lists ``(asset id, "task: reason")``; ``by_task`` counts finished jobs per task;
    ``pauses`` counts database outages waited out during the pass; ``deferred`` counts jobs put back to
    wait, no attempt counted, because a service they need was away (every vision host down).
    """

    queued: int = 0
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)
    by_task: dict[str, int] = field(default_factory=dict)
    pauses: int = 0
    deferred: int = 0

    @property
    def images_per_second(self) -> float:
        """Finished jobs per second of wall time (0 when nothing ran)."""
        return (self.done + self.failed) / self.seconds if self.seconds > 0 else 0.0


@dataclass
class OutagePolicy:
    """How a pass waits out a database outage.

    Attributes:
        timeout_s: give up after this many seconds without the database (``None``: wait for ever, as a
            ``--watch`` service should).
        min_wait_s, max_wait_s: exponential backoff between probes, in seconds.
        probe_timeout_s: seconds one probe waits for a connection.
    """

    timeout_s: float | None = None
    min_wait_s: float = 1.0
    max_wait_s: float = 30.0
    probe_timeout_s: float = 10.0


@dataclass
class _Asset:
    """One claimed asset: its jobs (one per task), results known without the image (``resolved``, by
    task), and its decoded preview or the reason it has none."""

    asset_id: str
    jobs: list[ClaimedJob]
    image: Image.Image | None = None
    error: JobError | None = None
    resolved: dict[str, dict | JobError] = field(default_factory=dict)


class _Heartbeat:
    """A daemon thread calling ``beat`` (which never raises) every ``interval_s`` seconds in a ``with`` block."""

    def __init__(self, beat: Callable[[], None], interval_s: float) -> None:
        self.beat = beat
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat()


class SyncPipeline:
    """Runs the enabled tasks over the queue.

    Args:
        pool: connections to Immich's database (migrated).
        source: where preview bytes come from (:class:`MediaFileSource`, or the API source).
        tasks: what to compute, e.g. ``[OcrTask(), ClipTask(model)]`` (names must be distinct).
        batch_size: assets per claimed batch.
        queue: the job queue (default: a new worker identity on ``pool``).
        outage: how to wait out a database outage (default :class:`OutagePolicy`: for ever).
        heartbeat_s: seconds between lease renewals (default a quarter of the queue's lease).

    Raises:
        ValueError: no task, or two tasks with one name.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        source: MediaFileSource | PreviewSource,
        tasks: Sequence[Task],
        batch_size: int = DEFAULT_BATCH_SIZE,
        queue: JobQueue | None = None,
        *,
        outage: OutagePolicy | None = None,
        heartbeat_s: float | None = None,
    ) -> None:
        names = [task.name for task in tasks]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"tasks must be distinct and at least one, got {names}")
        self.pool = pool
        self.source = source
        self.tasks = {task.name: task for task in tasks}
        self.batch_size = batch_size
        self.queue = queue or JobQueue(pool)
        self.outage = outage or OutagePolicy()
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else self.queue.lease_s / 4
        self._prepared = False

    def run_once(
        self,
        *,
        force: bool = False,
        on_progress: ProgressCallback | None = None,
        discover_changes: bool = True,
        asset_ids: Sequence[str] | None = None,
        jobs: Sequence[ClaimedJob] | None = None,
    ) -> SyncReport:
        """Discover changes, then process every due job until the queue is empty.

        A database outage pauses the pass until the database is back (see :class:`OutagePolicy`).

        Args:
            force: requeue every asset, even those already done.
            on_progress: progress callback ``(finished, total)``.
            discover_changes: look for new and changed assets first (``False``: only work the queue, e.g.
                when another process discovers).
            asset_ids: only process the jobs of these assets (``immich-search reprocess``).
            jobs: jobs this worker already holds (:meth:`JobQueue.reserve`), processed first.

        Returns:
            A :class:`SyncReport` of this pass.

        Raises:
            DatabaseUnavailableError: the database stayed away longer than ``outage.timeout_s``.
        """
        started = time.monotonic()
        report = SyncReport()
        names = list(self.tasks)
        with _Heartbeat(self.heartbeat, self.heartbeat_s):
            from immich_search.sync.retokenize import retokenize_outdated

            # Rows indexed by an older tokenizer are re-indexed from their stored lines.
            self._retrying(lambda: retokenize_outdated(self.pool), report)
            self._retrying(self.prepare, report)
            self.queue.state = "working"
            if discover_changes:
                # Another process discovering now fills the same queue: work it rather than wait (a
                # forced rescan waits its turn).
                report.queued = self._retrying(lambda: discover(self.pool, names, force=force, wait=force), report)
            total = 0 if asset_ids is not None else self._retrying(lambda: self.queue.count_runnable(names), report)
            finished = [0]
            while True:
                try:
                    self._drain(report, on_progress, total, finished, asset_ids, list(jobs or []))
                    jobs = None
                    break
                except DATABASE_ERRORS as error:
                    report.pauses += 1
                    self.wait_for_database(error)
                    # What this worker held when the database went away goes back to the queue.
                    self._retrying(self.queue.release, report)
                    jobs = None
            self.queue.state = "idle"
        report.seconds = time.monotonic() - started
        return report

    def prepare(self) -> None:
        """Register this worker and get the tasks ready (once; :meth:`run_once` calls it)."""
        if self._prepared:
            return
        for task in self.tasks.values():
            task.prepare(self.pool)
        self.queue.register(list(self.tasks), getattr(self.source, "name", "files"))
        self._prepared = True

    def heartbeat(self) -> None:
        """Renew leases and stamp this worker's row now (e.g. while ``--watch`` waits); never raises."""
        try:
            self.queue.heartbeat()
        except Exception:  # noqa: BLE001 - an outage: the main loop pauses; leases run their course
            log.debug("heartbeat failed", exc_info=True)

    def close(self) -> None:
        """Give back held jobs and remove this worker's row (clean exit); never raises."""
        for step in (self.queue.release, self.queue.unregister):
            try:
                step()
            except Exception:  # noqa: BLE001 - best effort: leases expire and the row is pruned anyway
                log.debug("cleanup step failed", exc_info=True)

    def wait_for_database(self, error: BaseException) -> None:
        """Block until the database answers again, probing with exponential backoff.

        Raises:
            DatabaseUnavailableError: it stayed away longer than ``outage.timeout_s``.
        """
        previous, self.queue.state = self.queue.state, "paused"
        reason = " ".join(str(error).split()) or type(error).__name__
        log.warning("database unavailable (%s): sync paused until it is back", reason)
        policy = self.outage
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(DATABASE_ERRORS),
            wait=tenacity.wait_exponential(multiplier=policy.min_wait_s, min=policy.min_wait_s, max=policy.max_wait_s),
            stop=tenacity.stop_after_delay(policy.timeout_s) if policy.timeout_s is not None else tenacity.stop_never,
            before_sleep=lambda state: log.info(
                "database still unavailable after %d probes; next in %.1f s",
                state.attempt_number,
                state.next_action.sleep if state.next_action else 0.0,
            ),
            reraise=True,
        )
        try:
            retrying(self._probe)
        except DATABASE_ERRORS as exc:
            raise DatabaseUnavailableError(
                f"the database stayed unavailable for more than {policy.timeout_s:g} s: {reason}"
            ) from exc
        self.queue.state = previous
        log.warning("database is back: sync resumed")

    def _probe(self) -> None:
        try:
            self.pool.check()  # drop the connections the outage broke
        except Exception:  # noqa: BLE001 - the probe below says whether the database is back
            log.debug("pool check failed", exc_info=True)
        with self.pool.connection(timeout=self.outage.probe_timeout_s) as conn:
            conn.execute("SELECT 1")

    def _retrying(self, step: Callable[[], T], report: SyncReport) -> T:
        """Run ``step``; on a database outage wait until it is back and run it again (steps are idempotent)."""
        while True:
            try:
                return step()
            except DATABASE_ERRORS as error:
                report.pauses += 1
                self.wait_for_database(error)

    def _drain(
        self,
        report: SyncReport,
        on_progress: ProgressCallback | None,
        total: int,
        finished: list[int],
        asset_ids: Sequence[str] | None,
        held: list[ClaimedJob],
    ) -> None:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as reader:
            first = (lambda: self._decode(held)) if held else (lambda: self._claim_and_decode(asset_ids))
            pending: Future[list[_Asset]] | None = reader.submit(first)
            try:
                while pending is not None:
                    batch = pending.result()
                    if not batch:
                        break
                    # Overlap reading the next batch with inference.
                    pending = reader.submit(self._claim_and_decode, asset_ids)
                    finished[0] += self._process(batch, report)
                    if on_progress:
                        on_progress(finished[0], max(total, finished[0]))
            finally:
                if pending is not None:
                    pending.cancel()
                    try:
                        pending.result()
                    except Exception:  # noqa: BLE001 - shutting down; release() returns its jobs
                        log.debug("prefetch failed during shutdown", exc_info=True)
                try:
                    self.queue.release()
                except DATABASE_ERRORS:
                    log.debug("release failed: the database is away; released when it is back", exc_info=True)

    def _claim_and_decode(self, asset_ids: Sequence[str] | None = None) -> list[_Asset]:
        # Every runnable task of an asset is claimed together (claim_jobs), so its preview is decoded once.
        return self._decode(self.queue.claim(list(self.tasks), self.batch_size, asset_ids))

    def _decode(self, jobs: Sequence[ClaimedJob]) -> list[_Asset]:
        if not jobs:
            return []
        assets: dict[str, _Asset] = {}
        for job in jobs:
            assets.setdefault(job.asset_id, _Asset(job.asset_id, [])).jobs.append(job)
        with self.pool.connection() as conn:
            rows = conn.execute(query("job_inputs"), {"asset_ids": list(assets)}).fetchall()
            for name, task in self.tasks.items():
                resolve = getattr(task, "resolve", None)
                wanted = [a.asset_id for a in assets.values() if any(job.task == name for job in a.jobs)]
                if resolve is None or not wanted:
                    continue
                for asset_id, outcome in resolve(conn, wanted).items():
                    assets[asset_id].resolved[name] = outcome
        inputs = {str(asset_id): (path, owner) for asset_id, path, _, owner in rows}
        for asset in assets.values():
            if all(job.task in asset.resolved for job in asset.jobs):
                continue  # nothing needs the image
            path, owner = inputs.get(asset.asset_id, (None, None))
            try:
                data = self.source.read(PreviewRequest(asset.asset_id, path, str(owner) if owner else None))
                asset.image = decode_preview(data)
            except JobError as exc:
                asset.error = exc
        return list(assets.values())

    def _process(self, batch: list[_Asset], report: SyncReport) -> int:
        results: list[tuple[ClaimedJob, dict]] = []
        failures: list[tuple[ClaimedJob, JobError]] = []
        for name, task in self.tasks.items():
            todo = [(asset, job) for asset in batch for job in asset.jobs if job.task == name]
            for asset, job in todo:
                if name in asset.resolved:
                    outcome = asset.resolved[name]
                    if isinstance(outcome, JobError):
                        failures.append((job, outcome))
                    else:
                        results.append((job, outcome))
            todo = [(asset, job) for asset, job in todo if name not in asset.resolved]
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
            defer_s = getattr(error, "defer_s", None)
            if defer_s is not None:
                self.queue.defer(job, str(error), defer_s)
                report.deferred += 1
                log.info("asset %s (%s) waits %.0f s: %s", job.asset_id, job.task, defer_s, error)
                continue
            self.queue.fail(job, str(error), error.retryable)
            self.queue.failed += 1
            report.failed += 1
            report.errors.append((job.asset_id, f"{job.task}: {error}"))
            log.warning("asset %s (%s): %s", job.asset_id, job.task, error)
        with self.pool.connection() as conn, conn.transaction():
            # What a partly failed job did is kept (e.g. a description Immich's API refused to take): its
            # task's rows are idempotent upserts, so a worker that took the job over may write them again.
            for job, error in failures:
                kept = getattr(error, "row", None)
                if kept is not None:
                    self.tasks[job.task].write(conn, kept)
            for job, row in results:
                if self.queue.complete(conn, job):
                    self.tasks[job.task].write(conn, row)
                    report.done += 1
                    report.by_task[job.task] = report.by_task.get(job.task, 0) + 1
                    self.queue.done += 1
                else:
                    log.warning("asset %s: lease lost to another worker; its result is discarded", job.asset_id)
        return len(results) + len(failures)


class OcrSync(SyncPipeline):
    """The OCR task alone (the sync as it runs without a CLIP model).

    Args:
        pool, source, batch_size, queue: as :class:`SyncPipeline`.
        engine: the OCR engine (``None``: the default engine, built on first use).
    """

    def __init__(
        self,
        pool: ConnectionPool,
        source: MediaFileSource | PreviewSource,
        engine=None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        queue: JobQueue | None = None,
    ) -> None:
        super().__init__(pool, source, [OcrTask(engine)], batch_size=batch_size, queue=queue)
