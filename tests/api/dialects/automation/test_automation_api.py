"""The automation API (../shared/specs/protection-automation-api.txt), request by request,
against create_app() with a real database and local blob store. Jobs are run by a Worker
in the test (run_once), so every assertion is deterministic."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from appyard.app import create_app
from appyard.core import identity
from appyard.core.models import Plan, TokenKind
from appyard.runtime import Runtime
from appyard.worker import Worker
from tests.conftest import FIXTURES, FakeClock, TenantKey, add_signing_key, make_tenant, padded_apk

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"
MIB = 1024 * 1024


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    app = create_app(runtime=runtime, start_worker=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def request_upload(client: TestClient, key: str, **fields: Any) -> Any:
    body = {"file_name": "app-release.apk", "platform": "android", "version": "prod"}
    body.update(fields)
    return client.post("/automate/upload", json=body, headers=auth(key))


def work(runtime: Runtime) -> bool:
    return Worker(runtime.services).run_once("test-worker")


def status(client: TestClient, key: str, job_id: str) -> Any:
    return client.get(f"/automate/status/{job_id}", headers=auth(key))


# --- the single-part workflow --------------------------------------------------------------------


def test_single_part_upload_is_processed_and_downloadable(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    size = RELEASE_APK.stat().st_size
    r = request_upload(client, tenant.key, file_size=size)
    assert r.status_code == 200, r.text
    ticket = r.json()
    assert ticket["upload_url"] == ticket["url"]
    assert isinstance(ticket["job_id"], str) and ticket["job_id"].isdigit()
    assert ticket["expires_in"] == 3600
    assert ticket["signing_key_id"] is None
    assert ticket["file_path"] == (
        f"{tenant.tenant_id}/uploads/android/production/{ticket['job_id']}/app-release.apk"
    )
    assert "multipart" not in ticket

    waiting = status(client, tenant.key, ticket["job_id"]).json()
    assert waiting["status"] == "processing"
    assert waiting["progress"] == "Waiting for upload"

    put = client.put(
        ticket["upload_url"],
        content=RELEASE_APK.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert put.status_code == 200
    assert put.headers["ETag"]

    queued = status(client, tenant.key, ticket["job_id"]).json()
    assert queued["status"] == "processing" and queued["progress"] == "Queued"
    assert queued["version"] == "production" and queued["platform"] == "android"

    assert (
        client.get(f"/automate/download/{ticket['job_id']}", headers=auth(tenant.key)).status_code
        == 400
    )  # not completed yet
    assert work(runtime)
    done = status(client, tenant.key, ticket["job_id"]).json()
    assert done["status"] == "completed", done.get("error_message")
    assert "progress" not in done and "error_message" not in done
    # the tenant has no signing key: the status says the output is unsigned
    assert done["signed"] is False and done["message"].startswith("Completed unsigned")

    dl = client.get(f"/automate/download/{ticket['job_id']}", headers=auth(tenant.key))
    assert dl.status_code == 200
    body = dl.json()
    assert body["file_name"] == "app-release.apk" and body["expires_in"] == 3600
    out = client.get(body["download_url"])
    assert out.status_code == 200
    assert 'filename="app-release.apk"' in out.headers["content-disposition"]
    with zipfile.ZipFile(__import__("io").BytesIO(out.content)) as zf:
        assert "AndroidManifest.xml" in zf.namelist()


def test_build_records_identity_of_the_artifact(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    ticket = request_upload(client, tenant.key).json()
    client.put(ticket["upload_url"], content=RELEASE_APK.read_bytes())
    work(runtime)
    with runtime.services.uow() as uow:
        build = uow.builds.get_by_number(tenant.tenant_id, int(ticket["job_id"]))
    assert build is not None
    assert build.identifier == "org.appyard.fixture"
    assert build.version_code == "1" and build.version_name == "1.0.0"
    assert build.sha256 == hashlib.sha256(RELEASE_APK.read_bytes()).hexdigest()


def test_a_file_that_is_not_a_zip_fails_the_job_with_a_reason(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    ticket = request_upload(client, tenant.key).json()
    client.put(ticket["upload_url"], content=b"this is not an apk at all")
    work(runtime)
    body = status(client, tenant.key, ticket["job_id"]).json()
    assert body["status"] == "failed"
    assert "zip" in body["error_message"].lower()
    assert (
        client.get(f"/automate/download/{ticket['job_id']}", headers=auth(tenant.key)).status_code
        == 400
    )


def test_a_zip_without_manifest_fails_the_job(
    client: TestClient, runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.apk"
    with zipfile.ZipFile(bogus, "w") as zf:
        zf.writestr("classes.dex", b"dex\n035\0")
    ticket = request_upload(client, tenant.key).json()
    client.put(ticket["upload_url"], content=bogus.read_bytes())
    work(runtime)
    body = status(client, tenant.key, ticket["job_id"]).json()
    assert body["status"] == "failed"
    assert "AndroidManifest.xml" in body["error_message"]


# --- field rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "normal"),
    [
        ("dev", "development"),
        ("DEVELOPMENT", "development"),
        ("Stg", "staging"),
        ("staging", "staging"),
        ("PROD", "production"),
        ("production", "production"),
    ],
)
def test_version_aliases_are_case_insensitive_and_normalised(
    client: TestClient, tenant: TenantKey, alias: str, normal: str
) -> None:
    ticket = request_upload(client, tenant.key, version=alias).json()
    assert f"/{normal}/" in ticket["file_path"]
    assert status(client, tenant.key, ticket["job_id"]).json()["version"] == normal


def test_unknown_version_is_400(client: TestClient, tenant: TenantKey) -> None:
    r = request_upload(client, tenant.key, version="qa")
    assert r.status_code == 400 and "version" in r.json()["error"]


def test_file_name_is_reduced_to_its_base_name(client: TestClient, tenant: TenantKey) -> None:
    ticket = request_upload(client, tenant.key, file_name="../../build/outputs/app-release.apk")
    assert ticket.status_code == 200
    assert ticket.json()["file_path"].endswith("/app-release.apk")
    assert ".." not in ticket.json()["file_path"]


@pytest.mark.parametrize(
    "name", ["app.APK", "app.zip", "app", "app.apk.exe", ".apk", "a\x00.apk", "dir/"]
)
def test_bad_file_names_are_400(client: TestClient, tenant: TenantKey, name: str) -> None:
    r = request_upload(client, tenant.key, file_name=name)
    assert r.status_code == 400
    assert "file_name" in r.json()["error"]


@pytest.mark.parametrize(
    ("name", "platform"), [("app.ipa", "android"), ("app.apk", "ios"), ("app.aab", "ios")]
)
def test_platform_must_fit_the_extension(
    client: TestClient, tenant: TenantKey, name: str, platform: str
) -> None:
    r = request_upload(client, tenant.key, file_name=name, platform=platform)
    assert r.status_code == 400 and "not" in r.json()["error"]


def test_unknown_platform_is_400(client: TestClient, tenant: TenantKey) -> None:
    assert request_upload(client, tenant.key, platform="windows").status_code == 400


def test_file_size_over_2_gb_is_refused(client: TestClient, tenant: TenantKey) -> None:
    r = request_upload(client, tenant.key, file_size=2 * 1024**3 + 1)
    assert r.status_code == 400 and "limit" in r.json()["error"]
    assert request_upload(client, tenant.key, file_size=-5).status_code == 400


def test_signing_key_choice(client: TestClient, tenant: TenantKey) -> None:
    assert request_upload(client, tenant.key).json()["signing_key_id"] is None
    assert (
        request_upload(client, tenant.key, signing_key_id="none").json()["signing_key_id"] is None
    )
    r = request_upload(client, tenant.key, signing_key_id="sk_does_not_exist")
    assert r.status_code == 400 and "signing key" in r.json()["error"].lower()


def test_missing_fields_and_bad_json_are_400(client: TestClient, tenant: TenantKey) -> None:
    r = client.post("/automate/upload", json={"platform": "android"}, headers=auth(tenant.key))
    assert r.status_code == 400 and "file_name is required" in r.json()["error"]
    r = client.post(
        "/automate/upload",
        content=b"{not json",
        headers={**auth(tenant.key), "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = client.post(
        "/automate/upload",
        content=b"[1, 2]",
        headers={**auth(tenant.key), "Content-Type": "application/json"},
    )
    assert r.status_code == 400


def test_no_enabled_control_is_400(client: TestClient, runtime: Runtime, tenant: TenantKey) -> None:
    from appyard.core import controls
    from appyard.core.models import ConfigVersion, Platform

    svc = runtime.services
    with svc.uow() as uow:
        on = controls.enabled(
            uow,
            tenant_id=tenant.tenant_id,
            platform=Platform.ANDROID,
            version=ConfigVersion.STAGING,
        )
        controls.set_controls(
            uow,
            tenant_id=tenant.tenant_id,
            platform=Platform.ANDROID,
            version=ConfigVersion.STAGING,
            enable=[],
            disable=on,
        )
        uow.commit()
    r = request_upload(client, tenant.key, version="stg")
    assert r.status_code == 400 and "control" in r.json()["error"]
    assert request_upload(client, tenant.key, version="prod").status_code == 200


# --- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer nocolon", "Basic abc:def", "Bearer ak_0000:wrong"]
)
def test_bad_credentials_are_401(client: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    r = client.post("/automate/upload", json={}, headers=headers)
    assert r.status_code == 401 and r.json()["error"]


def test_wrong_secret_is_401(client: TestClient, tenant: TenantKey) -> None:
    key_id = tenant.key.split(":")[0]
    r = request_upload(client, f"{key_id}:not-the-secret")
    assert r.status_code == 401


def test_disabled_key_is_rejected_at_once(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    assert request_upload(client, tenant.key).status_code == 200
    with runtime.services.uow() as uow:
        identity.disable_token(uow, token_id=tenant.key.split(":")[0])
        uow.commit()
    r = request_upload(client, tenant.key)
    assert r.status_code == 401 and "disabled" in r.json()["error"]


def test_free_plan_cannot_use_automation(client: TestClient, runtime: Runtime) -> None:
    team = make_tenant(runtime, "was-team", Plan.TEAM)
    from appyard.core import tenants

    with runtime.services.uow() as uow:
        tenants.set_plan(uow, tenant_id=team.tenant_id, plan=Plan.FREE)
        uow.commit()
    r = request_upload(client, team.key)
    assert r.status_code == 401 and "plan" in r.json()["error"]


def test_at_most_ten_automation_keys(runtime: Runtime, tenant: TenantKey) -> None:
    from appyard import errors

    svc = runtime.services
    with svc.uow() as uow:
        for _ in range(9):  # the fixture made one already
            identity.create_token(
                uow, svc.clock, tenant_id=tenant.tenant_id, kind=TokenKind.AUTOMATION
            )
        with pytest.raises(errors.TokenLimit):
            identity.create_token(
                uow, svc.clock, tenant_id=tenant.tenant_id, kind=TokenKind.AUTOMATION
            )


def test_keys_are_stored_hashed(runtime: Runtime, tenant: TenantKey) -> None:
    key_id, secret = tenant.key.split(":")
    with runtime.services.uow() as uow:
        token = uow.tokens.get(key_id)
    assert token is not None and secret not in token.secret_hash
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()


# --- jobs across tenants, methods, unknown ids ---------------------------------------------------


def test_another_tenants_job_is_404(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    other = make_tenant(runtime, "other")
    job_id = request_upload(client, tenant.key).json()["job_id"]
    assert status(client, other.key, job_id).status_code == 404
    assert client.get(f"/automate/download/{job_id}", headers=auth(other.key)).status_code == 404


def test_unknown_and_invalid_job_ids(client: TestClient, tenant: TenantKey) -> None:
    assert status(client, tenant.key, "1234567890123").status_code == 404
    assert status(client, tenant.key, "not-a-number").status_code == 400


def test_wrong_method_is_405_json(client: TestClient, tenant: TenantKey) -> None:
    r = client.get("/automate/upload", headers=auth(tenant.key))
    assert r.status_code == 405 and r.json() == {"error": "Method not allowed: use POST."}
    assert r.headers["allow"] == "POST"
    r = client.delete("/automate/status/123", headers=auth(tenant.key))
    assert r.status_code == 405


def test_unknown_endpoint_is_404_json(client: TestClient, tenant: TenantKey) -> None:
    r = client.get("/automate/jobs", headers=auth(tenant.key))
    assert r.status_code == 404 and "error" in r.json()


# --- limits --------------------------------------------------------------------------------------


def test_concurrent_build_limit_is_429(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    first = request_upload(client, tenant.key).json()
    request_upload(client, tenant.key)
    r = request_upload(client, tenant.key)
    assert r.status_code == 429 and "Concurrent" in r.json()["error"]
    client.put(first["upload_url"], content=RELEASE_APK.read_bytes())
    work(runtime)  # one build finishes, capacity returns
    assert request_upload(client, tenant.key).status_code == 200


def test_weekly_limit_per_platform_and_version_is_429(
    client: TestClient, runtime: Runtime, clock: FakeClock
) -> None:
    from appyard.core import tenants
    from appyard.core.models import LimitOverrides

    t = make_tenant(runtime, "weekly")
    with runtime.services.uow() as uow:
        tenants.set_limits(
            uow,
            tenant_id=t.tenant_id,
            overrides=LimitOverrides(concurrent_builds=0, weekly_builds=3),
        )
        uow.commit()
    for _ in range(3):
        assert request_upload(client, t.key).status_code == 200
    r = request_upload(client, t.key)
    assert r.status_code == 429 and "Weekly" in r.json()["error"]
    assert request_upload(client, t.key, version="dev").status_code == 200  # other version
    clock.advance(days=7, seconds=1)
    assert request_upload(client, t.key).status_code == 200


def test_enterprise_has_five_concurrent_builds(client: TestClient, runtime: Runtime) -> None:
    t = make_tenant(runtime, "big", Plan.ENTERPRISE)
    for _ in range(5):
        assert request_upload(client, t.key).status_code == 200
    assert request_upload(client, t.key).status_code == 429


# --- signed URLs ---------------------------------------------------------------------------------


def test_signed_upload_url_rejects_tampering_and_expiry(
    client: TestClient, tenant: TenantKey
) -> None:
    ticket = request_upload(client, tenant.key, file_size=100).json()
    url = ticket["upload_url"]
    body, _mac = url.rsplit("/", 1)[1].split(".")
    tampered = url.replace(body, body[:-2] + ("AA" if body[-2:] != "AA" else "BB"))
    assert client.put(tampered, content=b"x").status_code == 403
    assert client.put(url[:-3] + "abc", content=b"x").status_code == 403
    assert client.put(url, content=b"x" * 101).status_code == 413  # over the declared size


def test_signed_url_expires(runtime: Runtime, tenant: TenantKey) -> None:
    store = runtime.local_store
    assert store is not None
    url = store.presign_put("t/k.apk", max_size=10, expires_in=3600).url
    token = url.rsplit("/", 1)[1]
    import time

    from appyard import errors

    assert store.verify(token).key == "t/k.apk"
    with pytest.raises(errors.SignedUrlInvalid, match="expired"):
        store.verify(token, now=time.time() + 3601)


def test_upload_url_accepts_one_upload_only(client: TestClient, tenant: TenantKey) -> None:
    ticket = request_upload(client, tenant.key).json()
    assert client.put(ticket["upload_url"], content=RELEASE_APK.read_bytes()).status_code == 200
    assert client.put(ticket["upload_url"], content=b"swap").status_code == 409


def test_upload_that_never_arrives_expires(
    client: TestClient, runtime: Runtime, tenant: TenantKey, clock: FakeClock
) -> None:
    ticket = request_upload(client, tenant.key).json()
    clock.advance(seconds=3601)
    Worker(runtime.services).sweep()
    body = status(client, tenant.key, ticket["job_id"]).json()
    assert body["status"] == "failed" and "expired" in body["error_message"]


# --- multipart -----------------------------------------------------------------------------------


@pytest.fixture
def small_parts(runtime: Runtime) -> Runtime:
    """Multipart from 1 MiB with 256 KiB chunks, so the rules are tested on small files."""
    object.__setattr__(
        runtime.services,
        "policy",
        __import__("dataclasses").replace(
            runtime.services.policy, multipart_threshold=MIB, chunk_size=256 * 1024
        ),
    )
    return runtime


def test_multipart_upload_complete_and_process(
    client: TestClient, small_parts: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    add_signing_key(small_parts, tenant.tenant_id)  # the unsigned input is signed on output
    data = padded_apk(tmp_path / "big.apk", 1_200_000).read_bytes()
    r = request_upload(client, tenant.key, file_size=len(data))
    ticket = r.json()
    assert ticket["multipart"] is True and ticket["chunk_size"] == 256 * 1024
    assert ticket["total_parts"] == len(ticket["part_urls"]) == -(-len(data) // (256 * 1024))
    assert "upload_url" not in ticket
    chunk = ticket["chunk_size"]
    parts = []
    for n, url in enumerate(ticket["part_urls"], start=1):
        put = client.put(url, content=data[(n - 1) * chunk : n * chunk])
        assert put.status_code == 200
        parts.append({"ETag": put.headers["ETag"], "PartNumber": n})
    # the last part missing
    r = client.post(
        "/automate/upload/complete",
        headers=auth(tenant.key),
        json={
            "file_path": ticket["file_path"],
            "upload_id": ticket["upload_id"],
            "parts": parts[:-1],
        },
    )
    assert r.status_code == 400
    # a wrong ETag
    bad = [dict(p) for p in parts]
    bad[0]["ETag"] = '"0000"'
    r = client.post(
        "/automate/upload/complete",
        headers=auth(tenant.key),
        json={"file_path": ticket["file_path"], "upload_id": ticket["upload_id"], "parts": bad},
    )
    assert r.status_code == 400 and "ETag" in r.json()["error"]
    # out of order
    r = client.post(
        "/automate/upload/complete",
        headers=auth(tenant.key),
        json={
            "file_path": ticket["file_path"],
            "upload_id": ticket["upload_id"],
            "parts": list(reversed(parts)),
        },
    )
    assert r.status_code == 400
    r = client.post(
        "/automate/upload/complete",
        headers=auth(tenant.key),
        json={"file_path": ticket["file_path"], "upload_id": ticket["upload_id"], "parts": parts},
    )
    assert r.status_code == 200, r.text
    assert r.json()["job_id"] == ticket["job_id"]
    assert work(small_parts)
    done = status(client, tenant.key, ticket["job_id"]).json()
    assert done["status"] == "completed", done.get("error_message")
    with small_parts.services.uow() as uow:
        build = uow.builds.get_by_number(tenant.tenant_id, int(ticket["job_id"]))
    assert build is not None and build.sha256 == hashlib.sha256(data).hexdigest()


def test_part_larger_than_chunk_is_refused(
    client: TestClient, small_parts: Runtime, tenant: TenantKey
) -> None:
    ticket = request_upload(client, tenant.key, file_size=2 * MIB).json()
    r = client.put(ticket["part_urls"][0], content=b"x" * (256 * 1024 + 1))
    assert r.status_code == 413


def test_complete_of_another_tenants_upload_is_403(
    client: TestClient, small_parts: Runtime, tenant: TenantKey
) -> None:
    other = make_tenant(small_parts, "other")
    ticket = request_upload(client, tenant.key, file_size=2 * MIB).json()
    for path in ("/automate/upload/complete", "/automate/upload/abort"):
        r = client.post(
            path,
            headers=auth(other.key),
            json={"file_path": ticket["file_path"], "upload_id": ticket["upload_id"], "parts": []},
        )
        assert r.status_code == 403


def test_abort_discards_parts(client: TestClient, small_parts: Runtime, tenant: TenantKey) -> None:
    ticket = request_upload(client, tenant.key, file_size=2 * MIB).json()
    client.put(ticket["part_urls"][0], content=b"x" * 256 * 1024)
    store = small_parts.local_store
    assert store is not None
    assert store.list_parts(ticket["file_path"], ticket["upload_id"])
    r = client.post(
        "/automate/upload/abort",
        headers=auth(tenant.key),
        json={"file_path": ticket["file_path"], "upload_id": ticket["upload_id"]},
    )
    assert r.status_code == 200
    assert store.list_parts(ticket["file_path"], ticket["upload_id"]) == []
    assert client.put(ticket["part_urls"][1], content=b"x").status_code == 410
    body = status(client, tenant.key, ticket["job_id"]).json()
    assert body["status"] == "failed" and "aborted" in body["error_message"]
    r = client.post(
        "/automate/upload/complete",
        headers=auth(tenant.key),
        json={"file_path": ticket["file_path"], "upload_id": ticket["upload_id"], "parts": []},
    )
    assert r.status_code == 400


def test_multipart_that_never_completes_expires_and_parts_are_removed(
    client: TestClient, small_parts: Runtime, tenant: TenantKey, clock: FakeClock
) -> None:
    ticket = request_upload(client, tenant.key, file_size=2 * MIB).json()
    client.put(ticket["part_urls"][0], content=b"x" * 256 * 1024)
    clock.advance(seconds=3601)
    Worker(small_parts.services).sweep()
    store = small_parts.local_store
    assert store is not None
    assert store.list_parts(ticket["file_path"], ticket["upload_id"]) == []
    assert status(client, tenant.key, ticket["job_id"]).json()["status"] == "failed"


def test_a_build_signed_with_a_managed_key_says_so(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    add_signing_key(runtime, tenant.tenant_id)
    ticket = request_upload(client, tenant.key, file_size=RELEASE_APK.stat().st_size).json()
    assert client.put(ticket["url"], content=RELEASE_APK.read_bytes()).status_code == 200
    assert work(runtime)
    done = status(client, tenant.key, ticket["job_id"]).json()
    assert done["status"] == "completed" and done["signed"] is True and "message" not in done
