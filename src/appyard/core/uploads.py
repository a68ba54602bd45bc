"""Uploads: how a build's bytes arrive (signed single PUT, or signed multipart parts).

One build record underneath every flow. ``request`` checks every rule before anything is
created (plan, limits, controls, name, size, platform, version, signing key), then makes the
build, its upload and its job (waiting for bytes) in the caller's transaction. The bytes go
straight to the blob store; ``notice_received`` (called by the local store as a PUT lands, and
on status polling for any store) or ``complete_multipart`` turns the waiting job into a queued
one. Nothing half-written ever becomes a build's input: stores publish objects atomically.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from appyard import errors
from appyard.core import controls, signing_keys, tenants
from appyard.core.ids import new_id
from appyard.core.models import (
    Build,
    BuildStatus,
    ConfigVersion,
    Job,
    JobState,
    Platform,
    Principal,
    Stage,
    Upload,
    UploadState,
)
from appyard.core.ports import BlobStore, Clock, UnitOfWork

VERSION_ALIASES: dict[str, ConfigVersion] = {
    "dev": ConfigVersion.DEVELOPMENT,
    "development": ConfigVersion.DEVELOPMENT,
    "stg": ConfigVersion.STAGING,
    "staging": ConfigVersion.STAGING,
    "prod": ConfigVersion.PRODUCTION,
    "production": ConfigVersion.PRODUCTION,
}
EXTENSION_PLATFORM: dict[str, Platform] = {
    "apk": Platform.ANDROID,
    "aab": Platform.ANDROID,
    "ipa": Platform.IOS,
}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+()\-]{0,199}\.(apk|aab|ipa)$")
WEEK = timedelta(days=7)
JOB_KIND = "build.process"


@dataclass(frozen=True)
class UploadPolicy:
    max_size: int
    multipart_threshold: int
    chunk_size: int
    url_ttl: int
    expiry_seconds: int


@dataclass(frozen=True)
class Ticket:
    """What a client needs to send its bytes."""

    build: Build
    upload: Upload
    expires_in: int
    upload_url: str | None = None
    part_urls: tuple[str, ...] = ()


def parse_version(value: str) -> ConfigVersion:
    version = VERSION_ALIASES.get(value.strip().lower())
    if version is None:
        raise errors.InvalidField(
            "version must be one of dev, development, stg, staging, prod, production.",
            field="version",
        )
    return version


def parse_platform(value: str) -> Platform:
    try:
        return Platform(value.strip().lower())
    except ValueError:
        raise errors.InvalidField("platform must be android or ios.", field="platform") from None


def clean_file_name(value: str) -> str:
    """The base name of ``value``; only a plain name with lowercase .apk/.aab/.ipa passes."""
    base = value.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not _SAFE_NAME.match(base):
        raise errors.InvalidFileName(
            "file_name must be a plain file name ending in lowercase .apk, .aab or .ipa."
        )
    return base


def object_key(
    tenant_id: str, platform: Platform, version: ConfigVersion, start_time: int, file_name: str
) -> str:
    return f"{tenant_id}/uploads/{platform.value}/{version.value}/{start_time}/{file_name}"


def insert_build(
    uow: UnitOfWork, clock: Clock, tenant_id: str, make: Callable[[int], Build]
) -> Build:
    """Add the build ``make(start_time)`` with a start time unique in its tenant: the current
    second, or one past the tenant's latest when that is already taken."""
    now = int(clock.now().timestamp())
    for attempt in range(20):
        last = uow.builds.last_start(tenant_id)
        build = make(max(now, (last or 0) + 1) + attempt)
        try:
            uow.builds.add(build)
        except errors.Conflict:  # a concurrent upload took the same second: take the next
            continue
        return build
    raise errors.Conflict("Could not allocate a build start time; try again.")


def output_key(build: Build) -> str:
    return (
        f"{build.tenant_id}/outputs/{build.platform.value}/{build.config_version.value}/"
        f"{build.start_time}/{build.file_name}"
    )


def _check_limits(
    uow: UnitOfWork, clock: Clock, principal: Principal, platform: Platform, version: ConfigVersion
) -> None:
    tenant = tenants.get(uow, tenant_id=principal.tenant_id)
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


