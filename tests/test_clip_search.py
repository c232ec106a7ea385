"""Chinese-CLIP end to end: the clip task in the sync, the vector table, filtered vector search and fusion.

Tiny ONNX models (tests/clip_fixtures.py) with cn-clip's real inputs and outputs put, by construction,
the text 红 ("red") exactly where a red photo points and 蓝 ("blue") where a blue one does, so the
expected order of every search is known without real weights.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pgvector import Vector
from pgvector.psycopg import register_vector
from PIL import Image

from immich_search import immich_rows
from immich_search.db import open_pool
from immich_search.demo import IMMICH_MEDIA_LOCATION, import_library
from immich_search.ocr_engine import OcrLine
from immich_search.ranking.hybrid_search import SemanticSearchUnavailable, search
from immich_search.ranking.query_language import Mode
from immich_search.runtime.model import ClipModel
from immich_search.sync.pipeline import SyncPipeline
from immich_search.sync.sources import MediaFileSource
from immich_search.sync.tasks import ClipTask, OcrTask
from tests.clip_fixtures import CN_CLIP_IDS, TinyClip
from tests.conftest import scratch_database
from tests.test_sync import plain_photo

RED, BLUE, GREEN, YELLOW = (220, 30, 30), (30, 30, 220), (30, 200, 40), (230, 220, 30)
COLOURS = {"red.jpg": RED, "blue.jpg": BLUE, "green.jpg": GREEN, "yellow.jpg": YELLOW}
# The fake OCR reads 红 ("red") on the *blue* photo: a query 红 then has a different winner per branch.
OCR_TEXT = {"blue.jpg": ["红色 发票"], "green.jpg": ["green tea"]}


class ColourOcr:
    """A stand-in OCR engine: the text of the known photo whose colour the image's mean is nearest to."""

    model = "colour-ocr"

    def recognize(self, image: Image.Image) -> list[OcrLine]:
        mean = np.asarray(image.convert("RGB"), dtype=np.float32).reshape(-1, 3).mean(axis=0)
        name = min(COLOURS, key=lambda n: float(np.linalg.norm(mean - np.asarray(COLOURS[n]))))
        box = (0.1, 0.1, 0.9, 0.1, 0.9, 0.2, 0.1, 0.2)
        return [OcrLine(text, 0.99, box) for text in OCR_TEXT.get(name, [])]


class CountingSource(MediaFileSource):
    """Counts preview reads, to prove one read per asset for both tasks."""

    reads = 0

    def read(self, request):
        type(self).reads += 1
        return super().read(request)


@pytest.fixture(scope="module")
def tiny() -> TinyClip:
    model = TinyClip(embed_dim=512)
    model.align(CN_CLIP_IDS["红"], RED)
    model.align(CN_CLIP_IDS["蓝"], BLUE)
    return model


