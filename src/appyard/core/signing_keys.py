"""Managed signing keys: keystores (JKS, PKCS#12, PEM key + chain) a tenant's builds are
signed with.

A key is opened with its password and alias when it is created, and refused with a clear
reason (wrong password, missing alias, expired certificate, over 10 MB, no private key).
An iOS key must be a PKCS#12 file; it may carry a provisioning profile, which must be
readable, unexpired and list the key's certificate (:func:`check_profile`); IPAs are
re-signed with both (``signing/ios``), or with the IPA's own profile when the key has none.
The keystore file, its passwords and the profile are sealed with AES-GCM under the master key
(:mod:`appyard.core.crypto`) before they reach the database; raw secrets never leave this
module except as a :class:`SigningMaterial` handed to the signer. One default per platform
per tenant. Deleting a key wipes its material; a queued build that needs it then fails at
its Signing stage with a message saying so, rather than being signed with something else.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime

from appyard import errors
from appyard.core import identity, outbox, tenants, uploads
from appyard.core.context import Services
from appyard.core.crypto import SecretBox
from appyard.core.ids import new_id
from appyard.core.models import (
    Actor,
    KeyState,
    Plan,
    Platform,
    SigningKey,
    Upload,
    UploadPurpose,
    UploadState,
)
from appyard.core.policy import UploadPolicy
from appyard.core.ports import BlobInfo, BlobStore, Clock, SignedRequest, UnitOfWork
from appyard.inspect.mobileprovision import ProvisioningProfile, parse_mobileprovision
from appyard.signing.keystore import (
    MAX_KEYSTORE_BYTES,
    OpenedKeys,
    SigningKeyInvalid,
    SigningMaterial,
    generate_pkcs12,
    load_keystore_bytes,
)
from appyard.signing.lineage import DEFAULT_ROTATION_MIN_SDK, Rotation, read_lineage

# Managed keys opened for signing in this process, so that a build does not spend 0.1 s
# holding the GIL to derive its key from the keystore's password (signing/keystore.py).
OPENED = OpenedKeys()


class SigningKeyUnavailable(errors.Conflict):
    """The build's signing key cannot be used."""

    code = "signing_key.unavailable"


class ProfileUnreadable(SigningKeyInvalid):
    """The provisioning profile cannot be read."""

    code = "signing_key.profile_unreadable"


class ProfileExpired(SigningKeyInvalid):
    """The provisioning profile has expired."""

    code = "signing_key.profile_expired"


class ProfileCertificateMismatch(SigningKeyInvalid):
    """The provisioning profile does not list this certificate."""

    code = "signing_key.profile_certificate_mismatch"


def _aad(key_id: str, field: str) -> str:
    return f"signing_key:{key_id}:{field}"


def _describe(material: SigningMaterial) -> dict[str, object]:
    cert = material.certificate
    return {
        "cert_sha256": material.certificate_sha256,
        "subject": cert.subject.rfc4514_string(),
        "not_after": cert.not_valid_after_utc,
        "key_algorithm": material.key_algorithm,
        "alias": material.alias,
    }


def check_profile(data: bytes, material: SigningMaterial, *, now: datetime) -> ProvisioningProfile:
    """Read a ``.mobileprovision`` and check it fits the key: readable, not expired, and
    listing the key's certificate among its DeveloperCertificates."""
    try:
        profile = parse_mobileprovision(data, what="the provisioning profile")
    except errors.InvalidArtifact as exc:
        raise ProfileUnreadable(exc.message[:1].upper() + exc.message[1:]) from None
    if profile.expiration_date is None:
        raise ProfileUnreadable("The provisioning profile has no ExpirationDate.")
    if profile.expiration_date < now:
        label = f" {profile.name!r}" if profile.name else ""
        raise ProfileExpired(
            f"The provisioning profile{label} expired on "
            f"{profile.expiration_date.date().isoformat()}.",
            expired_at=profile.expiration_date.isoformat(),
        )
    cert_sha256 = material.certificate_sha256
    if not any(c.sha256 == cert_sha256 for c in profile.developer_certificates):
        raise ProfileCertificateMismatch(
            "The provisioning profile does not list this certificate "
            f"({material.certificate.subject.rfc4514_string()}, SHA-256 {cert_sha256}).",
            cert_sha256=cert_sha256,
        )
    return profile


