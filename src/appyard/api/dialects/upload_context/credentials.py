"""Upload-context credentials. The spec names none; appyard's choice (docs/upload-context-api.md):
``Authorization: Bearer <key_id>:<key_secret>`` with a token of kind ``context``, made by
``appyard admin create-key --tenant T --kind context``."""

from __future__ import annotations

from starlette.requests import Request

from appyard.api.kit import bearer
from appyard.core.identity import Credential, parse_key_pair
from appyard.core.models import TokenKind

MISSING = "Missing or malformed token: send Authorization: Bearer <key_id>:<key_secret>."


def extract(request: Request) -> Credential | None:
    value = bearer(request)
    return parse_key_pair(value, TokenKind.CONTEXT) if value else None
