"""The protection service's automation API (../shared/specs/protection-automation-api.txt),
mounted at ``/automate``."""

from __future__ import annotations

from appyard.api.dialects.automation import errors, routes
from appyard.api.kit import MIB, Dialect

DIALECT = Dialect(
    name="automation",
    prefix="/automate",
    title="appyard: automation API",
    routes=routes.routes,
    statuses=errors.STATUS,
    render=errors.render,
    error_schema=errors.SCHEMA,
    security={
        "automationKey": {"type": "http", "scheme": "bearer", "bearerFormat": "key_id:key_secret"}
    },
    body_limits={"/upload/complete": 1 * MIB},
)
