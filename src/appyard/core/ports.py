"""The Protocols core depends on; each backend implements one. Core imports none of them.

* :class:`UnitOfWork`: one database transaction with repositories (backends/db).
* :class:`BlobStore`: object storage that hands out signed requests (backends/storage: local,
  s3).
* :class:`JobQueue`: how workers hear about work (backends/queue: embedded, redis). The
  database holds the truth about every job; the queue only wakes workers.
* :class:`Clock`: time, so tests never sleep.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from appyard.core.models import (
    App,
    Build,
    ConfigVersion,
    ControlSetting,
    Event,
    Finding,
    InstallDownload,
    InstallLink,
    Job,
    JobState,
    LimitOverrides,
    MailDelivery,
    Member,
    Part,
    Plan,
    Platform,
    RetentionRule,
    SigningKey,
    StoreIssue,
    Tenant,
    Throttle,
    Token,
    TokenKind,
    Upload,
    UploadState,
    User,
    ValidationRun,
    Version,
    VersionEvent,
    Webhook,
    WebhookDelivery,
)


class Clock(Protocol):
    def now(self) -> datetime: ...


class Meter(Protocol):
    """Counts what core reports (core/telemetry.py); the metrics module implements it."""

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


# --- repositories -----------------------------------------------------------------------------


class TenantRepo(Protocol):
    def add(self, tenant: Tenant) -> None: ...
    def get(self, tenant_id: str) -> Tenant | None: ...
    def get_by_name(self, name: str) -> Tenant | None: ...
    def list(self) -> list[Tenant]: ...
    def set_plan(self, tenant_id: str, plan: Plan) -> None: ...
    def set_overrides(self, tenant_id: str, overrides: LimitOverrides) -> None: ...


class TokenRepo(Protocol):
    def add(self, token: Token) -> None: ...
    def get(self, token_id: str) -> Token | None: ...
    def get_with_tenant(self, token_id: str) -> tuple[Token, Tenant] | None:
        """The token and its tenant, read together (authentication)."""
        ...

    def list(self, tenant_id: str, kind: TokenKind | None = None) -> list[Token]: ...
    def set_disabled(self, token_id: str, disabled: bool) -> None: ...
    def touch(self, token_id: str, at: datetime) -> None: ...
    def set_scopes(self, token_id: str, scopes: tuple[str, ...]) -> None: ...
    def delete(self, token_id: str) -> None: ...


class AppRepo(Protocol):
    def add(self, app: App) -> None: ...
    def get(self, app_id: str) -> App | None: ...
    def get_by_slug(self, tenant_id: str, slug: str) -> App | None: ...
    def find(self, tenant_id: str, platform: Platform, identifier: str) -> App | None: ...
    def save(self, app: App) -> None: ...
    def list(self, tenant_id: str) -> list[App]: ...
    def delete(self, app_id: str) -> None: ...


class BuildRepo(Protocol):
    def add(self, build: Build) -> None: ...
    def get(self, build_id: str) -> Build | None: ...
    def get_by_number(self, tenant_id: str, number: int) -> Build | None: ...
    def last_number(self, tenant_id: str) -> int | None: ...
    def save(self, build: Build) -> None: ...
    def count_processing(self, tenant_id: str) -> int: ...
    def count_since(
        self, tenant_id: str, platform: Platform, version: ConfigVersion, since: datetime
    ) -> int: ...
    def list_for_version(
        self, tenant_id: str, version: ConfigVersion, offset: int, limit: int
    ) -> list[Build]:
        """One page of a configuration version's builds, newest (highest number) first."""
        ...

    def count_for_version(self, tenant_id: str, version: ConfigVersion) -> int: ...
    def list_processing(self, tenant_id: str, version: ConfigVersion) -> list[Build]: ...
    def stalled(self, before: datetime, limit: int) -> list[Build]:
        """Processing builds (any tenant) not updated since ``before``, oldest first."""
        ...

    def latest_for_app(self, app_id: str) -> Build | None: ...
    def list_for_app(self, app_id: str, offset: int, limit: int) -> list[Build]:
        """One page of an app's builds, newest (highest number) first."""
        ...

    def count_for_app(self, app_id: str) -> int: ...
    def recent(self, tenant_id: str, limit: int) -> list[Build]:
        """The tenant's newest builds (highest number first), of every app or none yet."""
        ...

    def with_number(self, number: int) -> list[Build]:
        """Builds of any tenant with this number (an operator naming a build by number)."""
        ...

    def kept(self, tenant_id: str) -> list[Build]:
        """The tenant's builds that are not deleted, newest (highest number) first."""
        ...

    def detach_app(self, app_id: str) -> None:
        """Forget ``app_id`` on its builds (they stay in history)."""
        ...


