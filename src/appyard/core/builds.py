"""Builds: one record underneath every upload flow, made in one place (:func:`create`).

A build is one artifact a tenant sent and what became of it: its input object, the job that
works on it, its facts and findings, its output. Every dialect names builds its own way (a
job id, a four-part name, a version, a numeric build id); core speaks build ids, and each build
also has a ``number``, unique and increasing in its tenant, that dialects may show.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from appyard import errors
from appyard.core import controls, identity, jobs, outbox, signing_keys, tenants, uploads
from appyard.core.context import Services
from appyard.core.ids import new_id
from appyard.core.models import (
    Actor,
    Build,
    BuildStatus,
    ConfigVersion,
    Finding,
    Job,
    JobState,
    KeyState,
    Part,
    Plan,
    Platform,
    SigningKey,
    Stage,
    Upload,
    UploadPurpose,
    UploadState,
)
from appyard.core.policy import UploadPolicy
from appyard.core.ports import BlobInfo, BlobStore, Clock, SignedRequest, UnitOfWork

WEEK = timedelta(days=7)
WORKER_TIMEOUT = timedelta(hours=1)
MAX_PAGE_SIZE = 50
MAX_PAGE = 1_000_000
META_LIMIT = 8 * 1024  # bytes of client metadata kept per build (names, commit, description)


class BuildNotFound(errors.NotFound):
    """Build not found."""

    code = "build.not_found"


class BuildDeleted(errors.NotFound):
    """The build was deleted."""

    code = "build.deleted"


class BuildBusy(errors.Conflict):
    """The build is still processing."""

    code = "build.processing"


class BuildInStore(errors.Conflict):
    """The build backs a store version and cannot be deleted."""

    code = "build.in_store_version"


class SigningFileMissing(errors.BadRequest):
    """The application has no usable code-signing file."""

    code = "signing_file.missing"


@dataclass(frozen=True)
class Download:
    build: Build
    request: SignedRequest
    expires_in: int

    @property
    def url(self) -> str:
        return self.request.url


# --- making builds ------------------------------------------------------------------------------


def object_key(
    tenant_id: str, platform: Platform, version: ConfigVersion, number: int, file_name: str
) -> str:
    return f"{tenant_id}/uploads/{platform.value}/{version.value}/{number}/{file_name}"


def output_key(build: Build) -> str:
    return (
        f"{build.tenant_id}/outputs/{build.platform.value}/{build.config_version.value}/"
        f"{build.number}/{build.file_name}"
    )


def icon_key(build: Build) -> str:
    """Where a build's icon is kept (a PNG; a custom package's may be a JPEG)."""
    return f"{build.tenant_id}/icons/{build.id}"


def page_url(public_url: str, build: Build) -> str:
    """The build's page in the portal: what emails and webhook receivers link to."""
    return f"{public_url.rstrip('/')}/builds/{build.id}"


def _meta(meta: dict[str, Any] | None) -> dict[str, Any]:
    clean = {k: v for k, v in (meta or {}).items() if v is not None}
    if len(repr(clean)) > META_LIMIT:
        raise errors.InvalidField("The build's metadata is too long.", field="meta")
    return clean


def create(
    uow: UnitOfWork,
    clock: Clock,
    *,
    tenant_id: str,
    platform: Platform,
    config_version: ConfigVersion,
    file_name: str,
    source: str,
    job_kind: str,
    waiting: bool = True,
    app_id: str | None = None,
    signing_key_id: str | None = None,
    meta: dict[str, Any] | None = None,
    **identity_fields: Any,
) -> tuple[Build, Job]:
    """The one place a build and its job are made: a number unique in the tenant (the current
    second, or one past the tenant's latest when that is taken), its input key, and a job of
    ``job_kind`` that waits for the input (``waiting``) or is queued now."""
    now = clock.now()
    second = int(now.timestamp())
    clean_meta = _meta(meta)
    for attempt in range(20):
        last = uow.builds.last_number(tenant_id)
        number = max(second, (last or 0) + 1) + attempt
        build = Build(
            id=new_id("bd"),
            tenant_id=tenant_id,
            number=number,
            platform=platform,
            config_version=config_version,
            file_name=file_name,
            source_key=object_key(tenant_id, platform, config_version, number, file_name),
            status=BuildStatus.PROCESSING,
            progress=Stage.WAITING_FOR_UPLOAD if waiting else Stage.QUEUED,
            created_at=now,
            updated_at=now,
            signing_key_id=signing_key_id,
            app_id=app_id,
            source=source,
            meta=clean_meta,
            **identity_fields,
        )
        try:
            uow.builds.add(build)
        except errors.Conflict:  # a concurrent upload took the same number: take the next
            continue
        job = jobs.create(
            uow, clock, tenant_id=tenant_id, kind=job_kind, build_id=build.id, waiting=waiting
        )
        return build, job
    raise errors.Conflict("Could not allocate a build number; try again.")


