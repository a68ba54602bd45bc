"""Managed signing keys (their secrets arrive sealed; this layer never sees them open)."""

from __future__ import annotations

from sqlalchemy import select, update

from appyard.backends.db import tables as t
from appyard.backends.db.rows import Repo, to_obj, to_row
from appyard.core.models import SigningKey


class SigningKeyRepo(Repo):
    table = t.signing_keys

    def add(self, key: SigningKey) -> None:
        self._insert(to_row(key))

    def get(self, key_id: str) -> SigningKey | None:
        row = self._one(t.signing_keys.c.id == key_id)
        return to_obj(SigningKey, row) if row else None

    def save(self, key: SigningKey) -> None:
        self.conn.execute(
            update(t.signing_keys).where(t.signing_keys.c.id == key.id).values(**to_row(key))
        )

    def list(self, tenant_id: str | None = None) -> list[SigningKey]:
        q = select(t.signing_keys).order_by(t.signing_keys.c.created_at)
        if tenant_id is not None:
            q = q.where(t.signing_keys.c.tenant_id == tenant_id)
        return [to_obj(SigningKey, r) for r in self.conn.execute(q)]
