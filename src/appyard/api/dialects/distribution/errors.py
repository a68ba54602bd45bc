"""AppyardError -> ``{"status": false, "error": {"code": <number>, "message": "..."}}``.

The spec documents three codes: 3001 entity not found, 3002 token expired, 5024 slug already
used. The others are appyard's (docs/distribution-api.md): 3000 missing or invalid token,
3003 not allowed, 4000 bad request, 4001 no build file, 4002 unsupported file type, 4003 a
custom-platform field missing, 4004 malformed form, 4005 invalid build, 4006 build of another
app, 4009 conflict, 4013 too large, 4029 plan limits, 5000 internal error.
"""

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

CODES: dict[str, int] = {
    "auth.credential_expired": 3002,
    "app.slug_taken": 5024,
    "build.file_missing": 4001,
    "upload.unsupported_type": 4002,
    "upload.package_field_missing": 4003,
    "upload.malformed_form": 4004,
    "app.identifier_mismatch": 4006,
}
BY_STATUS = {
    400: 4000,
    401: 3000,
    403: 3003,
    404: 3001,
    405: 4005,
    409: 4009,
    413: 4013,
    422: 4005,
    429: 4029,
    500: 5000,
    507: 5007,
}


def render(error: ApiError) -> dict[str, Any]:
    code = CODES.get(error.code) or BY_STATUS.get(error.status, error.status * 10)
    return {"status": False, "error": {"code": code, "message": error.message}}


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"const": False},
        "error": {
            "type": "object",
            "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
            "required": ["code", "message"],
        },
    },
    "required": ["status", "error"],
}
