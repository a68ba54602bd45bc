"""Jobs are truth in the database: claimed once, leased, picked up again when a worker dies,
given up after MAX_ATTEMPTS."""

from __future__ import annotations

from dataclasses import replace

from appyard.core import jobs
from appyard.core.models import BuildStatus, JobState
from appyard.runtime import Runtime
from appyard.worker import Worker
from tests.conftest import FIXTURES, FakeClock, TenantKey, upload_build


def _queued_build(runtime: Runtime, tenant: TenantKey) -> str:
    return upload_build(runtime, tenant, FIXTURES / "fixture-release-v1v2v3.apk").id


def test_a_job_is_claimed_by_one_worker_only(runtime: Runtime, tenant: TenantKey) -> None:
    _queued_build(runtime, tenant)
    svc = runtime.services
    with svc.uow() as uow:
        first = jobs.claim(uow, svc.clock, owner="a", lease_seconds=60)
        second = jobs.claim(uow, svc.clock, owner="b", lease_seconds=60)
        uow.commit()
    assert first is not None and first.state is JobState.RUNNING and first.attempts == 1
    assert second is None


def test_a_dead_workers_job_is_picked_up_after_its_lease(
    runtime: Runtime, tenant: TenantKey, clock: FakeClock
) -> None:
    build_id = _queued_build(runtime, tenant)
    svc = runtime.services
    with svc.uow() as uow:
        dead = jobs.claim(uow, svc.clock, owner="dead-worker", lease_seconds=60)
        uow.commit()
    assert dead is not None
    assert not Worker(svc).run_once("live")  # still leased
    clock.advance(seconds=61)
    assert Worker(svc).run_once("live")
    with svc.uow() as uow:
        build = uow.builds.get(build_id)
        job = uow.jobs.get(dead.id)
        # the dead worker cannot renew a lease it lost
        assert not jobs.renew(uow, svc.clock, job_id=dead.id, owner="dead-worker", lease_seconds=60)
    assert build is not None and build.status is BuildStatus.COMPLETED
    assert job is not None and job.attempts == 2 and job.state is JobState.SUCCEEDED


def test_a_job_that_keeps_dying_gives_up(
    runtime: Runtime, tenant: TenantKey, clock: FakeClock
) -> None:
    build_id = _queued_build(runtime, tenant)
    svc = runtime.services
    for n in range(jobs.MAX_ATTEMPTS):
        with svc.uow() as uow:
            assert jobs.claim(uow, svc.clock, owner=f"w{n}", lease_seconds=10) is not None
            uow.commit()
        clock.advance(seconds=11)
    with svc.uow() as uow:
        assert jobs.claim(uow, svc.clock, owner="last", lease_seconds=10) is None
        uow.commit()
        build = uow.builds.get(build_id)
    assert build is not None and build.status is BuildStatus.FAILED
    assert "interrupted 3 times" in (build.error_message or "")


def test_running_a_job_twice_gives_the_same_output(
    runtime: Runtime, tenant: TenantKey, clock: FakeClock
) -> None:
    """Stages are safe to run twice: a job re-run after a lost lease rewrites the same key."""
    build_id = _queued_build(runtime, tenant)
    svc = runtime.services
    assert Worker(svc).run_once("w1")
    with svc.uow() as uow:
        build = uow.builds.get(build_id)
        job = uow.jobs.for_build(build_id)[0]
        uow.jobs.save(replace(job, state=JobState.QUEUED))
        uow.commit()
    assert build is not None
    first_sha = build.output_sha256
    assert Worker(svc).run_once("w2")
    with svc.uow() as uow:
        again = uow.builds.get(build_id)
    assert again is not None and again.output_key == build.output_key
    assert again.output_sha256 == first_sha


def test_the_worker_runs_each_job_with_the_handler_of_its_kind(
    runtime: Runtime, tenant: TenantKey
) -> None:
    from appyard.core.models import Job

    svc = runtime.services
    with svc.transaction() as uow:
        mail = jobs.create(
            uow, svc.clock, tenant_id=tenant.tenant_id, kind="mail.send", payload={"to": "a@b.c"}
        )
        odd = jobs.create(uow, svc.clock, tenant_id=tenant.tenant_id, kind="no.such.kind")
    ran: list[Job] = []

    def send_mail(services: object, job: Job, owner: str) -> None:
        ran.append(job)
        with svc.transaction() as uow:
            jobs.succeed(uow, svc.clock, job=job)

    worker = Worker(svc, handlers={"mail.send": send_mail})
    assert worker.run_once("w") and worker.run_once("w")
    assert [j.id for j in ran] == [mail.id] and ran[0].payload == {"to": "a@b.c"}
    with svc.uow() as uow:
        assert uow.jobs.get(mail.id).state is JobState.SUCCEEDED  # type: ignore[union-attr]
        failed = uow.jobs.get(odd.id)
    assert failed is not None and failed.state is JobState.FAILED
    assert not worker.run_once("w")
