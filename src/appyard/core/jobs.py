"""Jobs: the database holds the truth (kind, state, attempts, lease); the queue only wakes
workers.

A job is created in one place (:func:`create`), in the transaction of its cause, with a
wake-up in the outbox when it is ready to run. Its ``kind`` names the handler that runs it
(the worker looks it up by name). A worker claims a job atomically (queued and due, or running
with an expired lease), renews the lease while it works, and finishes with success, failure,
or a retry after a backoff (:func:`retry`, for work that talks to other machines: mail,
webhooks). A job whose worker died is claimed again once its lease expires; after its
``max_attempts`` claims it fails with a message instead of looping forever.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from appyard import errors
from appyard.core import outbox, telemetry, tenants
from appyard.core.ids import new_id
from appyard.core.models import Build, BuildStatus, Finding, Job, JobState, Stage
from appyard.core.ports import Claimed, Clock, UnitOfWork

MAX_ATTEMPTS = 3

# The job kinds core creates; each has a handler of that name (pipeline/handlers.py).
PROCESS_BUILD = "build.process"  # inspect, check, protect, sign, store the output
INSPECT_BUILD = "build.inspect"  # inspect and check only; the input is the output
VALIDATE_VERSION = "version.validate"  # a store version's validation run
KEEP_BUILD = "build.keep"  # a custom-platform package: stored as it is, nothing to inspect
NOTIFY_BUILD = "mail.build"  # email the people a build's uploader asked to notify
DELIVER_WEBHOOK = "webhook.deliver"  # POST one event to one endpoint
APPLY_RETENTION = "retention.apply"  # remove a tenant's builds its retention rules let go


def create(
    uow: UnitOfWork,
    clock: Clock,
    *,
    tenant_id: str,
    kind: str,
    build_id: str | None = None,
    waiting: bool = False,
    payload: dict[str, Any] | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    job_id: str | None = None,
) -> Job:
    """A new job; ``waiting`` until its input arrives (:func:`release`), else queued now.
    ``job_id``: a chosen id, so that a job made by several machines at once is made once (the
    second gets ``Conflict``)."""
    now = clock.now()
    job = Job(
        id=job_id or new_id("jb"),
        tenant_id=tenant_id,
        build_id=build_id,
        kind=kind,
        state=JobState.WAITING if waiting else JobState.QUEUED,
        attempts=0,
        created_at=now,
        updated_at=now,
        payload=payload or {},
        max_attempts=max_attempts,
    )
    uow.jobs.add(job)
    if not waiting:
        outbox.wake(uow, clock, job_id=job.id, kind=kind, tenant_id=tenant_id)
    return job


def release(uow: UnitOfWork, clock: Clock, *, build_id: str) -> list[Job]:
    """Queue the build's jobs that were waiting for its input."""
    released = []
    for job in uow.jobs.for_build(build_id):
        if job.state is JobState.WAITING:
            queued = replace(job, state=JobState.QUEUED, updated_at=clock.now())
            uow.jobs.save(queued)
            outbox.wake(uow, clock, job_id=job.id, kind=job.kind, tenant_id=job.tenant_id)
            released.append(queued)
    return released


def abandon(uow: UnitOfWork, clock: Clock, *, build_id: str) -> None:
    """Fail the build's unfinished jobs (waiting, queued or running) without a worker."""
    for job in uow.jobs.for_build(build_id):
        if job.state in (JobState.WAITING, JobState.QUEUED, JobState.RUNNING):
            uow.jobs.save(
                replace(
                    job,
                    state=JobState.FAILED,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=clock.now(),
                )
            )


def cancel_waiting(uow: UnitOfWork, clock: Clock, *, build_id: str) -> None:
    for job in uow.jobs.for_build(build_id):
        if job.state is JobState.WAITING:
            uow.jobs.save(replace(job, state=JobState.CANCELLED, updated_at=clock.now()))


