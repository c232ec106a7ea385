"""The CLI with a cn-clip model: `sync` runs the clip task, `search` ranks by CLIP and text together.

Tiny ONNX models (tests/clip_fixtures.py) stand in for cn-clip; RapidOCR is the real one.
"""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner

from immich_search.cli import cli
from immich_search.demo import import_library
from tests.clip_fixtures import CN_CLIP_IDS, TinyClip
from tests.conftest import scratch_database
from tests.test_clip_search import BLUE, COLOURS, RED
from tests.test_sync import plain_photo


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tiny = TinyClip(embed_dim=512)
    tiny.align(CN_CLIP_IDS["红"], RED)
    tiny.align(CN_CLIP_IDS["蓝"], BLUE)
    root = tmp_path_factory.mktemp("models")
    tiny.write_model_dir(root, "ViT-B-16")
    return root


@pytest.fixture(scope="module")
def library(server, migrated_template, tmp_path_factory):
    with scratch_database(server, migrated_template) as url:
        photos = tmp_path_factory.mktemp("photos")
        media = tmp_path_factory.mktemp("media")
        import_library(url, [plain_photo(photos, n, c) for n, c in COLOURS.items()], media, email="cli@example.com")
        yield {"url": url, "media": media}


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=True)


def test_sync_then_search_by_meaning(library, model_dir, monkeypatch):
    monkeypatch.setenv("IMMICH_SEARCH_MODEL_DIR", str(model_dir))
    url = library["url"]
    result = run("--database-url", url, "sync", "--media-root", str(library["media"]))
    assert result.exit_code == 0, result.output
    assert "clip 4" in result.stdout and "ocr 4" in result.stdout
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM immich_search.clip").fetchone()[0] == 4

    for query, first in (("clip:红", "red.jpg"), ("蓝", "blue.jpg")):
        result = run("--database-url", url, "search", query, "--json")
        assert result.exit_code == 0, result.output
        hits = json.loads(result.stdout)
        assert hits[0]["original_file_name"] == first
        assert hits[0]["clip_rank"] == 1

    result = run("--database-url", url, "search", "红", "--mode", "clip", "--tokenizer", "sql", "--json")
    assert json.loads(result.stdout)[0]["original_file_name"] == "red.jpg"
    result = run(
        "--database-url", url, "search", "红", "--fusion", "convex", "--ocr-weight", "0.6", "--clip-weight", "0.4"
    )
    assert result.exit_code == 0 and "red.jpg" in result.stdout
    result = run("--database-url", url, "search", "红", "--no-clip", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == [], "--no-clip: text only, and no photo has text"


def test_missing_model_is_explained(library, tmp_path, monkeypatch):
    monkeypatch.setenv("IMMICH_SEARCH_MODEL_DIR", str(tmp_path))
    url = library["url"]
    result = run("--database-url", url, "search", "clip:红")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "vit-b-16.img.fp32.onnx" in result.output and "models export" in result.output
    result = run("--database-url", url, "sync", "--clip", "--media-root", str(library["media"]))
    assert result.exit_code == 1 and "models export" in result.output
    result = run("--database-url", url, "search", "红", "--ocr-weight", "0", "--clip-weight", "0")
    assert result.exit_code == 2 and "cannot both be 0" in result.output


def test_embed_prints_a_vector_psql_can_search_with(library, model_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("IMMICH_SEARCH_MODEL_DIR", str(model_dir))
    result = run("embed", "红")
    assert result.exit_code == 0, result.output
    literal = result.stdout.strip()
    assert literal.startswith("[") and len(literal.strip("[]").split(",")) == 512
    image = plain_photo(tmp_path, "red.jpg", RED)
    assert run("embed", "--image", str(image)).exit_code == 0
    (tmp_path / "not.jpg").write_bytes(b"not an image")
    bad = run("embed", "--image", str(tmp_path / "not.jpg"))
    assert bad.exit_code == 2 and "cannot read" in bad.output
    assert run("embed").exit_code == 2, "TEXT or --image is required"
    run("--database-url", library["url"], "sync", "--media-root", str(library["media"]))
    with psycopg.connect(library["url"]) as conn:
        user = conn.execute("SELECT id FROM public.\"user\" WHERE email = 'cli@example.com'").fetchone()[0]
        first = conn.execute(
            "SELECT original_file_name FROM immich_search.search(%s, %s::vector, %s)", ("红", literal, user)
        ).fetchone()[0]
    assert first == "red.jpg"


def test_doctor_reports_the_model(library, model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("IMMICH_SEARCH_MODEL_DIR", str(model_dir))
    result = run("--database-url", library["url"], "doctor")
    assert result.exit_code == 0, result.output
    assert "cn-clip model" in result.output and "ViT-B-16 fp32" in result.output
    monkeypatch.setenv("IMMICH_SEARCH_MODEL_DIR", str(tmp_path))
    result = run("--database-url", library["url"], "doctor")
    assert result.exit_code == 0, "no model is a warning: OCR search still works"
    row = next(line for line in result.output.splitlines() if "cn-clip" in line)
    assert "warn" in row and "semantic" in row
