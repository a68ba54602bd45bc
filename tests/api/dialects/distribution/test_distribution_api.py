"""The distribution API (../shared/specs/distribution-upload-api.txt, field names from
distribution-field-names.md): every documented field of the form, both credentials, the
answer's shape, what becomes of the build, custom-platform packages, and the error shape.
Against create_app() with a real database and store; jobs run by a Worker in the test."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from appyard.app import create_app
from appyard.core import apps, identity
from appyard.core.models import Plan, TokenKind
from appyard.runtime import Runtime
from appyard.worker import Worker
from tests.conftest import FIXTURES, FakeClock, TenantKey, make_tenant
from tests.inspect.test_ipa_factory import make_ipa, make_png, make_profile

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"
OTHER_APK = FIXTURES / "fixture-native-libs.apk"  # org.appyard.fixture.jni
# The spec's integrations example, every -F field, as (name, value) pairs.
EXAMPLE_FIELDS = [
    ("versionName", "v2.4.0-rc1"),
    ("tags", "staging, sprint-42"),
    ("changelog", "Fixed crash on login screen"),
    ("notifyCollaborators", "true"),
    ("notifyEmployees", "false"),
    ("notifyMessage", "New build ready for QA"),
    ("notifyLanguage", "en"),
    ("filter[0][0]", "group1"),
    ("filter[0][1]", "group2"),
    ("filter[1][0]", "group3"),
    ("deployer.name", "GitHub Actions"),
    ("deployer.info.commitMessage", "Fix crash on login"),
    ("deployer.info.commit", "f52ace0"),
    ("deployer.info.branch", "release/2.4"),
    ("deployer.info.tag", "v2.4.0-rc1"),
    ("deployer.info.triggerTimestamp", "1558359012580"),
    ("deployer.info.buildUrl", "https://github.com/myorg/myapp/actions/runs/123"),
    ("deployer.info.ciUrl", "https://github.com/myorg/myapp/actions"),
    ("deployer.info.repositoryUrl", "https://github.com/myorg/myapp"),
    ("deployer.info.buildNumber", "173"),
]
DATA_FIELDS = {
    "id",
    "status",
    "tags",
    "versionName",
    "application",
    "applicationInfo",
    "changelog",
    "info",
    "size",
    "processTime",
    "queuedTime",
    "versionCode",
    "os",
    "deployer",
    "uploadedBy",
    "originalExtension",
    "storageProvider",
    "updatedAt",
    "createdAt",
}


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime, start_worker=False)) as c:
        yield c


def token(runtime: Runtime, tenant_id: str, kind: TokenKind, app_slug: str | None = None) -> str:
    svc = runtime.services
    with svc.transaction() as uow:
        app_id = None
        if app_slug:
            app_id = apps.named(uow, svc.clock, tenant_id=tenant_id, slug=app_slug, create=True).id
        return identity.create_token(
            uow, svc.clock, tenant_id=tenant_id, kind=kind, app_id=app_id
        ).raw


@pytest.fixture
def app_token(runtime: Runtime, tenant: TenantKey) -> str:
    return token(runtime, tenant.tenant_id, TokenKind.APP, "my-app")


@pytest.fixture
def service(runtime: Runtime, tenant: TenantKey) -> str:
    return token(runtime, tenant.tenant_id, TokenKind.SERVICE_ACCOUNT)


def auth(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def upload(
    client: TestClient,
    raw: str,
    file: Path | bytes = RELEASE_APK,
    *,
    path: str = "/v1/integrations/builds",
    name: str = "app.apk",
    fields: list[tuple[str, str]] | None = None,
    icon: bytes | None = None,
) -> Any:
    data = file.read_bytes() if isinstance(file, Path) else file
    files: list[tuple[str, tuple[str, Any, str]]] = [
        ("build", (name, io.BytesIO(data), "application/octet-stream"))
    ]
    if icon is not None:
        files.append(("packageIcon", ("icon.png", io.BytesIO(icon), "image/png")))
    return client.post(path, headers=auth(raw), data=dict(fields or []), files=files)


def work(runtime: Runtime) -> bool:
    return Worker(runtime.services).run_once("w")


def error(r: Any, status: int, code: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] is False and body["error"]["code"] == code, body
    return str(body["error"]["message"])


# --- the integrations API -------------------------------------------------------------------------


def test_every_documented_field_is_taken_and_echoed(
    client: TestClient, runtime: Runtime, app_token: str
) -> None:
    r = upload(client, app_token, fields=EXAMPLE_FIELDS)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] is True
    data = body["data"]
    assert set(data) >= DATA_FIELDS
    assert data["status"] == "pending"
    assert data["tags"] == ["staging", "sprint-42"]
    assert data["versionName"] == "v2.4.0-rc1"
    assert data["changelog"] == "Fixed crash on login screen"
    assert data["deployer"] == {
        "name": "GitHub Actions",
        "info": {
            "commitMessage": "Fix crash on login",
            "commit": "f52ace0",
            "branch": "release/2.4",
            "tag": "v2.4.0-rc1",
            "triggerTimestamp": "1558359012580",
            "buildUrl": "https://github.com/myorg/myapp/actions/runs/123",
            "ciUrl": "https://github.com/myorg/myapp/actions",
            "repositoryUrl": "https://github.com/myorg/myapp",
            "buildNumber": "173",
        },
    }
    assert data["os"] == "android" and data["originalExtension"] == "apk"
    assert data["size"] == RELEASE_APK.stat().st_size
    assert data["versionCode"] == "1"
    assert data["applicationInfo"]["slug"] == "my-app"
    assert data["application"] == data["applicationInfo"]["id"]
    android = data["info"]["android"]
    assert android["packageName"] == "org.appyard.fixture"
    assert android["versionName"] == "1.0.0" and android["versionCode"] == "1"
    assert android["minSDKVersion"] == "21" and android["targetSdkVersion"] == "29"
    assert data["info"]["icon"].startswith("http")  # the launcher icon, by URL
    icon = client.get(data["info"]["icon"])
    assert icon.status_code == 200 and icon.content.startswith(b"\x89PNG")
    assert data["createdAt"].endswith("Z") and "T" in data["createdAt"]
    assert data["processTime"] == 0 and data["queuedTime"] == 0
    with runtime.services.uow() as uow:
        build = uow.builds.get(data["id"])
    assert build is not None and build.source == "distribution"
    assert build.meta["notify"] == {
        "collaborators": True,
        "employees": False,
        "message": "New build ready for QA",
        "language": "en",
        "groups": [["group1", "group2"], ["group3"]],
        "onError": False,
    }


def test_the_build_turns_success_and_reads_back(
    client: TestClient, runtime: Runtime, app_token: str, clock: FakeClock
) -> None:
    data = upload(client, app_token).json()["data"]
    clock.advance(seconds=3)
    assert work(runtime)
    r = client.get(f"/v1/integrations/builds/{data['id']}", headers=auth(app_token))
    assert r.status_code == 200 and r.json()["status"] is True
    done = r.json()["data"]
    assert done["status"] == "success"
    assert done["queuedTime"] == 3000  # FakeClock: created at t, picked up at t + 3 s
    assert done["processTime"] >= 0
    assert set(done) >= DATA_FIELDS


def test_a_file_that_is_not_an_apk_is_refused_at_once(client: TestClient, app_token: str) -> None:
    message = error(upload(client, app_token, b"not a zip"), 422, 4005)
    assert "zip" in message.lower()


def test_the_first_build_binds_the_app_and_another_package_is_refused(
    client: TestClient, app_token: str
) -> None:
    assert upload(client, app_token).status_code == 200
    message = error(upload(client, app_token, OTHER_APK), 422, 4006)
    assert "org.appyard.fixture.jni" in message and "my-app" in message


def test_an_ios_build_answers_its_plist_and_profile(
    client: TestClient, app_token: str, tmp_path: Path
) -> None:
    ipa = make_ipa(tmp_path / "app.ipa", profile=make_profile())
    r = upload(client, app_token, ipa, name="app.ipa")
    assert r.status_code == 200, r.text
    ios = r.json()["data"]["info"]["ios"]
    assert ios["plist"]["CFBundleIdentifier"] == "com.example.app"
    assert ios["plist"]["CFBundleShortVersionString"] == "2.3.1"
    assert ios["plist"]["CFBundleVersion"] == "42"
    assert ios["plist"]["UIDeviceFamily"] == ["1", "2"]
    assert ios["mobileprovision"]["signingType"] in (
        "ad-hoc",
        "enterprise",
        "development",
        "app-store",
    )
    assert ios["mobileprovision"]["TeamIdentifier"]
    assert r.json()["data"]["os"] == "ios"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ([("notifyCollaborators", "maybe")], "notifyCollaborators"),
        ([("notifyLanguage", "xx")], "notifyLanguage"),
        ([("tags", ",".join(f"t{n}" for n in range(60)))], "tags"),
        ([("filter[0][0]", "not a group!")], "filter"),
    ],
)
def test_bad_fields_are_400_naming_the_field(
    client: TestClient, app_token: str, fields: list[tuple[str, str]], problem: str
) -> None:
    assert problem in error(upload(client, app_token, fields=fields), 400, 4000)


def test_a_form_without_a_build_file_or_a_truncated_one_is_refused(
    client: TestClient, app_token: str
) -> None:
    r = client.post(
        "/v1/integrations/builds", headers=auth(app_token), data={"versionName": "1"}, files={}
    )
    assert r.status_code in (400,) and r.json()["error"]["code"] in (4001, 4004)
    boundary = "xyz"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="build"; filename="a.apk"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + RELEASE_APK.read_bytes()[:5000]  # no closing boundary: cut off
    r = client.post(
        "/v1/integrations/builds",
        headers={**auth(app_token), "Content-Type": f"multipart/form-data; boundary={boundary}"},
        content=body,
    )
    assert "closing boundary" in error(r, 400, 4004)


# --- custom-platform packages -----------------------------------------------------------------


def test_a_custom_platform_package_is_stored_and_distributed(
    client: TestClient, runtime: Runtime, service: str, tenant: TenantKey
) -> None:
    icon = make_png(2, 2, b"\xff\x00\x00\xff" * 4)
    fields = [
        ("buildPlatform", "switch"),
        ("packageName", "com.example.game"),
        ("packageVersion", "1.4.0"),
        ("versionName", "1.4.0 beta"),
    ]
    path = f"/v1/organizations/{tenant.name}/apps/game/builds"
    with runtime.services.transaction() as uow:
        apps.create(uow, runtime.services.clock, tenant_id=tenant.tenant_id, slug="game")
    package = b"PK\x03\x04 console bits"
    r = upload(client, service, package, path=path, name="game.nsp", fields=fields, icon=icon)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["os"] == "switch" and data["originalExtension"] == "nsp"
    assert data["info"]["pkg"]["CFBundleIdentifier"] == "com.example.game"
    assert data["info"]["pkg"]["CFBundleShortVersionString"] == "1.4.0"
    assert client.get(data["info"]["icon"]).content == icon
    assert work(runtime)
    done = client.get(f"{path}/{data['id']}", headers=auth(service)).json()["data"]
    assert done["status"] == "success"
    with runtime.services.uow() as uow:  # hashed by its job, as every upload is
        kept = uow.builds.get(data["id"])
    assert kept is not None and kept.sha256 == hashlib.sha256(package).hexdigest()
    assert kept.output_sha256 == kept.sha256


@pytest.mark.parametrize("missing", ["packageName", "packageVersion", "packageIcon"])
def test_a_package_without_its_identity_is_refused(
    client: TestClient, app_token: str, missing: str
) -> None:
    fields = [("buildPlatform", "ps5"), ("packageName", "com.x.y"), ("packageVersion", "1")]
    fields = [f for f in fields if f[0] != missing]
    icon = None if missing == "packageIcon" else make_png(1, 1, b"\0\0\0\0")
    r = upload(client, app_token, b"bytes", name="game.pkg", fields=fields, icon=icon)
    assert missing in error(r, 400, 4003)


def test_an_unknown_file_type_without_a_platform_is_refused(
    client: TestClient, app_token: str
) -> None:
    assert "custom-platform" in error(upload(client, app_token, b"MZ", name="setup.exe"), 400, 4002)


# --- credentials and tenants ----------------------------------------------------------------------


def test_the_workspace_api_takes_the_tenant_and_app_by_id_or_name(
    client: TestClient, runtime: Runtime, service: str, tenant: TenantKey
) -> None:
    with runtime.services.transaction() as uow:
        made = apps.create(uow, runtime.services.clock, tenant_id=tenant.tenant_id, slug="shop")
    for org, app in ((tenant.tenant_id, made.id), (tenant.name, "shop")):
        r = upload(client, service, path=f"/v1/organizations/{org}/apps/{app}/builds")
        assert r.status_code == 200, r.text
        assert r.json()["data"]["applicationInfo"]["slug"] == "shop"


def test_tokens_act_only_where_they_may(
    client: TestClient, runtime: Runtime, app_token: str, service: str, tenant: TenantKey
) -> None:
    other = make_tenant(runtime, "rival")
    with runtime.services.transaction() as uow:
        apps.create(uow, runtime.services.clock, tenant_id=other.tenant_id, slug="theirs")
    # a service account elsewhere: not found (ids reveal nothing)
    error(upload(client, service, path=f"/v1/organizations/{other.tenant_id}/apps/theirs/builds"),
          404, 3001)  # fmt: skip
    error(upload(client, service, path=f"/v1/organizations/{tenant.name}/apps/nope/builds"),
          404, 3001)  # fmt: skip
    # an app token on the workspace API, a service account on the integrations API
    error(upload(client, app_token, path=f"/v1/organizations/{tenant.name}/apps/my-app/builds"),
          403, 3003)  # fmt: skip
    error(upload(client, service), 403, 3003)
    # another tenant's build by id
    mine = upload(client, app_token).json()["data"]["id"]
    theirs = token(runtime, other.tenant_id, TokenKind.APP, "theirs")
    error(client.get(f"/v1/integrations/builds/{mine}", headers=auth(theirs)), 404, 3001)
    # no token, a wrong one, the wrong kind (an automation key)
    error(upload(client, "nope:nope"), 401, 3000)
    error(client.post("/v1/integrations/builds"), 401, 3000)
    error(upload(client, tenant.key), 401, 3000)


def test_an_expired_token_is_3002(
    client: TestClient, runtime: Runtime, tenant: TenantKey, clock: FakeClock
) -> None:
    from datetime import timedelta

    svc = runtime.services
    with svc.transaction() as uow:
        app = apps.named(uow, clock, tenant_id=tenant.tenant_id, slug="soon", create=True)
        raw = identity.create_token(
            uow,
            clock,
            tenant_id=tenant.tenant_id,
            kind=TokenKind.APP,
            app_id=app.id,
            expires_at=clock.now() + timedelta(days=1),
        ).raw
    assert upload(client, raw).status_code == 200
    clock.advance(days=2)
    assert "expired" in error(upload(client, raw), 401, 3002)


def test_plan_limits_are_429(client: TestClient, runtime: Runtime) -> None:
    free = make_tenant(runtime, "freebie", Plan.FREE)
    raw = token(runtime, free.tenant_id, TokenKind.APP, "a")
    assert upload(client, raw).status_code == 200  # free: one build at a time
    error(upload(client, raw), 429, 4029)


def test_too_large_is_413(runtime: Runtime, tenant: TenantKey) -> None:
    import dataclasses

    svc = runtime.services
    small = dataclasses.replace(svc, policy=dataclasses.replace(svc.policy, max_size=1000))
    raw = token(runtime, tenant.tenant_id, TokenKind.APP, "big")
    with TestClient(create_app(runtime=dataclasses.replace(runtime, services=small))) as client:
        error(upload(client, raw), 413, 4013)


def test_the_dialect_serves_its_openapi_with_the_form(client: TestClient) -> None:
    doc = client.get("/v1/openapi.json").json()
    form = doc["paths"]["/integrations/builds"]["post"]["requestBody"]["content"]
    schema = form["multipart/form-data"]["schema"]
    properties = schema["properties"]
    assert properties["build"]["format"] == "binary"
    assert properties["packageIcon"]["format"] == "binary"  # a file part, not a text field
    for name in ("versionName", "tags", "notifyEmployees", "deployer.info.commit"):
        assert name in properties
    # filter[i][j] are fields named by a pattern, not one field of that literal name
    assert "filter[i][j]" not in properties
    assert any("filter" in pattern for pattern in schema["patternProperties"])


def test_a_zip_bomb_apk_is_a_clear_refusal(client: TestClient, app_token: str) -> None:
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("AndroidManifest.xml", b"\0" * (50 * 1024 * 1024))
    r = upload(client, app_token, payload.getvalue())
    assert r.status_code == 422 and r.json()["status"] is False