def check_limits(
    uow: UnitOfWork, clock: Clock, *, tenant_id: str, platform: Platform, version: ConfigVersion
) -> None:
    """The tenant's plan limits on new builds: concurrent and weekly."""
    tenant = tenants.get(uow, tenant_id=tenant_id)
    limit = tenants.limits(tenant)
    if limit.concurrent_builds is not None:
        active = uow.builds.count_processing(tenant.id)
        if active >= limit.concurrent_builds:
            raise errors.ConcurrentBuildLimit(
                f"Concurrent build limit reached ({active} of {limit.concurrent_builds} "
                "builds in progress). Wait for an in-progress job to finish."
            )
    if limit.weekly_builds is not None:
        recent = uow.builds.count_since(tenant.id, platform, version, clock.now() - WEEK)
        if recent >= limit.weekly_builds:
            raise errors.WeeklyBuildLimit(
                f"Weekly build limit reached for {platform.value}/{version.value} "
                f"({recent} of {limit.weekly_builds} in the last 7 days)."
            )


@dataclass(frozen=True)
class BuildTicket:
    build: Build
    ticket: uploads.Ticket


def request_upload(
    uow: UnitOfWork,
    clock: Clock,
    store: BlobStore,
    policy: UploadPolicy,
    actor: Actor,
    *,
    file_name: str,
    platform: str,
    version: str,
    file_size: int | None,
    signing_key_id: str | None,
    source: str,
    job_kind: str = jobs.PROCESS_BUILD,
    app_id: str | None = None,
    meta: dict[str, Any] | None = None,
    max_size: int | None = None,
    content_type: str | None = None,
    multipart_allowed: bool = True,
) -> BuildTicket:
    """A build waiting for its artifact, and the signed request(s) that deliver it. Every rule
    is checked before anything is made (permission, name, size, platform, version, signing
    key, controls for a build that is processed, plan limits). ``job_kind`` says what happens
    once it arrives; ``app_id`` names the app it must be of (a project the client named);
    ``max_size`` bounds it below the server's limit."""
    identity.require_scope(actor, identity.SCOPE_BUILDS, label="Builds")
    tenant_id = actor.tenant
    name = uploads.clean_file_name(file_name)
    plat = uploads.parse_platform(platform)
    ver = uploads.parse_version(version)
    extension = name.rsplit(".", 1)[1]
    if uploads.EXTENSION_PLATFORM[extension] is not plat:
        raise errors.PlatformMismatch(
            f"A .{extension} file is for {uploads.EXTENSION_PLATFORM[extension].value}, "
            f"not {plat.value}."
        )
    limit = min(max_size or policy.max_size, policy.max_size)
    uploads.check_size(file_size, limit)
    if tenants.get(uow, tenant_id=tenant_id).plan is Plan.FREE:
        signing_key_id = "none"  # signing keys come with the Team plan
    key_id = signing_keys.resolve(uow, tenant_id=tenant_id, platform=plat, requested=signing_key_id)
    if job_kind == jobs.PROCESS_BUILD and not controls.enabled(
        uow, tenant_id=tenant_id, platform=plat, version=ver
    ):
        raise errors.NoEnabledControls(
            f"No protection or detection control is enabled for {plat.value}/{ver.value}."
        )
    check_limits(uow, clock, tenant_id=tenant_id, platform=plat, version=ver)
    build, _ = create(
        uow,
        clock,
        tenant_id=tenant_id,
        platform=plat,
        config_version=ver,
        file_name=name,
        source=source,
        job_kind=job_kind,
        signing_key_id=key_id,
        app_id=app_id,
        meta=meta,
    )
    ticket = uploads.open_upload(
        uow,
        clock,
        store,
        policy,
        tenant_id=tenant_id,
        purpose=UploadPurpose.BUILD,
        subject_id=build.id,
        key=build.source_key,
        file_name=name,
        max_size=limit,
        declared_size=file_size,
        content_type=content_type,
        multipart_allowed=multipart_allowed,
    )
    return BuildTicket(build=build, ticket=ticket)


