"""Side effects after commit, never lost: the outbox.

Core writes two kinds of rows in the same transaction as their cause:

* a **wake-up** (:func:`wake`): a job was queued, a worker should hear of it;
* a **domain event** (:func:`emit`): ``build.uploaded``, ``build.processed``,
  ``build.failed``, ``version.submitted``, ``version.approved``, ``version.rejected``,
  ``version.released``, ... with the subject's id and a small payload.

After the transaction commits, :func:`relay` delivers them: a wake-up becomes a notification
on the job queue (then the row goes: the job row is the truth, a wake-up only saves latency);
an event is handed to the consumers registered for its topic (each may write rows of its own,
jobs for instance, in the relay's transaction) and then marked dispatched (the row stays as
the event log). Whoever committed relays at once (``Services.transaction``); workers relay
periodically, so a crash between commit and delivery only delays it. Relays on many machines
do not deliver a row twice (rows are claimed ``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from appyard.core.models import Event
from appyard.core.ports import Clock, JobQueue, UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("appyard.outbox")

WAKE = "wake"
EVENT = "event"
BATCH = 100

Consumer = Callable[[UnitOfWork, Clock, Event], None]
# topic -> consumers; "*" receives every event. Filled by the modules that consume events.
CONSUMERS: dict[str, list[Consumer]] = {}


def consume(topic: str, consumer: Consumer) -> None:
    """Register ``consumer`` for ``topic`` (once; registering again changes nothing)."""
    found = CONSUMERS.setdefault(topic, [])
    if consumer not in found:
        found.append(consumer)


def wake(uow: UnitOfWork, clock: Clock, *, job_id: str, kind: str, tenant_id: str | None) -> None:
    """Workers should hear of job ``job_id`` once this transaction commits."""
    uow.outbox.add(
        kind=WAKE, topic=kind, tenant_id=tenant_id, subject_id=job_id, data={}, at=clock.now()
    )


def emit(
    uow: UnitOfWork,
    clock: Clock,
    topic: str,
    *,
    tenant_id: str | None,
    subject_id: str,
    **data: Any,
) -> None:
    """Record the domain event ``topic`` about ``subject_id`` in this transaction."""
    uow.outbox.add(
        kind=EVENT,
        topic=topic,
        tenant_id=tenant_id,
        subject_id=subject_id,
        data=data,
        at=clock.now(),
    )


def relay(factory: UnitOfWorkFactory, clock: Clock, queue: JobQueue) -> int:
    """Deliver what the outbox holds; returns how many rows were delivered."""
    total = 0
    while True:
        woken: list[str] = []
        with factory() as uow:
            items = uow.outbox.claim(BATCH)
            if not items:
                return total
            wakes = [i.id for i in items if i.kind == WAKE]
            events = [i for i in items if i.kind == EVENT]
            for item in items:
                if item.kind == WAKE:
                    woken.append(item.subject_id)
            for item in events:
                event = Event(
                    id=item.id,
                    topic=item.topic,
                    tenant_id=item.tenant_id,
                    subject_id=item.subject_id,
                    at=item.created_at,
                    data=item.data,
                )
                for consumer in (*CONSUMERS.get(item.topic, ()), *CONSUMERS.get("*", ())):
                    consumer(uow, clock, event)
                log.info("event.dispatched topic=%s subject_id=%s", item.topic, item.subject_id)
            uow.outbox.forget(wakes)
            uow.outbox.dispatched([e.id for e in events], clock.now())
            uow.commit()
        for job_id in woken:
            queue.notify(job_id)
        total += len(items)
        if len(items) < BATCH:
            return total
