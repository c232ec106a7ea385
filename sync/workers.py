"""Running the sync: one worker in this process, or ``--workers N`` processes sharing the queue.

Every worker, here or on another machine, is the same loop over the shared queue (claims with
``FOR UPDATE SKIP LOCKED``, leases renewed by heartbeats): start ``immich-search sync`` on as many hosts
as you like. On one host ``--workers N`` starts N processes (``spawn``), each with its own connection
pool and models; onnxruntime then gets ``cores / N`` threads per worker so they share the CPU instead of
fighting over it. A one-pass run discovers once, in the parent, before the workers start; in
``--watch`` mode every worker watches (an advisory lock keeps discovery to one at a time).

A worker killed mid-batch (SIGKILL, OOM, power cut) loses nothing: its results were not committed, its
leases expire (:data:`~immich_search.sync.queue.DEFAULT_LEASE_S`) and any worker claims the jobs again.
SIGTERM and Ctrl-C give the held jobs back at once.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import os
import queue as queue_module
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from immich_search.db import open_pool
from immich_search.errors import ConfigError, ImmichSearchError
from immich_search.sync.api_source import ApiSource
from immich_search.sync.describe_task import DescribeTask
from immich_search.sync.discovery import discover
from immich_search.sync.immich_write import build_writer
from immich_search.sync.pipeline import DEFAULT_BATCH_SIZE, OutagePolicy, SyncPipeline, SyncReport
from immich_search.sync.queue import DEFAULT_LEASE_S, JobQueue
from immich_search.sync.sources import MediaFileSource, PreviewSource
from immich_search.sync.tasks import ClipTask, OcrTask, Task
from immich_search.sync.vision import VisionConfig
from immich_search.sync.watch import DEFAULT_INTERVAL_S, watch

log = logging.getLogger(__name__)

ReportCallback = Callable[[SyncReport], None]
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs to build its pipeline (picklable, no secrets logged).

    Attributes:
        database_url: libpq URL of Immich's database.
        source: ``files`` (Immich's media files) or ``api`` (Immich's HTTP API).
        media_root, immich_media_location: for ``files`` (see :class:`MediaFileSource`).
        immich_url, api_keys: for ``api`` (see :class:`~immich_search.sync.api_source.ApiSource`).
        ocr_source: ``auto`` | ``immich`` | ``rapidocr`` (see :class:`OcrTask`).
        ocr_engine: an engine name of :data:`immich_search.ocr.registry.ENGINES` (``--ocr-engine``), or
            ``"module:callable"`` returning an OCR engine (``.engine``, ``.model``, ``.recognize``); ``None``:
            the default engine. The callable gets ``threads=`` when :attr:`ocr_threads` is set.
        ocr_threads: threads per OCR engine (``None``: cores / workers).
        ocr_det_max_side: the longer side in pixels of the image the text detector sees (``None``: the
            engine's default); for a named engine only.
        clip, clip_model_dir, clip_arch: the cn-clip model (as ``--clip``, ``--clip-model-dir``, ``--clip-arch``).
        batch_size: assets per claimed batch.
        lease_s: lease length in seconds; heartbeat_s: seconds between renewals (default lease / 4).
        outage_timeout_s: give up after this long without the database (``None``: never).
        pool_size: connections per worker.
        describe: the vision hosts of the ``describe`` task (``None``: the task is off).
        write_immich: ``none`` | ``missing`` | ``all``: write descriptions into Immich's own description field
            through its API (``immich_url``, the owners' keys in ``api_keys``; see
            :mod:`immich_search.sync.immich_write`).
    """

    database_url: str
    source: str = "files"
    media_root: str | None = None
    immich_media_location: str | None = None
    immich_url: str | None = None
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    ocr_source: str = "auto"
    ocr_engine: str | None = None
    ocr_threads: int | None = None
    ocr_det_max_side: int | None = None
    clip: bool | None = None
    clip_model_dir: str | None = None
    clip_arch: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    lease_s: float = DEFAULT_LEASE_S
    heartbeat_s: float | None = None
    outage_timeout_s: float | None = None
    pool_size: int = 4
    describe: VisionConfig | None = None
    write_immich: str = "none"