def request(
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
    name = clean_file_name(file_name)
    plat = parse_platform(platform)
    ver = parse_version(version)
    extension = name.rsplit(".", 1)[1]
    if EXTENSION_PLATFORM[extension] is not plat:
        raise errors.PlatformMismatch(
            f"A .{extension} file is for {EXTENSION_PLATFORM[extension].value}, not {plat.value}."
        )
    if file_size is not None:
        if file_size <= 0:
            raise errors.InvalidField(
                "file_size must be a positive number of bytes.", field="file_size"
            )
        if file_size > policy.max_size:
            raise errors.UploadTooLarge(
                f"file_size {file_size} is over the {policy.max_size} byte limit."
            )
    key_id = signing_keys.resolve(
        uow, tenant_id=principal.tenant_id, platform=plat, requested=signing_key_id
    )
    if not controls.enabled(uow, tenant_id=principal.tenant_id, platform=plat, version=ver):
        raise errors.NoEnabledControls(
            f"No protection or detection control is enabled for {plat.value}/{ver.value}."
        )
    _check_limits(uow, clock, principal, plat, ver)

    now = clock.now()
    build = insert_build(
        uow,
        clock,
        principal.tenant_id,
        lambda start: Build(
            id=new_id("bd"),
            tenant_id=principal.tenant_id,
            start_time=start,
            platform=plat,
            config_version=ver,
            file_name=name,
            source_key=object_key(principal.tenant_id, plat, ver, start, name),
            status=BuildStatus.PROCESSING,
            progress=Stage.WAITING_FOR_UPLOAD,
            created_at=now,
            updated_at=now,
            signing_key_id=key_id,
        ),
    )
    build_id, key = build.id, build.source_key
    multipart = file_size is not None and file_size >= policy.multipart_threshold
    store_upload_id = store.create_multipart(key) if multipart else None
    total_parts = math.ceil(file_size / policy.chunk_size) if multipart and file_size else None
    upload = Upload(
        id=new_id("up"),
        tenant_id=principal.tenant_id,
        build_id=build_id,
        key=key,
        file_name=name,
        declared_size=file_size,
        multipart=multipart,
        store_upload_id=store_upload_id,
        total_parts=total_parts,
        chunk_size=policy.chunk_size if multipart else None,
        state=UploadState.PENDING,
        created_at=now,
        expires_at=now + timedelta(seconds=policy.expiry_seconds),
    )
    job = Job(
        id=new_id("jb"),
        tenant_id=principal.tenant_id,
        build_id=build_id,
        kind=JOB_KIND,
        state=JobState.WAITING,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    uow.uploads.add(upload)
    uow.jobs.add(job)
    if multipart:
        assert store_upload_id is not None and total_parts is not None
        urls = tuple(
            store.presign_part(
                key, store_upload_id, n, max_size=policy.chunk_size, expires_in=policy.url_ttl
            )
            for n in range(1, total_parts + 1)
        )
        return Ticket(build=build, upload=upload, expires_in=policy.url_ttl, part_urls=urls)
    url = store.presign_put(key, max_size=file_size or policy.max_size, expires_in=policy.url_ttl)
    return Ticket(build=build, upload=upload, expires_in=policy.url_ttl, upload_url=url)


def build_of(uow: UnitOfWork, *, key: str) -> Build:
    """The build an upload at ``key`` feeds (after the caller checked ownership)."""
    upload = uow.uploads.get_by_key(key)
    build = uow.builds.get(upload.build_id) if upload else None
    if build is None:
        raise errors.UploadNotFound("No upload at this file_path.")
    return build


def _mark_received(uow: UnitOfWork, clock: Clock, upload: Upload, size: int) -> str:
    """Record the arrival of all bytes; returns the job id to notify after commit."""
    now = clock.now()
    if not uow.uploads.leave_pending(upload.id, UploadState.RECEIVED, size):
        return ""  # noticed at the same moment elsewhere: that request queues the job
    build = uow.builds.get(upload.build_id)
    assert build is not None
    uow.builds.save(replace(build, size=size, progress=Stage.QUEUED, updated_at=now))
    job_id = ""
    for job in uow.jobs.for_build(build.id):
        if job.state is JobState.WAITING:
            uow.jobs.save(replace(job, state=JobState.QUEUED, updated_at=now))
            job_id = job.id
    return job_id


def notice_received(uow: UnitOfWork, clock: Clock, store: BlobStore, *, key: str) -> str | None:
    """If a single-PUT upload's object is now in the store, queue its job (returns its id)."""
    upload = uow.uploads.get_by_key(key)
    if upload is None or upload.state is not UploadState.PENDING or upload.multipart:
        return None
    info = store.stat(key)
    if info is None:
        return None
    if upload.declared_size is not None and info.size > upload.declared_size:
        # A presigned S3 PUT cannot bound the body: refuse here what the URL could not.
        store.delete(key)
        _give_up(
            uow,
            clock,
            upload,
            UploadState.ABORTED,
            f"The uploaded file has {info.size} bytes, more than the declared file_size "
            f"{upload.declared_size}; it was removed.",
        )
        return None
    return _mark_received(uow, clock, upload, info.size) or None


def notice_arrived(
    uow: UnitOfWork, clock: Clock, store: BlobStore, *, limit: int = 100
) -> list[str]:
    """The periodic sweep's half of noticing: queue pending single uploads whose object is in
    the store though nobody told appyard (a store that cannot call back, a client that never
    polls). Returns the job ids to notify after commit."""
    queued = []
    for upload in uow.uploads.list_pending(limit=limit):
        if upload.multipart:  # assembled only by complete_multipart
            continue
        job_id = notice_received(uow, clock, store, key=upload.key)
        if job_id:
            queued.append(job_id)
    return queued


def _owned_upload(uow: UnitOfWork, principal: Principal, file_path: str, upload_id: str) -> Upload:
    if not file_path.startswith(f"{principal.tenant_id}/"):
        raise errors.WrongTenant("The upload path does not belong to this tenant.")
    upload = uow.uploads.get_by_key(file_path)
    if upload is None:
        raise errors.UploadNotFound("No upload at this file_path.")
    if upload.tenant_id != principal.tenant_id:
        raise errors.WrongTenant("The upload path does not belong to this tenant.")
    if not upload.multipart or upload.store_upload_id != upload_id:
        raise errors.InvalidParts("upload_id does not match the upload at this file_path.")
    if upload.state is not UploadState.PENDING:
        raise errors.UploadNotPending(f"The upload is already {upload.state.value}.")
    return upload


def _normal_etag(etag: str) -> str:
    return etag.strip().strip('"')


def complete_multipart(
    uow: UnitOfWork,
    clock: Clock,
    store: BlobStore,
    principal: Principal,
    *,
    file_path: str,
    upload_id: str,
    parts: list[tuple[int, str]],
) -> str:
    """Check the client's part list against what was stored, then assemble the object.

    Returns the job id to notify once the caller has committed.
    """
    upload = _owned_upload(uow, principal, file_path, upload_id)
    assert upload.store_upload_id is not None and upload.total_parts is not None
    numbers = [n for n, _ in parts]
    if numbers != sorted(set(numbers)):
        raise errors.InvalidParts("Parts must be listed once each, in increasing PartNumber order.")
    stored = {p.number: p for p in store.list_parts(upload.key, upload.store_upload_id)}
    expected = list(range(1, upload.total_parts + 1))
    missing = [n for n in expected if n not in stored]
    if missing:
        raise errors.InvalidParts(
            f"Parts not uploaded yet: {', '.join(map(str, missing))}.", missing_parts=missing
        )
    if numbers != expected:
        raise errors.InvalidParts(
            f"The part list must name parts 1 to {upload.total_parts} in order."
        )
    wrong = [n for n, etag in parts if _normal_etag(etag) != _normal_etag(stored[n].etag)]
    if wrong:
        raise errors.InvalidParts(
            f"ETag does not match the stored part for part(s) {', '.join(map(str, wrong))}.",
            wrong_parts=wrong,
        )
    chunk = upload.chunk_size or 0
    short = [n for n in expected[:-1] if stored[n].size != chunk]
    if short:
        raise errors.InvalidParts(
            f"Every part but the last must be {chunk} bytes; part(s) "
            f"{', '.join(map(str, short))} are not."
        )
    total = sum(stored[n].size for n in expected)
    if upload.declared_size is not None and total != upload.declared_size:
        raise errors.InvalidParts(
            f"The parts hold {total} bytes but file_size was {upload.declared_size}."
        )
    info = store.complete_multipart(
        upload.key, upload.store_upload_id, [stored[n] for n in expected]
    )
    return _mark_received(uow, clock, upload, info.size)


def _give_up(
    uow: UnitOfWork, clock: Clock, upload: Upload, state: UploadState, message: str
) -> None:
    now = clock.now()
    if not uow.uploads.leave_pending(upload.id, state, None):
        return  # it arrived or ended meanwhile (another request moved it first)
    build = uow.builds.get(upload.build_id)
    if build is not None and build.status is BuildStatus.PROCESSING:
        uow.builds.save(
            replace(
                build,
                status=BuildStatus.FAILED,
                error_message=message,
                progress=Stage.DONE,
                updated_at=now,
            )
        )
    for job in uow.jobs.for_build(upload.build_id):
        if job.state is JobState.WAITING:
            uow.jobs.save(replace(job, state=JobState.CANCELLED, updated_at=now))


def abort_multipart(
    uow: UnitOfWork,
    clock: Clock,
    store: BlobStore,
    principal: Principal,
    *,
    file_path: str,
    upload_id: str,
) -> None:
    upload = _owned_upload(uow, principal, file_path, upload_id)
    assert upload.store_upload_id is not None
    store.abort_multipart(upload.key, upload.store_upload_id)
    _give_up(uow, clock, upload, UploadState.ABORTED, "The multipart upload was aborted.")


def expire_stale(
    uow: UnitOfWork, clock: Clock, store: BlobStore, *, limit: int = 100
) -> tuple[int, list[str]]:
    """Expire uploads whose bytes never arrived: remove their parts, fail their builds.

    Returns how many expired, and the jobs of single uploads that did arrive unnoticed
    (to notify after commit).
    """
    count, queued = 0, []
    for upload in uow.uploads.list_pending(expiring_before=clock.now(), limit=limit):
        if not upload.multipart:
            job_id = notice_received(uow, clock, store, key=upload.key)
            if job_id:
                queued.append(job_id)
                continue
        elif upload.store_upload_id:
            store.abort_multipart(upload.key, upload.store_upload_id)
        _give_up(
            uow,
            clock,
            upload,
            UploadState.EXPIRED,
            "The upload did not arrive before its signed URL expired.",
        )
        count += 1
    return count, queued
