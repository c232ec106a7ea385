"""Immich's machine-learning protocol: ``GET /ping``, ``POST /predict`` (and ``GET /`` as Immich ML has).

``/predict`` takes a multipart form: ``entries`` (JSON naming tasks and models) plus ``image`` (bytes)
or ``text``. The tasks served here are ``clip`` (``visual`` or ``textual``) and ``ocr``; a request whose
tasks are all others (``facial-recognition``, anything new) goes unchanged to the ``--upstream`` URLs.
Answers have Immich's shapes (``machine-learning.repository.ts`` of Immich v3.1.0); errors are
``{"detail": reason}`` with a 4xx status for a bad request and never a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from immich_search.ml.clip import vector_literal
from immich_search.ml.errors import RequestError
from immich_search.ml.images import decode_image
from immich_search.ml.names import resolve_clip_name
from immich_search.ml.ocr import immich_ocr_answer, parse_ocr_options
from immich_search.ml.services import CLIP_TEXTUAL, CLIP_VISUAL, OCR, MlServices

log = logging.getLogger(__name__)

SERVED_TASKS = ("clip", "ocr")
"""Immich task names answered here; any other goes to the upstreams."""

IMMICH_TASKS = ("clip", "ocr", "facial-recognition")
"""Every task Immich v3.1.0 sends (``ModelTask`` in ``machine-learning.repository.ts``)."""

MAX_ENTRIES_CHARS = 64 * 1024
"""Longest ``entries`` JSON accepted (Immich's are ~300 characters)."""


def _services(request: Request) -> MlServices:
    return request.app.state.services


async def ping(request: Request) -> Response:
    """Answer Immich's availability check: ``pong``, text/plain, 200."""
    return PlainTextResponse("pong")


async def root(request: Request) -> Response:
    """Answer ``GET /`` as Immich ML does (``{"message": "Immich ML"}``)."""
    return JSONResponse({"message": "Immich ML"})


def _parse_entries(raw: Any) -> dict[str, Any]:
    """Decode the ``entries`` form field into a non-empty JSON object (422 otherwise)."""
    if raw is None:
        raise RequestError(422, "the form has no 'entries' field (JSON naming the tasks)")
    if isinstance(raw, UploadFile):
        raise RequestError(422, "'entries' must be a text field, not a file")
    if len(raw) > MAX_ENTRIES_CHARS:
        raise RequestError(422, f"'entries' is longer than {MAX_ENTRIES_CHARS} characters")
    try:
        entries = json.loads(raw)
    except json.JSONDecodeError as error:
        raise RequestError(422, f"'entries' is not valid JSON: {error.msg} at character {error.pos}") from error
    if not isinstance(entries, dict) or not entries:
        raise RequestError(422, "'entries' must be a JSON object naming at least one task")
    return entries


async def _image_bytes(form: Mapping[str, Any], services: MlServices) -> bytes:
    """Return the ``image`` field's bytes (a file part or a text field), or raise 422 / 413."""
    value = form.get("image")
    if value is None:
        raise RequestError(422, "this task needs an 'image' field")
    if isinstance(value, UploadFile):
        data = await value.read(services.max_image_bytes + 1)
    else:
        data = value.encode("latin-1", errors="replace")
    if len(data) > services.max_image_bytes:
        raise RequestError(413, f"the image is larger than {services.max_image_bytes} bytes")
    return data


def _text(form: Mapping[str, Any]) -> str:
    """Return the ``text`` field (422 when absent or a file)."""
    value = form.get("text")
    if value is None:
        raise RequestError(422, "CLIP textual needs a 'text' field")
    if isinstance(value, UploadFile):
        raise RequestError(422, "'text' must be a text field, not a file")
    return value


async def _clip(entry: Any, form: Mapping[str, Any], services: MlServices) -> dict[str, Any]:
    """Answer a ``clip`` entry (``visual`` or ``textual``)."""
    if services.clip is None:
        raise RequestError(501, "CLIP is off in this service (started with --no-clip)")
    if not isinstance(entry, Mapping) or len(entry) != 1 or next(iter(entry)) not in ("visual", "textual"):
        raise RequestError(422, "clip entry must be {'visual': {...}} or {'textual': {...}}")
    kind, options = next(iter(entry.items()))
    if not isinstance(options, Mapping):
        raise RequestError(422, f"clip {kind} must be an object with 'modelName'")
    resolve_clip_name(options.get("modelName"), services.clip.variant)
    if kind == "visual":
        image = decode_image(await _image_bytes(form, services), services.max_image_bytes, services.max_pixels)
        slot = services.pool.slot(CLIP_VISUAL)
        vector = await slot.run(services.clip.encode_image, image, timeout=services.timeout_s)
        return {"clip": vector_literal(vector), "imageHeight": image.height, "imageWidth": image.width}
    text = _text(form)
    slot = services.pool.slot(CLIP_TEXTUAL)
    vector = await slot.run(services.clip.encode_text, text, timeout=services.timeout_s)
    return {"clip": vector_literal(vector)}


async def _ocr(entry: Any, form: Mapping[str, Any], services: MlServices) -> dict[str, Any]:
    """Answer an ``ocr`` entry with Immich's OCR shape."""
    if services.ocr is None:
        raise RequestError(501, "OCR is off in this service (started with --no-ocr)")
    options = parse_ocr_options(entry)
    image = decode_image(await _image_bytes(form, services), services.max_image_bytes, services.max_pixels)
    slot = services.pool.slot(OCR)
    lines = await slot.run(services.ocr.recognize, image, options, timeout=services.timeout_s)
    return immich_ocr_answer(lines, image)


async def predict(request: Request) -> Response:
    """Answer ``POST /predict`` (see the module docstring); every failure is a JSON ``detail``."""
    services = _services(request)
    try:
        return await _predict(request, services)
    except RequestError as error:
        if error.status >= 500:
            log.warning("predict: %s", error.detail)
        return JSONResponse({"detail": error.detail}, status_code=error.status)
    except Exception as error:  # a model failure: reported as the service's fault, never a traceback
        log.exception("predict failed")
        return JSONResponse({"detail": f"inference failed: {type(error).__name__}: {error}"}, status_code=500)


async def _predict(request: Request, services: MlServices) -> Response:
    length = request.headers.get("content-length")
    limit = services.max_image_bytes + 1024 * 1024
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestError(413, f"the request is {length} bytes; at most {limit} are accepted")
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise RequestError(415, "send a multipart form with 'entries' and 'image' or 'text'")
    body = await request.body()
    if len(body) > limit:
        raise RequestError(413, f"the request is {len(body)} bytes; at most {limit} are accepted")
    try:
        form = await request.form(max_files=4, max_fields=16)
    except Exception as error:  # python-multipart and starlette raise several types for a broken body
        raise RequestError(400, f"the multipart form cannot be read: {error}") from error
    try:
        entries = _parse_entries(form.get("entries"))
        served = [task for task in entries if task in SERVED_TASKS]
        if not served:
            unknown = sorted(task for task in entries if task not in IMMICH_TASKS)
            if unknown and not services.upstream.urls:
                raise RequestError(
                    422, f"unknown task(s) {', '.join(unknown)}; Immich's tasks are {', '.join(IMMICH_TASKS)}"
                )
            answer = await services.upstream.predict(body, content_type)
            return Response(answer.body, status_code=answer.status, media_type=answer.content_type)
        if len(served) != len(entries):
            others = ", ".join(sorted(set(entries) - set(served)))
            raise RequestError(422, f"send {', '.join(served)} and {others} in separate requests (as Immich does)")
        result: dict[str, Any] = {}
        for task in served:
            handler = _clip if task == "clip" else _ocr
            result.update(await handler(entries[task], form, services))
        return JSONResponse(result)
    finally:
        await form.close()


def immich_routes() -> list[Route]:
    """Return the routes of Immich's ML protocol."""
    return [
        Route("/", root, methods=["GET"]),
        Route("/ping", ping, methods=["GET"]),
        Route("/predict", predict, methods=["POST"]),
    ]
