"""Every response carries X-Request-ID and makes one access log line; /metrics counts requests
by dialect, route template and status, uploads, builds, jobs, lease expiries; a metrics token
closes it; JSON logs carry the request id and keep secrets out."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from appyard import logs
from appyard.app import create_app
from appyard.core import jobs
from appyard.runtime import Runtime
from appyard.settings import Settings
from appyard.worker import Worker
from tests.conftest import FIXTURES, FakeClock, TenantKey, upload_build


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime, start_worker=False)) as c:
        yield c


def samples(client: TestClient, headers: dict[str, str] | None = None) -> dict[str, float]:
    """``name{label="value",...}`` -> value, labels sorted, from /metrics."""
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            found[f"{s.name}{{{labels}}}"] = s.value
    return found


def value(found: dict[str, float], name: str, **labels: str) -> float:
    key = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return found.get(f"{name}{{{key}}}", 0.0)


def test_every_route_answers_with_a_request_id(client: TestClient, tenant: TenantKey) -> None:
    for path in (
        "/healthz",
        "/readyz",
        "/metrics",
        "/_blob/not-a-token",
        "/automate/status/1",
        "/nowhere",
        "/appyard/v1/openapi.json",
    ):
        response = client.get(path)
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), path
    mine = client.get("/healthz", headers={"X-Request-ID": "ci-run-42.step:3"})
    assert mine.headers["x-request-id"] == "ci-run-42.step:3"
    odd = client.get("/readyz", headers={"X-Request-ID": "no spaces <allowed>"})
    assert odd.headers["x-request-id"] != "no spaces <allowed>"
    dialect = client.get(
        "/automate/status/1",
        headers={"Authorization": f"Bearer {tenant.key}", "X-Request-ID": "trace-7"},
    )
    assert dialect.headers["x-request-id"] == "trace-7"
    assert dialect.headers.get_list("x-request-id") == ["trace-7"]  # once, not per layer


def test_one_access_line_per_request_with_its_ids_and_no_query(
    client: TestClient, tenant: TenantKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="appyard.access")
    client.get(
        "/automate/status/123?secret=abc",
        headers={"Authorization": f"Bearer {tenant.key}", "X-Request-ID": "req-1"},
    )
    client.get("/healthz", headers={"X-Request-ID": "req-2"})

    lines = [r for r in caplog.records if r.name == "appyard.access"]
    assert [r.request_id for r in lines] == ["req-1", "req-2"]  # type: ignore[attr-defined]
    first = lines[0]
    assert first.path == "/automate/status/123"  # type: ignore[attr-defined]
    assert "secret=abc" not in first.getMessage()
    assert first.status == 404 and first.route == "/automate/status/{job_id}"  # type: ignore[attr-defined]
    assert first.tenant_id == tenant.tenant_id  # type: ignore[attr-defined]
    assert first.bytes > 0 and first.duration_ms >= 0  # type: ignore[attr-defined]
    assert f"tenant_id={tenant.tenant_id}" in first.getMessage()
    assert lines[1].tenant_id is None and lines[1].route == "/healthz"  # type: ignore[attr-defined]


def test_metrics_count_requests_by_dialect_route_template_and_status(
    client: TestClient, tenant: TenantKey
) -> None:
    before = samples(client)
    auth = {"Authorization": f"Bearer {tenant.key}"}
    for n in (1, 2, 3):
        client.get(f"/automate/status/{n}", headers=auth)
    client.get("/nowhere/at/all")
    client.put("/_blob/x.y", content=b"12345")
    after = samples(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    status = {"dialect": "automation", "route": "/automate/status/{job_id}", "method": "GET"}
    assert delta("appyard_http_requests_total", **status, status="404") == 3
    assert delta("appyard_http_requests_total", dialect="appyard", route="unmatched",
                 method="GET", status="404") == 1  # fmt: skip
    blob = {"dialect": "blob", "route": "/_blob/{token}", "method": "PUT"}
    assert delta("appyard_http_requests_total", **blob, status="403") == 1
    assert delta("appyard_http_received_bytes_total", dialect="blob") == 5
    assert delta("appyard_http_sent_bytes_total", dialect="automation") > 0
    assert delta("appyard_http_request_duration_seconds_count", **status) == 3
    assert not any("/automate/status/1" in k for k in after)  # no raw paths


def test_metrics_count_uploads_builds_and_jobs(
    client: TestClient, runtime: Runtime, tenant: TenantKey
) -> None:
    before = samples(client)
    upload_build(runtime, tenant, FIXTURES / "fixture-release-v1v2v3.apk")
    assert value(samples(client), "appyard_queue_depth") >= 1
    Worker(runtime.services).run_once("w")
    after = samples(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("appyard_uploads_started_total", purpose="build") == 1
    assert delta("appyard_uploads_finished_total", purpose="build", outcome="completed") == 1
    assert delta("appyard_builds_uploaded_total", source="test") == 1
    assert delta("appyard_builds_finished_total", outcome="processed") == 1
    assert delta("appyard_jobs_finished_total", kind=jobs.PROCESS_BUILD, outcome="succeeded") == 1
    assert delta("appyard_job_duration_seconds_count", kind=jobs.PROCESS_BUILD,
                 outcome="succeeded") == 1  # fmt: skip
    assert delta("appyard_job_attempt_sum", kind=jobs.PROCESS_BUILD) == 1
    assert value(after, "appyard_jobs", kind=jobs.PROCESS_BUILD, state="succeeded") == 1
    assert value(after, "appyard_queue_depth") == 0


def test_an_expired_upload_and_an_expired_lease_are_counted(
    client: TestClient, runtime: Runtime, tenant: TenantKey, clock: FakeClock
) -> None:
    from appyard.core import builds

    svc = runtime.services
    before = samples(client)
    with svc.transaction() as uow:
        builds.request_upload(
            uow,
            svc.clock,
            svc.store,
            svc.policy,
            tenant.actor,
            file_name="never.apk",
            platform="android",
            version="production",
            file_size=10,
            signing_key_id=None,
            source="test",
        )
    upload_build(runtime, tenant, FIXTURES / "fixture-release-v1v2v3.apk")
    with svc.uow() as uow:
        dead = jobs.claim(uow, svc.clock, owner="dead", lease_seconds=10)
        uow.commit()
    assert dead is not None
    clock.advance(seconds=11)
    worker = Worker(svc)
    assert worker.run_once("alive")  # takes the dead worker's job over
    clock.advance(seconds=svc.policy.expiry_seconds)
    worker.sweep()  # the upload that never came expires
    after = samples(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("appyard_uploads_started_total", purpose="build") == 2
    assert delta("appyard_uploads_finished_total", purpose="build", outcome="expired") == 1
    assert delta("appyard_job_lease_expiries_total", kind=jobs.PROCESS_BUILD) == 1
    assert delta("appyard_job_attempt_sum", kind=jobs.PROCESS_BUILD) == 2  # its second run


def test_a_metrics_token_closes_metrics(settings: Settings, runtime: Runtime) -> None:
    closed = Settings(**{**settings.model_dump(), "metrics_token": "s3cret-token"})
    app: FastAPI = create_app(runtime=Runtime(closed, runtime.engine, runtime.services, None))
    with TestClient(app) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/metrics").headers["www-authenticate"].startswith("Bearer")
        assert samples(c, {"Authorization": "Bearer s3cret-token"})


def test_json_lines_carry_the_context_and_never_a_secret() -> None:
    handler = logs.handler("json")
    log = logging.getLogger("appyard.test-json")
    records: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            for f in handler.filters:
                f.filter(record)
            records.append(handler.format(record))

    log.addHandler(Capture())
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        with logs.bound(request_id="r-1", job_id="jb_1", build_id="bd_1"):
            log.info(
                "download path=/_blob/abc.def key=ak_0123456789abcdef0123:topsecret",
                extra={"path": "/_blob/abc.def", "authorization": "Bearer hunter2"},
            )
            try:
                raise ValueError("Bearer hunter2 in a traceback")
            except ValueError:
                log.exception("failed")
        log.info("outside")
    finally:
        log.handlers.clear()
        log.propagate = True

    lines = [json.loads(line) for line in records]
    assert all("\n" not in line for line in records)
    first, failed, outside = lines
    assert first["request_id"] == "r-1" and first["job_id"] == "jb_1"
    assert first["build_id"] == "bd_1" and first["level"] == "INFO"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", first["time"])
    assert first["logger"] == "appyard.test-json"
    assert "topsecret" not in records[0] and "abc.def" not in records[0]
    assert "hunter2" not in records[0] and "hunter2" not in records[1]
    assert "ValueError" in failed["exc_info"]
    assert "request_id" not in outside


def test_text_lines_name_the_context_once() -> None:
    formatter = logs.TextFormatter()
    record = logging.LogRecord("appyard.x", logging.INFO, __file__, 1, "job.done job_id=jb_9",
                               None, None)  # fmt: skip
    with logs.bound(request_id="r-9", job_id="jb_9"):
        logs.ContextFilter().filter(record)
    line = formatter.format(record)
    assert line.endswith("job.done job_id=jb_9 request_id=r-9")


def test_text_lines_tell_the_time_as_python_does_and_never_a_secret() -> None:
    formatter, python = logs.TextFormatter(), logging.Formatter()
    start = time.time()
    # the same second twice, the next one, a minute on, an hour back: each as Python writes it
    for created in (start, start + 0.25, start + 1.0, start + 61.5, start - 3600.0):
        record = logging.LogRecord("appyard.x", logging.INFO, __file__, 1, "key=%s",
                                   ("ak_0123456789abcdef0123:topsecret",), None)  # fmt: skip
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert formatter.formatTime(record) == python.formatTime(record)
        line = formatter.format(record)
        assert line.startswith(python.formatTime(record) + " INFO appyard.x key=")
        assert "topsecret" not in line and "ak_0123456789abcdef0123:[REDACTED]" in line