@pytest.fixture(scope="module")
def model_dir(tiny, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    tiny.write_model_dir(root, "ViT-B-16")
    return root


@pytest.fixture(scope="module")
def clip_model(model_dir) -> ClipModel:
    return ClipModel.load(model_dir, "ViT-B-16", providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def synced(server, migrated_template, clip_model, tmp_path_factory):
    """Four solid-colour photos of one user, synced with the colour OCR and the tiny CLIP model."""
    with scratch_database(server, migrated_template) as url:
        photos_dir = tmp_path_factory.mktemp("photos")
        media_root = tmp_path_factory.mktemp("media")
        photos = [plain_photo(photos_dir, photo, colour) for photo, colour in COLOURS.items()]
        user_id = import_library(url, photos, media_root, email="clip@example.com")
        CountingSource.reads = 0
        pool = open_pool(url)
        source = CountingSource(media_root, IMMICH_MEDIA_LOCATION)
        report = SyncPipeline(pool, source, [OcrTask(ColourOcr()), ClipTask(clip_model)], batch_size=3).run_once()
        with psycopg.connect(url) as conn:
            ids = {n: str(a) for a, n in conn.execute('SELECT id, "originalFileName" FROM public.asset')}
        yield {
            "url": url,
            "pool": pool,
            "user_id": user_id,
            "report": report,
            "ids": ids,
            "reads": CountingSource.reads,
        }
        pool.close()


def names(hits, synced) -> list[str]:
    by_id = {asset_id: n for n, asset_id in synced["ids"].items()}
    return [by_id[hit.asset_id] for hit in hits]


# ---------------------------------------------------------------------------------------------------------
# The sync


def test_sync_runs_both_tasks_and_reads_each_preview_once(synced):
    report = synced["report"]
    assert report.failed == 0, report.errors
    assert report.by_task == {"ocr": 4, "clip": 4}
    assert synced["reads"] == 4, "each preview is read and decoded once for both tasks"


def test_stored_vectors_are_the_models_normalised_features(synced, tiny):
    with psycopg.connect(synced["url"]) as conn:
        register_vector(conn)
        rows = conn.execute(
            'SELECT a."originalFileName", c.model, c.embedding FROM immich_search.clip c '
            "JOIN public.asset a ON a.id = c.asset_id"
        ).fetchall()
        active = conn.execute("SELECT value FROM immich_search.setting WHERE key = 'clip_model'").fetchone()[0]
    assert active == "chinese-clip-vit-base-patch16"
    assert len(rows) == 4
    for photo, model, embedding in rows:
        vector = embedding.to_numpy()
        assert model == active and vector.shape == (512,)
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
        # JPEG moves the colour a little; the direction stays.
        assert float(vector @ tiny.expected_image_feature(COLOURS[photo])) > 0.99


def test_second_run_does_no_work_and_clip_is_backfilled_when_enabled_later(db, clip_model, tmp_path):
    url = db
    photos = [plain_photo(tmp_path / "in", n, c) for n, c in COLOURS.items()]
    import_library(url, photos, tmp_path / "media", email="later@example.com")
    source = MediaFileSource(tmp_path / "media", IMMICH_MEDIA_LOCATION)
    with open_pool(url) as pool:
        first = SyncPipeline(pool, source, [OcrTask(ColourOcr())]).run_once()
        assert first.by_task == {"ocr": 4}
        # A model installed later: only the clip task has work, for every existing asset.
        both = SyncPipeline(pool, source, [OcrTask(ColourOcr()), ClipTask(clip_model)])
        second = both.run_once()
        assert second.by_task == {"clip": 4} and second.queued == 4
        third = both.run_once()
        assert (third.queued, third.done, third.failed) == (0, 0, 0)


# ---------------------------------------------------------------------------------------------------------
# Searching


@pytest.mark.parametrize("tokenizer", ["python", "sql"])
def test_clip_query_finds_the_photo_the_text_describes(synced, clip_model, tokenizer):
    hits = search(synced["pool"], "clip:红", synced["user_id"], encoder=clip_model, tokenizer=tokenizer)
    assert names(hits, synced)[0] == "red.jpg"
    assert hits[0].clip_rank == 1 and hits[0].ocr_rank is None
    assert hits[0].clip_score == pytest.approx(1.0, abs=0.01)
    hits = search(synced["pool"], "clip:蓝", synced["user_id"], encoder=clip_model, tokenizer=tokenizer)
    assert names(hits, synced)[0] == "blue.jpg"


def rrf(hit, ocr_weight: float = 1.0, clip_weight: float = 1.0, k: int = 60) -> float:
    """Weighted reciprocal rank fusion of one hit's branch ranks (Cormack et al., SIGIR 2009)."""
    ocr = ocr_weight / (k + hit.ocr_rank) if hit.ocr_rank else 0.0
    return ocr + (clip_weight / (k + hit.clip_rank) if hit.clip_rank else 0.0)


@pytest.mark.parametrize("tokenizer", ["python", "sql"])
def test_each_branch_alone_and_fused(synced, clip_model, tokenizer):
    pool, user = synced["pool"], synced["user_id"]
    ocr_only = search(pool, "ocr:红", user, encoder=clip_model, tokenizer=tokenizer)
    assert names(ocr_only, synced) == ["blue.jpg"], "only the blue photo has 红 in its text"
    clip_only = search(pool, "红", user, encoder=clip_model, mode=Mode.CLIP)
    assert names(clip_only, synced)[0] == "red.jpg"
    hybrid = search(pool, "红", user, encoder=clip_model, tokenizer=tokenizer)
    # blue.jpg is first in the OCR branch and somewhere in the CLIP branch; red.jpg only first in CLIP.
    assert names(hybrid, synced)[:2] == ["blue.jpg", "red.jpg"]
    for hit in hybrid:
        assert hit.score == pytest.approx(rrf(hit), rel=1e-5)
    assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)
    # Weighting CLIP far above the text turns the order around: red 5/61 > blue 0.01/61 + 5/(60 + 2).
    weighted = search(pool, "红", user, encoder=clip_model, clip_weight=5, ocr_weight=0.01, tokenizer=tokenizer)
    assert names(weighted, synced)[:2] == ["red.jpg", "blue.jpg"]
    for hit in weighted:
        assert hit.score == pytest.approx(rrf(hit, ocr_weight=0.01, clip_weight=5), rel=1e-5)


def test_convex_fusion_normalises_each_branch(synced, clip_model):
    hits = search(
        synced["pool"], "红", synced["user_id"], encoder=clip_model, fusion="convex", ocr_weight=0.6, clip_weight=0.4
    )
    clip_scores = [h.clip_score for h in hits if h.clip_score is not None]
    low, high = min(clip_scores), max(clip_scores)
    for hit in hits:
        clip_part = (hit.clip_score - low) / (high - low) if hit.clip_score is not None else 0.0
        ocr_part = 1.0 if hit.ocr_rank else 0.0  # one OCR hit: max == min, normalised to 1
        assert hit.score == pytest.approx(0.6 * ocr_part + 0.4 * clip_part, abs=1e-5)
        assert 0.0 <= hit.score <= 1.0
    assert names(hits, synced)[0] == "blue.jpg"


def test_without_a_model_plain_queries_use_text_and_clip_queries_say_what_is_missing(synced):
    hits = search(synced["pool"], "红", synced["user_id"], encoder=None)
    assert names(hits, synced) == ["blue.jpg"]
    with pytest.raises(SemanticSearchUnavailable, match="models export"):
        search(synced["pool"], "clip:红", synced["user_id"], encoder=None)


def test_vectors_of_another_model_are_refused(synced, clip_model):
    class OtherModel:
        name = "chinese-clip-vit-large-patch14"

        def encode_texts(self, texts):
            return clip_model.encode_texts(texts)

    with pytest.raises(SemanticSearchUnavailable, match="chinese-clip-vit-base-patch16"):
        search(synced["pool"], "clip:红", synced["user_id"], encoder=OtherModel())


def test_bad_fusion_arguments(synced, clip_model):
    pool, user = synced["pool"], synced["user_id"]
    with pytest.raises(ValueError, match="fusion"):
        search(pool, "红", user, encoder=clip_model, fusion="max")
    with pytest.raises(ValueError, match="weights"):
        search(pool, "红", user, encoder=clip_model, ocr_weight=0, clip_weight=0)
    with psycopg.connect(synced["url"]) as conn:
        for args, message in [
            ("'红', NULL, %s, 10, 0, false, 'max'", "fusion must be rrf or convex"),
            ("'红', NULL, %s, 10, 0, false, 'rrf', -1", "weights must be >= 0"),
        ]:
            with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
                conn.execute(f"SELECT * FROM immich_search.search({args})", (synced["user_id"],))
            conn.rollback()


def test_psql_call_with_a_stored_vector(synced):
    with psycopg.connect(synced["url"]) as conn:
        rows = conn.execute(
            "SELECT original_file_name, clip_rank FROM immich_search.search('红', "
            "(SELECT embedding FROM immich_search.clip WHERE asset_id = %s), %s)",
            (synced["ids"]["red.jpg"], synced["user_id"]),
        ).fetchall()
    assert rows[0][0] == "blue.jpg" and rows[1] == ("red.jpg", 1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=40), with_vector=st.booleans())
