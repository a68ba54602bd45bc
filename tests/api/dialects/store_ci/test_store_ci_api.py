"""The store CI dialect (../shared/specs/store-ci-upload-api.txt) and the release model behind
it, against create_app() with a real database, local blob store and the validation worker."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from appyard.app import create_app
from appyard.core import identity, tenants, users
from appyard.core.models import Plan, Role, TokenKind
from appyard.runtime import Runtime
from appyard.worker import Worker
from tests.conftest import FIXTURES

PASSWORD = "correct horse battery"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    app = create_app(runtime=runtime, start_worker=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


class Store:
    """A tenant with a CI token and a developer, plus the store's reviewer and admin."""

    def __init__(self, runtime: Runtime, client: TestClient, name: str = "acme") -> None:
        self.runtime, self.client = runtime, client
        svc = runtime.services
        with svc.uow() as uow:
            tenant = tenants.create(uow, svc.clock, name=name, plan=Plan.TEAM)
            self.tenant_id = tenant.id
            self.token = identity.create_token(
                uow, svc.clock, tenant_id=tenant.id, kind=TokenKind.CI
            ).raw
            users.create(
                uow,
                svc.clock,
                email=f"dev@{name}.test",
                name="Dev",
                role=Role.DEVELOPER,
                password=PASSWORD,
                tenant_name=name,
            )
            for role in (Role.STORE_REVIEWER, Role.STORE_ADMIN):
                if uow.users.get_by_email(f"{role.value}@store.test") is None:
                    users.create(
                        uow,
                        svc.clock,
                        email=f"{role.value}@store.test",
                        name=role,
                        role=role,
                        password=PASSWORD,
                    )
            uow.commit()
        self.dev = self.login(f"dev@{name}.test")
        self.reviewer = self.login("store-reviewer@store.test")
        self.admin = self.login("store-admin@store.test")

    def login(self, email: str) -> dict[str, str]:
        r = self.client.post("/appyard/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        self.client.cookies.clear()
        return {"Authorization": f"Bearer {r.json()['token']}"}

    @property
    def ci(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def upload(self, path: Path, token: str | None = None) -> Any:
        with open(path, "rb") as fh:
            return self.client.post(
                "/portal/api/uploads/ci",
                files={"apk": (path.name, fh, "application/vnd.android.package-archive")},
                headers={"Authorization": f"Bearer {token or self.token}"},
            )

    def validate(self) -> None:
        while Worker(self.runtime.services).run_once("test"):
            pass

    def get(self, path: str, headers: dict[str, str] | None = None) -> Any:
        return self.client.get(f"/portal/api{path}", headers=headers or self.ci)

    def act(self, version_id: str, action: str, who: dict[str, str], **body: Any) -> Any:
        return self.client.post(
            f"/appyard/v1/versions/{version_id}/{action}", json=body, headers=who
        )


@pytest.fixture
def store(runtime: Runtime, client: TestClient) -> Store:
    return Store(runtime, client)


def released_version(store: Store) -> str:
    r = store.upload(FIXTURES / "fixture-release-v1v2v3.apk")
    vid = r.json()["version"]["id"]
    store.validate()
    assert store.act(vid, "submit", store.dev).status_code == 200
    assert store.act(vid, "approve", store.reviewer).status_code == 200
    return vid


# --- the upload ----------------------------------------------------------------------------------


def test_release_signed_apk_creates_a_draft_with_a_running_validation(store: Store) -> None:
    r = store.upload(FIXTURES / "fixture-release-v1v2v3.apk")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["version"]["status"] == "draft"
    assert body["version"]["version_code"] == 1
    assert body["version"]["version_name"] == "1.0.0"
    assert body["version"]["app_id"] and body["version"]["id"]
    assert body["validation_run"]["status"] == "running"
    vid = body["version"]["id"]
    runs = store.get(f"/versions/{vid}/validation").json()["runs"]
    assert [run["status"] for run in runs] == ["running"]
    store.validate()
    runs = store.get(f"/versions/{vid}/validation").json()["runs"]
    assert runs[0]["status"] == "passed"
    assert all(f["severity"] != "blocking" for f in runs[0]["findings"])
    for f in runs[0]["findings"]:
        assert set(f) == {"code", "severity", "message"}
    version = store.get(f"/versions/{vid}").json()
    assert version == {
        "id": vid,
        "version_code": 1,
        "version_name": "1.0.0",
        "status": "draft",
        "open_issue_count": 0,
    }


def test_same_version_code_again_is_409(store: Store) -> None:
    assert store.upload(FIXTURES / "fixture-release-v1v2v3.apk").status_code == 201
    r = store.upload(FIXTURES / "fixture-debuggable.apk")  # versionCode 1 as well
    assert r.status_code == 409
    assert "versionCode 1" in r.json()["error"]


def test_unsigned_apk_is_422_and_says_so(store: Store) -> None:
    r = store.upload(FIXTURES / "fixture-unsigned.apk")
    assert r.status_code == 422
    assert "not signed" in r.json()["error"]
    assert r.json()["code"] == "apk.unsigned"


def test_malformed_apk_is_422(store: Store, tmp_path: Path) -> None:
    garbage = tmp_path / "app.apk"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    r = store.upload(garbage)
    assert r.status_code == 422 and "zip" in r.json()["error"]
    no_manifest = tmp_path / "nomanifest.apk"
    with zipfile.ZipFile(no_manifest, "w") as zf:
        zf.writestr("classes.dex", b"dex")
    r = store.upload(no_manifest)
    assert r.status_code == 422 and "AndroidManifest.xml" in r.json()["error"]


def test_missing_apk_part_is_422(store: Store) -> None:
    r = store.client.post(
        "/portal/api/uploads/ci", files={"other": ("a.txt", b"x")}, headers=store.ci
    )
    assert r.status_code == 422 and "apk" in r.json()["error"]


def test_two_apk_parts_are_refused_and_leave_nothing_behind(store: Store) -> None:
    apk = (FIXTURES / "fixture-release-v1v2v3.apk").read_bytes()
    r = store.client.post(
        "/portal/api/uploads/ci",
        files=[("apk", ("a.apk", apk)), ("apk", ("b.apk", apk))],
        headers=store.ci,
    )
    assert r.status_code == 400 and "twice" in r.json()["error"]
    assert list(store.runtime.services.spool_dir.glob("form-*")) == []
    assert store.upload(FIXTURES / "fixture-release-v1v2v3.apk").status_code == 201  # no draft


def test_other_key_upgrade_gets_a_blocking_signer_changed_finding(store: Store) -> None:
    first = store.upload(FIXTURES / "fixture-release-v1v2v3.apk").json()["version"]["id"]
    store.validate()
    r = store.upload(FIXTURES / "fixture-otherkey-vc2.apk")
    assert r.status_code == 201
    vid = r.json()["version"]["id"]
    store.validate()
    run = store.get(f"/versions/{vid}/validation").json()["runs"][0]
    assert run["status"] == "failed"
    codes = {f["code"]: f["severity"] for f in run["findings"]}
    assert codes.get("signer_changed") == "blocking"
    # a version with a blocking finding cannot leave draft
    r = store.act(vid, "submit", store.dev)
    assert r.status_code == 409
    assert store.get(f"/versions/{vid}").json()["status"] == "draft"
    assert store.get(f"/versions/{first}").json()["status"] == "draft"


def test_bad_tokens_are_401(store: Store, runtime: Runtime) -> None:
    apk = FIXTURES / "fixture-release-v1v2v3.apk"
    r = store.client.post("/portal/api/uploads/ci", files={"apk": ("a.apk", apk.read_bytes())})
    assert r.status_code == 401
    assert store.upload(apk, token="ci_00:nope").status_code == 401
    assert store.upload(apk, token="garbage").status_code == 401


# --- the lifecycle -------------------------------------------------------------------------------


def test_whole_lifecycle_to_live_with_targets_and_an_open_issue(store: Store) -> None:
    vid = released_version(store)
    r = store.act(
        vid, "release", store.admin, countries=["DE", "at"], vehicle_contexts=["infotainment"]
    )
    assert r.status_code == 200, r.text
    release = store.get(f"/versions/{vid}/release").json()
    assert release == {
        "live": True,
        "targets": {"countries": ["DE", "AT"], "vehicle_contexts": ["infotainment"]},
    }
    r = store.client.post(
        f"/appyard/v1/versions/{vid}/issues",
        headers=store.admin,
        json={"title": "Crash on start in AT", "severity": "high"},
    )
    assert r.status_code == 201
    issue_id = r.json()["id"]
    version = store.get(f"/versions/{vid}").json()
    assert version["status"] == "live" and version["open_issue_count"] == 1
    native = store.client.get(f"/appyard/v1/versions/{vid}", headers=store.dev).json()
    assert native["live_with_open_issues"] is True
    assert (
        store.client.post(
            f"/appyard/v1/issues/{issue_id}/resolve", headers=store.reviewer
        ).status_code
        == 200
    )
    assert store.get(f"/versions/{vid}").json()["open_issue_count"] == 0
    history = store.client.get(f"/appyard/v1/versions/{vid}/history", headers=store.dev).json()
    assert [h["action"] for h in history] == [
        "uploaded",
        "submit",
        "approve",
        "release",
        "issue_filed",
        "issue_resolved",
    ]
    assert history[2]["actor"].startswith("user:") and history[0]["actor"].startswith("token:")


def test_staged_rollout_raise_halt_resume(store: Store) -> None:
    vid = released_version(store)
    r = store.act(vid, "release", store.admin, countries=["DE"], rollout_percentage=10)
    assert r.json()["rollout"] == {"percentage": 10, "halted": False}
    assert store.act(vid, "rollout", store.admin, rollout_percentage=50).json()["rollout"] == {
        "percentage": 50,
        "halted": False,
    }
    assert store.act(vid, "rollout", store.admin, rollout_percentage=40).status_code == 400
    assert store.act(vid, "halt", store.admin).json()["rollout"]["halted"] is True
    assert store.act(vid, "halt", store.admin).status_code == 409
    assert store.act(vid, "resume", store.admin).json()["rollout"]["halted"] is False
    assert store.act(vid, "withdraw", store.admin, reason="bad build").json()["status"] == (
        "withdrawn"
    )
    assert store.get(f"/versions/{vid}/release").json()["live"] is False


def test_newer_live_version_supersedes_the_older_in_the_same_targets(store: Store) -> None:
    v1 = released_version(store)
    store.act(v1, "release", store.admin, countries=["DE", "AT"])
    r = store.upload(FIXTURES / "fixture-release-vc2.apk")
    v2 = r.json()["version"]["id"]
    store.validate()
    store.act(v2, "submit", store.dev)
    store.act(v2, "approve", store.reviewer)
    store.act(v2, "release", store.admin, countries=["DE"])
    assert store.get(f"/versions/{v1}/release").json()["targets"]["countries"] == ["AT"]
    store.act(v2, "release", store.admin, countries=["AT"])  # not approved any more: 409
    r = store.upload(FIXTURES / "fixture-release-vc2.apk")
    assert r.status_code == 409


def test_forbidden_transitions_change_nothing(store: Store) -> None:
    vid = store.upload(FIXTURES / "fixture-release-v1v2v3.apk").json()["version"]["id"]
    store.validate()
    assert store.act(vid, "approve", store.reviewer).status_code == 409  # from draft
    assert store.act(vid, "release", store.admin, countries=["DE"]).status_code == 409
    assert store.act(vid, "submit", store.ci).status_code == 401  # CI tokens: not on /appyard/v1
    store.act(vid, "submit", store.dev)
    assert store.act(vid, "approve", store.dev).status_code == 403  # developers don't review
    assert store.act(vid, "approve", store.ci).status_code == 401
    assert store.act(vid, "reject", store.reviewer, reason="").status_code == 400
    assert store.act(vid, "reject", store.reviewer, reason="Crashes").status_code == 200
    assert store.act(vid, "release", store.admin, countries=["DE"]).status_code == 409
    assert store.act(vid, "approve", store.reviewer).status_code == 409
    version = store.get(f"/versions/{vid}").json()
    assert version["status"] == "rejected"
    history = store.client.get(f"/appyard/v1/versions/{vid}/history", headers=store.dev).json()
    assert [h["action"] for h in history] == ["uploaded", "submit", "reject"]
    assert history[-1]["details"]["reason"] == "Crashes"


def test_release_needs_an_admin_and_real_country_codes(store: Store) -> None:
    vid = released_version(store)
    assert store.act(vid, "release", store.reviewer, countries=["DE"]).status_code == 403
    assert store.act(vid, "release", store.admin, countries=["XX"]).status_code == 400
    assert store.act(vid, "release", store.admin, countries=[]).status_code == 400
    assert store.get(f"/versions/{vid}").json()["status"] == "approved"


def test_release_is_read_only_for_ci_tokens(store: Store) -> None:
    vid = released_version(store)
    r = store.client.post(
        f"/portal/api/versions/{vid}/release", headers=store.ci, json={"countries": ["DE"]}
    )
    assert r.status_code == 405
    assert store.get(f"/versions/{vid}").json()["status"] == "approved"


def test_another_tenant_sees_nothing(store: Store, runtime: Runtime, client: TestClient) -> None:
    vid = store.upload(FIXTURES / "fixture-release-v1v2v3.apk").json()["version"]["id"]
    other = Store(runtime, client, name="other")
    for path in (f"/versions/{vid}", f"/versions/{vid}/validation", f"/versions/{vid}/release"):
        assert other.get(path).status_code == 404
        assert other.get(path, headers=other.dev).status_code == 404
    assert other.act(vid, "submit", other.dev).status_code == 404
    assert store.get(f"/versions/{vid}").json()["status"] == "draft"
    # the same package in another tenant is another app
    assert other.upload(FIXTURES / "fixture-release-v1v2v3.apk").status_code == 201


# --- CI tokens -----------------------------------------------------------------------------------


def test_ci_tokens_list_create_revoke(store: Store) -> None:
    listed = store.get("/ci-tokens").json()
    assert len(listed) == 1 and "token" not in listed[0] and listed[0]["revoked"] is False
    assert (
        store.client.post("/portal/api/ci-tokens", json={"name": "x"}, headers=store.ci).status_code
        == 403
    )
    r = store.client.post(
        "/portal/api/ci-tokens", json={"name": "release pipeline"}, headers=store.dev
    )
    assert r.status_code == 201
    raw = r.json()["token"]
    assert store.upload(FIXTURES / "fixture-release-v1v2v3.apk", token=raw).status_code == 201
    listed = store.get("/ci-tokens", headers=store.dev).json()
    assert len(listed) == 2 and all("token" not in t for t in listed)
    assert raw.split(":")[1] not in str(listed)
    assert (
        store.client.delete(
            f"/portal/api/ci-tokens/{r.json()['id']}", headers=store.dev
        ).status_code
        == 200
    )
    assert store.upload(FIXTURES / "fixture-release-vc2.apk", token=raw).status_code == 401


def test_session_cookie_works_on_interactive_endpoints(store: Store) -> None:
    r = store.client.post(
        "/appyard/v1/auth/login", json={"email": "dev@acme.test", "password": PASSWORD}
    )
    assert "appyard_session" in r.cookies
    listed = store.client.get("/portal/api/ci-tokens")  # cookie only
    assert listed.status_code == 200
    store.client.cookies.clear()
    assert store.client.get("/portal/api/ci-tokens").status_code == 401


def test_wrong_password_is_401(store: Store) -> None:
    r = store.client.post(
        "/appyard/v1/auth/login", json={"email": "dev@acme.test", "password": "wrong password"}
    )
    assert r.status_code == 401


def test_another_tenants_issue_is_not_found_like_an_unknown_one(
    runtime: Runtime, client: TestClient
) -> None:
    """Resolving another tenant's issue answered "Version <its version id> not found.", which
    told the issue exists and named its version (issue 11); now as an unknown issue."""
    theirs = Store(runtime, client, "theirs")
    vid = released_version(theirs)
    assert theirs.act(vid, "release", theirs.admin, countries=["DE"]).status_code == 200
    issue = theirs.act(vid, "issues", theirs.reviewer, title="crash").json()["id"]
    mine = Store(runtime, client, "mine")
    foreign = client.post(f"/appyard/v1/issues/{issue}/resolve", headers=mine.dev)
    unknown = client.post("/appyard/v1/issues/iss_0000000000000000/resolve", headers=mine.dev)
    assert foreign.status_code == unknown.status_code == 404
    assert vid not in foreign.text
    assert foreign.json()["error"]["message"].replace(issue, "X") == unknown.json()["error"][
        "message"
    ].replace("iss_0000000000000000", "X")
    # store staff still resolve any tenant's issue
    assert (
        client.post(f"/appyard/v1/issues/{issue}/resolve", headers=mine.reviewer).status_code == 200
    )