class LazyEngine:
    """An OCR engine built on first use, so a worker whose text all comes from Immich never loads RapidOCR.

    Args:
        factory: builds the real engine.
    """

    def __init__(self, factory: Callable[[], object]) -> None:
        self._factory = factory
        self._engine = None
        self._lock = threading.Lock()

    def _get(self):
        with self._lock:
            if self._engine is None:
                self._engine = self._factory()
            return self._engine

    @property
    def model(self) -> str:
        """The engine's model name."""
        return self._get().model

    @property
    def engine(self) -> str:
        """The engine's name (``custom`` for an engine that does not name itself)."""
        return getattr(self._get(), "engine", None) or "custom"

    def recognize(self, image):
        """Recognise the text of an RGB image (see :mod:`immich_search.ocr`)."""
        return self._get().recognize(image)


def engine_factory(spec: WorkerSpec) -> Callable[[], object]:
    """Return a callable building the OCR engine ``spec`` names.

    Raises:
        ConfigError: ``spec.ocr_engine`` is neither an engine name nor ``module:callable``.
    """
    from immich_search.ocr.registry import DEFAULT_ENGINE, ENGINES, build_engine

    name = spec.ocr_engine or DEFAULT_ENGINE
    if ":" not in name:
        if name not in ENGINES:
            raise ConfigError(f"unknown OCR engine {name!r}: one of {', '.join(ENGINES)}")

        def named():
            if spec.ocr_threads is not None:
                _limit_opencv_threads(spec.ocr_threads)
            return build_engine(name, threads=spec.ocr_threads, det_max_side=spec.ocr_det_max_side)

        return named
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"OCR engine must be a name or 'module:callable', got {name!r}")
    factory = getattr(importlib.import_module(module_name), attribute)
    if spec.ocr_threads is None:
        return factory

    def limited():
        _limit_opencv_threads(spec.ocr_threads)
        return factory(threads=spec.ocr_threads)

    return limited


def _limit_opencv_threads(threads: int) -> None:
    """Give OpenCV (RapidOCR's pre- and post-processing) as many threads as onnxruntime, not every core."""
    try:
        import cv2
    except ImportError:  # an engine without OpenCV
        return
    cv2.setNumThreads(max(1, threads))


def build_source(spec: WorkerSpec) -> PreviewSource:
    """Return the preview source ``spec`` names.

    Raises:
        ConfigError: the media root is not a folder, or ``api`` lacks a URL or key.
    """
    if spec.source == "api":
        if not spec.immich_url:
            raise ConfigError("--source api needs Immich's address: set IMMICH_URL (e.g. http://immich:2283)")
        return ApiSource(spec.immich_url, spec.api_keys)
    if spec.source != "files":
        raise ConfigError(f"unknown source {spec.source!r}: files or api")
    root = spec.media_root or os.environ.get("IMMICH_MEDIA_LOCATION") or "/data"
    return MediaFileSource(root, spec.immich_media_location)


def build_tasks(spec: WorkerSpec, clip_model=None) -> tuple[list[Task], str | None]:
    """Return the tasks ``spec`` asks for and, when CLIP is off, why (``None`` when on or turned off).

    Args:
        spec: the worker's settings.
        clip_model: an already loaded image encoder to use instead of loading one.

    Raises:
        ModelError: ``spec.clip`` is true and the model cannot be loaded.
        ConfigError: ``spec.write_immich`` lacks Immich's address or API keys.
    """
    tasks: list[Task] = [OcrTask(LazyEngine(engine_factory(spec)), source=spec.ocr_source)]
    why_not = None
    if clip_model is None and spec.clip is not False:
        from immich_search.runtime.loading import load_clip_model

        model_dir = Path(spec.clip_model_dir) if spec.clip_model_dir else None
        clip_model, why_not = load_clip_model(spec.clip, model_dir, spec.clip_arch, "image")
    if clip_model is not None:
        tasks.append(ClipTask(clip_model))
    if spec.describe is not None:
        writer = build_writer(spec.write_immich, spec.immich_url, spec.api_keys)
        tasks.append(DescribeTask(spec.describe, writer=writer))
    return tasks, why_not


def task_names(spec: WorkerSpec, clip_on: bool) -> list[str]:
    """The queue tasks a sync with ``spec`` runs (``clip_on``: a CLIP model is loaded or will be)."""
    return ["ocr"] + (["clip"] if clip_on else []) + (["describe"] if spec.describe is not None else [])


