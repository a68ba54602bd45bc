"""The dialect kit: every dialect gets request ids, its own error shape for every failure (a
crash included: a 500 with the request id, logged with the traceback, nothing internal), 405s
with ``Allow``, body limits, and an OpenAPI document with its credential scheme. A dialect is
one record in one list, and app.py mounts each."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appyard import errors
from appyard.api import kit
from appyard.api.dialects import DIALECTS
from appyard.api.native.routes import API as NATIVE_API
from appyard.app import create_app
from appyard.runtime import Runtime


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime, start_worker=False)) as c:
        yield c


def test_app_mounts_every_dialect_of_the_list(client: TestClient) -> None:
    names = {d.name for d in DIALECTS}
    assert names == {"automation", "distribution", "management", "store-ci", "upload-context"}
    for dialect in DIALECTS:
        doc = client.get(f"{dialect.prefix}/openapi.json")
        assert doc.status_code == 200, dialect.name
        schema = doc.json()
        assert schema["components"]["securitySchemes"] == dict(dialect.security)
        assert schema["paths"], dialect.name


def test_each_dialect_documents_its_request_bodies(client: TestClient) -> None:
    automation = client.get("/automate/openapi.json").json()
    complete = automation["paths"]["/upload/complete"]["post"]["requestBody"]
    assert "application/json" in complete["content"]
    store = client.get("/portal/api/openapi.json").json()
    form = store["paths"]["/uploads/ci"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["properties"]["apk"]["format"] == "binary"
    assert form["schema"]["required"] == ["apk"]


# Operations whose request has no body, by the specs (upload-context step 1) or by nature.
BODYLESS = {
    ("/api/v1/projects", "/{projectName}/build-uploads"),
    ("/appyard/v1", "/auth/logout"),
    ("/appyard/v1", "/install-links/{link_id}/revoke"),
    ("/appyard/v1", "/webhooks/{webhook_id}/{action}"),
    *(("/appyard/v1", f"/versions/{{version_id}}/{a}") for a in ("submit", "approve", "halt")),
    ("/appyard/v1", "/versions/{version_id}/resume"),
    ("/appyard/v1", "/issues/{issue_id}/resolve"),
}


@pytest.mark.parametrize("prefix", [d.prefix for d in (*DIALECTS, NATIVE_API)])
def test_every_request_body_and_error_body_is_documented(client: TestClient, prefix: str) -> None:
    doc = client.get(f"{prefix}/openapi.json").json()
    assert "HTTPValidationError" not in str(doc)  # no dialect answers FastAPI's 422
    assert doc["components"]["schemas"]["Error"]["type"] == "object"
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            error = operation["responses"]["4XX"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}, (method, path)
            if method in ("post", "put", "patch") and (prefix, path) not in BODYLESS:
                assert operation.get("requestBody", {}).get("content"), (method, path)


def test_each_dialect_documents_its_credential_as_its_spec_has_it(client: TestClient) -> None:
    def security(prefix: str) -> tuple[list[dict[str, list[str]]], dict[str, Any]]:
        doc = client.get(f"{prefix}/openapi.json").json()
        return doc["security"], doc["components"]["securitySchemes"]

    bearer = {"type": "http", "scheme": "bearer"}
    requires, schemes = security("/automate")
    assert (
        requires == [{"automationKey": []}] and schemes["automationKey"].items() >= bearer.items()
    )
    # the management token and the tenant header are one credential: both are sent
    requires, schemes = security("/frontend")
    assert requires == [{"managementToken": [], "tenant": []}]
    assert schemes["tenant"] == {"type": "apiKey", "in": "header", "name": "tenant"}
    # a CI token, or a portal session: either one
    requires, schemes = security("/portal/api")
    assert requires == [{"ciToken": []}, {"session": []}]
    assert schemes["session"] == {"type": "apiKey", "in": "cookie", "name": "appyard_session"}
    for prefix in ("/v1", "/api/v1/projects"):
        requires, schemes = security(prefix)
        assert len(requires) == 1 and all(s.items() >= bearer.items() for s in schemes.values())
    requires, _ = security("/appyard/v1")
    assert requires == [{"token": []}, {"session": []}]


def test_the_distribution_form_describes_its_file_parts_and_fields(client: TestClient) -> None:
    doc = client.get("/v1/openapi.json").json()
    for path in (
        "/integrations/builds",
        "/organizations/{organizationId}/apps/{applicationId}/builds",
    ):
        body = doc["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        schema = body["schema"]
        assert schema["required"] == ["build"]
        for part in ("build", "packageIcon"):
            assert schema["properties"][part]["format"] == "binary", part
        for name in ("versionName", "notifyCollaborators", "deployer.info.commit", "packageName"):
            assert schema["properties"][name]["type"] == "string", name
        (pattern,) = schema["patternProperties"]
        assert re.match(pattern, "filter[0][1]") and not re.match(pattern, "filter[10][0]")


@pytest.mark.parametrize(
    ("method", "path", "shape"),
    [
        ("GET", "/automate/status/1", {"error"}),
        ("POST", "/frontend/get_applications", {"success", "error"}),
        ("GET", "/portal/api/versions/x", {"error", "code"}),
        ("POST", "/api/v1/projects/p/build-uploads", {"status", "error", "message"}),
        ("GET", "/appyard/v1/versions/x", {"error"}),
    ],
)
def test_request_ids_are_echoed_or_made(
    client: TestClient, method: str, path: str, shape: set[str]
) -> None:
    r = client.request(method, path, headers={"X-Request-ID": "ci-run-42.step_7"})
    assert r.status_code == 401 and set(r.json()) == shape
    assert r.headers["x-request-id"] == "ci-run-42.step_7"
    for insane in ("", "a b", "x" * 200, "é"):
        r = client.request(method, path, headers={"X-Request-ID": insane.encode()})
        made = r.headers["x-request-id"]
        assert made != insane and len(made) == 32


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/automate/status/%0A1", {"error"}),
        ("/frontend/%0A", {"success", "error"}),
        ("/portal/api/ci-tokens/%0Ax", {"error", "code"}),
        ("/v1/integrations/builds/%0Ax", {"status", "error"}),
        ("/api/v1/projects/%0Ap/builds/1", {"status", "error", "message"}),
        ("/appyard/v1/members/%0Ax", {"error"}),
    ],
)
def test_a_line_break_in_the_path_stays_with_the_dialect(
    client: TestClient, path: str, shape: set[str]
) -> None:
    """Found by schemathesis: the mount's pattern stopped at a line break, so such a path got
    the outer app's ``{"detail": "Not Found"}`` instead of the dialect's error body."""
    r = client.request("DELETE" if "members" in path else "GET", path)
    assert r.status_code in (401, 404, 405), r.text
    assert set(r.json()) == shape, r.text
    assert len(r.headers["x-request-id"]) == 32


class Boom(Exception):
    pass


def _crashing_routes(app: FastAPI) -> None:
    @app.get("/crash")
    def crash() -> dict[str, Any]:
        raise Boom("secret internals: /var/lib/appyard password=hunter2")

    @app.get("/gone")
    def gone() -> dict[str, Any]:
        raise errors.UploadGone()

    @app.post("/echo")
    def echo(body: dict[str, int]) -> dict[str, int]:
        return body


TEST_DIALECT = kit.Dialect(
    name="test",
    prefix="/t",
    title="a dialect made in a test",
    routes=_crashing_routes,
    statuses={errors.Conflict: 409},
    render=lambda e: {"oops": {"why": e.message, "code": e.code}},
    body_limit=100,
)


@pytest.fixture
def dialect_client(runtime: Runtime) -> Iterator[TestClient]:
    app = FastAPI()
    app.mount(TEST_DIALECT.prefix, kit.mount(TEST_DIALECT, runtime.services))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_a_crash_is_a_500_in_the_dialects_shape_with_the_logged_request_id(
    dialect_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="appyard.api"):
        r = dialect_client.get("/t/crash", headers={"X-Request-ID": "trace-me"})
    assert r.status_code == 500
    assert r.json() == {
        "oops": {"why": "Internal server error (request id trace-me).", "code": "internal"}
    }
    assert "hunter2" not in r.text and "Boom" not in r.text
    assert r.headers["x-request-id"] == "trace-me"
    logged = [rec for rec in caplog.records if "request_id=trace-me" in rec.getMessage()]
    assert logged and logged[0].exc_info and logged[0].exc_info[0] is Boom


def test_errors_take_the_status_of_their_nearest_base_kind(dialect_client: TestClient) -> None:
    r = dialect_client.get("/t/gone")
    assert r.status_code == 409 and r.json()["oops"]["code"] == "upload.gone"


def test_the_body_limit_holds_with_and_without_a_content_length(dialect_client: TestClient) -> None:
    assert dialect_client.post("/t/echo", json={"a": 1}).json() == {"a": 1}
    big = b'{"a": ' + b"1" * 200 + b"}"
    r = dialect_client.post("/t/echo", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["oops"]["code"] == "request.too_large"
    r = dialect_client.post("/t/echo", content=iter([big[:60], big[60:]]))
    assert r.status_code == 413


def test_unknown_paths_and_methods(dialect_client: TestClient) -> None:
    r = dialect_client.get("/t/nowhere")
    assert r.status_code == 404 and r.json()["oops"]["why"] == "Not found."
    r = dialect_client.delete("/t/echo")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
