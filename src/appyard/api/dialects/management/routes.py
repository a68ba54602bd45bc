"""The management API, paths verbatim (all POST with a JSON body): applications, build history,
upload URLs, multipart complete/abort, download and delete of builds, signing keys, and the
legacy per-application signing file. Each route: vendor request -> core call(s) in one
transaction -> vendor response. Mounted at ``/frontend``.

"Permission: Builds" in the spec is the ``builds`` token scope (a token without scopes has
every permission); "Plan: Team+" is checked by core (signing_keys.require_plan).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from appyard import errors as core_errors
from appyard.api.deps import services, transaction
from appyard.api.dialects.management import credentials, errors
from appyard.api.dialects.management.schemas import (
    AbortRequest,
    BuildsRequest,
    CodeSigningFile,
    CompleteRequest,
    DeleteApplication,
    Empty,
    KeyRef,
    NamedBuild,
    SetDefaultKey,
    SignBuild,
    UploadRequest,
    UploadSigningKey,
)
from appyard.core import apps, builds, identity, signing_keys, uploads
from appyard.core.context import Services
from appyard.core.models import Build, BuildStatus, KeyState, Platform, Principal, SigningKey

Svc = Annotated[Services, Depends(services)]


def authenticated(request: Request, svc: Svc) -> Principal:
    credential = credentials.extract(request)
    if credential is None:
        raise core_errors.InvalidCredential(
            "Missing or malformed management token: send Authorization: Bearer "
            "<base64(key_id:key_secret)> and a tenant header."
        )
    with transaction(svc) as uow:
        return identity.authenticate_in_tenant(
            uow, svc.clock, credential, tenant=credentials.tenant(request)
        )


Caller = Annotated[Principal, Depends(authenticated)]


def with_builds_permission(caller: Caller) -> Principal:
    identity.require_scope(caller, identity.SCOPE_BUILDS, label="Builds")
    return caller


Builder = Annotated[Principal, Depends(with_builds_permission)]


def on_signing_plan(caller: Caller, svc: Svc) -> Principal:
    with transaction(svc) as uow:
        signing_keys.require_plan(uow, tenant_id=caller.tenant_id)
    return caller


def on_signing_plan_with_builds(caller: Builder, svc: Svc) -> Principal:
    return on_signing_plan(caller, svc)


TeamReader = Annotated[Principal, Depends(on_signing_plan)]
TeamBuilder = Annotated[Principal, Depends(on_signing_plan_with_builds)]


# --- responses -----------------------------------------------------------------------------------


def _epoch(value: Any) -> int:
    return int(value.timestamp())


def _success(build: Build) -> bool | None:
    if build.status is BuildStatus.PROCESSING:
        return None
    return build.status is BuildStatus.COMPLETED


def _status_message(build: Build) -> str:
    if build.deleted:
        return "Deleted"
    if build.status is BuildStatus.COMPLETED:
        return "Complete"
    if build.status is BuildStatus.FAILED:
        return f"Failed: {build.error_message}" if build.error_message else "Failed"
    return build.progress.value


def build_body(build: Build, keys: dict[str, SigningKey]) -> dict[str, Any]:
    key = keys.get(build.signing_key_id) if build.signing_key_id else None
    return {
        "start_time": build.start_time,
        "end_time": None if build.status is BuildStatus.PROCESSING else _epoch(build.updated_at),
        "version": build.config_version.value,
        "name": build.file_name,
        "platform": build.platform.value,
        "success": _success(build),
        "signed": build.signed,
        "error_message": build.error_message,
        "status_message": _status_message(build),
        "signing_key_id": build.signing_key_id,
        "signing_key_name": key.name if key else None,
        "deleted": build.deleted,
        "signing_error_message": build.signing_error_message,
    }


def key_body(key: SigningKey) -> dict[str, Any]:
    return {
        "key_id": key.id,
        "key_name": key.name,
        "platform": key.platform.value,
        "file_name": key.file_name,
        "is_default": key.is_default and key.state is KeyState.READY,
        "uploaded_by": key.created_by,
        "creation_time": _epoch(key.created_at),
        # appyard's additions: whether the uploaded file opened, and if not, why
        "status": key.state.value,
        "error_message": key.error_message,
    }


def create_app(svc: Services) -> FastAPI:
    app = FastAPI(title="appyard management API", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = svc
    errors.install(app)

    # --- applications and builds -----------------------------------------------------------

    @app.post("/get_applications")
    def get_applications(caller: Caller, svc: Svc, body: Empty | None = None) -> dict[str, Any]:
        with transaction(svc) as uow:
            summaries = apps.list_apps(uow, caller)
        return {
            "applications": [
                {
                    "platform": s.app.platform.value,
                    "build_version": s.latest.version_name if s.latest else None,
                    "build_id": s.app.identifier,
                    "build_name": s.app.name,
                    "build_image": None,
                    "creation_time": _epoch(s.app.created_at),
                    "application_id": s.app.id,
                }
                for s in summaries
            ]
        }

    @app.post("/get_application_builds")
    def get_application_builds(body: BuildsRequest, caller: Caller, svc: Svc) -> dict[str, Any]:
        with transaction(svc) as uow:
            page = builds.history(
                uow,
                svc.clock,
                svc.store,
                caller,
                version=body.version,
                page=body.page,
                page_size=body.page_size,
            )
        for job_id in page.queued:
            svc.queue.notify(job_id)
        return {
            "results": [build_body(b, page.keys) for b in page.builds],
            "total_count": page.total,
            "page": page.page,
            "page_size": page.page_size,
            "total_pages": -(-page.total // page.page_size),
            "builds_used_apple": page.used[Platform.IOS],
            "builds_used_android": page.used[Platform.ANDROID],
            "still_waiting": page.still_waiting,
        }

    @app.post("/upload_application_build")
    def upload_application_build(body: UploadRequest, caller: Builder, svc: Svc) -> dict[str, Any]:
        with transaction(svc) as uow:
            ticket = builds.request_upload(
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
            "start_time": ticket.build.start_time,
            "expires_in": ticket.expires_in,
            "signing_key_id": ticket.build.signing_key_id,
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
        return {"url": ticket.upload_url, **common}

    @app.post("/complete_multipart_upload")
    def complete_multipart_upload(
        body: CompleteRequest, caller: Builder, svc: Svc
    ) -> dict[str, Any]:
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
        if job_id:
            svc.queue.notify(job_id)
        return {"message": "Upload completed successfully"}

    @app.post("/abort_multipart_upload")
    def abort_multipart_upload(body: AbortRequest, caller: Builder, svc: Svc) -> dict[str, Any]:
        with transaction(svc) as uow:
            uploads.abort_multipart(
                uow,
                svc.clock,
                svc.store,
                caller,
                file_path=body.file_path,
                upload_id=body.upload_id,
            )
        return {"message": "Upload aborted successfully"}

    @app.post("/download_application_build")
    def download_application_build(body: NamedBuild, caller: Caller, svc: Svc) -> dict[str, Any]:
        with transaction(svc) as uow:
            result = builds.download_named(
                uow,
                svc.store,
                caller,
                version=body.version,
                platform=body.platform,
                start_time=body.start_time,
                file_name=body.file_name,
                url_ttl=svc.policy.url_ttl,
            )
        return {"url": result.url}

    @app.post("/delete_application_build")
    def delete_application_build(body: NamedBuild, caller: Builder, svc: Svc) -> dict[str, Any]:
        with transaction(svc) as uow:
            builds.delete_named(
                uow,
                svc.store,
                caller,
                version=body.version,
                platform=body.platform,
                start_time=body.start_time,
                file_name=body.file_name,
            )
        return {"success": True}

    @app.post("/delete_application")
    def delete_application(body: DeleteApplication, caller: Builder, svc: Svc) -> dict[str, Any]:
        with transaction(svc) as uow:
            apps.delete(uow, svc.clock, caller, app_id=body.application_id)
        return {"success": True}

    # --- signing keys (Team+) --------------------------------------------------------------

    @app.post("/get_signing_keys")
    def get_signing_keys(caller: TeamReader, svc: Svc, body: Empty | None = None) -> dict[str, Any]:
        with transaction(svc) as uow:
            signing_keys.notice_pending(
                uow, svc.clock, svc.sealer(), svc.store, tenant_id=caller.tenant_id
            )
            keys = signing_keys.managed_keys(uow, tenant_id=caller.tenant_id)
        return {"signing_keys": [key_body(k) for k in keys]}

    @app.post("/upload_signing_key")
    def upload_signing_key(body: UploadSigningKey, caller: TeamBuilder, svc: Svc) -> dict[str, Any]:
        with transaction(svc) as uow:
            key, url = signing_keys.request_upload(
                uow,
                svc.clock,
                svc.sealer(),
                svc.store,
                tenant_id=caller.tenant_id,
                name=body.key_name,
                platform=uploads.parse_platform(body.platform),
                file_name=body.file_name,
                password=body.password,
                alias=body.alias,
                file_size=body.file_size,
                make_default=body.is_default,
                created_by=caller.token_id,
                url_ttl=svc.policy.url_ttl,
            )
        return {"key_id": key.id, "url": url}

    @app.post("/set_default_signing_key")
    def set_default_signing_key(
        body: SetDefaultKey, caller: TeamBuilder, svc: Svc
    ) -> dict[str, Any]:
        with transaction(svc) as uow:
            signing_keys.set_platform_default(
                uow,
                tenant_id=caller.tenant_id,
                platform=uploads.parse_platform(body.platform),
                key_id=body.key_id,
            )
        return {"success": True}

    @app.post("/delete_signing_key")
    def delete_signing_key(body: KeyRef, caller: TeamBuilder, svc: Svc) -> dict[str, Any]:
        with transaction(svc) as uow:
            signing_keys.delete(uow, tenant_id=caller.tenant_id, key_id=body.key_id)
        return {"success": True}

    # --- the legacy per-application signing file (Team+) -----------------------------------

    @app.post("/upload_code_signing_file")
    def upload_code_signing_file(
        body: CodeSigningFile, caller: TeamBuilder, svc: Svc
    ) -> dict[str, Any]:
        with transaction(svc) as uow:
            url = apps.request_signing_file(
                uow,
                svc.clock,
                svc.sealer(),
                svc.store,
                caller,
                app_id=body.application_id,
                platform=body.platform,
                password=body.password,
                alias=body.alias,
                file_name=None,
                url_ttl=svc.policy.url_ttl,
            )
        return {"url": url}

    @app.post("/sign_application_build")
    def sign_application_build(body: SignBuild, caller: TeamBuilder, svc: Svc) -> dict[str, Any]:
        with transaction(svc) as uow:
            job_id = builds.sign_named(
                uow,
                svc.clock,
                caller,
                platform=body.platform,
                file_name=body.name,
                start_time=body.start_time,
            )
        svc.queue.notify(job_id)
        return {"success": True, "message": "Build queued for signing"}

    return app
