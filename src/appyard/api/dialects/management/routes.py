"""The management API, paths verbatim (all POST with a JSON body): applications, build history,
upload URLs, multipart complete/abort, download and delete of builds, signing keys, and the
legacy per-application signing file. Each route: vendor request -> core call(s) in one
transaction -> vendor response.

The vendor names a build by four parts (version, platform, ``start_time``, file name): the
``start_time`` is the build's number, and the other three must match it (:func:`named`).
"Permission: Builds" is the ``builds`` token scope and "Plan: Team+" the signing-key plan,
both checked by core.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI

from appyard.api.dialects.management import credentials
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
from appyard.api.kit import Svc, authenticator
from appyard.core import apps, arrivals, builds, signing_keys, uploads
from appyard.core.models import Actor, Build, BuildStatus, KeyState, Platform, SigningKey
from appyard.core.ports import UnitOfWork

SOURCE = "management"
Caller = Annotated[Actor, Depends(authenticator(credentials.extract, credentials.MISSING))]


# --- the vendor's build names ---------------------------------------------------------------------


def named(
    uow: UnitOfWork,
    caller: Actor,
    *,
    version: str | None,
    platform: str,
    start_time: int,
    file_name: str,
) -> Build:
    """The caller's build named the way build history shows it; deleted ones included."""
    ver = uploads.parse_version(version) if version is not None else None
    plat = uploads.parse_platform(platform)
    name = uploads.base_name(file_name)
    build = uow.builds.get_by_number(caller.tenant, start_time)
    if (
        build is None
        or (ver is not None and build.config_version is not ver)
        or build.platform is not plat
        or build.file_name != name
    ):
        what = f"{plat.value} {ver.value}" if ver is not None else plat.value
        raise builds.BuildNotFound(f"No {what} build with start_time {start_time} named {name!r}.")
    return build


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
        return "Complete" if build.signed else "Complete (unsigned)"
    if build.status is BuildStatus.FAILED:
        return f"Failed: {build.error_message}" if build.error_message else "Failed"
    return build.progress.value


