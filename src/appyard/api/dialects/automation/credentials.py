"""Automation credentials: ``Authorization: Bearer <key_id>:<key_secret>`` (raw, not Base64)."""

from __future__ import annotations

from starlette.requests import Request

from appyard.core.identity import Credential, parse_key_pair
from appyard.core.models import TokenKind


def extract(request: Request) -> Credential | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return parse_key_pair(TokenKind.AUTOMATION, value)