def build_pipeline(spec: WorkerSpec, pool, tasks: list[Task], source: PreviewSource | None = None) -> SyncPipeline:
    """Return a pipeline for ``spec`` on ``pool`` with ``tasks`` (a new worker identity)."""
    return SyncPipeline(
        pool,
        source or build_source(spec),
        tasks,
        batch_size=spec.batch_size,
        queue=JobQueue(pool, lease_s=spec.lease_s),
        outage=OutagePolicy(timeout_s=spec.outage_timeout_s),
        heartbeat_s=spec.heartbeat_s,
    )


def add_reports(total: SyncReport, part: SyncReport) -> None:
    """Add ``part``'s counts, errors and pauses to ``total`` (seconds are left to the caller)."""
    total.queued += part.queued
    total.done += part.done
    total.failed += part.failed
    total.pauses += part.pauses
    total.deferred += part.deferred
    total.errors.extend(part.errors)
    for task, count in part.by_task.items():
        total.by_task[task] = total.by_task.get(task, 0) + count


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (``docker stop``) behaves like Ctrl-C: held jobs are given back before
    exiting. The previous handler comes back afterwards; outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_worker(
    spec: WorkerSpec,
    *,
    watch_mode: bool = False,
    interval_s: float = DEFAULT_INTERVAL_S,
    force: bool = False,
    discover_changes: bool = True,
    clip_model=None,
    source: PreviewSource | None = None,
    stop: threading.Event | None = None,
    on_report: ReportCallback | None = None,
    on_progress: ProgressCallback | None = None,
) -> SyncReport:
    """Run one worker in this process: one pass, or ``--watch`` passes until ``stop`` or Ctrl-C/SIGTERM.

    ``clip_model`` is an image encoder already loaded here (see :func:`build_tasks`); ``source`` a preview
    source already built (default: the one ``spec`` names).

    Returns:
        The combined report of every pass.

    Raises:
        KeyboardInterrupt: Ctrl-C or SIGTERM (held jobs were given back).
        DatabaseUnavailableError, ConfigError, ModelError: as the pipeline and its parts raise them.
    """
    tasks, why_not = build_tasks(spec, clip_model)
    if why_not:
        log.warning("%s; indexing OCR text only", why_not)
    total = SyncReport()

    def collect(report: SyncReport) -> None:
        add_reports(total, report)
        total.seconds += report.seconds
        if on_report:
            on_report(report)

    with open_pool(spec.database_url, max_size=spec.pool_size) as pool:
        pipeline = build_pipeline(spec, pool, tasks, source)
        try:
            if watch_mode:
                watch(
                    pipeline,
                    interval_s=interval_s,
                    force=force,
                    discover_changes=discover_changes,
                    stop=stop,
                    on_report=collect,
                    on_progress=on_progress,
                )
            else:
                collect(pipeline.run_once(force=force, discover_changes=discover_changes, on_progress=on_progress))
        finally:
            pipeline.close()
    return total


