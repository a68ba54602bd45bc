"""The store's release model: versions, validation runs, their history, issues."""

from __future__ import annotations

from sqlalchemy import insert, select, update

from appyard.backends.db import tables as t
from appyard.backends.db.rows import Repo, to_obj, to_row
from appyard.core.models import StoreIssue, ValidationRun, Version, VersionEvent


class VersionRepo(Repo):
    table = t.versions

    def add(self, version: Version) -> None:
        self._insert(to_row(version))

    def get(self, version_id: str) -> Version | None:
        row = self._one(t.versions.c.id == version_id)
        return to_obj(Version, row) if row else None

    def get_by_build(self, build_id: str) -> Version | None:
        row = self._one(t.versions.c.build_id == build_id)
        return to_obj(Version, row) if row else None

    def save(self, version: Version) -> None:
        self.conn.execute(
            update(t.versions).where(t.versions.c.id == version.id).values(**to_row(version))
        )

    def for_app(self, app_id: str) -> list[Version]:
        q = select(t.versions).where(t.versions.c.app_id == app_id)
        rows = self.conn.execute(q.order_by(t.versions.c.version_code))
        return [to_obj(Version, r) for r in rows]

    def listing(
        self, *, tenant_id: str | None, statuses: tuple[str, ...] | None, limit: int
    ) -> list[Version]:
        q = select(t.versions)
        if tenant_id is not None:
            q = q.where(t.versions.c.tenant_id == tenant_id)
        if statuses is not None:
            q = q.where(t.versions.c.status.in_(list(statuses)))
        q = q.order_by(t.versions.c.updated_at.desc(), t.versions.c.id).limit(limit)
        return [to_obj(Version, r) for r in self.conn.execute(q)]


class RunRepo(Repo):
    table = t.validation_runs

    def add(self, run: ValidationRun) -> None:
        self._insert(to_row(run))

    def get_by_build(self, build_id: str) -> ValidationRun | None:
        row = self._one(t.validation_runs.c.build_id == build_id)
        return to_obj(ValidationRun, row) if row else None

    def save(self, run: ValidationRun) -> None:
        self.conn.execute(
            update(t.validation_runs).where(t.validation_runs.c.id == run.id).values(**to_row(run))
        )

    def for_version(self, version_id: str) -> list[ValidationRun]:
        q = (
            select(t.validation_runs)
            .where(t.validation_runs.c.version_id == version_id)
            .order_by(t.validation_runs.c.created_at)
        )
        return [to_obj(ValidationRun, r) for r in self.conn.execute(q)]


class EventRepo(Repo):
    table = t.version_events

    def add(self, event: VersionEvent) -> None:
        self.conn.execute(insert(t.version_events).values(**to_row(event)))

    def for_version(self, version_id: str) -> list[VersionEvent]:
        q = (
            select(t.version_events)
            .where(t.version_events.c.version_id == version_id)
            .order_by(t.version_events.c.id)
        )
        return [to_obj(VersionEvent, r) for r in self.conn.execute(q)]


class IssueRepo(Repo):
    table = t.store_issues

    def add(self, issue: StoreIssue) -> None:
        self._insert(to_row(issue))

    def get(self, issue_id: str) -> StoreIssue | None:
        row = self._one(t.store_issues.c.id == issue_id)
        return to_obj(StoreIssue, row) if row else None

    def save(self, issue: StoreIssue) -> None:
        self.conn.execute(
            update(t.store_issues).where(t.store_issues.c.id == issue.id).values(**to_row(issue))
        )

    def for_version(self, version_id: str) -> list[StoreIssue]:
        q = (
            select(t.store_issues)
            .where(t.store_issues.c.version_id == version_id)
            .order_by(t.store_issues.c.created_at)
        )
        return [to_obj(StoreIssue, r) for r in self.conn.execute(q)]
