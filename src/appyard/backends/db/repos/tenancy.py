"""Tenants, tokens, users and their sessions, and per-tenant sequences."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from appyard import errors
from appyard.backends.db import tables as t
from appyard.backends.db.rows import Found, Repo, first, to_obj, to_row
from appyard.core.models import LimitOverrides, Plan, Tenant, Throttle, Token, TokenKind, User


class TenantRepo(Repo):
    table = t.tenants

    def _tenant(self, row: Row[Any] | Found) -> Tenant:
        return tenant_of(row)

    def add(self, tenant: Tenant) -> None:
        values = to_row(tenant)
        values.pop("overrides")
        values.update(dataclasses.asdict(tenant.overrides))
        self._insert(values)

    def get(self, tenant_id: str) -> Tenant | None:
        row = self._one_by(id=tenant_id)
        return self._tenant(row) if row else None

    def get_by_name(self, name: str) -> Tenant | None:
        row = self._one(t.tenants.c.name == name)
        return self._tenant(row) if row else None

    def list(self) -> list[Tenant]:
        rows = self.conn.execute(select(t.tenants).order_by(t.tenants.c.created_at))
        return [self._tenant(r) for r in rows]

    def set_plan(self, tenant_id: str, plan: Plan) -> None:
        self.conn.execute(
            update(t.tenants).where(t.tenants.c.id == tenant_id).values(plan=plan.value)
        )

    def set_overrides(self, tenant_id: str, overrides: LimitOverrides) -> None:
        values = {k: v for k, v in dataclasses.asdict(overrides).items() if v is not None}
        if values:
            self.conn.execute(update(t.tenants).where(t.tenants.c.id == tenant_id).values(**values))


def tenant_of(row: Row[Any] | Found, prefix: str = "") -> Tenant:
    """The tenant in a row (its columns named ``prefix`` + the column's name)."""
    m = row._mapping
    overrides = LimitOverrides(
        concurrent_builds=m[prefix + "concurrent_builds"],
        weekly_builds=m[prefix + "weekly_builds"],
        automation_keys=m[prefix + "automation_keys"],
    )
    return to_obj(Tenant, row, prefix=prefix, overrides=overrides)


_TENANT = "tenant__"
# A token and its tenant in one statement (every authenticated request reads both).
_TOKEN_WITH_TENANT = (
    select(t.tokens, *(c.label(_TENANT + c.name) for c in t.tenants.c))
    .join(t.tenants, t.tenants.c.id == t.tokens.c.tenant_id)
    .where(t.tokens.c.id == bindparam("token_id"))
)


class TokenRepo(Repo):
    table = t.tokens

    def add(self, token: Token) -> None:
        self._insert(to_row(token))

    def get(self, token_id: str) -> Token | None:
        row = self._one_by(id=token_id)
        return to_obj(Token, row) if row else None

    def get_with_tenant(self, token_id: str) -> tuple[Token, Tenant] | None:
        row = first(self.conn, _TOKEN_WITH_TENANT, {"token_id": token_id})
        if row is None:
            return None
        return to_obj(Token, row), tenant_of(row, _TENANT)

    def list(self, tenant_id: str, kind: TokenKind | None = None) -> list[Token]:
        q = select(t.tokens).where(t.tokens.c.tenant_id == tenant_id)
        if kind is not None:
            q = q.where(t.tokens.c.kind == kind.value)
        return [to_obj(Token, r) for r in self.conn.execute(q.order_by(t.tokens.c.created_at))]

    def set_disabled(self, token_id: str, disabled: bool) -> None:
        self.conn.execute(
            update(t.tokens).where(t.tokens.c.id == token_id).values(disabled=disabled)
        )

    def touch(self, token_id: str, at: datetime) -> None:
        self.conn.execute(update(t.tokens).where(t.tokens.c.id == token_id).values(last_used_at=at))

    def set_scopes(self, token_id: str, scopes: tuple[str, ...]) -> None:
        self.conn.execute(
            update(t.tokens).where(t.tokens.c.id == token_id).values(scopes=list(scopes))
        )

    def delete(self, token_id: str) -> None:
        self.conn.execute(delete(t.tokens).where(t.tokens.c.id == token_id))


class UserRepo(Repo):
    table = t.users

    def add(self, user: User) -> None:
        self._insert(to_row(user))

    def get(self, user_id: str) -> User | None:
        row = self._one(t.users.c.id == user_id)
        return to_obj(User, row) if row else None

    def get_by_email(self, email: str) -> User | None:
        row = self._one(t.users.c.email == email)
        return to_obj(User, row) if row else None

    def list(self) -> list[User]:
        rows = self.conn.execute(select(t.users).order_by(t.users.c.email))
        return [to_obj(User, r) for r in rows]


class SessionRepo(Repo):
    table = t.sessions

    def add(
        self, token_hash: str, user_id: str, created_at: datetime, expires_at: datetime
    ) -> None:
        self._insert(
            {
                "token_hash": token_hash,
                "user_id": user_id,
                "created_at": created_at,
                "expires_at": expires_at,
            }
        )

    def user_for(self, token_hash: str, now: datetime) -> User | None:
        q = (
            select(t.users)
            .join(t.sessions, t.sessions.c.user_id == t.users.c.id)
            .where(t.sessions.c.token_hash == token_hash, t.sessions.c.expires_at > now)
        )
        row = self.conn.execute(q).first()
        return to_obj(User, row) if row else None

    def delete(self, token_hash: str) -> None:
        self.conn.execute(delete(t.sessions).where(t.sessions.c.token_hash == token_hash))


class ThrottleRepo(Repo):
    """Failed sign-in counters (core/throttle.py)."""

    table = t.sign_in_throttle

    def get(self, key: str) -> Throttle | None:
        row = self._one(t.sign_in_throttle.c.key == key)
        return to_obj(Throttle, row) if row else None

    def put(self, state: Throttle) -> None:
        values = to_row(state)
        done = self.conn.execute(
            update(t.sign_in_throttle).where(t.sign_in_throttle.c.key == state.key).values(**values)
        )
        if done.rowcount == 0:
            try:
                self._insert(values)
            except errors.Conflict:  # a concurrent failure made the row: count on it
                self.conn.execute(
                    update(t.sign_in_throttle)
                    .where(t.sign_in_throttle.c.key == state.key)
                    .values(**values)
                )

    def delete(self, key: str) -> None:
        self.conn.execute(delete(t.sign_in_throttle).where(t.sign_in_throttle.c.key == key))

    def prune(self, before: datetime) -> None:
        c = t.sign_in_throttle.c
        self.conn.execute(
            delete(t.sign_in_throttle).where(
                c.first_at < before, (c.locked_until.is_(None)) | (c.locked_until < before)
            )
        )


class SequenceRepo(Repo):
    table = t.sequences

    def next(self, tenant_id: str, name: str) -> int:
        insert = postgresql.insert if self.conn.dialect.name == "postgresql" else sqlite.insert
        stmt = (
            insert(t.sequences)
            .values(tenant_id=tenant_id, name=name, value=1)
            .on_conflict_do_update(
                index_elements=["tenant_id", "name"], set_={"value": t.sequences.c.value + 1}
            )
            .returning(t.sequences.c.value)
        )
        return int(self.conn.execute(stmt).scalar_one())

    def current(self, tenant_id: str, name: str) -> int:
        q = select(func.coalesce(func.max(t.sequences.c.value), 0)).where(
            t.sequences.c.tenant_id == tenant_id, t.sequences.c.name == name
        )
        return int(self.conn.execute(q).scalar_one())
