"""What the sync computes per asset: one class per queue task (``ocr``, ``clip``).

A task turns a batch of decoded previews into rows and writes them; the pipeline (sync/pipeline.py) does
the claiming, decoding (once per asset for every task), transactions and acknowledgements.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import psycopg
from pgvector import Vector
from PIL import Image
from psycopg_pool import ConnectionPool

from immich_search.errors import ConfigError
from immich_search.ocr_engine import OcrLine
from immich_search.sqlfiles import query
from immich_search.sync.errors import JobError, PermanentJobError, RetryableJobError
from immich_search.sync.immich_ocr import IMMICH_OCR_MODEL, OCR_SOURCES, immich_ocr_available, immich_ocr_lines
from immich_search.tokens import TOKENIZER_VERSION, document_tokens, tsvector_literal

log = logging.getLogger(__name__)


class Task(Protocol):
    """One kind of work in the queue.

    ``name`` is the queue's task (``ocr`` | ``clip``). :meth:`run` returns, per image in order, the row to
    write or the :class:`JobError` to record on that asset's job; :meth:`write` stores one row.

    A task may also have ``resolve(conn, asset_ids) -> {asset id: row | JobError}``: the results it can
    give without the image (e.g. Immich's own OCR); the pipeline then neither reads nor decodes the
    preview of an asset whose every job is resolved.
    """

    name: str

    def prepare(self, pool: ConnectionPool) -> None:
        """Get the database ready before the first batch (e.g. the active model)."""

    def run(self, asset_ids: Sequence[str], images: Sequence[Image.Image]) -> list[dict | JobError]:
        """Compute rows for ``images`` (one per asset of ``asset_ids``)."""

    def write(self, conn: psycopg.Connection, row: dict) -> None:
        """Store one row inside the caller's transaction."""


def ocr_row(
    asset_id: str, lines: list[OcrLine], model: str, source: str = "rapidocr", engine: str = "rapidocr-v4"
) -> dict:
    """Build the ``upsert_ocr`` parameters of an asset from its recognised lines (reading order).

    ``engine`` is the engine's name (:data:`immich_search.ocr.registry.ENGINES`, ``immich`` for Immich's
    own OCR) and ``model`` what it ran, with versions; both are stored on the row.
    """
    texts = [line.text for line in lines]
    return {
        "asset_id": asset_id,
        "source": source,
        "engine": engine,
        "model": model,
        "lines": json.dumps([line.as_json() for line in lines], ensure_ascii=False),
        "text": "\n".join(texts),
        "search_vector": tsvector_literal(document_tokens(texts)),
        "tokenizer_version": TOKENIZER_VERSION,
    }


class OcrTask:
    """The text of each preview, tokenised for search (table ``immich_search.ocr``).

    Args:
        engine: the OCR engine (``.engine``, ``.model`` and ``.recognize(image) -> list[OcrLine]``); ``None``
            builds the default engine (:data:`immich_search.ocr.registry.DEFAULT_ENGINE`) on first use, and
            never when Immich's OCR covers all.
        source: where text comes from: ``rapidocr`` (our engine, whichever ``--ocr-engine``, on every
            preview), ``immich`` (Immich's
            own ``asset_ocr`` rows only, Immich v2.2+; an asset Immich has not OCR'd yet is retried later)
            or ``auto`` (Immich's rows where they are fresh, the engine for the rest).

    Raises:
        ValueError: an unknown ``source``.
    """

    name = "ocr"

    def __init__(self, engine=None, source: str = "rapidocr") -> None:
        if source not in OCR_SOURCES:
            raise ValueError(f"OCR source must be one of {', '.join(OCR_SOURCES)}, got {source!r}")
        self._engine = engine
        self.source = source
        self._immich_available = False

    @property
    def engine(self):
        """The OCR engine, loaded on first use."""
        if self._engine is None:
            from immich_search.ocr.registry import build_engine

            self._engine = build_engine()
        return self._engine

    def prepare(self, pool: ConnectionPool) -> None:
        """Find out whether Immich's own OCR is there to reuse (``source`` ``immich`` or ``auto``).

        Raises:
            ConfigError: ``source`` is ``immich`` and this Immich has no OCR (before v2.2).
        """
        if self.source == "rapidocr":
            return
        with pool.connection() as conn:
            self._immich_available = immich_ocr_available(conn)
        if self.source == "immich" and not self._immich_available:
            raise ConfigError(
                "--ocr-source immich needs Immich's own OCR (Immich v2.2 or later, table asset_ocr); "
                "use --ocr-source rapidocr or auto"
            )

    def resolve(self, conn: psycopg.Connection, asset_ids: Sequence[str]) -> dict[str, dict | JobError]:
        """Rows from Immich's own OCR for the assets it has OCR'd (``source`` ``immich`` or ``auto``).

        Returns:
            ``{asset id: row}`` for assets with fresh Immich OCR; with ``source`` ``immich`` the others map
            to a retryable :class:`JobError` (Immich has not OCR'd them yet); with ``auto`` they are left
            out (RapidOCR reads them). Empty for ``rapidocr``.
        """
        if self.source == "rapidocr" or not self._immich_available:
            return {}
        resolved: dict[str, dict | JobError] = {}
        for asset_id, lines in immich_ocr_lines(conn, asset_ids).items():
            if lines is not None:
                resolved[asset_id] = ocr_row(asset_id, lines, IMMICH_OCR_MODEL, source="immich", engine="immich")
            elif self.source == "immich":
                resolved[asset_id] = RetryableJobError(
                    "Immich has not run OCR on this asset's current preview yet (--ocr-source immich)"
                )
        return resolved

    def run(self, asset_ids: Sequence[str], images: Sequence[Image.Image]) -> list[dict | JobError]:
        """Recognise each image; a model error becomes that asset's (permanent) job error."""
        results: list[dict | JobError] = []
        for asset_id, image in zip(asset_ids, images, strict=True):
            try:
                lines = self.engine.recognize(image)
            except Exception as exc:  # noqa: BLE001 - a model error is recorded on its job
                results.append(PermanentJobError(f"OCR failed: {type(exc).__name__}: {exc}"))
            else:
                # An engine given as module:callable may not name itself.
                name = getattr(self.engine, "engine", None) or "custom"
                results.append(ocr_row(asset_id, lines, self.engine.model, engine=name))
        return results

    def write(self, conn: psycopg.Connection, row: dict) -> None:
        """Upsert the asset's OCR row."""
        conn.execute(query("upsert_ocr"), row)


class ImageEncoder(Protocol):
    """What the clip task needs of a model (:class:`immich_search.runtime.model.ClipModel` has it)."""

    @property
    def name(self) -> str:
        """The model name stored with every vector."""

    @property
    def embed_dim(self) -> int:
        """The vector length."""

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """L2-normalised float32 ``[len(images), embed_dim]``."""


class ClipTask:
    """The cn-clip image vector of each preview (table ``immich_search.clip``).

    Args:
        model: the image encoder; its ``name`` and ``embed_dim`` become the active model of the database
            (:meth:`prepare`), which drops vectors of a previous model and requeues them.
    """

    name = "clip"

    def __init__(self, model: ImageEncoder) -> None:
        self.model = model

    def prepare(self, pool: ConnectionPool) -> None:
        """Make this model the database's active CLIP model (``immich_search.clip_configure_v1``)."""
        with pool.connection() as conn:
            changed = conn.execute(
                query("configure_clip"), {"model": self.model.name, "dim": self.model.embed_dim}
            ).fetchone()
        if changed and changed[0]:
            log.info(
                "active CLIP model is now %s (%d-d); earlier vectors were dropped",
                self.model.name,
                self.model.embed_dim,
            )

    def run(self, asset_ids: Sequence[str], images: Sequence[Image.Image]) -> list[dict | JobError]:
        """Encode the batch in one call; should it fail, image by image so one bad image fails alone."""
        try:
            vectors = self._encode(images)
        except Exception:  # noqa: BLE001 - retried per image below to find the culprit
            log.debug("batch encoding failed; encoding one by one", exc_info=True)
        else:
            return [self._row(a, v) for a, v in zip(asset_ids, vectors, strict=True)]
        results: list[dict | JobError] = []
        for asset_id, image in zip(asset_ids, images, strict=True):
            try:
                results.append(self._row(asset_id, self._encode([image])[0]))
            except Exception as exc:  # noqa: BLE001 - a model error is recorded on its job
                results.append(PermanentJobError(f"CLIP failed: {type(exc).__name__}: {exc}"))
        return results

    def _encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        vectors = np.asarray(self.model.encode_images(images), dtype=np.float32)
        if vectors.shape != (len(images), self.model.embed_dim) or not np.isfinite(vectors).all():
            raise ValueError(
                f"model returned {vectors.shape} (finite: {np.isfinite(vectors).all()}), "
                f"expected ({len(images)}, {self.model.embed_dim}) finite values"
            )
        return vectors

    def _row(self, asset_id: str, vector: np.ndarray) -> dict:
        return {"asset_id": asset_id, "model": self.model.name, "embedding": Vector(vector)}

    def write(self, conn: psycopg.Connection, row: dict) -> None:
        """Upsert the asset's vector."""
        conn.execute(query("upsert_clip"), row)