class RetentionRepo(Protocol):
    def put(self, rule: RetentionRule) -> None:
        """Set the rule of its tenant and app (replacing the one there was)."""
        ...

    def remove(self, tenant_id: str, app_id: str | None) -> bool: ...
    def of_tenant(self, tenant_id: str) -> list[RetentionRule]: ...
    def tenants(self) -> list[str]:
        """The tenants that have at least one rule."""
        ...


class UploadRepo(Protocol):
    def add(self, upload: Upload) -> None: ...
    def get(self, upload_id: str) -> Upload | None: ...
    def get_by_key(self, key: str) -> Upload | None: ...
    def get_for_subject(self, subject_id: str) -> Upload | None: ...
    def save(self, upload: Upload) -> None: ...
    def leave_pending(
        self,
        upload_id: str,
        state: UploadState,
        *,
        size: int | None = None,
        sha256: str | None = None,
        reason: str | None = None,
    ) -> bool:
        """Atomically move a still-pending upload to ``state``; False when another request
        (the store's report, a sweep on another machine) already moved it."""
        ...

    def list_pending(
        self, *, expiring_before: datetime | None = None, limit: int = 100
    ) -> list[Upload]:
        """Pending uploads, soonest to expire first (all of them, or those expiring before)."""
        ...

    def recent(
        self,
        *,
        tenant_id: str | None = None,
        states: tuple[UploadState, ...] = (),
        limit: int = 100,
    ) -> list[Upload]:
        """Uploads, newest first (every tenant's when ``tenant_id`` is None)."""
        ...


@dataclass(frozen=True)
class Claimed:
    """A job a worker just claimed; ``lease_expired``: it was running under another worker
    whose lease had passed (that worker died or hung)."""

    job: Job
    lease_expired: bool = False


