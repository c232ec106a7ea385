"""The ``describe`` task: a vision LLM's description of each preview (table ``immich_search.description``).

The preview the pipeline decoded once for every task is re-encoded as a JPEG (at most
:data:`MAX_SIDE` pixels on its long side: vision models resize to about that anyway, and a smaller request
travels faster) and sent to the hosts of a :class:`~immich_search.sync.vision.VisionClient`, the images of a
batch concurrently. Descriptions are folded and tokenised like OCR text, so they are searched the same way.

With a writer (``--write-immich missing|all``, :mod:`immich_search.sync.immich_write`) each new description
is also written into Immich's own description field, with the owner's API key, before the batch is stored.
When that fails the description is stored all the same and the job fails with the reason
(:class:`~immich_search.sync.errors.PartlyDoneError`), retryable where it can succeed later; the retried job
finds the stored description (:meth:`DescribeTask.resolve`) and only writes it into Immich.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence

import psycopg
from PIL import Image
from psycopg_pool import ConnectionPool

from immich_search.sqlfiles import query
from immich_search.sync.errors import JobError, PartlyDoneError, PermanentJobError
from immich_search.sync.immich_write import ImmichDescriptionWriter, WriteItem, WriteResult
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
    """Describe each preview with a vision LLM, and optionally write the description into Immich.

    Args:
        config: the vision hosts and model (see :class:`VisionConfig`).
        client: a client to use instead of one built from ``config`` (tests, benchmarks).
        writer: writes descriptions into Immich (``--write-immich missing|all``); ``None``: never.

    Rows given to :meth:`write` hold the ``upsert_description`` parameters, or only ``asset_id`` where the
    description was stored before (a retried write into Immich). What happened in Immich is recorded as soon
    as it happened (``immich_search.immich_description``), not with the job's acknowledgement: the record
    must say what Immich has even if this worker's lease was lost meanwhile.
    """

    name = "describe"

    def __init__(
        self, config: VisionConfig, client: VisionClient | None = None, writer: ImmichDescriptionWriter | None = None
    ) -> None:
        self.config = config
        self.client = client or VisionClient(config)
        self.writer = writer
        self._pool: ConnectionPool | None = None

    def prepare(self, pool: ConnectionPool) -> None:
        """Record the model (setting ``describe_model``): ``requeue`` then includes this task by default."""
        self._pool = pool
        with pool.connection() as conn:
            conn.execute(query("set_describe_model"), {"model": self.config.model})

    def resolve(self, conn: psycopg.Connection, asset_ids: Sequence[str]) -> dict[str, dict | JobError]:
        """Write the stored descriptions whose last write into Immich failed (no image, no model needed).

        Returns:
            ``{asset id: row or JobError}`` for those assets only; empty without a writer.
        """
        if self.writer is None:
            return {}
        rows = conn.execute(
            query("pending_immich_writes"), {"asset_ids": list(asset_ids), "model": self.config.model}
        ).fetchall()
        conn.commit()  # no transaction stays open while Immich answers
        items = [
            WriteItem(str(asset_id), str(owner) if owner else None, text, ours, bool(locked))
            for asset_id, text, owner, locked, ours in rows
        ]
        results = self.writer.write_many(items)
        with conn.transaction():
            record_writes(conn, items, results)
        return {
            item.asset_id: self._outcome(item.asset_id, None, result)
            for item, result in zip(items, results, strict=True)
        }

    def run(self, asset_ids: Sequence[str], images: Sequence[Image.Image]) -> list[dict | JobError]:
        """Describe the images concurrently (then write them into Immich); a failure becomes that asset's
        job error.

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
        if self.writer is not None:
            self._write_into_immich(results)
        return [r for r in results if r is not None]

    def _write_into_immich(self, results: list[dict | JobError | None]) -> None:
        """Replace each new description's row by its outcome in Immich (in place)."""
        described = [(index, row) for index, row in enumerate(results) if isinstance(row, dict)]
        if not described or self.writer is None or self._pool is None:
            return
        with self._pool.connection() as conn:
            known = {
                str(asset_id): (str(owner) if owner else None, ours, bool(locked))
                for asset_id, owner, locked, ours in conn.execute(
                    query("immich_write_inputs"), {"asset_ids": [row["asset_id"] for _, row in described]}
                ).fetchall()
            }
        items = []
        for _, row in described:
            owner, ours, locked = known.get(row["asset_id"], (None, None, False))
            items.append(WriteItem(row["asset_id"], owner, row["text"], ours, locked))
        outcomes = self.writer.write_many(items)
        with self._pool.connection() as conn, conn.transaction():
            # Failures are recorded by write(), with the new description they refer to.
            record_writes(conn, items, outcomes, failures=False)
        for (index, row), result in zip(described, outcomes, strict=True):
            results[index] = self._outcome(row["asset_id"], row, result)

    @staticmethod
    def _outcome(asset_id: str, row: dict | None, result: WriteResult | JobError) -> dict | JobError:
        """The row for :meth:`write` (the description, ``row``; ``None`` when stored already), or, when the
        write into Immich failed, a :class:`PartlyDoneError` carrying it (the description is stored anyway)."""
        if isinstance(result, JobError):
            return PartlyDoneError(result, {**row, "immich_error": str(result)}) if row is not None else result
        if result.action == "kept":
            log.info("asset %s: Immich's description is a person's; --write-immich missing keeps it", asset_id)
        elif result.action == "locked":
            log.info("asset %s is in the locked folder: an API key may not change its description", asset_id)
        return row if row is not None else {"asset_id": asset_id}

    def write(self, conn: psycopg.Connection, row: dict) -> None:
        """Upsert the asset's description (nothing for a description stored before) and, when writing it into
        Immich failed (``immich_error``), record that it still has to be written."""
        if "text" in row:
            conn.execute(query("upsert_description"), row)
        if "immich_error" in row:
            record_failed_write(conn, row["asset_id"], row["immich_error"])


def record_failed_write(conn: psycopg.Connection, asset_id: str, error: str) -> None:
    """Record that the stored description of ``asset_id`` still has to be written into Immich, and why not yet."""
    conn.execute(query("record_immich_write_failed"), {"asset_id": asset_id, "error": error[:2000]})


def record_writes(
    conn: psycopg.Connection,
    items: Sequence[WriteItem],
    results: Sequence[WriteResult | JobError],
    *,
    failures: bool = True,
) -> None:
    """Record in ``immich_search.immich_description`` what each write into Immich did (inside the caller's
    transaction): the text now ours in Immich, a person's text kept, a locked photo, and with ``failures`` a
    failed write to retry."""
    for item, result in zip(items, results, strict=True):
        if isinstance(result, WriteResult):
            conn.execute(
                query("record_immich_write"),
                {
                    "asset_id": item.asset_id,
                    "outcome": result.action,
                    "text": result.text,
                    "owner_id": result.owner_id or None,
                },
            )
        elif failures:
            record_failed_write(conn, item.asset_id, str(result))