# --- arrivals of a build's input (core.arrivals dispatches here) ---------------------------------


def input_arrived(svc: Services, uow: UnitOfWork, upload: Upload, info: BlobInfo) -> None:
    """The build's input is stored: record its size, queue its jobs."""
    build = uow.builds.get(upload.subject_id)
    if build is None or build.deleted or build.status is not BuildStatus.PROCESSING:
        svc.store.delete(upload.key)  # its build went away meanwhile: keep nothing
        return
    now = svc.clock.now()
    fields: dict[str, Any] = {"size": info.size, "progress": Stage.QUEUED, "updated_at": now}
    if info.sha256:
        fields["sha256"] = info.sha256
    uow.builds.save(replace(build, **fields))
    jobs.release(uow, svc.clock, build_id=build.id)
    outbox.emit(
        uow,
        svc.clock,
        "build.uploaded",
        tenant_id=build.tenant_id,
        subject_id=build.id,
        number=build.number,
        size=info.size,
        source=build.source,
    )


def input_lost(svc: Services, uow: UnitOfWork, upload: Upload, reason: str) -> None:
    """The build's input will never arrive: the build fails with the reason."""
    build = uow.builds.get(upload.subject_id)
    jobs.cancel_waiting(uow, svc.clock, build_id=upload.subject_id)
    if build is not None and build.status is BuildStatus.PROCESSING:
        jobs.finished(uow, svc.clock, build, status=BuildStatus.FAILED, error_message=reason)


# --- reading ------------------------------------------------------------------------------------


def get(uow: UnitOfWork, actor: Actor, *, build_id: str) -> Build:
    """A build of the actor's tenant (another tenant's is not found)."""
    build = uow.builds.get(build_id)
    if build is None or build.tenant_id != actor.tenant:
        raise BuildNotFound(f"Build {build_id} not found.")
    return build


def by_number(uow: UnitOfWork, actor: Actor, *, number: int) -> Build:
    """A build of the actor's tenant by its number."""
    build = uow.builds.get_by_number(actor.tenant, number)
    if build is None:
        raise errors.JobNotFound(f"Job {number} not found.")
    return build


def by_ref(uow: UnitOfWork, actor: Actor, *, ref: str) -> Build:
    """A build of the actor's tenant by its id (``bd_...``) or its number (ASCII digits, the
    automation dialect's ``job_id``)."""
    if ref.isascii() and ref.isdigit() and len(ref) <= 18:
        build = uow.builds.get_by_number(actor.tenant, int(ref))
        if build is None:
            raise BuildNotFound(f"Build {ref} not found.")
        return build
    return get(uow, actor, build_id=ref)


@dataclass(frozen=True)
class UploadProgress:
    """Where a build's input upload stands: the parts the store holds, and fresh signed
    requests for the parts it still lacks (a client resuming an interrupted upload)."""

    build: Build
    upload: Upload
    parts: list[Part]
    missing: dict[int, SignedRequest]
    expires_in: int


