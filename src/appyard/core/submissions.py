"""Submissions: a whole build file posted in one request, with what the client says about it
(a multipart/form-data upload), becomes a build.

The file was streamed to the spool while it arrived (``api/forms.py``). Here it is read on the
upload-time fast path (manifest or Info.plist, resources, icon, provisioning profile; no
signature verification, which reads every byte), bound to its app (the first build names the
app's package or bundle id; another one is refused), recorded as a build with its facts and
the client's metadata, its icon stored, and adopted into the store, where it arrives like any
other upload (``core.arrivals``). Files that cannot be inspected (a console or desktop build)
are stored as *packages*: a custom platform and the identity the client declares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appyard import errors
from appyard.core import apps, arrivals, builds, identity, jobs, uploads
from appyard.core.context import Services
from appyard.core.models import Actor, App, Build, ConfigVersion, Platform, UploadPurpose
from appyard.core.ports import UnitOfWork
from appyard.inspect import summary, to_jsonable

INSPECTED = ("apk", "aab", "ipa")
_PACKAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+()\-]{0,199}$")
_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,254}$")
MAX_ICON_BYTES = 2 * 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n"
JPEG = b"\xff\xd8\xff"


class UnsupportedFile(errors.BadRequest):
    """appyard inspects .apk, .aab and .ipa files; others are custom-platform packages."""

    code = "upload.unsupported_type"


class PackageFieldMissing(errors.InvalidField):
    """A custom-platform build needs its platform, identifier, version and icon."""

    code = "upload.package_field_missing"


@dataclass(frozen=True)
class Package:
    """A file appyard does not inspect, with the identity its uploader declares."""

    platform: str  # a custom build platform: macos, ps4, ps5, switch, xbox-one, xbox-series
    identifier: str | None
    version: str | None
    icon: Path | None  # a spooled .png or .jpeg


def receive(
    svc: Services,
    uow: UnitOfWork,
    actor: Actor,
    *,
    app: App,
    path: Path,
    file_name: str,
    source: str,
    meta: dict[str, Any],
    package: Package | None = None,
) -> Build:
    """The spooled file at ``path`` becomes a build of ``app``: inspected (and processed by a
    ``build.inspect`` job), or, as a ``package``, kept as it is (``build.keep``)."""
    identity.require_scope(actor, identity.SCOPE_BUILDS, label="Builds")
    name = uploads.base_name(file_name)
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if package is None and extension not in INSPECTED:
        raise UnsupportedFile(
            f"{name!r} is not an .apk, .aab or .ipa file; send its platform, identifier, version "
            "and icon to distribute it as a custom-platform build."
        )
    if package is None or (extension in INSPECTED and package.platform in ("android", "ios")):
        return _inspected(svc, uow, actor, app, path, name, source, meta, package)
    return _package(svc, uow, actor, app, path, name, source, meta, package)


def _inspected(
    svc: Services,
    uow: UnitOfWork,
    actor: Actor,
    app: App,
    path: Path,
    file_name: str,
    source: str,
    meta: dict[str, Any],
    package: Package | None,
) -> Build:
    name = uploads.clean_file_name(file_name)
    kind = name.rsplit(".", 1)[1]
    platform = uploads.EXTENSION_PLATFORM[kind]
    if package is not None and package.platform != platform.value:
        raise errors.PlatformMismatch(
            f"A .{kind} file is for {platform.value}, not {package.platform}."
        )
    builds.check_limits(
        uow, svc.clock, tenant_id=actor.tenant, platform=platform, version=ConfigVersion.PRODUCTION
    )
    facts = summary(path, kind)
    found = facts.identity
    app = apps.bind(uow, app, platform=platform, identifier=found.identifier)
    icon = getattr(facts, "icon", None)
    return _record(
        svc,
        uow,
        app=app,
        platform=platform,
        path=path,
        file_name=name,
        source=source,
        meta=meta,
        job_kind=jobs.INSPECT_BUILD,
        facts=to_jsonable(facts),
        icon=icon.png if icon is not None else None,
        identifier=found.identifier,
        version_code=found.version_code,
        version_name=found.version_name,
    )


def _package(
    svc: Services,
    uow: UnitOfWork,
    actor: Actor,
    app: App,
    path: Path,
    file_name: str,
    source: str,
    meta: dict[str, Any],
    package: Package,
) -> Build:
    try:
        platform = Platform(package.platform.strip().lower())
    except ValueError:
        known = ", ".join(p.value for p in Platform)
        raise errors.InvalidField(
            f"buildPlatform must be one of {known}.", field="buildPlatform"
        ) from None
    for field, value in (
        ("packageName", package.identifier),
        ("packageVersion", package.version),
        ("packageIcon", package.icon),
    ):
        if not value:
            raise PackageFieldMissing(
                f"{field} is required for a custom-platform build ({platform.value}).",
                field=field,
            )
    assert package.identifier is not None and package.icon is not None
    if not _IDENTIFIER.match(package.identifier):
        raise errors.InvalidField(
            "packageName is an identifier such as com.example.game.", field="packageName"
        )
    if not _PACKAGE_NAME.match(file_name):
        raise errors.InvalidFileName("The build's file name must be a plain file name.")
    icon = package.icon.read_bytes()[: MAX_ICON_BYTES + 1]
    if len(icon) > MAX_ICON_BYTES or not (icon.startswith(PNG) or icon.startswith(JPEG)):
        raise errors.InvalidField(
            "packageIcon must be a .png or .jpeg image of at most 2 MB.", field="packageIcon"
        )
    builds.check_limits(
        uow, svc.clock, tenant_id=app.tenant_id, platform=platform, version=ConfigVersion.PRODUCTION
    )
    app = apps.bind(uow, app, platform=platform, identifier=package.identifier)
    version = (package.version or "")[:255]
    return _record(
        svc,
        uow,
        app=app,
        platform=platform,
        path=path,
        file_name=file_name,
        source=source,
        meta=meta,
        job_kind=jobs.KEEP_BUILD,
        facts={"package": {"identifier": package.identifier, "version": version}},
        icon=icon,
        identifier=package.identifier,
        version_code=version,
        version_name=version,
    )


def _record(
    svc: Services,
    uow: UnitOfWork,
    *,
    app: App,
    platform: Platform,
    path: Path,
    file_name: str,
    source: str,
    meta: dict[str, Any],
    job_kind: str,
    facts: dict[str, Any],
    icon: bytes | None,
    **identity_fields: Any,
) -> Build:
    build, _ = builds.create(
        uow,
        svc.clock,
        tenant_id=app.tenant_id,
        platform=platform,
        config_version=ConfigVersion.PRODUCTION,
        file_name=file_name,
        source=source,
        job_kind=job_kind,
        app_id=app.id,
        meta=meta,
        facts=facts,
        **identity_fields,
    )
    if icon:
        svc.store.write(builds.icon_key(build), [icon])
    ticket = uploads.open_upload(
        uow,
        svc.clock,
        svc.store,
        svc.policy,
        tenant_id=app.tenant_id,
        purpose=UploadPurpose.BUILD,
        subject_id=build.id,
        key=build.source_key,
        file_name=file_name,
        max_size=svc.policy.max_size,
        signed=False,
    )
    arrivals.adopt(svc, uow, ticket.upload, path)
    return uow.builds.get(build.id) or build