def _with_profile(
    key: SigningKey, box: SecretBox, data: bytes, profile: ProvisioningProfile
) -> SigningKey:
    return replace(
        key,
        sealed_profile=box.seal(data, _aad(key.id, "profile")),
        profile_name=profile.name,
        profile_uuid=profile.uuid,
        profile_team_id=profile.team_id,
        profile_app_id=profile.application_identifier,
        profile_expires_at=profile.expiration_date,
    )


def _set_default(uow: UnitOfWork, key: SigningKey) -> None:
    for other in uow.signing_keys.list(key.tenant_id):
        if other.id != key.id and other.platform is key.platform and other.is_default:
            uow.signing_keys.save(replace(other, is_default=False))
    uow.signing_keys.save(replace(key, is_default=True))


def _is_first(uow: UnitOfWork, tenant_id: str, platform: Platform) -> bool:
    return not any(
        k.platform is platform and k.state is KeyState.READY
        for k in uow.signing_keys.list(tenant_id)
    )


def generate(
    uow: UnitOfWork,
    clock: Clock,
    box: SecretBox,
    *,
    tenant_id: str,
    name: str,
    created_by: str,
    make_default: bool = True,
) -> SigningKey:
    """A new Android signing key made here (RSA 3072, a self-signed certificate for 30
    years), stored like any managed key (its PKCS#12 file sealed with a random password).
    The first start gives the first tenant one, so its first build verifies."""
    import secrets

    tenant = tenants.get(uow, tenant_id=tenant_id)
    password = secrets.token_urlsafe(24)
    data = generate_pkcs12(
        common_name=f"appyard {tenant.name} {name}"[:64],
        organization="appyard",
        password=password,
        now=clock.now(),
    )
    return create_from_bytes(
        uow,
        clock,
        box,
        tenant_id=tenant_id,
        name=name,
        platform=Platform.ANDROID,
        data=data,
        password=password,
        alias="appyard",
        created_by=created_by,
        make_default=make_default,
    )


def create_from_bytes(
    uow: UnitOfWork,
    clock: Clock,
    box: SecretBox,
    *,
    tenant_id: str,
    name: str,
    platform: Platform,
    data: bytes,
    password: str,
    alias: str | None = None,
    key_password: str | None = None,
    created_by: str,
    make_default: bool = False,
    profile: bytes | None = None,
) -> SigningKey:
    """Open the keystore (an iOS key: a PKCS#12 file) and, for iOS, check the optional
    provisioning profile against it; seal both and record their public facts."""
    if not name.strip():
        raise errors.InvalidField("A signing key needs a name.", field="key_name")
    if profile is not None and platform is not Platform.IOS:
        raise errors.InvalidField(
            f"A provisioning profile belongs to an iOS signing key, not an {platform.value} one.",
            field="profile",
        )
    material = load_keystore_bytes(
        data,
        password=password,
        alias=alias,
        key_password=key_password,
        now=clock.now(),
        pkcs12_only=platform is Platform.IOS,
    )
    parsed = check_profile(profile, material, now=clock.now()) if profile is not None else None
    key_id = new_id("sk")
    facts = _describe(material)
    key = SigningKey(
        id=key_id,
        tenant_id=tenant_id,
        name=name.strip(),
        platform=platform,
        is_default=False,
        state=KeyState.READY,
        created_at=clock.now(),
        created_by=created_by,
        sealed_password=box.seal(password.encode(), _aad(key_id, "password")),
        sealed_key_password=(
            box.seal(key_password.encode(), _aad(key_id, "key_password"))
            if key_password is not None
            else None
        ),
        sealed_keystore=box.seal(data, _aad(key_id, "keystore")),
        alias=str(facts["alias"]),
        cert_sha256=str(facts["cert_sha256"]),
        subject=str(facts["subject"]),
        not_after=facts["not_after"],  # type: ignore[arg-type]
        key_algorithm=str(facts["key_algorithm"]),
    )
    if profile is not None and parsed is not None:
        key = _with_profile(key, box, profile, parsed)
    first = _is_first(uow, tenant_id, platform)
    uow.signing_keys.add(key)
    if make_default or first:
        _set_default(uow, key)
    return uow.signing_keys.get(key_id) or key


