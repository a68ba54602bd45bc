"""The distribution API (../shared/specs/distribution-upload-api.txt, with the parameter names
of distribution-field-names.md): one multipart/form-data POST carries the build file, its
metadata, whom to notify, and where it came from in CI.

``/v1/integrations/builds`` takes an app token and uploads to its app;
``/v1/organizations/{organizationId}/apps/{applicationId}/builds`` takes a service-account
token and uploads to any app of its tenant (the organization is the tenant's id or name, the
application the app's id or slug). Both answer ``{"status": true, "data": {...}}`` with the
build ``pending``; it becomes ``success`` or ``error`` once processed, readable at
``GET .../builds/{id}``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from appyard import errors
from appyard.api.dialects.distribution import credentials
from appyard.api.forms import Form, stream_form
from appyard.api.kit import Svc, authenticator, multipart_body
from appyard.core import apps, builds, notifications, submissions
from appyard.core.context import Services
from appyard.core.models import Actor, App, Build, BuildStatus, Platform

SOURCE = "distribution"
Caller = Annotated[Actor, Depends(authenticator(credentials.extract, credentials.MISSING))]

DEPLOYER_INFO = (
    "commitMessage",
    "commit",
    "branch",
    "tag",
    "triggerTimestamp",
    "buildUrl",
    "ciUrl",
    "repositoryUrl",
    "buildNumber",
)
FILTER_SIZE = notifications.MAX_GROUPS
FILTER_FIELDS = tuple(f"filter[{i}][{j}]" for i in range(FILTER_SIZE) for j in range(FILTER_SIZE))
TEXT_FIELDS = (
    "buildPlatform",
    "packageName",
    "packageVersion",
    "versionName",
    "tags",
    "changelog",
    "notifyCollaborators",
    "notifyEmployees",
    "notifyMessage",
    "notifyLanguage",
    "notifyOnError",
    "filter",
    "deployer.name",
    *(f"deployer.info.{name}" for name in DEPLOYER_INFO),
    *FILTER_FIELDS,
)
FORM = multipart_body(
    "build",
    optional_files={"packageIcon": "the icon of a custom-platform build (.png or .jpeg)"},
    fields={name: name for name in TEXT_FIELDS if not name.startswith("filter")},
    patterns={
        r"^filter\[[0-9]\]\[[0-9]\]$": (
            "filter[i][j]: group j of filter i (a member must be in every group of a filter)"
        )
    },
)
MAX_ICON = submissions.MAX_ICON_BYTES
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


class BuildFileMissing(errors.BadRequest):
    """The form has no build file."""

    code = "build.file_missing"


# --- the form -------------------------------------------------------------------------------------


def _flag(form: Form, name: str) -> bool:
    value = form.fields.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise errors.InvalidField(f"{name} must be true or false.", field=name)


def _text(form: Form, name: str, limit: int = 255) -> str | None:
    value = form.fields.get(name, "").strip()
    if len(value) > limit:
        raise errors.InvalidField(f"{name} is at most {limit} characters.", field=name)
    return value or None


def _groups(form: Form) -> tuple[tuple[str, ...], ...]:
    """``filter[i][j]`` fields (or one JSON-like ``filter`` value) as OR-of-AND groups."""
    found: dict[int, dict[int, str]] = {}
    for name, value in form.fields.items():
        match = re.fullmatch(r"filter\[(\d+)\]\[(\d+)\]", name)
        if match and value.strip():
            found.setdefault(int(match[1]), {})[int(match[2])] = value.strip()
    groups = [tuple(row[j] for j in sorted(row)) for _, row in sorted(found.items())]
    return tuple(g for g in groups if g)


def notify_of(form: Form) -> notifications.Notify:
    return notifications.check_notify(
        notifications.Notify(
            collaborators=_flag(form, "notifyCollaborators"),
            employees=_flag(form, "notifyEmployees"),
            message=_text(form, "notifyMessage", notifications.MAX_MESSAGE) or "",
            language=_text(form, "notifyLanguage", 8),
            groups=_groups(form),
            on_error=_flag(form, "notifyOnError"),
        )
    )


def meta_of(form: Form) -> dict[str, Any]:
    tags = [t.strip() for t in (form.fields.get("tags") or "").split(",") if t.strip()]
    if len(tags) > 50 or any(len(t) > 64 for t in tags):
        raise errors.InvalidField("tags: at most 50, of at most 64 characters.", field="tags")
    info = {name: _text(form, f"deployer.info.{name}", 2048) for name in DEPLOYER_INFO}
    return {
        "versionName": _text(form, "versionName"),
        "tags": tags,
        "changelog": _text(form, "changelog", 20_000),
        "deployer": {
            "name": _text(form, "deployer.name"),
            "info": {k: v for k, v in info.items() if v is not None},
        },
        "notify": notify_of(form).to_meta(),
    }


def package_of(form: Form) -> submissions.Package | None:
    platform = _text(form, "buildPlatform", 20)
    if platform is None:
        return None
    icon = form.files.get("packageIcon")
    return submissions.Package(
        platform=platform.lower(),
        identifier=_text(form, "packageName"),
        version=_text(form, "packageVersion"),
        icon=icon.path if icon is not None and icon.size else None,
    )


# --- the answer -----------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _ms(start: datetime | None, end: datetime | None) -> int:
    return int((end - start).total_seconds() * 1000) if start and end else 0


def _status(build: Build) -> str:
    if build.status is BuildStatus.COMPLETED:
        return "success"
    if build.status is BuildStatus.FAILED:
        return "error"
    return "pending"


def _android(facts: dict[str, Any], icon: str) -> dict[str, Any]:
    manifest = facts.get("manifest") or {}
    return {
        "targetSdkVersion": _str(manifest.get("target_sdk")),
        "minSDKVersion": _str(manifest.get("min_sdk")),
        "packageName": manifest.get("package"),
        "platformBuildVersionName": manifest.get("compile_sdk_codename"),
        "platformBuildVersionCode": _str(manifest.get("compile_sdk")),
        "versionName": manifest.get("version_name"),
        "versionCode": _str((facts.get("identity") or {}).get("version_code")),
        "icon": icon,
    }


def _ios(facts: dict[str, Any], icon: str) -> dict[str, Any]:
    profile = facts.get("provisioning_profile") or {}
    devices = profile.get("provisioned_devices") or []
    return {
        "plist": {
            "CFBundleDisplayName": facts.get("display_name"),
            "CFBundleSupportedPlatforms": list(facts.get("supported_platforms") or []),
            "MinimumOSVersion": facts.get("minimum_os"),
            "CFBundleIdentifier": facts.get("bundle_id"),
            "CFBundleShortVersionString": facts.get("short_version"),
            "CFBundleVersion": facts.get("build_version"),
            "CFBundleName": facts.get("bundle_name"),
            "CFBundleIcons": list(facts.get("icon_names") or []),
            "UIDeviceFamily": [str(f) for f in facts.get("device_family") or []],
        },
        "mobileprovision": {
            "ExpirationDate": profile.get("expiration_date"),
            "TeamIdentifier": profile.get("team_id"),
            "ProvisionsAllDevices": bool(profile.get("provisions_all_devices")),
            "TeamName": profile.get("team_name"),
            "ProvisionedDevices": str(len(devices)) if devices else None,
            "signingType": profile.get("signing_type"),
        }
        if profile
        else None,
        "icon": icon,
    }


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def build_body(svc: Services, build: Build, app: App, actor: Actor) -> dict[str, Any]:
    facts = build.facts or {}
    signed = builds.icon_request(svc.store, build, expires_in=svc.policy.url_ttl)
    icon = signed.url if signed else ""
    package = facts.get("package")
    info: dict[str, Any] = {"icon": icon}
    if build.platform is Platform.ANDROID:
        info["android"] = _android(facts, icon)
    elif build.platform is Platform.IOS:
        info["ios"] = _ios(facts, icon)
    if package:
        info["pkg"] = {
            "CFBundleDisplayName": app.name,
            "CFBundleIdentifier": package.get("identifier"),
            "CFBundleShortVersionString": package.get("version"),
            "CFBundleVersion": package.get("version"),
            "CFBundleName": app.name,
        }
    meta = build.meta
    deployer = meta.get("deployer") or {"name": None, "info": {}}
    location = svc.store.location
    return {
        "id": build.id,
        "status": _status(build),
        "tags": list(meta.get("tags") or []),
        "versionName": meta.get("versionName") or build.version_name,
        "application": app.id,
        "applicationInfo": {"id": app.id, "name": app.name, "slug": app.slug, "picture": icon},
        "changelog": meta.get("changelog"),
        "info": info,
        "size": build.size or 0,
        "processTime": _ms(build.started_at, build.finished_at),
        "queuedTime": _ms(build.created_at, build.started_at),
        "versionCode": build.version_code,
        "os": build.platform.value,
        "deployer": deployer,
        "uploadedBy": {
            "id": actor.id,
            "email": None,
            "firstName": None,
            "lastName": None,
            "picture": None,
        },
        "originalExtension": build.file_name.rsplit(".", 1)[-1] if "." in build.file_name else "",
        "storageProvider": {"id": location.id, "name": location.name, "region": location.region},
        "error": build.error_message if build.status is BuildStatus.FAILED else None,
        "updatedAt": _iso(build.updated_at),
        "createdAt": _iso(build.created_at),
    }


# --- the routes -----------------------------------------------------------------------------------


async def _upload(
    request: Request, caller: Actor, svc: Services, tenant_ref: str | None, app_ref: str | None
) -> dict[str, Any]:
    with svc.uow() as uow:  # who may upload where is known before a byte is read
        app = apps.for_uploads(uow, caller, tenant_ref=tenant_ref, app_ref=app_ref)
    form = await stream_form(
        request,
        spool_dir=svc.spool_dir,
        file_fields=("build", "packageIcon"),
        text_fields=TEXT_FIELDS,
        max_size=svc.policy.max_size,
        file_limits={"packageIcon": MAX_ICON},
    )
    try:
        build_file = form.files.get("build")
        if build_file is None or build_file.size == 0:
            raise BuildFileMissing("The form has no 'build' file part (send -F build=@app.apk).")
        meta = meta_of(form)
        package = package_of(form)

        def receive() -> Build:
            with svc.transaction() as uow:
                return submissions.receive(
                    svc,
                    uow,
                    caller,
                    app=app,
                    path=build_file.path,
                    file_name=build_file.filename or "build",
                    source=SOURCE,
                    meta=meta,
                    package=package,
                )

        build = await run_in_threadpool(receive)
    finally:
        form.discard()
    with svc.uow() as uow:
        bound = apps.get(uow, caller, app_id=app.id)
    return {"status": True, "data": build_body(svc, build, bound, caller)}


def _read(
    svc: Services, caller: Actor, build_id: str, tenant_ref: str | None, app_ref: str | None
) -> dict[str, Any]:
    with svc.uow() as uow:
        app = apps.for_uploads(uow, caller, tenant_ref=tenant_ref, app_ref=app_ref)
        build = builds.get(uow, caller, build_id=build_id)
        if build.app_id != app.id:
            raise builds.BuildNotFound("Entity not found.")
    return {"status": True, "data": build_body(svc, build, app, caller)}


def routes(app: FastAPI) -> None:
    @app.post("/integrations/builds", openapi_extra=FORM)
    async def integration_upload(request: Request, caller: Caller, svc: Svc) -> dict[str, Any]:
        return await _upload(request, caller, svc, None, None)

    @app.get("/integrations/builds/{buildId}")
    def integration_build(buildId: str, caller: Caller, svc: Svc) -> dict[str, Any]:
        return _read(svc, caller, buildId, None, None)

    @app.post("/organizations/{organizationId}/apps/{applicationId}/builds", openapi_extra=FORM)
    async def workspace_upload(
        organizationId: str,
        applicationId: str,
        request: Request,
        caller: Caller,
        svc: Svc,
    ) -> dict[str, Any]:
        return await _upload(request, caller, svc, organizationId, applicationId)

    @app.get("/organizations/{organizationId}/apps/{applicationId}/builds/{buildId}")
    def workspace_build(
        organizationId: str, applicationId: str, buildId: str, caller: Caller, svc: Svc
    ) -> dict[str, Any]:
        return _read(svc, caller, buildId, organizationId, applicationId)
