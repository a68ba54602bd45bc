"""Retention: the last N builds of each app and version and/or those younger than D days stay;
pinned builds, builds behind a store version and builds still processing never go; removing
deletes the objects; the sweep schedules one job per tenant and period, which a worker runs."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from appyard import errors
from appyard.core import builds, jobs, retention
from appyard.core.ids import new_id
from appyard.core.models import (
    Build,
    BuildStatus,
    ConfigVersion,
    JobState,
    Platform,
    Version,
    VersionStatus,
)
from appyard.runtime import Runtime
from appyard.worker import Worker
from tests.conftest import FakeClock, TenantKey


def finished_build(
    runtime: Runtime,
    tenant: TenantKey,
    *,
    version: ConfigVersion = ConfigVersion.PRODUCTION,
    identifier: str = "com.example.app",
    status: BuildStatus = BuildStatus.COMPLETED,
    size: int = 1000,
) -> Build:
    """A build whose input and output are in the store, finished ``status``."""
    svc = runtime.services
    with svc.transaction() as uow:
        build, job = builds.create(
            uow,
            svc.clock,
            tenant_id=tenant.tenant_id,
            platform=Platform.ANDROID,
            config_version=version,
            file_name="app.apk",
            source="test",
            job_kind=jobs.PROCESS_BUILD,
            waiting=False,
            identifier=identifier,
        )
    svc.store.write(build.source_key, [b"i" * size])
    output = builds.output_key(build)
    svc.store.write(output, [b"o" * size])
    with svc.transaction() as uow:
        job = uow.jobs.get(job.id) or job
        if status is BuildStatus.COMPLETED:
            jobs.succeed(uow, svc.clock, job=job, output_key=output, output_size=size, size=size)
        else:
            jobs.fail(uow, svc.clock, job=job, message="broken")
            uow.builds.save(
                replace(uow.builds.get(build.id) or build, size=size, output_key=output)
            )
    with svc.uow() as uow:
        made = uow.builds.get(build.id)
    assert made is not None
    return made


def set_rule(
    runtime: Runtime,
    tenant: TenantKey,
    *,
    keep_last: int | None = None,
    keep_days: int | None = None,
    app_id: str | None = None,
) -> None:
    svc = runtime.services
    with svc.transaction() as uow:
        retention.set_rule(
            uow,
            svc.clock,
            tenant_id=tenant.tenant_id,
            app_id=app_id,
            keep_last=keep_last,
            keep_days=keep_days,
        )


def planned(runtime: Runtime, tenant: TenantKey) -> retention.Plan:
    svc = runtime.services
    with svc.uow() as uow:
        return retention.plan(uow, svc.clock, tenant_id=tenant.tenant_id)


def test_a_tenant_without_rules_keeps_everything(runtime: Runtime, tenant: TenantKey) -> None:
    for _ in range(3):
        finished_build(runtime, tenant)

    assert planned(runtime, tenant).remove == []


def test_keep_last_keeps_the_newest_of_each_version_and_package(
    runtime: Runtime, tenant: TenantKey
) -> None:
    old = [finished_build(runtime, tenant) for _ in range(3)]
    newest = finished_build(runtime, tenant)
    staging = finished_build(runtime, tenant, version=ConfigVersion.STAGING)
    other = finished_build(runtime, tenant, identifier="com.example.other")
    set_rule(runtime, tenant, keep_last=1)

    plan = planned(runtime, tenant)

    assert {r.build.id for r in plan.remove} == {b.id for b in old}
    assert newest.id not in {r.build.id for r in plan.remove}
    assert {staging.id, other.id}.isdisjoint(r.build.id for r in plan.remove)
    assert plan.bytes == 3 * 2000  # input and output of each
    assert all(r.reason == "not among the last 1" for r in plan.remove)


def test_keep_days_and_keep_last_together_keep_what_either_keeps(
    runtime: Runtime, tenant: TenantKey, clock: FakeClock
) -> None:
    ancient = finished_build(runtime, tenant)
    older = finished_build(runtime, tenant)
    clock.advance(days=20)
    recent = finished_build(runtime, tenant)
    clock.advance(days=1)
    newest = finished_build(runtime, tenant)
    set_rule(runtime, tenant, keep_last=1, keep_days=7)

    plan = planned(runtime, tenant)

    assert {r.build.id for r in plan.remove} == {ancient.id, older.id}
    assert {recent.id, newest.id}.isdisjoint(r.build.id for r in plan.remove)
    assert plan.remove[0].reason == "not among the last 1 and older than 7 days"


def test_an_apps_rule_overrides_the_tenants(runtime: Runtime, tenant: TenantKey) -> None:
    svc = runtime.services
    from appyard.core import apps

    with svc.transaction() as uow:
        app = apps.named(uow, svc.clock, tenant_id=tenant.tenant_id, slug="shop", create=True)
    kept = []
    for _ in range(3):
        build = finished_build(runtime, tenant)
        with svc.transaction() as uow:
            uow.builds.save(replace(build, app_id=app.id))
        kept.append(build)
    loose = [finished_build(runtime, tenant, identifier="com.loose") for _ in range(3)]
    set_rule(runtime, tenant, keep_last=1)
    set_rule(runtime, tenant, keep_last=5, app_id=app.id)

    plan = planned(runtime, tenant)

    assert {r.build.id for r in plan.remove} == {b.id for b in loose[:2]}


def test_pinned_store_and_processing_builds_never_go(runtime: Runtime, tenant: TenantKey) -> None:
    svc = runtime.services
    pinned = finished_build(runtime, tenant)
    in_store = finished_build(runtime, tenant)
    failed = finished_build(runtime, tenant, status=BuildStatus.FAILED)
    with svc.transaction() as uow:
        processing, _ = builds.create(
            uow,
            svc.clock,
            tenant_id=tenant.tenant_id,
            platform=Platform.ANDROID,
            config_version=ConfigVersion.PRODUCTION,
            file_name="app.apk",
            source="test",
            job_kind=jobs.PROCESS_BUILD,
            identifier="com.example.app",
        )
        retention.pin(uow, svc.clock, build_id=pinned.id)
        from appyard.core import apps

        app = apps.named(uow, svc.clock, tenant_id=tenant.tenant_id, slug="s", create=True)
        now = svc.clock.now()
        uow.versions.add(
            Version(
                id=new_id("vr"),
                tenant_id=tenant.tenant_id,
                app_id=app.id,
                build_id=in_store.id,
                version_code=1,
                version_name="1.0",
                status=VersionStatus.IN_REVIEW,
                created_at=now,
                updated_at=now,
            )
        )
    newest = finished_build(runtime, tenant)
    set_rule(runtime, tenant, keep_last=1)

    plan = planned(runtime, tenant)

    assert [r.build.id for r in plan.remove] == [failed.id]
    assert {(b.id, why) for b, why in plan.protected} == {
        (pinned.id, "pinned"),
        (in_store.id, "backs a store version"),
    }
    assert processing.id not in {r.build.id for r in plan.remove}
    assert newest.id not in {r.build.id for r in plan.remove}


def test_apply_deletes_the_objects_and_keeps_the_history(
    runtime: Runtime, tenant: TenantKey
) -> None:
    svc = runtime.services
    old = finished_build(runtime, tenant)
    finished_build(runtime, tenant)
    set_rule(runtime, tenant, keep_last=1)

    done = retention.apply(svc, tenant_id=tenant.tenant_id)

    assert [r.build.id for r in done.remove] == [old.id]
    assert done.bytes == 2000
    with svc.uow() as uow:
        gone = uow.builds.get(old.id)
    assert gone is not None and gone.deleted and gone.output_key is None
    assert svc.store.stat(old.source_key) is None
    assert svc.store.stat(builds.output_key(old)) is None
    assert planned(runtime, tenant).remove == []


def test_a_rule_needs_a_part_within_bounds(runtime: Runtime, tenant: TenantKey) -> None:
    with pytest.raises(retention.InvalidRule):
        set_rule(runtime, tenant)
    with pytest.raises(retention.InvalidRule):
        set_rule(runtime, tenant, keep_last=0)
    with pytest.raises(errors.NotFound):
        with runtime.services.transaction() as uow:
            retention.pin(uow, runtime.services.clock, build_id="bd_missing")


def test_the_sweep_schedules_one_job_per_tenant_and_period_and_a_worker_applies_it(
    runtime: Runtime, tenant: TenantKey, clock: FakeClock
) -> None:
    svc = runtime.services
    old = finished_build(runtime, tenant)
    finished_build(runtime, tenant)
    set_rule(runtime, tenant, keep_last=1)
    hour = timedelta(hours=1)

    with svc.transaction() as uow:
        first = retention.schedule(uow, svc.clock, every=hour)
    with svc.transaction() as uow:
        again = retention.schedule(uow, svc.clock, every=hour)
    assert (first, again) == (1, 0)

    worker = Worker(svc)
    while worker.run_once("test"):
        pass

    with svc.uow() as uow:
        ran = uow.jobs.recent(kind=jobs.APPLY_RETENTION)
        gone = uow.builds.get(old.id)
    assert [j.state for j in ran] == [JobState.SUCCEEDED]
    assert gone is not None and gone.deleted
    clock.advance(hours=1)
    with svc.transaction() as uow:
        assert retention.schedule(uow, svc.clock, every=hour) == 1
