"""The distribution spec's two curl examples, every ``-F`` field included, run unmodified but
for the URL, the token and the file path, against a running ``appyard serve``; then the build
goes out: the collaborator's email reaches a real SMTP server and a signed webhook reaches a
real endpoint, both on loopback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from tests.conftest import FIXTURES, SHARED, need
from tests.e2e.conftest import Server, start_server
from tests.going_out import Receiver, SmtpSink

SPEC = SHARED / "specs" / "distribution-upload-api.txt"
RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"


def spec_examples() -> list[str]:
    """Both ``Example Request`` curl commands, exactly as the spec prints them."""
    need(SPEC.exists(), f"{SPEC} is absent")
    text = SPEC.read_text()
    found = []
    for start in [m.start() for m in re.finditer(r"^curl '", text, flags=re.M)]:
        lines = []
        for line in text[start:].splitlines():
            lines.append(line)
            if not line.rstrip().endswith("\\"):
                break
        found.append("\n".join(lines))
    assert len(found) == 2, found
    return found


@pytest.fixture
def server(tmp_path: Path, database_url: str, smtp: SmtpSink) -> Iterator[Server]:
    srv = start_server(
        tmp_path / "srv",
        database_url,
        env_extra={"APPYARD_SMTP_URL": smtp.url, "APPYARD_WEBHOOK_ALLOW_PRIVATE": "true"},
    )
    yield srv
    srv.stop()


def admin_json(server: Server, *args: str) -> dict[str, str]:
    done = server.admin(*args, "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def wait_for(condition: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def test_the_spec_examples_run_and_the_build_goes_out(
    server: Server, smtp: SmtpSink, receiver: Receiver, tmp_path: Path
) -> None:
    need(shutil.which("curl") is not None, "curl runs the spec's examples")
    tenant_id = json.loads(server.admin("list-tenants", "--json").stdout)[0]["id"]
    app_token = admin_json(server, "create-key", "--tenant", "default", "--kind", "app",
                           "--app", "myapp")["key"]  # fmt: skip
    service = admin_json(server, "create-key", "--tenant", "default", "--kind",
                         "service-account")["key"]  # fmt: skip
    admin_json(server, "add-member", "--tenant", "default", "--email", "qa-lead@example.com",
               "--role", "collaborator")  # fmt: skip
    hook = admin_json(server, "add-webhook", "--tenant", "default", "--url", receiver.url,
                      "--events", "build.processed")  # fmt: skip
    shutil.copyfile(RELEASE_APK, tmp_path / "app.apk")

    integrations, workspace = spec_examples()
    # The changes allowed: the URL, the token, the file path.
    integrations = (
        integrations.replace("https://upload.applivery.io", server.url)
        .replace("YOUR_APP_TOKEN", app_token)
        .replace("[email protected]", f"build=@{tmp_path / 'app.apk'}")
    )
    workspace = (
        workspace.replace("https://upload.applivery.io", server.url)
        .replace("ORG_ID", tenant_id)
        .replace("APP_ID", "myapp")
        .replace("YOUR_SERVICE_ACCOUNT_TOKEN", service)
        .replace("[email protected]", f"build=@{tmp_path / 'app.apk'}")
    )
    answers = []
    for command in (integrations, workspace):
        done = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=120, cwd=tmp_path
        )
        assert done.returncode == 0, done.stdout + done.stderr
        answers.append(json.loads(done.stdout))
    first, second = (a["data"] for a in answers)
    assert all(a["status"] is True for a in answers)
    assert first["status"] == "pending" and first["tags"] == ["staging", "sprint-42"]
    assert first["deployer"]["info"]["buildNumber"] == "173"
    assert second["versionName"] == "v3.1.0" and second["deployer"]["name"] == "Internal Deploy Bot"

    def read(build_id: str) -> dict[str, object]:
        done = subprocess.run(
            ["curl", "-sf", "-H", f"Authorization: Bearer {app_token}",
             f"{server.url}/v1/integrations/builds/{build_id}"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return dict(json.loads(done.stdout)["data"])

    wait_for(lambda: read(first["id"])["status"] == "success", "processing")
    wait_for(lambda: len(smtp.received) >= 2, "the notification emails")
    subjects = sorted(m.subject for m in smtp.received)
    assert subjects == ["New build of myapp: 1.0.0 (1)"] * 2
    assert "Fixed crash on login screen" in smtp.received[0].part("plain") or (
        "Performance improvements" in smtp.received[0].part("plain")
    )
    wait_for(lambda: len(receiver.deliveries) >= 2, "the webhook deliveries")
    for delivery in receiver.deliveries:
        payload = Verifier(hook["secret"]).verify(delivery.body, delivery.headers)
        assert payload["type"] == "build.processed"
    log = server.log.read_text()
    assert app_token.split(":")[1] not in log and service.split(":")[1] not in log
    assert hook["secret"] not in log
