"""Operating appyard, with real processes on loopback: two `serve` processes on one data dir
whose metrics add up, `appyard worker`'s health port, the download listener's liveness, JSON
logs (Granian's lines too), and a backup of a running server restored into an empty folder
that then serves the build."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import APPYARD, FIXTURES, free_port, wait_for_port
from tests.e2e.conftest import Server, start_server
from tests.e2e.test_automation_e2e import wait_done

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"


def scrape(url: str, headers: dict[str, str] | None = None) -> dict[tuple[str, str], float]:
    """(name, route label) -> value summed over the other labels."""
    response = httpx.get(f"{url}/metrics", headers=headers or {}, timeout=30)
    assert response.status_code == 200, response.text
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            key = (s.name, s.labels.get("route", ""))
            found[key] = found.get(key, 0.0) + s.value
    return found


def healthz_count(url: str) -> float:
    return scrape(url).get(("appyard_http_requests_total", "/healthz"), 0.0)


def test_two_serve_processes_on_one_data_dir_add_up_their_metrics(
    tmp_path: Path, database_url: str
) -> None:
    data = tmp_path / "shared"
    first = start_server(data, database_url)
    second = start_server(data, database_url)
    try:
        for _ in range(3):
            assert httpx.get(f"{first.url}/healthz").status_code == 200
        for _ in range(5):
            assert httpx.get(f"{second.url}/healthz").status_code == 200
        headers = {"Authorization": f"Bearer {first.key}"}
        ticket = httpx.post(
            f"{second.url}/automate/upload",
            headers=headers,
            json={"file_name": "app.apk", "platform": "android", "version": "prod"},
        ).json()
        assert httpx.put(ticket["upload_url"], content=RELEASE_APK.read_bytes()).is_success
        with httpx.Client(base_url=first.url, headers=headers) as api:
            assert wait_done(api, ticket["job_id"])["status"] == "completed"

        for url in (first.url, second.url):  # either process answers for both
            assert healthz_count(url) == 8
        both = scrape(first.url)
        assert both[("appyard_uploads_started_total", "")] == 1
        assert both[("appyard_builds_uploaded_total", "")] == 1
        assert both[("appyard_http_requests_total", "/automate/upload")] == 1
        assert both[("appyard_jobs", "")] >= 1
        pids = {p.stem.rsplit("_", 1)[1] for p in (data / "metrics").rglob("*.db")}
        assert {str(first.proc.pid), str(second.proc.pid)} <= pids

        second.stop()
        assert healthz_count(first.url) == 8  # a stopped process's counts stay until a start
        third = start_server(data, database_url)  # a start removes the dead process's files
        try:
            assert healthz_count(third.url) == 3
        finally:
            third.stop()
    finally:
        first.stop()
        second.stop()


def test_the_worker_answers_health_and_metrics_on_its_own_port(
    server: Server, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "worker.log"
    env = {**server.env, "APPYARD_METRICS_TOKEN": "scrape-me"}
    with open(log, "wb") as fh:
        worker = subprocess.Popen(
            [*APPYARD, "worker", "--health-port", str(port)],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, worker)
        base = f"http://127.0.0.1:{port}"
        live = httpx.get(f"{base}/healthz", headers={"X-Request-ID": "probe-1"})
        assert live.status_code == 200 and live.json() == {"status": "ok"}
        assert live.headers["x-request-id"] == "probe-1"
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"
        assert httpx.get(f"{base}/metrics").status_code == 401
        found = scrape(base, {"Authorization": "Bearer scrape-me"})
        assert ("appyard_queue_depth", "") in found
        assert httpx.get(f"{base}/nothing").status_code == 404
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    assert worker.returncode == 0, log.read_text()
    assert "http.request method=GET path=/healthz status=200" in log.read_text()


def test_the_download_listener_answers_liveness(server: Server) -> None:
    port = server.env["APPYARD_DOWNLOAD_PORT"]
    answer = httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Request-ID": "dl-1"})
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}
    assert answer.headers["x-request-id"] == "dl-1"
    missing = httpx.get(f"http://127.0.0.1:{port}/_blob/nope.nope")
    assert missing.status_code == 403 and len(missing.headers["x-request-id"]) == 32
    api = httpx.get(f"{server.url}/healthz")
    assert api.status_code == 200 and len(api.headers["x-request-id"]) == 32


def test_json_logs_are_one_object_per_line_granians_included(
    tmp_path: Path, database_url: str
) -> None:
    srv = start_server(tmp_path / "srv", database_url, env_extra={"APPYARD_LOG_FORMAT": "json"})
    try:
        headers = {"Authorization": f"Bearer {srv.key}", "X-Request-ID": "json-run-1"}
        httpx.get(f"{srv.url}/automate/status/1", headers=headers)
        httpx.get(f"{srv.url}/healthz")
        port = srv.env["APPYARD_DOWNLOAD_PORT"]
        httpx.get(f"http://127.0.0.1:{port}/_blob/aaaa.bbbb")
        time.sleep(0.2)
    finally:
        srv.stop()
    text = srv.log.read_text()
    # Every log line is one JSON object; the rest is the console's words for a person.
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    others = [line for line in text.splitlines() if line.strip() and not line.startswith("{")]
    assert not [line for line in others if re.match(r"^(\[\w+\]|\d{4}-\d\d-\d\d )", line)]
    lines = [line for line in text.splitlines() if line.startswith("{")]
    assert any(r["logger"].startswith("_granian") for r in records)
    access = [r for r in records if r["logger"] == "appyard.access"]
    mine = [r for r in access if r.get("request_id") == "json-run-1"]
    assert mine and mine[0]["route"] == "/automate/status/{job_id}"
    assert mine[0]["status"] == 404 and "tenant_id" in mine[0] and mine[0]["tenant_id"]
    blob = [r for r in access if r.get("dialect") == "downloads"]
    assert blob and blob[0]["path"] == "/_blob/[REDACTED]"
    assert "aaaa.bbbb" not in srv.log.read_text()
    assert srv.key.split(":")[1] not in "".join(lines)


def test_a_backup_of_a_running_server_restores_into_an_empty_folder(tmp_path: Path) -> None:
    data = tmp_path / "srv"
    original = start_server(data, f"sqlite:///{data / 'appyard.db'}")
    headers = {"Authorization": f"Bearer {original.key}"}
    try:
        ticket = httpx.post(
            f"{original.url}/automate/upload",
            headers=headers,
            json={"file_name": "app.apk", "platform": "android", "version": "prod"},
        ).json()
        assert httpx.put(ticket["upload_url"], content=RELEASE_APK.read_bytes()).is_success
        with httpx.Client(base_url=original.url, headers=headers) as api:
            assert wait_done(api, ticket["job_id"])["status"] == "completed"
            url = api.get(f"/automate/download/{ticket['job_id']}").json()["download_url"]
        output = httpx.get(url).content
        assert output[:2] == b"PK"

        made = original.admin("backup", str(tmp_path / "backup"), "--json")  # while it runs
        assert made.returncode == 0, made.stderr
        manifest = json.loads(made.stdout)
        assert manifest["database"] == "sqlite" and manifest["revision"]
        assert set(manifest["keys"]) == {"master.key", "secret.key"}
        assert manifest["objects"] >= 2  # the input and the output
        assert (tmp_path / "backup" / "keys" / "master.key").stat().st_mode & 0o077 == 0
        refused = original.admin("backup", str(tmp_path / "backup"))
        assert refused.returncode == 2 and "not an empty folder" in refused.stderr
    finally:
        original.stop()

    restored_dir = tmp_path / "restored"
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPYARD_")}
    restored = subprocess.run(
        [*APPYARD, "admin", "restore", str(tmp_path / "backup"), "--data-dir", str(restored_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert restored.returncode == 0, restored.stderr
    assert (restored_dir / "master.key").stat().st_mode & 0o077 == 0

    again = start_server(restored_dir, f"sqlite:///{restored_dir / 'appyard.db'}")
    try:
        assert again.key == ""  # the restored tenant was found: no first key printed
        with httpx.Client(base_url=again.url, headers=headers) as api:
            status = api.get(f"/automate/status/{ticket['job_id']}").json()
            assert status["status"] == "completed"
            url = api.get(f"/automate/download/{ticket['job_id']}").json()["download_url"]
        assert url.startswith(f"http://127.0.0.1:{again.env['APPYARD_DOWNLOAD_PORT']}/")
        assert httpx.get(url).content == output
    finally:
        again.stop()


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPYARD_")}
    result = subprocess.run(
        [*APPYARD, "admin", "restore", str(tmp_path / "empty"), "--data-dir", str(tmp_path / "d")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "no manifest.json" in result.stderr
