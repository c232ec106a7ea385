"""The sync pipeline: claim a batch -> read and decode previews -> OCR -> write the batch -> acknowledge.

Reading and decoding the next batch runs in a background thread while the current batch is recognised,
so the model, which dominates the time, is kept busy. Each batch is written in one transaction together
with the acknowledgements of its jobs. A failure is recorded on its job and never stops the run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from immich_search.sync.decode import decode_preview
from immich_search.sync.discovery import discover
from immich_search.sync.errors import JobError
from immich_search.sync.queue import ClaimedJob, JobQueue
from immich_search.sync.sources import MediaFileSource, PreviewRequest
from PIL import Image
from psycopg_pool import ConnectionPool

from immich_search.ocr_engine import OcrLine, RapidOcrEngine
from immich_search.sqlfiles import query
from immich_search.tokens import TOKENIZER_VERSION, document_tokens, tsvector_literal

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 16
"""Assets per claimed batch (one transaction each)."""

ProgressCallback = Callable[[int, int], None]
"""Called with (jobs finished so far, jobs known) after each job."""


@dataclass
class SyncReport:
    """What one pass did: jobs ``done``, ``failed`` (recorded with a reason), ``seconds`` of wall time."""

    queued: int = 0
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        """Finished jobs per second of wall time (0 when nothing ran)."""
        return (self.done + self.failed) / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Decoded:
    job: ClaimedJob
    image: Image.Image | None = None
    error: JobError | None = None


def ocr_row(asset_id: str, lines: list[OcrLine], model: str, source: str = "rapidocr") -> dict:
    """Build the ``upsert_ocr`` parameters of an asset from its recognised lines (reading order)."""
    texts = [line.text for line in lines]
    return {
        "asset_id": asset_id,
        "source": source,
        "model": model,
        "lines": json.dumps([line.as_json() for line in lines], ensure_ascii=False),
        "text": "\n".join(texts),
        "search_vector": tsvector_literal(document_tokens(texts)),
        "tokenizer_version": TOKENIZER_VERSION,
    }


class OcrSync:
    """Runs the OCR task over the queue.

    Args:
        pool: connections to Immich's database (migrated).
        source: where preview bytes come from.
        engine: the OCR engine (created lazily when ``None``: loading models takes a second).
        batch_size: assets per claimed batch.
        queue: the job queue (default: a new worker identity on ``pool``).
    """

    TASK = "ocr"

    def __init__(
        self,
        pool: ConnectionPool,
        source: MediaFileSource,
        engine: RapidOcrEngine | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        queue: JobQueue | None = None,
    ) -> None:
        self.pool = pool
        self.source = source
        self._engine = engine
        self.batch_size = batch_size
        self.queue = queue or JobQueue(pool)

    @property
    def engine(self) -> RapidOcrEngine:
        """The OCR engine, loaded on first use."""
        if self._engine is None:
            self._engine = RapidOcrEngine()
        return self._engine

    def run_once(self, *, force: bool = False, on_progress: ProgressCallback | None = None) -> SyncReport:
        """Discover changes, then process every due job until the queue is empty.

        Args:
            force: requeue every asset, even those already done.
            on_progress: progress callback ``(finished, total)``.

        Returns:
            A :class:`SyncReport` of this pass.
        """
        started = time.monotonic()
        report = SyncReport(queued=discover(self.pool, [self.TASK], force=force))
        total = self.queue.count_runnable([self.TASK])
        finished = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as reader:
            pending: Future[list[_Decoded]] | None = self._prefetch(reader)
            try:
                while pending is not None:
                    batch = pending.result()
                    if not batch:
                        break
                    pending = self._prefetch(reader)  # overlap reading the next batch with OCR
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

    def _prefetch(self, reader: ThreadPoolExecutor) -> Future[list[_Decoded]]:
        return reader.submit(self._claim_and_decode)

    def _claim_and_decode(self) -> list[_Decoded]:
        jobs = self.queue.claim([self.TASK], self.batch_size)
        if not jobs:
            return []
        with self.pool.connection() as conn:
            rows = conn.execute(query("job_inputs"), {"asset_ids": [job.asset_id for job in jobs]}).fetchall()
        paths = {str(asset_id): path for asset_id, path, _ in rows}
        decoded = []
        for job in jobs:
            try:
                data = self.source.read(PreviewRequest(job.asset_id, paths.get(job.asset_id)))
                decoded.append(_Decoded(job, image=decode_preview(data)))
            except JobError as exc:
                decoded.append(_Decoded(job, error=exc))
        return decoded

    def _process(self, batch: list[_Decoded], report: SyncReport) -> int:
        rows: list[tuple[ClaimedJob, dict]] = []
        for item in batch:
            if item.error is None:
                assert item.image is not None
                try:
                    lines = self.engine.recognize(item.image)
                except Exception as exc:  # noqa: BLE001 - a model error is recorded on its job
                    item.error = JobError(f"OCR failed: {type(exc).__name__}: {exc}")
                else:
                    rows.append((item.job, ocr_row(item.job.asset_id, lines, self.engine.model)))
            if item.error is not None:
                self.queue.fail(item.job, str(item.error), item.error.retryable)
                report.failed += 1
                report.errors.append((item.job.asset_id, str(item.error)))
                log.warning("asset %s: %s", item.job.asset_id, item.error)
        with self.pool.connection() as conn, conn.transaction():
            for job, row in rows:
                if self.queue.complete(conn, job):
                    conn.execute(query("upsert_ocr"), row)
                    report.done += 1
                else:
                    log.warning("asset %s: lease lost to another worker; its result is discarded", job.asset_id)
        return len(batch)
