"""Webhooks: endpoints of a tenant that receive its domain events, signed the Standard Webhooks
way (``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256 of
id.timestamp.body>`` with the endpoint's ``whsec_`` secret), so a receiver verifies them with
the ``standardwebhooks`` library or any of its ports.

An endpoint is added with the events it wants (none named: all); its secret is shown once
and kept sealed under the master key (signing needs it). Every event of the outbox gives each
endpoint that wants it a ``webhook.deliver`` job, retried with exponential backoff for more
than a day; every attempt is logged (status code, latency, attempt). Destinations that resolve
to loopback, private or link-local addresses are refused (unless the operator allows them).

The functions taking a ``tenant_id`` are the operator's (``appyard admin``); those ending in
``_for`` take an :class:`Actor` and are what the portal and the native API call: endpoints are
managed by signed-in tenant members (developers), never by a token, like keys
(:func:`appyard.core.identity.may_manage_tokens`), and each change is an audit event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from appyard import errors
from appyard.core import identity, jobs, outbox, payloads, telemetry
from appyard.core.crypto import SecretBox
from appyard.core.ids import new_id
from appyard.core.models import Actor, Event, Webhook, WebhookDelivery
from appyard.core.ports import Clock, UnitOfWork, WebhookSender

TOPICS = (
    "build.uploaded",
    "build.processed",
    "build.failed",
    "build.deleted",
    "version.uploaded",
    "version.submitted",
    "version.approved",
    "version.rejected",
    "version.released",
    "version.superseded",
    "version.withdrawn",
    "version.halted",
    "version.resumed",
    "version.rollout_changed",
    "version.narrowed",
    "version.issue_filed",
    "version.issue_resolved",
)
MAX_ENDPOINTS = 20
DELIVERY_ATTEMPTS = 18  # 30 s doubling to 3 h between tries: about 28 hours in all
FIRST_RETRY = timedelta(seconds=30)
LONGEST_WAIT = timedelta(hours=3)


class WebhookNotFound(errors.NotFound):
    """Webhook endpoint not found."""

    code = "webhook.not_found"


@dataclass(frozen=True)
class NewWebhook:
    webhook: Webhook
    secret: str  # whsec_..., shown once


def _aad(webhook_id: str) -> str:
    return f"webhook:{webhook_id}:secret"


def check_events(events: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [e for e in events if e not in TOPICS]
    if unknown:
        raise errors.InvalidField(
            f"Unknown event(s) {', '.join(unknown)}; known: {', '.join(TOPICS)}.",
            field="events",
        )
    return tuple(dict.fromkeys(events))


def add(
    uow: UnitOfWork,
    clock: Clock,
    box: SecretBox,
    sender: WebhookSender,
    *,
    tenant_id: str,
    url: str,
    events: tuple[str, ...] = (),
) -> NewWebhook:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2048:
        raise errors.InvalidField("A webhook URL is an http(s) URL.", field="url")
    sender.check_url(url)
    if len(uow.webhooks.list(tenant_id)) >= MAX_ENDPOINTS:
        raise errors.LimitExceeded(f"A tenant has at most {MAX_ENDPOINTS} webhook endpoints.")
    webhook_id = new_id("wh")
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    webhook = Webhook(
        id=webhook_id,
        tenant_id=tenant_id,
        url=url,
        sealed_secret=box.seal(secret.encode(), _aad(webhook_id)),
        events=check_events(events),
        disabled=False,
        created_at=clock.now(),
    )
    uow.webhooks.add(webhook)
    return NewWebhook(webhook=webhook, secret=secret)


def get(uow: UnitOfWork, *, tenant_id: str, webhook_id: str) -> Webhook:
    webhook = uow.webhooks.get(webhook_id)
    if webhook is None or webhook.tenant_id != tenant_id:
        raise WebhookNotFound(f"No webhook endpoint {webhook_id!r}.")
    return webhook


def list_webhooks(uow: UnitOfWork, *, tenant_id: str) -> list[Webhook]:
    return uow.webhooks.list(tenant_id)


def set_disabled(uow: UnitOfWork, *, tenant_id: str, webhook_id: str, disabled: bool) -> Webhook:
    webhook = replace(get(uow, tenant_id=tenant_id, webhook_id=webhook_id), disabled=disabled)
    uow.webhooks.save(webhook)
    return webhook


def delete(uow: UnitOfWork, *, tenant_id: str, webhook_id: str) -> None:
    uow.webhooks.delete(get(uow, tenant_id=tenant_id, webhook_id=webhook_id).id)


def deliveries(
    uow: UnitOfWork, *, tenant_id: str, webhook_id: str, limit: int = 100
) -> list[WebhookDelivery]:
    return uow.webhook_deliveries.for_webhook(
        get(uow, tenant_id=tenant_id, webhook_id=webhook_id).id, limit
    )


def wants(webhook: Webhook, topic: str) -> bool:
    """An enabled endpoint wants the topics it named, or (naming none) every one of
    :data:`TOPICS`; audit events (keys, sign-ins, endpoints themselves) never leave."""
    return (
        not webhook.disabled and topic in TOPICS and (not webhook.events or topic in webhook.events)
    )


def _schedule(uow: UnitOfWork, clock: Clock, webhook: Webhook, event_id: int) -> str:
    job = jobs.create(
        uow,
        clock,
        tenant_id=webhook.tenant_id,
        kind=jobs.DELIVER_WEBHOOK,
        payload={"webhook_id": webhook.id, "event_id": event_id},
        max_attempts=DELIVERY_ATTEMPTS,
    )
    return job.id


def on_event(uow: UnitOfWork, clock: Clock, event: Event) -> None:
    """An outbox consumer: each endpoint of the event's tenant that wants it gets a job."""
    if event.tenant_id is None or event.id is None:
        return
    for webhook in uow.webhooks.list(event.tenant_id):
        if wants(webhook, event.topic):
            _schedule(uow, clock, webhook, event.id)


