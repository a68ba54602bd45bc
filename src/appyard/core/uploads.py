"""Uploads: how an object's bytes arrive, whatever they are for.

An upload is opened (:func:`open_upload`) for a purpose and a subject (a build's input, a
signing key's file) with the rules its bytes must keep (at most ``max_size``, the declared
size when one was declared); the client then sends them straight to the blob store through a
signed single PUT or signed multipart parts (a form post spools them instead, see
:func:`open_upload` ``signed=False``). When the bytes are stored, ``core.arrivals`` takes over.
This module holds the mechanics: names, sizes, signed requests, part lists, expiry.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta

from appyard import errors
from appyard.core import telemetry
from appyard.core.ids import new_id
from appyard.core.models import (
    Actor,
    ConfigVersion,
    Part,
    Platform,
    Upload,
    UploadPurpose,
    UploadState,
)
from appyard.core.policy import UploadPolicy
from appyard.core.ports import BlobInfo, BlobStore, Clock, SignedRequest, UnitOfWork

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


@dataclass(frozen=True)
class Ticket:
    """What a client needs to send its bytes: one signed PUT, or one signed PUT per part."""

    upload: Upload
    expires_in: int
    put: SignedRequest | None = None
    parts: tuple[SignedRequest, ...] = ()


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


def base_name(value: str) -> str:
    """``value`` without any directory part (``a/b\\c.apk`` -> ``c.apk``)."""
    return value.replace("\\", "/").rsplit("/", 1)[-1].strip()


def clean_file_name(value: str) -> str:
    """The base name of ``value``; only a plain name with lowercase .apk/.aab/.ipa passes."""
    base = base_name(value)
    if not _SAFE_NAME.match(base):
        raise errors.InvalidFileName(
            "file_name must be a plain file name ending in lowercase .apk, .aab or .ipa."
        )
    return base


def check_size(file_size: int | None, max_size: int) -> None:
    if file_size is None:
        return
    if file_size <= 0:
        raise errors.InvalidField(
            "file_size must be a positive number of bytes.", field="file_size"
        )
    if file_size > max_size:
        raise errors.UploadTooLarge(f"file_size {file_size} is over the {max_size} byte limit.")


def open_upload(
    uow: UnitOfWork,
    clock: Clock,
    store: BlobStore,
    policy: UploadPolicy,
    *,
    tenant_id: str,
    purpose: UploadPurpose,
    subject_id: str,
    key: str,
    file_name: str,
    max_size: int,
    declared_size: int | None = None,
    content_type: str | None = None,
    multipart_allowed: bool = True,
    signed: bool = True,
) -> Ticket:
    """Record an upload waiting for its bytes; with ``signed``, hand out the signed request(s)
    that deliver them (parts when the declared size reaches the multipart threshold)."""
    now = clock.now()
    multipart = (
        signed
        and multipart_allowed
        and declared_size is not None
        and declared_size >= policy.multipart_threshold
    )
    store_upload_id = store.create_multipart(key) if multipart else None
    total_parts = (
        math.ceil(declared_size / policy.chunk_size) if multipart and declared_size else None
    )
    upload = Upload(
        id=new_id("up"),
        tenant_id=tenant_id,
        purpose=purpose,
        subject_id=subject_id,
        key=key,
        file_name=file_name,
        declared_size=declared_size,
        multipart=multipart,
        store_upload_id=store_upload_id,
        total_parts=total_parts,
        chunk_size=policy.chunk_size if multipart else None,
        state=UploadState.PENDING,
        created_at=now,
        expires_at=now + timedelta(seconds=policy.expiry_seconds),
        max_size=declared_size or max_size,
    )
    uow.uploads.add(upload)
    telemetry.count(uow, "upload.started", purpose=purpose.value)
    if not signed:
        return Ticket(upload=upload, expires_in=0)
    if multipart:
        assert store_upload_id is not None and total_parts is not None
        parts = tuple(
            store.presign_part(
                key, store_upload_id, n, max_size=policy.chunk_size, expires_in=policy.url_ttl
            )
            for n in range(1, total_parts + 1)
        )
        return Ticket(upload=upload, expires_in=policy.url_ttl, parts=parts)
    put = store.presign_put(
        key,
        max_size=upload.max_size or max_size,
        expires_in=policy.url_ttl,
        content_type=content_type,
    )
    return Ticket(upload=upload, expires_in=policy.url_ttl, put=put)


def owned(uow: UnitOfWork, actor: Actor, *, file_path: str) -> Upload:
    """The actor's upload at ``file_path`` (the object key a dialect showed its client)."""
    tenant = actor.tenant
    if not file_path.startswith(f"{tenant}/"):
        raise errors.WrongTenant("The upload path does not belong to this tenant.")
    upload = uow.uploads.get_by_key(file_path)
    if upload is None:
        raise errors.UploadNotFound("No upload at this file_path.")
    if upload.tenant_id != tenant:
        raise errors.WrongTenant("The upload path does not belong to this tenant.")
    return upload


def pending(upload: Upload) -> Upload:
    if upload.state is not UploadState.PENDING:
        raise errors.UploadNotPending(f"The upload is already {upload.state.value}.")
    return upload


def received_parts(store: BlobStore, upload: Upload) -> list[Part]:
    """The parts of a pending multipart upload that the store holds, in part order (only
    those within the upload's part count)."""
    if not upload.multipart or upload.store_upload_id is None:
        return []
    total = upload.total_parts or 0
    parts = store.list_parts(upload.key, upload.store_upload_id)
    return sorted((p for p in parts if 1 <= p.number <= total), key=lambda p: p.number)


def _normal_etag(etag: str) -> str:
    return etag.strip().strip('"')


def assemble(
    store: BlobStore, upload: Upload, *, upload_id: str, parts: list[tuple[int, str]]
) -> BlobInfo:
    """Check the client's part list against what was stored, then assemble the object."""
    if not upload.multipart or upload.store_upload_id != upload_id:
        raise errors.InvalidParts("upload_id does not match the upload at this file_path.")
    pending(upload)
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
    return store.complete_multipart(
        upload.key, upload.store_upload_id, [stored[n] for n in expected]
    )


def discard(store: BlobStore, upload: Upload) -> None:
    """Remove whatever the upload stored or could still store (parts, the object, the unused
    signed PUT)."""
    if upload.multipart and upload.store_upload_id:
        store.abort_multipart(upload.key, upload.store_upload_id)
    store.delete(upload.key)


def end(uow: UnitOfWork, upload: Upload, state: UploadState, reason: str) -> bool:
    """Move a pending upload to ``state`` with ``reason``; False when it had already moved."""
    moved = uow.uploads.leave_pending(upload.id, state, reason=reason)
    if moved:
        telemetry.count(uow, "upload.ended", purpose=upload.purpose.value, state=state.value)
    return moved
