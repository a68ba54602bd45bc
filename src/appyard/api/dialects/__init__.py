"""The API dialects appyard speaks: each is one folder (routes, schemas, errors, credentials)
and one line here. ``app.py`` mounts every one of them with the kit (``api/kit.py``)."""

from __future__ import annotations

from appyard.api.dialects import (
    automation,
    distribution,
    management,
    store_ci,
    upload_context,
)
from appyard.api.kit import Dialect

DIALECTS: tuple[Dialect, ...] = (
    automation.DIALECT,
    distribution.DIALECT,
    management.DIALECT,
    store_ci.DIALECT,
    upload_context.DIALECT,
)
