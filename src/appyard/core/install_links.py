"""Install links: unguessable, expiring, revocable links to a build's install page.

``/i/<token>`` is a page made for a phone (the portal renders it); whoever holds the link may
install the build until it expires or is revoked, without an account. A link is made for a
completed build (its processed output, or its input when processing kept no output of its own,
as for a store version's validation) by a tenant member or a token with the Builds permission
(the portal, the native API), or by an operator (``appyard admin install-link``).

* The token is 192 random bits. The database keeps its SHA-256 (to find the link by) and the
  token sealed under the master key (so the build's page can show the link and its QR code
  again); neither a log line nor an event carries it.
* Every download through a link is recorded: build, link, time, client address, user agent.
* An Android App Bundle cannot be installed on a device: its page says so and offers its
  *universal APK*, an APK build of the same app and version code, when one was uploaded.
* An IPA installs over the air from an ``itms-services://`` link to a manifest plist
  (:func:`ota_manifest`) when it is signed for ad-hoc, enterprise or development distribution;
  iOS insists on https for both the manifest and the IPA.
"""

from __future__ import annotations

import plistlib
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from appyard import errors
from appyard.core import builds, identity, outbox
from appyard.core.crypto import SecretBox
from appyard.core.ids import hash_secret, new_id
from appyard.core.models import (
    Actor,
    App,
    Build,
    BuildStatus,
    InstallDownload,
    InstallLink,
    Platform,
)
from appyard.core.ports import BlobStore, Clock, SignedRequest, UnitOfWork

