"""The sync pipeline on a real PostgreSQL with real RapidOCR: discovery, queue, errors, incremental runs."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import psycopg
import pytest
from PIL import Image, ImageDraw, ImageFont

from immich_search.db import open_pool
from immich_search.demo import CJK_FONT_CANDIDATES, IMMICH_MEDIA_LOCATION, LATIN_FONT_CANDIDATES, import_library
from immich_search.sqlfiles import query
from immich_search.sync.decode import MAX_PIXELS, decode_preview
from immich_search.sync.discovery import discover
from immich_search.sync.errors import PermanentJobError, RetryableJobError
from immich_search.sync.pipeline import OcrSync
from immich_search.sync.queue import JobQueue
from immich_search.sync.sources import MediaFileSource, PreviewRequest
from immich_search.tokens import TOKENIZER_VERSION

# ---------------------------------------------------------------------------------------------------------
# Helpers shared with tests/test_search.py and tests/test_cli.py


def font_path(candidates: tuple[str, ...]) -> str | None:
    """The first font file of ``candidates`` present on this system."""
    return next((path for path in candidates if Path(path).is_file()), None)


LATIN_FONT = font_path(LATIN_FONT_CANDIDATES) or font_path(CJK_FONT_CANDIDATES)
CJK_FONT = font_path(CJK_FONT_CANDIDATES)


def text_photo(folder: Path, name: str, lines: list[str], font_file: str | None = None, size: int = 72) -> Path:
    """Render ``lines`` in large dark letters on a light background (a small photo, quick to OCR)."""
    font_file = font_file or LATIN_FONT
    font = ImageFont.truetype(font_file, size) if font_file else ImageFont.load_default(size=size)
    image = Image.new("RGB", (760, 80 + 110 * len(lines)), (250, 250, 240))
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((40, 40 + 110 * row), line, font=font, fill=(20, 20, 20))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    image.save(path, quality=92)
    return path


def plain_photo(folder: Path, name: str, colour: tuple[int, int, int]) -> Path:
    """A small photo without text; ``colour`` makes its checksum unique."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.new("RGB", (64, 48), colour).save(path, quality=92)
    return path


def assets_by_name(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return {name: str(a) for a, name in conn.execute('SELECT id, "originalFileName" FROM public.asset')}


def preview_file(url: str, media_root: Path, asset_id: str) -> Path:
    """This host's path of an asset's preview (Immich stores /data/...)."""
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT path FROM public.asset_file WHERE \"assetId\" = %s AND type = 'preview'", (asset_id,)
        ).fetchone()[0]
    return media_root / stored.removeprefix(IMMICH_MEDIA_LOCATION + "/")


def jobs_by_name(url: str) -> dict[str, dict]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            'SELECT a."originalFileName", j.state, j.attempts, j.last_error, j.run_after > now(), j.lease_owner '
            "FROM immich_search.job j JOIN public.asset a ON a.id = j.asset_id"
        ).fetchall()
    return {
        name: {"state": state, "attempts": attempts, "error": error, "later": later, "owner": owner}
        for name, state, attempts, error, later, owner in rows
    }


def ocr_rows(url: str) -> dict[str, dict]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            'SELECT a."originalFileName", o.source, o.model, o.lines, o.text, o.search_vector::text, '
            "o.tokenizer_version, o.engine FROM immich_search.ocr o JOIN public.asset a ON a.id = o.asset_id"
        ).fetchall()
    return {
        name: {"source": s, "model": m, "lines": lines, "text": text, "vector": vector, "version": v, "engine": e}
        for name, s, m, lines, text, vector, v, e in rows
    }


def sync(url: str, media_root: Path, engine, **kwargs):
    with open_pool(url) as pool:
        return OcrSync(pool, MediaFileSource(media_root, IMMICH_MEDIA_LOCATION), engine=engine).run_once(**kwargs)


# ---------------------------------------------------------------------------------------------------------
# The happy path and incremental runs


