"""Many workers and faults, with real processes and a real PostgreSQL: SIGKILL mid-batch, ``--workers``,
a database outage in the middle of a run."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from immich_search.db import open_pool
from immich_search.errors import DatabaseUnavailableError
from immich_search.sync.pipeline import OutagePolicy
from immich_search.sync.queue import JobQueue
from immich_search.sync.workers import WorkerSpec, run_sync
from tests.sync_fakes import FakeEngine, TcpProxy
from tests.test_sync import jobs_by_name
from tests.test_sync_operations import library, make_pipeline, wait_until

REPO = Path(__file__).resolve().parents[1]


def assert_each_asset_done_once(url: str, count: int) -> None:
    """Every asset has exactly one OCR row, every job is done, nothing is running or leased."""
    with psycopg.connect(url) as conn:
        rows, distinct = conn.execute("SELECT count(*), count(DISTINCT asset_id) FROM immich_search.ocr").fetchone()
        states = conn.execute(
            "SELECT state, count(*), count(lease_owner), count(lease_expires_at) FROM immich_search.job GROUP BY state"
        ).fetchall()
    assert (rows, distinct) == (count, count)
    assert states == [("done", count, 0, 0)]


def finish_queue(url: str, media: Path, timeout_s: float = 90.0) -> None:
    """Work the queue in this process until every job is done (waiting out orphaned leases)."""
    deadline = time.monotonic() + timeout_s
    with open_pool(url) as pool:
        pipeline = make_pipeline(pool, media, FakeEngine(), heartbeat_s=0.2)
        try:
            while True:
                pipeline.run_once()
                if {job["state"] for job in jobs_by_name(url).values()} == {"done"}:
                    return
                assert time.monotonic() < deadline, jobs_by_name(url)
                due = pipeline.queue.next_due_s(["ocr"])
                time.sleep(min(max(due if due is not None else 0.2, 0.05), 1.0))
        finally:
            pipeline.close()


def worker_process(url: str, media: Path, lease_s: float, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.sync_worker_main", url, str(media), str(lease_s)],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_sigkill_mid_batch_loses_nothing(db, tmp_path):
    count, lease_s = 12, 3.0
    library(db, tmp_path, count)
    media = tmp_path / "media"
    marker = tmp_path / "victim.pid"
    victim = worker_process(db, media, lease_s, SYNC_TEST_MARKER=str(marker), SYNC_TEST_HANG="1")
    survivor = None
    try:
        assert wait_until(marker.exists, timeout_s=120), "the victim never started its first batch"
        pid = int(marker.read_text())
        with psycopg.connect(db) as conn:
            held = {
                str(asset_id)
                for (asset_id,) in conn.execute(
                    "SELECT asset_id FROM immich_search.job WHERE state = 'running' AND lease_owner LIKE %s",
                    (f"%:{pid}:%",),
                )
            }
            first_expiry = conn.execute("SELECT max(lease_expires_at) FROM immich_search.job").fetchone()[0]
        assert 1 <= len(held) <= 4, "a batch of 2, and the next one prefetched"

        survivor = worker_process(db, media, lease_s, SYNC_TEST_DELAY_S="0.02")
        # While the victim lives (hung inside its batch), its heartbeat keeps its lease.
        with psycopg.connect(db, autocommit=True) as conn:
            assert wait_until(lambda: conn.execute("SELECT now() > %s", (first_expiry,)).fetchone()[0], 30)
            still = conn.execute(
                "SELECT count(*) FROM immich_search.job WHERE lease_owner LIKE %s AND lease_expires_at > now()",
                (f"%:{pid}:%",),
            ).fetchone()[0]
        assert still == len(held), "a living worker keeps its jobs past the first lease's expiry"

        os.kill(pid, signal.SIGKILL)
        victim.wait(timeout=30)
        assert victim.returncode == -signal.SIGKILL
        output, _ = survivor.communicate(timeout=120)
        assert survivor.returncode == 0, output
    finally:
        for process in (victim, survivor):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    finish_queue(db, media)  # the victim's jobs come back when its leases expire
    assert_each_asset_done_once(db, count)
    jobs = {asset_id: (attempts, text) for asset_id, attempts, text in psycopg.connect(db).execute(
        "SELECT j.asset_id::text, j.attempts, o.text FROM immich_search.job j JOIN immich_search.ocr o USING (asset_id)"
    )}  # fmt: skip
    assert {asset for asset, (attempts, _) in jobs.items() if attempts == 2} == held, "only the victim's jobs ran twice"
    assert all(attempts in (1, 2) for attempts, _ in jobs.values())
    assert not any(f"pid {pid}" in text for _, text in jobs.values()), "nothing of the killed worker was written"


def slow_workers_spec(db: str, tmp_path: Path, monkeypatch) -> WorkerSpec:
    """Workers over ``library(db, tmp_path, ...)`` with the slow fake engine (50 ms an image), a batch of 1."""
    monkeypatch.setenv("SYNC_TEST_DELAY_S", "0.05")
    return WorkerSpec(
        database_url=db,
        media_root=str(tmp_path / "media"),
        immich_media_location="/data",
        ocr_source="rapidocr",
        ocr_engine="tests.sync_fakes:SlowEngine",
        clip=False,
        batch_size=1,
    )


def test_workers_share_the_queue(db, tmp_path, monkeypatch):
    count = 10
    library(db, tmp_path, count)
    spec = slow_workers_spec(db, tmp_path, monkeypatch)
    progress: list[tuple[int, int]] = []
    report = run_sync(spec, workers=2, on_progress=lambda done, total: progress.append((done, total)))
    assert (report.queued, report.done, report.failed) == (count, count, 0)
    assert progress and progress[-1] == (count, count)
    assert_each_asset_done_once(db, count)
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM immich_search.worker").fetchone()[0] == 0, "workers unregistered"
        writers = {text.rsplit(" pid ", 1)[1] for (text,) in conn.execute("SELECT text FROM immich_search.ocr")}
    assert len(writers) <= 2
    again = run_sync(spec, workers=2)
    assert (again.queued, again.done) == (0, 0)


def test_watching_workers_report_the_passes_under_way(db, tmp_path, monkeypatch):
    """With --watch --workers 2, progress is that of the passes under way (never "100 %" of nothing)."""
    count = 8
    library(db, tmp_path, count)
    spec = slow_workers_spec(db, tmp_path, monkeypatch)
    progress: list[tuple[int, int]] = []
    reports = []

    def on_report(report) -> None:
        reports.append(report)
        if sum(r.done for r in reports) >= count:
            # Stop as Ctrl-C would: the workers get SIGINT, the parent KeyboardInterrupt.
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGINT)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sync(
            spec,
            workers=2,
            watch_mode=True,
            interval_s=0.5,
            on_report=on_report,
            on_progress=lambda done, total: progress.append((done, total)),
        )
    assert_each_asset_done_once(db, count)
    assert progress, "progress was reported while the workers watched"
    assert all(0 <= done <= total for done, total in progress)
    # Each pass's total is the queue when it began (another worker may have claimed a job or two by then).
    assert count - 2 <= max(total for _, total in progress) <= count
    assert max(done for done, _ in progress) >= count // 2


# ---------------------------------------------------------------------------------------------------------
# a database outage during a run


def proxied_pool(proxy: TcpProxy) -> ConnectionPool:
    """A pool through the proxy that gives up on a connection within seconds (the default waits 30 s)."""
    pool = ConnectionPool(proxy.url(), min_size=1, max_size=4, timeout=3, open=False, reconnect_timeout=600)
    pool.open(wait=True, timeout=20)
    return pool


def test_database_outage_pauses_and_resumes(db, tmp_path):
    count = 8
    library(db, tmp_path, count)
    proxy = TcpProxy(db)

    def restore_after_failed_probes() -> None:
        wait_until(lambda: proxy.refused >= 3, timeout_s=60)
        proxy.restore()

    class CuttingEngine(FakeEngine):
        def recognize(self, image):
            if self.calls == 3:  # in the middle of the second batch: the database "restarts"
                proxy.cut()
                threading.Thread(target=restore_after_failed_probes, daemon=True).start()
            return super().recognize(image)

    policy = OutagePolicy(timeout_s=120, min_wait_s=0.05, max_wait_s=0.5, probe_timeout_s=1)
    try:
        with proxied_pool(proxy) as pool:
            pipeline = make_pipeline(pool, tmp_path / "media", CuttingEngine(), batch_size=2, outage=policy)
            report = pipeline.run_once()
            pipeline.close()
        restored = not proxy.down.is_set()
    finally:
        proxy.close()
    assert report.pauses >= 1, "the run noticed the outage"
    assert proxy.refused >= 3 and restored, "it waited through failed probes until the database was back"
    assert report.failed == 0, report.errors
    assert report.done >= count - 2, "a batch cut off before its commit is redone"
    assert_each_asset_done_once(db, count)


def test_database_outage_longer_than_the_timeout_fails_clearly(db, tmp_path):
    library(db, tmp_path, 4)
    proxy = TcpProxy(db)

    class CuttingEngine(FakeEngine):
        def recognize(self, image):
            proxy.cut()
            return super().recognize(image)

    policy = OutagePolicy(timeout_s=1.0, min_wait_s=0.05, max_wait_s=0.2, probe_timeout_s=0.5)
    try:
        with proxied_pool(proxy) as pool:
            queue = JobQueue(pool, lease_s=2)  # the leases held at the cut run out soon
            pipeline = make_pipeline(pool, tmp_path / "media", CuttingEngine(), outage=policy, queue=queue)
            with pytest.raises(DatabaseUnavailableError, match="stayed unavailable for more than 1 s"):
                pipeline.run_once()
    finally:
        proxy.close()
    finish_queue(db, tmp_path / "media")  # the jobs held at the cut come back: nothing is lost
    assert_each_asset_done_once(db, 4)


def test_released_jobs_of_a_paused_worker_are_claimable(db, tmp_path):
    """The queue side of a resume: release() hands back what a worker held, without counting an attempt."""
    library(db, tmp_path, 2)
    with open_pool(db) as pool:
        make_pipeline(pool, tmp_path / "media").queue  # noqa: B018 - just the identity
        from immich_search.sync.discovery import discover

        discover(pool, ["ocr"])
        paused = JobQueue(pool, owner="paused")
        assert len(paused.claim(["ocr"], 5)) == 2
        paused.release()
        assert {job["attempts"] for job in jobs_by_name(db).values()} == {0}
        assert len(JobQueue(pool, owner="other").claim(["ocr"], 5)) == 2