def upload_progress(
    uow: UnitOfWork, store: BlobStore, policy: UploadPolicy, actor: Actor, *, build_id: str
) -> UploadProgress:
    """The build's input upload as the store sees it. Parts are listed only while the
    multipart upload is pending; signed requests are made for the missing ones."""
    build = get(uow, actor, build_id=build_id)
    upload = uow.uploads.get_for_subject(build.id)
    if upload is None:
        raise errors.UploadNotFound(f"Build {build.number} has no upload.")
    parts: list[Part] = []
    missing: dict[int, SignedRequest] = {}
    if upload.multipart and upload.state is UploadState.PENDING:
        assert upload.store_upload_id is not None and upload.total_parts is not None
        parts = uploads.received_parts(store, upload)
        have = {p.number for p in parts}
        for n in range(1, upload.total_parts + 1):
            if n not in have:
                missing[n] = store.presign_part(
                    upload.key,
                    upload.store_upload_id,
                    n,
                    max_size=upload.chunk_size or policy.chunk_size,
                    expires_in=policy.url_ttl,
                )
    return UploadProgress(
        build=build, upload=upload, parts=parts, missing=missing, expires_in=policy.url_ttl
    )


def upload_of(uow: UnitOfWork, actor: Actor, *, build_id: str) -> Upload | None:
    """How the build's input arrived (or is arriving): its latest upload."""
    return uow.uploads.get_for_subject(get(uow, actor, build_id=build_id).id)


def findings(uow: UnitOfWork, actor: Actor, *, build_id: str) -> list[Finding]:
    return uow.findings.list(get(uow, actor, build_id=build_id).id)


def download(
    uow: UnitOfWork, store: BlobStore, actor: Actor, *, build_id: str, url_ttl: int
) -> Download:
    """A signed request for the build's output."""
    build = get(uow, actor, build_id=build_id)
    if build.deleted:
        raise BuildDeleted(f"Build {build.number} was deleted; its output is gone.")
    if build.status is not BuildStatus.COMPLETED or build.output_key is None:
        raise errors.JobNotCompleted(
            f"Job {build.number} is {build.status.value}; download is available once it completes."
        )
    request = store.presign_get(build.output_key, file_name=build.file_name, expires_in=url_ttl)
    return Download(build=build, request=request, expires_in=url_ttl)


def download_input(
    uow: UnitOfWork, store: BlobStore, actor: Actor, *, build_id: str, url_ttl: int
) -> Download:
    """A signed request for the build's input, the file as it was uploaded."""
    build = get(uow, actor, build_id=build_id)
    if build.deleted:
        raise BuildDeleted(f"Build {build.number} was deleted; its files are gone.")
    upload = uow.uploads.get_for_subject(build.id)
    if upload is None or upload.state is not UploadState.RECEIVED:
        raise errors.JobNotCompleted(f"Build {build.number}'s file has not arrived.")
    request = store.presign_get(build.source_key, file_name=build.file_name, expires_in=url_ttl)
    return Download(build=build, request=request, expires_in=url_ttl)


ICON_LIMIT = 2 * 1024 * 1024


def icon_request(store: BlobStore, build: Build | None, *, expires_in: int) -> SignedRequest | None:
    """A signed, expiring GET of the build's icon; None when it has none."""
    if build is None or build.deleted or store.stat(icon_key(build)) is None:
        return None
    return store.presign_get(icon_key(build), file_name="icon.png", expires_in=expires_in)


def read_icon(store: BlobStore, build: Build) -> bytes | None:
    """The build's icon as stored by its inspection (None without one)."""
    key = icon_key(build)
    info = store.stat(key)
    if info is None or info.size > ICON_LIMIT:
        return None
    with store.open_read(key) as fh:
        return fh.read(ICON_LIMIT)


def icon(uow: UnitOfWork, store: BlobStore, actor: Actor, *, build_id: str) -> bytes | None:
    return read_icon(store, get(uow, actor, build_id=build_id))


