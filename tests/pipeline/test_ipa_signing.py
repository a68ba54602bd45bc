"""The Signing stage of IPA builds with a managed iOS key: re-signed with the key's profile,
or (a key without one, as the management API makes them) with the IPA's own embedded
profile when it lists the key's certificate; otherwise the build fails at Signing saying
which profile is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from appyard.core import signing_keys
from appyard.core.models import Build, BuildStatus, Platform
from appyard.core.ports import chunked
from appyard.runtime import Runtime
from appyard.signing.ios.resign import resign_ipa
from appyard.signing.ios.verify import verify_ipa
from appyard.worker import Worker
from tests.conftest import TenantKey, need, upload_build
from tests.signing.ios_kit import (
    TEAM,
    Identity,
    build_ipa,
    make_identity,
    make_profile,
    tools_present,
)


def add_ios_key(
    runtime: Runtime, tenant: TenantKey, identity: Identity, profile: bytes | None
) -> str:
    svc = runtime.services
    with svc.uow() as uow:
        key = signing_keys.create_from_bytes(
            uow,
            svc.clock,
            svc.sealer(),
            tenant_id=tenant.tenant_id,
            name="distribution",
            platform=Platform.IOS,
            data=identity.p12,
            password=identity.password,
            created_by="test",
            make_default=True,
            profile=profile,
        )
        uow.commit()
    return key.id


def run_build(runtime: Runtime, tenant: TenantKey, ipa: Path, key_id: str, out: Path) -> Build:
    svc = runtime.services
    made = upload_build(runtime, tenant, ipa, file_name="app.ipa", signing_key_id=key_id)
    assert Worker(svc).run_once("test-worker")
    with svc.uow() as uow:
        build = uow.builds.get(made.id)
    assert build is not None
    if build.output_key is not None:
        with svc.store.open_read(build.output_key) as src, open(out, "wb") as dst:
            for chunk in chunked(src):
                dst.write(chunk)
    return build


def signed_ipa(tmp: Path, identity: Identity, profile: bytes) -> Path:
    """An IPA as a developer uploads it: built, then signed with their identity and profile
    (an unsigned IPA is blocked by the ``unsigned_ipa`` control before Signing)."""
    built = build_ipa(tmp / "built.ipa")
    resign_ipa(built.path, tmp / "in.ipa", identity.material, profiles=[profile])
    return tmp / "in.ipa"


@pytest.fixture(autouse=True)
def _tools() -> None:
    need(tools_present(), "llvm-mc, ld64.lld-14 and llvm-lipo-14 (apt: llvm lld-14)")


def test_an_ipa_is_resigned_with_the_keys_profile(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    identity = make_identity()
    key_id = add_ios_key(runtime, tenant, identity, make_profile(identity))
    theirs = make_identity()
    ipa = signed_ipa(tmp_path, theirs, make_profile(theirs, name="Old"))
    out = tmp_path / "out.ipa"
    build = run_build(runtime, tenant, ipa, key_id, out)
    assert build.status is BuildStatus.COMPLETED and build.signed, build.error_message
    report = verify_ipa(out)
    assert report.intact, report.problems
    assert report.app.profile is not None and report.app.profile.name == "appyard test profile"
    assert report.app.slices[0].signer is not None
    assert report.app.slices[0].signer.sha256 == identity.material.certificate_sha256


def test_a_key_without_profile_uses_the_embedded_one_that_lists_it(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    identity = make_identity()
    key_id = add_ios_key(runtime, tenant, identity, None)
    ipa = signed_ipa(tmp_path, identity, make_profile(identity, name="Embedded"))
    out = tmp_path / "out.ipa"
    build = run_build(runtime, tenant, ipa, key_id, out)
    assert build.status is BuildStatus.COMPLETED and build.signed, build.error_message
    report = verify_ipa(out)
    assert report.intact and report.app.slices[0].team_id == TEAM


def test_a_key_without_profile_fails_at_signing_naming_the_missing_profile(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    identity = make_identity()
    key_id = add_ios_key(runtime, tenant, identity, None)
    theirs = make_identity()
    ipa = signed_ipa(tmp_path, theirs, make_profile(theirs, name="Their team profile"))
    build = run_build(runtime, tenant, ipa, key_id, tmp_path / "out.ipa")
    assert build.status is BuildStatus.FAILED and not build.signed
    assert build.signing_error_message is not None
    assert build.signing_error_message.startswith(
        "The signing key has no provisioning profile, and the embedded.mobileprovision of "
        "Payload/Demo.app ('Their team profile'"
    )
    assert "attach a profile for com.example.demo that lists it" in build.signing_error_message


def test_the_management_apis_legacy_signing_file_resigns_an_ipa(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    """``upload_code_signing_file`` (a .p12, no profile) then ``sign_application_build``: the
    IPA is re-signed with the file's identity and the IPA's own profile, which lists it."""
    import base64

    from fastapi.testclient import TestClient

    from appyard.app import create_app
    from appyard.core import identity as identities
    from appyard.core.models import TokenKind

    svc = runtime.services
    me = make_identity()
    ipa = signed_ipa(tmp_path, me, make_profile(me, name="Team profile"))
    build = upload_build(runtime, tenant, ipa, file_name="app.ipa", signing_key_id="none")
    assert Worker(svc).run_once("w")
    with svc.transaction() as uow:
        raw = identities.create_token(
            uow, svc.clock, tenant_id=tenant.tenant_id, kind=TokenKind.MANAGEMENT
        ).raw
        app_id = uow.builds.get(build.id).app_id  # type: ignore[union-attr]
    headers = {
        "Authorization": f"Bearer {base64.b64encode(raw.encode()).decode()}",
        "tenant": tenant.tenant_id,
    }
    with TestClient(create_app(runtime=runtime, start_worker=False)) as client:
        made = client.post(
            "/frontend/upload_code_signing_file",
            headers=headers,
            json={
                "file": "dist.p12",
                "password": me.password,
                "application_id": app_id,
                "platform": "ios",
            },
        )
        assert made.status_code == 200, made.text
        assert client.put(made.json()["url"], content=me.p12).status_code == 200
        r = client.post(
            "/frontend/sign_application_build",
            headers=headers,
            json={"platform": "ios", "name": "app.ipa", "start_time": build.number},
        )
        assert r.status_code == 200, r.text
    assert Worker(svc).run_once("w")
    with svc.uow() as uow:
        signed = uow.builds.get(build.id)
    assert signed is not None and signed.status is BuildStatus.COMPLETED, signed
    assert signed.signed and signed.output_key
    out = tmp_path / "resigned.ipa"
    with svc.store.open_read(signed.output_key) as src, open(out, "wb") as dst:
        for chunk in chunked(src):
            dst.write(chunk)
    report = verify_ipa(out)
    assert report.intact and report.app.slices[0].team_id == TEAM
