"""Going out: members to mail, webhook endpoints, and the logs of mail and webhook deliveries."""

from __future__ import annotations

from sqlalchemy import delete, select, update

from appyard.backends.db import tables as t
from appyard.backends.db.rows import Repo, to_obj, to_row
from appyard.core.models import MailDelivery, Member, Webhook, WebhookDelivery


class MemberRepo(Repo):
    table = t.members

    def add(self, member: Member) -> None:
        self._insert(to_row(member))

    def get(self, member_id: str) -> Member | None:
        row = self._one(t.members.c.id == member_id)
        return to_obj(Member, row) if row else None

    def list(self, tenant_id: str) -> list[Member]:
        q = select(t.members).where(t.members.c.tenant_id == tenant_id)
        rows = self.conn.execute(q.order_by(t.members.c.email, t.members.c.created_at))
        return [to_obj(Member, r) for r in rows]

    def delete(self, member_id: str) -> None:
        self.conn.execute(delete(t.members).where(t.members.c.id == member_id))


class MailDeliveryRepo(Repo):
    table = t.mail_deliveries

    def add(self, delivery: MailDelivery) -> None:
        self._insert(to_row(delivery))

    def for_build(self, build_id: str) -> list[MailDelivery]:
        q = select(t.mail_deliveries).where(t.mail_deliveries.c.build_id == build_id)
        rows = self.conn.execute(q.order_by(t.mail_deliveries.c.at, t.mail_deliveries.c.id))
        return [to_obj(MailDelivery, r) for r in rows]


class WebhookRepo(Repo):
    table = t.webhooks

    def add(self, webhook: Webhook) -> None:
        self._insert(to_row(webhook))

    def get(self, webhook_id: str) -> Webhook | None:
        row = self._one(t.webhooks.c.id == webhook_id)
        return to_obj(Webhook, row) if row else None

    def list(self, tenant_id: str) -> list[Webhook]:
        q = select(t.webhooks).where(t.webhooks.c.tenant_id == tenant_id)
        return [to_obj(Webhook, r) for r in self.conn.execute(q.order_by(t.webhooks.c.created_at))]

    def save(self, webhook: Webhook) -> None:
        self.conn.execute(
            update(t.webhooks).where(t.webhooks.c.id == webhook.id).values(**to_row(webhook))
        )

    def delete(self, webhook_id: str) -> None:
        self.conn.execute(delete(t.webhooks).where(t.webhooks.c.id == webhook_id))


class WebhookDeliveryRepo(Repo):
    table = t.webhook_deliveries

    def add(self, delivery: WebhookDelivery) -> None:
        self._insert(to_row(delivery))

    def get(self, delivery_id: str) -> WebhookDelivery | None:
        row = self._one(t.webhook_deliveries.c.id == delivery_id)
        return to_obj(WebhookDelivery, row) if row else None

    def for_webhook(self, webhook_id: str, limit: int = 100) -> list[WebhookDelivery]:
        c = t.webhook_deliveries.c
        q = (
            select(t.webhook_deliveries)
            .where(c.webhook_id == webhook_id)
            .order_by(c.at.desc(), c.id.desc())
            .limit(limit)
        )
        return [to_obj(WebhookDelivery, r) for r in self.conn.execute(q)]
