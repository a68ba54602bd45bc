"""Automation credentials: ``Authorization: Bearer <key_id>:<key_secret>`` (raw, not Base64)."""

from __future__ import annotations

from starlette.requests import Request

from appyard.api.kit import bearer
from appyard.core.identity import Credential, parse_key_pair
from appyard.core.models import TokenKind

MISSING = "Missing or malformed automation key: send Authorization: Bearer <key_id>:<key_secret>."


def extract(request: Request) -> Credential | None:
    value = bearer(request)
    return parse_key_pair(value, TokenKind.AUTOMATION) if value else None