def get(uow: UnitOfWork, *, tenant_id: str, key_id: str) -> SigningKey:
    key = uow.signing_keys.get(key_id)
    if key is None or key.tenant_id != tenant_id or key.state is KeyState.DELETED:
        raise errors.SigningKeyNotFound(f"Unknown signing key {key_id!r}.")
    return key


def list_keys(uow: UnitOfWork, *, tenant_id: str) -> list[SigningKey]:
    return [k for k in uow.signing_keys.list(tenant_id) if k.state is not KeyState.DELETED]


def set_default(uow: UnitOfWork, *, tenant_id: str, key_id: str) -> SigningKey:
    key = get(uow, tenant_id=tenant_id, key_id=key_id)
    if key.state is not KeyState.READY:
        raise SigningKeyUnavailable(f"Signing key {key.name!r} is {key.state.value}.")
    _set_default(uow, key)
    return get(uow, tenant_id=tenant_id, key_id=key_id)


def delete(uow: UnitOfWork, store: BlobStore, *, tenant_id: str, key_id: str) -> SigningKey:
    """Wipe the key's material (its public facts stay, so builds still name it). A key still
    waiting for its file stops waiting: the signed URL for it writes nothing any more."""
    key = get(uow, tenant_id=tenant_id, key_id=key_id)
    upload = uow.uploads.get_for_subject(key.id)
    if upload is not None and upload.state is UploadState.PENDING:
        uploads.discard(store, upload)
        uploads.end(uow, upload, UploadState.ABORTED, "The signing key was deleted.")
    wiped = replace(
        key,
        state=KeyState.DELETED,
        is_default=False,
        sealed_keystore=None,
        sealed_key_password=None,
        sealed_password=b"",
        sealed_profile=None,
    )
    uow.signing_keys.save(wiped)
    return wiped


def resolve(
    uow: UnitOfWork, *, tenant_id: str, platform: Platform, requested: str | None
) -> str | None:
    """The key id a new build will be signed with: the one asked for, ``none``, or the
    platform's default (None when the tenant has none)."""
    if requested is not None and requested.strip().lower() == "none":
        return None
    if requested is None:
        for key in uow.signing_keys.list(tenant_id):
            if key.platform is platform and key.is_default and key.state is KeyState.READY:
                return key.id
        return None
    try:
        key = get(uow, tenant_id=tenant_id, key_id=requested.strip())
    except errors.SigningKeyNotFound as exc:  # a field of the build request: 400
        raise errors.UnknownSigningKey(exc.message) from None
    if key.platform is not platform:
        raise errors.UnknownSigningKey(
            f"Signing key {key.name!r} is for {key.platform.value}, not {platform.value}."
        )
    if key.state is not KeyState.READY:
        raise errors.UnknownSigningKey(f"Signing key {key.name!r} is {key.state.value}.")
    return key.id


def material(
    uow: UnitOfWork, box: SecretBox, *, key_id: str, now: datetime
) -> tuple[SigningKey, SigningMaterial]:
    """Open a key for signing; SigningKeyUnavailable with a reason when it cannot be used."""
    key = uow.signing_keys.get(key_id)
    if key is None or key.state is KeyState.DELETED:
        name = f" {key.name!r}" if key else ""
        raise SigningKeyUnavailable(
            f"The signing key{name} was deleted after this build was queued; the build was "
            "not signed with another key."
        )
    if key.state is not KeyState.READY or key.sealed_keystore is None:
        raise SigningKeyUnavailable(f"Signing key {key.name!r} is {key.state.value}.")
    data = box.open(key.sealed_keystore, _aad(key.id, "keystore"))
    password = box.open(key.sealed_password, _aad(key.id, "password")).decode()
    key_password = (
        box.open(key.sealed_key_password, _aad(key.id, "key_password")).decode()
        if key.sealed_key_password
        else None
    )
    try:
        return key, OPENED.load(
            data,
            password=password,
            alias=key.alias,
            key_password=key_password,
            now=now,
            pkcs12_only=key.platform is Platform.IOS,
        )
    except errors.AppyardError as exc:
        raise SigningKeyUnavailable(
            f"Signing key {key.name!r} cannot be used: {exc.message}"
        ) from None