def test_psql_search_never_raises(synced, text, with_vector):
    with psycopg.connect(synced["url"]) as conn:
        register_vector(conn)
        vector = Vector(np.ones(512, dtype=np.float32) / np.sqrt(512)) if with_vector else None
        text = text.replace("\x00", "")  # PostgreSQL text cannot hold NUL; the driver refuses it first
        conn.execute("SELECT * FROM immich_search.search(%s, %s, %s)", (text, vector, synced["user_id"])).fetchall()


# ---------------------------------------------------------------------------------------------------------
# Errors in the clip task


class FlakyEncoder:
    """Encodes like the real model, but fails on any batch holding a yellow photo."""

    def __init__(self, model: ClipModel) -> None:
        self.model = model
        self.name = model.name
        self.embed_dim = model.embed_dim
        self.calls: list[int] = []

    def encode_images(self, images):
        self.calls.append(len(images))
        for image in images:
            r, g, b = np.asarray(image, dtype=np.float32).reshape(-1, 3).mean(axis=0)
            if r > 150 and g > 150 and b < 100:
                raise RuntimeError("simulated inference failure")
        return self.model.encode_images(images)


def test_a_model_error_fails_only_that_assets_clip_job(db, clip_model, tmp_path):
    url = db
    photos = [plain_photo(tmp_path / "in", n, c) for n, c in COLOURS.items()]
    import_library(url, photos, tmp_path / "media", email="flaky@example.com")
    encoder = FlakyEncoder(clip_model)
    with open_pool(url) as pool:
        report = SyncPipeline(
            pool, MediaFileSource(tmp_path / "media", IMMICH_MEDIA_LOCATION), [OcrTask(ColourOcr()), ClipTask(encoder)]
        ).run_once()
    assert report.by_task == {"ocr": 4, "clip": 3} and report.failed == 1
    ((asset_id, error),) = report.errors
    assert error.startswith("clip: CLIP failed: RuntimeError: simulated inference failure")
    assert encoder.calls[0] == 4, "the batch is tried whole first, then image by image"
    with psycopg.connect(url) as conn:
        states = dict(conn.execute("SELECT task, state FROM immich_search.job WHERE asset_id = %s", (asset_id,)))
    assert states == {"ocr": "done", "clip": "failed"}


