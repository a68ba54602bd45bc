"""AppyardError -> ``{"status": <HTTP status>, "error": "<stable code>", "message": "..."}``.
The spec shows no error body; this shape (appyard's choice, docs/upload-context-api.md) keeps
the status a client logs, a code it can branch on and a sentence a person can act on."""

from __future__ import annotations

from typing import Any

from appyard import errors
from appyard.api.kit import ApiError

STATUS: dict[type[errors.AppyardError], int] = {
    errors.BadRequest: 400,
    errors.UploadTooLarge: 413,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.InvalidArtifact: 422,
    errors.LimitExceeded: 429,
    errors.StorageFull: 507,
}


def render(error: ApiError) -> dict[str, Any]:
    return {"status": error.status, "error": error.code, "message": error.message}


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "integer", "description": "the HTTP status"},
        "error": {"type": "string", "description": "stable code, e.g. upload.too_large"},
        "message": {"type": "string"},
    },
    "required": ["status", "error", "message"],
}
