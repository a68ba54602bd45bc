"""The automation API, paths verbatim: request an upload URL, complete/abort multipart,
poll status, get a signed download URL. Each route: vendor request -> one core call ->
vendor response. The vendor's ``job_id`` is the build's number."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from appyard import errors
from appyard.api.dialects.automation import credentials
from appyard.api.dialects.automation.schemas import AbortRequest, CompleteRequest, UploadRequest
from appyard.api.kit import Svc, authenticator, fast_get, reading
from appyard.core import arrivals, builds
from appyard.core.models import Actor, Build, BuildStatus

SOURCE = "automation"
Caller = Annotated[Actor, Depends(authenticator(credentials.extract, credentials.MISSING))]


UNSIGNED = (
    "Completed unsigned: no signing key was used (signing_key_id none, or the tenant has "
    "no signing key for this platform); the output does not verify until it is signed."
)


def _epoch(build: Build, attr: str) -> int:
    return int(getattr(build, attr).timestamp())


def job_number(value: str) -> int:
    """A job id as the spec has it: ASCII digits only."""
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise errors.InvalidField("Invalid job ID.", field="jobId")
    return int(value)


def status_body(build: Build) -> dict[str, Any]:
    body: dict[str, Any] = {
        "job_id": str(build.number),
        "status": build.status.value,
        "platform": build.platform.value,
        "version": build.config_version.value,
        "file_name": build.file_name,
        "created_at": _epoch(build, "created_at"),
        "updated_at": _epoch(build, "updated_at"),
    }
    if build.status is BuildStatus.PROCESSING:
        body["progress"] = build.progress.value
    if build.status is BuildStatus.FAILED:
        body["error_message"] = build.error_message or "Build failed"
    if build.status is BuildStatus.COMPLETED:
        # appyard's addition: whether the output carries a signature of a managed key
        body["signed"] = build.signed
        if not build.signed:
            body["message"] = UNSIGNED
    return body


def routes(app: FastAPI) -> None:
    @app.post("/upload")
    def request_upload(body: UploadRequest, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            made = builds.request_upload(
                uow,
                svc.clock,
                svc.store,
                svc.policy,
                caller,
                file_name=body.file_name,
                platform=body.platform,
                version=body.version,
                file_size=body.file_size,
                signing_key_id=body.signing_key_id,
                source=SOURCE,
            )
        build, ticket = made.build, made.ticket
        common = {
            "file_path": ticket.upload.key,
            "start_time": _epoch(build, "created_at"),
            "expires_in": ticket.expires_in,
            "signing_key_id": build.signing_key_id,
            "job_id": str(build.number),
        }
        if ticket.upload.multipart:
            return {
                "multipart": True,
                "upload_id": ticket.upload.store_upload_id,
                "part_urls": [part.url for part in ticket.parts],
                "chunk_size": ticket.upload.chunk_size,
                "total_parts": ticket.upload.total_parts,
                **common,
            }
        assert ticket.put is not None
        return {"url": ticket.put.url, "upload_url": ticket.put.url, **common}

    @app.post("/upload/complete")
    def complete(body: CompleteRequest, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            upload = arrivals.complete_multipart(
                svc,
                uow,
                caller,
                file_path=body.file_path,
                upload_id=body.upload_id,
                parts=[(p.PartNumber, p.ETag) for p in body.parts],
            )
            build = builds.get(uow, caller, build_id=upload.subject_id)
        return {"job_id": str(build.number), "file_path": body.file_path, "status": "processing"}

    @app.post("/upload/abort")
    def abort(body: AbortRequest, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            upload = arrivals.abort(
                svc, uow, caller, file_path=body.file_path, upload_id=body.upload_id
            )
            build = builds.get(uow, caller, build_id=upload.subject_id)
        return {"job_id": str(build.number), "file_path": body.file_path, "aborted": True}

    @fast_get(app, "/status/{job_id}")
    async def status(job_id: str, request: Request) -> Response:
        # polled by every client: authenticates and reads in one read-only unit of work
        build = await reading(
            request,
            credentials.extract,
            credentials.MISSING,
            lambda caller, uow: builds.by_number(uow, caller, number=job_number(job_id)),
        )
        return JSONResponse(status_body(build))  # a dict needs no encoding of FastAPI's

    @app.get("/download/{job_id}")
    def download(job_id: str, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.uow() as uow:
            build = builds.by_number(uow, caller, number=job_number(job_id))
            result = builds.download(
                uow, svc.store, caller, build_id=build.id, url_ttl=svc.policy.url_ttl
            )
        return {
            "job_id": str(build.number),
            "file_name": build.file_name,
            "download_url": result.url,
            "expires_in": result.expires_in,
        }