def set_rotation(
    uow: UnitOfWork,
    clock: Clock,
    box: SecretBox,
    *,
    tenant_id: str,
    key_id: str,
    original_key_id: str,
    lineage: bytes,
    min_sdk: int = DEFAULT_ROTATION_MIN_SDK,
) -> SigningKey:
    """Make ``key_id`` sign APKs as a rotated key: ``lineage`` (from ``apksigner rotate``)
    must run from ``original_key_id``'s certificate to ``key_id``'s, both managed Android keys
    of the tenant; checked now, with both keys opened, and refused with the reason."""
    key = get(uow, tenant_id=tenant_id, key_id=key_id)
    original = get(uow, tenant_id=tenant_id, key_id=original_key_id)
    if Platform.ANDROID not in (key.platform, original.platform) or (
        key.platform is not original.platform
    ):
        raise errors.InvalidField("Key rotation is for Android keys.", field="key_id")
    if key.id == original.id:
        raise errors.InvalidField(
            "A key cannot rotate from itself: name the key the app was first signed with.",
            field="original_key_id",
        )
    now = clock.now()
    Rotation(read_lineage(lineage), _open(uow, box, original.id, now), min_sdk).check(
        _open(uow, box, key.id, now)
    )
    uow.signing_keys.save(
        replace(key, lineage=lineage, original_key_id=original.id, rotation_min_sdk=min_sdk)
    )
    return get(uow, tenant_id=tenant_id, key_id=key_id)


def clear_rotation(uow: UnitOfWork, *, tenant_id: str, key_id: str) -> SigningKey:
    key = get(uow, tenant_id=tenant_id, key_id=key_id)
    uow.signing_keys.save(replace(key, lineage=None, original_key_id=None, rotation_min_sdk=None))
    return get(uow, tenant_id=tenant_id, key_id=key_id)


def rotation(uow: UnitOfWork, box: SecretBox, *, key: SigningKey, now: datetime) -> Rotation | None:
    """The rotation ``key`` signs APKs with, its original key opened; None without one."""
    if key.lineage is None or key.original_key_id is None:
        return None
    try:
        original = _open(uow, box, key.original_key_id, now)
    except SigningKeyUnavailable as exc:
        raise SigningKeyUnavailable(
            f"Signing key {key.name!r} rotates from a key that cannot be used any more "
            f"({exc.message}); the build was not signed."
        ) from None
    return Rotation(
        read_lineage(key.lineage), original, key.rotation_min_sdk or DEFAULT_ROTATION_MIN_SDK
    )


def _open(uow: UnitOfWork, box: SecretBox, key_id: str, now: datetime) -> SigningMaterial:
    return material(uow, box, key_id=key_id, now=now)[1]


def reseal_all(uow: UnitOfWork, box: SecretBox) -> int:
    """Re-encrypt every key's secrets under the box's current master key (rotation)."""
    count = 0
    for key in uow.signing_keys.list():
        if key.state is KeyState.DELETED:
            continue
        uow.signing_keys.save(
            replace(
                key,
                sealed_password=box.reseal(key.sealed_password, _aad(key.id, "password")),
                sealed_key_password=(
                    box.reseal(key.sealed_key_password, _aad(key.id, "key_password"))
                    if key.sealed_key_password
                    else None
                ),
                sealed_keystore=(
                    box.reseal(key.sealed_keystore, _aad(key.id, "keystore"))
                    if key.sealed_keystore
                    else None
                ),
                sealed_profile=(
                    box.reseal(key.sealed_profile, _aad(key.id, "profile"))
                    if key.sealed_profile
                    else None
                ),
            )
        )
        count += 1
    return count