def test_sync_indexes_then_does_no_repeated_work(db, tmp_path, ocr_engine):
    photos = tmp_path / "photos"
    media = tmp_path / "media"
    library = [text_photo(photos, "road_sign.jpg", ["WILD LIFE", "CROSSING"])]
    if CJK_FONT:
        library.append(text_photo(photos, "invoice.jpg", ["增值税发票", "合计 128"], CJK_FONT))
    library.append(plain_photo(photos, "trashed.jpg", (10, 200, 30)))
    import_library(db, library, media)
    ids = assets_by_name(db)
    with psycopg.connect(db) as conn:
        conn.execute(
            "UPDATE public.asset SET \"deletedAt\" = now(), status = 'trashed' WHERE id = %s", (ids["trashed.jpg"],)
        )
    live = [p.name for p in library if p.name != "trashed.jpg"]

    first = sync(db, media, ocr_engine)
    assert first.queued == len(live)
    assert first.done == len(live)
    assert first.failed == 0 and first.errors == []
    assert "trashed.jpg" not in jobs_by_name(db), "a trashed asset is never queued"

    rows = ocr_rows(db)
    assert set(rows) == set(live)
    road = rows["road_sign.jpg"]
    assert road["source"] == "rapidocr" and "rapidocr" in road["model"] and road["engine"] == "rapidocr-v4"
    assert road["version"] == TOKENIZER_VERSION
    assert "WILD" in road["text"].upper() and "CROSSING" in road["text"].upper()
    assert road["lines"], "recognised lines are stored"
    for line in road["lines"]:
        assert set(line) == {"text", "score", "box"}
        assert line["text"].strip()
        assert 0.5 <= line["score"] <= 1.0
        assert len(line["box"]) == 8 and all(0.0 <= v <= 1.0 for v in line["box"])
    assert "\n".join(line["text"] for line in road["lines"]) == road["text"]
    assert "'crossing'" in road["vector"] and "'wild'" in road["vector"]
    if CJK_FONT:
        invoice = rows["invoice.jpg"]
        assert "发票" in invoice["text"]
        assert "'发票'" in invoice["vector"] and "'增值'" in invoice["vector"]
    for job in jobs_by_name(db).values():
        assert job == {"state": "done", "attempts": 1, "error": None, "later": False, "owner": None}

    second = sync(db, media, ocr_engine)
    assert (second.queued, second.done, second.failed) == (0, 0, 0)

    forced = sync(db, media, ocr_engine, force=True)
    assert (forced.queued, forced.done, forced.failed) == (len(live), len(live), 0)
    assert set(ocr_rows(db)) == set(live)
    assert "trashed.jpg" not in jobs_by_name(db)

    # Immich regenerates one preview (an edit, a rotation): only that asset is redone.
    road_id = ids["road_sign.jpg"]
    new_preview = media / "thumbs" / "edited" / f"{road_id}_preview.jpeg"
    new_preview.parent.mkdir(parents=True)
    text_photo(tmp_path / "edited", "edited.jpg", ["SLOW DOWN"]).replace(new_preview)
    with psycopg.connect(db) as conn:
        before = conn.execute('SELECT "updateId" FROM public.asset_file WHERE "assetId" = %s', (road_id,)).fetchone()
        conn.execute(
            "UPDATE public.asset_file SET path = %s WHERE \"assetId\" = %s AND type = 'preview'",
            (f"{IMMICH_MEDIA_LOCATION}/thumbs/edited/{road_id}_preview.jpeg", road_id),
        )
        after = conn.execute('SELECT "updateId" FROM public.asset_file WHERE "assetId" = %s', (road_id,)).fetchone()
    assert before != after, "Immich's trigger stamps a new updateId"
    changed = sync(db, media, ocr_engine)
    assert (changed.queued, changed.done, changed.failed) == (1, 1, 0)
    rows = ocr_rows(db)
    assert "SLOW" in rows["road_sign.jpg"]["text"].upper()
    assert "CROSSING" not in rows["road_sign.jpg"]["text"].upper()

    # Trashing an indexed asset queues nothing.
    with psycopg.connect(db) as conn:
        conn.execute('UPDATE public.asset SET "deletedAt" = now() WHERE id = %s', (road_id,))
    trashed = sync(db, media, ocr_engine)
    assert (trashed.queued, trashed.done, trashed.failed) == (0, 0, 0)


def test_asset_without_preview_is_not_queued(db, tmp_path, ocr_engine):
    import_library(db, [plain_photo(tmp_path / "p", "no_preview.jpg", (1, 2, 3))], tmp_path / "media")
    with psycopg.connect(db) as conn:
        conn.execute("DELETE FROM public.asset_file")
    report = sync(db, tmp_path / "media", ocr_engine)
    assert (report.queued, report.done, report.failed) == (0, 0, 0)
    assert jobs_by_name(db) == {}


