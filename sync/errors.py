"""Why a job failed, and whether trying again later can help."""

from __future__ import annotations

from immich_search.errors import ImmichSearchError


class JobError(ImmichSearchError):
    """A job could not be done; ``str(error)`` is the reason recorded on the job.

    ``retryable`` tells whether the same input can succeed later (a preview not yet written, a file
    server that is down) or never will (a corrupt image).
    """

    retryable = False


class PermanentJobError(JobError):
    """The input is bad and stays bad: zero bytes, not an image, truncated, a decompression bomb."""


class RetryableJobError(JobError):
    """The input may appear or become readable later: missing file, permission denied, I/O error."""

    retryable = True


class PartlyDoneError(JobError):
    """Part of a job is done and must be kept (``row``, written by the task as a result would be), the rest
    failed: e.g. a description stored in our table that could not be written into Immich. The pipeline
    writes ``row``, then records the failure on the job (``retryable`` as the underlying error was).

    Args:
        error: the failure of the rest (its message becomes the job's reason, its ``retryable`` the job's).
        row: what the task's ``write`` stores anyway.
    """

    def __init__(self, error: JobError, row: dict) -> None:
        super().__init__(str(error))
        self.retryable = error.retryable
        self.row = row
