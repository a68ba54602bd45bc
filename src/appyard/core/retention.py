"""Retention: which builds a tenant lets go, so that a server runs for months.

A rule (per tenant, and per app to override it) keeps the last ``keep_last`` finished builds of
each app and configuration version and/or the builds younger than ``keep_days`` days; a build
goes only when no part of the rule keeps it. Builds of a tenant without a rule are all kept.
Whatever the rule says, these are never removed:

* a **pinned** build (``appyard admin pin``): an operator keeps it;
* a build that backs a **store version** (live, in review, approved, or any other state: the
  version's record needs its artifact; ``core.builds.delete`` refuses it too);
* a build still **processing** (it is not counted either).

Pinned and store builds still count among the last N. Removing goes through
``core.builds.delete``, so the input, output and icon objects go and the build stays in
history, marked deleted (install links die with the build's objects).

:func:`plan` says what would go and how many bytes it frees (``appyard admin retention
--dry-run``); :func:`apply` removes it; :func:`schedule` makes one ``retention.apply`` job per
tenant with rules and period (workers call it from their sweep; the job's id is chosen so
that many workers make it once).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from appyard import errors
from appyard.core import builds, jobs
from appyard.core.context import Services
from appyard.core.models import Actor, Build, BuildStatus, RetentionRule
from appyard.core.ports import Clock, UnitOfWork

log = logging.getLogger("appyard.retention")

MAX_KEEP = 1_000_000


class InvalidRule(errors.BadRequest):
    """A retention rule keeps the last N builds and/or those younger than D days."""

    code = "retention.invalid_rule"


@dataclass(frozen=True)
class Removal:
    build: Build
    reason: str  # why the rule lets it go, in words

    @property
    def bytes(self) -> int:
        return freed_bytes(self.build)


@dataclass(frozen=True)
class Plan:
    tenant_id: str
    remove: list[Removal] = field(default_factory=list)
    protected: list[tuple[Build, str]] = field(default_factory=list)  # would go, but may not

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.remove)


def freed_bytes(build: Build) -> int:
    """What removing the build frees in the store: its input, and its output when it is
    another object."""
    total = build.size or 0
    if build.output_key and build.output_key != build.source_key:
        total += build.output_size or 0
    return total


# --- rules --------------------------------------------------------------------------------------


def set_rule(
    uow: UnitOfWork,
    clock: Clock,
    *,
    tenant_id: str,
    app_id: str | None,
    keep_last: int | None,
    keep_days: int | None,
) -> RetentionRule:
    if keep_last is None and keep_days is None:
        raise InvalidRule("Give --keep-last and/or --keep-days (or --clear to keep everything).")
    for name, value in (("keep_last", keep_last), ("keep_days", keep_days)):
        if value is not None and not 1 <= value <= MAX_KEEP:
            raise InvalidRule(f"{name} must be between 1 and {MAX_KEEP}.")
    rule = RetentionRule(
        tenant_id=tenant_id,
        app_id=app_id,
        keep_last=keep_last,
        keep_days=keep_days,
        updated_at=clock.now(),
    )
    uow.retention.put(rule)
    return rule


def clear_rule(uow: UnitOfWork, *, tenant_id: str, app_id: str | None) -> bool:
    return uow.retention.remove(tenant_id, app_id)


def rules(uow: UnitOfWork, *, tenant_id: str) -> list[RetentionRule]:
    return uow.retention.of_tenant(tenant_id)


def pin(uow: UnitOfWork, clock: Clock, *, build_id: str, pinned: bool = True) -> Build:
    """Keep a build whatever the retention rules say (``pinned=False``: let them decide)."""
    build = uow.builds.get(build_id)
    if build is None:
        raise builds.BuildNotFound(f"Build {build_id} not found.")
    updated = replace(build, pinned=pinned, updated_at=clock.now())
    uow.builds.save(updated)
    return updated


# --- what goes ----------------------------------------------------------------------------------


def _group(build: Build) -> tuple[str, str]:
    """Builds are ranked among those of the same app and configuration version (a build of
    no app: of the same platform and package)."""
    owner = build.app_id or f"{build.platform.value}:{build.identifier or build.file_name}"
    return owner, build.config_version.value


def _verdict(rule: RetentionRule, rank: int, build: Build, now: datetime) -> str | None:
    """None when the rule keeps the build, else why it goes."""
    if rule.keep_last is not None and rank < rule.keep_last:
        return None
    if rule.keep_days is not None and build.created_at > now - timedelta(days=rule.keep_days):
        return None
    parts = []
    if rule.keep_last is not None:
        parts.append(f"not among the last {rule.keep_last}")
    if rule.keep_days is not None:
        parts.append(f"older than {rule.keep_days} days")
    return " and ".join(parts)


def plan(uow: UnitOfWork, clock: Clock, *, tenant_id: str) -> Plan:
    """What the tenant's rules let go now (nothing when it has none)."""
    by_app = {r.app_id: r for r in uow.retention.of_tenant(tenant_id)}
    result = Plan(tenant_id=tenant_id)
    if not by_app:
        return result
    now = clock.now()
    ranks: dict[tuple[str, str], int] = {}
    for build in uow.builds.kept(tenant_id):  # newest first
        if build.status is BuildStatus.PROCESSING:
            continue
        group = _group(build)
        rank = ranks.get(group, 0)
        ranks[group] = rank + 1
        rule = by_app.get(build.app_id) if build.app_id in by_app else by_app.get(None)
        if rule is None:
            continue
        reason = _verdict(rule, rank, build, now)
        if reason is None:
            continue
        if build.pinned:
            result.protected.append((build, "pinned"))
        elif uow.versions.get_by_build(build.id) is not None:
            result.protected.append((build, "backs a store version"))
        else:
            result.remove.append(Removal(build, reason))
    return result