def claim(uow: UnitOfWork, clock: Clock, *, owner: str, lease_seconds: int) -> Job | None:
    """Take the oldest claimable job whose tenant is under its concurrency limit."""
    now = clock.now()
    until = now + timedelta(seconds=lease_seconds)
    for spent in uow.jobs.exhausted(now, 20):
        _give_up(uow, clock, spent)
    full: set[str] = set()
    for _ in range(20):
        with uow.savepoint() as point:
            claimed = uow.jobs.claim_next(owner, now, until, skip_tenants=frozenset(full))
            if claimed is None:
                return None
            job = claimed.job
            if job.build_id is None:
                return _claimed(uow, claimed)
            tenant = uow.tenants.get(job.tenant_id)
            limit = tenants.limits(tenant).concurrent_builds if tenant else None
            if limit is None:
                return _started(uow, clock, _claimed(uow, claimed))
            # Held until the caller commits: the count and the claim are one step for this
            # tenant across every worker (another claimer holding it: try another tenant).
            if (
                uow.jobs.lock_tenant(job.tenant_id)
                and uow.jobs.count_running(job.tenant_id, now, but=job.id) < limit
            ):
                return _started(uow, clock, _claimed(uow, claimed))
            point.rollback()
            full.add(job.tenant_id)
    return None


def _claimed(uow: UnitOfWork, claimed: Claimed) -> Job:
    if claimed.lease_expired:
        telemetry.count(uow, "job.lease_expired", kind=claimed.job.kind)
    return claimed.job


def _started(uow: UnitOfWork, clock: Clock, job: Job) -> Job:
    """The first claim of a build's job is when its processing started."""
    assert job.build_id is not None
    build = uow.builds.get(job.build_id)
    if build is not None and build.started_at is None:
        uow.builds.save(replace(build, started_at=clock.now()))
    return job


def retry(uow: UnitOfWork, clock: Clock, *, job: Job, message: str, delay: timedelta) -> bool:
    """Queue the job again after ``delay``; False (and the job failed) when it used up its
    attempts."""
    now = clock.now()
    if job.attempts >= job.max_attempts:
        fail(uow, clock, job=job, message=message)
        return False
    uow.jobs.save(
        replace(
            job,
            state=JobState.QUEUED,
            lease_owner=None,
            lease_until=None,
            run_after=now + delay,
            updated_at=now,
        )
    )
    outbox.wake(uow, clock, job_id=job.id, kind=job.kind, tenant_id=job.tenant_id)
    return True


def backoff(attempt: int, *, base: timedelta, cap: timedelta) -> timedelta:
    """Exponential backoff: ``base * 2**(attempt-1)``, at most ``cap``."""
    grown: timedelta = base * (2 ** max(0, attempt - 1))
    return min(cap, grown)


def _give_up(uow: UnitOfWork, clock: Clock, job: Job) -> None:
    now = clock.now()
    if job.state is JobState.RUNNING:
        telemetry.count(uow, "job.lease_expired", kind=job.kind)
    uow.jobs.save(
        replace(job, state=JobState.FAILED, lease_owner=None, lease_until=None, updated_at=now)
    )
    if job.build_id is None:
        return
    build = uow.builds.get(job.build_id)
    if build is not None and build.status is BuildStatus.PROCESSING:
        finished(
            uow,
            clock,
            build,
            status=BuildStatus.FAILED,
            error_message=f"Processing was interrupted {job.attempts} times; giving up.",
        )


def renew(uow: UnitOfWork, clock: Clock, *, job_id: str, owner: str, lease_seconds: int) -> bool:
    """Extend the lease; False means another worker owns the job now (stop working on it)."""
    until = clock.now() + timedelta(seconds=lease_seconds)
    return uow.jobs.renew(job_id, owner, until)


def set_progress(uow: UnitOfWork, clock: Clock, *, build_id: str, stage: Stage) -> None:
    build = uow.builds.get(build_id)
    assert build is not None
    uow.builds.save(replace(build, progress=stage, updated_at=clock.now()))


def update_build(uow: UnitOfWork, clock: Clock, *, build_id: str, **fields: Any) -> Build:
    build = uow.builds.get(build_id)
    assert build is not None
    updated = replace(build, updated_at=clock.now(), **fields)
    uow.builds.save(updated)
    return updated


def record_findings(uow: UnitOfWork, *, build_id: str, findings: list[Finding]) -> None:
    uow.findings.replace(build_id, findings)