def redeliver(
    uow: UnitOfWork, clock: Clock, *, tenant_id: str, webhook_id: str, event_id: int
) -> str:
    """Send an event to an endpoint again (a new job, with its own retries); its job id."""
    webhook = get(uow, tenant_id=tenant_id, webhook_id=webhook_id)
    found = uow.outbox.events(tenant_id=tenant_id, event_id=event_id)
    if not found or found[0].topic not in TOPICS:  # audit events never leave
        raise errors.NotFound(f"No event {event_id} of this tenant.")
    if webhook.disabled:
        raise errors.Conflict("The endpoint is disabled; enable it to send it events again.")
    return _schedule(uow, clock, webhook, event_id)


# --- for a signed-in tenant member (portal, native API) ------------------------------------------


def managing(actor: Actor, *, what: str = "Managing webhook endpoints") -> str:
    """The tenant whose endpoints ``actor`` manages: a signed-in member's, never a token's."""
    identity.may_manage_tokens(actor, what=what)
    return actor.tenant


def _audit(uow: UnitOfWork, clock: Clock, actor: Actor, topic: str, webhook: Webhook) -> None:
    outbox.emit(
        uow,
        clock,
        topic,
        tenant_id=webhook.tenant_id,
        subject_id=webhook.id,
        url=webhook.url,
        actor=f"{actor.kind}:{actor.id}",
    )


def add_for(
    uow: UnitOfWork,
    clock: Clock,
    box: SecretBox,
    sender: WebhookSender,
    actor: Actor,
    *,
    url: str,
    events: tuple[str, ...] = (),
) -> NewWebhook:
    tenant_id = managing(actor, what="Adding webhook endpoints")
    made = add(uow, clock, box, sender, tenant_id=tenant_id, url=url, events=events)
    _audit(uow, clock, actor, "webhook.created", made.webhook)
    return made


def list_for(uow: UnitOfWork, actor: Actor) -> list[Webhook]:
    return list_webhooks(uow, tenant_id=managing(actor, what="Seeing webhook endpoints"))


def get_for(uow: UnitOfWork, actor: Actor, *, webhook_id: str) -> Webhook:
    return get(
        uow, tenant_id=managing(actor, what="Seeing webhook endpoints"), webhook_id=webhook_id
    )


def set_disabled_for(
    uow: UnitOfWork, clock: Clock, actor: Actor, *, webhook_id: str, disabled: bool
) -> Webhook:
    what = "Disabling" if disabled else "Enabling"
    tenant_id = managing(actor, what=f"{what} webhook endpoints")
    webhook = set_disabled(uow, tenant_id=tenant_id, webhook_id=webhook_id, disabled=disabled)
    _audit(uow, clock, actor, "webhook.disabled" if disabled else "webhook.enabled", webhook)
    return webhook