@dataclass(frozen=True)
class AppBuilds:
    """One page of an app's builds, newest first."""

    builds: list[Build]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def for_app(
    uow: UnitOfWork, actor: Actor, *, app_id: str, page: int = 1, page_size: int = 25
) -> AppBuilds:
    """An app of the actor's tenant, one page of its builds."""
    app = uow.apps.get(app_id)
    if app is None or app.tenant_id != actor.tenant:
        raise errors.NotFound(f"No application {app_id!r}.")
    if not 1 <= page <= MAX_PAGE:
        raise errors.InvalidField(f"page must be between 1 and {MAX_PAGE}.", field="page")
    page_size = max(1, min(page_size, MAX_PAGE_SIZE))
    return AppBuilds(
        builds=uow.builds.list_for_app(app.id, (page - 1) * page_size, page_size),
        total=uow.builds.count_for_app(app.id),
        page=page,
        page_size=page_size,
    )


def recent(uow: UnitOfWork, actor: Actor, *, limit: int = 10) -> list[Build]:
    """The tenant's newest builds, whatever their app (one still processing has none yet)."""
    return uow.builds.recent(actor.tenant, max(1, min(limit, MAX_PAGE_SIZE)))


def jobs_of(uow: UnitOfWork, actor: Actor, *, build_id: str) -> list[Job]:
    """The build's jobs, oldest first (its pipeline runs)."""
    return uow.jobs.for_build(get(uow, actor, build_id=build_id).id)


def signing_key_of(uow: UnitOfWork, actor: Actor, *, build: Build) -> SigningKey | None:
    """The managed key the build is (to be) signed with, for showing its public facts."""
    if build.signing_key_id is None or build.tenant_id != actor.tenant:
        return None
    return uow.signing_keys.get(build.signing_key_id)


@dataclass(frozen=True)
class Page:
    """One page of a configuration version's builds, newest first, and the tenant's use."""

    builds: list[Build]
    total: int
    page: int
    page_size: int
    used: dict[Platform, int]  # builds counted against the weekly limit, per platform
    still_waiting: bool  # a build of this version is still processing
    keys: dict[str, SigningKey]  # the tenant's signing keys by id (deleted ones too)


def page(
    uow: UnitOfWork,
    clock: Clock,
    actor: Actor,
    *,
    version: str,
    page: int = 1,
    page_size: int = 6,
) -> Page:
    ver = uploads.parse_version(version)
    if not 1 <= page <= MAX_PAGE:
        raise errors.InvalidField(f"page must be between 1 and {MAX_PAGE}.", field="page")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise errors.InvalidField(
            f"page_size must be between 1 and {MAX_PAGE_SIZE}.", field="page_size"
        )
    tenant_id = actor.tenant
    since = clock.now() - WEEK
    return Page(
        builds=uow.builds.list_for_version(tenant_id, ver, (page - 1) * page_size, page_size),
        total=uow.builds.count_for_version(tenant_id, ver),
        page=page,
        page_size=page_size,
        used={p: uow.builds.count_since(tenant_id, p, ver, since) for p in Platform},
        still_waiting=bool(uow.builds.list_processing(tenant_id, ver)),
        keys={k.id: k for k in uow.signing_keys.list(tenant_id)},
    )


# --- changing builds ----------------------------------------------------------------------------


def may_change(actor: Actor) -> None:
    """Changing builds (deleting, re-signing) needs the Builds permission."""
    identity.require_scope(actor, identity.SCOPE_BUILDS, label="Builds")


def may_resign(uow: UnitOfWork, actor: Actor) -> None:
    """Re-signing with an app's signing file needs the Builds permission and a signing plan."""
    may_change(actor)
    signing_keys.require_plan(uow, tenant_id=actor.tenant)


