"""``immich-search ml``: Immich's machine-learning protocol (``/ping``, ``/predict``) with real models.

CLIP runs a tiny cn-clip of ViT-B-16's real signature (512 dimensions) in onnxruntime; OCR runs the real
RapidOCR engine on drawn text. Upstream forwarding talks to live HTTP stand-ins of stock Immich ML.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from immich_search.ml.app import build_app
from immich_search.ml.clip import ClipService
from immich_search.ml.errors import RequestError
from immich_search.ml.ocr import OcrOptions, OcrService
from immich_search.ml.pool import ModelSlot
from immich_search.ml.services import MlServices, make_pool
from immich_search.ml.upstream import Upstream
from immich_search.runtime.model import ClipModel
from tests.ml_fixtures import BLUE, RED, LiveServer, free_port, solid_jpeg, text_image, tiny_clip_dir

CLIP_NAME = "cn-clip/ViT-B-16__openai"


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("ml-clip")
    tiny_clip_dir(root)
    return ClipModel.load(root, "ViT-B-16", providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def ocr_service():
    service = OcrService()
    service.engine(OcrOptions())
    return service


def make_client(clip_model, ocr_service, **overrides) -> TestClient:
    services = MlServices(
        clip=ClipService(clip_model) if clip_model is not None else None,
        ocr=ocr_service,
        pool=make_pool(overrides.pop("clip_concurrency", 1), overrides.pop("ocr_concurrency", 1)),
        **overrides,
    )
    return TestClient(build_app(services))


@pytest.fixture
def client(clip_model, ocr_service):
    with make_client(clip_model, ocr_service) as test_client:
        yield test_client


def predict(client, entries, image: bytes | None = None, text: str | None = None):
    files = {"entries": (None, json.dumps(entries) if not isinstance(entries, str) else entries)}
    if image is not None:
        files["image"] = ("blob", image, "application/octet-stream")
    if text is not None:
        files["text"] = (None, text)
    return client.post("/predict", files=files)


def visual(name=CLIP_NAME):
    return {"clip": {"visual": {"modelName": name}}}


def textual(name=CLIP_NAME, language="zh-CN"):
    return {"clip": {"textual": {"modelName": name, "options": {"language": language}}}}


def ocr_entry(det=0.5, rec=0.8, max_resolution=736):
    return {
        "ocr": {
            "detection": {
                "modelName": "PP-OCRv5_mobile",
                "options": {"minScore": det, "maxResolution": max_resolution},
            },
            "recognition": {"modelName": "PP-OCRv5_mobile", "options": {"minScore": rec}},
        }
    }


def vector(answer) -> np.ndarray:
    assert isinstance(answer["clip"], str), "Immich reads the embedding as a string"
    return np.asarray(json.loads(answer["clip"]), dtype=np.float32)


def test_ping_and_root(client):
    response = client.get("/ping")
    assert response.status_code == 200 and response.text == "pong"
    assert client.get("/").json() == {"message": "Immich ML"}


def test_clip_visual_is_the_models_vector_with_image_size(client, clip_model):
    response = predict(client, visual(), image=solid_jpeg(RED, (80, 30)))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["imageWidth"], answer["imageHeight"]) == (80, 30)
    got = vector(answer)
    assert got.shape == (512,)
    expected = clip_model.encode_images([Image.open(io.BytesIO(solid_jpeg(RED, (80, 30)))).convert("RGB")])[0]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert abs(np.linalg.norm(got) - 1.0) < 1e-5


def test_clip_textual_chinese_query_meets_its_photo(client):
    red = vector(predict(client, visual(), image=solid_jpeg(RED)).json())
    blue = vector(predict(client, visual(), image=solid_jpeg(BLUE)).json())
    response = predict(client, textual(), text="红")
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"clip"}
    query = vector(response.json())
    assert query @ red > 0.99
    assert query @ red > query @ blue + 0.1


@pytest.mark.parametrize(
    "name",
    [
        "cn-clip/ViT-B-16__openai",
        "ViT-B-16__openai",
        "my-org/ViT-B-32__openai",
        "ViT-B-16",
        "chinese-clip-vit-base-patch16",
    ],
)
def test_clip_names_of_the_loaded_dimension_are_served(client, name):
    response = predict(client, textual(name), text="蓝")
    assert response.status_code == 200, response.text
    assert len(json.loads(response.json()["clip"])) == 512


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("ViT-L-14__openai", "cn-clip ViT-L-14"),  # the table's name for another cn-clip variant
        ("cn-clip/ViT-H-14__laion2b-s32b-b79k", "cn-clip ViT-H-14"),
        ("ViT-B-16-SigLIP__webli", "768 dimensions"),
        ("nllb-clip-large-siglip__v1", "1152 dimensions"),
        ("no-such-model", "unknown CLIP model"),
        ("", "modelName missing"),
    ],
)
def test_clip_names_of_another_model_are_refused_with_the_name_to_type(client, name, reason):
    response = predict(client, visual(name), image=solid_jpeg(RED))
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert reason in detail
    assert "cn-clip/ViT-B-16__openai" in detail


def test_ocr_answers_in_immichs_format(client):
    response = predict(client, ocr_entry(), image=text_image("HELLO WORLD 2024"))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["imageWidth"], answer["imageHeight"]) == (900, 220)
    ocr = answer["ocr"]
    assert "HELLO" in " ".join(ocr["text"]).upper()
    count = len(ocr["text"])
    assert len(ocr["box"]) == 8 * count and len(ocr["boxScore"]) == count and len(ocr["textScore"]) == count
    assert all(0.0 <= value <= 1.0 for value in ocr["box"])
    assert all(0.8 <= score <= 1.0 for score in ocr["textScore"])
    # the text sits in the left half, around y = 60..130 px of 220
    xs, ys = ocr["box"][0::2], ocr["box"][1::2]
    assert min(xs) < 0.2 and 0.1 < min(ys) < max(ys) < 0.8


def test_ocr_recognition_min_score_filters_lines(client):
    loose = predict(client, ocr_entry(rec=0.0), image=text_image()).json()["ocr"]
    assert loose["textScore"], "the drawn text is read"
    top = max(loose["textScore"])
    strict = predict(client, ocr_entry(rec=min(1.0, top + 1e-4)), image=text_image()).json()["ocr"]
    assert strict["text"] == [] and strict["box"] == []


def test_ocr_options_reach_the_engine():
    built, seen = [], []

    class Engine:
        model = "stand-in"

        def recognize(self, image):
            seen.append(image.size)
            return []

    service = OcrService(lambda det: built.append(det) or Engine())
    with make_client(None, service) as test_client:
        for det, resolution in ((0.5, 450), (0.3, 1440), (0.5, 90)):
            response = predict(test_client, ocr_entry(det=det, max_resolution=resolution), image=text_image())
            assert response.status_code == 200
            assert (response.json()["imageWidth"], response.json()["imageHeight"]) == (900, 220)
    assert built == [0.5, 0.3]  # one engine per detection threshold
    assert seen == [(450, 110), (900, 220), (90, 22)]  # the longer side at most maxResolution


def test_ocr_max_resolution_scales_the_image_down(client):
    # Small text in a wide image: read at full size, gone when the longer side is squeezed to 64 px.
    image = text_image("HELLO WORLD", size=(1600, 200), font_size=40)
    full = predict(client, ocr_entry(max_resolution=2000), image=image).json()["ocr"]["text"]
    squeezed = predict(client, ocr_entry(max_resolution=64), image=image).json()["ocr"]["text"]
    assert "HELLO" in " ".join(full).upper()
    assert "HELLO" not in " ".join(squeezed).upper()


def _huge_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (12_000, 12_000), 0).save(buffer, "PNG")  # 144 megapixels, ~20 kB compressed
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("entries", "image", "text", "status", "reason"),
    [
        (visual(), b"", None, 400, "empty"),
        (visual(), b"this is not an image", None, 400, "not an image"),
        (visual(), solid_jpeg(RED, (400, 300))[:300], None, 400, "cannot be decoded"),
        (ocr_entry(), _huge_png(), None, 413, "pixels"),
        (visual(), None, None, 422, "'image'"),
        (textual(), None, None, 422, "'text'"),
        (textual(), None, "   ", 422, "empty"),
        ("{not json", solid_jpeg(RED), None, 422, "not valid JSON"),
        ({}, solid_jpeg(RED), None, 422, "at least one task"),
        ([1, 2], solid_jpeg(RED), None, 422, "JSON object"),
        ({"clip": {"visual": {}, "textual": {}}}, solid_jpeg(RED), None, 422, "clip entry"),
        ({"clip": "ViT-B-16"}, solid_jpeg(RED), None, 422, "clip entry"),
        (ocr_entry(det=2), solid_jpeg(RED), None, 422, "minScore"),
        (ocr_entry(max_resolution="big"), solid_jpeg(RED), None, 422, "maxResolution"),
        (ocr_entry(max_resolution=0), solid_jpeg(RED), None, 422, "maxResolution"),
        ({**visual(), "facial-recognition": {}}, solid_jpeg(RED), None, 422, "separate requests"),
        ({"facial-recognition": {"detection": {"modelName": "buffalo_l"}}}, solid_jpeg(RED), None, 501, "--upstream"),
        ({"captioning": {}}, solid_jpeg(RED), None, 422, "unknown task(s) captioning"),
        ({"ocr": {"detection": {"options": {}}, "recognition": {}}}, solid_jpeg(RED), None, 422, "modelName"),
    ],
)
def test_bad_requests_get_a_clear_4xx(client, entries, image, text, status, reason):
    response = predict(client, entries, image=image, text=text)
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]


def test_requests_that_are_not_forms_or_too_large_are_refused(clip_model, ocr_service):
    with make_client(clip_model, ocr_service, max_image_bytes=10_000) as small:
        assert small.post("/predict", json={"entries": visual()}).status_code == 415
        response = predict(small, visual(), image=solid_jpeg(RED) + b"\0" * 2_000_000)
        assert response.status_code == 413
        response = small.post("/predict", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data"})
        assert response.status_code in (400, 422)
        assert "detail" in response.json()


def test_off_models_answer_501(ocr_service):
    with make_client(None, None) as test_client:
        assert predict(test_client, visual(), image=solid_jpeg(RED)).status_code == 501
        assert predict(test_client, ocr_entry(), image=solid_jpeg(RED)).status_code == 501


# -- upstream forwarding ------------------------------------------------------------------------


def stock_ml_stand_in(name: str, hits: list[str], status: int = 200) -> Starlette:
    """A stock Immich ML stand-in: answers faces with a fixed body naming itself, records each call."""

    async def predict_route(request: Request):
        form = await request.form()
        entries = json.loads(form["entries"])
        image = await form["image"].read()
        await form.close()
        hits.append(name)
        body = {
            "facial-recognition": [
                {"boundingBox": {"x1": 1, "y1": 2, "x2": 3, "y2": 4}, "embedding": "[0.5]", "score": 0.9}
            ],
            "imageHeight": 48,
            "imageWidth": 64,
            "served_by": name,
            "entries_seen": entries,
            "image_bytes": len(image),
        }
        return JSONResponse(body, status_code=status)

    return Starlette(routes=[Route("/predict", predict_route, methods=["POST"])])


FACES = {
    "facial-recognition": {
        "detection": {"modelName": "buffalo_l", "options": {"minScore": 0.7}},
        "recognition": {"modelName": "buffalo_l"},
    }
}


def test_faces_are_forwarded_unchanged_with_failover(clip_model, ocr_service):
    hits: list[str] = []
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with (
        LiveServer(stock_ml_stand_in("broken", hits, status=500)) as broken,
        LiveServer(stock_ml_stand_in("good", hits)) as good,
        make_client(clip_model, ocr_service, upstream=Upstream([dead, broken.url + "/", good.url])) as client,
    ):
        image = solid_jpeg(RED)
        response = predict(client, FACES, image=image)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["served_by"] == "good"
        assert answer["entries_seen"] == FACES and answer["image_bytes"] == len(image)
        assert hits == ["broken", "good"]
        # The URLs that failed now come last: the next request goes straight to the good one.
        hits.clear()
        assert predict(client, FACES, image=image).json()["served_by"] == "good"
        assert hits == ["good"]
        # CLIP and OCR never go upstream.
        assert predict(client, visual(), image=image).status_code == 200
        assert hits == ["good"]


def test_every_upstream_failing_is_a_502_naming_each(clip_model, ocr_service):
    hits: list[str] = []
    dead = f"http://127.0.0.1:{free_port()}"
    with (
        LiveServer(stock_ml_stand_in("broken", hits, status=503)) as broken,
        make_client(clip_model, ocr_service, upstream=Upstream([dead, broken.url])) as client,
    ):
        response = predict(client, FACES, image=solid_jpeg(RED))
        assert response.status_code == 502
        assert dead in response.json()["detail"] and "HTTP 503" in response.json()["detail"]


def test_an_upstream_4xx_is_passed_back(clip_model, ocr_service):
    hits: list[str] = []
    with (
        LiveServer(stock_ml_stand_in("picky", hits, status=422)) as picky,
        make_client(clip_model, ocr_service, upstream=Upstream([picky.url])) as client,
    ):
        response = predict(client, FACES, image=solid_jpeg(RED))
        assert response.status_code == 422 and response.json()["served_by"] == "picky"


# -- bounded concurrency and timeouts -------------------------------------------------------------


def test_slot_runs_at_most_its_concurrency_at_once():
    slot = ModelSlot("test", 2)
    running = []
    lock = threading.Lock()

    def work(index):
        with lock:
            running.append(index)
        time.sleep(0.05)
        return index * 2

    async def main():
        return await asyncio.gather(*(slot.run(work, i, timeout=30) for i in range(8)))

    assert asyncio.run(main()) == [i * 2 for i in range(8)]
    assert slot.peak == 2 and slot.busy == 0 and slot.calls == 8
    slot.close()


def test_slot_timeout_is_a_503_and_keeps_the_bound():
    slot = ModelSlot("slow", 1)

    async def main():
        with pytest.raises(RequestError) as first:
            await slot.run(time.sleep, 0.5, timeout=0.1)
        assert first.value.status == 503
        # the slow call still holds the only slot: a second call waits for it, then runs
        started = time.monotonic()
        assert await slot.run(lambda: "done", timeout=5) == "done"
        assert time.monotonic() - started > 0.2
        assert slot.peak == 1

    asyncio.run(main())
    slot.close()


def test_concurrent_requests_through_the_app_respect_the_bound(clip_model, ocr_service):
    with make_client(clip_model, ocr_service, clip_concurrency=2) as client:
        services = client.app.state.services
        original = services.clip.encode_image

        def slow(image):
            time.sleep(0.05)
            return original(image)

        services.clip.encode_image = slow
        threads = [threading.Thread(target=predict, args=(client, visual(), solid_jpeg(RED))) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        slot = services.pool.slot("clip-visual")
        assert slot.calls == 6 and slot.peak == 2
