"""Tokens, sessions and authentication: one identity model under every credential format.

A dialect's credential extractor turns its header into a :class:`Credential` (a token of the
kind that dialect speaks, or a portal session); :func:`authenticate` turns any of them into
the :class:`~appyard.core.models.Actor` that core's rules see, or raises. Who may do what is
decided in core (:func:`require_scope`, the services' own checks), never in routes. Secrets are
stored as SHA-256 hashes; the raw value exists only in the return value of
:func:`create_token`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from appyard import errors
from appyard.core import outbox, tenants, users
from appyard.core.ids import hash_secret, new_secret, secret_matches
from appyard.core.models import Actor, Role, Token, TokenKind
from appyard.core.ports import Clock, UnitOfWork

TOUCH_EVERY = timedelta(minutes=1)
_PREFIX = {
    TokenKind.AUTOMATION: "ak",
    TokenKind.CI: "ci",
    TokenKind.MANAGEMENT: "mt",
    TokenKind.APP: "at",
    TokenKind.SERVICE_ACCOUNT: "sa",
    TokenKind.CONTEXT: "uc",
}


@dataclass(frozen=True)
class Credential:
    """A token as presented: the kinds it may be (the dialect's), its key id and secret, and
    the tenant it names where the format carries one (the management API's header)."""

    kinds: tuple[TokenKind, ...]
    key_id: str
    secret: str
    tenant: str | None = None


@dataclass(frozen=True)
class SessionCredential:
    """A portal session: its cookie, or its token sent as a bearer."""

    token: str


AnyCredential = Credential | SessionCredential


@dataclass(frozen=True)
class IssuedToken:
    token: Token
    raw: str  # shown once, never stored


def raw_value(kind: TokenKind, key_id: str, secret: str) -> str:
    """How a token is written down: ``key_id:key_secret`` for every kind."""
    return f"{key_id}:{secret}"


def create_token(
    uow: UnitOfWork,
    clock: Clock,
    *,
    tenant_id: str,
    kind: TokenKind,
    name: str = "",
    app_id: str | None = None,
    expires_at: datetime | None = None,
) -> IssuedToken:
    """A new token, shown once. An app token (kind ``app``) is bound to one app of the
    tenant; any token may expire."""
    tenant = tenants.get(uow, tenant_id=tenant_id)
    if (kind is TokenKind.APP) != (app_id is not None):
        raise errors.InvalidField(
            "An app token names its app (--app SLUG); other tokens name none.", field="app"
        )
    if app_id is not None:
        app = uow.apps.get(app_id)
        if app is None or app.tenant_id != tenant_id:
            raise errors.NotFound(f"No app {app_id!r} in this tenant.")
    if expires_at is not None and expires_at <= clock.now():
        raise errors.InvalidField("A token's expiry must be in the future.", field="expires")
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
        app_id=app_id,
        expires_at=expires_at,
    )
    uow.tokens.add(token)
    return IssuedToken(token=token, raw=raw_value(kind, key_id, secret))


@dataclass(frozen=True)
class Identified:
    """Who a credential is, found by reading only, and the token use still to be recorded
    (``last_used_at``, at most once a minute; None when it is recent enough)."""

    actor: Actor
    touch: tuple[str, datetime] | None = None


def identify(uow: UnitOfWork, clock: Clock, credential: AnyCredential) -> Identified:
    """The actor behind any credential: a token of one of the presented kinds (of the tenant
    it names, when it names one), or a live portal session. Reads only (the token and its
    tenant by primary key, one SHA-256), so it can run in a read-only unit of work; the caller
    records the token's use with :func:`record_use` when ``touch`` says so."""
    if isinstance(credential, SessionCredential):
        return Identified(users.from_session(uow, clock, token=credential.token))
    found = uow.tokens.get_with_tenant(credential.key_id)
    token, tenant = found if found is not None else (None, None)
    if (
        token is None
        or tenant is None
        or token.kind not in credential.kinds
        or not secret_matches(credential.secret, token.secret_hash)
    ):
        raise errors.InvalidCredential("Invalid API key.")
    if token.disabled:
        raise errors.CredentialDisabled("This API key has been disabled.")
    now = clock.now()
    if token.expires_at is not None and token.expires_at <= now:
        raise errors.CredentialExpired(
            f"This token expired on {token.expires_at.date().isoformat()}."
        )
    if token.kind is TokenKind.AUTOMATION and not tenants.limits(tenant).automation_allowed:
        raise errors.PlanNotAllowed(
            f"The Automation API is not available on the {tenant.plan.value} plan."
        )
    if credential.tenant is not None:
        named = credential.tenant.strip()
        if not named:
            raise errors.InvalidCredential("Missing tenant header: send tenant: <tenant id>.")
        if named not in (tenant.id, tenant.name):
            raise errors.WrongTenant("The tenant header does not name this API key's tenant.")
    due = token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY
    actor = Actor(
        id=token.id,
        tenant_id=token.tenant_id,
        token_kind=token.kind,
        scopes=token.scopes,
        app_id=token.app_id,
    )
    return Identified(actor, (token.id, now) if due else None)


def record_use(uow: UnitOfWork, identified: Identified) -> None:
    """Write the token's ``last_used_at`` when :func:`identify` found it due."""
    if identified.touch is not None:
        token_id, at = identified.touch
        uow.tokens.touch(token_id, at)  # at most once a minute: reads stay reads


def authenticate(uow: UnitOfWork, clock: Clock, credential: AnyCredential) -> Actor:
    """:func:`identify` and :func:`record_use` in one unit of work."""
    identified = identify(uow, clock, credential)
    record_use(uow, identified)
    return identified.actor


def require_member(actor: Actor, *, action: str) -> str:
    """A signed-in member (developer) of a tenant; returns the tenant id."""
    if not actor.is_user or actor.role is not Role.DEVELOPER:
        raise errors.Forbidden(f"Only a signed-in member of the tenant may {action}.")
    return actor.tenant


def member_tokens(uow: UnitOfWork, actor: Actor, *, kind: TokenKind) -> list[Token]:
    """The tokens of ``kind`` of the actor's tenant, for a member of it (a token may list
    its tenant's CI tokens too)."""
    return uow.tokens.list(actor.tenant, kind)


# The kinds a tenant member manages in the portal (all but none: every kind is the tenant's).
MEMBER_KINDS = (
    TokenKind.AUTOMATION,
    TokenKind.MANAGEMENT,
    TokenKind.CI,
    TokenKind.CONTEXT,
    TokenKind.APP,
    TokenKind.SERVICE_ACCOUNT,
)


def may_manage_tokens(actor: Actor, *, what: str = "Managing the tenant's keys") -> None:
    """Keys and tokens are managed by signed-in tenant members (never by a token)."""
    if not actor.is_user or actor.role is not Role.DEVELOPER:
        raise errors.Forbidden(f"{what} needs a signed-in tenant member.")


def issue_member_token(
    uow: UnitOfWork,
    clock: Clock,
    actor: Actor,
    *,
    kind: TokenKind,
    name: str = "",
    app_id: str | None = None,
) -> IssuedToken:
    """A signed-in member of a tenant makes a token for it (shown once). An app token
    names one app of the tenant."""
    may_manage_tokens(actor, what=f"Creating {kind.value} tokens")
    if len(name) > 200:
        raise errors.InvalidField("A token's name is at most 200 characters.", field="name")
    issued = create_token(uow, clock, tenant_id=actor.tenant, kind=kind, name=name, app_id=app_id)
    outbox.emit(
        uow,
        clock,
        "token.created",
        tenant_id=actor.tenant,
        subject_id=issued.token.id,
        kind=kind.value,
        name=issued.token.name,
        actor=f"{actor.kind}:{actor.id}",
    )
    return issued


def _member_token(uow: UnitOfWork, actor: Actor, token_id: str) -> Token:
    may_manage_tokens(actor)
    token = uow.tokens.get(token_id)
    if token is None or token.tenant_id != actor.tenant:
        raise errors.TokenNotFound(f"No key {token_id!r}.")
    return token


def member_token_list(uow: UnitOfWork, actor: Actor) -> list[Token]:
    """Every token of the member's tenant (never their secrets)."""
    may_manage_tokens(actor)
    return uow.tokens.list(actor.tenant)


def disable_member_token(uow: UnitOfWork, clock: Clock, actor: Actor, *, token_id: str) -> Token:
    token = _member_token(uow, actor, token_id)
    disabled = disable_token(uow, token_id=token.id, tenant_id=actor.tenant)
    outbox.emit(
        uow,
        clock,
        "token.disabled",
        tenant_id=actor.tenant,
        subject_id=token.id,
        kind=token.kind.value,
        actor=f"{actor.kind}:{actor.id}",
    )
    return disabled


def delete_member_token(uow: UnitOfWork, clock: Clock, actor: Actor, *, token_id: str) -> Token:
    """Delete a token for good: requests with it fail as for a key never issued."""
    token = _member_token(uow, actor, token_id)
    uow.tokens.delete(token.id)
    outbox.emit(
        uow,
        clock,
        "token.deleted",
        tenant_id=actor.tenant,
        subject_id=token.id,
        kind=token.kind.value,
        actor=f"{actor.kind}:{actor.id}",
    )
    return token


def revoke_member_token(uow: UnitOfWork, actor: Actor, *, kind: TokenKind, token_id: str) -> Token:
    """Revoke one of the tenant's tokens of ``kind`` (another tenant's is not found)."""
    token = uow.tokens.get(token_id)
    if token is None or token.kind is not kind or token.tenant_id != actor.tenant:
        raise errors.TokenNotFound(f"No {kind.value} token {token_id!r}.")
    return disable_token(uow, token_id=token_id, tenant_id=actor.tenant)


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


def parse_key_pair(raw: str, *kinds: TokenKind, tenant: str | None = None) -> Credential | None:
    """``key_id:key_secret`` -> Credential for those kinds, or None when it is not of that
    shape."""
    key_id, sep, secret = raw.strip().partition(":")
    if not sep or not key_id or not secret:
        return None
    return Credential(kinds=kinds, key_id=key_id, secret=secret, tenant=tenant)


# --- permissions ----------------------------------------------------------------------------------

SCOPE_BUILDS = "builds"  # the management API's "Builds" permission: uploads, deletions, signing
SCOPE_READ = "read"  # names a read-only token (any scope list without "builds" is read-only)
SCOPES = (SCOPE_BUILDS, SCOPE_READ)


class MissingPermission(errors.Forbidden):
    """This API key lacks the permission the operation needs."""

    code = "auth.missing_permission"


def require_scope(actor: Actor, scope: str, *, label: str) -> None:
    """A token without scopes may do everything (what ``create-key`` makes); a token with
    scopes may do only what they name. People are governed by their role instead."""
    if actor.scopes and scope not in actor.scopes:
        raise MissingPermission(f"This API key lacks the {label} permission.", scope=scope)


def require_token(actor: Actor, *kinds: TokenKind, action: str) -> None:
    """Refuse an actor that is not a token of one of ``kinds`` (e.g. uploads need a CI
    token on the store API)."""
    if actor.token_kind not in kinds:
        names = " or ".join(k.value for k in kinds)
        raise errors.Forbidden(f"{action[:1].upper()}{action[1:]} needs a {names} token.")


# --- appyard's own API --------------------------------------------------------------------------


class CredentialNotAccepted(errors.Unauthenticated):
    """This kind of credential is not accepted here."""

    code = "auth.credential_not_accepted"


class AutomationKeyLimited(errors.Forbidden):
    """Automation keys read builds only."""

    code = "auth.automation_key_limited"


def require_native(actor: Actor, *, build_route: bool = False) -> None:
    """Who may use appyard's own API (``/appyard/v1``): people signed in to the portal; an
    automation key only on the build routes the CI client needs (a build, its findings, its
    output, its upload and its install links, of the key's own tenant); no other token
    (management keys, CI tokens, per-app and context tokens speak their own dialects)."""
    if actor.is_user:
        return
    if actor.token_kind is not TokenKind.AUTOMATION:
        kind = actor.token_kind.value if actor.token_kind else "this"
        raise CredentialNotAccepted(
            f"A {kind} token is not accepted by appyard's native API; use an automation key "
            "(builds) or sign in (POST /appyard/v1/auth/login)."
        )
    if not build_route:
        raise AutomationKeyLimited(
            "Automation keys work on builds only (a build, its findings, its output, its "
            "install links); sign in for the rest of the native API."
        )


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
