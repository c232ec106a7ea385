"""Sync operations (issue 5) on a real PostgreSQL: requeue from psql, NOTIFY wake-ups, heartbeats,
index-backed polling, watch mode, Immich's own OCR, huge images, status and reprocess."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid

import psycopg
import pytest
from click.testing import CliRunner
from PIL import Image

from immich_search.cli import cli
from immich_search.db import open_pool
from immich_search.demo import IMMICH_MEDIA_LOCATION, import_library
from immich_search.errors import ConfigError
from immich_search.ranking.ocr_search import search_ocr
from immich_search.sqlfiles import query
from immich_search.sync.decode import MAX_SIDE, decode_preview
from immich_search.sync.discovery import DISCOVERY_LOCK_KEY, discover
from immich_search.sync.errors import RetryableJobError
from immich_search.sync.pipeline import SyncPipeline
from immich_search.sync.queue import JobQueue
from immich_search.sync.sources import MediaFileSource
from immich_search.sync.status import sync_status
from immich_search.sync.tasks import OcrTask
from immich_search.sync.watch import CHANNEL, watch
from immich_search.sync.workers import LazyEngine
from tests.sync_fakes import ExplodingEngine, FakeEngine, pixel_text
from tests.test_sync import assets_by_name, jobs_by_name, ocr_rows, plain_photo, preview_file, text_photo


def make_pipeline(pool, media, engine=None, ocr_source="rapidocr", **kwargs) -> SyncPipeline:
    source = MediaFileSource(media, IMMICH_MEDIA_LOCATION)
    return SyncPipeline(pool, source, [OcrTask(engine or FakeEngine(), source=ocr_source)], **kwargs)


def library(db, tmp_path, count: int, prefix: str = "p") -> dict[str, str]:
    photos = [plain_photo(tmp_path / "photos", f"{prefix}{i}.jpg", (i * 7 % 256, 40 + i, 90)) for i in range(count)]
    import_library(db, photos, tmp_path / "media")
    return assets_by_name(db)


def wait_until(predicate, timeout_s: float = 30.0, step_s: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passed (a bound, never a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


# ---------------------------------------------------------------------------------------------------------
# requeue from psql, notifications


def test_requeue_from_psql(db, tmp_path):
    ids = library(db, tmp_path, 3)
    with open_pool(db) as pool:
        make_pipeline(pool, tmp_path / "media").run_once()
        holder = JobQueue(pool, owner="holder")
        with pool.connection() as conn:
            conn.execute(
                "UPDATE immich_search.job SET state = 'failed', last_error = 'x' WHERE asset_id = %s", (ids["p1.jpg"],)
            )
        with psycopg.connect(db, autocommit=True) as conn:
            # p0 is being worked on by another worker right now: it loses its lease.
            conn.execute("SELECT immich_search.requeue_v2(ARRAY[%s]::uuid[])", (ids["p2.jpg"],))
            (running,) = holder.claim(["ocr"], 1, asset_ids=[ids["p2.jpg"]])
            queued = conn.execute(
                "SELECT immich_search.requeue(ARRAY[%s, %s, %s]::uuid[])",
                (ids["p0.jpg"], ids["p2.jpg"], str(uuid.uuid4())),
            ).fetchone()[0]
            assert queued == 2, "an unknown asset is skipped"
            rows = conn.execute(
                "SELECT asset_id, state, attempts, run_after = '-infinity', lease_owner FROM immich_search.job"
            ).fetchall()
            state = {str(a): (s, n, first, owner) for a, s, n, first, owner in rows}
            assert state[ids["p0.jpg"]] == ("pending", 0, True, None)
            assert state[ids["p2.jpg"]] == ("pending", 0, True, None)
            with pool.connection() as pooled:
                assert holder.complete(pooled, running) is False, "the requeued job's old lease is void"
            assert conn.execute("SELECT immich_search.requeue_failed()").fetchone()[0] == 1
            assert conn.execute("SELECT immich_search.requeue_failed(ARRAY['clip'])").fetchone()[0] == 0
            with pytest.raises(psycopg.errors.RaiseException, match="unknown task 'thumbs'"):
                conn.execute("SELECT immich_search.requeue(ARRAY[%s]::uuid[], ARRAY['thumbs'])", (ids["p0.jpg"],))
            # NULL tasks: ocr, plus clip once a CLIP model is configured.
            conn.execute("SELECT immich_search.clip_configure_v1('test-model', 8)")
            assert conn.execute("SELECT immich_search.requeue(ARRAY[%s]::uuid[])", (ids["p1.jpg"],)).fetchone()[0] == 2
        first = make_pipeline(pool, tmp_path / "media").queue.claim(["ocr"], 1)
        assert {job.asset_id for job in first} <= {ids["p0.jpg"], ids["p1.jpg"], ids["p2.jpg"]}


def test_requeue_notifies_listeners(db, tmp_path):
    ids = library(db, tmp_path, 1)
    with open_pool(db) as pool:
        make_pipeline(pool, tmp_path / "media").run_once()
    with psycopg.connect(db, autocommit=True) as listener, psycopg.connect(db, autocommit=True) as other:
        listener.execute(f"LISTEN {CHANNEL}")
        assert list(listener.notifies(timeout=0.1)) == []
        other.execute("UPDATE immich_search.job SET updated_at = now()")  # nothing due: no wake-up
        assert list(listener.notifies(timeout=0.2)) == []
        other.execute("SELECT immich_search.requeue(ARRAY[%s]::uuid[])", (ids["p0.jpg"],))
        notes = list(listener.notifies(timeout=10, stop_after=1))
        assert [note.channel for note in notes] == [CHANNEL]


def test_uuid_v7_time(conn):
    row = conn.execute(
        "SELECT immich_search.uuid_v7_time_v1(public.immich_uuid_v7('2025-03-04 05:06:07.891+00'))"
    ).fetchone()
    assert row[0].isoformat().startswith("2025-03-04T05:06:07.891")


# ---------------------------------------------------------------------------------------------------------
# heartbeats and leases


def test_heartbeat_renews_leases_and_worker_row(db, tmp_path):
    library(db, tmp_path, 2)
    with open_pool(db) as pool:
        assert discover(pool, ["ocr"]) == 2
        queue = JobQueue(pool, owner="beating", lease_s=1)
        queue.register(["ocr"], "files")
        jobs = queue.claim(["ocr"], 5)
        assert len(jobs) == 2
        with pool.connection() as conn:  # the lease is about to run out...
            conn.execute("UPDATE immich_search.job SET lease_expires_at = now() - interval '1 second'")
        assert queue.count_runnable(["ocr"]) == 2
        queue.lease_s = 300
        queue.done, queue.state = 7, "working"
        queue.heartbeat()  # ...and the heartbeat renews it
        assert queue.count_runnable(["ocr"]) == 0
        assert JobQueue(pool, owner="thief").claim(["ocr"], 5) == []
        assert 200 < queue.next_due_s(["ocr"]) <= 300, "next due: when the renewed lease would expire"
        with pool.connection() as conn:
            row = conn.execute(
                "SELECT state, jobs_done, tasks, source FROM immich_search.worker WHERE id = 'beating'"
            ).fetchone()
            assert row == ("working", 7, ["ocr"], "files")
        queue.release()
        queue.unregister()
        with pool.connection() as conn:
            assert conn.execute("SELECT count(*) FROM immich_search.worker").fetchone()[0] == 0
        assert queue.next_due_s(["ocr"]) <= 0, "released jobs are due now"


def test_pipeline_registers_and_counts(db, tmp_path):
    library(db, tmp_path, 3)
    with open_pool(db) as pool:
        pipeline = make_pipeline(pool, tmp_path / "media")
        report = pipeline.run_once()
        assert report.done == 3 and report.pauses == 0
        pipeline.heartbeat()
        with pool.connection() as conn:
            state, done = conn.execute("SELECT state, jobs_done FROM immich_search.worker").fetchone()
        assert (state, done) == ("idle", 3)
        pipeline.close()
        with pool.connection() as conn:
            assert conn.execute("SELECT count(*) FROM immich_search.worker").fetchone()[0] == 0


def test_discovery_is_one_process_at_a_time(db, tmp_path):
    library(db, tmp_path, 2)
    with open_pool(db) as pool, psycopg.connect(db, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (DISCOVERY_LOCK_KEY,))  # another process discovers
        assert discover(pool, ["ocr"], wait=False) == 0, "a worker gets on with the queue instead"
        found: list[int] = []
        waiting = threading.Thread(target=lambda: found.append(discover(pool, ["ocr"])))
        waiting.start()
        waiting.join(timeout=0.5)
        assert waiting.is_alive() and found == [], "a waiting discovery cannot pass a held lock"
        other.execute("SELECT pg_advisory_unlock(%s)", (DISCOVERY_LOCK_KEY,))
        waiting.join(timeout=30)
    assert found == [2]


# ---------------------------------------------------------------------------------------------------------
# polling is index-backed


POLL_QUERIES = {
    "discover_changed_assets": {"cursor": "00000000-0000-0000-0000-000000000000", "limit": 2000},
    "discover_changed_previews": {"cursor": "00000000-0000-0000-0000-000000000000", "limit": 2000},
    "claim_jobs": {"tasks": ["ocr"], "limit": 16, "owner": "x", "lease_s": 60},
    "count_runnable": {"tasks": ["ocr", "clip"]},
    "next_due": {"tasks": ["ocr", "clip"]},
    "extend_leases": {"owner": "x", "lease_s": 60},
    "release_jobs": {"owner": "x"},
    "status_undiscovered": {"cursor": "00000000-0000-0000-0000-000000000000", "cap": 100000},
    "status_immich_latest": {},
    "status_throughput": {},
    "recent_errors": {"limit": 10},
}


@pytest.mark.parametrize("name", sorted(POLL_QUERIES))
def test_polling_queries_use_indexes(conn, name):
    """With sequential scans priced out, no query the watcher polls with scans a whole table."""
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + query(name), POLL_QUERIES[name]))
    assert "Seq Scan" not in plan, plan


# ---------------------------------------------------------------------------------------------------------
# watch mode


def test_watch_picks_up_new_assets_and_wakes_on_requeue(db, tmp_path):
    ids = library(db, tmp_path, 2)
    engine = FakeEngine()
    reports = []
    stop = threading.Event()
    with open_pool(db) as pool:
        pipeline = make_pipeline(pool, tmp_path / "media", engine)
        thread = threading.Thread(
            target=watch, kwargs={"pipeline": pipeline, "interval_s": 0.2, "stop": stop, "on_report": reports.append}
        )
        thread.start()
        try:
            assert wait_until(lambda: len(ocr_rows(db)) == 2)
            # A new photo is found by polling the updateId cursor.
            import_library(db, [plain_photo(tmp_path / "photos", "new.jpg", (200, 10, 10))], tmp_path / "media")
            assert wait_until(lambda: "new.jpg" in ocr_rows(db)), "a new asset is indexed within seconds"
            # Trashing needs no sync: search drops it at once.
            user = str(psycopg.connect(db).execute('SELECT id FROM public."user"').fetchone()[0])
            new_text = ocr_rows(db)["new.jpg"]["text"]
            assert [hit.original_file_name for hit in search_ocr(pool, f'ocr:"{new_text}"', user)][:1] == ["new.jpg"]
            with psycopg.connect(db) as conn:
                conn.execute(
                    'UPDATE public.asset SET "deletedAt" = now(), status = %s WHERE "originalFileName" = %s',
                    ("trashed", "new.jpg"),
                )
            assert "new.jpg" not in [hit.original_file_name for hit in search_ocr(pool, f'ocr:"{new_text}"', user)]
        finally:
            stop.set()
            thread.join(timeout=30)
        assert not thread.is_alive()

        # With a poll interval of ten minutes only the notification can wake the watcher.
        stop.clear()
        calls_before = engine.calls
        thread = threading.Thread(
            target=watch, kwargs={"pipeline": pipeline, "interval_s": 600, "stop": stop, "on_report": reports.append}
        )
        thread.start()
        try:
            passes = len(reports)
            assert wait_until(lambda: len(reports) > passes), "the first pass runs at once"
            with psycopg.connect(db, autocommit=True) as conn:
                conn.execute("SELECT immich_search.requeue(ARRAY[%s]::uuid[])", (ids["p1.jpg"],))
            assert wait_until(lambda: engine.calls == calls_before + 1, timeout_s=60), "NOTIFY wakes the watcher"
            assert wait_until(lambda: jobs_by_name(db)["p1.jpg"]["state"] == "done")
        finally:
            stop.set()
            thread.join(timeout=30)
        assert not thread.is_alive()


# ---------------------------------------------------------------------------------------------------------
# Immich's own OCR


def add_immich_ocr(conn, asset_id: str, boxes: list[tuple[str, float, float, bool]], ocr_at: str = "now()") -> None:
    """Immich's OCR of an asset: (text, left, top, visible) boxes, and asset_job_status.ocrAt."""
    for text, left, top, visible in boxes:
        conn.execute(
            'INSERT INTO public.asset_ocr ("assetId", x1, y1, x2, y2, x3, y3, x4, y4, "boxScore", "textScore", text, '
            '"isVisible") VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 0.9, 0.95, %s, %s)',
            (asset_id, left, top, left + 0.3, top, left + 0.3, top + 0.05, left, top + 0.05, text, visible),
        )
    conn.execute(
        f'INSERT INTO public.asset_job_status ("assetId", "ocrAt") VALUES (%s, {ocr_at}) '
        'ON CONFLICT ("assetId") DO UPDATE SET "ocrAt" = excluded."ocrAt"',
        (asset_id,),
    )


