"""Distribution credentials: ``Authorization: Bearer <token>``, an app token (``appyard admin
create-key --kind app --app SLUG``) on the integrations routes, a service-account token
(``--kind service-account``) on the workspace routes. Both are ``key_id:key_secret``."""

from __future__ import annotations

from starlette.requests import Request

from appyard.api.kit import bearer
from appyard.core.identity import Credential, parse_key_pair
from appyard.core.models import TokenKind

MISSING = "Missing or malformed token: send Authorization: Bearer <token>."


def extract(request: Request) -> Credential | None:
    value = bearer(request)
    if value is None:
        return None
    return parse_key_pair(value, TokenKind.APP, TokenKind.SERVICE_ACCOUNT)
