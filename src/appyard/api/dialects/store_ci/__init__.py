"""The app store's CI upload API (../shared/specs/store-ci-upload-api.txt), mounted at
``/portal/api``."""

from __future__ import annotations

from appyard.api.dialects.store_ci import errors, routes
from appyard.api.kit import Dialect

DIALECT = Dialect(
    name="store-ci",
    prefix="/portal/api",
    title="appyard: store CI upload API",
    routes=routes.routes,
    statuses=errors.STATUS,
    render=errors.render,
    error_schema=errors.SCHEMA,
    security={
        "ciToken": {"type": "http", "scheme": "bearer", "bearerFormat": "key_id:key_secret"},
        "session": {"type": "apiKey", "in": "cookie", "name": "appyard_session"},
    },
    body_limits={"/uploads/ci": None},  # the form streams to disk, bounded by the upload size
)
