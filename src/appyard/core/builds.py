"""Builds as their owners see them: status, findings, and the signed download of the output."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from appyard import errors
from appyard.core import signing_keys, tenants, uploads
from appyard.core.ids import new_id
from appyard.core.models import (
    Build,
    BuildStatus,
    Finding,
    Job,
    JobState,
    KeyState,
    Plan,
    Platform,
    Principal,
    SigningKey,
    Stage,
)
from appyard.core.ports import BlobStore, Clock, UnitOfWork
from appyard.core.uploads import Ticket, UploadPolicy


@dataclass(frozen=True)
class Download:
    build: Build
    url: str
    expires_in: int


def get(uow: UnitOfWork, principal: Principal, *, start_time: int) -> Build:
    """A build of the caller's tenant by its start time (the vendors' job id)."""
    build = uow.builds.get_by_start(principal.tenant_id, start_time)
    if build is None:
        raise errors.JobNotFound(f"Job {start_time} not found.")
    return build


def status(
    uow: UnitOfWork, clock: Clock, store: BlobStore, principal: Principal, *, start_time: int
) -> tuple[Build, str | None]:
    """The build, after noticing bytes that reached the store; and a job to notify, if any."""
    build = get(uow, principal, start_time=start_time)
    job_id = None
    if build.progress is Stage.WAITING_FOR_UPLOAD:
        job_id = uploads.notice_received(uow, clock, store, key=build.source_key)
        build = get(uow, principal, start_time=start_time)  # queued, or refused
    return build, job_id


def findings(uow: UnitOfWork, principal: Principal, *, start_time: int) -> list[Finding]:
    return uow.findings.list(get(uow, principal, start_time=start_time).id)


def download(
    uow: UnitOfWork, store: BlobStore, principal: Principal, *, start_time: int, url_ttl: int
) -> Download:
    build = get(uow, principal, start_time=start_time)
    if build.status is not BuildStatus.COMPLETED or build.output_key is None:
        raise errors.JobNotCompleted(
            f"Job {start_time} is {build.status.value}; download is available once it completes."
        )
    url = store.presign_get(build.output_key, file_name=build.file_name, expires_in=url_ttl)
    return Download(build=build, url=url, expires_in=url_ttl)


# --- the management API: history, and builds named by (version, platform, start_time, name) ---

WORKER_TIMEOUT = timedelta(hours=1)
MAX_PAGE_SIZE = 50
MAX_PAGE = 1_000_000


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
class History:
    """One page of a configuration version's builds, and what the listing noticed."""

    builds: list[Build]
    total: int
    page: int
    page_size: int
    used: dict[Platform, int]  # builds counted against the weekly limit, per platform
    still_waiting: bool  # a build of this version is still processing
    keys: dict[str, SigningKey]  # the tenant's signing keys by id (deleted ones too)
    queued: list[str]  # jobs to notify after commit


def _holds_live_lease(uow: UnitOfWork, build: Build, clock: Clock) -> bool:
    now = clock.now()
    return any(
        job.state is JobState.RUNNING and job.lease_until is not None and job.lease_until >= now
        for job in uow.jobs.for_build(build.id)
    )


