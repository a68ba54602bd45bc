"""The domain's value types: frozen dataclasses and enums, one vocabulary for every dialect.

tenant (= organization = workspace), app (= application = project), build (one uploaded
artifact and what became of it), upload (how its bytes arrive), job (the work on a build),
finding, token. Vendor words stay in the dialects.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Plan(enum.StrEnum):
    FREE = "free"
    TEAM = "team"
    ENTERPRISE = "enterprise"


class Platform(enum.StrEnum):
    ANDROID = "android"
    IOS = "ios"
    # Custom build platforms (the distribution API): stored and distributed, not inspected.
    MACOS = "macos"
    PS4 = "ps4"
    PS5 = "ps5"
    SWITCH = "switch"
    XBOX_ONE = "xbox-one"
    XBOX_SERIES = "xbox-series"

    @property
    def mobile(self) -> bool:
        """Android and iOS builds are inspected, checked and processed; the rest are not."""
        return self in (Platform.ANDROID, Platform.IOS)


class ConfigVersion(enum.StrEnum):
    """A configuration version: which set of controls applies to a build."""

    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


class TokenKind(enum.StrEnum):
    AUTOMATION = "automation"
    CI = "ci"
    MANAGEMENT = "management"
    APP = "app"
    SERVICE_ACCOUNT = "service-account"
    CONTEXT = "context"  # the upload-context API's bearer token


class UploadState(enum.StrEnum):
    PENDING = "pending"  # waiting for bytes
    RECEIVED = "received"  # the whole object reached storage and was handed to its purpose
    ABORTED = "aborted"  # the client (or a deletion) cancelled it
    EXPIRED = "expired"  # the bytes did not arrive in time
    REFUSED = "refused"  # the bytes arrived but broke the upload's rules (size); removed


class UploadPurpose(enum.StrEnum):
    """What an upload's bytes are for; arrivals dispatch on it (core/arrivals.py)."""

    BUILD = "build"  # a build's input artifact (subject: the build)
    SIGNING_KEY = "signing_key"  # a keystore file, sealed on arrival (subject: the key)


class BuildStatus(enum.StrEnum):
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class JobState(enum.StrEnum):
    WAITING = "waiting"  # its input has not arrived yet
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Stage(enum.StrEnum):
    """The human-readable progress stages a job moves through (automation ``progress``)."""

    WAITING_FOR_UPLOAD = "Waiting for upload"
    QUEUED = "Queued"
    DOWNLOADING = "Downloading inputs"
    INSPECTING = "Inspecting"
    PROTECTING = "Applying protection"
    PACKAGING = "Packaging"
    SIGNING = "Signing"
    UPLOADING = "Uploading output"
    DONE = "Done"


class Role(enum.StrEnum):
    STORE_ADMIN = "store-admin"  # runs the store: releases, withdrawals, issues, everything
    STORE_REVIEWER = "store-reviewer"  # approves or rejects versions in review
    DEVELOPER = "developer"  # a member of one tenant: uploads, submits, manages CI tokens


class Severity(enum.StrEnum):
    BLOCKING = "blocking"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Limits:
    """Effective plan limits of a tenant (plan defaults with overrides applied)."""

    concurrent_builds: int | None  # None: unlimited
    weekly_builds: int | None  # per platform and configuration version, over 7 days
    automation_keys: int
    automation_allowed: bool


@dataclass(frozen=True)
class LimitOverrides:
    concurrent_builds: int | None = None
    weekly_builds: int | None = None
    automation_keys: int | None = None


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    plan: Plan
    created_at: datetime
    overrides: LimitOverrides = field(default_factory=LimitOverrides)


@dataclass(frozen=True)
class Token:
    id: str  # the public key id (automation: the part before ':')
    tenant_id: str
    kind: TokenKind
    name: str
    secret_hash: str
    scopes: tuple[str, ...]
    disabled: bool
    created_at: datetime
    last_used_at: datetime | None = None
    app_id: str | None = None  # an app token acts on this one app only
    expires_at: datetime | None = None  # None: until disabled


@dataclass(frozen=True)
class Actor:
    """Who performs an action, whatever the credential: the one subject of core's rules.

    A token (any kind: automation key, CI token, management token, ...) acts for its tenant
    with its scopes; a person signed in to the portal acts with a role (tenant members are
    developers, store staff belong to no tenant). Made by :func:`appyard.core.identity.
    authenticate` from any dialect's credential or a portal session.
    """

    id: str  # the token id, or the user id
    tenant_id: str | None
    token_kind: TokenKind | None = None  # None: a person with a portal session
    role: Role = Role.DEVELOPER
    scopes: tuple[str, ...] = ()
    app_id: str | None = None  # a token bound to one app acts on that app only

    @property
    def kind(self) -> str:
        return "user" if self.token_kind is None else "token"

    @property
    def is_user(self) -> bool:
        return self.token_kind is None

    @property
    def tenant(self) -> str:
        """The actor's tenant; store staff have none, so tenant-scoped work is refused."""
        if self.tenant_id is None:
            from appyard.errors import Forbidden

            raise Forbidden("Store staff belong to no tenant; sign in as a tenant member.")
        return self.tenant_id


