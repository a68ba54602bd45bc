"""Apps (the management API's "applications"): one record per package name or bundle id in a
tenant, made when a build of it is first processed.

An app is listed with its newest build; it may be deleted once it is seven days old, unless a
store version still needs it. Its builds stay in history without it. An app may carry a legacy
code-signing file per platform (:func:`request_signing_file`), a signing key bound to it that
``sign_application_build`` re-signs its builds with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from appyard import errors
from appyard.core import signing_keys, uploads
from appyard.core.crypto import SecretBox
from appyard.core.ids import new_id
from appyard.core.models import App, Build, Platform, Principal
from appyard.core.ports import BlobStore, Clock, UnitOfWork

MIN_AGE_TO_DELETE = timedelta(days=7)


class AppNotFound(errors.NotFound):
    """Application not found."""

    code = "app.not_found"


class AppTooNew(errors.Conflict):
    """Applications cannot be deleted within 7 days of creation."""

    code = "app.too_new"


class AppHasVersions(errors.Conflict):
    """The application has store versions and cannot be deleted."""

    code = "app.has_versions"


@dataclass(frozen=True)
class AppSummary:
    app: App
    latest: Build | None  # the newest build of the app


def find_or_create(
    uow: UnitOfWork, clock: Clock, *, tenant_id: str, platform: Platform, identifier: str
) -> App:
    """The tenant's app for this package name or bundle id, made on its first build.

    Two workers (or a worker and a store upload) may meet the same new app at once: the
    loser of the insert takes the winner's row."""
    app = uow.apps.find(tenant_id, platform, identifier)
    if app is not None:
        return app
    app = App(
        id=new_id("app"),
        tenant_id=tenant_id,
        platform=platform,
        identifier=identifier,
        name=identifier,
        created_at=clock.now(),
    )
    try:
        uow.apps.add(app)
    except errors.Conflict:
        found = uow.apps.find(tenant_id, platform, identifier)
        if found is None:
            raise
        return found
    return app


def list_apps(uow: UnitOfWork, principal: Principal) -> list[AppSummary]:
    return [
        AppSummary(app=app, latest=uow.builds.latest_for_app(app.id))
        for app in uow.apps.list(principal.tenant_id)
    ]


def get(uow: UnitOfWork, principal: Principal, *, app_id: str) -> App:
    app = uow.apps.get(app_id)
    if app is None or app.tenant_id != principal.tenant_id:
        raise AppNotFound(f"No application {app_id!r}.")
    return app


def delete(uow: UnitOfWork, clock: Clock, principal: Principal, *, app_id: str) -> None:
    app = get(uow, principal, app_id=app_id)
    age = clock.now() - app.created_at
    if age < MIN_AGE_TO_DELETE:
        days = max(1, (MIN_AGE_TO_DELETE - age).days + 1)
        raise AppTooNew(
            "Applications cannot be deleted within 7 days of creation; this one can be "
            f"deleted in {days} day{'s' if days != 1 else ''}."
        )
    if uow.versions.for_app(app.id):
        raise AppHasVersions(
            "The application has store versions; withdraw them through the store instead."
        )
    signing_keys.forget_app(uow, tenant_id=app.tenant_id, app_id=app.id)
    uow.builds.detach_app(app.id)
    uow.apps.delete(app.id)


def request_signing_file(
    uow: UnitOfWork,
    clock: Clock,
    box: SecretBox,
    store: BlobStore,
    principal: Principal,
    *,
    app_id: str,
    platform: str,
    password: str,
    alias: str | None,
    file_name: str | None,
    url_ttl: int,
) -> str:
    """A pending signing file for the app (legacy management API); returns the URL to PUT it
    to. It replaces the app's earlier file for the platform once it opens."""
    app = get(uow, principal, app_id=app_id)
    plat = uploads.parse_platform(platform)
    if plat is not app.platform:
        raise errors.InvalidField(
            f"Application {app.id} is a {app.platform.value} application, not {plat.value}.",
            field="platform",
        )
    if not password:
        raise errors.InvalidField("password is required.", field="password")
    _, url = signing_keys.request_upload(
        uow,
        clock,
        box,
        store,
        tenant_id=principal.tenant_id,
        name=f"{app.name[:200]} signing file",
        platform=plat,
        file_name=file_name,
        password=password,
        alias=alias,
        file_size=None,
        make_default=False,
        created_by=principal.token_id,
        url_ttl=url_ttl,
        app_id=app.id,
    )
    return url
