"""The upload-context API (../shared/specs/upload-context-api.txt), mounted at
``/api/v1/projects``."""

from __future__ import annotations

from appyard.api.dialects.upload_context import errors, routes
from appyard.api.kit import Dialect

DIALECT = Dialect(
    name="upload-context",
    prefix="/api/v1/projects",
    title="appyard: upload-context API",
    routes=routes.routes,
    statuses=errors.STATUS,
    render=errors.render,
    error_schema=errors.SCHEMA,
    security={
        "contextToken": {"type": "http", "scheme": "bearer", "bearerFormat": "key_id:key_secret"}
    },
)