def test_photo_without_text_is_indexed_empty(db, tmp_path, ocr_engine):
    import_library(db, [plain_photo(tmp_path / "p", "blank.jpg", (90, 140, 90))], tmp_path / "media")
    report = sync(db, tmp_path / "media", ocr_engine)
    assert (report.done, report.failed) == (1, 0)
    row = ocr_rows(db)["blank.jpg"]
    assert row["text"] == "" and row["lines"] == [] and row["vector"] == ""


# ---------------------------------------------------------------------------------------------------------
# Failures: recorded on their job, the run goes on


def huge_png() -> bytes:
    """A 9000 x 9000 one-bit PNG: a few kilobytes on disk, 81 megapixels decoded."""
    out = io.BytesIO()
    Image.new("1", (9000, 9000)).save(out, format="PNG")
    return out.getvalue()


def test_failures_are_recorded_and_the_run_continues(db, tmp_path, ocr_engine):
    photos, media = tmp_path / "photos", tmp_path / "media"
    names = ["missing", "empty", "truncated", "text_file", "bomb", "outside", "climbs_out", "directory"]
    library = [plain_photo(photos, f"{name}.jpg", (i * 20, 100, 50)) for i, name in enumerate(names)]
    library.append(text_photo(photos, "good.jpg", ["WILD LIFE"]))
    import_library(db, library, media)
    ids = assets_by_name(db)

    def preview(name: str) -> Path:
        return preview_file(db, media, ids[f"{name}.jpg"])

    preview("missing").unlink()
    preview("empty").write_bytes(b"")
    good_jpeg = preview("good").read_bytes()
    preview("truncated").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    preview("text_file").write_text("this is not an image\n")
    preview("bomb").write_bytes(huge_png())
    directory = preview("directory")
    directory.unlink()
    directory.mkdir()
    with psycopg.connect(db) as conn:
        for name, path in (("outside", "/etc/passwd"), ("climbs_out", f"{IMMICH_MEDIA_LOCATION}/../etc/passwd")):
            conn.execute('UPDATE public.asset_file SET path = %s WHERE "assetId" = %s', (path, ids[f"{name}.jpg"]))

    report = sync(db, media, ocr_engine)
    assert report.queued == len(names) + 1
    assert report.done == 1, report.errors
    assert report.failed == len(names)
    assert {asset for asset, _ in report.errors} == {ids[f"{n}.jpg"] for n in names}
    assert "good.jpg" in ocr_rows(db)
    assert set(ocr_rows(db)) == {"good.jpg"}, "failed assets get no OCR row"

    jobs = jobs_by_name(db)
    expected = {
        "missing": ("pending", "preview file not found"),
        "empty": ("failed", "empty (zero bytes)"),
        "truncated": ("failed", "corrupt or truncated"),
        "text_file": ("failed", "not an image"),
        "bomb": ("failed", "image too large"),
        "outside": ("failed", "is not under Immich's media root"),
        "climbs_out": ("failed", "contains '..'"),
        "directory": ("failed", "is a directory"),
    }
    for name, (state, message) in expected.items():
        job = jobs[f"{name}.jpg"]
        assert job["state"] == state, (name, job)
        assert message in job["error"], (name, job)
        assert job["attempts"] == 1 and job["owner"] is None
    assert jobs["missing.jpg"]["later"], "a retryable failure is retried later, not at once"
    assert jobs["good.jpg"]["state"] == "done"

    # Nothing is due now: the next pass does nothing, and permanent failures stay failed.
    again = sync(db, media, ocr_engine)
    assert (again.queued, again.done, again.failed) == (0, 0, 0)

    # The missing preview appears; once its retry is due, the job succeeds.
    preview("missing").write_bytes(preview("good").read_bytes())
    with psycopg.connect(db) as conn:
        conn.execute("UPDATE immich_search.job SET run_after = now() WHERE asset_id = %s", (ids["missing.jpg"],))
    retried = sync(db, media, ocr_engine)
    assert (retried.done, retried.failed) == (1, 0)
    job = jobs_by_name(db)["missing.jpg"]
    assert job["state"] == "done" and job["attempts"] == 2 and job["error"] is None


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_unreadable_preview_is_retryable(db, tmp_path, ocr_engine):
    photos, media = tmp_path / "photos", tmp_path / "media"
    import_library(db, [plain_photo(photos, "locked.jpg", (5, 5, 5))], media)
    path = preview_file(db, media, assets_by_name(db)["locked.jpg"])
    path.chmod(0)
    try:
        report = sync(db, media, ocr_engine)
    finally:
        path.chmod(0o644)
    assert report.failed == 1
    job = jobs_by_name(db)["locked.jpg"]
    assert job["state"] == "pending" and job["later"]
    assert "permission denied" in job["error"]


