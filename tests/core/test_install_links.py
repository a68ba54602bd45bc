"""Install links in core: only completed builds, tenant-scoped, expiring, revocable, found by
any id a dialect shows, their tokens kept hashed and sealed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from appyard import errors
from appyard.core import install_links
from appyard.core.crypto import SecretBox
from appyard.core.ids import hash_secret
from appyard.core.models import Platform
from appyard.runtime import Runtime
from tests.conftest import FakeClock, make_tenant
from tests.portal.helpers import completed_build


def test_links_are_tenant_scoped_expire_and_are_revoked_once(
    runtime: Runtime, clock: FakeClock
) -> None:
    svc = runtime.services
    acme, other = make_tenant(runtime, "acme"), make_tenant(runtime, "other")
    build = completed_build(
        runtime,
        acme.tenant_id,
        file_name="a.apk",
        platform=Platform.ANDROID,
        identifier="com.example.a",
        version_code="3",
    )
    with svc.transaction() as uow:
        shared = install_links.create(
            uow,
            svc.clock,
            svc.sealer(),
            acme.actor,
            build_id=build.id,
            expires_in=timedelta(days=1),
            public_url="https://yard.example",
        )
    assert shared.url == f"https://yard.example/i/{shared.token}"
    with svc.uow() as uow:
        stored = uow.install_links.get(shared.link.id)
        assert stored is not None and stored.token_hash == hash_secret(shared.token)
        assert shared.token.encode() not in stored.sealed_token  # sealed, not plain
        with pytest.raises(errors.NotFound):  # another tenant cannot see or make it
            install_links.for_build(
                uow, svc.clock, svc.sealer(), other.actor, build_id=build.id, public_url=""
            )
        with pytest.raises(errors.NotFound):
            install_links.revoke(uow, svc.clock, other.actor, link_id=shared.link.id)
        assert install_links.open_link(uow, svc.clock, token=shared.token).build.id == build.id
    clock.advance(days=1, seconds=1)
    with svc.uow() as uow, pytest.raises(install_links.InstallLinkGone, match="expired"):
        install_links.open_link(uow, svc.clock, token=shared.token)
    with svc.transaction() as uow:
        first = install_links.revoke(uow, svc.clock, acme.actor, link_id=shared.link.id)
        again = install_links.revoke(uow, svc.clock, acme.actor, link_id=shared.link.id)
    assert first.revoked_at == again.revoked_at
    with svc.uow() as uow:
        topics = [e.topic for e in uow.outbox.events(tenant_id=acme.tenant_id)]
    assert topics.count("install_link.revoked") == 1 and "install_link.created" in topics


def test_a_build_is_found_by_any_id_a_dialect_shows(runtime: Runtime) -> None:
    svc = runtime.services
    acme = make_tenant(runtime, "acme")
    build = completed_build(
        runtime,
        acme.tenant_id,
        file_name="a.apk",
        platform=Platform.ANDROID,
        identifier="com.example.a",
        version_code="3",
    )
    with svc.uow() as uow:
        assert install_links.find_build(uow, ref=build.id).id == build.id
        assert install_links.find_build(uow, ref=str(build.number)).id == build.id
        with pytest.raises(errors.NotFound):
            install_links.find_build(uow, ref="ver_missing")
        with pytest.raises(errors.NotFound):
            install_links.find_build(uow, ref="12")


def test_expiry_is_a_duration_within_bounds() -> None:
    assert install_links.parse_expiry("7d") == timedelta(days=7)
    assert install_links.parse_expiry("12h") == timedelta(hours=12)
    assert install_links.parse_expiry(3600) == timedelta(hours=1)
    assert install_links.parse_expiry(None) == install_links.DEFAULT_EXPIRY
    for bad in ("1m", "400d", "soon", "-3d"):
        with pytest.raises(errors.InvalidField):
            install_links.parse_expiry(bad)


def test_tokens_are_resealed_under_a_new_master_key(runtime: Runtime) -> None:
    svc = runtime.services
    acme = make_tenant(runtime, "acme")
    build = completed_build(
        runtime,
        acme.tenant_id,
        file_name="a.apk",
        platform=Platform.ANDROID,
        identifier="com.example.a",
        version_code="3",
    )
    with svc.transaction() as uow:
        shared = install_links.create(
            uow,
            svc.clock,
            svc.sealer(),
            acme.actor,
            build_id=build.id,
            expires_in=timedelta(days=1),
            public_url="",
        )
    old = svc.sealer().current
    new = bytes(32)
    with svc.transaction() as uow:
        assert install_links.reseal_all(uow, SecretBox(new, old)) == 1
    with svc.uow() as uow:
        [listed] = install_links.for_build(
            uow, svc.clock, SecretBox(new), acme.actor, build_id=build.id, public_url=""
        )
    assert listed.token == shared.token
