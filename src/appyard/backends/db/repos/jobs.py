"""Jobs (claimed with one statement; leases renewed) and the outbox of wake-ups and events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, and_, delete, func, insert, literal, or_, select, text, update

from appyard.backends.db import tables as t
from appyard.backends.db.rows import Repo, aware, to_obj, to_row
from appyard.core.models import Event, Job, JobState
from appyard.core.ports import Claimed, OutboxItem

# Advisory-lock key space of job claims (pg_try_advisory_xact_lock(int4, int4)).
_CLAIM_LOCK_SPACE = 0x61707079  # "appy"


class JobRepo(Repo):
    table = t.jobs

    def add(self, job: Job) -> None:
        self._insert(to_row(job))

    def get(self, job_id: str) -> Job | None:
        row = self._one(t.jobs.c.id == job_id)
        return to_obj(Job, row) if row else None

    def for_build(self, build_id: str) -> list[Job]:
        q = select(t.jobs).where(t.jobs.c.build_id == build_id).order_by(t.jobs.c.created_at)
        return [to_obj(Job, r) for r in self.conn.execute(q)]

    def save(self, job: Job) -> None:
        self.conn.execute(update(t.jobs).where(t.jobs.c.id == job.id).values(**to_row(job)))

    def _claimable(self, now: datetime) -> Any:
        return or_(
            t.jobs.c.state == JobState.QUEUED.value,
            and_(t.jobs.c.state == JobState.RUNNING.value, t.jobs.c.lease_until < now),
        )

    def claim_next(
        self,
        owner: str,
        now: datetime,
        until: datetime,
        *,
        skip_tenants: frozenset[str] = frozenset(),
    ) -> Claimed | None:
        due = or_(t.jobs.c.run_after.is_(None), t.jobs.c.run_after <= now)
        candidate = (
            select(t.jobs.c.id, t.jobs.c.state.label("was"))
            .where(self._claimable(now), t.jobs.c.attempts < t.jobs.c.max_attempts, due)
            .order_by(t.jobs.c.created_at)
            .limit(1)
        )
        if skip_tenants:
            candidate = candidate.where(t.jobs.c.tenant_id.not_in(sorted(skip_tenants)))
        claim = update(t.jobs).values(
            state=JobState.RUNNING.value,
            lease_owner=owner,
            lease_until=until,
            attempts=t.jobs.c.attempts + 1,
            updated_at=now,
        )
        if self.conn.dialect.name == "postgresql":
            # One statement: the candidate is locked (others skip it) and its state before
            # the claim comes back with the row (running: its lease had expired).
            picked = candidate.with_for_update(skip_locked=True).subquery("candidate")
            row = self.conn.execute(
                claim.where(t.jobs.c.id == picked.c.id).returning(*t.jobs.c, picked.c.was)
            ).first()
        else:
            # SQLite serializes writing transactions (BEGIN IMMEDIATE), so reading the
            # candidate first claims the same row; its RETURNING cannot name another table.
            found = self.conn.execute(candidate).first()
            if found is None:
                return None
            row = self.conn.execute(
                claim.where(t.jobs.c.id == found.id).returning(
                    *t.jobs.c, literal(found.was, String).label("was")
                )
            ).first()
        if row is None:
            return None
        return Claimed(to_obj(Job, row), lease_expired=row.was == JobState.RUNNING.value)

    def recent(
        self,
        *,
        tenant_id: str | None = None,
        states: tuple[JobState, ...] = (),
        kind: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        q = select(t.jobs)
        if tenant_id is not None:
            q = q.where(t.jobs.c.tenant_id == tenant_id)
        if states:
            q = q.where(t.jobs.c.state.in_([s.value for s in states]))
        if kind is not None:
            q = q.where(t.jobs.c.kind == kind)
        q = q.order_by(t.jobs.c.created_at.desc(), t.jobs.c.id).limit(limit)
        return [to_obj(Job, r) for r in self.conn.execute(q)]

    def counts(self) -> list[tuple[str, JobState, int]]:
        q = select(t.jobs.c.kind, t.jobs.c.state, func.count()).group_by(
            t.jobs.c.kind, t.jobs.c.state
        )
        return [(r[0], JobState(r[1]), int(r[2])) for r in self.conn.execute(q)]

    def count_due(self, now: datetime) -> int:
        q = select(func.count()).where(
            t.jobs.c.state == JobState.QUEUED.value,
            or_(t.jobs.c.run_after.is_(None), t.jobs.c.run_after <= now),
        )
        return int(self.conn.execute(q).scalar_one())

    def exhausted(self, now: datetime, limit: int) -> list[Job]:
        q = (
            select(t.jobs)
            .where(self._claimable(now), t.jobs.c.attempts >= t.jobs.c.max_attempts)
            .order_by(t.jobs.c.created_at)
            .limit(limit)
        )
        return [to_obj(Job, r) for r in self.conn.execute(q)]

    def renew(self, job_id: str, owner: str, until: datetime) -> bool:
        result = self.conn.execute(
            update(t.jobs)
            .where(
                t.jobs.c.id == job_id,
                t.jobs.c.lease_owner == owner,
                t.jobs.c.state == JobState.RUNNING.value,
            )
            .values(lease_until=until)
        )
        return result.rowcount == 1

    def count_running(self, tenant_id: str, now: datetime, *, but: str = "") -> int:
        q = select(func.count()).where(
            t.jobs.c.tenant_id == tenant_id,
            t.jobs.c.build_id.is_not(None),  # builds count against the limit; mail does not
            t.jobs.c.state == JobState.RUNNING.value,
            t.jobs.c.lease_until >= now,
            t.jobs.c.id != but,
        )
        return int(self.conn.execute(q).scalar_one())

    def lock_tenant(self, tenant_id: str) -> bool:
        # SQLite: BEGIN IMMEDIATE already serializes every writing transaction. PostgreSQL
        # (READ COMMITTED): a transaction-scoped advisory lock per tenant; the count that
        # follows sees every claim committed before it was taken. try_ never waits, so two
        # claimers walking tenants in different orders cannot deadlock.
        if self.conn.dialect.name != "postgresql":
            return True
        got = self.conn.execute(
            text("SELECT pg_try_advisory_xact_lock(:space, hashtext(:tenant))"),
            {"space": _CLAIM_LOCK_SPACE, "tenant": tenant_id},
        ).scalar_one()
        return bool(got)


class OutboxRepo(Repo):
    table = t.outbox

    def __init__(self, conn: Any) -> None:
        super().__init__(conn)
        self._written = False

    @property
    def written(self) -> bool:
        return self._written

    def add(
        self,
        *,
        kind: str,
        topic: str,
        tenant_id: str | None,
        subject_id: str,
        data: dict[str, Any],
        at: datetime,
    ) -> None:
        self.conn.execute(
            insert(t.outbox).values(
                kind=kind,
                topic=topic,
                tenant_id=tenant_id,
                subject_id=subject_id,
                data=data,
                created_at=at,
            )
        )
        self._written = True

    def claim(self, limit: int) -> list[OutboxItem]:
        q = (
            select(t.outbox)
            .where(t.outbox.c.dispatched_at.is_(None))
            .order_by(t.outbox.c.id)
            .limit(limit)
        )
        if self.conn.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        return [
            OutboxItem(
                id=r.id,
                kind=r.kind,
                topic=r.topic,
                tenant_id=r.tenant_id,
                subject_id=r.subject_id,
                data=r.data or {},
                created_at=aware(r.created_at) or r.created_at,
            )
            for r in self.conn.execute(q)
        ]

    def dispatched(self, ids: list[int], at: datetime) -> None:
        if ids:
            self.conn.execute(
                update(t.outbox).where(t.outbox.c.id.in_(ids)).values(dispatched_at=at)
            )

    def forget(self, ids: list[int]) -> None:
        if ids:
            self.conn.execute(delete(t.outbox).where(t.outbox.c.id.in_(ids)))

    def events(
        self,
        *,
        tenant_id: str | None,
        subject_id: str | None = None,
        event_id: int | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        q = select(t.outbox).where(t.outbox.c.kind == "event")
        if tenant_id is not None:
            q = q.where(t.outbox.c.tenant_id == tenant_id)
        if subject_id is not None:
            q = q.where(t.outbox.c.subject_id == subject_id)
        if event_id is not None:
            q = q.where(t.outbox.c.id == event_id)
        q = q.limit(limit)
        return [
            Event(
                id=r.id,
                topic=r.topic,
                tenant_id=r.tenant_id,
                subject_id=r.subject_id,
                at=aware(r.created_at) or r.created_at,
                data=r.data or {},
            )
            for r in self.conn.execute(q.order_by(t.outbox.c.id))
        ]

    def recent(
        self, *, tenant_id: str | None, limit: int, topic_prefix: str | None = None
    ) -> list[Event]:
        q = select(t.outbox).where(t.outbox.c.kind == "event")
        if tenant_id is not None:
            q = q.where(t.outbox.c.tenant_id == tenant_id)
        if topic_prefix is not None:
            q = q.where(t.outbox.c.topic.startswith(topic_prefix, autoescape=True))
        return [
            Event(
                id=r.id,
                topic=r.topic,
                tenant_id=r.tenant_id,
                subject_id=r.subject_id,
                at=aware(r.created_at) or r.created_at,
                data=r.data or {},
            )
            for r in self.conn.execute(q.order_by(t.outbox.c.id.desc()).limit(limit))
        ]