def test_permission_denied_is_retryable(db, tmp_path, ocr_engine, monkeypatch):
    """The same as above for any user: the read itself is made to fail with EACCES."""
    photos, media = tmp_path / "photos", tmp_path / "media"
    import_library(db, [plain_photo(photos, "locked.jpg", (5, 5, 6))], media)
    denied = preview_file(db, media, assets_by_name(db)["locked.jpg"])
    read_bytes = Path.read_bytes

    def guarded(self: Path) -> bytes:
        if self == denied:
            raise PermissionError(13, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", guarded)
    report = sync(db, media, ocr_engine)
    assert (report.done, report.failed) == (0, 1)
    job = jobs_by_name(db)["locked.jpg"]
    assert job["state"] == "pending" and job["later"] and job["attempts"] == 1
    assert "permission denied" in job["error"]


def test_decode_preview_rejects_bad_input():
    with pytest.raises(PermanentJobError, match="zero bytes"):
        decode_preview(b"")
    with pytest.raises(PermanentJobError, match="not an image"):
        decode_preview(b"hello, world\n" * 10)
    with pytest.raises(PermanentJobError, match="too large"):
        decode_preview(huge_png())
    assert 9000 * 9000 > MAX_PIXELS
    good = io.BytesIO()
    Image.new("RGB", (320, 200), (1, 2, 3)).save(good, format="JPEG")
    with pytest.raises(PermanentJobError, match="truncated"):
        decode_preview(good.getvalue()[:300])
    image = decode_preview(good.getvalue())
    assert image.mode == "RGB" and image.size == (320, 200)
    rgba = io.BytesIO()
    Image.new("RGBA", (10, 10)).save(rgba, format="PNG")
    assert decode_preview(rgba.getvalue()).mode == "RGB"


def test_media_file_source_maps_paths(tmp_path):
    source = MediaFileSource(tmp_path, None)  # recognises /data and /usr/src/app/upload
    assert source.local_path("/data/thumbs/a/b.jpeg") == tmp_path / "thumbs" / "a" / "b.jpeg"
    assert source.local_path("/usr/src/app/upload/thumbs/x.jpeg") == tmp_path / "thumbs" / "x.jpeg"
    assert source.local_path("thumbs/x.jpeg") == tmp_path / "thumbs" / "x.jpeg"
    with pytest.raises(PermanentJobError):
        source.local_path("/elsewhere/x.jpeg")
    with pytest.raises(PermanentJobError):
        source.local_path("/data/../../etc/passwd")
    with pytest.raises(RetryableJobError, match="not generated a preview"):
        source.read(PreviewRequest("a", None))
    with pytest.raises(RetryableJobError, match="not found"):
        source.read(PreviewRequest("a", "/data/none.jpeg"))
    from immich_search.errors import ConfigError

    with pytest.raises(ConfigError, match="--media-root"):
        MediaFileSource(tmp_path / "nonexistent")


# ---------------------------------------------------------------------------------------------------------
# The queue


def queue_library(url: str, folder: Path, count: int) -> list[str]:
    photos = [plain_photo(folder / "p", f"q{i}.jpg", (i, 2 * i, 3 * i)) for i in range(count)]
    import_library(url, photos, folder / "media")
    with open_pool(url) as pool:
        assert discover(pool, ["ocr"]) == count
    return sorted(assets_by_name(url).values())


def test_claims_never_overlap_while_a_claim_is_held(db, tmp_path):
    all_ids = queue_library(db, tmp_path, 6)
    with open_pool(db, max_size=4) as pool:
        # Worker A claims inside a transaction it keeps open: its rows stay locked.
        with psycopg.connect(db) as holder:
            rows = holder.execute(
                query("claim_jobs"), {"tasks": ["ocr"], "limit": 2, "owner": "worker-a", "lease_s": 300}
            ).fetchall()
            held = {str(r[0]) for r in rows}
            assert len(held) == 2
            got: list = []
            thread = threading.Thread(target=lambda: got.extend(JobQueue(pool, owner="worker-b").claim(["ocr"], 10)))
            thread.start()
            thread.join(timeout=20)
            assert not thread.is_alive(), "a claim must skip locked rows, not wait for them"
            claimed_b = {job.asset_id for job in got}
            assert len(claimed_b) == 4
            assert not held & claimed_b
            holder.commit()
        assert held | claimed_b == set(all_ids)
        assert JobQueue(pool, owner="worker-c").claim(["ocr"], 10) == []


def test_concurrent_claims_take_each_job_once(db, tmp_path):
    all_ids = queue_library(db, tmp_path, 12)
    claimed: dict[str, list[str]] = {}
    with open_pool(db, max_size=4) as pool:
        barrier = threading.Barrier(4)

        def worker(owner: str) -> None:
            queue = JobQueue(pool, owner=owner)
            mine = claimed.setdefault(owner, [])
            barrier.wait()
            while jobs := queue.claim(["ocr"], 1):
                mine.extend(job.asset_id for job in jobs)

        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    every = [asset for ids in claimed.values() for asset in ids]
    assert sorted(every) == all_ids, "each job claimed exactly once"
    owners = {job["owner"] for job in jobs_by_name(db).values()}
    assert owners <= {"w0", "w1", "w2", "w3"}


def test_expired_lease_is_taken_over(db, tmp_path):
    (asset,) = queue_library(db, tmp_path, 1)
    with open_pool(db) as pool:
        old = JobQueue(pool, owner="old", lease_s=300)
        new = JobQueue(pool, owner="new")
        (job_old,) = old.claim(["ocr"], 5)
        assert job_old.asset_id == asset and job_old.attempts == 1
        assert new.claim(["ocr"], 5) == [], "a live lease is not taken"
        assert new.count_runnable(["ocr"]) == 0
        with pool.connection() as conn:  # the old worker hangs until its lease runs out
            conn.execute("UPDATE immich_search.job SET lease_expires_at = now() - interval '1 second'")
        assert new.count_runnable(["ocr"]) == 1
        (job_new,) = new.claim(["ocr"], 5)
        assert job_new.asset_id == asset and job_new.attempts == 2
        with pool.connection() as conn:
            assert old.complete(conn, job_old) is False, "the old owner lost its lease"
        old.fail(job_old, "late failure", retryable=False)  # ignored: not the owner any more
        old.release()  # releases nothing of the new owner's
        job = jobs_by_name(db)["q0.jpg"]
        assert job["state"] == "running" and job["owner"] == "new" and job["error"] is None
        with pool.connection() as conn:
            assert new.complete(conn, job_new) is True
        assert jobs_by_name(db)["q0.jpg"]["state"] == "done"


def test_release_returns_claimed_jobs(db, tmp_path):
    queue_library(db, tmp_path, 3)
    with open_pool(db) as pool:
        queue = JobQueue(pool, owner="quitter")
        assert len(queue.claim(["ocr"], 2)) == 2
        queue.release()
        jobs = jobs_by_name(db)
        assert all(job["state"] == "pending" and job["attempts"] == 0 and job["owner"] is None for job in jobs.values())
        assert queue.count_runnable(["ocr"]) == 3


def test_retryable_failure_backs_off_then_fails_for_good(db, tmp_path):
    from immich_search.sync.queue import MAX_ATTEMPTS

    queue_library(db, tmp_path, 1)
    with open_pool(db) as pool:
        queue = JobQueue(pool, owner="w")
        for attempt in range(1, MAX_ATTEMPTS + 1):
            with pool.connection() as conn:
                conn.execute("UPDATE immich_search.job SET run_after = now()")
            (job,) = queue.claim(["ocr"], 1)
            assert job.attempts == attempt
            queue.fail(job, f"flaky {attempt}", retryable=True)
            state = jobs_by_name(db)["q0.jpg"]
            if attempt < MAX_ATTEMPTS:
                assert state["state"] == "pending" and state["later"]
            else:
                assert state["state"] == "failed"
            assert state["error"] == f"flaky {attempt}"
