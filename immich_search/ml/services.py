"""What the ``ml`` routes share: the loaded models, their slots, the upstreams and the limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from immich_search.ml.clip import ClipService
from immich_search.ml.images import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_PIXELS
from immich_search.ml.ocr import OcrService
from immich_search.ml.pool import DEFAULT_TIMEOUT_S, ModelPool
from immich_search.ml.upstream import Upstream

CLIP_VISUAL = "clip-visual"
CLIP_TEXTUAL = "clip-textual"
OCR = "ocr"
"""Names of the model slots (see :class:`~immich_search.ml.pool.ModelPool`)."""


@dataclass
class MlServices:
    """Everything a request handler needs.

    Attributes:
        clip: the cn-clip model, or ``None`` when CLIP is off (CLIP requests then get 501).
        ocr: the OCR engines, or ``None`` when OCR is off (OCR requests then get 501).
        pool: one slot per model (``clip-visual``, ``clip-textual``, ``ocr``) bounding concurrency.
        upstream: stock Immich ML services for the tasks not served here.
        api_key: the MT-Photos API key (header ``api-key``); ``None`` turns the MT-Photos API off.
        timeout_s: seconds a request may wait for and run on a model.
        max_image_bytes, max_pixels: upload limits (413 above them).
    """

    clip: ClipService | None
    ocr: OcrService | None
    pool: ModelPool
    upstream: Upstream = field(default_factory=lambda: Upstream([]))
    api_key: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS

    async def aclose(self) -> None:
        """Stop the model threads and close the upstream client."""
        self.pool.close()
        await self.upstream.aclose()


def make_pool(clip_concurrency: int = 1, ocr_concurrency: int = 1) -> ModelPool:
    """Return a :class:`ModelPool` with the three slots (``clip_concurrency`` for both CLIP encoders)."""
    return ModelPool({CLIP_VISUAL: clip_concurrency, CLIP_TEXTUAL: clip_concurrency, OCR: ocr_concurrency})
