"""Requests an attacker (or a careless client) sends, each answered in the dialect's documented
shape, never a 500: bytes outside ASCII in credentials, job ids of digits that are not ASCII,
truncated forms, JSON without its type, unbounded free text; and what they must not do: keep a
session alive after logout, tell another tenant's ids from unknown ones."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from appyard.app import create_app
from appyard.core import identity, users
from appyard.core.models import Role, TokenKind
from appyard.runtime import Runtime
from tests.conftest import FIXTURES, TenantKey, make_tenant

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime, start_worker=False)) as c:
        yield c


def token(runtime: Runtime, tenant_id: str, kind: TokenKind) -> str:
    svc = runtime.services
    with svc.transaction() as uow:
        return identity.create_token(uow, svc.clock, tenant_id=tenant_id, kind=kind).raw


@pytest.mark.parametrize(
    "value",
    [
        b"Bearer \xc3\xa9\xc3\xa9",
        b"Bearer \xff\xfe",
        "Bearer ünïcödé".encode("latin-1"),
        b"\xe2\x82\xac",
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/frontend/get_applications"),
        ("GET", "/automate/status/1"),
        ("GET", "/portal/api/versions/x"),
        ("POST", "/v1/integrations/builds"),
        ("POST", "/api/v1/projects/p/build-uploads"),
        ("GET", "/appyard/v1/versions/x"),
    ],
)
def test_bytes_outside_ascii_in_credentials_are_a_401(
    client: TestClient, value: bytes, method: str, path: str
) -> None:
    r = client.request(method, path, headers={"Authorization": value, "tenant": "x"}, json={})
    assert r.status_code == 401, r.text


@pytest.mark.parametrize(
    "job_id",
    [
        "\u00b2",
        "\u00b9\u00b2",
        "\u2460",
        "\u0661\u0662\u0663",
        "\uff11\uff12\uff13",
        "12a",
        "-1",
        "9" * 40,
    ],
)
def test_job_ids_are_ascii_digits_only(client: TestClient, tenant: TenantKey, job_id: str) -> None:
    for route in ("status", "download"):
        r = client.get(
            f"/automate/{route}/{job_id}", headers={"Authorization": f"Bearer {tenant.key}"}
        )
        assert r.status_code == 400 and r.json() == {"error": "Invalid job ID."}, (route, r.text)


def test_logout_ends_a_session_sent_as_a_bearer(client: TestClient, runtime: Runtime) -> None:
    svc = runtime.services
    tenant = make_tenant(runtime, "people")
    with svc.transaction() as uow:
        users.create(uow, svc.clock, email="dev@people.io", name="Dev", role=Role.DEVELOPER,
                     password="a long password", tenant_name=tenant.name)  # fmt: skip
    session = client.post(
        "/appyard/v1/auth/login", json={"email": "dev@people.io", "password": "a long password"}
    ).json()["token"]
    client.cookies.clear()
    bearer = {"Authorization": f"Bearer {session}"}
    assert client.get("/appyard/v1/members", headers=bearer).status_code == 200
    assert client.post("/appyard/v1/auth/logout", headers=bearer).json() == {"signed_out": True}
    assert client.get("/appyard/v1/members", headers=bearer).status_code == 401


def form(boundary: str, data: bytes, *, closed: bool) -> bytes:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="apk"; filename="app.apk"\r\n'
        "Content-Type: application/vnd.android.package-archive\r\n\r\n"
    ).encode()
    return head + data + (f"\r\n--{boundary}--\r\n".encode() if closed else b"")


def test_a_store_form_without_its_closing_boundary_is_refused(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    ci = {"Authorization": f"Bearer {token(runtime, tenant.tenant_id, TokenKind.CI)}"}
    boundary = "b0undary"
    kind = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    data = RELEASE_APK.read_bytes()
    for cut in (data, data[: len(data) // 2]):
        r = client.post(
            "/portal/api/uploads/ci",
            headers={**ci, **kind},
            content=form(boundary, cut, closed=False),
        )
        assert r.status_code == 400, r.text
        assert (
            r.json()["code"] == "upload.malformed_form" and "closing boundary" in r.json()["error"]
        )
    assert not list(runtime.services.spool_dir.iterdir())  # nothing half-sent is kept
    r = client.post(
        "/portal/api/uploads/ci", headers={**ci, **kind}, content=form(boundary, data, closed=True)
    )
    assert r.status_code == 201, r.text


def test_json_without_its_content_type_is_read_and_another_type_is_named(
    client: TestClient, tenant: TenantKey
) -> None:
    body = b'{"file_name": "app.apk", "platform": "android", "version": "prod"}'
    auth = {"Authorization": f"Bearer {tenant.key}"}
    assert client.post("/automate/upload", content=body, headers=auth).status_code == 200
    r = client.post(
        "/automate/upload", content=body, headers={**auth, "Content-Type": "text/plain"}
    )
    assert r.status_code == 400 and "Content-Type: application/json" in r.json()["error"]


def test_another_tenants_token_and_an_unknown_one_get_the_same_answer(
    client: TestClient, runtime: Runtime
) -> None:
    svc = runtime.services
    mine, theirs = make_tenant(runtime, "mine"), make_tenant(runtime, "theirs")
    with svc.transaction() as uow:
        users.create(uow, svc.clock, email="a@mine.io", name="A", role=Role.DEVELOPER,
                     password="a long password", tenant_name=mine.name)  # fmt: skip
        other = identity.create_token(uow, svc.clock, tenant_id=theirs.tenant_id, kind=TokenKind.CI)
    client.post(
        "/appyard/v1/auth/login", json={"email": "a@mine.io", "password": "a long password"}
    )
    foreign = client.delete(f"/portal/api/ci-tokens/{other.token.id}")
    unknown = client.delete("/portal/api/ci-tokens/ci_00000000000000000000")
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["code"] == unknown.json()["code"]
    assert foreign.json()["error"].replace(other.token.id, "X") == unknown.json()["error"].replace(
        "ci_00000000000000000000", "X"
    )


def test_free_text_is_bounded_and_refused_whole_never_cut(
    runtime: Runtime, client: TestClient
) -> None:
    from tests.api.dialects.store_ci.test_store_ci_api import Store, released_version

    store = Store(runtime, client)
    vid = released_version(store)
    r = store.act(vid, "release", store.admin, countries=["DE"], vehicle_contexts=["x" * 101])
    assert r.status_code == 400 and "at most 100" in r.json()["error"]["message"], r.text
    r = store.act(vid, "release", store.admin, countries=["DE"] * 301)
    assert r.status_code == 400 and "at most 300" in r.json()["error"]["message"], r.text
    assert store.get(f"/versions/{vid}").json()["status"] == "approved"
    other = store.upload(FIXTURES / "fixture-release-vc2.apk").json()["version"]["id"]
    store.validate()
    store.act(other, "submit", store.dev)
    r = store.act(other, "reject", store.reviewer, reason="r" * 2001)
    assert r.status_code == 400 and "at most 2000" in r.json()["error"]["message"], r.text
    assert store.get(f"/versions/{other}").json()["status"] == "in_review"
    r = client.post("/portal/api/ci-tokens", json={"name": "n" * 201}, headers=store.dev)
    assert r.status_code == 400 and "at most 200" in r.json()["error"], r.text
    assert len(store.get("/ci-tokens", headers=store.dev).json()) == 1


def test_a_deleted_builds_download_says_it_was_deleted(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    from appyard.core import builds
    from appyard.worker import Worker
    from tests.conftest import upload_build

    made = upload_build(runtime, tenant, RELEASE_APK)
    assert Worker(runtime.services).run_once("w")
    svc = runtime.services
    with svc.transaction() as uow:
        builds.delete(svc, uow, tenant.actor, build_id=made.id)
    r = client.get(
        f"/automate/download/{made.number}", headers={"Authorization": f"Bearer {tenant.key}"}
    )
    assert r.status_code == 404 and "deleted" in r.json()["error"]


def test_an_aborted_build_never_ends_before_it_started(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    raw = token(runtime, tenant.tenant_id, TokenKind.MANAGEMENT)
    headers = {
        "Authorization": f"Bearer {base64.b64encode(raw.encode()).decode()}",
        "tenant": tenant.tenant_id,
    }
    body = {"file_name": "app.apk", "platform": "android", "version": "production"}
    tickets = [
        client.post("/frontend/upload_application_build", headers=headers, json=body).json()
        for _ in range(2)
    ]
    for ticket in tickets:
        r = client.post(
            "/frontend/abort_multipart_upload",
            headers=headers,
            json={"file_path": ticket["file_path"]},
        )
        assert r.status_code == 200, r.text
    history = client.post(
        "/frontend/get_application_builds", headers=headers, json={"version": "production"}
    ).json()["results"]
    for build in history:
        assert build["end_time"] >= build["start_time"], build
