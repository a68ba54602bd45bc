"""AppyardError -> ``{"error": "<message>", "code": "<stable code>"}`` with the store's
statuses: 401 bad token, 403 not allowed, 404 unknown or another tenant's, 409 versionCode
not incremented or a forbidden transition, 413 too large, 422 unsigned or malformed APK."""

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
    return {"error": error.message, "code": error.code}


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "what went wrong, for a person"},
        "code": {"type": "string", "description": "stable code, e.g. version.code_not_incremented"},
    },
    "required": ["error", "code"],
}