@pytest.fixture
def immich_ocr_library(db, tmp_path):
    """Five assets: Immich OCR'd 'read' (3 boxes, one hidden) and 'blank' (no text); 'stale' before its
    preview changed; 'new' and 'fresh' not at all."""
    ids = library(db, tmp_path, 0)
    names = ["read", "blank", "stale", "new"]
    photos = [plain_photo(tmp_path / "photos", f"{name}.jpg", (10 * i, 99, 200)) for i, name in enumerate(names)]
    import_library(db, photos, tmp_path / "media")
    ids = assets_by_name(db)
    with psycopg.connect(db) as conn:
        add_immich_ocr(
            conn,
            ids["read.jpg"],
            [("发票代码 0110", 0.1, 0.30, True), ("增值税电子普通发票", 0.1, 0.10, True), ("hidden", 0.1, 0.5, False)],
        )
        add_immich_ocr(conn, ids["blank.jpg"], [])
        add_immich_ocr(conn, ids["stale.jpg"], [("old text", 0.1, 0.1, True)], ocr_at="now() - interval '1 day'")
    return ids


def test_auto_uses_immich_ocr_where_fresh(db, tmp_path, immich_ocr_library):
    ids = immich_ocr_library
    # Immich's OCR spares reading the preview at all: remove the files it covers.
    preview_file(db, tmp_path / "media", ids["read.jpg"]).unlink()
    preview_file(db, tmp_path / "media", ids["blank.jpg"]).unlink()
    engine = FakeEngine()
    with open_pool(db) as pool:
        report = make_pipeline(pool, tmp_path / "media", engine, ocr_source="auto").run_once()
        assert (report.done, report.failed) == (4, 0), report.errors
        rows = ocr_rows(db)
        assert rows["read.jpg"]["source"] == "immich" and rows["read.jpg"]["model"] == "immich asset_ocr"
        assert rows["read.jpg"]["text"] == "增值税电子普通发票\n发票代码 0110", "reading order, hidden boxes left out"
        assert [line["score"] for line in rows["read.jpg"]["lines"]] == [0.95, 0.95]
        assert rows["blank.jpg"]["source"] == "immich" and rows["blank.jpg"]["text"] == ""
        assert rows["stale.jpg"]["source"] == "rapidocr", "Immich's OCR predates the preview: run ours"
        assert rows["new.jpg"]["source"] == "rapidocr"
        assert engine.calls == 2
        user = str(psycopg.connect(db).execute('SELECT id FROM public."user"').fetchone()[0])
        assert [hit.original_file_name for hit in search_ocr(pool, "ocr:发票", user)] == ["read.jpg"]


