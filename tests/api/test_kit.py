"""The dialect kit: every dialect gets request ids, its own error shape for every failure (a
crash included: a 500 with the request id, logged with the traceback, nothing internal), 405s
with ``Allow``, body limits, and an OpenAPI document with its credential scheme. A dialect is
one record in one list, and app.py mounts each."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appyard import errors
from appyard.api import kit
from appyard.api.dialects import DIALECTS
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
