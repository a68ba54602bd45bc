"""AppyardError -> ``{"error": "..."}`` with the spec's status codes (400, 401, 403, 404, 405,
429). Anything not in the spec's table is reported as 400 (conflicts, invalid artifacts), so a
client never sees an undocumented status; a body over the endpoint's limit is a 413 and a
real crash a 500 with a request id, nothing internal."""

from __future__ import annotations

from typing import Any

from appyard import errors
from appyard.api.kit import ApiError

STATUS: dict[type[errors.AppyardError], int] = {
    errors.BadRequest: 400,
    errors.Conflict: 400,
    errors.InvalidArtifact: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.LimitExceeded: 429,
    errors.StorageFull: 507,
}


def render(error: ApiError) -> dict[str, Any]:
    return {"error": error.message}


SCHEMA: dict[str, Any] = {  # the spec's "Error Response Format"
    "type": "object",
    "properties": {"error": {"type": "string", "description": "Description of the error"}},
    "required": ["error"],
}
