"""Apps, builds, their uploads and findings, and the per-tenant control settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update

from appyard.backends.db import tables as t
from appyard.backends.db.rows import Repo, to_obj, to_row
from appyard.core.models import (
    App,
    Build,
    BuildStatus,
    ConfigVersion,
    ControlSetting,
    Finding,
    Platform,
    RetentionRule,
    Severity,
    Upload,
    UploadPurpose,
    UploadState,
)


class AppRepo(Repo):
    table = t.apps

    def add(self, app: App) -> None:
        self._insert(to_row(app))

    def get(self, app_id: str) -> App | None:
        row = self._one(t.apps.c.id == app_id)
        return to_obj(App, row) if row else None

    def get_by_slug(self, tenant_id: str, slug: str) -> App | None:
        row = self._one(t.apps.c.tenant_id == tenant_id, t.apps.c.slug == slug)
        return to_obj(App, row) if row else None

    def find(self, tenant_id: str, platform: Platform, identifier: str) -> App | None:
        row = self._one(
            t.apps.c.tenant_id == tenant_id,
            t.apps.c.platform == platform.value,
            t.apps.c.identifier == identifier,
        )
        return to_obj(App, row) if row else None

    def save(self, app: App) -> None:
        self.conn.execute(update(t.apps).where(t.apps.c.id == app.id).values(**to_row(app)))

    def list(self, tenant_id: str) -> list[App]:
        q = select(t.apps).where(t.apps.c.tenant_id == tenant_id)
        return [to_obj(App, r) for r in self.conn.execute(q.order_by(t.apps.c.created_at))]

    def delete(self, app_id: str) -> None:
        self.conn.execute(delete(t.apps).where(t.apps.c.id == app_id))


class BuildRepo(Repo):
    table = t.builds

    def add(self, build: Build) -> None:
        self._insert(to_row(build))

    def get(self, build_id: str) -> Build | None:
        row = self._one(t.builds.c.id == build_id)
        return to_obj(Build, row) if row else None

    def get_by_number(self, tenant_id: str, number: int) -> Build | None:
        row = self._one_by(tenant_id=tenant_id, number=number)
        return to_obj(Build, row) if row else None

    def last_number(self, tenant_id: str) -> int | None:
        q = select(func.max(t.builds.c.number)).where(t.builds.c.tenant_id == tenant_id)
        value = self.conn.execute(q).scalar_one()
        return int(value) if value is not None else None

    def save(self, build: Build) -> None:
        self.conn.execute(update(t.builds).where(t.builds.c.id == build.id).values(**to_row(build)))

    def count_processing(self, tenant_id: str) -> int:
        q = select(func.count()).where(
            t.builds.c.tenant_id == tenant_id, t.builds.c.status == BuildStatus.PROCESSING.value
        )
        return int(self.conn.execute(q).scalar_one())

    def count_since(
        self, tenant_id: str, platform: Platform, version: ConfigVersion, since: datetime
    ) -> int:
        never_arrived = select(t.uploads.c.subject_id).where(
            t.uploads.c.purpose == UploadPurpose.BUILD.value,
            t.uploads.c.state.in_(
                [UploadState.ABORTED.value, UploadState.EXPIRED.value, UploadState.REFUSED.value]
            ),
        )
        q = select(func.count()).where(
            t.builds.c.tenant_id == tenant_id,
            t.builds.c.platform == platform.value,
            t.builds.c.config_version == version.value,
            t.builds.c.created_at >= since,
            t.builds.c.id.not_in(never_arrived),
        )
        return int(self.conn.execute(q).scalar_one())

    def list_for_version(
        self, tenant_id: str, version: ConfigVersion, offset: int, limit: int
    ) -> list[Build]:
        q = (
            select(t.builds)
            .where(t.builds.c.tenant_id == tenant_id, t.builds.c.config_version == version.value)
            .order_by(t.builds.c.number.desc())
            .offset(offset)
            .limit(limit)
        )
        return [to_obj(Build, r) for r in self.conn.execute(q)]

    def count_for_version(self, tenant_id: str, version: ConfigVersion) -> int:
        q = select(func.count()).where(
            t.builds.c.tenant_id == tenant_id, t.builds.c.config_version == version.value
        )
        return int(self.conn.execute(q).scalar_one())

    def list_processing(self, tenant_id: str, version: ConfigVersion) -> list[Build]:
        q = select(t.builds).where(
            t.builds.c.tenant_id == tenant_id,
            t.builds.c.config_version == version.value,
            t.builds.c.status == BuildStatus.PROCESSING.value,
        )
        return [to_obj(Build, r) for r in self.conn.execute(q.order_by(t.builds.c.number))]

    def stalled(self, before: datetime, limit: int) -> list[Build]:
        q = (
            select(t.builds)
            .where(
                t.builds.c.status == BuildStatus.PROCESSING.value,
                t.builds.c.updated_at < before,
            )
            .order_by(t.builds.c.updated_at)
            .limit(limit)
        )
        return [to_obj(Build, r) for r in self.conn.execute(q)]

    def latest_for_app(self, app_id: str) -> Build | None:
        q = (
            select(t.builds)
            .where(t.builds.c.app_id == app_id)
            .order_by(t.builds.c.number.desc())
            .limit(1)
        )
        row = self.conn.execute(q).first()
        return to_obj(Build, row) if row else None

    def list_for_app(self, app_id: str, offset: int, limit: int) -> list[Build]:
        q = (
            select(t.builds)
            .where(t.builds.c.app_id == app_id)
            .order_by(t.builds.c.number.desc())
            .offset(offset)
            .limit(limit)
        )
        return [to_obj(Build, r) for r in self.conn.execute(q)]

    def count_for_app(self, app_id: str) -> int:
        q = select(func.count()).where(t.builds.c.app_id == app_id)
        return int(self.conn.execute(q).scalar_one())

    def recent(self, tenant_id: str, limit: int) -> list[Build]:
        q = (
            select(t.builds)
            .where(t.builds.c.tenant_id == tenant_id)
            .order_by(t.builds.c.number.desc())
            .limit(limit)
        )
        return [to_obj(Build, r) for r in self.conn.execute(q)]

    def with_number(self, number: int) -> list[Build]:
        q = select(t.builds).where(t.builds.c.number == number).order_by(t.builds.c.tenant_id)
        return [to_obj(Build, r) for r in self.conn.execute(q)]

    def kept(self, tenant_id: str) -> list[Build]:
        q = (
            select(t.builds)
            .where(t.builds.c.tenant_id == tenant_id, t.builds.c.deleted.is_(False))
            .order_by(t.builds.c.number.desc())
        )
        return [to_obj(Build, r) for r in self.conn.execute(q)]

    def detach_app(self, app_id: str) -> None:
        self.conn.execute(update(t.builds).where(t.builds.c.app_id == app_id).values(app_id=None))


class UploadRepo(Repo):
    table = t.uploads

    def add(self, upload: Upload) -> None:
        self._insert(to_row(upload))

    def get(self, upload_id: str) -> Upload | None:
        row = self._one(t.uploads.c.id == upload_id)
        return to_obj(Upload, row) if row else None

    def get_by_key(self, key: str) -> Upload | None:
        row = self._one(t.uploads.c.key == key)
        return to_obj(Upload, row) if row else None

    def get_for_subject(self, subject_id: str) -> Upload | None:
        q = (
            select(t.uploads)
            .where(t.uploads.c.subject_id == subject_id)
            .order_by(t.uploads.c.created_at.desc())
            .limit(1)
        )
        row = self.conn.execute(q).first()
        return to_obj(Upload, row) if row else None

    def save(self, upload: Upload) -> None:
        self.conn.execute(
            update(t.uploads).where(t.uploads.c.id == upload.id).values(**to_row(upload))
        )

    def leave_pending(
        self,
        upload_id: str,
        state: UploadState,
        *,
        size: int | None = None,
        sha256: str | None = None,
        reason: str | None = None,
    ) -> bool:
        values: dict[str, Any] = {"state": state.value}
        for name, value in (("size", size), ("sha256", sha256), ("reason", reason)):
            if value is not None:
                values[name] = value
        result = self.conn.execute(
            update(t.uploads)
            .where(t.uploads.c.id == upload_id, t.uploads.c.state == UploadState.PENDING.value)
            .values(**values)
        )
        return result.rowcount == 1

    def list_pending(
        self, *, expiring_before: datetime | None = None, limit: int = 100
    ) -> list[Upload]:
        q = select(t.uploads).where(t.uploads.c.state == UploadState.PENDING.value)
        if expiring_before is not None:
            q = q.where(t.uploads.c.expires_at < expiring_before)
        q = q.order_by(t.uploads.c.expires_at).limit(limit)
        return [to_obj(Upload, r) for r in self.conn.execute(q)]

    def recent(
        self,
        *,
        tenant_id: str | None = None,
        states: tuple[UploadState, ...] = (),
        limit: int = 100,
    ) -> list[Upload]:
        q = select(t.uploads)
        if tenant_id is not None:
            q = q.where(t.uploads.c.tenant_id == tenant_id)
        if states:
            q = q.where(t.uploads.c.state.in_([s.value for s in states]))
        q = q.order_by(t.uploads.c.created_at.desc(), t.uploads.c.id).limit(limit)
        return [to_obj(Upload, r) for r in self.conn.execute(q)]


class FindingRepo(Repo):
    table = t.findings

    def replace(self, build_id: str, findings: list[Finding]) -> None:
        self.conn.execute(delete(t.findings).where(t.findings.c.build_id == build_id))
        for f in findings:
            self.conn.execute(insert(t.findings).values(build_id=build_id, **to_row(f)))

    def list(self, build_id: str) -> list[Finding]:
        q = select(t.findings).where(t.findings.c.build_id == build_id).order_by(t.findings.c.id)
        return [
            Finding(
                code=r.code,
                severity=Severity(r.severity),
                message=r.message,
                details=r.details or {},
            )
            for r in self.conn.execute(q)
        ]


class ControlRepo(Repo):
    table = t.control_settings

    def list(
        self, tenant_id: str, platform: Platform, version: ConfigVersion
    ) -> list[ControlSetting]:
        c = t.control_settings.c
        q = select(c.control_id, c.enabled).where(
            c.tenant_id == tenant_id,
            c.platform == platform.value,
            c.config_version == version.value,
        )
        return [
            ControlSetting(control_id=r.control_id, enabled=r.enabled) for r in self.conn.execute(q)
        ]

    def set(
        self,
        tenant_id: str,
        platform: Platform,
        version: ConfigVersion,
        control_id: str,
        enabled: bool,
    ) -> None:
        c = t.control_settings.c
        key = and_(
            c.tenant_id == tenant_id,
            c.platform == platform.value,
            c.config_version == version.value,
            c.control_id == control_id,
        )
        result = self.conn.execute(update(t.control_settings).where(key).values(enabled=enabled))
        if result.rowcount == 0:
            self.conn.execute(
                insert(t.control_settings).values(
                    tenant_id=tenant_id,
                    platform=platform.value,
                    config_version=version.value,
                    control_id=control_id,
                    enabled=enabled,
                )
            )


class RetentionRepo(Repo):
    table = t.retention_rules

    def _key(self, tenant_id: str, app_id: str | None) -> Any:
        c = t.retention_rules.c
        return and_(
            c.tenant_id == tenant_id, c.app_id.is_(None) if app_id is None else c.app_id == app_id
        )

    def put(self, rule: RetentionRule) -> None:
        values = to_row(rule)
        found = self.conn.execute(
            update(t.retention_rules).where(self._key(rule.tenant_id, rule.app_id)).values(**values)
        )
        if found.rowcount == 0:
            self._insert(values)

    def remove(self, tenant_id: str, app_id: str | None) -> bool:
        gone = self.conn.execute(delete(t.retention_rules).where(self._key(tenant_id, app_id)))
        return gone.rowcount > 0

    def of_tenant(self, tenant_id: str) -> list[RetentionRule]:
        c = t.retention_rules.c
        q = select(t.retention_rules).where(c.tenant_id == tenant_id).order_by(c.id)
        return [to_obj(RetentionRule, r) for r in self.conn.execute(q)]

    def tenants(self) -> list[str]:
        q = select(t.retention_rules.c.tenant_id).distinct().order_by(t.retention_rules.c.tenant_id)
        return [r[0] for r in self.conn.execute(q)]