def delete(svc: Services, uow: UnitOfWork, actor: Actor, *, build_id: str) -> Build:
    """Remove the build's input and output from storage; the build stays in history marked
    deleted. A build still waiting for its input is deleted too (its upload is cancelled and
    its signed URLs stop working, freeing its slot); one being processed is not. Deleting a
    deleted build again changes nothing."""
    may_change(actor)
    build = get(uow, actor, build_id=build_id)
    if build.deleted:
        return build
    upload = uow.uploads.get_for_subject(build.id)
    if build.status is BuildStatus.PROCESSING:
        if build.progress is not Stage.WAITING_FOR_UPLOAD or upload is None:
            raise BuildBusy(
                f"Build {build.number} is still processing; delete it once it finishes."
            )
        reason = "The build was deleted before its upload arrived."
        uploads.discard(svc.store, upload)
        if uploads.end(uow, upload, UploadState.ABORTED, reason):
            input_lost(svc, uow, upload, reason)
        build = get(uow, actor, build_id=build_id)
    if uow.versions.get_by_build(build.id) is not None:
        raise BuildInStore(f"Build {build.number} backs a store version and cannot be deleted.")
    deleted = replace(build, deleted=True, output_key=None, updated_at=svc.clock.now())
    uow.builds.save(deleted)
    for key in (build.output_key, build.source_key, icon_key(build)):
        if key:
            svc.store.delete(key)
    outbox.emit(uow, svc.clock, "build.deleted", tenant_id=build.tenant_id, subject_id=build.id)
    return deleted


def resign(uow: UnitOfWork, clock: Clock, actor: Actor, *, build_id: str) -> Job:
    """Process a finished build again, signed with its app's code-signing file (an IPA with
    the file's PKCS#12 and the IPA's own provisioning profile, which must list its
    certificate).

    A completed build, or one that failed at its Signing stage, may be signed; it shows as
    processing until the new output is ready.
    """
    may_resign(uow, actor)
    build = get(uow, actor, build_id=build_id)
    if build.deleted:
        raise BuildDeleted(f"Build {build.number} was deleted; it cannot be signed.")
    if build.status is BuildStatus.PROCESSING:
        raise BuildBusy(f"Build {build.number} is still processing.")
    if build.status is BuildStatus.FAILED and not build.signing_error_message:
        raise errors.JobNotCompleted(
            f"Build {build.number} failed before signing ({build.error_message}); "
            "upload the app again."
        )
    key = (
        signing_keys.app_file(
            uow, tenant_id=build.tenant_id, app_id=build.app_id, platform=build.platform
        )
        if build.app_id
        else None
    )
    if key is None:
        raise SigningFileMissing(
            "No code-signing file is configured for this build's application; upload one first."
        )
    if key.state is not KeyState.READY:
        reason = key.error_message or (
            "its file has not been uploaded yet"
            if key.state is KeyState.PENDING
            else key.state.value
        )
        raise SigningFileMissing(f"The application's code-signing file cannot be used: {reason}")
    uow.builds.save(
        replace(
            build,
            signing_key_id=key.id,
            status=BuildStatus.PROCESSING,
            progress=Stage.QUEUED,
            signed=False,
            error_message=None,
            signing_error_message=None,
            updated_at=clock.now(),
        )
    )
    return jobs.create(
        uow, clock, tenant_id=build.tenant_id, kind=jobs.PROCESS_BUILD, build_id=build.id
    )


def time_out_stalled(
    uow: UnitOfWork, clock: Clock, *, timeout: timedelta = WORKER_TIMEOUT, limit: int = 100
) -> int:
    """Fail processing builds that made no progress within ``timeout`` and that no live worker
    holds (a job queued while no worker ran, for instance). Input that never arrived is the
    upload sweep's; builds waiting for it are left alone."""
    now = clock.now()
    count = 0
    for build in uow.builds.stalled(now - timeout, limit):
        if build.progress is Stage.WAITING_FOR_UPLOAD or _holds_live_lease(uow, build, now):
            continue
        jobs.abandon(uow, clock, build_id=build.id)
        minutes = int(timeout.total_seconds() // 60)
        jobs.finished(
            uow,
            clock,
            build,
            status=BuildStatus.FAILED,
            error_message=(
                f"The build made no progress within the worker timeout ({minutes} minutes) "
                "and was marked failed."
            ),
        )
        count += 1
    return count


def _holds_live_lease(uow: UnitOfWork, build: Build, now: datetime) -> bool:
    return any(
        job.state is JobState.RUNNING and job.lease_until is not None and job.lease_until >= now
        for job in uow.jobs.for_build(build.id)
    )
