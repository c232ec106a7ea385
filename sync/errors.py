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