@dataclass(frozen=True)
class App:
    id: str
    tenant_id: str
    platform: Platform | None  # None until its first build binds it
    identifier: str | None  # package name or bundle id; None until its first build binds it
    name: str
    created_at: datetime
    slug: str = ""  # unique in the tenant: how dialects name it (project, application id)


@dataclass(frozen=True)
class Part:
    number: int
    size: int
    etag: str


@dataclass(frozen=True)
class Upload:
    """How one object's bytes arrive: a signed PUT, signed multipart parts, or a form post
    spooled to disk. ``purpose`` says what they are for; ``subject_id`` names it."""

    id: str
    tenant_id: str
    purpose: UploadPurpose
    subject_id: str  # the build (purpose build) or signing key (purpose signing_key)
    key: str  # object key in storage, tenant-scoped
    file_name: str
    declared_size: int | None
    multipart: bool
    store_upload_id: str | None  # the storage backend's multipart id
    total_parts: int | None
    chunk_size: int | None
    state: UploadState
    created_at: datetime
    expires_at: datetime
    size: int | None = None
    max_size: int | None = None  # the most bytes the upload may hold
    sha256: str | None = None
    reason: str | None = None  # why it was aborted, expired or refused


@dataclass(frozen=True)
class Build:
    id: str
    tenant_id: str
    number: int  # unique and increasing in the tenant; dialects show it as their build id
    platform: Platform
    config_version: ConfigVersion
    file_name: str
    source_key: str
    status: BuildStatus
    progress: Stage
    created_at: datetime
    updated_at: datetime
    signing_key_id: str | None = None
    app_id: str | None = None
    identifier: str | None = None
    version_code: str | None = None
    version_name: str | None = None
    size: int | None = None
    sha256: str | None = None
    output_key: str | None = None
    output_size: int | None = None
    output_sha256: str | None = None
    error_message: str | None = None
    signed: bool = False
    signing_error_message: str | None = None
    facts: dict[str, Any] | None = None
    deleted: bool = False  # input and output removed; the row stays in history
    source: str = ""  # how it arrived: the dialect (automation, store-ci, upload-context, ...)
    meta: dict[str, Any] = field(default_factory=dict)  # what the client said (name, commit, ...)
    started_at: datetime | None = None  # a worker first took its job
    finished_at: datetime | None = None  # it completed or failed
    pinned: bool = False  # an operator keeps it: retention never removes it


@dataclass(frozen=True)
class RetentionRule:
    """How long a tenant keeps its builds (``app_id`` None: the tenant's rule; else one app's,
    which overrides it): the last ``keep_last`` finished builds of each app and configuration
    version, and/or those younger than ``keep_days``; a build goes only when no part of the
    rule keeps it (docs/operations.md)."""

    tenant_id: str
    app_id: str | None
    keep_last: int | None
    keep_days: int | None
    updated_at: datetime


@dataclass(frozen=True)
class Job:
    id: str
    tenant_id: str
    build_id: str | None  # the build it works on; None for jobs of other kinds (mail, ...)
    kind: str  # stable dotted string, e.g. "build.process"; the worker's handler by name
    state: JobState
    attempts: int
    created_at: datetime
    updated_at: datetime
    lease_owner: str | None = None
    lease_until: datetime | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    run_after: datetime | None = None  # not claimed before this (a retry's backoff)
    max_attempts: int = 3  # claims (crashes and retries) before it fails for good


@dataclass(frozen=True)
class Event:
    """A domain event, written in the transaction of its cause and delivered after commit
    (the outbox): build.uploaded, build.processed, build.failed, version.submitted, ..."""

    topic: str
    tenant_id: str | None
    subject_id: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    id: int | None = None  # given by the outbox


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ControlSetting:
    control_id: str
    enabled: bool


# --- the store's release model ---------------------------------------------------------------