def open_profile(uow: UnitOfWork, box: SecretBox, *, key_id: str) -> bytes | None:
    """The key's provisioning profile as uploaded (None without one), for an IPA re-signer;
    SigningKeyUnavailable when the key was deleted."""
    key = uow.signing_keys.get(key_id)
    if key is None or key.state is KeyState.DELETED:
        raise SigningKeyUnavailable("The signing key was deleted.")
    if key.sealed_profile is None:
        return None
    return box.open(key.sealed_profile, _aad(key.id, "profile"))


# --- keys whose file arrives by signed URL, plan gate, per-application signing files ------------

SIGNING_PLANS = (Plan.TEAM, Plan.ENTERPRISE)
_KEY_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+()\-]{0,199}$")


class PlanRequired(errors.Forbidden):
    """Signing-key management requires a Team or Enterprise plan."""

    code = "plan.signing_keys"


def require_plan(uow: UnitOfWork, *, tenant_id: str) -> None:
    tenant = tenants.get(uow, tenant_id=tenant_id)
    if tenant.plan not in SIGNING_PLANS:
        raise PlanRequired(
            "Signing-key management requires a Team or Enterprise plan; this tenant is on "
            f"the {tenant.plan.value} plan."
        )


def managing(uow: UnitOfWork, actor: Actor, *, write: bool) -> str:
    """The tenant an actor manages signing keys of: its plan must include them, and a change
    needs the Builds permission. Returns the tenant id."""
    if write:
        identity.require_scope(actor, identity.SCOPE_BUILDS, label="Builds")
    require_plan(uow, tenant_id=actor.tenant)
    return actor.tenant


def key_file_name(value: str) -> str:
    """The base name of a key file (``release.jks``); path components are dropped."""
    base = value.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not _KEY_FILE.match(base):
        raise errors.InvalidField(
            "file_name must be a plain file name such as release.jks.", field="file_name"
        )
    return base


def request_upload(
    uow: UnitOfWork,
    clock: Clock,
    box: SecretBox,
    store: BlobStore,
    policy: UploadPolicy,
    actor: Actor,
    *,
    name: str,
    platform: Platform,
    file_name: str | None,
    password: str,
    alias: str | None,
    file_size: int | None,
    make_default: bool,
    app_id: str | None = None,
) -> tuple[SigningKey, SignedRequest]:
    """A pending key whose file the client PUTs with the returned signed request.

    Android keys need an alias; an iOS key's file must be named ``*.p12`` (its content is
    checked to be PKCS#12 when it arrives; a provisioning profile is attached with the admin
    CLI). ``make_default`` is remembered on the pending record (a pending key is never used:
    :func:`resolve` takes only ready keys) and applied when the file opens
    (:func:`file_arrived`). ``app_id`` makes it an application's legacy signing file instead
    of a managed key: never a default, not listed with managed keys.
    """
    tenant_id = managing(uow, actor, write=True)
    clean = key_file_name(file_name) if file_name is not None else None
    alias = alias.strip() if alias else None
    if not name.strip():
        raise errors.InvalidField("key_name is required.", field="key_name")
    if not password:
        raise errors.InvalidField("password is required.", field="password")
    if platform is Platform.ANDROID and not alias:
        raise errors.InvalidField("alias is required for Android signing keys.", field="alias")
    if platform is Platform.IOS and clean is not None and not clean.lower().endswith(".p12"):
        raise errors.InvalidField(
            "An iOS signing key is uploaded as one PKCS#12 file named like distribution.p12; "
            "attach a provisioning profile with `appyard admin add-signing-key --profile`.",
            field="file_name",
        )
    if file_size is not None and file_size <= 0:
        raise errors.InvalidField(
            "file_size must be a positive number of bytes.", field="file_size"
        )
    if file_size is not None and file_size > MAX_KEYSTORE_BYTES:
        raise errors.UploadTooLarge(
            f"Signing-key files over {MAX_KEYSTORE_BYTES // (1024 * 1024)} MB are rejected."
        )
    key_id = new_id("sk")
    key = SigningKey(
        id=key_id,
        tenant_id=tenant_id,
        name=name.strip(),
        platform=platform,
        is_default=make_default and app_id is None,
        state=KeyState.PENDING,
        created_at=clock.now(),
        created_by=actor.id,
        sealed_password=box.seal(password.encode(), _aad(key_id, "password")),
        alias=alias,
        file_name=clean,
        app_id=app_id,
    )
    uow.signing_keys.add(key)
    ticket = uploads.open_upload(
        uow,
        clock,
        store,
        policy,
        tenant_id=tenant_id,
        purpose=UploadPurpose.SIGNING_KEY,
        subject_id=key_id,
        key=f"{tenant_id}/signing-keys/{key_id}/keystore",
        file_name=clean or "keystore",
        max_size=MAX_KEYSTORE_BYTES,
        declared_size=file_size,
        multipart_allowed=False,
    )
    assert ticket.put is not None
    return key, ticket.put