DEFAULT_EXPIRY = timedelta(days=7)
MIN_EXPIRY = timedelta(minutes=5)
MAX_EXPIRY = timedelta(days=365)
DOWNLOAD_URL_TTL = 15 * 60  # seconds a download's signed URL lives (iOS fetches the IPA late)
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([smhdw]?)\s*$")
_UNITS = {"s": 1, "": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# How an iOS build is provisioned -> whether it installs over the air.
OTA_TYPES = ("ad-hoc", "enterprise", "development")


class InstallLinkNotFound(errors.NotFound):
    """No such install link."""

    code = "install_link.not_found"


class InstallLinkGone(errors.Conflict):
    """This install link has expired or was revoked."""

    code, status = "install_link.gone", 410


class BuildNotInstallable(errors.Conflict):
    """Only a completed build can be shared with an install link."""

    code = "install_link.build_not_ready"


@dataclass(frozen=True)
class SharedLink:
    """A link as its owners see it: the link, its token (opened), its URL and its state."""

    link: InstallLink
    token: str
    url: str
    state: str  # active | expired | revoked


@dataclass(frozen=True)
class Opened:
    """What an install page shows: the link's build, its app, and what can be installed."""

    link: InstallLink
    build: Build
    app: App | None
    file: str  # apk | aab | ipa
    universal: Build | None  # an AAB's universal APK, when one was uploaded
    ios_distribution: str | None  # ad-hoc | enterprise | development | app-store | None

    @property
    def installable_here(self) -> bool:
        """Whether the main button installs the build on a device (not an AAB)."""
        if self.file == "aab":
            return False
        if self.file == "ipa":
            return self.ios_distribution != "app-store"
        return True


def parse_expiry(text: str | int | None) -> timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` or a number of seconds; 5 minutes to 365 days."""
    if text is None or text == "":
        return DEFAULT_EXPIRY
    match = _DURATION.match(str(text).lower())
    if match is None:
        raise errors.InvalidField(
            "expires is a duration such as 30m, 12h, 7d or 2w (or a number of seconds).",
            field="expires",
        )
    span = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    if not MIN_EXPIRY <= span <= MAX_EXPIRY:
        raise errors.InvalidField(
            "An install link lives from 5 minutes to 365 days.", field="expires"
        )
    return span


def url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/i/{token}"


def state(link: InstallLink, now: datetime) -> str:
    if link.revoked_at is not None:
        return "revoked"
    return "expired" if link.expires_at <= now else "active"


def file_kind(build: Build) -> str:
    return build.file_name.rsplit(".", 1)[-1].lower()


def file_key(build: Build) -> str | None:
    """The object a link hands out: the processed output, else (a build whose job keeps no
    output of its own, like a store version's validation) the input."""
    if build.deleted or build.status is not BuildStatus.COMPLETED:
        return None
    return build.output_key or build.source_key


def _aad(link_id: str) -> str:
    return f"install_link:{link_id}:token"


def _shared(link: InstallLink, box: SecretBox, public_url: str, now: datetime) -> SharedLink:
    token = box.open(link.sealed_token, _aad(link.id)).decode()
    return SharedLink(link=link, token=token, url=url(public_url, token), state=state(link, now))


# --- making and revoking --------------------------------------------------------------------------


def may_share(actor: Actor) -> None:
    """Sharing a build needs the Builds permission (tokens) or tenant membership (people)."""
    identity.require_scope(actor, identity.SCOPE_BUILDS, label="Builds")
    actor.tenant  # store staff belong to no tenant  # noqa: B018


def create(
    uow: UnitOfWork,
    clock: Clock,
    box: SecretBox,
    actor: Actor,
    *,
    build_id: str,
    expires_in: timedelta,
    public_url: str,
) -> SharedLink:
    may_share(actor)
    build = builds.get(uow, actor, build_id=build_id)
    return _make(uow, clock, box, build, f"{actor.kind}:{actor.id}", expires_in, public_url)


def create_as_operator(
    uow: UnitOfWork,
    clock: Clock,
    box: SecretBox,
    *,
    build: Build,
    expires_in: timedelta,
    public_url: str,
) -> SharedLink:
    """An operator's link (``appyard admin install-link``), for a build found by
    :func:`find_build`."""
    return _make(uow, clock, box, build, "operator", expires_in, public_url)


def _make(
    uow: UnitOfWork,
    clock: Clock,
    box: SecretBox,
    build: Build,
    created_by: str,
    expires_in: timedelta,
    public_url: str,
) -> SharedLink:
    if file_key(build) is None:
        raise BuildNotInstallable(
            f"Build {build.number} is "
            + ("deleted" if build.deleted else build.status.value)
            + "; install links are made for completed builds."
        )
    if not MIN_EXPIRY <= expires_in <= MAX_EXPIRY:
        raise errors.InvalidField(
            "An install link lives from 5 minutes to 365 days.", field="expires"
        )
    now = clock.now()
    token = secrets.token_urlsafe(24)
    link_id = new_id("il")
    link = InstallLink(
        id=link_id,
        tenant_id=build.tenant_id,
        build_id=build.id,
        token_hash=hash_secret(token),
        sealed_token=box.seal(token.encode(), _aad(link_id)),
        created_by=created_by,
        created_at=now,
        expires_at=now + expires_in,
    )
    uow.install_links.add(link)
    outbox.emit(
        uow,
        clock,
        "install_link.created",
        tenant_id=build.tenant_id,
        subject_id=link.id,
        build_id=build.id,
        expires_at=link.expires_at.isoformat(),
        actor=created_by,
    )
    return SharedLink(link=link, token=token, url=url(public_url, token), state="active")


def for_build(
    uow: UnitOfWork, clock: Clock, box: SecretBox, actor: Actor, *, build_id: str, public_url: str
) -> list[SharedLink]:
    build = builds.get(uow, actor, build_id=build_id)
    now = clock.now()
    return [_shared(link, box, public_url, now) for link in uow.install_links.for_build(build.id)]


def revoke(uow: UnitOfWork, clock: Clock, actor: Actor, *, link_id: str) -> InstallLink:
    may_share(actor)
    link = uow.install_links.get(link_id)
    if link is None or link.tenant_id != actor.tenant:
        raise InstallLinkNotFound(f"No install link {link_id!r}.")
    return _revoke(uow, clock, link, f"{actor.kind}:{actor.id}")


def revoke_as_operator(uow: UnitOfWork, clock: Clock, *, link_id: str) -> InstallLink:
    link = uow.install_links.get(link_id)
    if link is None:
        raise InstallLinkNotFound(f"No install link {link_id!r}.")
    return _revoke(uow, clock, link, "operator")


def _revoke(uow: UnitOfWork, clock: Clock, link: InstallLink, by: str) -> InstallLink:
    if link.revoked_at is not None:
        return link  # revoking twice changes nothing
    revoked = replace(link, revoked_at=clock.now(), revoked_by=by)
    uow.install_links.save(revoked)
    outbox.emit(
        uow,
        clock,
        "install_link.revoked",
        tenant_id=link.tenant_id,
        subject_id=link.id,
        build_id=link.build_id,
        actor=by,
    )
    return revoked


def find_build(uow: UnitOfWork, *, ref: str, tenant_id: str | None = None) -> Build:
    """A build by any id a dialect shows for it: its id, its number (the automation
    ``job_id``, the management API's ``start_time``, the upload-context build ``id``) or its
    store version's id. A number two tenants share needs ``tenant_id``."""
    ref = ref.strip()
    found: list[Build] = []
    build = uow.builds.get(ref)
    if build is not None:
        found = [build]
    elif ref.startswith("ver_"):
        version = uow.versions.get(ref)
        build = uow.builds.get(version.build_id) if version else None
        found = [build] if build else []
    elif ref.isdigit():
        found = uow.builds.with_number(int(ref))
    if tenant_id is not None:
        found = [b for b in found if b.tenant_id == tenant_id]
    if not found:
        raise builds.BuildNotFound(f"No build {ref!r}.")
    if len(found) > 1:
        raise errors.InvalidField(
            f"Build number {ref} exists in {len(found)} tenants; name the tenant.",
            field="tenant",
        )
    return found[0]


def reseal_all(uow: UnitOfWork, box: SecretBox) -> int:
    """Re-encrypt every link's token under the box's current master key (rotation)."""
    links = uow.install_links.every()
    for link in links:
        uow.install_links.save(
            replace(link, sealed_token=box.reseal(link.sealed_token, _aad(link.id)))
        )
    return len(links)


# --- the install page -------------------------------------------------------------------------


def open_link(uow: UnitOfWork, clock: Clock, *, token: str) -> Opened:
    """The page behind ``/i/<token>``: 404 for a token never issued, 410 once the link has
    expired or was revoked, or its build was deleted."""
    if not token or len(token) > 100:
        raise InstallLinkNotFound()
    link = uow.install_links.get_by_token_hash(hash_secret(token))
    if link is None:
        raise InstallLinkNotFound()
    build = uow.builds.get(link.build_id)
    now = clock.now()
    if link.revoked_at is not None:
        raise InstallLinkGone("This install link was revoked.", state="revoked")
    if link.expires_at <= now:
        raise InstallLinkGone(
            f"This install link expired on {link.expires_at.strftime('%Y-%m-%d %H:%M')} UTC.",
            state="expired",
        )
    if build is None or file_key(build) is None:
        raise InstallLinkGone("The build behind this install link was deleted.", state="deleted")
    kind = file_kind(build)
    return Opened(
        link=link,
        build=build,
        app=uow.apps.get(build.app_id) if build.app_id else None,
        file=kind,
        universal=universal_apk(uow, build) if kind == "aab" else None,
        ios_distribution=ios_distribution(build) if build.platform is Platform.IOS else None,
    )


def universal_apk(uow: UnitOfWork, build: Build) -> Build | None:
    """An AAB's universal APK: the newest completed APK build of the same app and version
    code (CI that builds a bundle usually uploads its universal APK beside it)."""
    if build.app_id is None or build.version_code is None:
        return None
    offset = 0
    while offset < 2000:
        page = uow.builds.list_for_app(build.app_id, offset, 100)
        for other in page:
            if (
                other.id != build.id
                and file_kind(other) == "apk"
                and other.version_code == build.version_code
                and file_key(other) is not None
            ):
                return other
        if len(page) < 100:
            return None
        offset += 100
    return None


def ios_distribution(build: Build) -> str | None:
    """How an IPA is provisioned (its embedded profile), when inspection read one."""
    facts: dict[str, Any] = build.facts or {}
    signature = facts.get("signature") or {}
    profile = facts.get("provisioning_profile") or {}
    found = signature.get("profile_type") or profile.get("signing_type")
    return str(found) if found else None


def download(
    uow: UnitOfWork,
    clock: Clock,
    store: BlobStore,
    *,
    token: str,
    client_address: str,
    user_agent: str,
    universal: bool = False,
) -> SignedRequest:
    """Record a download through the link and hand out a short-lived signed request for the
    file (an AAB's universal APK with ``universal``)."""
    opened = open_link(uow, clock, token=token)
    build = opened.build
    what = opened.file
    if universal:
        if opened.universal is None:
            raise builds.BuildNotFound("This build has no universal APK.")
        build, what = opened.universal, "universal-apk"
    key = file_key(build)
    assert key is not None
    uow.install_downloads.add(
        InstallDownload(
            id=new_id("dl"),
            tenant_id=build.tenant_id,
            build_id=opened.build.id,
            link_id=opened.link.id,
            at=clock.now(),
            client_address=client_address[:64],
            user_agent=user_agent[:500],
            file=what,
        )
    )
    return store.presign_get(key, file_name=build.file_name, expires_in=DOWNLOAD_URL_TTL)


def downloads(
    uow: UnitOfWork, actor: Actor, *, build_id: str, limit: int | None = None
) -> list[InstallDownload]:
    build = builds.get(uow, actor, build_id=build_id)
    return uow.install_downloads.for_build(build.id, limit)


def download_count(uow: UnitOfWork, actor: Actor, *, build_id: str) -> int:
    return uow.install_downloads.count_for_build(builds.get(uow, actor, build_id=build_id).id)


def icon(uow: UnitOfWork, clock: Clock, store: BlobStore, *, token: str) -> bytes | None:
    return builds.read_icon(store, open_link(uow, clock, token=token).build)


def ota_manifest(*, ipa_url: str, bundle_id: str, version: str, title: str) -> bytes:
    """The manifest an ``itms-services://?action=download-manifest`` link points at."""
    return plistlib.dumps(
        {
            "items": [
                {
                    "assets": [{"kind": "software-package", "url": ipa_url}],
                    "metadata": {
                        "bundle-identifier": bundle_id,
                        "bundle-version": version,
                        "kind": "software",
                        "title": title,
                    },
                }
            ]
        }
    )