class VersionStatus(enum.StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    LIVE = "live"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"  # was live, pulled by the store team
    SUPERSEDED = "superseded"  # was live, replaced everywhere by a newer live version


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"


class IssueStatus(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class User:
    id: str
    email: str
    name: str
    role: Role
    password_hash: str
    created_at: datetime
    tenant_id: str | None = None  # developers belong to one tenant; store staff to none
    disabled: bool = False


@dataclass(frozen=True)
class Targets:
    countries: tuple[str, ...] = ()
    vehicle_contexts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Version:
    id: str
    tenant_id: str
    app_id: str
    build_id: str
    version_code: int
    version_name: str
    status: VersionStatus
    created_at: datetime
    updated_at: datetime
    countries: tuple[str, ...] = ()
    vehicle_contexts: tuple[str, ...] = ()
    rollout_percentage: int = 100
    rollout_halted: bool = False
    rejection_reason: str | None = None
    signer_sha256: str | None = None


@dataclass(frozen=True)
class ValidationRun:
    id: str
    version_id: str
    build_id: str
    status: RunStatus
    created_at: datetime
    finished_at: datetime | None = None


@dataclass(frozen=True)
class VersionEvent:
    version_id: str
    action: str
    from_status: str | None
    to_status: str
    actor: str
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreIssue:
    id: str
    version_id: str
    title: str
    severity: str
    status: IssueStatus
    created_by: str
    created_at: datetime
    resolved_at: datetime | None = None


# --- managed signing keys ----------------------------------------------------------------------


class KeyState(enum.StrEnum):
    PENDING = "pending"  # record made, waiting for the keystore file (management API upload)
    READY = "ready"
    INVALID = "invalid"  # the uploaded file could not be opened; error_message says why
    DELETED = "deleted"  # material wiped; kept so builds still name it


@dataclass(frozen=True)
class SigningKey:
    id: str
    tenant_id: str
    name: str
    platform: Platform
    is_default: bool
    state: KeyState
    created_at: datetime
    created_by: str
    sealed_password: bytes
    alias: str | None = None
    sealed_key_password: bytes | None = None
    sealed_keystore: bytes | None = None
    cert_sha256: str | None = None
    subject: str | None = None
    not_after: datetime | None = None
    key_algorithm: str | None = None
    upload_key: str | None = None
    error_message: str | None = None
    app_id: str | None = None  # a legacy per-application signing file (management API)
    file_name: str | None = None  # the key file's name as the uploader gave it
    # iOS: an optional provisioning profile, sealed like the keystore, and its public facts
    sealed_profile: bytes | None = None
    profile_name: str | None = None
    profile_uuid: str | None = None
    profile_team_id: str | None = None
    profile_app_id: str | None = None  # the application-identifier entitlement
    profile_expires_at: datetime | None = None
    # Android key rotation (docs/signing-keys.md): the SigningCertificateLineage from
    # `apksigner rotate` (public: certificates and their links), the managed key the app was
    # first signed with (it signs v1/v2), and the API level the rotated key takes over at.
    lineage: bytes | None = None
    original_key_id: str | None = None
    rotation_min_sdk: int | None = None


# --- going out: people to notify, webhook endpoints, what was delivered --------------------------


class MemberRole(enum.StrEnum):
    COLLABORATOR = "collaborator"  # works on the app (or every app of the tenant)
    EMPLOYEE = "employee"  # a tester or user of the tenant's builds, in groups


@dataclass(frozen=True)
class Member:
    """A person who hears of a tenant's builds by email."""

    id: str
    tenant_id: str
    email: str
    name: str
    role: MemberRole
    groups: tuple[str, ...]
    language: str
    created_at: datetime
    app_id: str | None = None  # a collaborator of one app; None: of the whole tenant


class DeliveryStatus(enum.StrEnum):
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"  # no way to send (no SMTP configured): recorded, not retried


@dataclass(frozen=True)
class MailDelivery:
    """One notification email for one recipient, as it went."""

    id: str
    tenant_id: str
    build_id: str
    topic: str  # the event that caused it (build.processed, build.failed)
    recipient: str
    language: str
    status: DeliveryStatus
    attempts: int
    at: datetime
    error: str | None = None


@dataclass(frozen=True)
class Webhook:
    """An endpoint that receives the tenant's events, signed the Standard Webhooks way."""

    id: str
    tenant_id: str
    url: str
    sealed_secret: bytes  # the whsec_ secret, sealed under the master key (signing needs it)
    events: tuple[str, ...]  # topics; () means every event
    disabled: bool
    created_at: datetime


@dataclass(frozen=True)
class WebhookDelivery:
    """One attempt to deliver one event to one endpoint."""

    id: str
    webhook_id: str
    tenant_id: str
    event_id: int
    topic: str
    attempt: int
    at: datetime
    status_code: int | None = None  # None: no answer (refused, timed out)
    latency_ms: int | None = None
    error: str | None = None


# --- install links (the web portal's going out) -------------------------------------------------


@dataclass(frozen=True)
class InstallLink:
    """An unguessable, expiring, revocable link to a build's install page (``/i/<token>``).

    The token is kept twice: its SHA-256 to find the link by, and sealed under the master key
    so the portal can show the link again; the raw token is in no log and no event."""

    id: str
    tenant_id: str
    build_id: str
    token_hash: str
    sealed_token: bytes
    created_by: str  # "user:<id>", "token:<id>" or "operator"
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    revoked_by: str | None = None


@dataclass(frozen=True)
class InstallDownload:
    """One download of a build's file through an install link."""

    id: str
    tenant_id: str
    build_id: str  # the build whose file left (an AAB's link may hand out its universal APK)
    link_id: str
    at: datetime
    client_address: str
    user_agent: str
    file: str  # what was downloaded: apk, aab, ipa, universal-apk


@dataclass(frozen=True)
class Throttle:
    """Failed sign-ins counted under one key (an account, or a client address)."""

    key: str
    failures: int
    first_at: datetime  # the start of the counting window
    locked_until: datetime | None = None