def build_body(build: Build, keys: dict[str, SigningKey]) -> dict[str, Any]:
    key = keys.get(build.signing_key_id) if build.signing_key_id else None
    return {
        "start_time": build.number,
        # never before start_time (the number may run a few seconds ahead of the clock)
        "end_time": None
        if build.status is BuildStatus.PROCESSING
        else max(_epoch(build.updated_at), build.number),
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


def routes(app: FastAPI) -> None:
    # --- applications and builds -----------------------------------------------------------

    @app.post("/get_applications")
    def get_applications(caller: Caller, svc: Svc, body: Empty | None = None) -> dict[str, Any]:
        with svc.uow() as uow:
            summaries = apps.list_apps(uow, caller)

        def image(build: Build | None) -> str | None:
            signed = builds.icon_request(svc.store, build, expires_in=svc.policy.url_ttl)
            return signed.url if signed else None

        return {
            "applications": [
                {
                    "platform": s.app.platform.value if s.app.platform else None,
                    "build_version": s.latest.version_name if s.latest else None,
                    "build_id": s.app.identifier,
                    "build_name": apps.label_of(s.latest) or s.app.name,
                    "build_image": image(s.latest),
                    "creation_time": _epoch(s.app.created_at),
                    "application_id": s.app.id,
                }
                for s in summaries
            ]
        }

    @app.post("/get_application_builds")
    def get_application_builds(body: BuildsRequest, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.uow() as uow:
            page = builds.page(
                uow,
                svc.clock,
                caller,
                version=body.version,
                page=body.page,
                page_size=body.page_size,
            )
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
    def upload_application_build(body: UploadRequest, caller: Caller, svc: Svc) -> dict[str, Any]:
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
            "start_time": build.number,
            "expires_in": ticket.expires_in,
            "signing_key_id": build.signing_key_id,
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
        return {"url": ticket.put.url, **common}

    @app.post("/complete_multipart_upload")
    def complete_multipart_upload(
        body: CompleteRequest, caller: Caller, svc: Svc
    ) -> dict[str, Any]:
        with svc.transaction() as uow:
            arrivals.complete_multipart(
                svc,
                uow,
                caller,
                file_path=body.file_path,
                upload_id=body.upload_id,
                parts=[(p.PartNumber, p.ETag) for p in body.parts],
            )
        return {"message": "Upload completed successfully"}

    @app.post("/abort_multipart_upload")
    def abort_multipart_upload(body: AbortRequest, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            arrivals.abort(svc, uow, caller, file_path=body.file_path, upload_id=body.upload_id)
        return {"message": "Upload aborted successfully"}

    @app.post("/download_application_build")
    def download_application_build(body: NamedBuild, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.uow() as uow:
            build = named(
                uow,
                caller,
                version=body.version,
                platform=body.platform,
                start_time=body.start_time,
                file_name=body.file_name,
            )
            result = builds.download(
                uow, svc.store, caller, build_id=build.id, url_ttl=svc.policy.url_ttl
            )
        return {"url": result.url}

    @app.post("/delete_application_build")
    def delete_application_build(body: NamedBuild, caller: Caller, svc: Svc) -> dict[str, Any]:
        builds.may_change(caller)
        with svc.transaction() as uow:
            build = named(
                uow,
                caller,
                version=body.version,
                platform=body.platform,
                start_time=body.start_time,
                file_name=body.file_name,
            )
            builds.delete(svc, uow, caller, build_id=build.id)
        return {"success": True}

    @app.post("/delete_application")
    def delete_application(body: DeleteApplication, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            apps.delete(uow, svc.clock, svc.store, caller, app_id=body.application_id)
        return {"success": True}

    # --- signing keys (Team+) --------------------------------------------------------------

    @app.post("/get_signing_keys")
    def get_signing_keys(caller: Caller, svc: Svc, body: Empty | None = None) -> dict[str, Any]:
        with svc.uow() as uow:
            tenant_id = signing_keys.managing(uow, caller, write=False)
            keys = signing_keys.managed_keys(uow, tenant_id=tenant_id)
        return {"signing_keys": [key_body(k) for k in keys]}

    @app.post("/upload_signing_key")
    def upload_signing_key(body: UploadSigningKey, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            key, request = signing_keys.request_upload(
                uow,
                svc.clock,
                svc.sealer(),
                svc.store,
                svc.policy,
                caller,
                name=body.key_name,
                platform=uploads.parse_platform(body.platform),
                file_name=body.file_name,
                password=body.password,
                alias=body.alias,
                file_size=body.file_size,
                make_default=body.is_default,
            )
        return {"key_id": key.id, "url": request.url}

    @app.post("/set_default_signing_key")
    def set_default_signing_key(body: SetDefaultKey, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            signing_keys.set_platform_default(
                uow,
                tenant_id=signing_keys.managing(uow, caller, write=True),
                platform=uploads.parse_platform(body.platform),
                key_id=body.key_id,
            )
        return {"success": True}

    @app.post("/delete_signing_key")
    def delete_signing_key(body: KeyRef, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            signing_keys.delete(
                uow,
                svc.store,
                tenant_id=signing_keys.managing(uow, caller, write=True),
                key_id=body.key_id,
            )
        return {"success": True}

    # --- the legacy per-application signing file (Team+) -----------------------------------

    @app.post("/upload_code_signing_file")
    def upload_code_signing_file(body: CodeSigningFile, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            request = apps.request_signing_file(
                uow,
                svc.clock,
                svc.sealer(),
                svc.store,
                svc.policy,
                caller,
                app_id=body.application_id,
                platform=body.platform,
                password=body.password,
                alias=body.alias,
                file_name=None,
            )
        return {"url": request.url}

    @app.post("/sign_application_build")
    def sign_application_build(body: SignBuild, caller: Caller, svc: Svc) -> dict[str, Any]:
        with svc.transaction() as uow:
            builds.may_resign(uow, caller)
            build = named(
                uow,
                caller,
                version=None,
                platform=body.platform,
                start_time=body.start_time,
                file_name=body.name,
            )
            builds.resign(uow, svc.clock, caller, build_id=build.id)
        return {"success": True, "message": "Build queued for signing"}
