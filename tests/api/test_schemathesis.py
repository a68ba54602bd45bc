"""schemathesis against every dialect's own OpenAPI document, over real HTTP.

One appyard runs in this process behind a real server (uvicorn on 127.0.0.1, the embedded
worker included) for a tenant with data: a completed automation build, a store version that was
validated, a distribution build, an upload-context build, a signing key and an install link.
For each dialect schemathesis loads ``<prefix>/openapi.json`` from that server and sends what the
document describes (every request body, multipart forms included), with a valid credential of
that dialect; path ids are the tenant's real ones half the time. Two checks: no server error,
and every 4xx answer is the dialect's documented error body (docs/*-api.md and the specs).

The budget is bounded (``MAX_EXAMPLES`` per operation, fixed seed, deterministic generation),
so CI runs the same requests every time.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from sqlalchemy import text

from appyard.app import create_app
from appyard.backends.db.engine import make_engine
from appyard.backends.db.tables import metadata
from appyard.core import apps, identity, tenants, users
from appyard.core.models import Plan, Role, TokenKind
from appyard.runtime import Runtime, build_runtime
from appyard.settings import Settings
from tests.conftest import FIXTURES, add_signing_key, free_port

# CI's budget. A deeper run on a developer's machine: APPYARD_SCHEMATHESIS_EXAMPLES=200
# APPYARD_SCHEMATHESIS_SEED=7 scripts/test tests/api/test_schemathesis.py
MAX_EXAMPLES = int(os.environ.get("APPYARD_SCHEMATHESIS_EXAMPLES", "20"))
SEED = int(os.environ.get("APPYARD_SCHEMATHESIS_SEED", "20261123"))
PASSWORD = "correct horse battery"
RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"  # org.appyard.fixture
OTHER_APK = FIXTURES / "fixture-native-libs.apk"  # org.appyard.fixture.jni
PROJECT = "org.appyard.fixture"  # the app the automation build made, as an upload-context project


# --- the dialects' documented error bodies --------------------------------------------------------


def _is_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def automation_error(body: Any) -> bool:
    """``{"error": "Description of the error"}`` (protection-automation-api.txt)."""
    return isinstance(body, dict) and set(body) == {"error"} and _is_str(body["error"])


def management_error(body: Any) -> bool:
    """``{"success": false, "error": {"code", "message", ...}}`` (management errors.py)."""
    return (
        isinstance(body, dict)
        and set(body) == {"success", "error"}
        and body["success"] is False
        and isinstance(body["error"], dict)
        and _is_str(body["error"].get("code"))
        and _is_str(body["error"].get("message"))
    )


def store_error(body: Any) -> bool:
    """``{"error": "<message>", "code": "<stable code>"}`` (docs/store-api.md)."""
    return (
        isinstance(body, dict)
        and set(body) == {"error", "code"}
        and _is_str(body["error"])
        and _is_str(body["code"])
    )


def distribution_error(body: Any) -> bool:
    """``{"status": false, "error": {"code": <number>, "message": "..."}}``
    (docs/distribution-api.md)."""
    return (
        isinstance(body, dict)
        and set(body) == {"status", "error"}
        and body["status"] is False
        and isinstance(body["error"], dict)
        and set(body["error"]) == {"code", "message"}
        and type(body["error"]["code"]) is int
        and _is_str(body["error"]["message"])
    )


def upload_context_error(body: Any) -> bool:
    """``{"status": <HTTP status>, "error": "<stable code>", "message": "..."}``
    (docs/upload-context-api.md)."""
    return (
        isinstance(body, dict)
        and set(body) == {"status", "error", "message"}
        and type(body["status"]) is int
        and _is_str(body["error"])
        and _is_str(body["message"])
    )


def native_error(body: Any) -> bool:
    """``{"error": {"code", "message", ...details}}`` (the native API's renderer)."""
    return (
        isinstance(body, dict)
        and set(body) == {"error"}
        and isinstance(body["error"], dict)
        and _is_str(body["error"].get("code"))
        and _is_str(body["error"].get("message"))
    )


# --- one appyard with data, behind a real server ------------------------------------------------


@dataclass
class Live:
    url: str
    tenant: str
    tokens: dict[str, str]
    session: str
    runtime: Runtime
    ids: dict[str, list[str | int]] = field(default_factory=dict)

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def login(self) -> str:
        """A new session of the tenant's developer (made in core: the fuzzed ``/auth/login``
        may have the client address throttled)."""
        svc = self.runtime.services
        with svc.transaction() as uow:
            return users.login(uow, svc.clock, email="dev@acme.test", password=PASSWORD)[1]


def _database(template: str, tmp: Path) -> str:
    if template.startswith("postgresql"):
        engine = make_engine(template)
        with engine.begin() as conn:
            names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} CASCADE"))
        engine.dispose()
        return template
    shutil.copyfile(template, tmp / "appyard.db")
    return f"sqlite:///{tmp / 'appyard.db'}"