class JobRepo(Protocol):
    def add(self, job: Job) -> None: ...
    def get(self, job_id: str) -> Job | None: ...
    def for_build(self, build_id: str) -> list[Job]: ...
    def save(self, job: Job) -> None: ...
    def claim_next(
        self,
        owner: str,
        now: datetime,
        until: datetime,
        *,
        skip_tenants: frozenset[str] = frozenset(),
    ) -> Claimed | None:
        """Take the oldest claimable job (queued, or running with an expired lease), due
        (``run_after`` passed) and claimed fewer than its ``max_attempts`` times, of a tenant
        not in ``skip_tenants``, in one statement (PostgreSQL: ``FOR UPDATE SKIP LOCKED``;
        SQLite: its writers are serialized)."""
        ...

    def recent(
        self,
        *,
        tenant_id: str | None = None,
        states: tuple[JobState, ...] = (),
        kind: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs, newest first (every tenant's when ``tenant_id`` is None)."""
        ...

    def counts(self) -> list[tuple[str, JobState, int]]:
        """How many jobs there are of each (kind, state)."""
        ...

    def count_due(self, now: datetime) -> int:
        """Queued jobs whose time has come: the queue's depth."""
        ...

    def exhausted(self, now: datetime, limit: int) -> list[Job]:
        """Claimable jobs that were claimed their ``max_attempts`` times already."""
        ...

    def renew(self, job_id: str, owner: str, until: datetime) -> bool: ...
    def count_running(self, tenant_id: str, now: datetime, *, but: str = "") -> int:
        """Build jobs of the tenant running under a live lease (other than ``but``)."""
        ...

    def lock_tenant(self, tenant_id: str) -> bool:
        """Serialize job claims of one tenant until the transaction ends (so its concurrency
        limit holds across workers on many machines); False when another claimer holds it."""
        ...


class ControlRepo(Protocol):
    def list(
        self, tenant_id: str, platform: Platform, version: ConfigVersion
    ) -> list[ControlSetting]: ...
    def set(
        self,
        tenant_id: str,
        platform: Platform,
        version: ConfigVersion,
        control_id: str,
        enabled: bool,
    ) -> None: ...


class FindingRepo(Protocol):
    def replace(self, build_id: str, findings: list[Finding]) -> None: ...
    def list(self, build_id: str) -> list[Finding]: ...


class UserRepo(Protocol):
    def add(self, user: User) -> None: ...
    def get(self, user_id: str) -> User | None: ...
    def get_by_email(self, email: str) -> User | None: ...
    def list(self) -> list[User]: ...


class SessionRepo(Protocol):
    def add(
        self, token_hash: str, user_id: str, created_at: datetime, expires_at: datetime
    ) -> None: ...
    def user_for(self, token_hash: str, now: datetime) -> User | None: ...
    def delete(self, token_hash: str) -> None: ...


class VersionRepo(Protocol):
    def add(self, version: Version) -> None: ...
    def get(self, version_id: str) -> Version | None: ...
    def get_by_build(self, build_id: str) -> Version | None: ...
    def save(self, version: Version) -> None: ...
    def for_app(self, app_id: str) -> list[Version]: ...
    def listing(
        self, *, tenant_id: str | None, statuses: tuple[str, ...] | None, limit: int
    ) -> list[Version]:
        """Versions of one tenant (or every tenant: None) in these statuses (None: any),
        most recently changed first."""
        ...


class RunRepo(Protocol):
    def add(self, run: ValidationRun) -> None: ...
    def get_by_build(self, build_id: str) -> ValidationRun | None: ...
    def save(self, run: ValidationRun) -> None: ...
    def for_version(self, version_id: str) -> list[ValidationRun]: ...


class EventRepo(Protocol):
    def add(self, event: VersionEvent) -> None: ...
    def for_version(self, version_id: str) -> list[VersionEvent]: ...


class IssueRepo(Protocol):
    def add(self, issue: StoreIssue) -> None: ...
    def get(self, issue_id: str) -> StoreIssue | None: ...
    def save(self, issue: StoreIssue) -> None: ...
    def for_version(self, version_id: str) -> list[StoreIssue]: ...


class SigningKeyRepo(Protocol):
    def add(self, key: SigningKey) -> None: ...
    def get(self, key_id: str) -> SigningKey | None: ...
    def save(self, key: SigningKey) -> None: ...
    def list(self, tenant_id: str | None = None) -> list[SigningKey]: ...


@dataclass(frozen=True)
class OutboxItem:
    """A row of the outbox: a worker wake-up (``kind`` wake, ``topic`` the job kind) or a
    domain event (``kind`` event)."""

    id: int
    kind: str
    topic: str
    tenant_id: str | None
    subject_id: str
    data: dict[str, Any]
    created_at: datetime


class OutboxRepo(Protocol):
    def add(
        self,
        *,
        kind: str,
        topic: str,
        tenant_id: str | None,
        subject_id: str,
        data: dict[str, Any],
        at: datetime,
    ) -> None: ...
    def claim(self, limit: int) -> list[OutboxItem]:
        """Undelivered rows, oldest first, locked against other relays until the transaction
        ends (PostgreSQL: ``FOR UPDATE SKIP LOCKED``)."""
        ...

    def dispatched(self, ids: list[int], at: datetime) -> None: ...
    def forget(self, ids: list[int]) -> None: ...
    def events(
        self,
        *,
        tenant_id: str | None,
        subject_id: str | None = None,
        event_id: int | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        """The event log (dispatched or not), oldest first."""
        ...

    def recent(
        self, *, tenant_id: str | None, limit: int, topic_prefix: str | None = None
    ) -> list[Event]:
        """The newest events first, of one tenant (None: of every tenant), whose topic
        starts with ``topic_prefix`` when given."""
        ...

    @property
    def written(self) -> bool:
        """Whether this unit of work added rows (the caller relays them after commit)."""
        ...


class MemberRepo(Protocol):
    def add(self, member: Member) -> None: ...
    def get(self, member_id: str) -> Member | None: ...
    def list(self, tenant_id: str) -> list[Member]: ...
    def delete(self, member_id: str) -> None: ...


class MailDeliveryRepo(Protocol):
    def add(self, delivery: MailDelivery) -> None: ...
    def for_build(self, build_id: str) -> list[MailDelivery]: ...


class WebhookRepo(Protocol):
    def add(self, webhook: Webhook) -> None: ...
    def get(self, webhook_id: str) -> Webhook | None: ...
    def list(self, tenant_id: str) -> list[Webhook]: ...
    def save(self, webhook: Webhook) -> None: ...
    def delete(self, webhook_id: str) -> None: ...


class WebhookDeliveryRepo(Protocol):
    def add(self, delivery: WebhookDelivery) -> None: ...
    def get(self, delivery_id: str) -> WebhookDelivery | None: ...
    def for_webhook(self, webhook_id: str, limit: int = 100) -> list[WebhookDelivery]:
        """The endpoint's latest deliveries, newest first."""
        ...


class InstallLinkRepo(Protocol):
    def add(self, link: InstallLink) -> None: ...
    def get(self, link_id: str) -> InstallLink | None: ...
    def get_by_token_hash(self, token_hash: str) -> InstallLink | None: ...
    def for_build(self, build_id: str) -> list[InstallLink]:
        """The build's links, newest first."""
        ...

    def save(self, link: InstallLink) -> None: ...
    def every(self) -> list[InstallLink]:
        """Every link of every tenant (re-sealing under a new master key)."""
        ...


class InstallDownloadRepo(Protocol):
    def add(self, download: InstallDownload) -> None: ...
    def for_build(self, build_id: str, limit: int | None = None) -> list[InstallDownload]:
        """Downloads of the build's file(s) through its links, newest first."""
        ...

    def count_for_build(self, build_id: str) -> int: ...


class ThrottleRepo(Protocol):
    def get(self, key: str) -> Throttle | None: ...
    def put(self, state: Throttle) -> None: ...
    def delete(self, key: str) -> None: ...
    def prune(self, before: datetime) -> None:
        """Forget counters whose window started before ``before`` and that lock nothing."""
        ...


class SequenceRepo(Protocol):
    def next(self, tenant_id: str, name: str) -> int:
        """The sequence's next value (1, 2, ...), allocated in this transaction."""
        ...

    def current(self, tenant_id: str, name: str) -> int:
        """The last value handed out (0 when none)."""
        ...


class UnitOfWork(Protocol):
    """One transaction. The caller owns it: services never commit."""

    tenants: TenantRepo
    tokens: TokenRepo
    apps: AppRepo
    builds: BuildRepo
    uploads: UploadRepo
    jobs: JobRepo
    controls: ControlRepo
    findings: FindingRepo
    users: UserRepo
    sessions: SessionRepo
    versions: VersionRepo
    runs: RunRepo
    events: EventRepo
    issues: IssueRepo
    signing_keys: SigningKeyRepo
    outbox: OutboxRepo
    sequences: SequenceRepo
    members: MemberRepo
    mail_deliveries: MailDeliveryRepo
    webhooks: WebhookRepo
    webhook_deliveries: WebhookDeliveryRepo
    install_links: InstallLinkRepo
    install_downloads: InstallDownloadRepo
    sign_in_throttle: ThrottleRepo
    retention: RetentionRepo

    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once this transaction has committed (never if it rolls back)."""
        ...

    def savepoint(self) -> AbstractContextManager[Savepoint]:
        """A nested transaction: what happens inside is undone by ``rollback()`` (or an
        exception) without ending the outer one."""
        ...


class Savepoint(Protocol):
    def rollback(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    # True when a short read costs less than handing it to another thread: the database runs
    # in this process (SQLite), not across a network.
    reads_in_process: bool

    def __call__(self) -> AbstractContextManager[UnitOfWork]: ...

    def read(self, *, keep: bool = False) -> AbstractContextManager[UnitOfWork]:
        """A unit of work that only reads and takes no write lock: it neither waits for
        writers nor makes them wait. Its statements may each see a snapshot of their own (on
        SQLite they run without ``BEGIN``), so it suits reads of one row per statement, such
        as authentication and status polls. It cannot be committed.

        ``keep``: the calling thread keeps its connection for its next reads (when the
        database runs in this process): for the one thread that reads for every status poll,
        the event loop's, not for a pool of threads."""
        ...


# --- storage ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    etag: str
    sha256: str | None = None


@dataclass(frozen=True)
class SignedRequest:
    """What a client sends to reach the store without credentials of its own: the method, the
    URL and the headers it must carry (a signed Content-Type, for instance)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)


ArrivalListener = Callable[[str, "BlobInfo"], None]


@dataclass(frozen=True)
class StoreLocation:
    """Where objects live, as a client may be told."""

    id: str  # "local" | "s3"
    name: str
    region: str | None = None


class BlobStore(Protocol):
    """Object storage. Keys are validated by the store; callers build them tenant-scoped.

    A signed PUT is good for one upload: once its object was published, or the key deleted,
    the same request writes nothing (where the store can refuse it; S3 cannot, so core
    checks on arrival). A store that knows when an object is published reports it to the
    listener (``reports_arrivals``); the others are swept (core/arrivals.py).
    """

    reports_arrivals: bool
    location: StoreLocation

    def listen(self, listener: ArrivalListener) -> None:
        """Call ``listener(key, info)`` after each object a signed PUT published (stores that
        report arrivals; a no-op elsewhere)."""
        ...

    def presign_put(
        self, key: str, *, max_size: int, expires_in: int, content_type: str | None = None
    ) -> SignedRequest: ...
    def create_multipart(self, key: str) -> str: ...
    def presign_part(
        self, key: str, upload_id: str, part_number: int, *, max_size: int, expires_in: int
    ) -> SignedRequest:
        """``max_size`` is the upload's part size: every part but the last fills it exactly
        (the local store writes part n in place at ``(n-1) * max_size``)."""
        ...

    def list_parts(self, key: str, upload_id: str) -> list[Part]: ...
    def complete_multipart(self, key: str, upload_id: str, parts: list[Part]) -> BlobInfo: ...
    def abort_multipart(self, key: str, upload_id: str) -> None: ...
    def presign_get(self, key: str, *, file_name: str, expires_in: int) -> SignedRequest: ...
    def stat(self, key: str) -> BlobInfo | None: ...
    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]: ...
    def write(self, key: str, chunks: Iterable[bytes]) -> BlobInfo: ...
    def delete(self, key: str) -> None:
        """Remove the object, and whatever could still create it (an unused signed PUT)."""
        ...

    def fetch(self, key: str, dest: Path) -> BlobInfo:
        """Put the object at ``dest`` (a new path) and return its size and SHA-256: a hard
        link when the store is local disk on the same filesystem (no bytes copied, the object
        only read once to hash it), a download otherwise. The caller must not write into
        ``dest``: it may be the object itself."""
        ...

    def adopt(self, key: str, path: Path) -> BlobInfo:
        """Store the file at ``path`` under ``key``, moving it when the store is local disk
        (no copy), uploading it otherwise. The file is gone afterwards."""
        ...

    def check(self) -> None:
        """Raise, in one sentence, when the store cannot be used (checked at startup)."""
        ...

    def remove_leftovers(self) -> int:
        """Remove temporary files that killed writers left behind; how many (at start, and
        in the workers' sweep)."""
        ...


# --- going out ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MailMessage:
    to: str
    subject: str
    text: str
    html: str


class Mailer(Protocol):
    """Sends email (backends/mail). ``configured`` is False when no server was set up: then
    nothing is sent, and notifications are recorded as skipped."""

    configured: bool

    def send(self, message: MailMessage) -> None:
        """Hand one message to the mail server; ``DeliveryFailed`` with the reason if not."""
        ...


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    latency_ms: int


class WebhookSender(Protocol):
    """POSTs webhook deliveries (backends/webhooks): no redirects followed, replies bounded
    and never logged, private destinations refused unless allowed."""

    def check_url(self, url: str) -> None:
        """``DestinationRefused`` for a URL appyard will not send to (scheme, or a host that
        resolves to a loopback, private or link-local address)."""
        ...

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """``DeliveryFailed`` with the reason when no HTTP answer came back."""
        ...


# --- queue ------------------------------------------------------------------------------------


class JobQueue(Protocol):
    def notify(self, job_id: str) -> None:
        """Tell workers there is work (after the transaction that made it committed)."""
        ...

    def wait(self, timeout: float) -> None:
        """Block until notified or ``timeout`` seconds pass."""
        ...

    def close(self) -> None: ...


def chunked(fh: BinaryIO, size: int = 1024 * 1024) -> Iterator[bytes]:
    """Read ``fh`` in ``size`` pieces: the one way core streams bytes."""
    while chunk := fh.read(size):
        yield chunk


def copy_hashed(src: BinaryIO, dest: BinaryIO | None = None) -> tuple[int, str]:
    """Read ``src`` to its end (writing each piece to ``dest`` when given); its size and
    SHA-256 (hex)."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunked(src):
        digest.update(chunk)
        if dest is not None:
            dest.write(chunk)
        size += len(chunk)
    return size, digest.hexdigest()
