"""The native API's build routes (the CI client's reads) and who may use the native API:
people and, on the build routes only, the tenant's automation keys; management keys, CI
tokens and the other token kinds not at all."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from appyard.app import create_app
from appyard.core import apps, identity, users
from appyard.core.models import Role, TokenKind
from appyard.runtime import Runtime
from appyard.worker import Worker
from tests.conftest import (
    FIXTURES,
    TenantKey,
    add_signing_key,
    make_tenant,
    padded_apk,
    upload_build,
)

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"
V1 = "/appyard/v1"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime, start_worker=False)) as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def token(runtime: Runtime, tenant: TenantKey, kind: TokenKind) -> str:
    svc = runtime.services
    with svc.transaction() as uow:
        app_id = None
        if kind is TokenKind.APP:  # an app token names its app
            app_id = apps.named(
                uow, svc.clock, tenant_id=tenant.tenant_id, slug="my-app", create=True
            ).id
        issued = identity.create_token(
            uow, svc.clock, tenant_id=tenant.tenant_id, kind=kind, app_id=app_id
        )
    return issued.raw


def work(runtime: Runtime) -> None:
    while Worker(runtime.services).run_once("test-worker"):
        pass


def test_an_automation_key_reads_its_build_its_findings_and_its_output(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    add_signing_key(runtime, tenant.tenant_id)
    build = upload_build(runtime, tenant, RELEASE_APK)
    work(runtime)
    by_number = client.get(f"{V1}/builds/{build.number}", headers=auth(tenant.key))
    assert by_number.status_code == 200, by_number.text
    body = by_number.json()
    assert body["build_id"] == build.id and body["job_id"] == str(build.number)
    assert body["status"] == "completed" and body["signed"] is True
    assert client.get(f"{V1}/builds/{build.id}", headers=auth(tenant.key)).json() == body

    output = client.get(f"{V1}/builds/{build.number}/output", headers=auth(tenant.key)).json()
    assert output["sha256"] == body["output"]["sha256"]
    fetched = client.get(output["download_url"])
    assert hashlib.sha256(fetched.content).hexdigest() == output["sha256"]

    report = client.get(f"{V1}/builds/{build.number}/findings", headers=auth(tenant.key)).json()
    assert report["job_id"] == str(build.number) and report["inspected"] is True
    statuses = {c["id"]: c["status"] for c in report["controls"]}
    assert statuses["target_sdk_too_low"] == "failed"  # the fixture targets API 29
    assert statuses["debuggable"] == "passed"
    assert statuses["unsigned_ipa"] == "skipped"  # an iOS control
    assert statuses["unsigned_apk"] == "skipped"  # moot: appyard re-signs the output
    assert {f["code"] for f in report["findings"]} >= {"target_sdk_too_low"}


def test_a_blocked_build_lists_its_blocking_findings(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    build = upload_build(runtime, tenant, FIXTURES / "fixture-debuggable.apk")
    work(runtime)
    body = client.get(f"{V1}/builds/{build.number}", headers=auth(tenant.key)).json()
    assert body["status"] == "failed" and "debuggable" in body["error_message"]
    report = client.get(f"{V1}/builds/{build.number}/findings", headers=auth(tenant.key)).json()
    assert report["summary"]["blocking"] >= 1
    assert any(
        f["code"] == "debuggable" and f["severity"] == "blocking" for f in report["findings"]
    )


def test_an_upload_lists_its_parts_and_signs_only_the_missing_ones(
    client: TestClient, runtime: Runtime, tenant: TenantKey, tmp_path: Any
) -> None:
    svc = runtime.services
    chunk = svc.policy.chunk_size
    apk = padded_apk(tmp_path / "big.apk", svc.policy.multipart_threshold + 10)
    size = apk.stat().st_size
    ticket = client.post(
        "/automate/upload",
        json={"file_name": "big.apk", "platform": "android", "version": "dev", "file_size": size},
        headers=auth(tenant.key),
    ).json()
    assert ticket["multipart"] is True
    data = apk.read_bytes()
    first = client.put(ticket["part_urls"][0], content=data[:chunk])
    assert first.status_code == 200
    seen = client.get(f"{V1}/builds/{ticket['job_id']}/upload", headers=auth(tenant.key)).json()
    assert seen["state"] == "pending" and seen["upload_id"] == ticket["upload_id"]
    assert seen["parts"] == [{"PartNumber": 1, "ETag": first.headers["etag"], "Size": chunk}]
    assert sorted(map(int, seen["missing_part_urls"])) == list(range(2, ticket["total_parts"] + 1))
    etags = {1: first.headers["etag"]}
    for n, url in seen["missing_part_urls"].items():  # fresh URLs work like the first ones
        start = (int(n) - 1) * chunk
        r = client.put(url, content=data[start : start + chunk])
        assert r.status_code == 200
        etags[int(n)] = r.headers["etag"]
    done = client.post(
        "/automate/upload/complete",
        json={
            "file_path": ticket["file_path"],
            "upload_id": ticket["upload_id"],
            "parts": [{"PartNumber": n, "ETag": e} for n, e in sorted(etags.items())],
        },
        headers=auth(tenant.key),
    )
    assert done.status_code == 200, done.text
    after = client.get(f"{V1}/builds/{ticket['job_id']}/upload", headers=auth(tenant.key)).json()
    assert after["state"] == "received" and after["missing_part_urls"] == {}


def test_another_tenants_build_is_not_found(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    other = make_tenant(runtime, "other")
    build = upload_build(runtime, other, RELEASE_APK)
    for path in ("", "/findings", "/output", "/upload"):
        for ref in (build.id, str(build.number)):
            r = client.get(f"{V1}/builds/{ref}{path}", headers=auth(tenant.key))
            assert r.status_code == 404, (path, r.text)
            assert r.json()["error"]["code"] == "build.not_found"


@pytest.mark.parametrize(
    "kind", [TokenKind.MANAGEMENT, TokenKind.CI, TokenKind.CONTEXT, TokenKind.APP]
)
def test_other_token_kinds_do_not_work_on_the_native_api(
    client: TestClient, runtime: Runtime, tenant: TenantKey, kind: TokenKind
) -> None:
    build = upload_build(runtime, tenant, RELEASE_APK)
    raw = token(runtime, tenant, kind)
    headers = [auth(raw)]
    if kind is TokenKind.MANAGEMENT:  # its own format, too
        headers.append(
            {"Authorization": f"Bearer {base64.b64encode(raw.encode()).decode()}", "tenant": "acme"}
        )
    for h in headers:
        for path in (f"/builds/{build.number}", "/versions/vr_x"):
            r = client.get(f"{V1}{path}", headers=h)
            assert r.status_code == 401, (kind, path, r.text)


def test_an_automation_key_is_refused_outside_the_build_routes(
    client: TestClient, tenant: TenantKey
) -> None:
    for method, path in (
        ("GET", "/versions/vr_x"),
        ("GET", "/versions/vr_x/history"),
        ("POST", "/versions/vr_x/submit"),
        ("POST", "/issues/is_x/resolve"),
    ):
        r = client.request(method, f"{V1}{path}", headers=auth(tenant.key))
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"]["code"] == "auth.automation_key_limited"


def test_a_signed_in_member_reads_builds_too(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    svc = runtime.services
    with svc.uow() as uow:
        users.create(
            uow,
            svc.clock,
            email="dev@acme.test",
            name="Dev",
            role=Role.DEVELOPER,
            password="a long password",
            tenant_name="acme",
        )
        uow.commit()
    session = client.post(
        f"{V1}/auth/login", json={"email": "dev@acme.test", "password": "a long password"}
    ).json()["token"]
    build = upload_build(runtime, tenant, RELEASE_APK)
    r = client.get(f"{V1}/builds/{build.number}", headers=auth(session))
    assert r.status_code == 200 and r.json()["build_id"] == build.id
