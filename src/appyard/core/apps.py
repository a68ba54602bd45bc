"""Apps (a dialect's "application" or "project"): one record per package name or bundle id in
a tenant, with a slug unique in the tenant.

An app is made by its first processed build, or ahead of any build by name (a project a
dialect names, ``appyard admin create-app``); then the first build's identifier binds to it
and a later build with another identifier is refused. An app is listed with its newest build;
it may be deleted once it is seven days old, unless a store version still needs it. Its builds
stay in history without it. An app may carry a legacy code-signing file per platform
(:func:`request_signing_file`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import timedelta

from appyard import errors
from appyard.core import identity, signing_keys, uploads
from appyard.core.crypto import SecretBox
from appyard.core.ids import new_id
from appyard.core.models import Actor, App, Build, Platform, TokenKind
from appyard.core.policy import UploadPolicy
from appyard.core.ports import BlobStore, Clock, SignedRequest, UnitOfWork

MIN_AGE_TO_DELETE = timedelta(days=7)
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class AppNotFound(errors.NotFound):
    """Application not found."""

    code = "app.not_found"


class AppTooNew(errors.Conflict):
    """Applications cannot be deleted within 7 days of creation."""

    code = "app.too_new"


class AppHasVersions(errors.Conflict):
    """The application has store versions and cannot be deleted."""

    code = "app.has_versions"


class AppSlugTaken(errors.Conflict):
    """An app with this name already exists in the tenant."""

    code = "app.slug_taken"


class AppIdentifierMismatch(errors.InvalidArtifact):
    """The build is of another app than the one it was uploaded to."""

    code = "app.identifier_mismatch"


@dataclass(frozen=True)
class AppSummary:
    app: App
    latest: Build | None  # the newest build of the app


def check_slug(slug: str) -> str:
    if not _SLUG.match(slug):
        raise errors.InvalidField(
            "An app's name is 1-100 characters of letters, digits, '.', '_' or '-', starting "
            "with a letter or digit.",
            field="slug",
        )
    return slug


def _free_slug(uow: UnitOfWork, tenant_id: str, wanted: str, platform: Platform) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "-", wanted)[:90] or "app"
    for slug in (base, f"{base}-{platform.value}"):
        if uow.apps.get_by_slug(tenant_id, slug) is None:
            return slug
    return f"{base}-{new_id('x')[2:]}"


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
        slug=_free_slug(uow, tenant_id, identifier, platform),
    )
    try:
        uow.apps.add(app)
    except errors.Conflict:
        found = uow.apps.find(tenant_id, platform, identifier)
        if found is None:
            raise
        return found
    return app


def named(
    uow: UnitOfWork, clock: Clock, *, tenant_id: str, slug: str, create: bool, name: str = ""
) -> App:
    """The tenant's app called ``slug``; made (with no identifier yet) when ``create``."""
    check_slug(slug)
    app = uow.apps.get_by_slug(tenant_id, slug)
    if app is not None:
        return app
    if not create:
        raise AppNotFound(f"No application {slug!r}.")
    app = App(
        id=new_id("app"),
        tenant_id=tenant_id,
        platform=None,
        identifier=None,
        name=name.strip() or slug,
        created_at=clock.now(),
        slug=slug,
    )
    try:
        uow.apps.add(app)
    except errors.Conflict:  # made at the same moment by another request
        found = uow.apps.get_by_slug(tenant_id, slug)
        if found is None:
            raise
        return found
    return app


def create(uow: UnitOfWork, clock: Clock, *, tenant_id: str, slug: str, name: str = "") -> App:
    """A new app named ``slug``, ahead of any build (its first build binds its identifier)."""
    if uow.apps.get_by_slug(tenant_id, check_slug(slug)) is not None:
        raise AppSlugTaken(f"An app named {slug!r} already exists.", slug=slug)
    return named(uow, clock, tenant_id=tenant_id, slug=slug, create=True, name=name)


def by_ref(uow: UnitOfWork, *, tenant_id: str, ref: str) -> App:
    """The tenant's app by its id or its slug."""
    app = uow.apps.get(ref)
    if app is None or app.tenant_id != tenant_id:
        app = uow.apps.get_by_slug(tenant_id, ref)
    if app is None:
        raise AppNotFound(f"No application {ref!r}.")
    return app