def _time_out(uow: UnitOfWork, clock: Clock, build: Build, timeout: timedelta) -> None:
    now = clock.now()
    for job in uow.jobs.for_build(build.id):
        if job.state in (JobState.WAITING, JobState.QUEUED, JobState.RUNNING):
            uow.jobs.save(
                replace(
                    job, state=JobState.FAILED, lease_owner=None, lease_until=None, updated_at=now
                )
            )
    minutes = int(timeout.total_seconds() // 60)
    uow.builds.save(
        replace(
            build,
            status=BuildStatus.FAILED,
            progress=Stage.DONE,
            updated_at=now,
            error_message=(
                f"The build made no progress within the worker timeout ({minutes} minutes) "
                "and was marked failed."
            ),
        )
    )


def history(
    uow: UnitOfWork,
    clock: Clock,
    store: BlobStore,
    principal: Principal,
    *,
    version: str,
    page: int = 1,
    page_size: int = 6,
    timeout: timedelta = WORKER_TIMEOUT,
) -> History:
    """A page of build history, newest first. On the way it queues builds whose bytes reached
    the store unnoticed, and fails in-progress builds that made no progress within the worker
    timeout and that no live worker holds."""
    ver = uploads.parse_version(version)
    if not 1 <= page <= MAX_PAGE:
        raise errors.InvalidField(f"page must be between 1 and {MAX_PAGE}.", field="page")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise errors.InvalidField(
            f"page_size must be between 1 and {MAX_PAGE_SIZE}.", field="page_size"
        )
    tenant_id = principal.tenant_id
    now = clock.now()
    queued: list[str] = []
    still_waiting = False
    for build in uow.builds.list_processing(tenant_id, ver):
        if build.progress is Stage.WAITING_FOR_UPLOAD:
            job_id = uploads.notice_received(uow, clock, store, key=build.source_key)
            if job_id:
                queued.append(job_id)
            still_waiting = True
        elif now - build.updated_at > timeout and not _holds_live_lease(uow, build, clock):
            _time_out(uow, clock, build, timeout)
        else:
            still_waiting = True
    since = now - uploads.WEEK
    return History(
        builds=uow.builds.list_for_version(tenant_id, ver, (page - 1) * page_size, page_size),
        total=uow.builds.count_for_version(tenant_id, ver),
        page=page,
        page_size=page_size,
        used={p: uow.builds.count_since(tenant_id, p, ver, since) for p in Platform},
        still_waiting=still_waiting,
        keys={k.id: k for k in uow.signing_keys.list(tenant_id)},
        queued=queued,
    )


def request_upload(
    uow: UnitOfWork,
    clock: Clock,
    store: BlobStore,
    policy: UploadPolicy,
    principal: Principal,
    *,
    file_name: str,
    platform: str,
    version: str,
    file_size: int | None,
    signing_key_id: str | None,
) -> Ticket:
    """:func:`uploads.request`, except that free tenants always skip signing-key metadata."""
    if tenants.get(uow, tenant_id=principal.tenant_id).plan is Plan.FREE:
        signing_key_id = "none"
    return uploads.request(
        uow,
        clock,
        store,
        policy,
        principal,
        file_name=file_name,
        platform=platform,
        version=version,
        file_size=file_size,
        signing_key_id=signing_key_id,
    )


def find(
    uow: UnitOfWork,
    principal: Principal,
    *,
    version: str,
    platform: str,
    start_time: int,
    file_name: str,
) -> Build:
    """The caller's build named the way build history shows it; deleted ones included."""
    ver = uploads.parse_version(version)
    plat = uploads.parse_platform(platform)
    name = file_name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    build = uow.builds.get_by_start(principal.tenant_id, start_time)
    if (
        build is None
        or build.config_version is not ver
        or build.platform is not plat
        or build.file_name != name
    ):
        raise BuildNotFound(
            f"No {plat.value} {ver.value} build with start_time {start_time} named {name!r}."
        )
    return build


def download_named(
    uow: UnitOfWork,
    store: BlobStore,
    principal: Principal,
    *,
    version: str,
    platform: str,
    start_time: int,
    file_name: str,
    url_ttl: int,
) -> Download:
    build = find(
        uow,
        principal,
        version=version,
        platform=platform,
        start_time=start_time,
        file_name=file_name,
    )
    if build.deleted:
        raise BuildDeleted(f"Build {start_time} was deleted; its output is gone.")
    return download(uow, store, principal, start_time=build.start_time, url_ttl=url_ttl)


def delete_named(
    uow: UnitOfWork,
    store: BlobStore,
    principal: Principal,
    *,
    version: str,
    platform: str,
    start_time: int,
    file_name: str,
) -> Build:
    """Remove the build's output (and its uploaded input) from storage; the build stays in
    history marked deleted. Deleting a deleted build again changes nothing."""
    build = find(
        uow,
        principal,
        version=version,
        platform=platform,
        start_time=start_time,
        file_name=file_name,
    )
    if build.deleted:
        return build
    if build.status is BuildStatus.PROCESSING:
        raise BuildBusy(f"Build {start_time} is still processing; delete it once it finishes.")
    if uow.versions.get_by_build(build.id) is not None:
        raise BuildInStore(f"Build {start_time} backs a store version and cannot be deleted.")
    deleted = replace(build, deleted=True, output_key=None)
    uow.builds.save(deleted)
    for key in (build.output_key, build.source_key):
        if key:
            store.delete(key)
    return deleted


def sign_named(
    uow: UnitOfWork,
    clock: Clock,
    principal: Principal,
    *,
    platform: str,
    file_name: str,
    start_time: int,
) -> str:
    """Queue a finished build to be processed again and signed with its application's legacy
    signing file (management API). Returns the job id to notify after commit.

    A completed build, or one that failed at its Signing stage, may be signed; it shows as
    processing (success null) until the new output is ready.
    """
    plat = uploads.parse_platform(platform)
    name = file_name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    build = uow.builds.get_by_start(principal.tenant_id, start_time)
    if build is None or build.platform is not plat or build.file_name != name:
        raise BuildNotFound(f"No {plat.value} build with start_time {start_time} named {name!r}.")
    if build.deleted:
        raise BuildDeleted(f"Build {start_time} was deleted; it cannot be signed.")
    if build.status is BuildStatus.PROCESSING:
        raise BuildBusy(f"Build {start_time} is still processing.")
    if build.status is BuildStatus.FAILED and not build.signing_error_message:
        raise errors.JobNotCompleted(
            f"Build {start_time} failed before signing ({build.error_message}); "
            "upload the app again."
        )
    if plat is Platform.IOS:
        raise SigningFileMissing("appyard signs APKs and AABs; iOS builds cannot be signed here.")
    key = (
        signing_keys.app_file(
            uow, tenant_id=principal.tenant_id, app_id=build.app_id, platform=plat
        )
        if build.app_id
        else None
    )
    if key is None:
        raise SigningFileMissing(
            "No code-signing file is configured for this build's application; upload one with "
            "upload_code_signing_file."
        )
    if key.state is not KeyState.READY:
        reason = key.error_message or (
            "its file has not been uploaded yet"
            if key.state is KeyState.PENDING
            else key.state.value
        )
        raise SigningFileMissing(f"The application's code-signing file cannot be used: {reason}")
    now = clock.now()
    uow.builds.save(
        replace(
            build,
            signing_key_id=key.id,
            status=BuildStatus.PROCESSING,
            progress=Stage.QUEUED,
            signed=False,
            error_message=None,
            signing_error_message=None,
            updated_at=now,
        )
    )
    job = Job(
        id=new_id("jb"),
        tenant_id=build.tenant_id,
        build_id=build.id,
        kind=uploads.JOB_KIND,
        state=JobState.QUEUED,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    uow.jobs.add(job)
    return job.id
