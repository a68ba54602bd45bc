"""Management credentials: ``Authorization: Bearer <base64(key_id:key_secret)>`` plus a
``tenant`` header naming the token's tenant (core checks it)."""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request

from appyard.api.kit import bearer
from appyard.core.identity import Credential, parse_key_pair
from appyard.core.models import TokenKind

MISSING = (
    "Missing or malformed management token: send Authorization: Bearer "
    "<base64(key_id:key_secret)> and a tenant header."
)


def extract(request: Request) -> Credential | None:
    value = bearer(request)
    if value is None or len(value) > 1024:
        return None
    try:
        raw = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not raw.isprintable():
        return None
    return parse_key_pair(raw, TokenKind.MANAGEMENT, tenant=request.headers.get("tenant", ""))
