"""Errors answered the way Immich answers them: a JSON body with ``message`` and a correlation id.

Immich v2.x answers ``{"message", "error", "statusCode", "correlationId"}``; v3 sends ``{"message"}`` and
the id in the ``X-Correlation-ID`` header. serve sends both forms at once, so clients of either version
find the ``message`` they show (see ``server/src/middleware/global-exception.filter.ts``).
"""

from __future__ import annotations

import uuid
from http import HTTPStatus

import httpx
from starlette.responses import JSONResponse

CORRELATION_HEADER = "X-Correlation-ID"
"""Immich v3's response header for the request's correlation id."""


def error_body(status: int, message: str, correlation_id: str) -> dict:
    """Return the Immich-style error body for ``status`` (an HTTP status code) and ``message``."""
    return {
        "message": message,
        "error": HTTPStatus(status).phrase,
        "statusCode": status,
        "correlationId": correlation_id,
    }


def error_response(status: int, message: str) -> JSONResponse:
    """Return an Immich-style JSON error response with a fresh correlation id (body and header)."""
    correlation_id = str(uuid.uuid4())
    return JSONResponse(
        error_body(status, message, correlation_id),
        status_code=status,
        headers={CORRELATION_HEADER: correlation_id},
    )


class ServeError(Exception):
    """A request that serve answers itself with an error: ``status`` (HTTP code) and a user-facing message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> JSONResponse:
        """Return the error as an Immich-style JSON response."""
        return error_response(self.status, self.message)


class BadRequest(ServeError):
    """The request body is malformed or a field is invalid (HTTP 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class UpstreamAnswer(Exception):
    """Immich refused a call made on the caller's behalf (401, 403): relay Immich's own answer.

    ``response`` is Immich's buffered :class:`httpx.Response`.
    """

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"Immich answered {response.status_code}")
        self.response = response


class PassThrough(Exception):
    """The request is Immich's to answer; ``reason`` says why (for the log).

    ``body``: the request body to send instead of the client's (``None``: the client's, unchanged).
    """

    def __init__(self, reason: str, body: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.body = body
