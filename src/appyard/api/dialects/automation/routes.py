"""The automation API, paths verbatim: request an upload URL, complete/abort multipart,
poll status, get a signed download URL. Each route: vendor request -> one core call ->
vendor response. Mounted at ``/automate``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from appyard import errors as core_errors
from appyard.api.deps import services, transaction
from appyard.api.dialects.automation import credentials, errors
from appyard.api.dialects.automation.schemas import AbortRequest, CompleteRequest, UploadRequest
from appyard.core import builds, identity, uploads
from appyard.core.context import Services
from appyard.core.models import Build, BuildStatus, Principal

Svc = Annotated[Services, Depends(services)]


def authenticated(request: Request, svc: Svc) -> Principal:
    credential = credentials.extract(request)
    if credential is None:
        raise core_errors.InvalidCredential(
            "Missing or malformed automation key: send Authorization: Bearer <key_id>:<key_secret>."
        )
    with transaction(svc) as uow:
        return identity.authenticate(uow, svc.clock, credential)


Caller = Annotated[Principal, Depends(authenticated)]


def _epoch(build: Build, attr: str) -> int:
    return int(getattr(build, attr).timestamp())


def _job_id(value: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise core_errors.InvalidField("Invalid job ID.", field="jobId")
    return int(value)


def status_body(build: Build) -> dict[str, Any]:
    body: dict[str, Any] = {
        "job_id": str(build.start_time),
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
    return body


def create_app(svc: Services) -> FastAPI:
    app = FastAPI(title="appyard automation API", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = svc
    errors.install(app)

    @app.post("/upload")
    def request_upload(body: UploadRequest, caller: Caller, svc: Svc) -> dict[str, Any]:
        with transaction(svc) as uow:
            ticket = uploads.request(
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
            )
        common = {
            "file_path": ticket.upload.key,
            "start_time": _epoch(ticket.build, "created_at"),
            "expires_in": ticket.expires_in,
            "signing_key_id": ticket.build.signing_key_id,
            "job_id": str(ticket.build.start_time),
        }
        if ticket.upload.multipart:
            return {
                "multipart": True,
                "upload_id": ticket.upload.store_upload_id,
                "part_urls": list(ticket.part_urls),
                "chunk_size": ticket.upload.chunk_size,
                "total_parts": ticket.upload.total_parts,
                **common,
            }
        return {"url": ticket.upload_url, "upload_url": ticket.upload_url, **common}

    @app.post("/upload/complete")
    def complete(body: CompleteRequest, caller: Caller, svc: Svc) -> dict[str, Any]:
        with transaction(svc) as uow:
            job_id = uploads.complete_multipart(
                uow,
                svc.clock,
                svc.store,
                caller,
                file_path=body.file_path,
                upload_id=body.upload_id,
                parts=[(p.PartNumber, p.ETag) for p in body.parts],
            )
            build = uploads.build_of(uow, key=body.file_path)
        svc.queue.notify(job_id)
        return {
            "job_id": str(build.start_time),
            "file_path": body.file_path,
            "status": "processing",
        }

    @app.post("/upload/abort")
    def abort(body: AbortRequest, caller: Caller, svc: Svc) -> dict[str, Any]:
        with transaction(svc) as uow:
            uploads.abort_multipart(
                uow,
                svc.clock,
                svc.store,
                caller,
                file_path=body.file_path,
                upload_id=body.upload_id,
            )
            build = uploads.build_of(uow, key=body.file_path)
        return {"job_id": str(build.start_time), "file_path": body.file_path, "aborted": True}

    @app.get("/status/{job_id}")
    def status(job_id: str, caller: Caller, svc: Svc) -> dict[str, Any]:
        with transaction(svc) as uow:
            build, queued = builds.status(
                uow, svc.clock, svc.store, caller, start_time=_job_id(job_id)
            )
        if queued:
            svc.queue.notify(queued)
        return status_body(build)

    @app.get("/download/{job_id}")
    def download(job_id: str, caller: Caller, svc: Svc) -> dict[str, Any]:
        with transaction(svc) as uow:
            result = builds.download(
                uow, svc.store, caller, start_time=_job_id(job_id), url_ttl=svc.policy.url_ttl
            )
        return {
            "job_id": str(result.build.start_time),
            "file_name": result.build.file_name,
            "download_url": result.url,
            "expires_in": result.expires_in,
        }

    return app
