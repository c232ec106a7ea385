"""End to end with the real Immich v3.1 server: its machine learning pointed at ``immich-search ml``.

Immich is configured (its config file) with machine learning on, ``ml`` as its only URL, the CLIP model
``cn-clip/ViT-B-16__openai`` (512 dimensions) answered by a tiny cn-clip of the real signature where 红
aligns with a red photo and 蓝 with a blue one, and OCR on. Then, through Immich's own API only:

* photos uploaded get ``smart_search`` vectors and ``asset_ocr`` rows through ``ml``;
* ``POST /api/search/smart`` with a Chinese query returns the photo the model aligns with it first;
* Immich's own OCR search (``POST /api/search/metadata`` with ``ocr``) finds text our engine read;
* ``immich-search sync --ocr-source auto`` indexes Immich's OCR rows without reading any image again.

The test reconfigures and restarts Immich, so it runs only against an instance it may restart, named by
``IMMICH_SEARCH_TEST_REAL_IMMICH_ML_DIR`` (that instance's ``REAL_IMMICH_DIR``, seeded) with
``IMMICH_SEARCH_TEST_REAL_IMMICH_ML_PORT``, ``..._PG_PORT`` and ``..._REDIS_PORT``; it skips otherwise.
It deletes the photos it uploads and switches machine learning off again at the end. Start such an
instance with ``../shared/real-immich/start.sh --fresh --seed`` and those four values (docs/ml.md).
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest
from PIL import Image

from tests.conftest import corpus_dir
from tests.ml_fixtures import BLUE, RED, free_port, tiny_clip_dir
from tests.real_immich import own_instance

pytestmark = pytest.mark.real_immich

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(os.environ.get("IMMICH_SEARCH_TEST_REAL_IMMICH_SCRIPTS", REPO.parent / "shared" / "real-immich"))
CLIP_NAME = "cn-clip/ViT-B-16__openai"
WAIT_S = 600


def _instance() -> dict[str, str]:
    values = own_instance(
        "ML", "a real Immich instance this test may reconfigure and restart (not a shared one; see docs/ml.md)"
    )
    if not (SCRIPTS / "start.sh").is_file():
        pytest.skip(f"no real-Immich scripts at {SCRIPTS} (set IMMICH_SEARCH_TEST_REAL_IMMICH_SCRIPTS)")
    return values


def _start_immich(instance: dict[str, str], config: Path | None) -> None:
    env = {
        **os.environ,
        "REAL_IMMICH_DIR": instance["dir"],
        "REAL_IMMICH_PORT": instance["port"],
        "REAL_IMMICH_PG_PORT": instance["pg_port"],
        "REAL_IMMICH_REDIS_PORT": instance["redis_port"],
    }
    env.pop("REAL_IMMICH_CONFIG", None)
    if config is not None:
        env["REAL_IMMICH_CONFIG"] = str(config)
    result = subprocess.run(
        ["bash", str(SCRIPTS / "start.sh")], env=env, capture_output=True, text=True, timeout=WAIT_S
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _wait(condition, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1)


def _unique_jpeg(image: Image.Image) -> bytes:
    """JPEG bytes unique to this run (one pixel of noise), so Immich never sees a duplicate checksum."""
    image = image.convert("RGB").copy()
    image.putpixel((0, 0), tuple(random.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


class Immich:
    """The instance under test: API client with the admin key, database URL, media folder."""

    def __init__(self, instance: dict[str, str]) -> None:
        root = Path(instance["dir"])
        self.url = f"http://127.0.0.1:{instance['port']}"
        self.db_url = f"postgresql://postgres:postgres@127.0.0.1:{instance['pg_port']}/immich"
        self.media = root / "media"
        key = (root / "secrets" / "admin.apikey").read_text().strip()
        self.api = httpx.Client(base_url=self.url + "/api", headers={"x-api-key": key}, timeout=60)
        self.uploaded: list[str] = []

    def upload(self, name: str, data: bytes) -> str:
        now = datetime.now(timezone.utc).isoformat()
        response = self.api.post(
            "/assets",
            files={"assetData": (name, data, "image/jpeg")},
            data={"filename": name, "fileCreatedAt": now, "fileModifiedAt": now},
        )
        assert response.status_code in (200, 201), response.text
        asset_id = response.json()["id"]
        self.uploaded.append(asset_id)
        return asset_id

    def sql(self, statement: str, *params):
        with psycopg.connect(self.db_url) as conn:
            return conn.execute(statement, params).fetchall()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    instance = _instance()
    root = tmp_path_factory.mktemp("ml-e2e")
    tiny_clip_dir(root / "models")
    port = free_port()
    ml_url = f"http://127.0.0.1:{port}"
    log = (root / "ml.log").open("w")
    ml = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "immich_search.cli",
            "ml",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--clip-model-dir",
            str(root / "models"),
            "--device",
            "cpu",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    immich = Immich(instance)
    try:
        _wait(lambda: _pings(ml_url) or ml.poll() is not None, "ml to answer /ping", 180)
        assert ml.poll() is None, (root / "ml.log").read_text()
        base = json.loads((SCRIPTS / "immich-config.json").read_text())
        base["machineLearning"] = {
            "enabled": True,
            "urls": [ml_url],
            "availabilityChecks": {"enabled": True, "timeout": 2000, "interval": 30000},
            "clip": {"enabled": True, "modelName": CLIP_NAME},
            "duplicateDetection": {"enabled": False},
            "facialRecognition": {"enabled": False},
            "ocr": {
                "enabled": True,
                "modelName": "PP-OCRv5_mobile",
                "minDetectionScore": 0.5,
                "minRecognitionScore": 0.8,
                "maxResolution": 736,
            },
        }
        config = root / "immich-config.json"
        config.write_text(json.dumps(base))
        _start_immich(instance, config)
        features = immich.api.get("/server/features").json()
        assert features["smartSearch"] and features["ocr"], features
        yield immich, ml_url
    finally:
        if immich.uploaded:
            immich.api.request("DELETE", "/assets", json={"ids": immich.uploaded, "force": True})
        try:
            _start_immich(instance, None)  # machine learning off again
        finally:
            ml.terminate()
            ml.wait(timeout=30)
            log.close()


def _pings(url: str) -> bool:
    try:
        return httpx.get(url + "/ping", timeout=2).text == "pong"
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def uploads(setup):
    immich, _ = setup
    sign = Image.open(corpus_dir() / "images" / "zh_sign_02.jpg")
    ids = {
        "red": immich.upload("e2e-red.jpg", _unique_jpeg(Image.new("RGB", (320, 240), RED))),
        "blue": immich.upload("e2e-blue.jpg", _unique_jpeg(Image.new("RGB", (320, 240), BLUE))),
        "sign": immich.upload("e2e-zh-sign.jpg", _unique_jpeg(sign)),
    }
    wanted = list(ids.values())

    def done():
        vectors = immich.sql('select count(*) from smart_search where "assetId" = any(%s::uuid[])', wanted)[0][0]
        ocr = immich.sql(
            'select count(*) from asset_job_status where "ocrAt" is not null and "assetId" = any(%s::uuid[])', wanted
        )[0][0]
        return vectors == 3 and ocr == 3

    _wait(done, "Immich to get CLIP vectors and OCR for the uploads from ml")
    return ids


def test_uploads_get_cn_clip_vectors_through_ml(setup, uploads):
    immich, ml_url = setup
    (stored,) = immich.sql('select embedding::text from smart_search where "assetId" = %s', uploads["red"])[0]
    stored = np.asarray(json.loads(stored), dtype=np.float32)
    assert stored.shape == (512,)
    preview = immich.sql(
        'select path from asset_file where "assetId" = %s and type = \'preview\' and "isEdited" = false',
        uploads["red"],
    )[0][0]
    entries = json.dumps({"clip": {"visual": {"modelName": CLIP_NAME}}})
    answer = httpx.post(
        ml_url + "/predict",
        files={"entries": (None, entries), "image": ("blob", Path(preview).read_bytes())},
        timeout=60,
    ).json()
    assert float(stored @ np.asarray(json.loads(answer["clip"]), dtype=np.float32)) > 0.9999


@pytest.mark.parametrize(("query", "colour"), [("红", "red"), ("蓝", "blue")])
def test_immichs_own_smart_search_understands_chinese(setup, uploads, query, colour):
    immich, _ = setup
    response = immich.api.post("/search/smart", json={"query": query, "page": 1, "size": 10})
    assert response.status_code == 200, response.text
    items = response.json()["assets"]["items"]
    assert items and items[0]["id"] == uploads[colour]


def test_immichs_own_ocr_search_finds_what_our_engine_read(setup, uploads):
    immich, _ = setup
    texts = [row[0] for row in immich.sql('select text from asset_ocr where "assetId" = %s', uploads["sign"])]
    assert any("大酒店" in text for text in texts), texts
    response = immich.api.post("/search/metadata", json={"ocr": "大酒店", "size": 50})
    assert response.status_code == 200, response.text
    assert uploads["sign"] in [item["id"] for item in response.json()["assets"]["items"]]


def test_sync_ocr_source_auto_reuses_immichs_rows(setup, uploads, tmp_path):
    immich, _ = setup
    # Immich OCRs the whole library through ml (the seeded photos too), so sync has nothing to read itself.
    response = immich.api.put("/jobs/ocr", json={"command": "start", "force": False})
    assert response.status_code in (200, 201), response.text
    _wait(
        lambda: (
            immich.sql(
                'select count(*) from asset a left join asset_job_status s on s."assetId" = a.id '
                'where a."deletedAt" is null and s."ocrAt" is null'
            )[0][0]
            == 0
        ),
        "Immich's OCR job over the library",
    )
    cli = [sys.executable, "-m", "immich_search.cli", "--database-url", immich.db_url]
    subprocess.run([*cli, "migrate"], check=True, capture_output=True, timeout=300)
    result = subprocess.run(
        [
            *cli,
            "sync",
            "--ocr-source",
            "auto",
            "--no-clip",
            "--media-root",
            str(immich.media),
            "--immich-media-location",
            str(immich.media),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = immich.sql(
        "select o.source, o.model, o.text from immich_search.ocr o join asset a on a.id = o.asset_id "
        'where a."deletedAt" is null'
    )
    assets = immich.sql('select count(*) from asset where "deletedAt" is null')[0][0]
    assert len(rows) == assets
    assert {source for source, _, _ in rows} == {"immich"}  # not one image read by RapidOCR
    (sign_text,) = immich.sql("select text from immich_search.ocr where asset_id = %s", uploads["sign"])[0]
    assert "大酒店" in sign_text
