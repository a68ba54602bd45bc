"""Side effects leave after commit and are never lost: wake-ups and domain events are written
in the transaction of their cause (the outbox) and delivered after it commits, by whoever
committed or, after a crash in between, by a worker's relay. On SQLite, and on PostgreSQL
when APPYARD_DATABASE_URL names one."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from appyard.core import outbox
from appyard.core.models import Event
from appyard.core.ports import Clock, UnitOfWork
from appyard.runtime import Runtime
from appyard.worker import Worker
from tests.conftest import FIXTURES, TenantKey, upload_build

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"


class Recorder:
    """A consumer that records what it is handed (and can be told to fail once)."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self.fail_next = False
        self.lock = threading.Lock()

    def __call__(self, uow: UnitOfWork, clock: Clock, event: Event) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the consumer's first try fails")
        with self.lock:
            self.seen.append(event)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    made = Recorder()
    outbox.consume("*", made)
    yield made
    outbox.CONSUMERS["*"].remove(made)


def pending(runtime: Runtime) -> list[str]:
    with runtime.services.uow() as uow:
        return [f"{i.kind}:{i.topic}" for i in uow.outbox.claim(1000)]


def test_events_of_a_build_are_delivered_after_commit_in_order(
    runtime: Runtime, tenant: TenantKey, recorder: Recorder
) -> None:
    build = upload_build(runtime, tenant, RELEASE_APK)
    assert [e.topic for e in recorder.seen] == ["build.uploaded"]
    assert pending(runtime) == []  # the wake-up went to the queue, the event was dispatched
    assert Worker(runtime.services).run_once("w")
    assert [e.topic for e in recorder.seen] == ["build.uploaded", "build.processed"]
    processed = recorder.seen[-1]
    assert processed.subject_id == build.id and processed.tenant_id == tenant.tenant_id
    assert processed.data["number"] == build.number
    with runtime.services.uow() as uow:
        logged = uow.outbox.events(tenant_id=tenant.tenant_id, subject_id=build.id)
    assert [e.topic for e in logged] == ["build.uploaded", "build.processed"]  # the event log


def test_nothing_is_delivered_when_the_cause_rolls_back(
    runtime: Runtime, tenant: TenantKey, recorder: Recorder
) -> None:
    svc = runtime.services
    with pytest.raises(RuntimeError), svc.transaction() as uow:
        outbox.emit(uow, svc.clock, "build.uploaded", tenant_id=tenant.tenant_id, subject_id="b")
        raise RuntimeError("the cause fails")
    assert pending(runtime) == [] and recorder.seen == []


def test_a_crash_between_commit_and_delivery_loses_nothing(
    runtime: Runtime, tenant: TenantKey, recorder: Recorder
) -> None:
    svc = runtime.services
    with svc.uow() as uow:  # committed, then the process "dies" before relaying
        outbox.emit(uow, svc.clock, "version.released", tenant_id=tenant.tenant_id, subject_id="v")
        outbox.wake(uow, svc.clock, job_id="jb_x", kind="build.process", tenant_id=tenant.tenant_id)
        uow.commit()
    assert pending(runtime) == ["event:version.released", "wake:build.process"]
    assert recorder.seen == []
    assert Worker(svc).relay() == 2  # what every worker does every couple of seconds
    assert [e.topic for e in recorder.seen] == ["version.released"]
    assert pending(runtime) == []


def test_a_consumer_that_fails_gets_the_event_again(
    runtime: Runtime, tenant: TenantKey, recorder: Recorder
) -> None:
    svc = runtime.services
    recorder.fail_next = True
    with svc.transaction() as uow:  # committed; the relay after it fails and is logged
        outbox.emit(uow, svc.clock, "build.failed", tenant_id=tenant.tenant_id, subject_id="b")
    assert recorder.seen == [] and pending(runtime) == ["event:build.failed"]
    assert svc.relay() == 1
    assert [e.topic for e in recorder.seen] == ["build.failed"]


def test_two_relays_never_deliver_an_event_twice(
    runtime: Runtime, tenant: TenantKey, recorder: Recorder
) -> None:
    svc = runtime.services
    with svc.uow() as uow:
        for n in range(300):
            outbox.emit(
                uow, svc.clock, "build.uploaded", tenant_id=tenant.tenant_id, subject_id=f"b{n}"
            )
        uow.commit()
    threads = [threading.Thread(target=svc.relay) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    subjects = [e.subject_id for e in recorder.seen]
    assert sorted(subjects) == sorted(f"b{n}" for n in range(300))
    assert len(set(subjects)) == 300


def test_version_transitions_emit_their_events(
    runtime: Runtime, tenant: TenantKey, recorder: Recorder, tmp_path: Path
) -> None:
    from appyard.core import identity, versions
    from appyard.core.models import Actor, Role, TokenKind

    svc = runtime.services
    spooled = tmp_path / "upload.apk"
    shutil.copyfile(RELEASE_APK, spooled)
    with svc.transaction() as uow:
        ci = identity.create_token(uow, svc.clock, tenant_id=tenant.tenant_id, kind=TokenKind.CI)
        token = Actor(id=ci.token.id, tenant_id=tenant.tenant_id, token_kind=TokenKind.CI)
        version, _ = versions.ingest_ci_upload(svc, uow, token, path=spooled, file_name="app.apk")
    assert Worker(svc).run_once("w")  # the validation run
    staff = Actor(id="us_admin", tenant_id=None, role=Role.STORE_ADMIN)
    developer = Actor(id="us_dev", tenant_id=tenant.tenant_id, role=Role.DEVELOPER)
    with svc.transaction() as uow:
        versions.submit(uow, svc.clock, developer, version_id=version.id)
    with svc.transaction() as uow:
        versions.approve(uow, svc.clock, staff, version_id=version.id)
    with svc.transaction() as uow:
        versions.release(
            uow, svc.clock, staff, version_id=version.id, countries=["DE"], vehicle_contexts=[]
        )
    topics = [e.topic for e in recorder.seen if e.subject_id == version.id]
    assert topics == [
        "version.uploaded",
        "version.submitted",
        "version.approved",
        "version.released",
    ]
    assert recorder.seen[-1].data["countries"] == ["DE"]
    assert recorder.seen[-1].data["actor"] == "user:us_admin"
