"""The ``describe`` task: a vision LLM's description of each preview (table ``immich_search.description``).

The preview the pipeline decoded once for every task is re-encoded as a JPEG (at most
:data:`MAX_SIDE` pixels on its long side: vision models resize to about that anyway, and a smaller request
travels faster) and sent to the hosts of a :class:`~immich_search.sync.vision.VisionClient`, the images of a
batch concurrently. Descriptions are folded and tokenised like OCR text, so they are searched the same way.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence

import psycopg
from PIL import Image
from psycopg_pool import ConnectionPool

from immich_search.sqlfiles import query
from immich_search.sync.errors import JobError, PermanentJobError
from immich_search.sync.vision import Description, VisionClient, VisionConfig, describe_many
from immich_search.tokens import TOKENIZER_VERSION, document_tokens, tsvector_literal

log = logging.getLogger(__name__)

MAX_SIDE = 1024
"""Longest side, in pixels, of the JPEG sent (Qwen2.5-VL and LLaVA work at or below this by default)."""

JPEG_QUALITY = 90


def jpeg_bytes(image: Image.Image) -> bytes:
    """Encode an RGB image as JPEG, shrunk to at most :data:`MAX_SIDE` on its long side.

    Raises:
        PermanentJobError: the image cannot be encoded (e.g. zero-sized).
    """
    try:
        copy = image.convert("RGB")
        copy.thumbnail((MAX_SIDE, MAX_SIDE))
        buffer = io.BytesIO()
        copy.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    except (OSError, ValueError) as exc:
        raise PermanentJobError(f"cannot encode the preview for the vision model: {exc}") from exc
    return buffer.getvalue()


def description_row(asset_id: str, description: Description, model: str) -> dict:
    """Build the ``upsert_description`` parameters of an asset."""
    return {
        "asset_id": asset_id,
        "text": description.text,
        "model": model,
        "host": description.host,
        "search_vector": tsvector_literal(document_tokens([description.text])),
        "tokenizer_version": TOKENIZER_VERSION,
    }


class DescribeTask:
    """Describe each preview with a vision LLM.

    Args:
        config: the vision hosts and model (see :class:`VisionConfig`).
        client: a client to use instead of one built from ``config`` (tests, benchmarks).
    """

    name = "describe"

    def __init__(self, config: VisionConfig, client: VisionClient | None = None) -> None:
        self.config = config
        self.client = client or VisionClient(config)

    def prepare(self, pool: ConnectionPool) -> None:
        """Record the model (setting ``describe_model``): ``requeue`` then includes this task by default."""
        with pool.connection() as conn:
            conn.execute(query("set_describe_model"), {"model": self.config.model})

    def run(self, asset_ids: Sequence[str], images: Sequence[Image.Image]) -> list[dict | JobError]:
        """Describe the images concurrently; a failure becomes that asset's job error.

        A :class:`~immich_search.sync.vision.HostsDownError` (every host away) is returned as is: the
        pipeline defers its job without counting an attempt.
        """
        results: list[dict | JobError | None] = [None] * len(images)
        jpegs: list[bytes] = []
        positions: list[int] = []
        for index, image in enumerate(images):
            try:
                jpegs.append(jpeg_bytes(image))
                positions.append(index)
            except JobError as exc:
                results[index] = exc
        for index, outcome in zip(positions, describe_many(self.client, jpegs), strict=True):
            if isinstance(outcome, JobError):
                results[index] = outcome
            elif isinstance(outcome, Exception):
                results[index] = PermanentJobError(f"describe failed: {type(outcome).__name__}: {outcome}")
            else:
                results[index] = description_row(asset_ids[index], outcome, self.config.model)
        return [r for r in results if r is not None]

    def write(self, conn: psycopg.Connection, row: dict) -> None:
        """Upsert the asset's description."""
        conn.execute(query("upsert_description"), row)