def _process_main(spec: WorkerSpec, index: int, options: dict, events, log_level: int) -> None:
    """Entry point of a ``--workers`` process: run a worker, report to the parent through ``events``."""
    logging.basicConfig(level=log_level, format=f"%(asctime)s %(levelname)s worker{index} %(name)s: %(message)s")

    def progress(done: int, total: int) -> None:
        events.put(("progress", index, (done, total)))

    try:
        with sigterm_as_interrupt():
            run_worker(
                spec,
                on_report=lambda report: events.put(("report", index, report)),
                on_progress=progress,
                **options,
            )
    except KeyboardInterrupt:
        events.put(("stopped", index, None))
        raise SystemExit(130) from None
    except Exception as exc:  # noqa: BLE001 - told to the parent, which prints it
        events.put(("error", index, f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None
    events.put(("finished", index, None))


def run_sync(
    spec: WorkerSpec,
    *,
    workers: int = 1,
    watch_mode: bool = False,
    interval_s: float = DEFAULT_INTERVAL_S,
    force: bool = False,
    clip_model=None,
    on_report: ReportCallback | None = None,
    on_progress: ProgressCallback | None = None,
) -> SyncReport:
    """Run the sync as ``immich-search sync`` does: in this process, or in ``workers`` processes.

    Args:
        spec: the workers' settings.
        workers: processes; 1 runs in this process.
        watch_mode: keep running (``--watch``) until Ctrl-C or SIGTERM.
        interval_s: seconds between polls in watch mode.
        force: redo every asset.
        clip_model: the image encoder already loaded here (used by a single in-process worker; ``None``
            with ``spec.clip`` true makes every process load it).
        on_report: called with the report of each pass (of each worker).
        on_progress: ``(jobs finished, jobs known)`` across workers; in watch mode, of the passes under way
            (it starts again from 0 when every worker has finished its pass).

    Returns:
        The combined report (one-pass runs; in watch mode what was done until stopped).

    Raises:
        KeyboardInterrupt: Ctrl-C or SIGTERM, after the workers gave their jobs back.
        ImmichSearchError: a worker failed (the first error is raised once every worker stopped).
    """
    with sigterm_as_interrupt():
        return _run_sync(spec, workers, watch_mode, interval_s, force, clip_model, on_report, on_progress)


def _run_sync(
    spec: WorkerSpec,
    workers: int,
    watch_mode: bool,
    interval_s: float,
    force: bool,
    clip_model,
    on_report: ReportCallback | None,
    on_progress: ProgressCallback | None,
) -> SyncReport:
    source = build_source(spec)
    if isinstance(source, ApiSource):
        users = source.check()  # a bad URL or key fails here, once, with a clear message
        log.info("Immich API keys of %s", ", ".join(user.email or user.user_id for user in users))
    if workers <= 1:
        return run_worker(
            spec,
            watch_mode=watch_mode,
            interval_s=interval_s,
            force=force,
            clip_model=clip_model,
            source=source,
            on_report=on_report,
            on_progress=on_progress,
        )
    if isinstance(source, ApiSource):
        source.close()
    if spec.ocr_threads is None:
        spec = replace(spec, ocr_threads=max(1, (os.cpu_count() or 1) // workers))
    if clip_model is not None and spec.clip is None:
        spec = replace(spec, clip=True)
    total = SyncReport()
    known = 0
    # Workers of a one-pass run do not discover: it happens once, here, so every worker starts on a full
    # queue and none exits early. Watching workers discover each pass (one at a time, by advisory lock),
    # but a forced rescan is done once, here, not once per worker.
    options: dict = {"watch_mode": watch_mode, "interval_s": interval_s, "force": False, "discover_changes": watch_mode}
    if not watch_mode or force:
        names = task_names(spec, clip_model is not None or bool(spec.clip))
        with open_pool(spec.database_url) as pool:
            total.queued = discover(pool, names, force=force)
            known = JobQueue(pool).count_runnable(names)
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    processes = [
        context.Process(
            target=_process_main,
            args=(spec, index, options, events, logging.getLogger().getEffectiveLevel()),
            name=f"immich-search-worker-{index}",
        )
        for index in range(workers)
    ]
    for process in processes:
        process.start()
    progress = [0] * workers  # jobs finished in each worker's current pass
    pass_totals = [0] * workers  # jobs runnable when that pass began (the whole queue, not a share)
    errors: list[str] = []
    try:
        while any(process.is_alive() for process in processes) or not events.empty():
            try:
                kind, index, payload = events.get(timeout=0.5)
            except queue_module.Empty:
                continue
            if kind == "progress":
                progress[index], pass_totals[index] = payload
            elif kind == "report":
                progress[index] = pass_totals[index] = 0  # a pass ended: its jobs are counted in total from now on
                add_reports(total, payload)
                total.seconds = max(total.seconds, payload.seconds)
                if on_report:
                    on_report(payload)
            elif kind == "error":
                errors.append(f"worker {index}: {payload}")
            if on_progress and kind in ("progress", "report"):
                if watch_mode:
                    # Passes never end together: report the passes under way (their jobs of one queue).
                    running = sum(progress)
                    on_progress(running, max(max(pass_totals), running))
                else:
                    finished = total.done + total.failed + sum(progress)
                    on_progress(finished, max(known, finished))
    except KeyboardInterrupt:
        # Ctrl-C reached the workers too (one process group); SIGTERM those that did not stop by themselves.
        deadline = time.monotonic() + 10
        for process in processes:
            process.join(timeout=max(deadline - time.monotonic(), 0.1))
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join(timeout=60)
        raise
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
    for index, process in enumerate(processes):
        if process.exitcode not in (0, 130) and not any(e.startswith(f"worker {index}:") for e in errors):
            errors.append(
                f"worker {index} died (exit code {process.exitcode}); its jobs are retried once its leases expire"
            )
    if errors:
        raise ImmichSearchError("; ".join(errors))
    return total
