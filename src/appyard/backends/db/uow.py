"""SQLAlchemy implementation of core.ports.UnitOfWork, for SQLite and PostgreSQL.

One connection and one transaction per unit of work. SQLite runs in WAL mode with a busy
timeout and ``BEGIN IMMEDIATE`` transactions, so concurrent writers queue instead of failing.
Database errors are translated at this edge (unique violation -> core Conflict).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from appyard import errors
from appyard.backends.db import tables as t
from appyard.core import ports
from appyard.core.models import (
    App,
    Build,
    BuildStatus,
    ConfigVersion,
    ControlSetting,
    Finding,
    Job,
    JobState,
    LimitOverrides,
    Plan,
    Platform,
    Severity,
    SigningKey,
    StoreIssue,
    Tenant,
    Token,
    TokenKind,
    Upload,
    UploadState,
    User,
    ValidationRun,
    Version,
    VersionEvent,
)

T = TypeVar("T")
# Advisory-lock key space of job claims (pg_try_advisory_xact_lock(int4, int4)).
_CLAIM_LOCK_SPACE = 0x61707079  # "appy"


def make_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_setup(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


# --- row <-> dataclass --------------------------------------------------------------------------


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _row(obj: Any, **override: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    out.update(override)
    return out


_HINTS: dict[type, dict[str, Any]] = {}


def _obj(cls: type[T], row: Any, **extra: Any) -> T:
    """Build a core dataclass from a row, converting enums and datetimes by field type."""
    hints = _HINTS.setdefault(cls, typing.get_type_hints(cls))
    mapping = dict(row._mapping)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in extra:
            kwargs[f.name] = extra[f.name]
            continue
        if f.name not in mapping:
            continue
        value = mapping[f.name]
        hint = hints[f.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        target = next((a for a in args if a is not type(None)), hint)
        if value is None:
            kwargs[f.name] = None
        elif isinstance(target, type) and issubclass(target, enum.Enum):
            kwargs[f.name] = target(value)
        elif target is datetime:
            kwargs[f.name] = _aware(value)
        elif typing.get_origin(target) is tuple:
            kwargs[f.name] = tuple(value)
        else:
            kwargs[f.name] = value
    return cls(**kwargs)


class _Repo:
    table: Table

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _insert(self, values: dict[str, Any]) -> None:
        try:
            with self.conn.begin_nested():
                self.conn.execute(insert(self.table).values(**values))
        except IntegrityError as exc:
            raise errors.Conflict(f"{self.table.name} already exists.") from exc

    def _one(self, *where: Any) -> Any:
        return self.conn.execute(select(self.table).where(*where)).first()


class TenantRepo(_Repo):
    table = t.tenants

    def _tenant(self, row: Any) -> Tenant:
        m = row._mapping
        overrides = LimitOverrides(
            concurrent_builds=m["concurrent_builds"],
            weekly_builds=m["weekly_builds"],
            automation_keys=m["automation_keys"],
        )
        return _obj(Tenant, row, overrides=overrides)

    def add(self, tenant: Tenant) -> None:
        values = _row(tenant)
        values.pop("overrides")
        values.update(dataclasses.asdict(tenant.overrides))
        self._insert(values)

    def get(self, tenant_id: str) -> Tenant | None:
        row = self._one(t.tenants.c.id == tenant_id)
        return self._tenant(row) if row else None

    def get_by_name(self, name: str) -> Tenant | None:
        row = self._one(t.tenants.c.name == name)
        return self._tenant(row) if row else None

    def list(self) -> list[Tenant]:
        rows = self.conn.execute(select(t.tenants).order_by(t.tenants.c.created_at))
        return [self._tenant(r) for r in rows]

    def set_plan(self, tenant_id: str, plan: Plan) -> None:
        self.conn.execute(
            update(t.tenants).where(t.tenants.c.id == tenant_id).values(plan=plan.value)
        )

    def set_overrides(self, tenant_id: str, overrides: LimitOverrides) -> None:
        values = {k: v for k, v in dataclasses.asdict(overrides).items() if v is not None}
        if values:
            self.conn.execute(update(t.tenants).where(t.tenants.c.id == tenant_id).values(**values))


class TokenRepo(_Repo):
    table = t.tokens

    def add(self, token: Token) -> None:
        self._insert(_row(token))

    def get(self, token_id: str) -> Token | None:
        row = self._one(t.tokens.c.id == token_id)
        return _obj(Token, row) if row else None

    def list(self, tenant_id: str, kind: TokenKind | None = None) -> list[Token]:
        q = select(t.tokens).where(t.tokens.c.tenant_id == tenant_id)
        if kind is not None:
            q = q.where(t.tokens.c.kind == kind.value)
        return [_obj(Token, r) for r in self.conn.execute(q.order_by(t.tokens.c.created_at))]

    def set_disabled(self, token_id: str, disabled: bool) -> None:
        self.conn.execute(
            update(t.tokens).where(t.tokens.c.id == token_id).values(disabled=disabled)
        )

    def touch(self, token_id: str, at: datetime) -> None:
        self.conn.execute(update(t.tokens).where(t.tokens.c.id == token_id).values(last_used_at=at))

    def set_scopes(self, token_id: str, scopes: tuple[str, ...]) -> None:
        self.conn.execute(
            update(t.tokens).where(t.tokens.c.id == token_id).values(scopes=list(scopes))
        )


class AppRepo(_Repo):
    table = t.apps

    def add(self, app: App) -> None:
        self._insert(_row(app))

    def get(self, app_id: str) -> App | None:
        row = self._one(t.apps.c.id == app_id)
        return _obj(App, row) if row else None

    def find(self, tenant_id: str, platform: Platform, identifier: str) -> App | None:
        row = self._one(
            t.apps.c.tenant_id == tenant_id,
            t.apps.c.platform == platform.value,
            t.apps.c.identifier == identifier,
        )
        return _obj(App, row) if row else None

    def list(self, tenant_id: str) -> list[App]:
        q = select(t.apps).where(t.apps.c.tenant_id == tenant_id)
        return [_obj(App, r) for r in self.conn.execute(q.order_by(t.apps.c.created_at))]

    def delete(self, app_id: str) -> None:
        self.conn.execute(delete(t.apps).where(t.apps.c.id == app_id))


class BuildRepo(_Repo):
    table = t.builds

    def add(self, build: Build) -> None:
        self._insert(_row(build))

    def get(self, build_id: str) -> Build | None:
        row = self._one(t.builds.c.id == build_id)
        return _obj(Build, row) if row else None

    def get_by_start(self, tenant_id: str, start_time: int) -> Build | None:
        row = self._one(t.builds.c.tenant_id == tenant_id, t.builds.c.start_time == start_time)
        return _obj(Build, row) if row else None

    def last_start(self, tenant_id: str) -> int | None:
        q = select(func.max(t.builds.c.start_time)).where(t.builds.c.tenant_id == tenant_id)
        value = self.conn.execute(q).scalar_one()
        return int(value) if value is not None else None

    def save(self, build: Build) -> None:
        self.conn.execute(update(t.builds).where(t.builds.c.id == build.id).values(**_row(build)))

    def count_processing(self, tenant_id: str) -> int:
        q = select(func.count()).where(
            t.builds.c.tenant_id == tenant_id, t.builds.c.status == BuildStatus.PROCESSING.value
        )
        return int(self.conn.execute(q).scalar_one())

    def count_since(
        self, tenant_id: str, platform: Platform, version: ConfigVersion, since: datetime
    ) -> int:
        aborted = select(t.uploads.c.build_id).where(
            t.uploads.c.state.in_([UploadState.ABORTED.value, UploadState.EXPIRED.value])
        )
        q = select(func.count()).where(
            t.builds.c.tenant_id == tenant_id,
            t.builds.c.platform == platform.value,
            t.builds.c.config_version == version.value,
            t.builds.c.created_at >= since,
            t.builds.c.id.not_in(aborted),
        )
        return int(self.conn.execute(q).scalar_one())

    def list_for_version(
        self, tenant_id: str, version: ConfigVersion, offset: int, limit: int
    ) -> list[Build]:
        q = (
            select(t.builds)
            .where(t.builds.c.tenant_id == tenant_id, t.builds.c.config_version == version.value)
            .order_by(t.builds.c.start_time.desc())
            .offset(offset)
            .limit(limit)
        )
        return [_obj(Build, r) for r in self.conn.execute(q)]

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
        return [_obj(Build, r) for r in self.conn.execute(q.order_by(t.builds.c.start_time))]

    def latest_for_app(self, app_id: str) -> Build | None:
        q = (
            select(t.builds)
            .where(t.builds.c.app_id == app_id)
            .order_by(t.builds.c.start_time.desc())
            .limit(1)
        )
        row = self.conn.execute(q).first()
        return _obj(Build, row) if row else None

    def detach_app(self, app_id: str) -> None:
        self.conn.execute(update(t.builds).where(t.builds.c.app_id == app_id).values(app_id=None))


class UploadRepo(_Repo):
    table = t.uploads

    def add(self, upload: Upload) -> None:
        self._insert(_row(upload))

    def get(self, upload_id: str) -> Upload | None:
        row = self._one(t.uploads.c.id == upload_id)
        return _obj(Upload, row) if row else None

    def get_by_key(self, key: str) -> Upload | None:
        row = self._one(t.uploads.c.key == key)
        return _obj(Upload, row) if row else None

    def get_for_build(self, build_id: str) -> Upload | None:
        row = self._one(t.uploads.c.build_id == build_id)
        return _obj(Upload, row) if row else None

    def save(self, upload: Upload) -> None:
        self.conn.execute(
            update(t.uploads).where(t.uploads.c.id == upload.id).values(**_row(upload))
        )

    def leave_pending(self, upload_id: str, state: UploadState, size: int | None) -> bool:
        values: dict[str, Any] = {"state": state.value}
        if size is not None:
            values["size"] = size
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
        return [_obj(Upload, r) for r in self.conn.execute(q)]


class JobRepo(_Repo):
    table = t.jobs

    def add(self, job: Job) -> None:
        self._insert(_row(job))

    def get(self, job_id: str) -> Job | None:
        row = self._one(t.jobs.c.id == job_id)
        return _obj(Job, row) if row else None

    def for_build(self, build_id: str) -> list[Job]:
        q = select(t.jobs).where(t.jobs.c.build_id == build_id).order_by(t.jobs.c.created_at)
        return [_obj(Job, r) for r in self.conn.execute(q)]

    def save(self, job: Job) -> None:
        self.conn.execute(update(t.jobs).where(t.jobs.c.id == job.id).values(**_row(job)))

    def _claimable(self, now: datetime) -> Any:
        return or_(
            t.jobs.c.state == JobState.QUEUED.value,
            and_(t.jobs.c.state == JobState.RUNNING.value, t.jobs.c.lease_until < now),
        )

    def claimable(self, now: datetime, limit: int) -> list[Job]:
        q = select(t.jobs).where(self._claimable(now)).order_by(t.jobs.c.created_at).limit(limit)
        return [_obj(Job, r) for r in self.conn.execute(q)]

    def try_claim(self, job: Job, owner: str, now: datetime, until: datetime) -> bool:
        result = self.conn.execute(
            update(t.jobs)
            .where(t.jobs.c.id == job.id, t.jobs.c.attempts == job.attempts, self._claimable(now))
            .values(
                state=JobState.RUNNING.value,
                lease_owner=owner,
                lease_until=until,
                attempts=job.attempts + 1,
                updated_at=now,
            )
        )
        return result.rowcount == 1

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

    def count_running(self, tenant_id: str, now: datetime) -> int:
        q = select(func.count()).where(
            t.jobs.c.tenant_id == tenant_id,
            t.jobs.c.state == JobState.RUNNING.value,
            t.jobs.c.lease_until >= now,
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


class ControlRepo(_Repo):
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


class FindingRepo(_Repo):
    table = t.findings

    def replace(self, build_id: str, findings: list[Finding]) -> None:
        self.conn.execute(delete(t.findings).where(t.findings.c.build_id == build_id))
        for f in findings:
            self.conn.execute(insert(t.findings).values(build_id=build_id, **_row(f)))

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


class UserRepo(_Repo):
    table = t.users

    def add(self, user: User) -> None:
        self._insert(_row(user))

    def get(self, user_id: str) -> User | None:
        row = self._one(t.users.c.id == user_id)
        return _obj(User, row) if row else None

    def get_by_email(self, email: str) -> User | None:
        row = self._one(t.users.c.email == email)
        return _obj(User, row) if row else None

    def list(self) -> list[User]:
        return [_obj(User, r) for r in self.conn.execute(select(t.users).order_by(t.users.c.email))]


class SessionRepo(_Repo):
    table = t.sessions

    def add(
        self, token_hash: str, user_id: str, created_at: datetime, expires_at: datetime
    ) -> None:
        self._insert(
            {
                "token_hash": token_hash,
                "user_id": user_id,
                "created_at": created_at,
                "expires_at": expires_at,
            }
        )

    def user_for(self, token_hash: str, now: datetime) -> User | None:
        q = (
            select(t.users)
            .join(t.sessions, t.sessions.c.user_id == t.users.c.id)
            .where(t.sessions.c.token_hash == token_hash, t.sessions.c.expires_at > now)
        )
        row = self.conn.execute(q).first()
        return _obj(User, row) if row else None

    def delete(self, token_hash: str) -> None:
        self.conn.execute(delete(t.sessions).where(t.sessions.c.token_hash == token_hash))


class VersionRepo(_Repo):
    table = t.versions

    def add(self, version: Version) -> None:
        self._insert(_row(version))

    def get(self, version_id: str) -> Version | None:
        row = self._one(t.versions.c.id == version_id)
        return _obj(Version, row) if row else None

    def get_by_build(self, build_id: str) -> Version | None:
        row = self._one(t.versions.c.build_id == build_id)
        return _obj(Version, row) if row else None

    def save(self, version: Version) -> None:
        self.conn.execute(
            update(t.versions).where(t.versions.c.id == version.id).values(**_row(version))
        )

    def for_app(self, app_id: str) -> list[Version]:
        q = select(t.versions).where(t.versions.c.app_id == app_id)
        return [_obj(Version, r) for r in self.conn.execute(q.order_by(t.versions.c.version_code))]


class RunRepo(_Repo):
    table = t.validation_runs

    def add(self, run: ValidationRun) -> None:
        self._insert(_row(run))

    def get_by_build(self, build_id: str) -> ValidationRun | None:
        row = self._one(t.validation_runs.c.build_id == build_id)
        return _obj(ValidationRun, row) if row else None

    def save(self, run: ValidationRun) -> None:
        self.conn.execute(
            update(t.validation_runs).where(t.validation_runs.c.id == run.id).values(**_row(run))
        )

    def for_version(self, version_id: str) -> list[ValidationRun]:
        q = (
            select(t.validation_runs)
            .where(t.validation_runs.c.version_id == version_id)
            .order_by(t.validation_runs.c.created_at)
        )
        return [_obj(ValidationRun, r) for r in self.conn.execute(q)]


class EventRepo(_Repo):
    table = t.version_events

    def add(self, event: VersionEvent) -> None:
        self.conn.execute(insert(t.version_events).values(**_row(event)))

    def for_version(self, version_id: str) -> list[VersionEvent]:
        q = (
            select(t.version_events)
            .where(t.version_events.c.version_id == version_id)
            .order_by(t.version_events.c.id)
        )
        return [_obj(VersionEvent, r) for r in self.conn.execute(q)]


class IssueRepo(_Repo):
    table = t.store_issues

    def add(self, issue: StoreIssue) -> None:
        self._insert(_row(issue))

    def get(self, issue_id: str) -> StoreIssue | None:
        row = self._one(t.store_issues.c.id == issue_id)
        return _obj(StoreIssue, row) if row else None

    def save(self, issue: StoreIssue) -> None:
        self.conn.execute(
            update(t.store_issues).where(t.store_issues.c.id == issue.id).values(**_row(issue))
        )

    def for_version(self, version_id: str) -> list[StoreIssue]:
        q = (
            select(t.store_issues)
            .where(t.store_issues.c.version_id == version_id)
            .order_by(t.store_issues.c.created_at)
        )
        return [_obj(StoreIssue, r) for r in self.conn.execute(q)]


class SigningKeyRepo(_Repo):
    table = t.signing_keys

    def add(self, key: SigningKey) -> None:
        self._insert(_row(key))

    def get(self, key_id: str) -> SigningKey | None:
        row = self._one(t.signing_keys.c.id == key_id)
        return _obj(SigningKey, row) if row else None

    def get_by_upload(self, upload_key: str) -> SigningKey | None:
        row = self._one(t.signing_keys.c.upload_key == upload_key)
        return _obj(SigningKey, row) if row else None

    def save(self, key: SigningKey) -> None:
        self.conn.execute(
            update(t.signing_keys).where(t.signing_keys.c.id == key.id).values(**_row(key))
        )

    def list(self, tenant_id: str | None = None) -> list[SigningKey]:
        q = select(t.signing_keys).order_by(t.signing_keys.c.created_at)
        if tenant_id is not None:
            q = q.where(t.signing_keys.c.tenant_id == tenant_id)
        return [_obj(SigningKey, r) for r in self.conn.execute(q)]


class SqlUnitOfWork:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.tenants: ports.TenantRepo = TenantRepo(conn)
        self.tokens: ports.TokenRepo = TokenRepo(conn)
        self.apps: ports.AppRepo = AppRepo(conn)
        self.builds: ports.BuildRepo = BuildRepo(conn)
        self.uploads: ports.UploadRepo = UploadRepo(conn)
        self.jobs: ports.JobRepo = JobRepo(conn)
        self.controls: ports.ControlRepo = ControlRepo(conn)
        self.findings: ports.FindingRepo = FindingRepo(conn)
        self.users: ports.UserRepo = UserRepo(conn)
        self.sessions: ports.SessionRepo = SessionRepo(conn)
        self.versions: ports.VersionRepo = VersionRepo(conn)
        self.runs: ports.RunRepo = RunRepo(conn)
        self.events: ports.EventRepo = EventRepo(conn)
        self.issues: ports.IssueRepo = IssueRepo(conn)
        self.signing_keys: ports.SigningKeyRepo = SigningKeyRepo(conn)

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()


class SqlUnitOfWorkFactory:
    """``with factory() as uow: ...; uow.commit()``: uncommitted work is rolled back."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def __call__(self) -> Iterator[ports.UnitOfWork]:
        with self.engine.connect() as conn:
            conn.begin()
            try:
                yield SqlUnitOfWork(conn)
            finally:
                if conn.in_transaction():
                    conn.rollback()


__all__ = [
    "BuildStatus",
    "JobState",
    "SqlUnitOfWork",
    "SqlUnitOfWorkFactory",
    "make_engine",
]
