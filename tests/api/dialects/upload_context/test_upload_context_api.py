"""The upload-context API (../shared/specs/upload-context-api.txt), step by step as a client
does it: obtain a context, submit the spec's example build metadata, send ``uploadSpec`` as
written (method, URL, every header, Content-Length), then read the build back. Runs on the
embedded default and, in the scale-out line of .ci/run, on PostgreSQL + Redis + SeaweedFS
(the PUT then goes straight to S3)."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from appyard.app import create_app
from appyard.core import identity
from appyard.core.models import TokenKind
from appyard.runtime import Runtime
from appyard.worker import Worker
from tests.conftest import FIXTURES, SCALE_OUT, FakeClock, TenantKey, make_tenant, rewrite_zip

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# The spec's step-2 example, verbatim but for the context id the server hands out.
EXAMPLE = {
    "contextId": "28",
    "buildType": "APK",
    "buildFileName": "app-play-release.apk",
    "name": "v5.2.8",
    "description": "Arbitrary description",
    "sourceControlId": "e3c0fedc625094db1cbb2823fd425b51ddc0932e",
    "sourceControlIsoTimestamp": "2024-03-07T14:55:43.540Z",
}


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime, start_worker=False)) as c:
        yield c


def context_token(runtime: Runtime, tenant: TenantKey) -> str:
    svc = runtime.services
    with svc.transaction() as uow:
        issued = identity.create_token(
            uow, svc.clock, tenant_id=tenant.tenant_id, kind=TokenKind.CONTEXT
        )
    return issued.raw


@pytest.fixture
def token(runtime: Runtime, tenant: TenantKey) -> str:
    return context_token(runtime, tenant)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def open_context(client: TestClient, token: str, project: str = "my-app") -> dict[str, Any]:
    r = client.post(f"/api/v1/projects/{project}/build-uploads", headers=auth(token))
    assert r.status_code == 200, r.text
    return dict(r.json())


def submit(
    client: TestClient, token: str, context: int | str, project: str = "my-app", **fields: Any
) -> Any:
    body = {**EXAMPLE, "contextId": context, **fields}
    return client.post(f"/api/v1/projects/{project}/builds", json=body, headers=auth(token))


def send(client: TestClient, spec: dict[str, Any], data: bytes) -> Any:
    """Step 3 exactly as written: the method, the URL, every header, and Content-Length."""
    headers = {**spec["headers"], "Content-Length": str(len(data))}
    return client.request(spec["method"], spec["url"], headers=headers, content=data)


def read(client: TestClient, token: str, build_id: int, project: str = "my-app") -> Any:
    return client.get(f"/api/v1/projects/{project}/builds/{build_id}", headers=auth(token))


def work(runtime: Runtime) -> bool:
    return Worker(runtime.services).run_once("test-worker")


# --- the three steps ----------------------------------------------------------------------------


def test_the_spec_flow_ends_with_a_finished_build(
    client: TestClient, runtime: Runtime, token: str
) -> None:
    context = open_context(client, token)
    assert isinstance(context["id"], int) and context["id"] >= 1
    assert ISO_MS.match(context["dateCreated"]), context["dateCreated"]

    r = submit(client, token, str(context["id"]))  # the example sends the id as a string
    assert r.status_code == 200, r.text
    body = r.json()
    spec, build = body["uploadSpec"], body["build"]
    assert spec["method"] == "PUT" and spec["url"].startswith("http")
    assert spec["headers"]["Content-Type"] == "application/octet-stream"
    assert spec["headers"]["X-Goog-Content-Length-Range"] == f"0,{1024**3}"
    assert set(build) >= {
        "id",
        "contextId",
        "buildType",
        "buildFileName",
        "name",
        "description",
        "sourceControlId",
        "sourceControlIsoTimestamp",
        "dateCreated",
        "uploadState",
    }
    assert isinstance(build["id"], int)
    assert build["contextId"] == context["id"]  # an integer in the response
    for field in ("buildType", "buildFileName", "name", "description", "sourceControlId"):
        assert build[field] == EXAMPLE[field]
    assert build["sourceControlIsoTimestamp"] == EXAMPLE["sourceControlIsoTimestamp"]
    assert ISO_MS.match(build["dateCreated"])
    assert build["uploadState"] == "UPLOADING"

    put = send(client, spec, RELEASE_APK.read_bytes())
    assert put.status_code == 200, put.text
    assert read(client, token, build["id"]).json()["uploadState"] == "UPLOADING"  # inspecting
    assert work(runtime)
    done = read(client, token, build["id"])
    assert done.status_code == 200
    assert done.json() == {**build, "uploadState": "FINISHED"}


def test_context_id_is_taken_as_a_number_or_a_numeric_string(
    client: TestClient, token: str
) -> None:
    context = open_context(client, token)["id"]
    assert submit(client, token, context).status_code == 200
    assert submit(client, token, str(context)).status_code == 200
    for bad in ("abc", "²", -1, 0, "1.5", True):
        r = submit(client, token, bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"] == "request.invalid" and "contextId" in r.json()["message"]


def test_contexts_belong_to_their_project(client: TestClient, token: str) -> None:
    mine = open_context(client, token, "alpha")["id"]
    open_context(client, token, "beta")
    r = submit(client, token, mine + 5, project="alpha")
    assert r.status_code == 404 and r.json()["status"] == 404
    r = submit(client, token, mine, project="nobody")
    assert r.status_code == 404 and r.json()["error"] == "app.not_found"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"buildType": "AAB"}, "buildType"),
        ({"buildFileName": None}, "buildFileName"),
        ({"sourceControlIsoTimestamp": "last tuesday"}, "sourceControlIsoTimestamp"),
        ({"buildFileName": "app.aab"}, "buildFileName"),
        ({"buildFileName": "../../etc/app.APK"}, "buildFileName"),
        ({"buildFileName": "-x.apk"}, "file_name"),
    ],
)
def test_bad_build_metadata_is_a_400_that_says_what(
    client: TestClient, token: str, fields: dict[str, Any], problem: str
) -> None:
    context = open_context(client, token)["id"]
    r = submit(client, token, context, **fields)
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"status", "error", "message"} and problem in r.json()["message"]


def test_a_path_in_the_file_name_is_reduced_to_its_base_name(
    client: TestClient, token: str
) -> None:
    context = open_context(client, token)["id"]
    r = submit(client, token, context, buildFileName="build/outputs/app-release.apk")
    assert r.status_code == 200 and r.json()["build"]["buildFileName"] == "app-release.apk"


# --- what becomes of the bytes -------------------------------------------------------------------


def test_a_file_that_is_not_an_apk_fails_with_a_reason(
    client: TestClient, runtime: Runtime, token: str
) -> None:
    context = open_context(client, token)["id"]
    body = submit(client, token, context).json()
    assert send(client, body["uploadSpec"], b"definitely not a zip").status_code == 200
    assert work(runtime)
    build = read(client, token, body["build"]["id"]).json()
    assert build["uploadState"] == "FAILED" and "zip" in build["failureReason"].lower()


def test_an_apk_of_another_app_fails_as_a_project_mismatch(
    client: TestClient, runtime: Runtime, token: str, tmp_path: Path
) -> None:
    first = submit(client, token, open_context(client, token)["id"]).json()
    send(client, first["uploadSpec"], RELEASE_APK.read_bytes())
    assert work(runtime)
    other = FIXTURES / "fixture-native-libs.apk"  # org.appyard.fixture.jni
    second = submit(client, token, open_context(client, token)["id"]).json()
    send(client, second["uploadSpec"], other.read_bytes())
    assert work(runtime)
    build = read(client, token, second["build"]["id"]).json()
    assert build["uploadState"] == "FAILED"
    assert "org.appyard.fixture.jni" in build["failureReason"]
    assert "my-app" in build["failureReason"]
    # The same package again is fine.
    third = submit(client, token, open_context(client, token)["id"]).json()
    send(client, third["uploadSpec"], RELEASE_APK.read_bytes())
    assert work(runtime)
    assert read(client, token, third["build"]["id"]).json()["uploadState"] == "FINISHED"


def test_an_upload_that_never_arrives_expires(
    client: TestClient, runtime: Runtime, token: str, clock: FakeClock
) -> None:
    body = submit(client, token, open_context(client, token)["id"]).json()
    clock.advance(seconds=runtime.settings.upload_expiry_seconds + 1)
    Worker(runtime.services).sweep()
    build = read(client, token, body["build"]["id"]).json()
    assert build["uploadState"] == "FAILED" and "expired" in build["failureReason"]
    if runtime.services.store.reports_arrivals:  # a presigned S3 URL lives until it expires
        put = send(client, body["uploadSpec"], RELEASE_APK.read_bytes())
        assert put.status_code == 410  # the URL ended with its upload


@pytest.fixture
def small_runtime(runtime: Runtime) -> Runtime:
    """The server's upload limit below the spec's 1 GiB, so a range can be overrun cheaply."""
    import dataclasses

    svc = runtime.services
    small = dataclasses.replace(svc, policy=dataclasses.replace(svc.policy, max_size=1000))
    return dataclasses.replace(runtime, services=small)


def test_more_bytes_than_the_range_are_refused_and_nothing_is_kept(
    small_runtime: Runtime, tenant: TenantKey
) -> None:
    token = context_token(small_runtime, tenant)
    with TestClient(create_app(runtime=small_runtime, start_worker=False)) as client:
        body = submit(client, token, open_context(client, token)["id"]).json()
        spec = body["uploadSpec"]
        assert spec["headers"]["X-Goog-Content-Length-Range"] == "0,1000"
        put = send(client, spec, b"x" * 1001)
        store = small_runtime.services.store
        key = f"{tenant.tenant_id}/uploads/android/production/{body['build']['id']}/"
        if store.reports_arrivals:  # the local store enforces the range itself
            assert put.status_code == 413
            assert store.stat(key + "app-play-release.apk") is None
            assert read(client, token, body["build"]["id"]).json()["uploadState"] == "UPLOADING"
        else:  # a presigned S3 PUT cannot: the size is checked on arrival
            assert put.status_code == 200
            Worker(small_runtime.services).notice()
            build = read(client, token, body["build"]["id"]).json()
            assert build["uploadState"] == "FAILED" and "1001 bytes" in build["failureReason"]
            assert store.stat(key + "app-play-release.apk") is None


@pytest.mark.skipif(SCALE_OUT, reason="a presigned S3 PUT may be repeated until it expires")
def test_the_upload_url_works_once(client: TestClient, runtime: Runtime, token: str) -> None:
    body = submit(client, token, open_context(client, token)["id"]).json()
    assert send(client, body["uploadSpec"], RELEASE_APK.read_bytes()).status_code == 200
    again = send(client, body["uploadSpec"], b"something else")
    assert again.status_code in (409, 410)
    assert work(runtime)
    assert read(client, token, body["build"]["id"]).json()["uploadState"] == "FINISHED"


def test_the_finished_build_is_inspected_and_its_bytes_kept(
    client: TestClient, runtime: Runtime, tenant: TenantKey, token: str, tmp_path: Path
) -> None:
    debuggable = FIXTURES / "fixture-debuggable.apk"  # a blocking finding would fail a process
    body = submit(
        client, token, open_context(client, token)["id"], buildType="INSTRUMENTED_APK"
    ).json()
    send(client, body["uploadSpec"], debuggable.read_bytes())
    assert work(runtime)
    assert read(client, token, body["build"]["id"]).json()["uploadState"] == "FINISHED"
    with runtime.services.uow() as uow:
        build = uow.builds.get_by_number(tenant.tenant_id, body["build"]["id"])
        assert build is not None
        findings = uow.findings.list(build.id)
    assert build.identifier == "org.appyard.fixture" and build.source == "upload-context"
    assert any(f.code == "debuggable" for f in findings)
    out = tmp_path / "kept.apk"
    assert build.output_key is not None
    with runtime.services.store.open_read(build.output_key) as src:
        out.write_bytes(src.read())
    assert out.read_bytes() == debuggable.read_bytes()
    with zipfile.ZipFile(out) as zf:
        assert "AndroidManifest.xml" in zf.namelist()


# --- credentials and tenants ----------------------------------------------------------------------


def test_credentials_are_a_context_token_of_the_tenant(
    client: TestClient, runtime: Runtime, tenant: TenantKey, token: str
) -> None:
    path = "/api/v1/projects/my-app/build-uploads"
    assert client.post(path).status_code == 401
    assert client.post(path, headers=auth("garbage")).status_code == 401
    assert client.post(path, headers=auth(tenant.key)).status_code == 401  # automation key
    r = client.post(path, headers=auth(token.split(":")[0] + ":wrong"))
    assert r.status_code == 401 and r.json()["error"] == "auth.invalid_credential"
    with runtime.services.transaction() as uow:
        identity.disable_token(uow, token_id=token.split(":")[0])
    r = client.post(path, headers=auth(token))
    assert r.status_code == 401 and r.json()["error"] == "auth.credential_disabled"


def test_another_tenants_builds_and_contexts_are_not_found(
    client: TestClient, runtime: Runtime, token: str
) -> None:
    body = submit(client, token, open_context(client, token)["id"]).json()
    other = context_token(runtime, make_tenant(runtime, "rival"))
    assert read(client, other, body["build"]["id"]).status_code == 404  # no such project there
    open_context(client, other)  # the rival's own "my-app"
    assert read(client, other, body["build"]["id"]).status_code == 404
    assert submit(client, other, body["build"]["contextId"] + 1).status_code == 404


def test_build_ids_are_numbers_and_unknown_ones_are_404(client: TestClient, token: str) -> None:
    open_context(client, token)
    assert read(client, token, 12345).status_code == 404
    r = client.get("/api/v1/projects/my-app/builds/١٢٣", headers=auth(token))
    assert r.status_code == 400


def test_a_project_name_with_a_path_in_it_is_refused(client: TestClient, token: str) -> None:
    r = client.post("/api/v1/projects/..%2F..%2Fetc/build-uploads", headers=auth(token))
    assert r.status_code in (400, 404)


def test_the_dialect_serves_its_openapi_document(client: TestClient) -> None:
    doc = client.get("/api/v1/projects/openapi.json").json()
    assert "contextToken" in doc["components"]["securitySchemes"]
    builds = doc["paths"]["/{projectName}/builds"]["post"]
    schema = builds["requestBody"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("BuildRequest")


def test_every_error_has_the_documented_shape(client: TestClient, token: str) -> None:
    r = client.post("/api/v1/projects/p/builds", content=b"{nope", headers=auth(token))
    assert r.status_code == 400
    assert set(r.json()) == {"status", "error", "message"}
    r = client.put("/api/v1/projects/p/builds", headers=auth(token))
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json() == {
        "status": 405,
        "error": "http.405",
        "message": "Method not allowed: use POST.",
    }


def test_an_unsigned_apk_is_fine_here(
    client: TestClient, runtime: Runtime, token: str, tmp_path: Path
) -> None:
    unsigned = rewrite_zip(
        RELEASE_APK,
        tmp_path / "unsigned.apk",
        {n: None for n in zipfile.ZipFile(RELEASE_APK).namelist() if n.startswith("META-INF/")},
    )
    body = submit(client, token, open_context(client, token)["id"]).json()
    send(client, body["uploadSpec"], unsigned.read_bytes())
    assert work(runtime)
    assert read(client, token, body["build"]["id"]).json()["uploadState"] == "FINISHED"
