"""Store CI credentials: ``Authorization: Bearer <CI token>`` (``key_id:key_secret``), or a
portal session on the interactive endpoints: its cookie, or its token sent as a bearer (a
session token has no ':')."""

from __future__ import annotations

from starlette.requests import Request

from appyard.api.kit import bearer
from appyard.core.identity import AnyCredential, SessionCredential, parse_key_pair
from appyard.core.models import TokenKind

SESSION_COOKIE = "appyard_session"
MISSING = "Missing CI token: send Authorization: Bearer <CI_UPLOAD_TOKEN> (or sign in)."


def extract(request: Request) -> AnyCredential | None:
    value = bearer(request)
    if value is not None and ":" in value:
        return parse_key_pair(value, TokenKind.CI)
    session = value or request.cookies.get(SESSION_COOKIE)
    return SessionCredential(session) if session else None
