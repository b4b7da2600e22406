"""HTTP-specific leaves of the ``ServerError`` branch, and the status every edgeship error maps to.

The error body is ``{"error": {"code", "message"}}`` (docs/protocol.md); ``code`` is a
stable slug clients may branch on, ``message`` says what to do next.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from edgeship.errors import (
    ConflictError,
    EdgeshipError,
    NotFoundError,
    ServerError,
    TrustError,
    UsageError,
)


class Unauthorized(ServerError):
    """No credential, or one the server does not accept (401)."""


class Forbidden(ServerError):
    """A valid credential asking for something that is not its own (403)."""


class PayloadTooLarge(ServerError):
    """A body over the configured limit (413)."""


class RangeNotSatisfiable(ServerError):
    """An upload offset or a byte range that does not fit what is stored (416)."""


class NotReady(ServerError):
    """The server cannot serve yet: database unreachable or repository not signed (503)."""


# Most specific first: the first isinstance match wins.
_STATUS: tuple[tuple[type[EdgeshipError], int, str], ...] = (
    (Unauthorized, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (PayloadTooLarge, 413, "too_large"),
    (RangeNotSatisfiable, 416, "bad_offset"),
    (NotReady, 503, "not_ready"),
    (NotFoundError, 404, "not_found"),
    (ConflictError, 409, "conflict"),
    (TrustError, 422, "untrusted"),
    (UsageError, 422, "invalid"),
)


# What Starlette and FastAPI answer themselves, before a route runs: (status, code, our words).
# A body they cannot even decode (not UTF-8) is bad input like any other: 422, not their 400.
HTTP_ERRORS = {
    400: (422, "invalid", "the request body cannot be parsed; send UTF-8 JSON (docs/protocol.md)"),
    404: (404, "http_error", "no such endpoint; see docs/protocol.md"),
    405: (405, "http_error", "method not allowed on this endpoint"),
}


def status_of(exc: EdgeshipError) -> tuple[int, str]:
    for cls, status, code in _STATUS:
        if isinstance(exc, cls):
            return status, code
    return 500, "server_error"


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


def error_responses() -> dict[int | str, dict[str, Any]]:
    """Every error status the server answers with, and its codes, for the OpenAPI document."""
    codes: dict[int, list[str]] = {404: ["http_error"]}
    for _cls, status, code in _STATUS:
        codes.setdefault(status, []).append(code)
    return {status: {"model": ErrorOut, "description": ", ".join(c)} for status, c in sorted(codes.items())}