def for_uploads(
    uow: UnitOfWork, actor: Actor, *, tenant_ref: str | None = None, app_ref: str | None = None
) -> App:
    """The app an actor sends builds to: an app token's own app (naming none), or, for a
    tenant-wide token (a service account), the app named by ``app_ref`` in the tenant named
    by ``tenant_ref`` (its id or name). Anything else is not found, so ids reveal nothing."""
    if actor.app_id is not None:
        if tenant_ref is not None or app_ref is not None:
            raise errors.Forbidden("An app token sends builds to its own app only.")
        return get(uow, actor, app_id=actor.app_id)
    identity.require_token(actor, TokenKind.SERVICE_ACCOUNT, action="uploading to any app")
    if tenant_ref is None or app_ref is None:
        raise errors.Forbidden("A tenant-wide token names the tenant and app it sends builds to.")
    tenant = uow.tenants.get(actor.tenant)
    if tenant is None or tenant_ref not in (tenant.id, tenant.name) or not app_ref:
        raise AppNotFound("Entity not found.")
    return by_ref(uow, tenant_id=tenant.id, ref=app_ref)


def bind(uow: UnitOfWork, app: App, *, platform: Platform, identifier: str) -> App:
    """The app's first build names what it is; a later build of another app is refused."""
    if app.identifier is None:
        other = uow.apps.find(app.tenant_id, platform, identifier)
        if other is not None and other.id != app.id:
            raise AppIdentifierMismatch(
                f"{identifier} already belongs to the app {other.slug!r} of this tenant; "
                f"upload it there, not to {app.slug!r}."
            )
        bound = replace(app, platform=platform, identifier=identifier)
        uow.apps.save(bound)
        return bound
    if app.identifier != identifier or (app.platform is not None and app.platform is not platform):
        raise AppIdentifierMismatch(
            f"The build is {identifier} ({platform.value}), but {app.slug!r} is "
            f"{app.identifier} ({app.platform.value if app.platform else 'unbound'})."
        )
    return app


def list_apps(uow: UnitOfWork, actor: Actor) -> list[AppSummary]:
    return [
        AppSummary(app=app, latest=uow.builds.latest_for_app(app.id))
        for app in uow.apps.list(actor.tenant)
    ]


def label_of(build: Build | None) -> str | None:
    """The app's label as its artifact names it: Android's application label, iOS's
    CFBundleDisplayName (else CFBundleName); None before the build was inspected."""
    facts = build.facts if build is not None else None
    if not facts:
        return None
    manifest = facts.get("manifest")
    label = manifest.get("label") if isinstance(manifest, dict) else None
    label = label or facts.get("display_name") or facts.get("bundle_name")
    return str(label) if label else None


def get(uow: UnitOfWork, actor: Actor, *, app_id: str) -> App:
    app = uow.apps.get(app_id)
    if app is None or app.tenant_id != actor.tenant:
        raise AppNotFound(f"No application {app_id!r}.")
    return app


def delete(uow: UnitOfWork, clock: Clock, store: BlobStore, actor: Actor, *, app_id: str) -> None:
    identity.require_scope(actor, identity.SCOPE_BUILDS, label="Builds")
    app = get(uow, actor, app_id=app_id)
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
    signing_keys.forget_app(uow, store, tenant_id=app.tenant_id, app_id=app.id)
    uow.builds.detach_app(app.id)
    uow.apps.delete(app.id)


def request_signing_file(
    uow: UnitOfWork,
    clock: Clock,
    box: SecretBox,
    store: BlobStore,
    policy: UploadPolicy,
    actor: Actor,
    *,
    app_id: str,
    platform: str,
    password: str,
    alias: str | None,
    file_name: str | None,
) -> SignedRequest:
    """A pending signing file for the app; returns the signed request to PUT it with. It
    replaces the app's earlier file for the platform once it opens."""
    signing_keys.managing(uow, actor, write=True)
    app = get(uow, actor, app_id=app_id)
    plat = uploads.parse_platform(platform)
    if app.platform is not None and plat is not app.platform:
        raise errors.InvalidField(
            f"Application {app.id} is a {app.platform.value} application, not {plat.value}.",
            field="platform",
        )
    if not password:
        raise errors.InvalidField("password is required.", field="password")
    _, request = signing_keys.request_upload(
        uow,
        clock,
        box,
        store,
        policy,
        actor,
        name=f"{app.name[:200]} signing file",
        platform=plat,
        file_name=file_name,
        password=password,
        alias=alias,
        file_size=None,
        make_default=False,
        app_id=app.id,
    )
    return request
