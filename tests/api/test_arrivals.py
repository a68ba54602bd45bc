"""The arrival model through the dialects: signed upload URLs work once, an upload that ends
frees what it held, a read never writes, and every JSON body is bounded before anything
else happens. On the embedded default (the local store, whose URLs appyard serves); the S3
side of each rule is in tests/scale/ and in the dialect tests of the scale-out line."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from appyard.app import create_app
from appyard.core import identity
from appyard.core.models import BuildStatus, TokenKind
from appyard.runtime import Runtime
from appyard.worker import Worker
from tests.conftest import FIXTURES, SCALE_OUT, TenantKey

pytestmark = pytest.mark.skipif(SCALE_OUT, reason="the local store's own URLs")

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"
KEY_FILE = FIXTURES / "keys" / "release.p12"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime, start_worker=False)) as c:
        yield c


@pytest.fixture
def management(runtime: Runtime, tenant: TenantKey) -> dict[str, str]:
    svc = runtime.services
    with svc.transaction() as uow:
        raw = identity.create_token(
            uow, svc.clock, tenant_id=tenant.tenant_id, kind=TokenKind.MANAGEMENT
        ).raw
    return {
        "Authorization": f"Bearer {base64.b64encode(raw.encode()).decode()}",
        "tenant": tenant.tenant_id,
    }


def automation(tenant: TenantKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.key}"}


def request_upload(client: TestClient, tenant: TenantKey, **extra: Any) -> dict[str, Any]:
    body = {"file_name": "app.apk", "platform": "android", "version": "prod", **extra}
    r = client.post("/automate/upload", json=body, headers=automation(tenant))
    assert r.status_code == 200, r.text
    return dict(r.json())


def status(client: TestClient, tenant: TenantKey, job_id: str) -> dict[str, Any]:
    return dict(client.get(f"/automate/status/{job_id}", headers=automation(tenant)).json())


def objects(runtime: Runtime) -> list[str]:
    assert runtime.local_store is not None
    root = runtime.local_store.objects
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --- signed URLs work once ----------------------------------------------------------------------


def upload_key(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    r = client.post(
        "/frontend/upload_signing_key",
        headers=headers,
        json={
            "key_name": "release",
            "platform": "android",
            "file_name": "release.p12",
            "password": "fixture-release",
            "alias": "release",
        },
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_key_file_sent_again_after_it_was_sealed_is_refused_and_not_kept(
    client: TestClient, runtime: Runtime, management: dict[str, str]
) -> None:
    made = upload_key(client, management)
    assert client.put(made["url"], content=KEY_FILE.read_bytes()).status_code == 200
    keys = client.post("/frontend/get_signing_keys", headers=management, json={}).json()
    assert keys["signing_keys"][0]["status"] == "ready"
    assert objects(runtime) == []  # sealed into the database, the plain file gone
    again = client.put(made["url"], content=KEY_FILE.read_bytes())
    assert again.status_code == 410
    assert objects(runtime) == []


def test_a_deleted_keys_url_writes_nothing(
    client: TestClient, runtime: Runtime, management: dict[str, str]
) -> None:
    made = upload_key(client, management)
    r = client.post(
        "/frontend/delete_signing_key", headers=management, json={"key_id": made["key_id"]}
    )
    assert r.status_code == 200
    assert client.put(made["url"], content=KEY_FILE.read_bytes()).status_code == 410
    assert objects(runtime) == []


def test_a_deleted_builds_url_writes_nothing(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    ticket = request_upload(client, tenant)
    assert client.put(ticket["upload_url"], content=RELEASE_APK.read_bytes()).status_code == 200
    assert Worker(runtime.services).run_once("w")
    svc = runtime.services
    with svc.transaction() as uow:
        from appyard.core import builds

        build = builds.by_number(uow, tenant.actor, number=int(ticket["job_id"]))
        builds.delete(svc, uow, tenant.actor, build_id=build.id)
    assert objects(runtime) == []
    assert client.put(ticket["upload_url"], content=RELEASE_APK.read_bytes()).status_code == 410
    assert objects(runtime) == []


# --- an upload that ends frees its slot -----------------------------------------------------------


def test_a_single_upload_can_be_aborted_by_its_file_path_and_frees_its_slot(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    first, _second = request_upload(client, tenant), request_upload(client, tenant)
    r = client.post("/automate/upload", headers=automation(tenant), json={
        "file_name": "app.apk", "platform": "android", "version": "prod"})  # fmt: skip
    assert r.status_code == 429  # Team plan: two builds at a time
    r = client.post(
        "/automate/upload/abort", headers=automation(tenant), json={"file_path": first["file_path"]}
    )
    assert r.status_code == 200 and r.json() == {
        "job_id": first["job_id"],
        "file_path": first["file_path"],
        "aborted": True,
    }
    body = status(client, tenant, first["job_id"])
    assert body["status"] == "failed" and "aborted" in body["error_message"]
    assert client.put(first["upload_url"], content=RELEASE_APK.read_bytes()).status_code == 410
    request_upload(client, tenant)  # the slot is free again
    again = client.post(
        "/automate/upload/abort", headers=automation(tenant), json={"file_path": first["file_path"]}
    )
    assert again.status_code == 400 and "already aborted" in again.json()["error"]


def test_management_deletes_a_build_still_waiting_for_its_bytes(
    client: TestClient, runtime: Runtime, tenant: TenantKey, management: dict[str, str]
) -> None:
    body = {"file_name": "app.apk", "platform": "android", "version": "production"}
    tickets = [
        client.post("/frontend/upload_application_build", headers=management, json=body).json()
        for _ in range(2)
    ]
    blocked = client.post("/frontend/upload_application_build", headers=management, json=body)
    assert blocked.status_code == 429
    name = {"version": "production", "platform": "android", "file_name": "app.apk"}
    r = client.post(
        "/frontend/delete_application_build",
        headers=management,
        json={**name, "start_time": tickets[0]["start_time"]},
    )
    assert r.status_code == 200, r.text
    history = client.post(
        "/frontend/get_application_builds", headers=management, json={"version": "production"}
    ).json()
    gone = next(b for b in history["results"] if b["start_time"] == tickets[0]["start_time"])
    assert gone["deleted"] is True and gone["success"] is False
    assert client.put(tickets[0]["url"], content=RELEASE_APK.read_bytes()).status_code == 410
    assert (
        client.post("/frontend/upload_application_build", headers=management, json=body).status_code
        == 200
    )


# --- reads never write ---------------------------------------------------------------------------


def test_a_status_read_does_not_notice_bytes_nobody_reported(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    ticket = request_upload(client, tenant)
    svc = runtime.services
    svc.store.write(ticket["file_path"], [RELEASE_APK.read_bytes()])  # no report: a lost one
    for _ in range(3):
        assert status(client, tenant, ticket["job_id"])["progress"] == "Waiting for upload"
    assert Worker(svc).notice() == 1  # the worker's periodic look
    assert status(client, tenant, ticket["job_id"])["progress"] == "Queued"
    assert Worker(svc).run_once("w")
    assert status(client, tenant, ticket["job_id"])["status"] == BuildStatus.COMPLETED.value


# --- bodies are bounded before anything else -----------------------------------------------------

BIG = b'{"file_path": "' + b"x" * (2 * 1024 * 1024) + b'"}'


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/automate/upload/complete", {"error"}),
        ("/automate/upload", {"error"}),
        ("/frontend/complete_multipart_upload", {"success", "error"}),
        ("/frontend/get_applications", {"success", "error"}),
        ("/appyard/v1/auth/login", {"error"}),
        ("/portal/api/ci-tokens", {"error", "code"}),
        ("/api/v1/projects/p/builds", {"status", "error", "message"}),
    ],
)
def test_an_oversized_json_body_is_a_413_before_authentication(
    client: TestClient, path: str, shape: set[str]
) -> None:
    for chunked in (False, True):
        content: Any = (
            BIG if not chunked else iter([BIG[i : i + 65536] for i in range(0, len(BIG), 65536)])
        )
        r = client.post(path, content=content, headers={"Content-Type": "application/json"})
        assert r.status_code == 413, (path, r.text)
        assert set(r.json()) == shape
        assert r.headers["x-request-id"]


def test_a_complete_with_many_parts_fits_its_limit(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    parts = [{"ETag": f'"{n:032x}"', "PartNumber": n} for n in range(1, 10_001)]
    r = client.post(
        "/automate/upload/complete",
        headers=automation(tenant),
        json={"file_path": f"{tenant.tenant_id}/uploads/x.apk", "upload_id": "u", "parts": parts},
    )
    assert r.status_code == 404 and "No upload" in r.json()["error"]  # read, parsed, answered
