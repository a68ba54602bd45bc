"""Managed Android keys rotate: ``set_rotation`` checks the lineage against both keys before it
stores anything, and the pipeline gets the original key opened (tests/e2e/
test_key_rotation_e2e.py signs a real build with it and checks it with apksigner)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from appyard import errors
from appyard.core import signing_keys
from appyard.core.models import Platform, SigningKey
from appyard.runtime import Runtime
from appyard.signing.lineage import InvalidLineage
from tests.conftest import KEYS, TenantKey, need


def add(runtime: Runtime, tenant: TenantKey, name: str, password: str) -> SigningKey:
    svc = runtime.services
    with svc.uow() as uow:
        key = signing_keys.create_from_bytes(
            uow, svc.clock, svc.sealer(), tenant_id=tenant.tenant_id, name=name,
            platform=Platform.ANDROID, data=(KEYS / f"{name}.p12").read_bytes(),
            password=password, created_by="test",
        )  # fmt: skip
        uow.commit()
    return key


@pytest.fixture
def keys(runtime: Runtime, tenant: TenantKey) -> tuple[SigningKey, SigningKey]:
    return add(runtime, tenant, "release", "fixture-release"), add(
        runtime, tenant, "other", "fixture-other"
    )


@pytest.fixture
def lineage(tmp_path: Path) -> bytes:
    """release -> other, by apksigner rotate."""
    need(subprocess.run(["which", "apksigner"], capture_output=True).returncode == 0, "apksigner")
    out = tmp_path / "lineage.bin"
    subprocess.run(
        ["apksigner", "rotate", "--out", str(out),
         "--old-signer", "--ks", str(KEYS / "release.p12"), "--ks-pass", "pass:fixture-release",
         "--new-signer", "--ks", str(KEYS / "other.p12"), "--ks-pass", "pass:fixture-other"],
        check=True, capture_output=True,
    )  # fmt: skip
    return out.read_bytes()


def rotate(runtime: Runtime, tenant: TenantKey, key: str, original: str, data: bytes) -> SigningKey:
    svc = runtime.services
    with svc.uow() as uow:
        done = signing_keys.set_rotation(
            uow, svc.clock, svc.sealer(), tenant_id=tenant.tenant_id, key_id=key,
            original_key_id=original, lineage=data, min_sdk=30,
        )  # fmt: skip
        uow.commit()
    return done


def test_rotation_is_stored_and_opens_the_original_key(
    runtime: Runtime, tenant: TenantKey, keys: tuple[SigningKey, SigningKey], lineage: bytes
) -> None:
    release, other = keys
    stored = rotate(runtime, tenant, other.id, release.id, lineage)

    svc = runtime.services
    with svc.uow() as uow:
        rotation = signing_keys.rotation(uow, svc.sealer(), key=stored, now=svc.clock.now())
    assert (stored.original_key_id, stored.rotation_min_sdk) == (release.id, 30)
    assert rotation is not None and rotation.min_sdk == 30
    assert rotation.original.alias.lower() == "release"
    assert [c.sha256 for c in rotation.lineage.certificates] == [
        release.cert_sha256,
        other.cert_sha256,
    ]


def test_wrong_direction_same_key_and_garbage_are_refused_and_nothing_is_stored(
    runtime: Runtime, tenant: TenantKey, keys: tuple[SigningKey, SigningKey], lineage: bytes
) -> None:
    release, other = keys
    with pytest.raises(InvalidLineage, match="not the lineage's first certificate"):
        rotate(runtime, tenant, release.id, other.id, lineage)
    with pytest.raises(errors.InvalidField, match="cannot rotate from itself"):
        rotate(runtime, tenant, other.id, other.id, lineage)
    with pytest.raises(InvalidLineage, match="wrong magic"):
        rotate(runtime, tenant, other.id, release.id, b"\x00" * 64)
    with pytest.raises(errors.SigningKeyNotFound):
        rotate(runtime, tenant, other.id, "sk_nope", lineage)

    svc = runtime.services
    with svc.uow() as uow:
        assert all(
            k.lineage is None for k in signing_keys.list_keys(uow, tenant_id=tenant.tenant_id)
        )
