"""Arrivals: the one entry point for "these bytes are now stored", dispatched on purpose.

However the bytes came (a signed PUT the local store reports as it publishes the object, an
object the sweep finds in S3, parts assembled by :func:`complete_multipart`, a form post
adopted from the spool by :func:`adopt`), :func:`stored` checks them against the upload's
rules and hands them to the upload's purpose: a build's input queues its jobs
(``core.builds``); a signing key's file is opened and sealed (``core.signing_keys``). An
upload that ends without bytes (aborted, expired, refused) is handed to the same purpose's
``ended``. Reads never write: nothing here runs because somebody looked at a status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appyard import errors
from appyard.core import builds, identity, signing_keys, telemetry, uploads
from appyard.core.context import Services
from appyard.core.models import Actor, Upload, UploadPurpose, UploadState
from appyard.core.ports import BlobInfo, UnitOfWork

log = logging.getLogger("appyard.arrivals")


@dataclass(frozen=True)
class Purpose:
    """What happens when an upload of this purpose arrives, or ends without its bytes."""

    arrived: Callable[[Services, UnitOfWork, Upload, BlobInfo], None]
    ended: Callable[[Services, UnitOfWork, Upload, str], None]


PURPOSES: dict[UploadPurpose, Purpose] = {
    UploadPurpose.BUILD: Purpose(arrived=builds.input_arrived, ended=builds.input_lost),
    UploadPurpose.SIGNING_KEY: Purpose(
        arrived=signing_keys.file_arrived, ended=signing_keys.file_lost
    ),
}


def stored(svc: Services, uow: UnitOfWork, *, key: str, info: BlobInfo) -> Upload | None:
    """The object at ``key`` is in the store. Returns the upload it completed (None when no
    upload was waiting for it)."""
    upload = uow.uploads.get_by_key(key)
    if upload is None:
        return None
    if upload.state is not UploadState.PENDING:
        # A store that cannot refuse a PUT after its upload ended (S3) may get bytes nobody
        # waits for: an ended upload keeps nothing, and a key file is never kept in the clear.
        if upload.state is not UploadState.RECEIVED or upload.purpose is UploadPurpose.SIGNING_KEY:
            svc.store.delete(key)
        return None
    limit = upload.declared_size if upload.declared_size is not None else upload.max_size
    if limit is not None and info.size > limit:
        # A presigned S3 PUT cannot bound the body: refuse here what the URL could not.
        svc.store.delete(key)
        what = "the declared file_size" if upload.declared_size is not None else "allowed"
        _end(
            svc,
            uow,
            upload,
            UploadState.REFUSED,
            f"The uploaded file has {info.size} bytes, more than {what} ({limit}); it was removed.",
        )
        return None
    if not uow.uploads.leave_pending(
        upload.id, UploadState.RECEIVED, size=info.size, sha256=info.sha256
    ):
        return None  # noticed at the same moment elsewhere: that one carries on
    received = uow.uploads.get(upload.id) or upload
    telemetry.count(uow, "upload.ended", purpose=upload.purpose.value, state="received")
    PURPOSES[upload.purpose].arrived(svc, uow, received, info)
    log.info(
        "upload.arrived upload_id=%s purpose=%s bytes=%d",
        upload.id,
        upload.purpose.value,
        info.size,
    )
    return received


def adopt(svc: Services, uow: UnitOfWork, upload: Upload, path: Path) -> BlobInfo:
    """A form post's spooled file becomes the upload's object (moved, not copied, on local
    disk), then arrives like any other (its job hashes it)."""
    info = svc.store.adopt(upload.key, path)
    stored(svc, uow, key=upload.key, info=info)
    return info


def complete_multipart(
    svc: Services,
    uow: UnitOfWork,
    actor: Actor,
    *,
    file_path: str,
    upload_id: str,
    parts: list[tuple[int, str]],
) -> Upload:
    """The client says its parts are all there: check them, assemble the object, arrive.

    A client may send the same ``complete`` again (its answer was lost when a server died):
    an upload this ``upload_id`` already completed answers as the first time, and one whose
    object the store assembled before the server died, unrecorded, arrives with that object
    (only a ``complete`` puts an object at a multipart upload's key)."""
    identity.require_scope(actor, identity.SCOPE_BUILDS, label="Builds")
    upload = uploads.owned(uow, actor, file_path=file_path)
    same = upload.multipart and upload.store_upload_id == upload_id
    if same and upload.state is UploadState.RECEIVED:
        return upload
    assembled = svc.store.stat(upload.key) if same and upload.state is UploadState.PENDING else None
    if assembled is not None:
        assert upload.store_upload_id is not None
        svc.store.abort_multipart(upload.key, upload.store_upload_id)  # parts the death left
        info = assembled
    else:
        info = uploads.assemble(svc.store, upload, upload_id=upload_id, parts=parts)
    stored(svc, uow, key=upload.key, info=info)
    return uow.uploads.get(upload.id) or upload


def abort(
    svc: Services, uow: UnitOfWork, actor: Actor, *, file_path: str, upload_id: str | None
) -> Upload:
    """The client gives up: a multipart upload (named by its ``upload_id``) or a single PUT
    that has not arrived (no ``upload_id``). Its parts and signed URLs stop working, and what
    it was for ends at once (a build fails, freeing its tenant's slot)."""
    identity.require_scope(actor, identity.SCOPE_BUILDS, label="Builds")
    upload = uploads.owned(uow, actor, file_path=file_path)
    if upload_id is not None and (not upload.multipart or upload.store_upload_id != upload_id):
        raise errors.InvalidParts("upload_id does not match the upload at this file_path.")
    if upload_id is None and upload.multipart:
        raise errors.InvalidField(
            "This is a multipart upload: send its upload_id to abort it.", field="upload_id"
        )
    uploads.pending(upload)
    uploads.discard(svc.store, upload)
    kind = "multipart upload" if upload.multipart else "upload"
    _end(svc, uow, upload, UploadState.ABORTED, f"The {kind} was aborted.")
    return uow.uploads.get(upload.id) or upload


def cancel(svc: Services, uow: UnitOfWork, upload: Upload, reason: str) -> None:
    """End a pending upload because its subject went away (a build or key deleted)."""
    if upload.state is UploadState.PENDING:
        uploads.discard(svc.store, upload)
        _end(svc, uow, upload, UploadState.ABORTED, reason)


def _end(svc: Services, uow: UnitOfWork, upload: Upload, state: UploadState, reason: str) -> None:
    if uploads.end(uow, upload, state, reason):
        PURPOSES[upload.purpose].ended(svc, uow, upload, reason)
        log.info("upload.ended upload_id=%s state=%s", upload.id, state.value)


def notice(svc: Services, uow: UnitOfWork, *, limit: int = 100) -> int:
    """Pending single PUTs whose object is in the store arrive: on S3, which does not report
    them, and on local disk, where a report was lost. Returns how many arrived."""
    arrived = 0
    for upload in uow.uploads.list_pending(limit=limit):
        if upload.multipart:
            continue
        info = svc.store.stat(upload.key)
        if info is not None and stored(svc, uow, key=upload.key, info=info) is not None:
            arrived += 1
    return arrived


def expire(svc: Services, uow: UnitOfWork, *, limit: int = 100) -> int:
    """Uploads past their expiry end: their parts and signed URLs are removed and what they
    were for fails (a single PUT whose object is there after all arrives instead). Returns
    how many expired."""
    expired = 0
    for upload in uow.uploads.list_pending(expiring_before=svc.clock.now(), limit=limit):
        if not upload.multipart:
            info = svc.store.stat(upload.key)
            if info is not None:
                stored(svc, uow, key=upload.key, info=info)
                continue
        uploads.discard(svc.store, upload)
        _end(
            svc,
            uow,
            upload,
            UploadState.EXPIRED,
            "The upload did not arrive before its signed URL expired.",
        )
        expired += 1
    return expired
