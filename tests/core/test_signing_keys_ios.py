"""iOS signing keys: a PKCS#12 with a certificate, optionally a provisioning profile that
lists it; both sealed at rest, public facts recorded, refusals with a reason.

Certificates and profiles are made here with the IPA factory (a self-signed certificate, a
real CMS SignedData over a profile plist); the PKCS#12 with ``cryptography``."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)
from sqlalchemy import select

from appyard import errors
from appyard.backends.db import tables
from appyard.core import signing_keys
from appyard.core.crypto import SecretBox, SecretUnreadable
from appyard.core.models import KeyState, Platform, SigningKey
from appyard.runtime import Runtime, build_runtime
from appyard.settings import Settings
from appyard.signing import keystore
from tests.conftest import APPYARD, FIXTURES, TenantKey
from tests.inspect.test_ipa_factory import NOW, Signer, make_profile, make_signer

PASSWORD = "p12-secret-pw"
DEVELOPER = "iPhone Distribution: Appyard Test (ABCDE12345)"


def make_p12(signer: Signer, password: str = PASSWORD) -> bytes:
    return pkcs12.serialize_key_and_certificates(
        b"ios distribution",
        signer.key,
        signer.cert,
        None,
        BestAvailableEncryption(password.encode()),
    )


def profile_for(signer: Signer, **kwargs: Any) -> bytes:
    kwargs.setdefault("developer_certs", (signer.der,))
    return make_profile(**kwargs)


def create(
    runtime: Runtime,
    tenant: TenantKey,
    data: bytes,
    *,
    profile: bytes | None = None,
    platform: Platform = Platform.IOS,
    password: str = PASSWORD,
) -> SigningKey:
    svc = runtime.services
    with svc.uow() as uow:
        key = signing_keys.create_from_bytes(
            uow,
            svc.clock,
            svc.sealer(),
            tenant_id=tenant.tenant_id,
            name="ios distribution",
            platform=platform,
            data=data,
            password=password,
            created_by="test",
            profile=profile,
        )
        uow.commit()
    return key


def raw_row(runtime: Runtime, key_id: str) -> dict[str, Any]:
    with runtime.engine.connect() as conn:
        row = conn.execute(
            select(tables.signing_keys).where(tables.signing_keys.c.id == key_id)
        ).one()
    return dict(row._mapping)


def open_profile(runtime: Runtime, key_id: str, box: SecretBox | None = None) -> bytes | None:
    svc = runtime.services
    with svc.uow() as uow:
        return signing_keys.open_profile(uow, box or svc.sealer(), key_id=key_id)


@pytest.fixture
def signer() -> Signer:
    return make_signer(DEVELOPER)


# --- accepted --------------------------------------------------------------------------------


def test_a_p12_with_its_profile_is_accepted_and_its_facts_recorded(
    runtime: Runtime, tenant: TenantKey, signer: Signer
) -> None:
    profile = profile_for(signer, app_id="ABCDE12345.com.example.app")
    key = create(runtime, tenant, make_p12(signer), profile=profile)
    assert key.state is KeyState.READY and key.platform is Platform.IOS
    assert key.is_default  # the tenant's first iOS key
    assert key.subject is not None and DEVELOPER in key.subject
    assert key.not_after == signer.cert.not_valid_after_utc
    assert key.profile_name == "Example App Profile"
    assert key.profile_uuid == "0b4a7c2e-1d2f-4a3b-9c8d-7e6f5a4b3c2d"
    assert key.profile_team_id == "ABCDE12345"
    assert key.profile_app_id == "ABCDE12345.com.example.app"
    assert key.profile_expires_at == NOW + timedelta(days=355)
    assert open_profile(runtime, key.id) == profile
    svc = runtime.services
    with svc.uow() as uow:
        stored, material = signing_keys.material(
            uow, svc.sealer(), key_id=key.id, now=svc.clock.now()
        )
    assert material.certificate == signer.cert
    assert stored.profile_uuid == key.profile_uuid  # read back from the database


def test_a_p12_without_a_profile_is_accepted(
    runtime: Runtime, tenant: TenantKey, signer: Signer
) -> None:
    key = create(runtime, tenant, make_p12(signer))
    assert key.state is KeyState.READY and key.sealed_profile is None
    assert key.profile_uuid is None and key.profile_expires_at is None
    assert open_profile(runtime, key.id) is None


# --- refused ---------------------------------------------------------------------------------


def refused(
    runtime: Runtime, tenant: TenantKey, exc: type[Exception], *args: Any, **kw: Any
) -> str:
    with pytest.raises(exc) as info:
        create(runtime, tenant, *args, **kw)
    with runtime.services.uow() as uow:
        assert signing_keys.list_keys(uow, tenant_id=tenant.tenant_id) == []
    assert isinstance(info.value, errors.AppyardError)
    return info.value.message


def test_a_wrong_password_is_refused(runtime: Runtime, tenant: TenantKey, signer: Signer) -> None:
    message = refused(runtime, tenant, keystore.WrongPassword, make_p12(signer), password="not-it")
    assert "not-it" not in message and PASSWORD not in message


def test_an_expired_certificate_is_refused(runtime: Runtime, tenant: TenantKey) -> None:
    old = make_signer(DEVELOPER, not_after=NOW - timedelta(days=1))
    message = refused(runtime, tenant, keystore.CertificateExpired, make_p12(old))
    assert "expired on 2026-11-22" in message


def test_an_expired_profile_is_refused(runtime: Runtime, tenant: TenantKey, signer: Signer) -> None:
    profile = profile_for(signer, expires=NOW - timedelta(days=2))
    message = refused(
        runtime, tenant, signing_keys.ProfileExpired, make_p12(signer), profile=profile
    )
    assert message == "The provisioning profile 'Example App Profile' expired on 2026-11-21."


def test_a_profile_that_does_not_list_the_certificate_is_refused(
    runtime: Runtime, tenant: TenantKey, signer: Signer
) -> None:
    other = make_signer("iPhone Distribution: Someone Else (ZZZZZ99999)")
    profile = profile_for(signer, developer_certs=(other.der,))
    message = refused(
        runtime,
        tenant,
        signing_keys.ProfileCertificateMismatch,
        make_p12(signer),
        profile=profile,
    )
    assert message.startswith("The provisioning profile does not list this certificate")


@pytest.mark.parametrize(
    "garbage",
    [b"", b"not a provisioning profile", b"\x30\x82\x01\x00" + b"\x00" * 10, b"<plist></plist>"],
)
def test_a_profile_that_is_not_readable_is_refused(
    runtime: Runtime, tenant: TenantKey, signer: Signer, garbage: bytes
) -> None:
    message = refused(
        runtime, tenant, signing_keys.ProfileUnreadable, make_p12(signer), profile=garbage
    )
    assert message.startswith("The provisioning profile ")


def test_a_profile_too_large_to_read_is_refused(
    runtime: Runtime, tenant: TenantKey, signer: Signer
) -> None:
    big = b"\x30" + os.urandom(3 * 1024 * 1024)
    refused(runtime, tenant, signing_keys.ProfileUnreadable, make_p12(signer), profile=big)


def make_jks(signer: Signer, password: str = PASSWORD) -> bytes:
    from tests.signing.jks_files import jks_bytes

    pkcs8 = signer.key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    return jks_bytes([("ios", pkcs8, [signer.der])], password=password)


def make_pem(signer: Signer) -> bytes:
    key = signer.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return key + signer.cert.public_bytes(Encoding.PEM)


@pytest.mark.parametrize(("make", "kind"), [(make_jks, "Java KeyStore"), (make_pem, "PEM file")])
def test_an_ios_key_must_be_pkcs12(
    runtime: Runtime, tenant: TenantKey, signer: Signer, make: Any, kind: str
) -> None:
    message = refused(runtime, tenant, keystore.NotPkcs12, make(signer))
    assert message.startswith("An iOS signing key must be a PKCS#12 (.p12) file")
    assert message.endswith(f"this file is a {kind}.")
    data = make(signer)  # the same file is a valid Android key
    create(runtime, tenant, data, platform=Platform.ANDROID)


def test_a_file_over_10_mb_is_refused(runtime: Runtime, tenant: TenantKey) -> None:
    big = b"\x30" + b"\x00" * keystore.MAX_KEYSTORE_BYTES
    refused(runtime, tenant, keystore.KeystoreTooLarge, big)


def test_a_profile_is_for_ios_keys_only(
    runtime: Runtime, tenant: TenantKey, signer: Signer
) -> None:
    data = (FIXTURES / "keys" / "release.p12").read_bytes()
    message = refused(
        runtime,
        tenant,
        errors.InvalidField,
        data,
        password="fixture-release",
        platform=Platform.ANDROID,
        profile=profile_for(signer),
    )
    assert "iOS" in message


# --- at rest ---------------------------------------------------------------------------------


def test_the_profile_and_password_are_sealed_in_the_database(
    runtime: Runtime, tenant: TenantKey, signer: Signer
) -> None:
    profile = profile_for(signer)
    p12 = make_p12(signer)
    key = create(runtime, tenant, p12, profile=profile)
    row = raw_row(runtime, key.id)
    sealed = row["sealed_profile"]
    assert isinstance(sealed, bytes) and sealed.startswith(b"ay1") and sealed != profile
    blobs = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row.values())
    for secret in (profile, profile[100:164], p12[40:104], PASSWORD.encode(), b"<plist"):
        assert secret not in blobs
    assert row["profile_uuid"] == "0b4a7c2e-1d2f-4a3b-9c8d-7e6f5a4b3c2d"  # a public fact
    # bound to its record and field: not the keystore's associated data
    with pytest.raises(SecretUnreadable):
        runtime.services.sealer().open(sealed, f"signing_key:{key.id}:keystore")


def test_rotating_the_master_key_reseals_the_profile(
    runtime: Runtime, tenant: TenantKey, signer: Signer
) -> None:
    profile = profile_for(signer)
    key = create(runtime, tenant, make_p12(signer), profile=profile)
    old = runtime.services.sealer()
    before = raw_row(runtime, key.id)["sealed_profile"]
    new_master = secrets.token_bytes(32)
    rotating = SecretBox(new_master, old.current)
    with runtime.services.uow() as uow:
        assert signing_keys.reseal_all(uow, rotating) == 1
        uow.commit()
    after = raw_row(runtime, key.id)
    assert after["sealed_profile"] != before
    new_only = SecretBox(new_master)
    assert open_profile(runtime, key.id, new_only) == profile
    with pytest.raises(SecretUnreadable):
        open_profile(runtime, key.id, SecretBox(old.current))
    with runtime.services.uow() as uow:
        _, material = signing_keys.material(
            uow, new_only, key_id=key.id, now=runtime.services.clock.now()
        )
    assert material.certificate == signer.cert


def test_deleting_a_key_wipes_its_profile(
    runtime: Runtime, tenant: TenantKey, signer: Signer
) -> None:
    key = create(runtime, tenant, make_p12(signer), profile=profile_for(signer))
    with runtime.services.uow() as uow:
        signing_keys.delete(uow, runtime.services.store, tenant_id=tenant.tenant_id, key_id=key.id)
        uow.commit()
    row = raw_row(runtime, key.id)
    assert row["sealed_profile"] is None and row["sealed_keystore"] is None
    with pytest.raises(signing_keys.SigningKeyUnavailable):
        open_profile(runtime, key.id)


# --- the admin CLI, end to end ---------------------------------------------------------------


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*APPYARD, "admin", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_admin_cli_adds_an_ios_key_with_a_profile(
    tmp_path: Path, database_url: str, signer: Signer
) -> None:
    # the CLI runs on the real clock: certificate and profile valid a year from now
    today = datetime.now(UTC)
    live = make_signer(DEVELOPER, not_after=today + timedelta(days=365))
    profile = profile_for(live, expires=today + timedelta(days=300))
    (tmp_path / "dist.p12").write_bytes(make_p12(live))
    (tmp_path / "dist.mobileprovision").write_bytes(profile)
    (tmp_path / "stale.mobileprovision").write_bytes(
        profile_for(live, expires=today - timedelta(days=1))
    )
    (tmp_path / "other.mobileprovision").write_bytes(profile_for(live, developer_certs=()))
    data_dir = tmp_path / "data"
    env = {
        **os.environ,
        "APPYARD_DATA_DIR": str(data_dir),
        "APPYARD_DATABASE_URL": database_url,
        "P12_PASSWORD": PASSWORD,
    }
    assert cli(env, "create-tenant", "acme", "--json").returncode == 0
    base = [
        "add-signing-key", "--tenant", "acme", "--name", "ios", "--platform", "ios",
        "--keystore", str(tmp_path / "dist.p12"), "--password-env", "P12_PASSWORD", "--json",
    ]  # fmt: skip

    for name, reason in (
        ("stale", "The provisioning profile 'Example App Profile' expired on"),
        ("other", "The provisioning profile does not list this certificate"),
    ):
        done = cli(env, *base, "--profile", str(tmp_path / f"{name}.mobileprovision"))
        assert done.returncode == 1 and reason in " ".join(done.stderr.split()), done.stderr
    android = [*base[:6], "android", *base[7:], "--profile", str(tmp_path / "dist.mobileprovision")]
    done = cli(env, *android)
    assert done.returncode == 2 and "--profile is for iOS keys" in done.stderr

    done = cli(env, *base, "--profile", str(tmp_path / "dist.mobileprovision"))
    assert done.returncode == 0, done.stderr
    added = json.loads(done.stdout)
    assert added["platform"] == "ios" and added["default"] is True
    assert added["profile"]["uuid"] == "0b4a7c2e-1d2f-4a3b-9c8d-7e6f5a4b3c2d"
    assert added["profile"]["team_id"] == "ABCDE12345"
    assert added["profile"]["app_id"] == "ABCDE12345.com.example.app"
    assert PASSWORD not in done.stdout + done.stderr

    listed = cli(env, "list-signing-keys", "--tenant", "acme", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["profile"] == added["profile"]
    rotated = cli(env, "rotate-master-key", "--json")
    assert rotated.returncode == 0 and json.loads(rotated.stdout) == {"resealed": 1}

    settings = Settings(data_dir=data_dir, database_url=database_url)
    after = build_runtime(settings)
    try:
        assert open_profile(after, added["id"]) == profile
    finally:
        after.engine.dispose()
