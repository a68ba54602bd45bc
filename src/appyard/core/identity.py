"""Tokens and authentication: one identity model under every credential format.

A dialect's credential extractor turns its header into a :class:`Credential`; this module
turns that into a :class:`Principal` or raises. Secrets are stored as SHA-256 hashes; the raw
value exists only in the return value of :func:`create_token`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from appyard import errors
from appyard.core import tenants
from appyard.core.ids import hash_secret, new_secret, secret_matches
from appyard.core.models import Principal, Token, TokenKind
from appyard.core.ports import Clock, UnitOfWork

_PREFIX = {
    TokenKind.AUTOMATION: "ak",
    TokenKind.CI: "ci",
    TokenKind.MANAGEMENT: "mt",
    TokenKind.APP: "at",
    TokenKind.SERVICE_ACCOUNT: "sa",
}


@dataclass(frozen=True)
class Credential:
    """A credential as presented: its kind, the key id and the secret."""

    kind: TokenKind
    key_id: str
    secret: str


@dataclass(frozen=True)
class IssuedToken:
    token: Token
    raw: str  # shown once, never stored


def raw_value(kind: TokenKind, key_id: str, secret: str) -> str:
    """How a token is written down: ``key_id:key_secret`` for every kind."""
    return f"{key_id}:{secret}"


def create_token(
    uow: UnitOfWork, clock: Clock, *, tenant_id: str, kind: TokenKind, name: str = ""
) -> IssuedToken:
    tenant = tenants.get(uow, tenant_id=tenant_id)
    if kind is TokenKind.AUTOMATION:
        limit = tenants.limits(tenant)
        if not limit.automation_allowed:
            raise errors.PlanNotAllowed(
                f"The {tenant.plan.value} plan does not include the Automation API."
            )
        active = [t for t in uow.tokens.list(tenant_id, kind) if not t.disabled]
        if len(active) >= limit.automation_keys:
            raise errors.TokenLimit(
                f"The tenant already has {len(active)} automation keys; "
                f"at most {limit.automation_keys} are allowed."
            )
    key_id = f"{_PREFIX[kind]}_{secrets.token_hex(10)}"
    secret = new_secret()
    token = Token(
        id=key_id,
        tenant_id=tenant_id,
        kind=kind,
        name=name or f"{kind.value} key",
        secret_hash=hash_secret(secret),
        scopes=(),
        disabled=False,
        created_at=clock.now(),
    )
    uow.tokens.add(token)
    return IssuedToken(token=token, raw=raw_value(kind, key_id, secret))


def authenticate(uow: UnitOfWork, clock: Clock, credential: Credential) -> Principal:
    token = uow.tokens.get(credential.key_id)
    if (
        token is None
        or token.kind is not credential.kind
        or not secret_matches(credential.secret, token.secret_hash)
    ):
        raise errors.InvalidCredential("Invalid API key.")
    if token.disabled:
        raise errors.CredentialDisabled("This API key has been disabled.")
    tenant = uow.tenants.get(token.tenant_id)
    if tenant is None:
        raise errors.InvalidCredential("Invalid API key.")
    if token.kind is TokenKind.AUTOMATION and not tenants.limits(tenant).automation_allowed:
        raise errors.PlanNotAllowed(
            f"The Automation API is not available on the {tenant.plan.value} plan."
        )
    uow.tokens.touch(token.id, clock.now())
    return Principal(
        tenant_id=token.tenant_id, token_id=token.id, kind=token.kind, scopes=token.scopes
    )


def disable_token(uow: UnitOfWork, *, token_id: str, tenant_id: str | None = None) -> Token:
    token = uow.tokens.get(token_id)
    if token is None or (tenant_id is not None and token.tenant_id != tenant_id):
        raise errors.TokenNotFound(f"No key {token_id!r}.")
    uow.tokens.set_disabled(token_id, True)
    updated = uow.tokens.get(token_id)
    assert updated is not None
    return updated


def list_tokens(uow: UnitOfWork, *, tenant_id: str, kind: TokenKind | None = None) -> list[Token]:
    return uow.tokens.list(tenant_id, kind)


def parse_key_pair(kind: TokenKind, raw: str) -> Credential | None:
    """``key_id:key_secret`` -> Credential, or None when it is not of that shape."""
    key_id, sep, secret = raw.strip().partition(":")
    if not sep or not key_id or not secret:
        return None
    return Credential(kind=kind, key_id=key_id, secret=secret)


# --- scopes, and the management API's tenant header ---------------------------------------------

SCOPE_BUILDS = "builds"  # the management API's "Builds" permission: uploads, deletions, signing
SCOPE_READ = "read"  # names a read-only token (any scope list without "builds" is read-only)
SCOPES = (SCOPE_BUILDS, SCOPE_READ)


class MissingPermission(errors.Forbidden):
    """This API key lacks the permission the operation needs."""

    code = "auth.missing_permission"


def require_scope(principal: Principal, scope: str, *, label: str) -> None:
    """A token without scopes may do everything (what ``create-key`` makes); a token with
    scopes may do only what they name."""
    if principal.scopes and scope not in principal.scopes:
        raise MissingPermission(f"This API key lacks the {label} permission.", scope=scope)


def set_scopes(
    uow: UnitOfWork, *, token_id: str, scopes: tuple[str, ...], tenant_id: str | None = None
) -> Token:
    """Limit a token to ``scopes`` (an empty tuple gives it every permission again)."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise errors.InvalidField(
            f"Unknown scope(s) {', '.join(unknown)}; known scopes: {', '.join(SCOPES)}.",
            field="scopes",
        )
    token = uow.tokens.get(token_id)
    if token is None or (tenant_id is not None and token.tenant_id != tenant_id):
        raise errors.TokenNotFound(f"No key {token_id!r}.")
    uow.tokens.set_scopes(token_id, tuple(dict.fromkeys(scopes)))
    updated = uow.tokens.get(token_id)
    assert updated is not None
    return updated


def authenticate_in_tenant(
    uow: UnitOfWork, clock: Clock, credential: Credential, *, tenant: str
) -> Principal:
    """Authenticate a credential that also names its tenant (the management API's ``tenant``
    header: the tenant's id, or its name). A tenant other than the token's is refused."""
    named = tenant.strip()
    if not named:
        raise errors.InvalidCredential("Missing tenant header: send tenant: <tenant id>.")
    principal = authenticate(uow, clock, credential)
    if named != principal.tenant_id:
        own = uow.tenants.get(principal.tenant_id)
        if own is None or named != own.name:
            raise errors.WrongTenant("The tenant header does not name this API key's tenant.")
    return principal
