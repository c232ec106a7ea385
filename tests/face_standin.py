"""A stand-in for Immich's machine-learning service that answers face requests only, with faces planned per
image, so that Immich v3.1's own face jobs (detection, then clustering into people) run on known faces.

Immich's server (``server/src/repositories/machine-learning.repository.ts``, ``detectFaces`` and
``getFormData``) sends ``POST <url>/predict`` as multipart form data with exactly two parts: ``entries``, the
JSON ``{"facial-recognition": {"detection": {"modelName": M, "options": {"minScore": S}}, "recognition":
{"modelName": M}}}``, and ``image``, the bytes of the asset's preview JPEG (a Blob, file name ``blob``). It
reads back ``{"facial-recognition": [{"boundingBox": {"x1", "y1", "x2", "y2"}, "embedding": "[...]",
"score"}], "imageHeight": H, "imageWidth": W}`` and stores ``embedding`` as it is into
``face_search.embedding vector(512)``, so the embedding is a pgvector literal string, as Immich's own service
sends it. Availability is checked with ``GET <url>/ping``.

Faces are chosen per image: by the SHA-256 of the bytes received (the previews Immich sends, read by the test
from Immich's media folder), else by the image's mean colour (a synthetic photo that ``immich-search people``
re-encodes before sending, so its bytes are not known in advance). Each planned face is a person's fixed
one-hot direction plus a small deterministic noise, so faces of one person are about 0.06 apart in cosine
distance (well inside Immich's ``maxDistance`` 0.5) and faces of different people about 1.0 apart.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import threading
from dataclasses import dataclass, field

from PIL import Image
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

DIM = 512
"""buffalo_l's embedding size, as Immich's ``face_search.embedding vector(512)``."""
NOISE = 0.25
"""Euclidean norm of the noise added to a person's direction (cosine distance within a person ~0.06)."""
NOISE_DIMS = range(100, DIM)
"""Dimensions the noise lives in; people's directions are dimensions below 100."""
SCORE = 0.9
"""Detection score of every face: above Immich's default ``minScore`` 0.7."""


def face_embedding(person: int, seed: str) -> list[float]:
    """A unit 512-d embedding of person ``person`` (their direction: dimension ``person``, below 100) plus
    noise drawn from ``seed``: the same seed always gives the same vector."""
    rng = random.Random(hashlib.sha256(seed.encode()).digest())
    vector = [0.0] * DIM
    noise = [rng.gauss(0.0, 1.0) for _ in NOISE_DIMS]
    scale = NOISE / math.sqrt(sum(value * value for value in noise))
    for dim, value in zip(NOISE_DIMS, noise, strict=True):
        vector[dim] = value * scale
    vector[person] = 1.0
    norm = math.sqrt(sum(value * value for value in vector))
    return [value / norm for value in vector]


def boxes(width: int, height: int, count: int) -> list[dict[str, int]]:
    """``count`` bounding boxes side by side, left to right, inside a ``width`` x ``height`` image (pixels)."""
    step = width // max(count, 1)
    return [
        {"x1": i * step + step // 8, "y1": height // 4, "x2": (i + 1) * step - step // 8, "y2": height // 2}
        for i in range(count)
    ]


@dataclass
class FaceStandIn:
    """The plan and what the service saw.

    ``by_sha256`` maps the SHA-256 (hex) of an image's bytes to ``(label, [person, ...])``; ``by_colour``
    maps an RGB mean colour to the same; a person is an index below 100 (see :func:`face_embedding`).
    ``seen`` collects ``(label, entries)`` per ``/predict`` (``label`` ``"unknown:<sha256>"`` for an image
    in neither plan, which gets no face), ``refused`` every request not shaped as Immich's; ``no_faces``
    answers every image with no face (used to make Immich drop the faces it stored).
    """

    expected_entries: dict
    by_sha256: dict[str, tuple[str, list[int]]] = field(default_factory=dict)
    by_colour: dict[tuple[int, int, int], tuple[str, list[int]]] = field(default_factory=dict)
    seen: list[tuple[str, dict]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    answers: dict[str, dict] = field(default_factory=dict)
    no_faces: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def labels_seen(self) -> list[str]:
        """The labels of the images seen so far, in order."""
        with self.lock:
            return [label for label, _ in self.seen]

    def _plan_for(self, data: bytes, image: Image.Image) -> tuple[str, list[int]]:
        digest = hashlib.sha256(data).hexdigest()
        if digest in self.by_sha256:
            return self.by_sha256[digest]
        mean = image.resize((1, 1)).getpixel((0, 0))
        for colour, plan in self.by_colour.items():
            if max(abs(a - b) for a, b in zip(mean, colour, strict=True)) <= 8:
                return plan
        return f"unknown:{digest}", []

    async def predict(self, request: Request):
        """``POST /predict``: check the request is Immich's face request exactly, answer the planned faces."""
        form = await request.form()
        keys = sorted(form.keys())
        if keys != ["entries", "image"]:
            return self._refuse(f"form parts {keys}, not ['entries', 'image']")
        try:
            entries = json.loads(form["entries"])
        except (TypeError, ValueError):
            return self._refuse(f"entries not JSON: {form['entries']!r:.200}")
        if entries != self.expected_entries:
            return self._refuse(f"entries {entries}, not {self.expected_entries}")
        upload = form["image"]
        if not isinstance(upload, UploadFile):
            return self._refuse("image is not a file part")
        data = await upload.read()
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
            image = image.convert("RGB")
        except Exception:  # any decoding error: Immich's own service answers 422 for an unreadable image
            return self._refuse(f"image of {len(data)} bytes cannot be decoded", status=422)
        label, people = self._plan_for(data, image)
        if self.no_faces:
            people = []
        faces = [
            {"boundingBox": box, "embedding": json.dumps(face_embedding(person, f"{label}/{i}")), "score": SCORE}
            for i, (person, box) in enumerate(zip(people, boxes(image.width, image.height, len(people)), strict=True))
        ]
        answer = {"facial-recognition": faces, "imageHeight": image.height, "imageWidth": image.width}
        with self.lock:
            self.seen.append((label, entries))
            self.answers[label] = answer
        return JSONResponse(answer)

    def _refuse(self, why: str, status: int = 400):
        with self.lock:
            self.refused.append(why)
        return JSONResponse({"detail": why}, status_code=status)

    def app(self) -> Starlette:
        """The ASGI app: ``GET /ping`` (``pong``) and ``POST /predict``."""

        async def ping(_request: Request):
            return PlainTextResponse("pong")

        return Starlette(routes=[Route("/ping", ping), Route("/predict", self.predict, methods=["POST"])])
