"""Contract tests of MT-Photos' AI API on ``immich-search ml``: mt-photos-ai's request and answer shapes.

The shapes are those of mt-photos-ai's ``server.py`` (MT-Photos/mt-photos-ai, onnx and rknn builds):
header ``api-key``; ``/check`` -> ``{"result": "pass", ...}``; ``/ocr`` -> ``{"result": {"texts",
"scores" (strings, 2 decimals), "boxes" ([{"x","y","width","height"}] strings, pixels)}}``;
``/clip/img`` and ``/clip/txt`` -> ``{"result": [16-decimal strings]}``; an unreadable photo ->
200 ``{"result": [], "msg": ...}``.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from immich_search.ml.app import build_app
from immich_search.ml.clip import ClipService
from immich_search.ml.ocr import OcrOptions, OcrService
from immich_search.ml.services import MlServices, make_pool
from immich_search.runtime.model import ClipModel
from tests.ml_fixtures import BLUE, RED, solid_jpeg, text_image, tiny_clip_dir

KEY = "mt-key-for-tests"
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
VECTOR_VALUE = re.compile(r"^-?\d\.\d{16}$")


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("mt-clip")
    tiny_clip_dir(root)
    return ClipModel.load(root, "ViT-B-16", providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def client(clip_model):
    ocr = OcrService()
    ocr.engine(OcrOptions(detection_score=0.5))
    services = MlServices(clip=ClipService(clip_model), ocr=ocr, pool=make_pool(), api_key=KEY)
    with TestClient(build_app(services)) as test_client:
        yield test_client


def post(client, path, key=KEY, **kwargs):
    headers = {"api-key": key} if key is not None else {}
    return client.post(path, headers=headers, **kwargs)


def upload(data: bytes, name="photo.jpg"):
    return {"files": {"file": (name, data, "image/jpeg")}}


@pytest.mark.parametrize("path", ["/check", "/ocr", "/clip/img", "/clip/txt", "/restart", "/restart_v2"])
def test_api_key_is_required_and_checked(client, path):
    missing = post(client, path, key=None)
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["header", "api-key"]
    wrong = post(client, path, key="guess")
    assert wrong.status_code == 401 and wrong.json() == {"detail": "Invalid API key"}


def test_check_and_restart(client):
    answer = post(client, "/check").json()
    assert answer["result"] == "pass" and answer["title"]
    assert post(client, "/restart").json() == {"result": "pass"}
    assert post(client, "/restart_v2").json() == {"result": "pass"}
    assert post(client, "/check").status_code == 200  # still here: nothing restarted


def test_ocr_shape(client):
    response = post(client, "/ocr", **upload(text_image("HELLO WORLD 2024"), "text.png"))
    assert response.status_code == 200
    result = response.json()["result"]
    assert set(result) == {"texts", "scores", "boxes"}
    assert "HELLO" in " ".join(result["texts"]).upper()
    assert len(result["scores"]) == len(result["texts"]) == len(result["boxes"])
    for score in result["scores"]:
        assert isinstance(score, str) and re.match(r"^\d\.\d\d$", score)
    for box in result["boxes"]:
        assert set(box) == {"x", "y", "width", "height"}
        assert all(isinstance(value, str) and NUMBER.match(value) for value in box.values())
        # pixels of the 900 x 220 image, not 0-1 fractions
        assert 0 <= float(box["x"]) < 900 and float(box["width"]) > 50 and 10 < float(box["height"]) < 220
        assert 30 < float(box["y"]) + float(box["height"]) / 2 < 160


def test_ocr_of_a_photo_without_text(client):
    assert post(client, "/ocr", **upload(solid_jpeg(BLUE))).json() == {
        "result": {"texts": [], "scores": [], "boxes": []}
    }


@pytest.mark.parametrize("path", ["/ocr", "/clip/img"])
def test_unreadable_photos_answer_an_empty_result_with_a_message(client, path):
    for data in (b"", b"not a photo", solid_jpeg(RED, (300, 300))[:200]):
        response = post(client, path, **upload(data))
        assert response.status_code == 200
        answer = response.json()
        assert answer["result"] == [] and answer["msg"]


def test_ocr_refuses_photos_over_10000_pixels_a_side(client):
    buffer = io.BytesIO()
    Image.new("1", (10_001, 20), 0).save(buffer, "PNG")
    assert post(client, "/ocr", **upload(buffer.getvalue())).json() == {
        "result": [],
        "msg": "height or width out of range",
    }


@pytest.mark.parametrize("path", ["/ocr", "/clip/img"])
def test_a_missing_file_field_is_422(client, path):
    response = post(client, path, files={"other": ("x.jpg", b"123", "image/jpeg")})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "file"]


def test_clip_image_and_text_vectors(client, clip_model):
    image = post(client, "/clip/img", **upload(solid_jpeg(RED))).json()["result"]
    assert len(image) == 512 and all(VECTOR_VALUE.match(value) for value in image)
    expected = clip_model.encode_images([Image.open(io.BytesIO(solid_jpeg(RED))).convert("RGB")])[0]
    np.testing.assert_allclose(np.asarray(image, dtype=np.float64), expected, atol=1e-6)
    red = np.asarray(post(client, "/clip/txt", json={"text": "红"}).json()["result"], dtype=np.float32)
    blue = np.asarray(post(client, "/clip/txt", json={"text": "蓝"}).json()["result"], dtype=np.float32)
    vector = np.asarray(image, dtype=np.float32)
    assert red @ vector > 0.99 and red @ vector > blue @ vector + 0.1


def test_clip_text_bad_bodies(client):
    assert post(client, "/clip/txt", json={"query": "红"}).json()["detail"][0]["loc"] == ["body", "text"]
    assert post(client, "/clip/txt", content=b"{broken").status_code == 422
    assert post(client, "/clip/txt", json={"text": 5}).status_code == 422


def test_the_mt_photos_api_is_off_without_a_key(clip_model):
    services = MlServices(clip=ClipService(clip_model), ocr=None, pool=make_pool(), api_key=None)
    with TestClient(build_app(services)) as test_client:
        response = test_client.post("/check", headers={"api-key": "anything"})
        assert response.status_code == 401 and "--api-key" in response.json()["detail"]
