"""Jobs: the database holds the truth (state, attempts, lease); the queue only wakes workers.

A worker claims a job atomically (queued, or running with an expired lease), renews the lease
while it works, records progress on the build, and finishes with success or failure. A job
whose worker died is claimed again once its lease expires; after ``MAX_ATTEMPTS`` claims it
fails with a message instead of looping forever.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from appyard.core import tenants
from appyard.core.models import Build, BuildStatus, Finding, Job, JobState, Stage
from appyard.core.ports import Clock, UnitOfWork

MAX_ATTEMPTS = 3


def claim(uow: UnitOfWork, clock: Clock, *, owner: str, lease_seconds: int) -> Job | None:
    """Take the oldest claimable job whose tenant is under its concurrency limit."""
    now = clock.now()
    until = now + timedelta(seconds=lease_seconds)
    for job in uow.jobs.claimable(now, 20):
        if job.attempts >= MAX_ATTEMPTS:
            _give_up(uow, clock, job)
            continue
        tenant = uow.tenants.get(job.tenant_id)
        limit = tenants.limits(tenant).concurrent_builds if tenant else None
        if limit is not None:
            # Held until the caller commits: the count and the claim are one step for this
            # tenant across every worker (another claimer holding it: try the next job).
            if not uow.jobs.lock_tenant(job.tenant_id):
                continue
            if uow.jobs.count_running(job.tenant_id, now) >= limit:
                continue
        if uow.jobs.try_claim(job, owner, now, until):
            claimed = uow.jobs.get(job.id)
            assert claimed is not None
            return claimed
    return None


def _give_up(uow: UnitOfWork, clock: Clock, job: Job) -> None:
    now = clock.now()
    uow.jobs.save(
        replace(job, state=JobState.FAILED, lease_owner=None, lease_until=None, updated_at=now)
    )
    build = uow.builds.get(job.build_id)
    if build is not None and build.status is BuildStatus.PROCESSING:
        uow.builds.save(
            replace(
                build,
                status=BuildStatus.FAILED,
                progress=Stage.DONE,
                updated_at=now,
                error_message=f"Processing was interrupted {job.attempts} times; giving up.",
            )
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


def succeed(uow: UnitOfWork, clock: Clock, *, job: Job, **build_fields: Any) -> None:
    now = clock.now()
    uow.jobs.save(
        replace(job, state=JobState.SUCCEEDED, lease_owner=None, lease_until=None, updated_at=now)
    )
    update_build(
        uow,
        clock,
        build_id=job.build_id,
        status=BuildStatus.COMPLETED,
        progress=Stage.DONE,
        error_message=None,
        **build_fields,
    )


def fail(uow: UnitOfWork, clock: Clock, *, job: Job, message: str) -> None:
    now = clock.now()
    uow.jobs.save(
        replace(job, state=JobState.FAILED, lease_owner=None, lease_until=None, updated_at=now)
    )
    update_build(
        uow,
        clock,
        build_id=job.build_id,
        status=BuildStatus.FAILED,
        progress=Stage.DONE,
        error_message=message,
    )
