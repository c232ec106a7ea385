"""MT-Photos' AI API (as mt-photos-ai serves it) on the same service, so MT Photos can point at ``ml``.

Endpoints (all ``POST``, header ``api-key``): ``/check``, ``/ocr`` and ``/clip/img`` (multipart field
``file``), ``/clip/txt`` (JSON ``{"text": ...}``), ``/restart`` and ``/restart_v2``. Answers have
mt-photos-ai's shapes: ``{"result": ...}``, scores and pixel boxes as strings, vectors as strings with
16 decimals. As in mt-photos-ai, a photo that cannot be read is answered 200 with
``{"result": [], "msg": reason}``; a missing ``api-key`` header or field is 422 and a wrong key 401.

Differences, on purpose: ``/restart_v2`` does not restart the process (memory stays flat here, and a
service shared with Immich must not vanish); the vectors come from RGB pixels, as cn-clip was trained,
while mt-photos-ai's CPU and NPU builds feed OpenCV's BGR: vectors stored by those builds must be
regenerated (MT Photos: re-run its CLIP recognition) before searches mix them.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from immich_search.ml.errors import RequestError
from immich_search.ml.images import decode_image
from immich_search.ml.ocr import OcrOptions, mtphotos_ocr_answer
from immich_search.ml.services import CLIP_TEXTUAL, CLIP_VISUAL, OCR, MlServices

log = logging.getLogger(__name__)

MT_OCR_OPTIONS = OcrOptions(detection_score=0.5, recognition_score=0.5, max_resolution=2000)
"""mt-photos-ai runs RapidOCR with its defaults: box threshold 0.5, text score 0.5, longer side 2000 px."""

MAX_SIDE = 10_000
"""mt-photos-ai refuses photos wider or taller than this (``height or width out of range``)."""

Handler = Callable[[Request, MlServices], Awaitable[Any]]


def _missing(location: str, name: str) -> JSONResponse:
    """FastAPI's 422 for a missing required field (what mt-photos-ai answers)."""
    return JSONResponse(
        {"detail": [{"type": "missing", "loc": [location, name], "msg": "Field required", "input": None}]},
        status_code=422,
    )


def _guarded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap ``handler`` with the ``api-key`` check and mt-photos-ai's error answers."""

    async def endpoint(request: Request) -> Response:
        services: MlServices = request.app.state.services
        key = request.headers.get("api-key")
        if key is None:
            return _missing("header", "api-key")
        if services.api_key is None:
            return JSONResponse({"detail": "MT-Photos API is off: start ml with --api-key"}, status_code=401)
        if not hmac.compare_digest(key.encode(), services.api_key.encode()):
            return JSONResponse({"detail": "Invalid API key"}, status_code=401)
        try:
            result = await handler(request, services)
        except RequestError as error:
            if error.status == 422:
                return JSONResponse({"detail": error.detail}, status_code=422)
            return JSONResponse({"result": [], "msg": error.detail})
        except Exception as error:  # a model failure: mt-photos-ai answers it as a message too
            log.exception("%s failed", request.url.path)
            return JSONResponse({"result": [], "msg": f"{type(error).__name__}: {error}"})
        return result if isinstance(result, Response) else JSONResponse(result)

    return endpoint


async def check(request: Request, services: MlServices) -> dict[str, Any]:
    """``/check``: MT Photos' connection test."""
    return {"result": "pass", "title": "immich-search ml (mt-photos-ai API)", "help": "docs/ml.md"}


async def restart(request: Request, services: MlServices) -> dict[str, Any]:
    """``/restart`` and ``/restart_v2``: acknowledged; nothing restarts (see the module docstring)."""
    return {"result": "pass"}


async def _upload(request: Request, services: MlServices) -> bytes | Response:
    """Return the ``file`` part's bytes, or mt-photos-ai's 422 when there is none."""
    try:
        form = await request.form(max_files=2, max_fields=8)
    except Exception as error:
        raise RequestError(422, f"the multipart form cannot be read: {error}") from error
    try:
        value = form.get("file")
        if not isinstance(value, UploadFile):
            return _missing("body", "file")
        return await value.read(services.max_image_bytes + 1)
    finally:
        await form.close()


async def ocr(request: Request, services: MlServices) -> Any:
    """``/ocr``: texts, scores and pixel boxes of the photo in ``file``."""
    data = await _upload(request, services)
    if isinstance(data, Response):
        return data
    if services.ocr is None:
        raise RequestError(501, "OCR is off in this service (started with --no-ocr)")
    image = decode_image(data, services.max_image_bytes, services.max_pixels)
    if image.width > MAX_SIDE or image.height > MAX_SIDE:
        return {"result": [], "msg": "height or width out of range"}
    lines = await services.pool.slot(OCR).run(services.ocr.recognize, image, MT_OCR_OPTIONS, timeout=services.timeout_s)
    return mtphotos_ocr_answer(lines, image)


def _vector_strings(vector: Any) -> list[str]:
    """Format a vector as mt-photos-ai does: ``"{:.16f}"`` per value."""
    return [f"{float(value):.16f}" for value in vector]


async def clip_image(request: Request, services: MlServices) -> Any:
    """``/clip/img``: the cn-clip vector of the photo in ``file``."""
    data = await _upload(request, services)
    if isinstance(data, Response):
        return data
    if services.clip is None:
        raise RequestError(501, "CLIP is off in this service (started with --no-clip)")
    image = decode_image(data, services.max_image_bytes, services.max_pixels)
    slot = services.pool.slot(CLIP_VISUAL)
    vector = await slot.run(services.clip.encode_image, image, timeout=services.timeout_s)
    return {"result": _vector_strings(vector)}


async def clip_text(request: Request, services: MlServices) -> Any:
    """``/clip/txt``: the cn-clip vector of ``{"text": ...}``."""
    body = await request.body()
    try:
        payload = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestError(422, f"the body is not JSON: {error}") from error
    if not isinstance(payload, dict) or "text" not in payload:
        return _missing("body", "text")
    if not isinstance(payload["text"], str):
        raise RequestError(422, "'text' must be a string")
    if services.clip is None:
        raise RequestError(501, "CLIP is off in this service (started with --no-clip)")
    slot = services.pool.slot(CLIP_TEXTUAL)
    vector = await slot.run(services.clip.encode_text, payload["text"], timeout=services.timeout_s)
    return {"result": _vector_strings(vector)}


def mtphotos_routes() -> list[Route]:
    """Return the MT-Photos API routes."""
    return [
        Route("/check", _guarded(check), methods=["POST"]),
        Route("/restart", _guarded(restart), methods=["POST"]),
        Route("/restart_v2", _guarded(restart), methods=["POST"]),
        Route("/ocr", _guarded(ocr), methods=["POST"]),
        Route("/clip/img", _guarded(clip_image), methods=["POST"]),
        Route("/clip/txt", _guarded(clip_text), methods=["POST"]),
    ]
