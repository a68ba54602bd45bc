"""The protection service's management API (../shared/specs/protection-management-api.txt),
mounted at ``/frontend``."""

from __future__ import annotations

from appyard.api.dialects.management import errors, routes
from appyard.api.kit import MIB, Dialect

DIALECT = Dialect(
    name="management",
    prefix="/frontend",
    title="appyard: management API",
    routes=routes.routes,
    statuses=errors.STATUS,
    render=errors.render,
    error_schema=errors.SCHEMA,
    security={
        "managementToken": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "base64(key_id:key_secret)",
        },
        "tenant": {"type": "apiKey", "in": "header", "name": "tenant"},
    },
    requires=(("managementToken", "tenant"),),  # both headers, together
    body_limits={"/complete_multipart_upload": 1 * MIB},
)
