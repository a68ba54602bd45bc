"""AppyardError -> ``{"success": false, "error": {"code": "...", "message": "..."}}``.

The spec shows no error body, and its mutating endpoints answer ``{"success": true}``, so an
error answers ``"success": false`` (a client that checks ``success`` works either way) with the
stable core code and a message a person can act on. Statuses: 400 bad input, 401 missing or
invalid credentials, 403 wrong tenant / missing permission / plan, 404 unknown, 409 state
conflict, 413 body too large, 422 invalid artifact, 429 limits; a crash is a 500 with a
request id and nothing internal."""

from __future__ import annotations

from typing import Any

from appyard import errors
from appyard.api.kit import ApiError

STATUS: dict[type[errors.AppyardError], int] = {
    errors.BadRequest: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.InvalidArtifact: 422,
    errors.LimitExceeded: 429,
    errors.StorageFull: 507,
}


def render(error: ApiError) -> dict[str, Any]:
    return {
        "success": False,
        "error": {**error.details, "code": error.code, "message": error.message},
    }


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "success": {"const": False},
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "stable code, e.g. build.not_found"},
                "message": {"type": "string"},
            },
            "required": ["code", "message"],
        },
    },
    "required": ["success", "error"],
}
