"""People: store staff and tenant developers, their passwords and portal sessions.

Passwords are hashed with scrypt (n=2**14, r=8, p=1) and a random salt; a session is a random
token whose SHA-256 is stored, sent back as the ``appyard_session`` cookie (or a bearer token
on the native API). Every sign-in (the portal's form, the native API's ``/auth/login``) goes
through :func:`sign_in`, which throttles failures per account and per client address
(core/throttle.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from appyard import errors
from appyard.core import outbox, tenants, throttle
from appyard.core.context import Services
from appyard.core.ids import hash_secret, new_id
from appyard.core.models import Actor, Role, User
from appyard.core.ports import Clock, UnitOfWork

SESSION_TTL = timedelta(hours=12)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def password_matches(password: str, stored: str) -> bool:
    try:
        _, salt_b64, digest_b64 = stored.split("$")
        salt, digest = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    except ValueError:
        return False
    candidate = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return hmac.compare_digest(candidate, digest)


def create(
    uow: UnitOfWork,
    clock: Clock,
    *,
    email: str,
    name: str,
    role: Role,
    password: str,
    tenant_name: str | None = None,
) -> User:
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise errors.InvalidField("A user needs a valid email address.", field="email")
    if len(password) < 10:
        raise errors.InvalidField("A password has at least 10 characters.", field="password")
    if role is Role.DEVELOPER and not tenant_name:
        raise errors.InvalidField("A developer belongs to a tenant: give --tenant.", field="tenant")
    if role is not Role.DEVELOPER and tenant_name:
        raise errors.InvalidField("Store staff belong to no tenant.", field="tenant")
    if uow.users.get_by_email(email) is not None:
        raise errors.Conflict(f"A user with email {email} already exists.")
    tenant_id = tenants.by_name(uow, name=tenant_name).id if tenant_name else None
    user = User(
        id=new_id("us"),
        email=email,
        name=name or email,
        role=role,
        password_hash=hash_password(password),
        created_at=clock.now(),
        tenant_id=tenant_id,
    )
    uow.users.add(user)
    return user


_NO_USER = hash_password("an unknown user's password is checked against this, in constant time")


def login(uow: UnitOfWork, clock: Clock, *, email: str, password: str) -> tuple[User, str]:
    """A new session for valid credentials: (user, raw session token). Unthrottled: callers
    that face a network use :func:`sign_in`."""
    user = uow.users.get_by_email(email.strip().lower())
    # An unknown email costs the same scrypt as a known one, so timing tells them apart no more.
    matches = password_matches(password, user.password_hash if user else _NO_USER)
    if user is None or user.disabled or not matches:
        raise errors.InvalidCredential("Wrong email or password.")
    token = secrets.token_urlsafe(32)
    now = clock.now()
    uow.sessions.add(hash_secret(token), user.id, now, now + SESSION_TTL)
    return user, token


def sign_in(svc: Services, *, email: str, password: str, address: str) -> tuple[User, str]:
    """:func:`login` behind the throttle: refused (429, ``retry_after``) while the account or
    the client ``address`` is locked; a failure is counted (and committed) before it is
    raised; a success clears the account's counter and is recorded as ``user.signed_in``."""
    email = email.strip().lower()[:320]
    with svc.uow() as uow:
        throttle.check(uow, svc.clock, email=email, address=address)
    try:
        with svc.transaction() as uow:
            user, token = login(uow, svc.clock, email=email, password=password)
            throttle.succeeded(uow, email=email)
            outbox.emit(
                uow,
                svc.clock,
                "user.signed_in",
                tenant_id=user.tenant_id,
                subject_id=user.id,
                actor=f"user:{user.id}",
            )
    except errors.InvalidCredential:
        with svc.uow() as uow:
            throttle.failed(uow, svc.clock, email=email, address=address)
            uow.commit()
        raise
    return user, token


def logout(uow: UnitOfWork, *, token: str) -> None:
    uow.sessions.delete(hash_secret(token))


def session_user(uow: UnitOfWork, clock: Clock, *, token: str) -> User:
    """The person a live session belongs to."""
    user = uow.sessions.user_for(hash_secret(token), clock.now())
    if user is None or user.disabled:
        raise errors.InvalidCredential("Not signed in, or the session has expired.")
    return user


def actor_of(user: User) -> Actor:
    return Actor(id=user.id, tenant_id=user.tenant_id, role=user.role)


def from_session(uow: UnitOfWork, clock: Clock, *, token: str) -> Actor:
    return actor_of(session_user(uow, clock, token=token))
