"""Tenants and their plans and limits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from appyard import errors
from appyard.core.ids import new_id
from appyard.core.models import (
    Actor,
    ConfigVersion,
    LimitOverrides,
    Limits,
    Plan,
    Platform,
    Tenant,
    TokenKind,
)
from appyard.core.ports import Clock, UnitOfWork

PLAN_LIMITS: dict[Plan, Limits] = {
    Plan.FREE: Limits(
        concurrent_builds=1, weekly_builds=5, automation_keys=0, automation_allowed=False
    ),
    Plan.TEAM: Limits(
        concurrent_builds=2, weekly_builds=10, automation_keys=10, automation_allowed=True
    ),
    Plan.ENTERPRISE: Limits(
        concurrent_builds=5, weekly_builds=None, automation_keys=10, automation_allowed=True
    ),
}

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def create(uow: UnitOfWork, clock: Clock, *, name: str, plan: Plan) -> Tenant:
    if not _NAME.match(name):
        raise errors.InvalidField(
            "A tenant name is 1-63 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit.",
            field="name",
        )
    if uow.tenants.get_by_name(name) is not None:
        raise errors.TenantExists(f"A tenant named {name!r} already exists.")
    tenant = Tenant(id=new_id("tn"), name=name, plan=plan, created_at=clock.now())
    uow.tenants.add(tenant)
    return tenant


def get(uow: UnitOfWork, *, tenant_id: str) -> Tenant:
    tenant = uow.tenants.get(tenant_id)
    if tenant is None:
        raise errors.TenantNotFound()
    return tenant


def by_name(uow: UnitOfWork, *, name: str) -> Tenant:
    tenant = uow.tenants.get_by_name(name)
    if tenant is None:
        raise errors.TenantNotFound(f"No tenant named {name!r}.")
    return tenant


def limits(tenant: Tenant) -> Limits:
    """The plan's limits with the tenant's overrides applied (0 weekly means unlimited)."""
    base = PLAN_LIMITS[tenant.plan]
    o = tenant.overrides
    weekly = base.weekly_builds if o.weekly_builds is None else (o.weekly_builds or None)
    concurrent = (
        base.concurrent_builds if o.concurrent_builds is None else (o.concurrent_builds or None)
    )
    keys = base.automation_keys if o.automation_keys is None else o.automation_keys
    return Limits(
        concurrent_builds=concurrent,
        weekly_builds=weekly,
        automation_keys=keys,
        automation_allowed=base.automation_allowed,
    )


def set_plan(uow: UnitOfWork, *, tenant_id: str, plan: Plan) -> Tenant:
    get(uow, tenant_id=tenant_id)
    uow.tenants.set_plan(tenant_id, plan)
    return get(uow, tenant_id=tenant_id)


def set_limits(uow: UnitOfWork, *, tenant_id: str, overrides: LimitOverrides) -> Tenant:
    for name, value in vars(overrides).items():
        if value is not None and value < 0:
            raise errors.InvalidField(f"{name} must be 0 or more.", field=name)
    get(uow, tenant_id=tenant_id)
    uow.tenants.set_overrides(tenant_id, overrides)
    return get(uow, tenant_id=tenant_id)


@dataclass(frozen=True)
class Usage:
    """A tenant's plan, its limits, and what it used of them this week."""

    tenant: Tenant
    limits: Limits
    processing: int  # builds in progress now (the concurrent limit)
    weekly: dict[tuple[Platform, ConfigVersion], int]  # builds in the last 7 days
    automation_keys: int  # active automation keys


def usage(uow: UnitOfWork, clock: Clock, actor: Actor) -> Usage:
    """The actor's tenant's plan limits and its use of them over the last 7 days."""
    tenant = get(uow, tenant_id=actor.tenant)
    since = clock.now() - timedelta(days=7)
    return Usage(
        tenant=tenant,
        limits=limits(tenant),
        processing=uow.builds.count_processing(tenant.id),
        weekly={
            (p, v): uow.builds.count_since(tenant.id, p, v, since)
            for p in (Platform.ANDROID, Platform.IOS)
            for v in ConfigVersion
        },
        automation_keys=sum(
            1 for t in uow.tokens.list(tenant.id, TokenKind.AUTOMATION) if not t.disabled
        ),
    )