def _wait(what: str, probe: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = probe()
        if done:
            return done
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not finish in {timeout} s")


def _seed(live: Live) -> None:
    """Data made as clients make it: one build through each upload flow, all processed."""
    apk = RELEASE_APK.read_bytes()
    # automation: request a URL, PUT the bytes, poll until the build is completed
    with live.client(Authorization=f"Bearer {live.tokens['automation']}") as c:
        r = c.post(
            "/automate/upload",
            json={
                "file_name": "app.apk",
                "platform": "android",
                "version": "production",
                "file_size": len(apk),
            },
        )
        assert r.status_code == 200, r.text
        job = r.json()
        assert httpx.put(job["url"], content=apk).status_code in (200, 201)
        status = _wait(
            "the automation build",
            lambda: (
                (s := c.get(f"/automate/status/{job['job_id']}").json())["status"] != "processing"
                and s
            ),
        )
        assert status["status"] == "completed", status
        live.ids["job_id"] = [job["job_id"]]
        live.ids["start_time"] = [int(job["job_id"])]
    # store CI: the form upload, then its validation run
    with live.client(Authorization=f"Bearer {live.tokens['ci']}") as c:
        r = c.post("/portal/api/uploads/ci", files={"apk": ("app.apk", apk)})
        assert r.status_code == 201, r.text
        version = r.json()["version"]["id"]
        _wait(
            "the validation run",
            lambda: (
                c.get(f"/portal/api/versions/{version}/validation").json()["runs"][0]["status"]
                != "running"
            ),
        )
        live.ids["version_id"] = [version]
    # distribution: the form upload with an app token
    with live.client(Authorization=f"Bearer {live.tokens['app']}") as c:
        r = c.post(
            "/v1/integrations/builds",
            files={"build": ("app.apk", OTHER_APK.read_bytes())},
            data={"versionName": "1.0.0", "tags": "qa"},
        )
        assert r.status_code == 200, r.text
        build = r.json()["data"]["id"]
        _wait(
            "the distribution build",
            lambda: c.get(f"/v1/integrations/builds/{build}").json()["data"]["status"] != "pending",
        )
        live.ids["buildId"] = [build]
    # upload-context: a context, the build's metadata, the PUT to its uploadSpec
    with live.client(Authorization=f"Bearer {live.tokens['context']}") as c:
        context = c.post(f"/api/v1/projects/{PROJECT}/build-uploads").json()["id"]
        r = c.post(
            f"/api/v1/projects/{PROJECT}/builds",
            json={"contextId": context, "buildType": "APK", "buildFileName": "app.apk"},
        )
        assert r.status_code == 200, r.text
        spec = r.json()["uploadSpec"]
        headers = {k: v for k, v in spec["headers"].items() if not k.lower().startswith("x-goog")}
        assert httpx.request(spec["method"], spec["url"], content=apk, headers=headers).is_success
        number = r.json()["build"]["id"]
        _wait(
            "the upload-context build",
            lambda: (
                c.get(f"/api/v1/projects/{PROJECT}/builds/{number}").json()["uploadState"]
                != "UPLOADING"
            ),
        )
        live.ids["buildId"].append(str(number))
        live.ids["projectName"] = [PROJECT]
    # native: an install link for the automation build
    with live.client(Authorization=f"Bearer {live.session}") as c:
        r = c.post(f"/appyard/v1/builds/{live.ids['job_id'][0]}/install-links", json={})
        assert r.status_code in (200, 201), r.text
        live.ids["link_id"] = [r.json()["id"]]
        live.ids["build"] = [live.ids["job_id"][0]]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, database_template: str) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    port = free_port()
    settings_ = Settings(
        data_dir=tmp / "data",
        database_url=_database(database_template, tmp),
        public_url=f"http://127.0.0.1:{port}",
        secret_key="schemathesis-secret-key",  # type: ignore[arg-type]
        environment="development",
    )
    runtime = build_runtime(settings_)
    svc = runtime.services
    with svc.transaction() as uow:
        tenant = tenants.create(uow, svc.clock, name="acme", plan=Plan.TEAM)
        app = apps.named(uow, svc.clock, tenant_id=tenant.id, slug="my-app", create=True)
        raw = {
            kind.value: identity.create_token(
                uow,
                svc.clock,
                tenant_id=tenant.id,
                kind=kind,
                app_id=app.id if kind is TokenKind.APP else None,
            ).raw
            for kind in TokenKind
        }
        users.create(
            uow,
            svc.clock,
            email="dev@acme.test",
            name="Dev",
            role=Role.DEVELOPER,
            password=PASSWORD,
            tenant_name="acme",
        )
    key_id = add_signing_key(runtime, tenant.id)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(runtime=runtime, start_worker=True),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ws="none",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, name="schemathesis-server", daemon=True)
    thread.start()
    _wait("the server", lambda: server.started, timeout=30)
    live = Live(
        url=f"http://127.0.0.1:{port}", tenant=tenant.id, tokens=raw, session="", runtime=runtime
    )
    live.session = live.login()
    live.ids["key_id"] = [key_id]
    live.ids["application_id"] = [app.id]
    live.ids["applicationId"] = [app.id, app.slug]
    live.ids["organizationId"] = [tenant.id, "acme"]
    _seed(live)
    yield live
    server.should_exit = True
    thread.join(30)
    runtime.engine.dispose()


