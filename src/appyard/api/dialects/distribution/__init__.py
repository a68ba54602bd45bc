"""The distribution API (../shared/specs/distribution-upload-api.txt), mounted at ``/v1``."""

from __future__ import annotations

from appyard.api.dialects.distribution import errors, routes
from appyard.api.kit import Dialect

DIALECT = Dialect(
    name="distribution",
    prefix="/v1",
    title="appyard: distribution API",
    routes=routes.routes,
    statuses=errors.STATUS,
    render=errors.render,
    error_schema=errors.SCHEMA,
    security={"token": {"type": "http", "scheme": "bearer", "bearerFormat": "key_id:key_secret"}},
    body_limits={  # the forms stream to disk, bounded by the upload size
        "/integrations/builds": None,
        "/organizations/{organizationId}/apps/{applicationId}/builds": None,
    },
)