def file_arrived(svc: Services, uow: UnitOfWork, upload: Upload, info: BlobInfo) -> None:
    """A pending key's file arrived (core.arrivals): open it, seal it into the record, remove
    the plain file. A managed key asked to be the default (or the platform's first managed
    key) becomes the only default once it opens; an application's signing file is never a
    default and replaces that application's earlier file for its platform."""
    store = svc.store
    key = uow.signing_keys.get(upload.subject_id)
    if key is None or key.state is not KeyState.PENDING:
        store.delete(upload.key)
        return
    box = svc.sealer()
    try:
        with store.open_read(upload.key) as fh:
            data = fh.read(MAX_KEYSTORE_BYTES + 1)
        if len(data) > MAX_KEYSTORE_BYTES:
            raise errors.UploadTooLarge("Signing-key files over 10 MB are rejected.")
        password = box.open(key.sealed_password, _aad(key.id, "password")).decode()
        material = load_keystore_bytes(
            data,
            password=password,
            alias=key.alias,
            now=svc.clock.now(),
            pkcs12_only=key.platform is Platform.IOS,
        )
    except errors.AppyardError as exc:
        uow.signing_keys.save(
            replace(key, state=KeyState.INVALID, error_message=exc.message, is_default=False)
        )
        return
    finally:
        store.delete(upload.key)
    facts = _describe(material)
    opened = replace(
        key,
        state=KeyState.READY,
        sealed_keystore=box.seal(data, _aad(key.id, "keystore")),
        alias=str(facts["alias"]),
        cert_sha256=str(facts["cert_sha256"]),
        subject=str(facts["subject"]),
        not_after=facts["not_after"],  # type: ignore[arg-type]
        key_algorithm=str(facts["key_algorithm"]),
    )
    uow.signing_keys.save(opened)
    if key.app_id is None:
        others = [
            k
            for k in managed_keys(uow, tenant_id=key.tenant_id)
            if k.id != key.id and k.platform is key.platform and k.state is KeyState.READY
        ]
        if key.is_default or not others:
            _set_default(uow, opened)
        return
    for other in uow.signing_keys.list(key.tenant_id):
        if (
            other.app_id == key.app_id
            and other.platform is key.platform
            and other.id != key.id
            and other.state is not KeyState.DELETED
        ):
            delete(uow, store, tenant_id=key.tenant_id, key_id=other.id)


def file_lost(svc: Services, uow: UnitOfWork, upload: Upload, reason: str) -> None:
    """The key's file will never arrive: the key is invalid, saying why."""
    key = uow.signing_keys.get(upload.subject_id)
    if key is not None and key.state is KeyState.PENDING:
        uow.signing_keys.save(
            replace(key, state=KeyState.INVALID, error_message=reason, is_default=False)
        )


def managed_keys(uow: UnitOfWork, *, tenant_id: str) -> list[SigningKey]:
    """The tenant's managed keys (not deleted, not an application's legacy signing file)."""
    return [k for k in list_keys(uow, tenant_id=tenant_id) if k.app_id is None]


