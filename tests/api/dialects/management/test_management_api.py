"""The management API (../shared/specs/protection-management-api.txt), endpoint by endpoint,
against create_app() with a real database and local blob store. Jobs are run by a Worker in
the test (run_once), so every assertion is deterministic."""

from __future__ import annotations

import base64
import dataclasses
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from appyard.app import create_app
from appyard.core import controls, identity, tenants
from appyard.core.models import (
    ConfigVersion,
    JobState,
    LimitOverrides,
    Plan,
    Platform,
    TokenKind,
)
from appyard.runtime import Runtime
from appyard.worker import Worker
from tests.conftest import (
    FIXTURES,
    FakeClock,
    TenantKey,
    add_signing_key,
    make_tenant,
    need,
    padded_apk,
)

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"
UNSIGNED_APK = FIXTURES / "fixture-unsigned.apk"
KEYS = FIXTURES / "keys"
MIB = 1024 * 1024

SPEC_BUILD_FIELDS = {
    "start_time",
    "end_time",
    "version",
    "name",
    "platform",
    "success",
    "signed",
    "error_message",
    "status_message",
    "signing_key_id",
    "signing_key_name",
    "deleted",
    "signing_error_message",
}


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    app = create_app(runtime=runtime, start_worker=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@dataclasses.dataclass
class Caller:
    tenant_id: str
    token_id: str
    headers: dict[str, str]


def token_headers(raw: str, tenant: str) -> dict[str, str]:
    token = base64.b64encode(raw.encode()).decode()
    return {"Authorization": f"Bearer {token}", "tenant": tenant}


def management(runtime: Runtime, tenant_id: str, scopes: tuple[str, ...] = ()) -> Caller:
    svc = runtime.services
    with svc.uow() as uow:
        issued = identity.create_token(
            uow, svc.clock, tenant_id=tenant_id, kind=TokenKind.MANAGEMENT
        )
        if scopes:
            identity.set_scopes(uow, token_id=issued.token.id, scopes=scopes)
        uow.commit()
    return Caller(tenant_id, issued.token.id, token_headers(issued.raw, tenant_id))


@pytest.fixture
def me(runtime: Runtime, tenant: TenantKey) -> Caller:
    return management(runtime, tenant.tenant_id)


def unlimited(runtime: Runtime, tenant_id: str) -> None:
    svc = runtime.services
    with svc.uow() as uow:
        tenants.set_limits(
            uow,
            tenant_id=tenant_id,
            overrides=LimitOverrides(concurrent_builds=0, weekly_builds=0),
        )
        uow.commit()


def call(client: TestClient, caller: Caller, path: str, body: Any = None) -> Any:
    return client.post(
        f"/frontend/{path}", json={} if body is None else body, headers=caller.headers
    )


def ok(client: TestClient, caller: Caller, path: str, body: Any = None) -> Any:
    r = call(client, caller, path, body)
    assert r.status_code == 200, r.text
    return r.json()


def failed(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False
    assert set(body["error"]) >= {"code", "message"} and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return dict(body["error"])


def work(runtime: Runtime) -> bool:
    return Worker(runtime.services).run_once("test-worker")


def request_upload(client: TestClient, caller: Caller, **fields: Any) -> Any:
    body = {"file_name": "app-release.apk", "platform": "android", "version": "production"}
    body.update(fields)
    return call(client, caller, "upload_application_build", body)


def uploaded(
    client: TestClient,
    runtime: Runtime,
    caller: Caller,
    apk: Path = RELEASE_APK,
    process: bool = True,
    **fields: Any,
) -> dict[str, Any]:
    """Request a URL, PUT the APK, and (by default) run its job."""
    r = request_upload(client, caller, file_size=apk.stat().st_size, **fields)
    assert r.status_code == 200, r.text
    ticket: dict[str, Any] = r.json()
    put = client.put(
        ticket["url"],
        content=apk.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert put.status_code == 200, put.text
    if process:
        assert work(runtime)
    return ticket


def history(client: TestClient, caller: Caller, version: str = "production", **extra: Any) -> Any:
    return ok(client, caller, "get_application_builds", {"version": version, **extra})


def build_of(client: TestClient, caller: Caller, start_time: int, **kw: Any) -> dict[str, Any]:
    results = history(client, caller, page_size=50, **kw)["results"]
    return next(b for b in results if b["start_time"] == start_time)


def named(build: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": build["version"],
        "platform": build["platform"],
        "start_time": build["start_time"],
        "file_name": build["name"],
    }


def upload_key_file(
    client: TestClient,
    caller: Caller,
    file: str = "release.p12",
    password: str = "fixture-release",
    alias: str = "release",
    **fields: Any,
) -> str:
    body = {
        "key_name": "Android release key",
        "platform": "android",
        "file_name": file,
        "password": password,
        "alias": alias,
        "file_size": (KEYS / file).stat().st_size,
    }
    body.update(fields)
    made = ok(client, caller, "upload_signing_key", body)
    assert set(made) == {"key_id", "url"}
    put = client.put(made["url"], content=(KEYS / file).read_bytes())
    assert put.status_code == 200, put.text
    return str(made["key_id"])


def signing_keys(client: TestClient, caller: Caller) -> dict[str, dict[str, Any]]:
    return {k["key_id"]: k for k in ok(client, caller, "get_signing_keys")["signing_keys"]}


def apksigner_cert_sha256(path: Path) -> str:
    need(shutil.which("apksigner") is not None, "apksigner is not installed")
    out = subprocess.run(
        ["apksigner", "verify", "--print-certs", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    line = next(x for x in out.stdout.splitlines() if "certificate SHA-256 digest" in x)
    return line.rsplit(":", 1)[1].strip()


def key_cert(runtime: Runtime, key_id: str) -> str:
    with runtime.services.uow() as uow:
        key = uow.signing_keys.get(key_id)
    assert key is not None and key.cert_sha256
    return key.cert_sha256


def download(client: TestClient, caller: Caller, build: dict[str, Any], tmp_path: Path) -> Path:
    url = ok(client, caller, "download_application_build", named(build))["url"]
    got = client.get(url)
    assert got.status_code == 200
    path = tmp_path / f"out-{build['start_time']}.apk"
    path.write_bytes(got.content)
    return path


# --- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic abc",
        "Bearer ",
        "Bearer not base64!",
        "Bearer " + base64.b64encode(b"no-colon-here").decode(),
        "Bearer mt_0123:secret",  # raw key pair: the management API wants it base64-encoded
        "Bearer " + base64.b64encode(b"mt_unknown:secret").decode(),
        "Bearer " + base64.b64encode(b"mt_\x00:secret").decode(),
    ],
)
def test_missing_or_invalid_token_is_401(
    client: TestClient, me: Caller, authorization: str | None
) -> None:
    headers = {"tenant": me.tenant_id}
    if authorization is not None:
        headers["Authorization"] = authorization
    r = client.post("/frontend/get_applications", json={}, headers=headers)
    failed(r, 401)


def test_wrong_secret_is_401(client: TestClient, me: Caller) -> None:
    r = client.post(
        "/frontend/get_applications",
        json={},
        headers=token_headers(f"{me.token_id}:wrong-secret", me.tenant_id),
    )
    failed(r, 401, "auth.invalid_credential")


def test_an_automation_key_is_not_a_management_token(client: TestClient, tenant: TenantKey) -> None:
    r = client.post(
        "/frontend/get_applications", json={}, headers=token_headers(tenant.key, tenant.tenant_id)
    )
    failed(r, 401)


def test_missing_tenant_header_is_401(client: TestClient, me: Caller) -> None:
    headers = {"Authorization": me.headers["Authorization"]}
    failed(client.post("/frontend/get_applications", json={}, headers=headers), 401)


def test_another_tenant_in_the_tenant_header_is_403(
    client: TestClient, runtime: Runtime, me: Caller
) -> None:
    other = make_tenant(runtime, "other")
    for tenant in (other.tenant_id, "other", "no-such-tenant"):
        headers = {**me.headers, "tenant": tenant}
        r = client.post("/frontend/get_applications", json={}, headers=headers)
        failed(r, 403, "auth.wrong_tenant")


def test_the_tenant_header_may_name_the_tenant(
    client: TestClient, me: Caller, tenant: TenantKey
) -> None:
    headers = {**me.headers, "tenant": tenant.name}
    assert client.post("/frontend/get_applications", json={}, headers=headers).status_code == 200


def test_a_disabled_token_is_refused_at_once(
    client: TestClient, runtime: Runtime, me: Caller
) -> None:
    assert call(client, me, "get_applications").status_code == 200
    with runtime.services.uow() as uow:
        identity.disable_token(uow, token_id=me.token_id)
        uow.commit()
    failed(call(client, me, "get_applications"), 401, "auth.credential_disabled")


def test_a_read_only_token_may_read_but_not_build(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    reader = management(runtime, tenant.tenant_id, scopes=("read",))
    assert call(client, reader, "get_applications").status_code == 200
    assert call(client, reader, "get_application_builds", {"version": "dev"}).status_code == 200
    assert call(client, reader, "get_signing_keys").status_code == 200
    writes = {
        "upload_application_build": {
            "file_name": "a.apk",
            "platform": "android",
            "version": "production",
        },
        "complete_multipart_upload": {"file_path": "x", "upload_id": "y", "parts": []},
        "abort_multipart_upload": {"file_path": "x", "upload_id": "y"},
        "delete_application_build": {
            "version": "production",
            "platform": "android",
            "start_time": 1,
            "file_name": "a.apk",
        },
        "delete_application": {"application_id": "app_x"},
        "upload_signing_key": {
            "key_name": "k",
            "platform": "android",
            "file_name": "k.p12",
            "password": "p",
            "alias": "a",
        },
        "set_default_signing_key": {"platform": "android", "key_id": None},
        "delete_signing_key": {"key_id": "sk_x"},
        "upload_code_signing_file": {
            "file": "f",
            "password": "p",
            "application_id": "app_x",
            "platform": "android",
            "alias": "a",
        },
        "sign_application_build": {"platform": "android", "name": "a.apk", "start_time": 1},
    }
    for path, body in writes.items():
        error = failed(call(client, reader, path, body), 403, "auth.missing_permission")
        assert "Builds" in error["message"], path
    builder = management(runtime, tenant.tenant_id, scopes=("builds",))
    assert request_upload(client, builder).status_code == 200


# --- request shapes ------------------------------------------------------------------------------


def test_bodies_that_are_not_json_objects_are_400(client: TestClient, me: Caller) -> None:
    for content in (b"not json", b"[1, 2]", b'"text"'):
        r = client.post(
            "/frontend/get_application_builds",
            content=content,
            headers={**me.headers, "Content-Type": "application/json"},
        )
        failed(r, 400, "request.invalid")


def test_the_read_endpoints_take_an_empty_or_missing_body(client: TestClient, me: Caller) -> None:
    r = client.post("/frontend/get_applications", headers=me.headers)
    assert r.status_code == 200 and r.json() == {"applications": []}
    assert ok(client, me, "get_signing_keys") == {"signing_keys": []}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"version": "qa"},
        {"version": "production", "page": 0},
        {"version": "production", "page_size": 0},
        {"version": "production", "page_size": 51},
        {"version": "production", "page": 10**30},
        {"version": "production", "page": "one"},
        {"version": "prod\x00uction"},
    ],
)
def test_bad_history_requests_are_400(client: TestClient, me: Caller, body: Any) -> None:
    failed(call(client, me, "get_application_builds", body), 400)


def test_wrong_method_and_unknown_path_are_json(client: TestClient, me: Caller) -> None:
    failed(client.get("/frontend/get_applications", headers=me.headers), 405, "http.405")
    failed(client.post("/frontend/no_such_endpoint", json={}, headers=me.headers), 404)


# --- upload, history, download -------------------------------------------------------------------


def test_upload_poll_download(
    client: TestClient, runtime: Runtime, me: Caller, tmp_path: Path
) -> None:
    r = request_upload(client, me, file_size=RELEASE_APK.stat().st_size)
    ticket = r.json()
    assert set(ticket) == {"url", "file_path", "start_time", "expires_in", "signing_key_id"}
    assert isinstance(ticket["start_time"], int)
    assert ticket["expires_in"] == 3600 and ticket["signing_key_id"] is None
    assert ticket["file_path"] == (
        f"{me.tenant_id}/uploads/android/production/{ticket['start_time']}/app-release.apk"
    )
    waiting = build_of(client, me, ticket["start_time"])
    assert waiting["success"] is None and waiting["status_message"] == "Waiting for upload"
    assert waiting["end_time"] is None

    put = client.put(
        ticket["url"],
        content=RELEASE_APK.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert put.status_code == 200
    page = history(client, me)
    queued = next(b for b in page["results"] if b["start_time"] == ticket["start_time"])
    assert queued["success"] is None and queued["status_message"] == "Queued"
    assert page["still_waiting"] is True
    failed(call(client, me, "download_application_build", named(queued)), 400, "job.not_completed")

    assert work(runtime)
    page = history(client, me)
    assert page["still_waiting"] is False
    assert page["total_count"] == 1 and page["total_pages"] == 1
    assert page["page"] == 1 and page["page_size"] == 6
    assert page["builds_used_android"] == 1 and page["builds_used_apple"] == 0
    build = page["results"][0]
    assert set(build) == SPEC_BUILD_FIELDS
    assert build["start_time"] == ticket["start_time"]
    assert isinstance(build["end_time"], int) and build["end_time"] >= build["start_time"]
    assert build["version"] == "production" and build["platform"] == "android"
    assert build["name"] == "app-release.apk"
    assert build["success"] is True and build["status_message"] == "Complete (unsigned)"
    assert build["signed"] is False and build["deleted"] is False
    assert build["error_message"] is None and build["signing_error_message"] is None
    assert build["signing_key_id"] is None and build["signing_key_name"] is None

    out = download(client, me, build, tmp_path)
    with zipfile.ZipFile(out) as zf:
        assert "AndroidManifest.xml" in zf.namelist()


def test_version_aliases_are_accepted_and_normalised(
    client: TestClient, runtime: Runtime, me: Caller
) -> None:
    ticket = request_upload(client, me, version="STG").json()
    assert "/staging/" in ticket["file_path"]
    assert build_of(client, me, ticket["start_time"], version="stg")["version"] == "staging"
    assert history(client, me, "production")["total_count"] == 0


def test_history_pages_newest_first(client: TestClient, runtime: Runtime, me: Caller) -> None:
    unlimited(runtime, me.tenant_id)
    starts = [request_upload(client, me).json()["start_time"] for _ in range(8)]
    first = history(client, me)
    assert first["page_size"] == 6 and len(first["results"]) == 6
    assert first["total_count"] == 8 and first["total_pages"] == 2
    page = history(client, me, page=3, page_size=3)
    assert page["total_pages"] == 3 and page["page"] == 3
    assert [b["start_time"] for b in page["results"]] == sorted(starts)[:2][::-1]
    everything = history(client, me, page_size=50)["results"]
    assert [b["start_time"] for b in everything] == sorted(starts, reverse=True)
    assert history(client, me, page=9)["results"] == []
    assert history(client, me, "development")["total_count"] == 0


def test_a_failed_build_explains_itself(client: TestClient, runtime: Runtime, me: Caller) -> None:
    r = request_upload(client, me)
    client.put(r.json()["url"], content=b"this is not an apk")
    work(runtime)
    build = build_of(client, me, r.json()["start_time"])
    assert build["success"] is False
    assert "zip" in build["error_message"].lower()
    assert build["status_message"].startswith("Failed") and "zip" in build["status_message"]
    failed(call(client, me, "download_application_build", named(build)), 400)


def test_in_progress_builds_older_than_the_worker_timeout_are_marked_failed(
    client: TestClient, runtime: Runtime, clock: FakeClock, me: Caller
) -> None:
    ticket = uploaded(client, runtime, me, process=False)  # queued, no worker takes it
    clock.advance(minutes=59)
    assert build_of(client, me, ticket["start_time"])["success"] is None
    clock.advance(minutes=2)
    assert history(client, me)["results"][0]["success"] is None  # reading changes nothing
    Worker(runtime.services).sweep()
    page = history(client, me)
    build = page["results"][0]
    assert build["success"] is False and "worker timeout" in build["error_message"]
    assert page["still_waiting"] is False
    assert not work(runtime)  # its job was failed too: no worker picks it up later
    with runtime.services.uow() as uow:
        stored = uow.builds.get_by_number(me.tenant_id, ticket["start_time"])
        assert stored is not None
        assert {j.state for j in uow.jobs.for_build(stored.id)} == {JobState.FAILED}


def test_a_build_a_live_worker_holds_is_not_timed_out(
    client: TestClient, runtime: Runtime, clock: FakeClock, me: Caller
) -> None:
    from appyard.core import jobs

    ticket = uploaded(client, runtime, me, process=False)
    clock.advance(minutes=90)
    with runtime.services.uow() as uow:
        assert jobs.claim(uow, clock, owner="busy-worker", lease_seconds=60) is not None
        uow.commit()
    Worker(runtime.services).sweep()
    assert build_of(client, me, ticket["start_time"])["success"] is None


def test_upload_field_rules(client: TestClient, me: Caller) -> None:
    failed(request_upload(client, me, file_size=3 * 1024**3), 400, "upload.too_large")
    failed(request_upload(client, me, file_size=-1), 400)
    failed(request_upload(client, me, file_name="app.APK"), 400, "upload.invalid_file_name")
    failed(request_upload(client, me, file_name="app.ipa"), 400, "upload.platform_mismatch")
    failed(request_upload(client, me, platform="windows"), 400)
    failed(request_upload(client, me, version="qa"), 400)
    failed(request_upload(client, me, signing_key_id="sk_nope"), 400, "signing_key.unknown")
    failed(call(client, me, "upload_application_build", {"platform": "android"}), 400)
    ticket = request_upload(client, me, file_name="../build/outputs/app-release.apk").json()
    assert ticket["file_path"].endswith("/app-release.apk") and ".." not in ticket["file_path"]


def test_limits_are_429(client: TestClient, runtime: Runtime, me: Caller) -> None:
    for _ in range(2):  # team: two concurrent builds
        assert request_upload(client, me).status_code == 200
    failed(request_upload(client, me), 429, "limit.concurrent_builds")


def test_free_tenants_skip_signing_key_metadata(client: TestClient, runtime: Runtime) -> None:
    free = make_tenant(runtime, "freebie", Plan.FREE)
    key_id = add_signing_key(runtime, free.tenant_id)  # even with a default key
    caller = management(runtime, free.tenant_id)
    assert request_upload(client, caller).json()["signing_key_id"] is None
    assert request_upload(client, caller, signing_key_id=key_id).status_code in (200, 429)


# --- multipart -----------------------------------------------------------------------------------


@pytest.fixture
def small_parts(runtime: Runtime) -> Runtime:
    """Multipart from 1 MiB with 256 KiB chunks, so the flow is tested on small files."""
    policy = dataclasses.replace(
        runtime.services.policy, multipart_threshold=MIB, chunk_size=256 * 1024
    )
    object.__setattr__(runtime.services, "policy", policy)
    return runtime


def test_multipart_upload_complete_and_abort(
    client: TestClient, small_parts: Runtime, me: Caller, tmp_path: Path
) -> None:
    data = padded_apk(
        tmp_path / "big.apk", 1_200_000
    ).read_bytes()  # unsigned: the tenant's managed key signs it
    add_signing_key(small_parts, me.tenant_id)
    ticket = request_upload(client, me, file_size=len(data)).json()
    assert set(ticket) == {
        "multipart",
        "upload_id",
        "part_urls",
        "chunk_size",
        "total_parts",
        "file_path",
        "start_time",
        "expires_in",
        "signing_key_id",
    }
    assert ticket["multipart"] is True and ticket["chunk_size"] == 256 * 1024
    assert ticket["total_parts"] == len(ticket["part_urls"]) == -(-len(data) // (256 * 1024))
    parts = []
    chunk = ticket["chunk_size"]
    where = {"file_path": ticket["file_path"], "upload_id": ticket["upload_id"]}
    for n, url in enumerate(ticket["part_urls"], start=1):
        if n == ticket["total_parts"]:  # the last part not uploaded yet
            error = failed(
                call(client, me, "complete_multipart_upload", {**where, "parts": parts}),
                400,
                "upload.invalid_parts",
            )
            assert error["missing_parts"] == [n]
        put = client.put(url, content=data[(n - 1) * chunk : n * chunk])
        assert put.status_code == 200
        parts.append({"PartNumber": n, "ETag": put.headers["ETag"]})
    failed(call(client, me, "complete_multipart_upload", {**where, "parts": parts[:-1]}), 400)
    wrong = [dict(p) for p in parts]
    wrong[0]["ETag"] = '"0000"'
    failed(call(client, me, "complete_multipart_upload", {**where, "parts": wrong}), 400)
    done = ok(client, me, "complete_multipart_upload", {**where, "parts": parts})
    assert done == {"message": "Upload completed successfully"}
    # sent again (its answer was lost): answered as the first time (docs/faults.md)
    assert ok(client, me, "complete_multipart_upload", {**where, "parts": parts}) == done
    assert work(small_parts)
    built = build_of(client, me, ticket["start_time"])
    assert built["success"] is True, (built["error_message"], built["status_message"])

    second = request_upload(client, me, file_size=len(data)).json()
    where = {"file_path": second["file_path"], "upload_id": second["upload_id"]}
    failed(call(client, me, "abort_multipart_upload", {**where, "upload_id": "nope"}), 400)
    assert ok(client, me, "abort_multipart_upload", where) == {
        "message": "Upload aborted successfully"
    }
    aborted = build_of(client, me, second["start_time"])
    assert aborted["success"] is False and "aborted" in aborted["error_message"]


def test_another_tenants_file_path_is_403(
    client: TestClient, small_parts: Runtime, me: Caller
) -> None:
    other = management(small_parts, make_tenant(small_parts, "other").tenant_id)
    ticket = request_upload(client, me, file_size=2 * MIB).json()
    where = {"file_path": ticket["file_path"], "upload_id": ticket["upload_id"]}
    failed(
        call(client, other, "complete_multipart_upload", {**where, "parts": []}),
        403,
        "auth.wrong_tenant",
    )
    failed(call(client, other, "abort_multipart_upload", where), 403, "auth.wrong_tenant")
    failed(call(client, me, "abort_multipart_upload", {**where, "file_path": "x/y.apk"}), 403)


# --- download and delete by name -----------------------------------------------------------------


def test_download_and_delete_need_the_builds_exact_name(
    client: TestClient, runtime: Runtime, me: Caller
) -> None:
    ticket = uploaded(client, runtime, me)
    build = build_of(client, me, ticket["start_time"])
    for change in (
        {"start_time": build["start_time"] + 1000},
        {"file_name": "other.apk"},
        {"version": "staging"},
        {"platform": "ios"},
    ):
        body = {**named(build), **change}
        failed(call(client, me, "download_application_build", body), 404, "build.not_found")
        failed(call(client, me, "delete_application_build", body), 404, "build.not_found")
    failed(call(client, me, "download_application_build", {**named(build), "start_time": -1}), 400)
    failed(
        call(client, me, "download_application_build", {**named(build), "start_time": 10**20}),
        400,
    )
    failed(call(client, me, "download_application_build", {"version": "production"}), 400)


def test_another_tenants_build_is_404(client: TestClient, runtime: Runtime, me: Caller) -> None:
    ticket = uploaded(client, runtime, me)
    build = build_of(client, me, ticket["start_time"])
    other = management(runtime, make_tenant(runtime, "other").tenant_id)
    failed(call(client, other, "download_application_build", named(build)), 404)
    failed(call(client, other, "delete_application_build", named(build)), 404)


def test_delete_build_removes_the_output_and_keeps_the_row(
    client: TestClient, runtime: Runtime, me: Caller
) -> None:
    ticket = uploaded(client, runtime, me)
    build = build_of(client, me, ticket["start_time"])
    with runtime.services.uow() as uow:
        stored = uow.builds.get_by_number(me.tenant_id, ticket["start_time"])
    assert stored is not None and stored.output_key is not None
    store = runtime.services.store
    assert store.stat(stored.output_key) is not None

    assert ok(client, me, "delete_application_build", named(build)) == {"success": True}
    assert store.stat(stored.output_key) is None
    assert store.stat(stored.source_key) is None
    after = build_of(client, me, ticket["start_time"])
    assert after["deleted"] is True and after["status_message"] == "Deleted"
    assert after["success"] is True  # how it ended is kept
    assert history(client, me)["total_count"] == 1
    failed(call(client, me, "download_application_build", named(build)), 404, "build.deleted")
    assert ok(client, me, "delete_application_build", named(build)) == {"success": True}


def test_a_build_still_processing_cannot_be_deleted(
    client: TestClient, runtime: Runtime, me: Caller
) -> None:
    ticket = uploaded(client, runtime, me, process=False)  # queued: a worker may take it
    build = build_of(client, me, ticket["start_time"])
    failed(call(client, me, "delete_application_build", named(build)), 409, "build.processing")


# --- applications --------------------------------------------------------------------------------


def test_applications_are_listed_with_their_newest_build(
    client: TestClient, runtime: Runtime, me: Caller
) -> None:
    uploaded(client, runtime, me)
    apps = ok(client, me, "get_applications")["applications"]
    assert len(apps) == 1
    app = apps[0]
    assert set(app) == {
        "platform",
        "build_version",
        "build_id",
        "build_name",
        "build_image",
        "creation_time",
        "application_id",
    }
    assert app["platform"] == "android" and app["build_version"] == "1.0.0"
    assert app["build_id"] == "org.appyard.fixture"
    assert app["build_name"] == "Appyard Fixture"  # the app's label, not its package
    icon = client.get(app["build_image"])  # its launcher icon, at a signed URL
    assert icon.status_code == 200 and icon.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert isinstance(app["creation_time"], int) and app["application_id"]
    other = management(runtime, make_tenant(runtime, "other").tenant_id)
    assert ok(client, other, "get_applications") == {"applications": []}


def test_an_application_can_be_deleted_only_after_seven_days(
    client: TestClient, runtime: Runtime, clock: FakeClock, me: Caller
) -> None:
    ticket = uploaded(client, runtime, me)
    app_id = ok(client, me, "get_applications")["applications"][0]["application_id"]
    error = failed(
        call(client, me, "delete_application", {"application_id": app_id}), 409, "app.too_new"
    )
    assert "7 days" in error["message"]
    failed(call(client, me, "delete_application", {"application_id": "app_nope"}), 404)
    other = management(runtime, make_tenant(runtime, "other").tenant_id)
    failed(call(client, other, "delete_application", {"application_id": app_id}), 404)

    clock.advance(days=7)
    assert ok(client, me, "delete_application", {"application_id": app_id}) == {"success": True}
    assert ok(client, me, "get_applications") == {"applications": []}
    assert build_of(client, me, ticket["start_time"])["success"] is True  # history stays


# --- signing keys --------------------------------------------------------------------------------


def test_signing_keys_need_a_team_plan(client: TestClient, runtime: Runtime) -> None:
    free = management(runtime, make_tenant(runtime, "freebie", Plan.FREE).tenant_id)
    for path, body in {
        "get_signing_keys": {},
        "upload_signing_key": {
            "key_name": "k",
            "platform": "android",
            "file_name": "release.p12",
            "password": "p",
            "alias": "release",
        },
        "set_default_signing_key": {"platform": "android", "key_id": None},
        "delete_signing_key": {"key_id": "sk_x"},
        "upload_code_signing_file": {
            "file": "f",
            "password": "p",
            "application_id": "app_x",
            "platform": "android",
            "alias": "a",
        },
        "sign_application_build": {"platform": "android", "name": "a.apk", "start_time": 1},
    }.items():
        error = failed(call(client, free, path, body), 403, "plan.signing_keys")
        assert "Team or Enterprise" in error["message"]


def test_upload_a_signing_key_and_sign_builds_with_it(
    client: TestClient, runtime: Runtime, me: Caller, tmp_path: Path
) -> None:
    key_id = upload_key_file(client, me)
    keys = signing_keys(client, me)
    key = keys[key_id]
    assert key["key_name"] == "Android release key" and key["platform"] == "android"
    assert key["file_name"] == "release.p12" and key["is_default"] is True  # the first key
    assert key["uploaded_by"] == me.token_id and isinstance(key["creation_time"], int)
    assert key["status"] == "ready" and key["error_message"] is None

    ticket = uploaded(client, runtime, me, apk=UNSIGNED_APK)
    assert ticket["signing_key_id"] == key_id  # the default
    build = build_of(client, me, ticket["start_time"])
    assert build["success"] is True, build
    assert build["signed"] is True and build["signing_key_id"] == key_id
    assert build["signing_key_name"] == "Android release key"
    out = download(client, me, build, tmp_path)
    assert apksigner_cert_sha256(out) == key_cert(runtime, key_id)


def test_a_key_file_with_the_wrong_password_shows_why(client: TestClient, me: Caller) -> None:
    key_id = upload_key_file(client, me, password="not-the-password")
    key = signing_keys(client, me)[key_id]
    assert key["status"] == "invalid" and key["is_default"] is False
    assert "password" in key["error_message"].lower()
    failed(request_upload(client, me, signing_key_id=key_id), 400, "signing_key.unknown")


def test_a_key_file_with_a_missing_alias_shows_why(client: TestClient, me: Caller) -> None:
    key_id = upload_key_file(client, me, alias="nobody")
    key = signing_keys(client, me)[key_id]
    assert key["status"] == "invalid" and "alias" in key["error_message"].lower()


def test_a_key_waits_for_its_file(client: TestClient, me: Caller) -> None:
    made = ok(
        client,
        me,
        "upload_signing_key",
        {
            "key_name": "later",
            "platform": "android",
            "file_name": "release.jks",
            "password": "x",
            "alias": "release",
        },
    )
    key = signing_keys(client, me)[made["key_id"]]
    assert key["status"] == "pending" and key["is_default"] is False


def test_signing_key_field_rules(client: TestClient, me: Caller) -> None:
    base = {
        "key_name": "k",
        "platform": "android",
        "file_name": "release.p12",
        "password": "p",
        "alias": "release",
    }
    failed(call(client, me, "upload_signing_key", {**base, "alias": None}), 400)
    failed(call(client, me, "upload_signing_key", {**base, "alias": " "}), 400)
    failed(
        call(client, me, "upload_signing_key", {**base, "file_size": 11 * MIB}),
        400,
        "upload.too_large",
    )
    failed(call(client, me, "upload_signing_key", {**base, "platform": "windows"}), 400)
    failed(call(client, me, "upload_signing_key", {**base, "key_name": " "}), 400)
    failed(call(client, me, "upload_signing_key", {**base, "key_name": "x" * 300}), 400)
    failed(call(client, me, "upload_signing_key", {**base, "file_name": "../"}), 400)
    failed(call(client, me, "upload_signing_key", {**base, "password": ""}), 400)
    del base["password"]
    failed(call(client, me, "upload_signing_key", base), 400)
    assert signing_keys(client, me) == {}


def test_an_oversized_key_file_is_refused_at_the_url(client: TestClient, me: Caller) -> None:
    made = ok(
        client,
        me,
        "upload_signing_key",
        {
            "key_name": "k",
            "platform": "android",
            "file_name": "release.p12",
            "password": "p",
            "alias": "release",
            "file_size": 100,
        },
    )
    assert client.put(made["url"], content=b"x" * 101).status_code == 413


def test_default_keys(client: TestClient, runtime: Runtime, me: Caller) -> None:
    first = upload_key_file(client, me)
    second = upload_key_file(
        client, me, "other.p12", "fixture-other", "other", key_name="Other", is_default=True
    )
    keys = signing_keys(client, me)
    assert keys[second]["is_default"] is True and keys[first]["is_default"] is False
    assert request_upload(client, me).json()["signing_key_id"] == second

    body = {"platform": "android", "key_id": first}
    assert ok(client, me, "set_default_signing_key", body) == {"success": True}
    keys = signing_keys(client, me)
    assert keys[first]["is_default"] is True and keys[second]["is_default"] is False

    failed(call(client, me, "set_default_signing_key", {**body, "platform": "ios"}), 400)
    failed(
        call(client, me, "set_default_signing_key", {**body, "key_id": "sk_nope"}),
        404,
        "signing_key.not_found",
    )
    failed(call(client, me, "set_default_signing_key", {"key_id": first}), 400)

    assert ok(client, me, "set_default_signing_key", {"platform": "android"}) == {"success": True}
    assert not any(k["is_default"] for k in signing_keys(client, me).values())
    unlimited(runtime, me.tenant_id)
    assert request_upload(client, me).json()["signing_key_id"] is None
    assert request_upload(client, me, signing_key_id=first).json()["signing_key_id"] == first


def test_delete_a_signing_key(client: TestClient, runtime: Runtime, me: Caller) -> None:
    key_id = upload_key_file(client, me)
    ticket = uploaded(client, runtime, me, apk=UNSIGNED_APK, process=False)
    assert ok(client, me, "delete_signing_key", {"key_id": key_id}) == {"success": True}
    assert signing_keys(client, me) == {}
    failed(call(client, me, "delete_signing_key", {"key_id": key_id}), 404, "signing_key.not_found")
    other = management(runtime, make_tenant(runtime, "other").tenant_id)
    failed(call(client, other, "delete_signing_key", {"key_id": key_id}), 404)
    # the queued build that needed it fails, unsigned, and says why
    assert work(runtime)
    build = build_of(client, me, ticket["start_time"])
    assert build["success"] is False and build["signed"] is False
    assert "deleted" in build["signing_error_message"]
    assert build["signing_key_name"] == "Android release key"


# --- the legacy per-application signing file -----------------------------------------------------


def test_sign_a_build_with_the_applications_signing_file(
    client: TestClient, runtime: Runtime, me: Caller, tmp_path: Path
) -> None:
    with runtime.services.uow() as uow:  # unsigned production builds pass; they get signed later
        controls.set_controls(
            uow,
            tenant_id=me.tenant_id,
            platform=Platform.ANDROID,
            version=ConfigVersion.PRODUCTION,
            enable=[],
            disable=["unsigned_apk"],
        )
        uow.commit()
    ticket = uploaded(client, runtime, me, apk=UNSIGNED_APK)
    build = build_of(client, me, ticket["start_time"])
    assert build["success"] is True and build["signed"] is False
    sign = {"platform": "android", "name": build["name"], "start_time": build["start_time"]}
    failed(call(client, me, "sign_application_build", sign), 400, "signing_file.missing")

    app_id = ok(client, me, "get_applications")["applications"][0]["application_id"]
    legacy = {
        "file": "required-compatibility-field",
        "password": "fixture-other",
        "application_id": app_id,
        "platform": "android",
        "alias": "other",
    }
    made = ok(client, me, "upload_code_signing_file", legacy)
    assert set(made) == {"url"}
    failed(call(client, me, "sign_application_build", sign), 400, "signing_file.missing")
    assert client.put(made["url"], content=(KEYS / "other.p12").read_bytes()).status_code == 200
    assert signing_keys(client, me) == {}  # not a managed key
    assert request_upload(client, me).json()["signing_key_id"] is None  # nor a default

    queued = ok(client, me, "sign_application_build", sign)
    assert queued == {"success": True, "message": "Build queued for signing"}
    during = build_of(client, me, build["start_time"])
    assert during["success"] is None and during["status_message"] == "Queued"
    failed(call(client, me, "sign_application_build", sign), 409, "build.processing")
    assert work(runtime)
    after = build_of(client, me, build["start_time"])
    assert after["success"] is True and after["signed"] is True, after
    assert after["signing_key_name"].endswith("signing file")
    out = download(client, me, after, tmp_path)
    assert apksigner_cert_sha256(out) == key_cert(runtime, after["signing_key_id"])


def test_legacy_signing_field_rules(client: TestClient, runtime: Runtime, me: Caller) -> None:
    ticket = uploaded(client, runtime, me)
    app_id = ok(client, me, "get_applications")["applications"][0]["application_id"]
    legacy = {
        "file": "f",
        "password": "p",
        "application_id": app_id,
        "platform": "android",
        "alias": "release",
    }
    failed(call(client, me, "upload_code_signing_file", {**legacy, "platform": "ios"}), 400)
    failed(call(client, me, "upload_code_signing_file", {**legacy, "alias": None}), 400)
    failed(call(client, me, "upload_code_signing_file", {**legacy, "application_id": "x"}), 404)
    del legacy["file"]
    failed(call(client, me, "upload_code_signing_file", legacy), 400)
    sign = {"platform": "android", "name": "app-release.apk", "start_time": ticket["start_time"]}
    failed(call(client, me, "sign_application_build", {**sign, "start_time": 1}), 404)
    failed(call(client, me, "sign_application_build", {**sign, "name": "x.apk"}), 404)
    failed(call(client, me, "sign_application_build", {**sign, "platform": "ios"}), 404)


def test_a_bad_signing_file_says_why_signing_is_refused(
    client: TestClient, runtime: Runtime, me: Caller
) -> None:
    ticket = uploaded(client, runtime, me)
    app_id = ok(client, me, "get_applications")["applications"][0]["application_id"]
    made = ok(
        client,
        me,
        "upload_code_signing_file",
        {
            "file": "f",
            "password": "wrong",
            "application_id": app_id,
            "platform": "android",
            "alias": "release",
        },
    )
    client.put(made["url"], content=(KEYS / "release.p12").read_bytes())
    sign = {"platform": "android", "name": "app-release.apk", "start_time": ticket["start_time"]}
    error = failed(call(client, me, "sign_application_build", sign), 400, "signing_file.missing")
    assert "password" in error["message"].lower()


def test_bodies_are_bounded(client: TestClient, me: Caller) -> None:
    failed(request_upload(client, me, file_size=10**40), 400)
    failed(request_upload(client, me, file_name="a" * 5000 + ".apk"), 400)
    r = call(client, me, "delete_application", {"application_id": "app\x00x"})
    failed(r, 400)


def test_another_tenants_signing_key_is_not_found_like_an_unknown_one(
    client: TestClient, runtime: Runtime, me: Caller
) -> None:
    """set_default_signing_key and delete_signing_key name a key by id: another tenant's is
    a 404, word for word an unknown key's (issue 11: was a 400 unlike the documented 404);
    a build request naming one stays the documented 400."""
    theirs = upload_key_file(client, management(runtime, make_tenant(runtime, "other").tenant_id))
    for route, body in (
        ("set_default_signing_key", {"platform": "android"}),
        ("delete_signing_key", {}),
    ):
        foreign = failed(call(client, me, route, {**body, "key_id": theirs}), 404)
        unknown = failed(call(client, me, route, {**body, "key_id": "sk_0000000000000000"}), 404)
        assert foreign["code"] == unknown["code"] == "signing_key.not_found"
        assert foreign["message"].replace(theirs, "K") == unknown["message"].replace(
            "sk_0000000000000000", "K"
        )
    failed(request_upload(client, me, signing_key_id=theirs), 400, "signing_key.unknown")
