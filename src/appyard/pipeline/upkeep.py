"""Jobs that keep a long-running server in shape: ``retention.apply`` removes the builds a
tenant's retention rules let go (``core.retention``; scheduled by the workers' sweep)."""

from __future__ import annotations

import logging

from appyard.core import jobs, retention
from appyard.core.context import Services
from appyard.core.models import Job

log = logging.getLogger("appyard.upkeep")


def apply_retention(svc: Services, job: Job, owner: str) -> None:
    done = retention.apply(svc, tenant_id=job.tenant_id)
    with svc.transaction() as uow:
        current = uow.jobs.get(job.id)
        if current is not None and current.lease_owner == owner:
            jobs.succeed(uow, svc.clock, job=current)
    log.info(
        "retention.applied tenant_id=%s removed=%d bytes=%d",
        job.tenant_id,
        len(done.remove),
        done.bytes,
    )