def set_platform_default(
    uow: UnitOfWork, *, tenant_id: str, platform: Platform, key_id: str | None
) -> None:
    """Make ``key_id`` the platform's default, or clear the platform's default (None)."""
    if key_id is None:
        for key in uow.signing_keys.list(tenant_id):
            if key.platform is platform and key.is_default:
                uow.signing_keys.save(replace(key, is_default=False))
        return
    key = get(uow, tenant_id=tenant_id, key_id=key_id)
    if key.platform is not platform or key.app_id is not None:
        raise errors.UnknownSigningKey(
            f"Signing key {key.name!r} is not a managed {platform.value} key."
        )
    set_default(uow, tenant_id=tenant_id, key_id=key_id)


def app_file(
    uow: UnitOfWork, *, tenant_id: str, app_id: str, platform: Platform
) -> SigningKey | None:
    """An application's signing file for ``platform``: the newest ready one, else the newest
    that is pending or invalid (so a caller can say why it cannot be used)."""
    files = [
        k
        for k in uow.signing_keys.list(tenant_id)
        if k.app_id == app_id and k.platform is platform and k.state is not KeyState.DELETED
    ]
    ready = [k for k in files if k.state is KeyState.READY]
    return (ready or files)[-1] if files else None


def forget_app(uow: UnitOfWork, store: BlobStore, *, tenant_id: str, app_id: str) -> None:
    """Wipe every signing file of an application that is being deleted."""
    for key in uow.signing_keys.list(tenant_id):
        if key.app_id == app_id and key.state is not KeyState.DELETED:
            delete(uow, store, tenant_id=tenant_id, key_id=key.id)


# --- what a signed-in member does in the portal -----------------------------------------------


def list_for(uow: UnitOfWork, actor: Actor) -> list[SigningKey]:
    """The actor's tenant's managed keys (its plan must include signing keys)."""
    return managed_keys(uow, tenant_id=managing(uow, actor, write=False))


def add_for(
    uow: UnitOfWork,
    clock: Clock,
    box: SecretBox,
    actor: Actor,
    *,
    name: str,
    platform: Platform,
    data: bytes,
    password: str,
    alias: str | None,
    make_default: bool,
    profile: bytes | None = None,
) -> SigningKey:
    """Upload a keystore (opened and checked now) as a managed key of the actor's tenant."""
    tenant_id = managing(uow, actor, write=True)
    if len(data) > MAX_KEYSTORE_BYTES:
        raise errors.UploadTooLarge("Signing-key files over 10 MB are rejected.")
    key = create_from_bytes(
        uow,
        clock,
        box,
        tenant_id=tenant_id,
        name=name,
        platform=platform,
        data=data,
        password=password,
        alias=alias or None,
        created_by=f"{actor.kind}:{actor.id}",
        make_default=make_default,
        profile=profile,
    )
    outbox.emit(
        uow,
        clock,
        "signing_key.added",
        tenant_id=tenant_id,
        subject_id=key.id,
        name=key.name,
        platform=key.platform.value,
        actor=f"{actor.kind}:{actor.id}",
    )
    return key


def set_default_for(uow: UnitOfWork, clock: Clock, actor: Actor, *, key_id: str) -> SigningKey:
    tenant_id = managing(uow, actor, write=True)
    key = get(uow, tenant_id=tenant_id, key_id=key_id)
    set_platform_default(uow, tenant_id=tenant_id, platform=key.platform, key_id=key.id)
    outbox.emit(
        uow,
        clock,
        "signing_key.default_set",
        tenant_id=tenant_id,
        subject_id=key.id,
        platform=key.platform.value,
        actor=f"{actor.kind}:{actor.id}",
    )
    return get(uow, tenant_id=tenant_id, key_id=key_id)


def delete_for(
    uow: UnitOfWork, clock: Clock, store: BlobStore, actor: Actor, *, key_id: str
) -> SigningKey:
    tenant_id = managing(uow, actor, write=True)
    key = get(uow, tenant_id=tenant_id, key_id=key_id)
    if key.app_id is not None:
        raise errors.SigningKeyNotFound(f"Unknown signing key {key_id!r}.")
    wiped = delete(uow, store, tenant_id=tenant_id, key_id=key.id)
    outbox.emit(
        uow,
        clock,
        "signing_key.deleted",
        tenant_id=tenant_id,
        subject_id=key.id,
        name=key.name,
        actor=f"{actor.kind}:{actor.id}",
    )
    return wiped
