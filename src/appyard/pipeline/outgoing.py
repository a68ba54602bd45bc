"""Jobs that go out to other machines: notification email (``mail.build``) and webhook
deliveries (``webhook.deliver``). Each attempt is recorded; a failure is retried with
exponential backoff (``core.jobs.retry``) until the job's attempts are spent. Neither runs
inside a request: they are made by outbox consumers after the cause committed."""

from __future__ import annotations

import logging
from datetime import timedelta

from appyard import errors
from appyard.core import builds, jobs, notifications, webhooks
from appyard.core.context import Services
from appyard.core.models import DeliveryStatus, Job
from appyard.core.ports import UnitOfWork

log = logging.getLogger("appyard.outgoing")

MAIL_RETRY = timedelta(minutes=1)
MAIL_RETRY_CAP = timedelta(hours=1)


def _mine(uow: UnitOfWork, job: Job, owner: str) -> Job | None:
    """The job as it is now, if this worker still holds it."""
    current = uow.jobs.get(job.id)
    return current if current is not None and current.lease_owner == owner else None


def send_build_mail(svc: Services, job: Job, owner: str) -> None:
    build_id, topic = str(job.payload.get("build_id")), str(job.payload.get("topic"))
    with svc.uow() as uow:
        out = notifications.outgoing(uow, build_id=build_id, topic=topic)
    failed: list[str] = []
    if out is not None:
        link = builds.page_url(svc.public_url, out.build)
        for member, language in out.messages:
            status, error = DeliveryStatus.SKIPPED, "no mail server is configured"
            if svc.mailer.configured:
                message = notifications.compose(
                    to=member.email,
                    language=language,
                    app=out.app,
                    build=out.build,
                    notify=out.notify,
                    link=link,
                )
                try:
                    svc.mailer.send(message)
                    status, error = DeliveryStatus.SENT, ""
                except errors.DeliveryFailed as exc:
                    status, error = DeliveryStatus.FAILED, exc.message
                    failed.append(member.email)
            with svc.transaction() as uow:
                notifications.record(
                    uow,
                    svc.clock,
                    build=out.build,
                    topic=topic,
                    recipient=member.email,
                    language=language,
                    status=status,
                    attempts=job.attempts,
                    error=error or None,
                )
    with svc.transaction() as uow:
        current = _mine(uow, job, owner)
        if current is None:
            return
        if failed:
            delay = jobs.backoff(current.attempts, base=MAIL_RETRY, cap=MAIL_RETRY_CAP)
            jobs.retry(
                uow,
                svc.clock,
                job=current,
                message=f"Mail to {len(failed)} recipient(s) failed; tried again later.",
                delay=delay,
            )
        else:
            jobs.succeed(uow, svc.clock, job=current)
    log.info("mail.sent build_id=%s failed=%d", build_id, len(failed))


def deliver_webhook(svc: Services, job: Job, owner: str) -> None:
    webhook_id = str(job.payload.get("webhook_id"))
    event_id = int(job.payload.get("event_id") or 0)
    with svc.uow() as uow:
        msg = webhooks.message(
            uow, svc.clock, svc.sealer(), webhook_id=webhook_id, event_id=event_id
        )
    status: int | None = None
    latency: int | None = None
    error: str | None = None
    if msg is not None:
        assert svc.sender is not None, "a running appyard has a webhook sender"
        try:
            answer = svc.sender.post(msg.webhook.url, msg.body, msg.headers)
            status, latency = answer.status, answer.latency_ms
            if not 200 <= status < 300:
                error = f"The endpoint answered {status}."
        except (errors.DeliveryFailed, errors.DestinationRefused) as exc:
            error = exc.message
    with svc.transaction() as uow:
        current = _mine(uow, job, owner)
        if current is None:
            return
        if msg is not None:
            webhooks.log_attempt(
                uow,
                svc.clock,
                msg,
                attempt=current.attempts,
                status_code=status,
                latency_ms=latency,
                error=error,
            )
        if error is None:
            jobs.succeed(uow, svc.clock, job=current)
        else:
            jobs.retry(
                uow,
                svc.clock,
                job=current,
                message=error,
                delay=webhooks.next_try(current.attempts),
            )
    log.info(
        "webhook.attempt webhook_id=%s event_id=%s status=%s attempt=%d",
        webhook_id,
        event_id,
        status,
        job.attempts,
    )