def test_immich_only_never_loads_the_engine(db, tmp_path, immich_ocr_library):
    with open_pool(db) as pool:
        engine = LazyEngine(ExplodingEngine)
        report = make_pipeline(pool, tmp_path / "media", engine, ocr_source="immich").run_once()
    assert (report.done, report.failed) == (2, 2)
    jobs = jobs_by_name(db)
    for name in ("stale.jpg", "new.jpg"):
        assert jobs[name]["state"] == "pending" and jobs[name]["later"], "retried later: Immich may OCR it yet"
        assert "Immich has not run OCR" in jobs[name]["error"]
    assert {name for name, row in ocr_rows(db).items() if row["source"] == "immich"} == {"read.jpg", "blank.jpg"}


def test_rapidocr_source_ignores_immich_ocr(db, tmp_path, immich_ocr_library):
    with open_pool(db) as pool:
        report = make_pipeline(pool, tmp_path / "media", FakeEngine(), ocr_source="rapidocr").run_once()
    assert report.done == 4
    assert {row["source"] for row in ocr_rows(db).values()} == {"rapidocr"}


def test_immich_source_needs_immich_ocr_tables(db, tmp_path):
    library(db, tmp_path, 1)
    with psycopg.connect(db) as conn:
        conn.execute("DROP TABLE public.asset_ocr")  # an Immich before v2.2
    with open_pool(db) as pool:
        with pytest.raises(ConfigError, match="v2.2"):
            make_pipeline(pool, tmp_path / "media", ocr_source="immich").run_once()
        report = make_pipeline(pool, tmp_path / "media", ocr_source="auto").run_once()
    assert report.done == 1 and ocr_rows(db)["p0.jpg"]["source"] == "rapidocr"


