"""The upload-context API (../shared/specs/upload-context-api.txt): obtain an upload context,
submit build metadata for an ``uploadSpec``, and (appyard's addition) read the build back.

A project is an app of the token's tenant, named by its slug and made on first use; a
context is a number of that project's own; the vendor's build ``id`` is the build's number.
Step 3 (the PUT) goes to the blob store itself, which enforces the content-length range (the
local store refuses more with 413; on S3 the size is checked on arrival). Then the build is
inspected (``build.inspect``): ``uploadState`` is ``FINISHED`` once it is stored and is an APK
of the project, ``FAILED`` with ``failureReason`` otherwise.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path

from appyard import errors
from appyard.api.dialects.upload_context import credentials
from appyard.api.dialects.upload_context.schemas import BuildRequest
from appyard.api.kit import Svc, authenticator
from appyard.core import apps, builds, jobs, numbering
from appyard.core.models import Actor, App, Build, BuildStatus, Upload, UploadState
from appyard.core.ports import UnitOfWork

SOURCE = "upload-context"
MAX_BYTES = 1024 * 1024 * 1024  # the spec's content-length range: 0 to 1 GiB
RANGE_HEADER = "X-Goog-Content-Length-Range"  # as the spec's uploadSpec example names it
Caller = Annotated[Actor, Depends(authenticator(credentials.extract, credentials.MISSING))]
Project = Annotated[str, Path(min_length=1, max_length=100)]


def iso(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and Z, as the spec's examples write it."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _scope(app: App) -> str:
    return f"upload-context/{app.id}"


def _project(uow: UnitOfWork, svc: Any, caller: Actor, name: str, *, create: bool) -> App:
    return apps.named(uow, svc.clock, tenant_id=caller.tenant, slug=name, create=create)


def upload_state(build: Build, upload: Upload | None) -> tuple[str, str | None]:
    """(uploadState, failure reason)."""
    if upload is None or upload.state is UploadState.PENDING:
        return "UPLOADING", None
    if upload.state is not UploadState.RECEIVED:
        return "FAILED", upload.reason or f"The upload was {upload.state.value}."
    if build.status is BuildStatus.COMPLETED:
        return "FINISHED", None
    if build.status is BuildStatus.FAILED:
        return "FAILED", build.error_message or "The build could not be read."
    return "UPLOADING", None


def build_body(build: Build, upload: Upload | None) -> dict[str, Any]:
    meta = build.meta
    state, reason = upload_state(build, upload)
    body: dict[str, Any] = {
        "id": build.number,
        "contextId": meta.get("contextId"),
        "buildType": meta.get("buildType"),
        "buildFileName": build.file_name,
        "name": meta.get("name"),
        "description": meta.get("description"),
        "sourceControlId": meta.get("sourceControlId"),
        "sourceControlIsoTimestamp": meta.get("sourceControlIsoTimestamp"),
        "dateCreated": iso(build.created_at),
        "uploadState": state,
    }
    if reason is not None:
        body["failureReason"] = reason
    return body


def routes(app: FastAPI) -> None:
    @app.post("/{projectName}/build-uploads")
    def open_context(projectName: Project, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            project = _project(uow, svc, caller, projectName, create=True)
            number = numbering.next_number(uow, caller, scope=_scope(project))
        return {"id": number, "dateCreated": iso(svc.clock.now())}

    @app.post("/{projectName}/builds")
    def submit_build(
        projectName: Project,
        body: BuildRequest,
        caller: Caller,
        svc: Svc,
    ) -> dict[str, Any]:
        context = int(body.contextId)
        with svc.transaction() as uow:
            project = _project(uow, svc, caller, projectName, create=False)
            if not numbering.issued(uow, caller, scope=_scope(project), number=context):
                raise errors.NotFound(
                    f"Upload context {context} was not obtained for project {projectName!r}."
                )
            made = builds.request_upload(
                uow,
                svc.clock,
                svc.store,
                svc.policy,
                caller,
                file_name=body.buildFileName,
                platform="android",
                version="production",
                file_size=None,
                signing_key_id="none",
                source=SOURCE,
                job_kind=jobs.INSPECT_BUILD,
                app_id=project.id,
                meta={
                    "contextId": context,
                    "buildType": body.buildType,
                    "name": body.name,
                    "description": body.description,
                    "sourceControlId": body.sourceControlId,
                    "sourceControlIsoTimestamp": body.sourceControlIsoTimestamp,
                },
                max_size=MAX_BYTES,
                content_type="application/octet-stream",
                multipart_allowed=False,
            )
        put = made.ticket.put
        assert put is not None
        limit = made.ticket.upload.max_size or MAX_BYTES
        return {
            "uploadSpec": {
                "method": put.method,
                "url": put.url,
                "headers": {**put.headers, RANGE_HEADER: f"0,{limit}"},
            },
            "build": build_body(made.build, made.ticket.upload),
        }

    @app.get("/{projectName}/builds/{buildId}")
    def get_build(
        projectName: Project,
        buildId: str,
        caller: Caller,
        svc: Svc,
    ) -> dict[str, Any]:
        if not (buildId.isascii() and buildId.isdigit()) or len(buildId) > 18:
            raise errors.InvalidField("The build id is a number.", field="buildId")
        with svc.uow() as uow:
            project = _project(uow, svc, caller, projectName, create=False)
            build = uow_build(uow, caller, project, int(buildId))
            upload = builds.upload_of(uow, caller, build_id=build.id)
        return build_body(build, upload)


def uow_build(uow: UnitOfWork, caller: Actor, project: App, number: int) -> Build:
    """The project's build with this number (another project's or flow's is not found)."""
    try:
        build = builds.by_number(uow, caller, number=number)
    except errors.JobNotFound:
        build = None
    if build is None or build.app_id != project.id or build.source != SOURCE:
        raise builds.BuildNotFound(f"No build {number} in project {project.slug!r}.")
    return build