def delete_for(uow: UnitOfWork, clock: Clock, actor: Actor, *, webhook_id: str) -> Webhook:
    tenant_id = managing(actor, what="Deleting webhook endpoints")
    webhook = get(uow, tenant_id=tenant_id, webhook_id=webhook_id)
    delete(uow, tenant_id=tenant_id, webhook_id=webhook.id)
    _audit(uow, clock, actor, "webhook.deleted", webhook)
    return webhook


def deliveries_for(
    uow: UnitOfWork, actor: Actor, *, webhook_id: str, limit: int = 100
) -> list[WebhookDelivery]:
    """The endpoint's latest delivery attempts, newest first."""
    tenant_id = managing(actor, what="Seeing webhook deliveries")
    return deliveries(uow, tenant_id=tenant_id, webhook_id=webhook_id, limit=limit)


def redeliver_for(
    uow: UnitOfWork, clock: Clock, actor: Actor, *, webhook_id: str, event_id: int
) -> str:
    tenant_id = managing(actor, what="Redelivering webhook events")
    return redeliver(uow, clock, tenant_id=tenant_id, webhook_id=webhook_id, event_id=event_id)


# --- one delivery ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One signed delivery: what to POST where."""

    webhook: Webhook
    event: Event
    body: bytes
    headers: dict[str, str]


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks signature header value (``v1,<base64>``)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def describe(uow: UnitOfWork, event: Event) -> dict[str, Any]:
    """The event's JSON body: its type, time, and the build or version it is about, as the
    native API shows it (or what the event carries, when that is gone)."""
    data: dict[str, Any] = dict(event.data)
    if event.topic.startswith("build."):
        build = uow.builds.get(event.subject_id)
        if build is not None:
            data = payloads.build(build)
    elif event.topic.startswith("version."):
        version = uow.versions.get(event.subject_id)
        if version is not None:
            data = {**payloads.version(uow, version), "event": event.data}
    return {"type": event.topic, "timestamp": event.at.isoformat(), "data": data}


def message(
    uow: UnitOfWork, clock: Clock, box: SecretBox, *, webhook_id: str, event_id: int
) -> Message | None:
    """The signed delivery of an event to an endpoint; None when either is gone, or the
    endpoint is disabled (nothing to send)."""
    webhook = uow.webhooks.get(webhook_id)
    if webhook is None or webhook.disabled:
        return None
    found = uow.outbox.events(tenant_id=webhook.tenant_id, event_id=event_id)
    if not found:
        return None
    event = found[0]
    body = json.dumps(describe(uow, event), separators=(",", ":"), default=str).encode()
    message_id = f"msg_{event.id}"  # the same for every retry: receivers deduplicate on it
    timestamp = int(clock.now().timestamp())
    secret = box.open(webhook.sealed_secret, _aad(webhook.id)).decode()
    return Message(
        webhook=webhook,
        event=event,
        body=body,
        headers={
            "content-type": "application/json",
            "user-agent": "appyard-webhooks/1",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, message_id, timestamp, body),
        },
    )


def log_attempt(
    uow: UnitOfWork,
    clock: Clock,
    msg: Message,
    *,
    attempt: int,
    status_code: int | None,
    latency_ms: int | None,
    error: str | None,
) -> WebhookDelivery:
    delivery = WebhookDelivery(
        id=new_id("wd"),
        webhook_id=msg.webhook.id,
        tenant_id=msg.webhook.tenant_id,
        event_id=msg.event.id or 0,
        topic=msg.event.topic,
        attempt=attempt,
        at=clock.now(),
        status_code=status_code,
        latency_ms=latency_ms,
        error=error[:500] if error else None,
    )
    uow.webhook_deliveries.add(delivery)
    outcome = "failed" if error else "delivered"
    telemetry.count(uow, "webhook.delivery", outcome=outcome, topic=msg.event.topic)
    return delivery


def next_try(attempt: int) -> timedelta:
    return jobs.backoff(attempt, base=FIRST_RETRY, cap=LONGEST_WAIT)
