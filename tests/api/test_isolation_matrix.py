"""The isolation matrix (issue 11): every route of every mounted dialect x every credential
kind x {another tenant's ids, a revoked, a disabled, an expired credential, a credential of the
wrong kind} -> the documented status, in the dialect's error shape, never a 2xx, never a 500;
another tenant's ids answer exactly as unknown ids do (existence never leaks). The other
tenant's database rows and stored objects are compared before and after the whole matrix.

Routes are enumerated from the app's mounted sub-apps, so a new route fails
``test_every_mounted_route_is_classified`` until :data:`ROUTES` says who may call it and how
another tenant's ids are filled in. The access rules verified here are written down in
docs/isolation.md.

Two tenants are made through the APIs: ``me`` (the caller) and ``them`` (the victim). Each has
a completed build (and its output object), pending multipart uploads, a store version (live,
with an issue), a managed signing key, an install link, a webhook endpoint with a delivery, a
person notified, a distribution app and build, an upload-context build, and a token of every
kind (valid, revoked, disabled, expiring) plus developer sessions (valid, logged out, of a
disabled user). Every wrong cell is collected and reported at once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, select, update

from appyard.api import kit
from appyard.api.dialects import DIALECTS
from appyard.api.native.routes import API as NATIVE_API
from appyard.app import create_app
from appyard.core import identity, tenants, users
from appyard.core.models import LimitOverrides, Plan, Role, TokenKind
from appyard.runtime import Runtime
from appyard.settings import Settings
from appyard.worker import Worker
from tests.conftest import FIXTURES, FakeClock, padded_apk

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"
RELEASE_VC2 = FIXTURES / "fixture-release-vc2.apk"
OTHER_APK = FIXTURES / "fixture-native-libs.apk"  # another package: the distribution app's
KEY_FILE = FIXTURES / "keys" / "release.p12"
PASSWORD = "correct horse battery"
APK_TYPE = "application/vnd.android.package-archive"

# The credential kinds: every token kind, and a signed-in developer's portal session.
SESSION = "session"
KINDS = (*(k.value for k in TokenKind), SESSION)
TOKEN_LIFETIME = timedelta(hours=6)  # the expiring tokens; sessions live users.SESSION_TTL
EXPIRE_BY = users.SESSION_TTL + timedelta(hours=1)  # both are over after this


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings, with webhooks allowed to a loopback address (nothing listens
    there: deliveries fail at once, and are recorded)."""
    return settings.model_copy(update={"webhook_allow_private": True})


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    app = create_app(runtime=runtime, start_worker=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


# --- one tenant's world, made through the APIs ---------------------------------------------------


@dataclass
class Ids:
    """What a tenant has, by the ids the APIs show (another tenant's are filled into routes)."""

    tenant_id: str = ""
    tenant_name: str = ""
    build_id: str = ""
    build_number: int = 0
    build_file: str = "app-release.apk"
    mp_path: str = ""  # a pending multipart upload (automation)
    mp_upload_id: str = ""
    mp2_path: str = ""  # another (management)
    mp2_upload_id: str = ""
    key_id: str = ""
    link_id: str = ""
    webhook_id: str = ""
    event_id: int = 0
    member_id: str = ""
    app_id: str = ""
    app_slug: str = ""
    dist_build_id: str = ""
    ctx_project: str = ""
    ctx_number: int = 0
    ctx_build: int = 0
    version_id: str = ""
    issue_id: str = ""
    ci_token_id: str = ""  # a spare CI token (revoked by the DELETE route's own cell)


@dataclass
class World:
    ids: Ids
    valid: dict[str, str] = field(default_factory=dict)  # kind -> raw credential
    revoked: dict[str, str] = field(default_factory=dict)
    disabled: dict[str, str] = field(default_factory=dict)
    expiring: dict[str, str] = field(default_factory=dict)


def unknown_ids(ids: Ids) -> Ids:
    """Ids of the same shapes that name nothing: what an unknown id answers is what another
    tenant's must answer."""
    made: dict[str, Any] = {}
    for n, f in enumerate(fields(Ids)):
        value = getattr(ids, f.name)
        if isinstance(value, int):
            made[f.name] = 900_000_000 + n
        elif f.name in ("build_file",):
            made[f.name] = value
        elif f.name.endswith("_path"):
            made[f.name] = f"tn_0000000000000{n:03d}/uploads/android/production/1/app.apk"
        else:
            prefix, sep, rest = value.partition("_")
            made[f.name] = f"{prefix}_{'0' * (len(rest) - 3)}{n:03d}" if sep else f"nothing{n}"
    return Ids(**made)


def present(dialect: str, raw: str, tenant_id: str) -> dict[str, str]:
    """A credential the way ``dialect`` takes it."""
    if dialect == "management":
        encoded = base64.b64encode(raw.encode()).decode()
        return {"Authorization": f"Bearer {encoded}", "tenant": tenant_id}
    return {"Authorization": f"Bearer {raw}"}


def work(runtime: Runtime) -> None:
    while Worker(runtime.services).run_once("isolation-worker"):
        pass


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.text}"
    return r.json() if r.content else None


