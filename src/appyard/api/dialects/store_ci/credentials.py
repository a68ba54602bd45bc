"""Store CI credentials: ``Authorization: Bearer <CI token>``, or the portal's session cookie
on interactive endpoints."""

from __future__ import annotations

from starlette.requests import Request

from appyard.core.identity import Credential, parse_key_pair
from appyard.core.models import TokenKind

SESSION_COOKIE = "appyard_session"


def extract(request: Request) -> Credential | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return parse_key_pair(TokenKind.CI, value)


def session_token(request: Request) -> str | None:
    """The portal session: its cookie, or its token sent as a bearer (no ':' in it)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip() and ":" not in value:
        return value.strip()
    return request.cookies.get(SESSION_COOKIE) or None