def test_ocr_task_rejects_unknown_source():
    with pytest.raises(ValueError, match="OCR source"):
        OcrTask(FakeEngine(), source="tesseract")
    assert RetryableJobError("x").retryable


# ---------------------------------------------------------------------------------------------------------
# a huge image that is not a bomb


def image_bytes(size: tuple[int, int], fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(out, format=fmt, **({"quality": 70} if fmt == "JPEG" else {}))
    return out.getvalue()


def test_huge_images_are_reduced_not_rejected(db, tmp_path):
    jpeg = image_bytes((7000, 4500), "JPEG")  # 31.5 MP: decoded at 1/2 scale (JPEG draft)
    png = image_bytes((6000, 2000), "PNG")  # 12 MP PNG: decoded whole, then reduced
    assert max(decode_preview(jpeg).size) <= MAX_SIDE
    reduced = decode_preview(png)
    assert reduced.size == (MAX_SIDE, round(2000 * MAX_SIDE / 6000)) and reduced.mode == "RGB"

    ids = library(db, tmp_path, 2, prefix="huge")
    preview_file(db, tmp_path / "media", ids["huge0.jpg"]).write_bytes(jpeg)
    preview_file(db, tmp_path / "media", ids["huge1.jpg"]).write_bytes(png)
    engine = FakeEngine()
    with open_pool(db) as pool:
        report = make_pipeline(pool, tmp_path / "media", engine).run_once()
    assert (report.done, report.failed) == (2, 0), report.errors
    assert all(max(size) <= MAX_SIDE for size in engine.sizes)
    assert {job["state"] for job in jobs_by_name(db).values()} == {"done"}


# ---------------------------------------------------------------------------------------------------------
# status


def test_status_reports_counts_lag_throughput_errors(db, tmp_path):
    ids = library(db, tmp_path, 3)
    preview_file(db, tmp_path / "media", ids["p2.jpg"]).write_bytes(b"")
    with open_pool(db) as pool:
        pipeline = make_pipeline(pool, tmp_path / "media")
        pipeline.run_once()
        with psycopg.connect(db) as conn:
            status = sync_status(conn)
        assert status.counts == {"ocr": {"pending": 0, "running": 0, "done": 2, "failed": 1}}
        assert status.throughput["last_minute"] == 3 and status.throughput["last_hour"] == 3
        assert [(lag.task, lag.undiscovered, lag.behind_s) for lag in status.lag] == [("ocr", 0, 0.0)]
        assert status.eta_s == 0.0
        assert [(e["asset_id"], e["state"]) for e in status.recent_errors] == [(ids["p2.jpg"], "failed")]
        assert "zero bytes" in status.recent_errors[0]["last_error"]
        assert [w["id"] for w in status.workers] == [pipeline.queue.owner] and status.workers[0]["alive"]

        time.sleep(0.01)  # uuid v7 has millisecond resolution: the new asset is visibly newer
        import_library(db, [plain_photo(tmp_path / "photos", "later.jpg", (1, 1, 1))], tmp_path / "media")
        with psycopg.connect(db) as conn:
            status = sync_status(conn)
        (lag,) = status.lag
        assert lag.undiscovered == 1 and lag.behind_s > 0
        assert status.eta_s is not None and status.eta_s > 0
        json.dumps(status.as_json())
        pipeline.close()


def test_status_command(db, tmp_path):
    ids = library(db, tmp_path, 2)
    preview_file(db, tmp_path / "media", ids["p1.jpg"]).unlink()
    with open_pool(db) as pool:
        make_pipeline(pool, tmp_path / "media").run_once()
    runner = CliRunner()
    result = runner.invoke(cli, ["--database-url", db, "status"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for fragment in ("jobs", "behind Immich", "up to date", "throughput: 1 jobs in the last minute", "recent errors",
                     "preview file not found", "workers"):  # fmt: skip
        assert fragment in result.output, result.output
    data = json.loads(runner.invoke(cli, ["--database-url", db, "status", "--json"]).output)
    assert data["counts"]["ocr"]["done"] == 1 and data["counts"]["ocr"]["pending"] == 1
    assert data["recent_errors"][0]["asset_id"] == ids["p1.jpg"]


def test_status_on_unmigrated_database(immich_db):
    result = CliRunner().invoke(cli, ["--database-url", immich_db, "status"])
    assert result.exit_code != 0 and "immich-search migrate" in result.output


# ---------------------------------------------------------------------------------------------------------
# reprocess


def test_reserve_then_process_one_asset(db, tmp_path):
    ids = library(db, tmp_path, 3)
    engine = FakeEngine()
    with open_pool(db) as pool:
        make_pipeline(pool, tmp_path / "media", engine).run_once()
        other = JobQueue(pool, owner="other-watcher")
        pipeline = make_pipeline(pool, tmp_path / "media", engine)
        (held,) = pipeline.queue.reserve([ids["p1.jpg"]], ["ocr"])
        assert held.attempts == 1
        assert other.claim(["ocr"], 10) == [], "reserved jobs are not up for grabs"
        report = pipeline.run_once(discover_changes=False, asset_ids=[ids["p1.jpg"]], jobs=[held])
    assert (report.done, report.failed) == (1, 0)
    assert engine.calls == 4
    job = jobs_by_name(db)["p1.jpg"]
    assert job["state"] == "done" and job["attempts"] == 1 and job["owner"] is None


def test_reprocess_command(db, tmp_path):
    photos = [
        text_photo(tmp_path / "photos", "sign.jpg", ["WILD LIFE"]),
        plain_photo(tmp_path / "photos", "b.jpg", (5, 6, 7)),
    ]
    import_library(db, photos, tmp_path / "media")
    ids = assets_by_name(db)
    with open_pool(db) as pool:
        make_pipeline(pool, tmp_path / "media").run_once()  # the fake engine's text
    assert ocr_rows(db)["sign.jpg"]["text"].startswith("photo ")
    runner = CliRunner()
    base = ["--database-url", db, "reprocess", "--media-root", str(tmp_path / "media")]
    result = runner.invoke(cli, [*base, ids["sign.jpg"], str(uuid.uuid4())], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "regenerated 1 job(s), 0 failed" in result.output and "skipped" in result.output
    row = ocr_rows(db)["sign.jpg"]
    assert row["engine"] == "faster-paddle-tiny" and "PP-OCRv6 tiny" in row["model"], "the default engine"
    assert "WILD" in row["text"].upper(), "recognised again by our engine"
    assert ocr_rows(db)["b.jpg"]["text"] == pixel_text(Image.open(preview_file(db, tmp_path / "media", ids["b.jpg"])))

    queued = runner.invoke(cli, [*base, ids["b.jpg"], "--queue-only", "--ocr"])
    assert queued.exit_code == 0 and "queued 1 job(s)" in queued.output
    assert jobs_by_name(db)["b.jpg"]["state"] == "pending"

    with psycopg.connect(db) as conn:  # CLIP is set up, but its model is not on this host
        conn.execute("SELECT immich_search.clip_configure_v1('test-model', 8)")
    env = {"COLUMNS": "250", "IMMICH_SEARCH_MODEL_DIR": str(tmp_path / "no-models")}
    ocr_only = runner.invoke(cli, [*base, ids["b.jpg"]], env=env)
    assert ocr_only.exit_code == 0 and "regenerating the OCR text only" in ocr_only.output, ocr_only.output
    required = runner.invoke(cli, [*base, ids["b.jpg"], "--clip"], env=env)
    assert required.exit_code == 1 and "Traceback" not in required.output

    preview_file(db, tmp_path / "media", ids["b.jpg"]).write_bytes(b"not a jpeg")
    failed = runner.invoke(cli, [*base, ids["b.jpg"]], env={"COLUMNS": "250"})
    assert failed.exit_code == 1 and "not an image" in failed.output

    bad = runner.invoke(cli, [*base, "not-a-uuid"])
    assert bad.exit_code == 2 and "is not an asset id" in bad.output
    none = runner.invoke(cli, [*base, str(uuid.uuid4())])
    assert none.exit_code == 1 and "none of the given asset ids" in none.output
