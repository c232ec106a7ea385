"""The one error type the ``ml`` service's request handlers raise: an HTTP status plus a reason."""

from __future__ import annotations


class RequestError(Exception):
    """A request the service refuses or cannot answer; becomes ``{"detail": reason}`` with ``status``.

    Immich's own machine-learning service (FastAPI) answers errors as ``{"detail": "..."}``; Immich's
    server only looks at the status (any non-2xx makes it try the next URL), so the body is for people.

    Attributes:
        status: HTTP status code (4xx: the request's fault; 502/503/504: ours or upstream's).
        detail: one line saying what is wrong and, where it helps, what to do.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
