"""Faces of a photo file through Immich's machine-learning protocol, as Immich's server asks for them.

Immich's server (``machine-learning.repository.ts``, ``detectFaces``) sends ``POST <ml-url>/predict`` with a
multipart body: ``entries``, the JSON ``{"facial-recognition": {"detection": {"modelName": M, "options":
{"minScore": S}}, "recognition": {"modelName": M}}}``, and ``image``, the file's bytes. The answer is
``{"facial-recognition": [{"boundingBox": {"x1", "y1", "x2", "y2"}, "embedding": "[...]", "score"}],
"imageHeight": H, "imageWidth": W}``; the embedding is a JSON array of 512 floats for ``buffalo_l``, sent
as a string by Immich's ML service (a list is accepted too).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import httpx

from immich_search.errors import ImmichSearchError
from immich_search.ml.upstream import predict_url

IMMICH_FACE_MODEL = "buffalo_l"
"""Immich's default ``machineLearning.facialRecognition.modelName`` (server/src/config.ts)."""
IMMICH_MIN_SCORE = 0.7
"""Immich's default ``machineLearning.facialRecognition.minScore`` (server/src/config.ts)."""
IMMICH_ML_URL = "http://immich-machine-learning:3003"
"""Immich's default ML URL (``IMMICH_MACHINE_LEARNING_URL`` unset), as in its docker-compose setup."""
TIMEOUT_S = 300.0
"""Seconds the ML service may take (a cold service downloads and loads its face model first)."""


@dataclass(frozen=True)
class DetectedFace:
    """One face: ``box`` ``(x1, y1, x2, y2)`` in pixels, ``embedding`` (floats, 512 for buffalo_l), and the
    detector's ``score`` in [0, 1]."""

    box: tuple[int, int, int, int]
    embedding: tuple[float, ...]
    score: float


@dataclass(frozen=True)
class DetectedFaces:
    """The faces of one image of ``image_width`` x ``image_height`` pixels."""

    image_width: int
    image_height: int
    faces: tuple[DetectedFace, ...]


def default_ml_url() -> str:
    """Immich's ML URL: the first of ``IMMICH_MACHINE_LEARNING_URL`` (comma-separated), else Immich's default."""
    configured = os.environ.get("IMMICH_MACHINE_LEARNING_URL", "").split(",")[0].strip()
    return configured or IMMICH_ML_URL


def detect_faces(
    image: bytes,
    ml_url: str,
    *,
    model_name: str = IMMICH_FACE_MODEL,
    min_score: float = IMMICH_MIN_SCORE,
    client: httpx.Client | None = None,
) -> DetectedFaces:
    """Detect and embed the faces of ``image`` (encoded file bytes) at the ML service ``ml_url``.

    Raises:
        ImmichSearchError: the service cannot be reached, refuses the image (e.g. a corrupt file), or answers
            something that is not a facial-recognition answer.
    """
    entries = {
        "facial-recognition": {
            "detection": {"modelName": model_name, "options": {"minScore": min_score}},
            "recognition": {"modelName": model_name},
        }
    }
    url = predict_url(ml_url if ml_url.endswith("/") else ml_url + "/")
    owned = client is None
    client = client or httpx.Client(timeout=TIMEOUT_S)
    try:
        response = client.post(url, data={"entries": json.dumps(entries)}, files={"image": ("image", image)})
    except httpx.HTTPError as error:
        raise ImmichSearchError(f"the machine-learning service at {ml_url} cannot be reached: {error}") from None
    finally:
        if owned:
            client.close()
    if response.status_code >= 400:
        detail = response.text[:200].strip()
        raise ImmichSearchError(
            f"the machine-learning service at {ml_url} refused the photo (HTTP {response.status_code}): {detail}"
        )
    return parse_answer(response.content, ml_url)


def parse_answer(body: bytes, ml_url: str = "the machine-learning service") -> DetectedFaces:
    """Read a facial-recognition answer (JSON bytes) into :class:`DetectedFaces`.

    Raises:
        ImmichSearchError: not JSON, or not shaped as Immich's answer.
    """
    try:
        answer = json.loads(body)
        faces = []
        for face in answer["facial-recognition"]:
            embedding = face["embedding"]
            if isinstance(embedding, str):
                embedding = json.loads(embedding)
            box = face["boundingBox"]
            faces.append(
                DetectedFace(
                    (round(box["x1"]), round(box["y1"]), round(box["x2"]), round(box["y2"])),
                    tuple(float(value) for value in embedding),
                    float(face["score"]),
                )
            )
        return DetectedFaces(int(answer["imageWidth"]), int(answer["imageHeight"]), tuple(faces))
    except (ValueError, KeyError, TypeError) as error:
        raise ImmichSearchError(f"{ml_url} gave no facial-recognition answer ({error!r})") from None