def apply(svc: Services, *, tenant_id: str) -> Plan:
    """Remove what :func:`plan` lets go, one build per transaction (a build that changed
    meanwhile is looked at again, and skipped if it may not go). Returns what went."""
    with svc.uow() as uow:
        wanted = plan(uow, svc.clock, tenant_id=tenant_id)
    actor = Actor(id="retention", tenant_id=tenant_id)
    done = Plan(tenant_id=tenant_id, protected=wanted.protected)
    for removal in wanted.remove:
        with svc.transaction() as uow:
            current = uow.builds.get(removal.build.id)
            if (
                current is None
                or current.deleted
                or current.pinned
                or current.status is BuildStatus.PROCESSING
                or uow.versions.get_by_build(current.id) is not None
            ):
                continue
            builds.delete(svc, uow, actor, build_id=current.id)
        done.remove.append(Removal(current, removal.reason))
        log.info(
            "retention.removed build_id=%s tenant_id=%s bytes=%d",
            current.id,
            tenant_id,
            freed_bytes(current),
        )
    return done


def schedule(uow: UnitOfWork, clock: Clock, *, every: timedelta) -> int:
    """One ``retention.apply`` job per tenant with rules in each period of ``every``; the
    job's id names the tenant and the period, so sweeps on many machines make it once.
    Returns how many jobs were made."""
    period = int(clock.now().timestamp() // max(every.total_seconds(), 1))
    made = 0
    for tenant_id in uow.retention.tenants():
        digest = hashlib.sha256(f"{tenant_id}:{period}".encode()).hexdigest()[:24]
        job_id = f"jb_rt_{digest}"
        if uow.jobs.get(job_id) is not None:
            continue
        try:
            jobs.create(
                uow,
                clock,
                tenant_id=tenant_id,
                kind=jobs.APPLY_RETENTION,
                payload={"period": period},
                job_id=job_id,
            )
        except errors.Conflict:  # another machine's sweep made it just now
            continue
        made += 1
    return made