# ---------------------------------------------------------------------------------------------------------
# Changing the model


def test_model_change_drops_vectors_resizes_and_requeues(db):
    with psycopg.connect(db, autocommit=True) as conn:
        register_vector(conn)
        user = immich_rows.upsert_user(conn, "m@example.com")
        asset = immich_rows.insert_asset(conn, user, "/data/a.jpg", "a.jpg", hashlib.sha1(b"a").digest())
        assert conn.execute("SELECT immich_search.clip_configure_v1('m1', 512)").fetchone()[0] is True
        assert conn.execute("SELECT immich_search.clip_configure_v1('m1', 512)").fetchone()[0] is False
        conn.execute("INSERT INTO immich_search.clip VALUES (%s, 'm1', %s)", (asset, Vector(np.ones(512) / 512**0.5)))
        conn.execute("INSERT INTO immich_search.job (asset_id, task, state) VALUES (%s, 'clip', 'done')", (asset,))
        assert conn.execute("SELECT immich_search.clip_configure_v1('m2', 768)").fetchone()[0] is True
        assert conn.execute("SELECT count(*) FROM immich_search.clip").fetchone()[0] == 0
        typmod = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'immich_search.clip'::regclass AND attname = 'embedding'"
        ).fetchone()[0]
        assert typmod == "vector(768)"
        index = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'immich_search' AND indexname = 'clip_embedding_idx'"
        ).fetchone()[0]
        assert "vector_cosine_ops" in index
        assert conn.execute("SELECT state FROM immich_search.job WHERE asset_id = %s", (asset,)).fetchone()[0] == (
            "pending"
        )
        # A worker still running the old model writes nothing.
        conn.execute(
            "INSERT INTO immich_search.clip (asset_id, model, embedding) SELECT %s, 'm1', %s "
            "WHERE EXISTS (SELECT 1 FROM immich_search.setting WHERE key = 'clip_model' AND value = 'm1')",
            (asset, Vector(np.ones(768) / 768**0.5)),
        )
        assert conn.execute("SELECT count(*) FROM immich_search.clip").fetchone()[0] == 0
        for bad in ("SELECT immich_search.clip_configure_v1('m3', 0)", "SELECT immich_search.clip_configure_v1('', 8)"):
            with pytest.raises(psycopg.errors.RaiseException):
                conn.execute(bad)