def make_world(runtime: Runtime, client: TestClient, name: str, tmp: Path) -> World:
    svc = runtime.services
    ids = Ids(tenant_name=name, app_slug=f"dist-{name}", ctx_project=f"proj-{name}")
    world = World(ids)
    with svc.transaction() as uow:
        tenant = tenants.create(uow, svc.clock, name=name, plan=Plan.ENTERPRISE)
        ids.tenant_id = tenant.id
        tenants.set_limits(
            uow,
            tenant_id=tenant.id,
            overrides=LimitOverrides(concurrent_builds=0, weekly_builds=0),
        )
        for who in ("dev", "gone", "off"):
            users.create(
                uow,
                svc.clock,
                email=f"{who}@{name}.test",
                name=who,
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
                    name=role.value,
                    role=role,
                    password=PASSWORD,
                )

    def login(email: str) -> str:
        token = str(
            ok(client.post("/appyard/v1/auth/login", json={"email": email, "password": PASSWORD}))[
                "token"
            ]
        )
        client.cookies.clear()
        return token

    session = login(f"dev@{name}.test")
    world.valid[SESSION] = world.expiring[SESSION] = session
    gone = login(f"gone@{name}.test")
    ok(client.post("/appyard/v1/auth/logout", headers={"Authorization": f"Bearer {gone}"}))
    client.cookies.clear()
    world.revoked[SESSION] = gone
    world.disabled[SESSION] = login(f"off@{name}.test")
    users_table = MetaData()
    users_table.reflect(bind=runtime.engine, only=["users"])
    with runtime.engine.begin() as conn:  # no service disables a person yet: the row says so
        t = users_table.tables["users"]
        conn.execute(update(t).where(t.c.email == f"off@{name}.test").values(disabled=True))
    dev = {"Authorization": f"Bearer {session}"}

    # the distribution app (an app token names it), then a token of every kind, four times
    app = ok(client.post("/appyard/v1/apps", json={"slug": ids.app_slug}, headers=dev), 201)
    ids.app_id = app["id"]
    with svc.transaction() as uow:
        person = users.from_session(uow, svc.clock, token=session)
        for kind in TokenKind:
            app_id = ids.app_id if kind is TokenKind.APP else None

            def new(expires: bool = False, kind: TokenKind = kind, app_id: str | None = app_id):
                return identity.create_token(
                    uow,
                    svc.clock,
                    tenant_id=ids.tenant_id,
                    kind=kind,
                    app_id=app_id,
                    expires_at=svc.clock.now() + TOKEN_LIFETIME if expires else None,
                )

            world.valid[kind.value] = new().raw
            world.expiring[kind.value] = new(expires=True).raw
            revoked, disabled = new(), new()
            identity.delete_member_token(uow, svc.clock, person, token_id=revoked.token.id)
            identity.disable_member_token(uow, svc.clock, person, token_id=disabled.token.id)
            world.revoked[kind.value], world.disabled[kind.value] = revoked.raw, disabled.raw
        ids.ci_token_id = new_ci = identity.create_token(
            uow, svc.clock, tenant_id=ids.tenant_id, kind=TokenKind.CI
        ).token.id
        del new_ci

    def auth(kind: str) -> dict[str, str]:
        return present("native" if kind == SESSION else "", world.valid[kind], ids.tenant_id)

    mgmt = present("management", world.valid["management"], ids.tenant_id)

    # a webhook endpoint first, so that what follows is delivered (and fails) to it
    hook = ok(
        client.post("/appyard/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=dev),
        201,
    )
    ids.webhook_id = hook["id"]
    member = ok(
        client.post(
            "/appyard/v1/members",
            json={"email": f"qa@{name}.test", "role": "employee"},
            headers=dev,
        ),
        201,
    )
    ids.member_id = member["id"]

    # a managed signing key (management API: request, then PUT the file)
    key_bytes = KEY_FILE.read_bytes()
    made = ok(
        client.post(
            "/frontend/upload_signing_key",
            headers=mgmt,
            json={
                "key_name": "release",
                "platform": "android",
                "file_name": "release.p12",
                "password": "fixture-release",
                "alias": "release",
                "file_size": len(key_bytes),
                "is_default": True,
            },
        )
    )
    ok(client.put(made["url"], content=key_bytes))
    ids.key_id = made["key_id"]

    # a completed build (automation API), its output signed with the key
    data = RELEASE_APK.read_bytes()
    ticket = ok(
        client.post(
            "/automate/upload",
            headers=auth("automation"),
            json={
                "file_name": ids.build_file,
                "platform": "android",
                "version": "production",
                "file_size": len(data),
            },
        )
    )
    ok(client.put(ticket["upload_url"], content=data))
    work(runtime)
    build = ok(client.get(f"/appyard/v1/builds/{ticket['job_id']}", headers=auth("automation")))
    assert build["status"] == "completed" and build["signed"], build
    ids.build_id, ids.build_number = build["id"], build["number"]
    signing_file = ok(
        client.post(
            "/frontend/upload_code_signing_file",
            headers=mgmt,
            json={
                "file": "release.p12",
                "password": "fixture-release",
                "alias": "release",
                "application_id": build["app_id"],
                "platform": "android",
            },
        )
    )
    ok(client.put(signing_file["url"], content=key_bytes))  # the build's app may be re-signed
    link = ok(
        client.post(
            f"/appyard/v1/builds/{ids.build_number}/install-links",
            json={"expires": "7d"},
            headers=auth("automation"),
        ),
        201,
    )
    ids.link_id = link["id"]

    # two pending multipart uploads (one per upload dialect)
    big = padded_apk(tmp / f"big-{name}.apk", svc.policy.multipart_threshold + 10).stat().st_size
    for path, prefix, headers in (
        ("/automate/upload", "mp", auth("automation")),
        ("/frontend/upload_application_build", "mp2", mgmt),
    ):
        mp = ok(
            client.post(
                path,
                headers=headers,
                json={
                    "file_name": "big.apk",
                    "platform": "android",
                    "version": "production",
                    "file_size": big,
                },
            )
        )
        assert mp["multipart"] is True
        setattr(ids, f"{prefix}_path", mp["file_path"])
        setattr(ids, f"{prefix}_upload_id", mp["upload_id"])

    # a store version: uploaded by CI, validated, submitted, approved, released, an issue
    with RELEASE_APK.open("rb") as fh:
        up = ok(
            client.post(
                "/portal/api/uploads/ci",
                headers=auth("ci"),
                files={"apk": ("app.apk", fh, APK_TYPE)},
            ),
            201,
        )
    ids.version_id = vid = up["version"]["id"]
    work(runtime)
    reviewer = {"Authorization": f"Bearer {login('store-reviewer@store.test')}"}
    admin = {"Authorization": f"Bearer {login('store-admin@store.test')}"}
    for action, who, body in (
        ("submit", dev, {}),
        ("approve", reviewer, {}),
        ("release", admin, {"countries": ["DE"]}),
        ("issues", reviewer, {"title": "crashes on start"}),
    ):
        answer = client.post(f"/appyard/v1/versions/{vid}/{action}", json=body, headers=who)
        made = ok(answer, 201 if action == "issues" else 200)
    ids.issue_id = made["id"]

    # a distribution build of the app (app token)
    with OTHER_APK.open("rb") as fh:
        dist = ok(
            client.post(
                "/v1/integrations/builds",
                headers=auth("app"),
                files={"build": ("app.apk", fh, APK_TYPE)},
            )
        )
    ids.dist_build_id = dist["data"]["id"]

    # an upload-context build: context, metadata, the PUT as specified
    ctx = present("", world.valid["context"], ids.tenant_id)
    ids.ctx_number = ok(
        client.post(f"/api/v1/projects/{ids.ctx_project}/build-uploads", headers=ctx)
    )["id"]
    spec = ok(
        client.post(
            f"/api/v1/projects/{ids.ctx_project}/builds",
            headers=ctx,
            json={**CONTEXT_BUILD, "contextId": ids.ctx_number},
        )
    )
    put = spec["uploadSpec"]
    ok(
        client.request(
            put["method"],
            put["url"],
            content=data,
            headers={**put["headers"], "Content-Length": str(len(data))},
        )
    )
    ids.ctx_build = spec["build"]["id"]
    work(runtime)

    deliveries = ok(client.get(f"/appyard/v1/webhooks/{ids.webhook_id}/deliveries", headers=dev))
    assert deliveries, "the webhook endpoint was never tried"
    ids.event_id = deliveries[0]["event_id"]
    return world


CONTEXT_BUILD = {
    "buildType": "APK",
    "buildFileName": "app-play-release.apk",
    "name": "v5.2.8",
    "description": "Arbitrary description",
    "sourceControlId": "e3c0fedc625094db1cbb2823fd425b51ddc0932e",
    "sourceControlIsoTimestamp": "2024-03-07T14:55:43.540Z",
}


# --- the routes: who may call them, and how another tenant's ids are filled in -------------------


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    json: Any = None
    files: dict[str, Path] | None = None  # form part -> file


Fill = Callable[[Ids, Ids], list[Req]]  # (ids filled in, the caller's own) -> the requests


@dataclass(frozen=True)
class Rule:
    """A route's access rule.

    accepts: the credential kinds that reach the route's resource check;
    refused: kinds the dialect takes but this route does not, with their documented status
    (every other kind is 401);
    fill: the requests, given ids (another tenant's, unknown ones, or the caller's own);
    cross: whether ``fill`` names ids at all (else: why another tenant's ids do not apply);
    other: the documented status for another tenant's ids (identical to an unknown id's);
    own: the status with the caller's own ids (the control: the request is well formed);
    order: when the own cell runs (destructive ones last).
    """

    accepts: frozenset[str]
    fill: Fill
    cross: bool | str = True
    other: int = 404
    own: int = 200
    refused: tuple[tuple[str, int], ...] = ()
    order: int = 0


PUBLIC = "public"  # no credential: sign-in, sign-out, each dialect's OpenAPI document


def one(method: str, path: Callable[[Ids], str], body: Callable[[Ids], Any] | None = None) -> Fill:
    return lambda t, me: [Req(method, path(t), body(t) if body else None)]


def mine(method: str, path: str, body: Any = None, files: dict[str, Path] | None = None) -> Fill:
    return lambda t, me: [Req(method, path, body, files)]


AUTOMATION = frozenset({"automation"})
MANAGEMENT = frozenset({"management"})
CI_OR_SESSION = frozenset({"ci", SESSION})
PEOPLE = frozenset({SESSION})
BUILD_READERS = frozenset({SESSION, "automation"})
NO_IDS_IN = "names no ids: acts on the caller's tenant"


def upload_body(t: Ids) -> dict[str, Any]:
    return {
        "file_name": "app.apk",
        "platform": "android",
        "version": "production",
        "signing_key_id": t.key_id,
    }


def complete_body(path: str, upload_id: str) -> dict[str, Any]:
    return {"file_path": path, "upload_id": upload_id, "parts": [{"PartNumber": 1, "ETag": "x"}]}


def named(t: Ids, key: str = "file_name") -> dict[str, Any]:
    return {
        "version": "production",
        "platform": "android",
        "start_time": t.build_number,
        key: t.build_file,
    }


def builds(suffix: str, method: str = "GET", body: Any = None) -> Fill:
    """A native build route, by the build's id and by its number."""
    return lambda t, me: [
        Req(method, f"/builds/{ref}{suffix}", body) for ref in (t.build_id, str(t.build_number))
    ]


def version_action(action: str, body: Any = None) -> Fill:
    return one("POST", lambda t: f"/versions/{t.version_id}/{action}", lambda t: body or {})


ROUTES: dict[tuple[str, str, str], Rule | str] = {
    # automation (/automate): automation keys
    ("automation", "POST", "/upload"): Rule(
        AUTOMATION, one("POST", lambda t: "/upload", upload_body), other=400
    ),
    ("automation", "POST", "/upload/complete"): Rule(
        AUTOMATION,
        one(
            "POST", lambda t: "/upload/complete", lambda t: complete_body(t.mp_path, t.mp_upload_id)
        ),
        other=403,
        own=400,
    ),
    ("automation", "POST", "/upload/abort"): Rule(
        AUTOMATION,
        one(
            "POST",
            lambda t: "/upload/abort",
            lambda t: {"file_path": t.mp_path, "upload_id": t.mp_upload_id},
        ),
        other=403,
        order=1,
    ),
    ("automation", "GET", "/status/{job_id}"): Rule(
        AUTOMATION, one("GET", lambda t: f"/status/{t.build_number}")
    ),
    ("automation", "GET", "/download/{job_id}"): Rule(
        AUTOMATION, one("GET", lambda t: f"/download/{t.build_number}")
    ),
    # management (/frontend): management tokens with the tenant header
    ("management", "POST", "/get_applications"): Rule(
        MANAGEMENT, mine("POST", "/get_applications", {}), cross=NO_IDS_IN
    ),
    ("management", "POST", "/get_application_builds"): Rule(
        MANAGEMENT,
        mine("POST", "/get_application_builds", {"version": "production"}),
        cross=NO_IDS_IN,
    ),
    ("management", "POST", "/upload_application_build"): Rule(
        MANAGEMENT, one("POST", lambda t: "/upload_application_build", upload_body), other=400
    ),
    ("management", "POST", "/complete_multipart_upload"): Rule(
        MANAGEMENT,
        one(
            "POST",
            lambda t: "/complete_multipart_upload",
            lambda t: complete_body(t.mp2_path, t.mp2_upload_id),
        ),
        other=403,
        own=400,
    ),
    ("management", "POST", "/abort_multipart_upload"): Rule(
        MANAGEMENT,
        one(
            "POST",
            lambda t: "/abort_multipart_upload",
            lambda t: {"file_path": t.mp2_path, "upload_id": t.mp2_upload_id},
        ),
        other=403,
        order=1,
    ),
    ("management", "POST", "/download_application_build"): Rule(
        MANAGEMENT, one("POST", lambda t: "/download_application_build", named)
    ),
    ("management", "POST", "/delete_application_build"): Rule(
        MANAGEMENT, one("POST", lambda t: "/delete_application_build", named), order=3
    ),
    ("management", "POST", "/delete_application"): Rule(
        MANAGEMENT,
        one("POST", lambda t: "/delete_application", lambda t: {"application_id": t.app_id}),
        own=409,
        order=4,
    ),  # own: found, but younger than 7 days (app.too_new)
    ("management", "POST", "/get_signing_keys"): Rule(
        MANAGEMENT, mine("POST", "/get_signing_keys", {}), cross=NO_IDS_IN
    ),
    ("management", "POST", "/upload_signing_key"): Rule(
        MANAGEMENT,
        mine(
            "POST",
            "/upload_signing_key",
            {
                "key_name": "k",
                "platform": "android",
                "file_name": "k.p12",
                "password": "p",
                "alias": "a",
            },
        ),
        cross=NO_IDS_IN,
    ),
    ("management", "POST", "/set_default_signing_key"): Rule(
        MANAGEMENT,
        one(
            "POST",
            lambda t: "/set_default_signing_key",
            lambda t: {"platform": "android", "key_id": t.key_id},
        ),
    ),
    ("management", "POST", "/delete_signing_key"): Rule(
        MANAGEMENT,
        one("POST", lambda t: "/delete_signing_key", lambda t: {"key_id": t.key_id}),
        order=3,
    ),
    ("management", "POST", "/upload_code_signing_file"): Rule(
        MANAGEMENT,
        one(
            "POST",
            lambda t: "/upload_code_signing_file",
            lambda t: {
                "file": "release.p12",
                "password": "p",
                "alias": "a",
                "application_id": t.app_id,
                "platform": "android",
            },
        ),
    ),
    ("management", "POST", "/sign_application_build"): Rule(
        MANAGEMENT,
        one("POST", lambda t: "/sign_application_build", lambda t: named(t, "name")),
        order=2,
    ),
    # store CI (/portal/api): CI tokens, and sessions on the interactive endpoints
    ("store-ci", "POST", "/uploads/ci"): Rule(
        frozenset({"ci"}),
        mine("POST", "/uploads/ci", files={"apk": RELEASE_VC2}),
        cross=NO_IDS_IN + " (the app is found by the APK's package in it)",
        own=201,
        refused=((SESSION, 403),),
    ),
    ("store-ci", "GET", "/versions/{version_id}/validation"): Rule(
        CI_OR_SESSION, one("GET", lambda t: f"/versions/{t.version_id}/validation")
    ),
    ("store-ci", "GET", "/versions/{version_id}"): Rule(
        CI_OR_SESSION, one("GET", lambda t: f"/versions/{t.version_id}")
    ),
    ("store-ci", "GET", "/versions/{version_id}/release"): Rule(
        CI_OR_SESSION, one("GET", lambda t: f"/versions/{t.version_id}/release")
    ),
    ("store-ci", "GET", "/ci-tokens"): Rule(
        CI_OR_SESSION, mine("GET", "/ci-tokens"), cross=NO_IDS_IN
    ),
    ("store-ci", "POST", "/ci-tokens"): Rule(
        PEOPLE,
        mine("POST", "/ci-tokens", {"name": "n"}),
        cross=NO_IDS_IN,
        own=201,
        refused=(("ci", 403),),
    ),
    ("store-ci", "DELETE", "/ci-tokens/{token_id}"): Rule(
        CI_OR_SESSION, one("DELETE", lambda t: f"/ci-tokens/{t.ci_token_id}"), order=3
    ),
    # distribution (/v1): app tokens on integrations, service accounts on organizations
    ("distribution", "POST", "/integrations/builds"): Rule(
        frozenset({"app"}),
        mine("POST", "/integrations/builds", files={"build": OTHER_APK}),
        cross=NO_IDS_IN + " (the token's app)",
        refused=(("service-account", 403),),
    ),
    ("distribution", "GET", "/integrations/builds/{buildId}"): Rule(
        frozenset({"app"}),
        one("GET", lambda t: f"/integrations/builds/{t.dist_build_id}"),
        refused=(("service-account", 403),),
    ),
    ("distribution", "POST", "/organizations/{organizationId}/apps/{applicationId}/builds"): Rule(
        frozenset({"service-account"}),
        lambda t, me: [
            Req("POST", f"/organizations/{org}/apps/{app}/builds", files={"build": OTHER_APK})
            for org, app in (
                (t.tenant_id, t.app_id),
                (t.tenant_name, t.app_slug),
                (me.tenant_id, t.app_id),
                (me.tenant_name, t.app_slug),
            )
        ],
        refused=(("app", 403),),
    ),
    (
        "distribution",
        "GET",
        "/organizations/{organizationId}/apps/{applicationId}/builds/{buildId}",
    ): Rule(
        frozenset({"service-account"}),
        lambda t, me: [
            Req("GET", f"/organizations/{org}/apps/{app}/builds/{t.dist_build_id}")
            for org, app in ((t.tenant_id, t.app_id), (me.tenant_id, me.app_id))
        ],
        refused=(("app", 403),),
    ),
    # upload-context (/api/v1/projects): context tokens
    ("upload-context", "POST", "/{projectName}/build-uploads"): Rule(
        frozenset({"context"}),
        lambda t, me: [Req("POST", f"/{me.ctx_project}/build-uploads")],
        cross="a project is named within the caller's tenant (another tenant's name is a "
        "project of the caller's own)",
    ),
    ("upload-context", "POST", "/{projectName}/builds"): Rule(
        frozenset({"context"}),
        one(
            "POST",
            lambda t: f"/{t.ctx_project}/builds",
            lambda t: {**CONTEXT_BUILD, "contextId": t.ctx_number},
        ),
    ),
    ("upload-context", "GET", "/{projectName}/builds/{buildId}"): Rule(
        frozenset({"context"}),
        lambda t, me: [
            Req("GET", f"/{project}/builds/{t.ctx_build}")
            for project in (t.ctx_project, me.ctx_project)
        ],
    ),
    # native (/appyard/v1): people; automation keys on the build routes
    ("native", "POST", "/auth/login"): PUBLIC,
    ("native", "POST", "/auth/logout"): PUBLIC,
    ("native", "POST", "/apps"): Rule(
        PEOPLE,
        mine("POST", "/apps", {"slug": "another-app"}),
        cross=NO_IDS_IN,
        own=201,
        refused=(("automation", 403),),
    ),
    ("native", "GET", "/members"): Rule(
        PEOPLE, mine("GET", "/members"), cross=NO_IDS_IN, refused=(("automation", 403),)
    ),
    ("native", "POST", "/members"): Rule(
        PEOPLE,
        one(
            "POST",
            lambda t: "/members",
            lambda t: {"email": "collab@example.test", "role": "collaborator", "app": t.app_slug},
        ),
        own=201,
        refused=(("automation", 403),),
    ),
    ("native", "DELETE", "/members/{member_id}"): Rule(
        PEOPLE,
        one("DELETE", lambda t: f"/members/{t.member_id}"),
        order=3,
        refused=(("automation", 403),),
    ),
    ("native", "GET", "/webhooks"): Rule(
        PEOPLE, mine("GET", "/webhooks"), cross=NO_IDS_IN, refused=(("automation", 403),)
    ),
    ("native", "POST", "/webhooks"): Rule(
        PEOPLE,
        mine("POST", "/webhooks", {"url": "http://127.0.0.1:9/other"}),
        cross=NO_IDS_IN,
        own=201,
        refused=(("automation", 403),),
    ),
    ("native", "POST", "/webhooks/{webhook_id}/{action}"): Rule(
        PEOPLE,
        one("POST", lambda t: f"/webhooks/{t.webhook_id}/enable"),
        refused=(("automation", 403),),
    ),
    ("native", "DELETE", "/webhooks/{webhook_id}"): Rule(
        PEOPLE,
        one("DELETE", lambda t: f"/webhooks/{t.webhook_id}"),
        order=3,
        refused=(("automation", 403),),
    ),
    ("native", "GET", "/webhooks/{webhook_id}/deliveries"): Rule(
        PEOPLE,
        one("GET", lambda t: f"/webhooks/{t.webhook_id}/deliveries"),
        refused=(("automation", 403),),
    ),
    ("native", "POST", "/webhooks/{webhook_id}/redeliver"): Rule(
        PEOPLE,
        lambda t, me: [
            Req("POST", f"/webhooks/{hook}/redeliver", {"event_id": t.event_id})
            for hook in (t.webhook_id, me.webhook_id)
        ],
        refused=(("automation", 403),),
    ),
    ("native", "GET", "/versions/{version_id}"): Rule(
        PEOPLE, one("GET", lambda t: f"/versions/{t.version_id}"), refused=(("automation", 403),)
    ),
    ("native", "GET", "/versions/{version_id}/history"): Rule(
        PEOPLE,
        one("GET", lambda t: f"/versions/{t.version_id}/history"),
        refused=(("automation", 403),),
    ),
    ("native", "GET", "/versions/{version_id}/issues"): Rule(
        PEOPLE,
        one("GET", lambda t: f"/versions/{t.version_id}/issues"),
        refused=(("automation", 403),),
    ),
    # a developer may submit (the live version: 409); the other actions are the store's (403)
    ("native", "POST", "/versions/{version_id}/submit"): Rule(
        PEOPLE, version_action("submit"), own=409, refused=(("automation", 403),)
    ),
    ("native", "POST", "/versions/{version_id}/approve"): Rule(
        PEOPLE, version_action("approve"), own=403, refused=(("automation", 403),)
    ),
    ("native", "POST", "/versions/{version_id}/reject"): Rule(
        PEOPLE, version_action("reject", {"reason": "r"}), own=403, refused=(("automation", 403),)
    ),
    ("native", "POST", "/versions/{version_id}/release"): Rule(
        PEOPLE,
        version_action("release", {"countries": ["FR"]}),
        own=403,
        refused=(("automation", 403),),
    ),
    ("native", "POST", "/versions/{version_id}/rollout"): Rule(
        PEOPLE,
        version_action("rollout", {"rollout_percentage": 50}),
        own=403,
        refused=(("automation", 403),),
    ),
    ("native", "POST", "/versions/{version_id}/halt"): Rule(
        PEOPLE, version_action("halt"), own=403, refused=(("automation", 403),)
    ),
    ("native", "POST", "/versions/{version_id}/resume"): Rule(
        PEOPLE, version_action("resume"), own=403, refused=(("automation", 403),)
    ),
    ("native", "POST", "/versions/{version_id}/withdraw"): Rule(
        PEOPLE, version_action("withdraw"), own=403, refused=(("automation", 403),)
    ),
    ("native", "POST", "/versions/{version_id}/issues"): Rule(
        PEOPLE, version_action("issues", {"title": "t"}), own=403, refused=(("automation", 403),)
    ),
    ("native", "POST", "/issues/{issue_id}/resolve"): Rule(
        PEOPLE,
        one("POST", lambda t: f"/issues/{t.issue_id}/resolve"),
        own=403,
        refused=(("automation", 403),),
    ),
    ("native", "GET", "/builds/{ref}"): Rule(BUILD_READERS, builds("")),
    ("native", "GET", "/builds/{ref}/findings"): Rule(BUILD_READERS, builds("/findings")),
    ("native", "GET", "/builds/{ref}/output"): Rule(BUILD_READERS, builds("/output")),
    ("native", "GET", "/builds/{ref}/upload"): Rule(BUILD_READERS, builds("/upload")),
    ("native", "POST", "/builds/{build}/install-links"): Rule(
        BUILD_READERS, builds("/install-links", "POST", {"expires": "1d"}), own=201
    ),
    ("native", "GET", "/builds/{build}/install-links"): Rule(
        BUILD_READERS, builds("/install-links")
    ),
    ("native", "GET", "/builds/{build}/install-downloads"): Rule(
        BUILD_READERS, builds("/install-downloads")
    ),
    ("native", "POST", "/install-links/{link_id}/revoke"): Rule(
        BUILD_READERS, one("POST", lambda t: f"/install-links/{t.link_id}/revoke"), order=2
    ),
}


def mounted_dialects() -> list[kit.Dialect]:
    return [*DIALECTS, NATIVE_API]


def mounted_routes(app: Any) -> dict[tuple[str, str, str], str]:
    """Every (dialect, method, path) the app serves through a mounted dialect (its OpenAPI
    document and docs pages included), from the mounted sub-apps themselves."""
    found: dict[tuple[str, str, str], str] = {}
    for route in app.router.routes:
        if not isinstance(route, kit.DialectMount):
            continue
        guard = route.app
        assert isinstance(guard, kit.Guard)
        for inner in guard.app.router.routes:
            for method in sorted(getattr(inner, "methods", None) or ()):
                if method == "HEAD":
                    continue
                found[(guard.dialect.name, method, inner.path)] = guard.dialect.prefix
    return found


def is_public(key: tuple[str, str, str]) -> bool:
    _, method, path = key
    return ROUTES.get(key) == PUBLIC or (
        method == "GET" and path in ("/openapi.json", "/docs", "/docs/oauth2-redirect")
    )


def test_every_mounted_route_is_classified(runtime: Runtime) -> None:
    served = mounted_routes(create_app(runtime=runtime, start_worker=False))
    names = {d.name for d in mounted_dialects()}
    assert {key[0] for key in served} == names, "a dialect is not mounted"
    unclassified = sorted(k for k in served if k not in ROUTES and not is_public(k))
    assert not unclassified, (
        "routes without an access rule in ROUTES (say who may call them and how another "
        f"tenant's ids are filled in): {unclassified}"
    )
    gone = sorted(k for k in ROUTES if k not in served)
    assert not gone, f"ROUTES names routes that are not served: {gone}"


# --- the snapshot of the other tenant ------------------------------------------------------------


def snapshot(runtime: Runtime, tenant_id: str) -> dict[str, Any]:
    """Every row of every table with a ``tenant_id`` column (and the tenant's own row) that
    belongs to the tenant, the rows of tables without one that point at those (a version's
    issues and history, a build's findings, a person's sessions), and every stored object
    under the tenant's prefix with its SHA-256."""
    meta = MetaData()
    meta.reflect(bind=runtime.engine)
    owned: dict[str, Any] = {}
    for table in meta.sorted_tables:
        if "tenant_id" in table.c:
            owned[table.name] = select(table).where(table.c.tenant_id == tenant_id)
        elif table.name == "tenants":
            owned[table.name] = select(table).where(table.c.id == tenant_id)
    for table in meta.sorted_tables:
        if table.name in owned:
            continue
        for fk in table.foreign_keys:
            parent = fk.column.table
            if parent.name in owned and parent.name != "tenants":
                ids = select(fk.column).where(parent.c.tenant_id == tenant_id)
                owned[f"{table.name} by {fk.parent.name}"] = select(table).where(fk.parent.in_(ids))
    rows: dict[str, Any] = {}
    with runtime.engine.connect() as conn:
        for name, query in owned.items():
            rows[name] = sorted(repr(tuple(r)) for r in conn.execute(query))
    assert rows["builds"] and rows["tokens"], "the snapshot found none of the tenant's rows"
    objects: dict[str, str] = {}
    store = runtime.local_store
    if store is not None:
        base = store.objects / tenant_id
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            objects[str(path.relative_to(base))] = hashlib.sha256(path.read_bytes()).hexdigest()
        assert objects, "the snapshot found none of the tenant's stored objects"
    return {"rows": rows, "objects": objects}


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    found = []
    for table in sorted(set(before["rows"]) | set(after["rows"])):
        was, now = set(before["rows"].get(table, [])), set(after["rows"].get(table, []))
        found += [f"{table}: row gone {r}" for r in sorted(was - now)]
        found += [f"{table}: row new or changed {r}" for r in sorted(now - was)]
    was, now = before["objects"], after["objects"]
    found += [
        f"object {k}: {was.get(k)} -> {now.get(k)}"
        for k in sorted(set(was) | set(now))
        if was.get(k) != now.get(k)
    ]
    return found


# --- the matrix ----------------------------------------------------------------------------------


@dataclass
class Matrix:
    client: TestClient
    me: World
    them: World
    prefixes: dict[str, str]
    schemas: dict[str, Any]
    wrong: list[str] = field(default_factory=list)
    cells: int = 0

    def send(self, dialect: str, req: Req, headers: dict[str, str]) -> Any:
        url = self.prefixes[dialect] + req.path
        self.cells += 1
        if req.files is not None:
            handles = {name: path.open("rb") for name, path in req.files.items()}
            try:
                files = {n: (p.name, handles[n], APK_TYPE) for n, p in req.files.items()}
                return self.client.request(req.method, url, headers=headers, files=files)
            finally:
                for fh in handles.values():
                    fh.close()
        if req.json is None and req.method != "GET" and dialect == "management":
            req = replace(req, json={})
        return self.client.request(req.method, url, headers=headers, json=req.json)

    def expect(self, label: str, dialect: str, r: Any, status: int, code: Any = None) -> bool:
        """Record the cell as wrong unless it answered ``status`` in the dialect's shape."""
        problem = ""
        if r.status_code != status:
            problem = f"expected {status}, got {r.status_code}"
        if r.status_code >= 400:
            try:
                jsonschema.validate(r.json(), self.schemas[dialect])
            except (ValueError, jsonschema.ValidationError) as exc:
                problem += f"; not the dialect's error shape ({str(exc).splitlines()[0]})"
            if code is not None and not problem and error_code(dialect, r.json()) != code:
                problem = f"expected error code {code}, got {error_code(dialect, r.json())}"
        elif r.status_code < 300:
            leaked = [v for v in self.leak_values() if v in r.text]
            if leaked:
                problem += f"; the answer names the other tenant's {leaked}"
        if problem:
            self.wrong.append(f"{label}: {problem}: {r.text[:300]}")
            return False
        return True

    def leak_values(self) -> list[str]:
        ids = self.them.ids
        return [
            getattr(ids, name)
            for name in (
                "tenant_id",
                "build_id",
                "app_id",
                "key_id",
                "link_id",
                "webhook_id",
                "member_id",
                "dist_build_id",
                "version_id",
                "issue_id",
                "ci_token_id",
            )
        ]


def error_code(dialect: str, body: Any) -> Any:
    """The stable code of an error body, where the dialect's shape carries one."""
    if dialect in ("distribution", "management", "native"):
        return body["error"]["code"]
    if dialect == "store-ci":
        return body["code"]
    if dialect == "upload-context":
        return body["error"]
    return None  # automation: {"error": message}


# The code each bad credential answers with (a revoked token is deleted: as never issued).
CODES = {
    "revoked": "auth.invalid_credential",
    "disabled": "auth.credential_disabled",
    "expired": "auth.credential_expired",
}
DISTRIBUTION_CODES = {"revoked": 3000, "disabled": 3000, "expired": 3002}


def code_for(dialect: str, kind: str, column: str) -> Any:
    if dialect == "automation":
        return None
    if dialect == "distribution":
        return DISTRIBUTION_CODES[column] if kind != SESSION else 3000
    return CODES[column] if kind != SESSION else "auth.invalid_credential"


def credential(world: World, kind: str, column: str) -> str:
    return getattr(world, column)[kind]


def headers_for(dialect: str, raw: str, world: World) -> dict[str, str]:
    return present(dialect, raw, world.ids.tenant_id)


def normalized(text: str, ids: Ids) -> str:
    """An answer with the ids it was asked about replaced by their names."""
    try:
        text = json.dumps(json.loads(text), sort_keys=True)
    except ValueError:
        pass
    values = sorted(
        ((str(getattr(ids, f.name)), f.name) for f in fields(Ids) if getattr(ids, f.name)),
        key=lambda pair: -len(pair[0]),
    )
    for value, name in values:  # a whole id, never a part of another word or number
        text = re.sub(rf"(?<![\w-]){re.escape(value)}(?![\w-])", f"<{name}>", text)
    return text


def run_cells(m: Matrix, keys: list[tuple[str, str, str]], phase: str) -> None:
    me, them = m.me, m.them
    unknown = unknown_ids(them.ids)
    for key in keys:
        rule = ROUTES[key]
        assert isinstance(rule, Rule)
        dialect, method, path = key
        where = f"{dialect} {method} {path}"
        for kind in KINDS:
            if phase == "expired":
                if kind in rule.accepts:
                    for req in rule.fill(me.ids, me.ids)[:1]:
                        r = m.send(dialect, req, headers_for(dialect, me.expiring[kind], me))
                        code = code_for(dialect, kind, "expired")
                        m.expect(f"{where} [{kind}, expired]", dialect, r, 401, code)
                continue
            if kind not in rule.accepts:
                status = dict(rule.refused).get(kind, 401)
                for req in rule.fill(me.ids, me.ids)[:1]:
                    r = m.send(dialect, req, headers_for(dialect, me.valid[kind], me))
                    m.expect(f"{where} [{kind}: wrong kind]", dialect, r, status)
                continue
            for column in ("revoked", "disabled"):
                for req in rule.fill(me.ids, me.ids)[:1]:
                    raw = credential(me, kind, column)
                    r = m.send(dialect, req, headers_for(dialect, raw, me))
                    code = code_for(dialect, kind, column)
                    m.expect(f"{where} [{kind}, {column}]", dialect, r, 401, code)
            if dialect == "management":  # its tenant header names another tenant, or none
                for named in (them.ids.tenant_id, them.ids.tenant_name, unknown.tenant_id):
                    req = rule.fill(me.ids, me.ids)[0]
                    tenant_header = {**headers_for(dialect, me.valid[kind], me), "tenant": named}
                    r = m.send(dialect, req, tenant_header)
                    m.expect(
                        f"{where} [{kind}, tenant header {named}]",
                        dialect,
                        r,
                        403,
                        "auth.wrong_tenant",
                    )
            if rule.cross is not True:
                continue
            own = headers_for(dialect, me.valid[kind], me)
            for other_req, unknown_req in zip(
                rule.fill(them.ids, me.ids), rule.fill(unknown, me.ids), strict=True
            ):
                label = f"{where} [{kind}, other tenant's ids: {other_req.method} {other_req.path}]"
                r = m.send(dialect, other_req, own)
                if not m.expect(label, dialect, r, rule.other):
                    continue
                u = m.send(dialect, unknown_req, own)
                said, unknown_said = normalized(r.text, them.ids), normalized(u.text, unknown)
                if (r.status_code, said) != (u.status_code, unknown_said):
                    m.wrong.append(
                        f"{label}: answers unlike an unknown id (existence leaks): "
                        f"{r.status_code} {said} vs {u.status_code} {unknown_said}"
                    )


def run_own(m: Matrix, keys: list[tuple[str, str, str]], settle: Callable[[], None]) -> None:
    """The control: each accepted kind with the caller's own ids gets the route's own status
    (the requests above were well formed), and no 2xx names the other tenant's ids. Routes
    that change things go last, in order, the jobs they queue run (``settle``) in between."""
    ordered = sorted(keys, key=lambda k: (rule_of(k).order, k))
    for n, key in enumerate(ordered):
        rule = rule_of(key)
        if n and rule.order != rule_of(ordered[n - 1]).order:
            settle()
        dialect, method, path = key
        kinds = sorted(rule.accepts)
        if rule.order:  # a destructive route acts once
            kinds = kinds[:1]
        for kind in kinds:
            for req in rule.fill(m.me.ids, m.me.ids)[:1]:
                r = m.send(dialect, req, headers_for(dialect, m.me.valid[kind], m.me))
                m.expect(f"{dialect} {method} {path} [{kind}, own ids]", dialect, r, rule.own)


def rule_of(key: tuple[str, str, str]) -> Rule:
    rule = ROUTES[key]
    assert isinstance(rule, Rule)
    return rule


def test_isolation_matrix(
    runtime: Runtime, client: TestClient, clock: FakeClock, tmp_path: Path
) -> None:
    me = make_world(runtime, client, "mine", tmp_path)
    clock.advance(minutes=10)  # the other tenant's build numbers are not the caller's
    them = make_world(runtime, client, "theirs", tmp_path)
    before = snapshot(runtime, them.ids.tenant_id)

    served = mounted_routes(create_app(runtime=runtime, start_worker=False))
    keys = sorted(k for k in served if not is_public(k))
    dialects = {d.name: d for d in mounted_dialects()}
    m = Matrix(
        client,
        me,
        them,
        prefixes={name: d.prefix for name, d in dialects.items()},
        schemas={name: dict(d.error_schema) for name, d in dialects.items()},
    )
    run_cells(m, keys, "negative")
    now = clock.current
    clock.advance(seconds=EXPIRE_BY.total_seconds())
    try:
        run_cells(m, keys, "expired")
    finally:
        clock.current = now
    run_own(m, keys, lambda: work(runtime))

    after = snapshot(runtime, them.ids.tenant_id)
    changed = differences(before, after)
    report = "\n".join(m.wrong + [f"the other tenant changed: {c}" for c in changed])
    assert not m.wrong and not changed, f"{len(m.wrong)} wrong cell(s) of {m.cells}:\n{report}"