# --- the dialects ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    prefix: str
    valid_error: Callable[[Any], bool]
    credential: Callable[[Live], Mapping[str, str]]
    # another credential for some paths (the distribution API's app token), else None
    per_path: Callable[[Live, str], dict[str, str] | None] = lambda live, path: None


def _bearer(kind: str) -> Callable[[Live], Mapping[str, str]]:
    return lambda live: {"Authorization": f"Bearer {live.tokens[kind]}"}


def _management(live: Live) -> Mapping[str, str]:
    import base64

    token = base64.b64encode(live.tokens["management"].encode()).decode()
    return {"Authorization": f"Bearer {token}", "tenant": live.tenant}


TARGETS = {
    "automation": Target("/automate", automation_error, _bearer("automation")),
    "management": Target("/frontend", management_error, _management),
    "store-ci": Target("/portal/api", store_error, _bearer("ci")),
    "distribution": Target(
        "/v1",
        distribution_error,
        _bearer("service-account"),  # the workspace routes; the integrations take an app token
        lambda live, path: (
            {"Authorization": f"Bearer {live.tokens['app']}"}
            if path.startswith("/integrations/")
            else None
        ),
    ),
    "upload-context": Target("/api/v1/projects", upload_context_error, _bearer("context")),
    "native": Target(
        "/appyard/v1", native_error, lambda live: {"Authorization": f"Bearer {live.session}"}
    ),
}


def load_schema(live: Live, target: Target) -> Any:
    """The dialect's document as the running server serves it, with the dialect's credential
    on every request and the tenant's real ids for path parameters half the time."""
    ids = {name: {"values": values} for name, values in live.ids.items() if values}
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": dict(target.credential(live)),
            "cache": {"enabled": False},
            "generation": {"deterministic": True, "max-examples": MAX_EXAMPLES},
            "dictionaries": ids,
            "parameters": {
                f"path.{name}": {"dictionary": name, "probability": 0.5} for name in ids
            },
        }
    )
    return schemathesis.openapi.from_url(f"{live.url}{target.prefix}/openapi.json", config=config)


def documented_error_shape(target: Target) -> Callable[[Any, Any, Any], bool | None]:
    """A check: every error answer (4xx) is the dialect's documented error body."""

    def documented_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
        if response.status_code < 400:
            return None
        try:
            body = response.json()
        except ValueError:
            body = response.text
        assert target.valid_error(body), (
            f"{response.status_code} outside the {target.prefix} error shape: {response.text[:300]}"
        )
        return None

    return documented_error_shape


@pytest.mark.parametrize("dialect", sorted(TARGETS))
def test_dialect_answers_every_request_in_its_documented_shape(live: Live, dialect: str) -> None:
    target = TARGETS[dialect]
    schema = load_schema(live, target)
    checks = [not_a_server_error, documented_error_shape(target)]
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                headers = target.per_path(live, case.path)
                if case.path == "/auth/logout":  # its own session, not the one others use
                    headers = {"Authorization": f"Bearer {live.login()}"}
                if headers:  # over the generated and the configured ones
                    case.headers = {**(case.headers or {}), **headers}
                case.call_and_validate(checks=checks)

            try:
                run()
            except Unsatisfiable:  # nothing can be invalid (one free-form string path parameter)
                continue
            except Exception as exc:  # every operation is tried; all failures are reported
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert operations, f"{target.prefix}/openapi.json describes no operation"
    assert not failures, "\n\n".join(failures)
