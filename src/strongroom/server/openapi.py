"""What the OpenAPI schema says each route answers: every status it can send, and its body.

The routes return raw responses (objects are bytes, errors one JSON shape), so FastAPI cannot
infer these; declaring them lets clients and the schemathesis test hold the server to them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

OCTETS = "application/octet-stream"
JSON = "application/json"
_BINARY = {"type": "string", "format": "binary"}

_WHY = {
    400: "invalid request: a bad name, bytes that do not match their name, a bad parameter",
    401: "no token, or a malformed, unknown, expired or revoked one",
    403: "the token's role or sources do not allow this",
    404: "no such vault, object, token or approval request",
    408: "the upload stalled or took too long",
    409: "the name exists with other bytes, or the request was decided already",
    413: "the upload is larger than the server's limit",
    500: "the storage refused (a permanent storage error)",
    503: "the storage is unavailable for now (retry)",
}


class ErrorBody(BaseModel):
    error: str
    """One line saying why."""
    kind: str
    """not-found, unauthenticated, forbidden, exists, refused, transient, permanent, ..."""


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": _WHY[code]} for code in codes}


AUTH = (400, 401, 403, 404, 500, 503)
"""What every authenticated route may answer besides its success."""


def responses(*extra: int, **success: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """The error statuses of ``AUTH`` and ``extra``, and success responses by status
    (``s200=...``)."""
    out = errors(*sorted(set(AUTH) | set(extra)))
    for key, value in success.items():
        out[int(key.removeprefix("s"))] = value
    return out


def binary(description: str) -> dict[str, Any]:
    return {"description": description, "content": {OCTETS: {"schema": _BINARY}}}


def empty(description: str) -> dict[str, Any]:
    return {"description": description}


def json_body(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": {"type": "object"}}}}


def binary_request() -> dict[str, Any]:
    """The OpenAPI description of a raw object upload (read from the request, not a model)."""
    return {"requestBody": {"required": True, "content": {OCTETS: {"schema": _BINARY}}}}
