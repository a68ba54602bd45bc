"""Management credentials: ``Authorization: Bearer <base64(key_id:key_secret)>`` plus a
``tenant`` header naming the token's tenant (core checks it: authenticate_in_tenant)."""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request

from appyard.core.identity import Credential, parse_key_pair
from appyard.core.models import TokenKind


def extract(request: Request) -> Credential | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip() or len(value) > 1024:
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not raw.isprintable():
        return None
    return parse_key_pair(TokenKind.MANAGEMENT, raw)


def tenant(request: Request) -> str:
    return request.headers.get("tenant", "")
