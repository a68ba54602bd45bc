"""The store CI API as a pipeline uses it: curl -F apk=@app.apk against a server on loopback,
the store team driving the lifecycle with `appyard admin version ...`."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from tests.conftest import FIXTURES, need
from tests.e2e.conftest import Server


def curl(*args: str) -> tuple[int, dict[str, object]]:
    out = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    body, _, code = out.rpartition("\n")
    return int(code), json.loads(body) if body.strip() else {}


def test_ci_pipeline_with_curl_and_store_team_lifecycle(server: Server, tmp_path: Path) -> None:
    need(shutil.which("curl") is not None, "curl is needed")
    made = server.admin("create-key", "--tenant", "default", "--kind", "ci", "--json")
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["key"]
    base = f"{server.url}/portal/api"
    auth = f"Authorization: Bearer {token}"

    shutil.copyfile(FIXTURES / "fixture-release-v1v2v3.apk", tmp_path / "app.apk")
    status, body = curl("-H", auth, "-F", f"apk=@{tmp_path / 'app.apk'}", f"{base}/uploads/ci")
    assert status == 201, body
    version = body["version"]
    assert isinstance(version, dict) and version["status"] == "draft"
    vid = version["id"]

    status, body = curl("-H", auth, "-F", f"apk=@{tmp_path / 'app.apk'}", f"{base}/uploads/ci")
    assert status == 409
    status, body = curl(
        "-H", auth, "-F", f"apk=@{FIXTURES / 'fixture-unsigned.apk'}", f"{base}/uploads/ci"
    )
    assert status == 422 and "not signed" in str(body["error"])

    deadline = time.monotonic() + 60
    while True:
        status, body = curl("-H", auth, f"{base}/versions/{vid}/validation")
        runs = body["runs"]
        assert isinstance(runs, list)
        if runs[0]["status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert runs[0]["status"] == "passed", runs

    for args in (
        ["submit"],
        ["approve"],
        ["release", "--countries", "DE,AT", "--vehicle-contexts", "headunit"],
        ["file-issue", "--title", "Audio glitch", "--severity", "low"],
    ):
        step = server.admin("version", args[0], vid, *args[1:], "--json")
        assert step.returncode == 0, step.stderr
    status, body = curl("-H", auth, f"{base}/versions/{vid}")
    assert body == {
        "id": vid,
        "version_code": 1,
        "version_name": "1.0.0",
        "status": "live",
        "open_issue_count": 1,
    }
    status, body = curl("-H", auth, f"{base}/versions/{vid}/release")
    assert body == {
        "live": True,
        "targets": {"countries": ["DE", "AT"], "vehicle_contexts": ["headunit"]},
    }
    bad = server.admin("version", "approve", vid)
    assert bad.returncode == 1 and "live" in bad.stderr
