"""Webhooks, end to end on a real HTTP endpoint on loopback: deliveries signed the Standard
Webhooks way (verified with the ``standardwebhooks`` library), retried with exponential
backoff, logged per attempt, not lost across a restart, redelivered on request; destinations
on private addresses refused unless allowed; redirects not followed."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from appyard import errors
from appyard.backends.webhooks.http import HttpSender
from appyard.core import webhooks
from appyard.core.context import Services
from appyard.core.models import JobState
from appyard.core.ports import SystemClock
from appyard.runtime import Runtime, build_runtime
from appyard.settings import Settings
from appyard.worker import Worker
from tests.conftest import FIXTURES, FakeClock, TenantKey, upload_build
from tests.going_out import Receiver

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"


@pytest.fixture
def svc(runtime: Runtime) -> Services:
    return dataclasses.replace(runtime.services, sender=HttpSender(allow_private=True))


def endpoint(
    svc: Services, tenant: TenantKey, url: str, events: tuple[str, ...] = ()
) -> webhooks.NewWebhook:
    assert svc.sender is not None
    with svc.transaction() as uow:
        return webhooks.add(
            uow, svc.clock, svc.sealer(), svc.sender, tenant_id=tenant.tenant_id, url=url,
            events=events,
        )  # fmt: skip


def run_all(svc: Services) -> None:
    worker = Worker(svc)
    while worker.run_once("w"):
        pass


def test_events_are_delivered_signed_and_verify_with_the_library(
    runtime: Runtime, svc: Services, tenant: TenantKey, receiver: Receiver
) -> None:
    svc = dataclasses.replace(svc, clock=SystemClock())  # receivers check the timestamp
    made = endpoint(svc, tenant, receiver.url, ("build.processed", "build.failed"))
    assert made.secret.startswith("whsec_")
    build = upload_build(runtime, tenant, RELEASE_APK, services=svc)
    run_all(svc)
    assert [d.path for d in receiver.deliveries] == ["/hooks/appyard"]  # only what it wants
    delivery = receiver.deliveries[0]
    payload = Verifier(made.secret).verify(delivery.body, delivery.headers)
    assert payload["type"] == "build.processed"
    data = payload["data"]
    assert data["id"] == build.id and data["status"] == "completed"
    assert data["identifier"] == "org.appyard.fixture" and data["number"] == build.number
    assert delivery.headers["webhook-id"].startswith("msg_")
    assert delivery.headers["content-type"] == "application/json"
    tampered = dict(delivery.headers, **{"webhook-signature": "v1,AAAA"})
    with pytest.raises(Exception, match="signature"):
        Verifier(made.secret).verify(delivery.body, tampered)
    with svc.uow() as uow:
        log = webhooks.deliveries(uow, tenant_id=tenant.tenant_id, webhook_id=made.webhook.id)
    assert [(d.topic, d.status_code, d.attempt) for d in log] == [("build.processed", 204, 1)]
    assert log[0].latency_ms is not None


def test_a_failing_endpoint_is_retried_with_backoff_and_each_attempt_logged(
    runtime: Runtime, svc: Services, tenant: TenantKey, receiver: Receiver, clock: FakeClock
) -> None:
    made = endpoint(svc, tenant, receiver.url, ("build.processed",))
    receiver.statuses = [500, 503]
    upload_build(runtime, tenant, RELEASE_APK, services=svc)
    run_all(svc)
    assert len(receiver.deliveries) == 1
    waits = []
    for expected in (timedelta(seconds=30), timedelta(seconds=60)):
        clock.advance(seconds=expected.total_seconds() - 1)
        run_all(svc)
        waits.append(len(receiver.deliveries))
        clock.advance(seconds=1)
        run_all(svc)
    assert waits == [1, 2]  # not a second early
    assert len(receiver.deliveries) == 3
    ids = {d.headers["webhook-id"] for d in receiver.deliveries}
    assert len(ids) == 1  # a retry is the same message: receivers deduplicate on its id
    with svc.uow() as uow:
        log = webhooks.deliveries(uow, tenant_id=tenant.tenant_id, webhook_id=made.webhook.id)
    assert [(d.attempt, d.status_code) for d in reversed(log)] == [(1, 500), (2, 503), (3, 204)]
    assert "503" in (log[1].error or "")


def test_retries_last_more_than_a_day() -> None:
    total = sum((webhooks.next_try(n) for n in range(1, webhooks.DELIVERY_ATTEMPTS)), timedelta())
    assert total > timedelta(days=1)


def test_nothing_is_lost_across_a_restart(
    svc: Services,
    settings: Settings,
    tenant: TenantKey,
    receiver: Receiver,
    clock: FakeClock,
    runtime: Runtime,
) -> None:
    endpoint(svc, tenant, receiver.url, ("build.processed",))
    receiver.statuses = [502]
    upload_build(runtime, tenant, RELEASE_APK, services=svc)
    run_all(svc)
    assert len(receiver.deliveries) == 1
    fresh = build_runtime(settings, clock=clock)  # another process, the same database
    again = dataclasses.replace(fresh.services, sender=HttpSender(allow_private=True))
    clock.advance(minutes=1)
    run_all(again)
    assert len(receiver.deliveries) == 2
    fresh.engine.dispose()


def test_disabled_endpoints_get_nothing_and_redelivery_sends_again(
    runtime: Runtime, svc: Services, tenant: TenantKey, receiver: Receiver
) -> None:
    made = endpoint(svc, tenant, receiver.url)
    with svc.transaction() as uow:
        webhooks.set_disabled(
            uow, tenant_id=tenant.tenant_id, webhook_id=made.webhook.id, disabled=True
        )
    upload_build(runtime, tenant, RELEASE_APK, services=svc)
    run_all(svc)
    assert receiver.deliveries == []
    with svc.transaction() as uow:
        webhooks.set_disabled(
            uow, tenant_id=tenant.tenant_id, webhook_id=made.webhook.id, disabled=False
        )
        event = uow.outbox.events(tenant_id=tenant.tenant_id)[-1]
        assert event.id is not None
        webhooks.redeliver(
            uow, svc.clock, tenant_id=tenant.tenant_id, webhook_id=made.webhook.id,
            event_id=event.id,
        )  # fmt: skip
    run_all(svc)
    assert [json.loads(d.body)["type"] for d in receiver.deliveries] == [event.topic]


def test_redirects_are_not_followed(
    runtime: Runtime, svc: Services, tenant: TenantKey, receiver: Receiver
) -> None:
    made = endpoint(svc, tenant, receiver.url, ("build.processed",))
    receiver.redirect_to = "http://169.254.169.254/latest/meta-data/"
    upload_build(runtime, tenant, RELEASE_APK, services=svc)
    run_all(svc)
    assert len(receiver.deliveries) == 1
    with svc.uow() as uow:
        log = webhooks.deliveries(uow, tenant_id=tenant.tenant_id, webhook_id=made.webhook.id)
        jobs = [j for j in _jobs(uow) if j.kind == "webhook.deliver"]
    assert log[0].status_code == 302 and "302" in (log[0].error or "")
    assert jobs[0].state is JobState.QUEUED  # tried again later, not followed


def _jobs(uow: object) -> list:  # type: ignore[type-arg]
    from sqlalchemy import select

    from appyard.backends.db import tables as t
    from appyard.backends.db.rows import to_obj
    from appyard.core.models import Job

    conn = uow.conn  # type: ignore[attr-defined]
    return [to_obj(Job, r) for r in conn.execute(select(t.jobs))]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "ftp://example.com/hook",
    ],
)
def test_private_and_odd_destinations_are_refused(
    runtime: Runtime, tenant: TenantKey, url: str
) -> None:
    svc = runtime.services  # the default: private destinations not allowed
    assert svc.sender is not None
    with pytest.raises((errors.DestinationRefused, errors.InvalidField)), svc.transaction() as uow:
        webhooks.add(uow, svc.clock, svc.sealer(), svc.sender, tenant_id=tenant.tenant_id, url=url)


def test_unknown_events_are_refused(svc: Services, tenant: TenantKey, receiver: Receiver) -> None:
    with pytest.raises(errors.InvalidField, match=r"build\.exploded"):
        endpoint(svc, tenant, receiver.url, ("build.exploded",))


def test_secrets_are_sealed_at_rest(
    runtime: Runtime, svc: Services, tenant: TenantKey, receiver: Receiver, tmp_path: Path
) -> None:
    made = endpoint(svc, tenant, receiver.url)
    db = Path(runtime.settings.effective_database_url.removeprefix("sqlite:///"))
    if db.exists():
        assert made.secret.encode() not in db.read_bytes()
        assert made.secret.removeprefix("whsec_").encode() not in db.read_bytes()


def test_members_manage_endpoints_tokens_do_not_and_audit_events_never_leave(
    runtime: Runtime, svc: Services, tenant: TenantKey, receiver: Receiver
) -> None:
    from appyard.core import identity
    from appyard.core.models import Actor, TokenKind

    member = Actor(id="us_dev", tenant_id=tenant.tenant_id)
    assert svc.sender is not None
    with svc.transaction() as uow:
        made = webhooks.add_for(uow, svc.clock, svc.sealer(), svc.sender, member, url=receiver.url)
        # an endpoint of every event: the audit trail of this very change is not sent
        identity.issue_member_token(uow, svc.clock, member, kind=TokenKind.CI, name="ci")
    with svc.transaction() as uow:
        for call in (
            lambda: webhooks.list_for(uow, tenant.actor),
            lambda: webhooks.set_disabled_for(
                uow, svc.clock, tenant.actor, webhook_id=made.webhook.id, disabled=True
            ),
            lambda: webhooks.delete_for(uow, svc.clock, tenant.actor, webhook_id=made.webhook.id),
            lambda: webhooks.redeliver_for(
                uow, svc.clock, tenant.actor, webhook_id=made.webhook.id, event_id=1
            ),
        ):
            with pytest.raises(errors.Forbidden, match="signed-in tenant member"):
                call()
        assert [w.id for w in webhooks.list_for(uow, member)] == [made.webhook.id]
        events = uow.outbox.events(tenant_id=tenant.tenant_id)
    topics = [e.topic for e in events]
    assert "webhook.created" in topics and "token.created" in topics
    audit = next(e for e in events if e.topic == "token.created")
    assert audit.id is not None
    with svc.transaction() as uow, pytest.raises(errors.NotFound):
        webhooks.redeliver_for(
            uow, svc.clock, member, webhook_id=made.webhook.id, event_id=audit.id
        )
    run_all(svc)
    assert receiver.deliveries == []
    upload_build(runtime, tenant, RELEASE_APK, services=svc)
    run_all(svc)
    sent = [json.loads(d.body)["type"] for d in receiver.deliveries]
    assert sent and set(sent) <= set(webhooks.TOPICS), sent
    with svc.transaction() as uow:
        webhooks.set_disabled_for(uow, svc.clock, member, webhook_id=made.webhook.id, disabled=True)
        sent_id = uow.webhook_deliveries.for_webhook(made.webhook.id)[0].event_id
    with svc.transaction() as uow, pytest.raises(errors.Conflict, match="disabled"):
        webhooks.redeliver_for(uow, svc.clock, member, webhook_id=made.webhook.id, event_id=sent_id)