def finished(
    uow: UnitOfWork, clock: Clock, build: Build, *, status: BuildStatus, **fields: Any
) -> Build:
    """The build ends ``completed`` or ``failed``, with its event (build.processed or
    build.failed) in the same transaction."""
    updated = update_build(
        uow,
        clock,
        build_id=build.id,
        status=status,
        progress=Stage.DONE,
        finished_at=clock.now(),
        **fields,
    )
    topic = "build.processed" if status is BuildStatus.COMPLETED else "build.failed"
    outbox.emit(
        uow,
        clock,
        topic,
        tenant_id=build.tenant_id,
        subject_id=build.id,
        number=build.number,
        app_id=updated.app_id,
        error_message=updated.error_message,
    )
    return updated


def succeed(uow: UnitOfWork, clock: Clock, *, job: Job, **build_fields: Any) -> None:
    now = clock.now()
    uow.jobs.save(
        replace(job, state=JobState.SUCCEEDED, lease_owner=None, lease_until=None, updated_at=now)
    )
    if job.build_id is None:
        return
    build = uow.builds.get(job.build_id)
    assert build is not None
    finished(uow, clock, build, status=BuildStatus.COMPLETED, error_message=None, **build_fields)


def fail(uow: UnitOfWork, clock: Clock, *, job: Job, message: str) -> None:
    now = clock.now()
    uow.jobs.save(
        replace(job, state=JobState.FAILED, lease_owner=None, lease_until=None, updated_at=now)
    )
    if job.build_id is None:
        return
    build = uow.builds.get(job.build_id)
    assert build is not None
    finished(uow, clock, build, status=BuildStatus.FAILED, error_message=message)


# --- an operator's actions (appyard admin jobs) -------------------------------------------------


class JobNotRetryable(errors.Conflict):
    """Only a failed or cancelled job can be run again."""

    code = "job.not_retryable"


class JobFinished(errors.Conflict):
    """The job has already finished."""

    code = "job.finished"


def _operated(uow: UnitOfWork, job_id: str) -> Job:
    job = uow.jobs.get(job_id)
    if job is None:
        raise errors.JobNotFound(f"Job {job_id} not found.")
    return job


def run_again(uow: UnitOfWork, clock: Clock, *, job_id: str) -> Job:
    """Queue a failed or cancelled job again with fresh attempts; its build (if any) shows as
    processing until the job ends."""
    job = _operated(uow, job_id)
    if job.state not in (JobState.FAILED, JobState.CANCELLED):
        raise JobNotRetryable(
            f"Job {job.id} is {job.state.value}; only failed or cancelled jobs run again."
        )
    now = clock.now()
    if job.build_id is not None:
        build = uow.builds.get(job.build_id)
        if build is None or build.deleted:
            raise JobNotRetryable(f"Job {job.id}'s build was deleted.")
        busy = [
            j
            for j in uow.jobs.for_build(build.id)
            if j.id != job.id and j.state in (JobState.QUEUED, JobState.RUNNING)
        ]
        if busy:
            raise JobNotRetryable(f"Build {build.id} has job {busy[0].id} in progress.")
        uow.builds.save(
            replace(
                build,
                status=BuildStatus.PROCESSING,
                progress=Stage.QUEUED,
                error_message=None,
                finished_at=None,
                updated_at=now,
            )
        )
    queued = replace(
        job,
        state=JobState.QUEUED,
        attempts=0,
        lease_owner=None,
        lease_until=None,
        run_after=None,
        updated_at=now,
    )
    uow.jobs.save(queued)
    outbox.wake(uow, clock, job_id=job.id, kind=job.kind, tenant_id=job.tenant_id)
    return queued


def cancel(uow: UnitOfWork, clock: Clock, *, job_id: str, reason: str) -> Job:
    """Stop a job that has not finished: it is not claimed again, a worker running it loses
    its lease (and stops at its next stage), and its build fails with ``reason``."""
    job = _operated(uow, job_id)
    if job.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
        raise JobFinished(f"Job {job.id} has already {job.state.value}.")
    now = clock.now()
    cancelled = replace(
        job, state=JobState.CANCELLED, lease_owner=None, lease_until=None, updated_at=now
    )
    uow.jobs.save(cancelled)
    if job.build_id is not None:
        build = uow.builds.get(job.build_id)
        if build is not None and build.status is BuildStatus.PROCESSING:
            finished(uow, clock, build, status=BuildStatus.FAILED, error_message=reason)
    return cancelled
