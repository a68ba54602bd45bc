"""No secret in what appyard writes: every log line and every CLI output of the test run (the
transcripts tests/conftest.py collects) is read for raw tokens (plain, or Base64 as the
management dialect sends them), webhook secrets, session tokens, install-link tokens, signed-URL
signatures and the signing and sign-in passwords the tests use. The exceptions are where a raw
value is shown once on purpose: the output of the commands that create one (``create-key``,
``create-tenant``, ``add-webhook``, ``install-link``) and the first start's banner.

This file runs last (tests/conftest.py sorts it there), so a whole run is scanned; it also runs
a flow of its own first, against a real server at DEBUG, so that run alone it still reads a
server's log and a client's output where every kind of secret went by."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import APPYARD, FIXTURES, RELEASE_KEY, TRANSCRIPTS
from tests.e2e.conftest import Server, start_server

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"
SHOWN_ONCE = {"create-key", "create-tenant", "add-webhook", "install-link"}
BANNER = re.compile(r"export APPTEGO_API_KEY=")
PASSWORDS = (
    RELEASE_KEY[1],  # the release keystore's
    "fixture-other",
    "ios-test-password",  # tests/signing/ios_kit.py
    "correct horse battery",  # tests/portal/conftest.py
    "a long password",
    "a secret password for the scan",  # this file's user
)
TOKEN = r"(?:ak|ci|mt|at|sa|uc)_[0-9a-f]{20}:[A-Za-z0-9_\-]{20,}"
DETECTORS = {
    "raw token": re.compile(TOKEN),
    "webhook secret": re.compile(r"whsec_[A-Za-z0-9+/=]{16,}"),
    "signed local URL": re.compile(r"/_blob/[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{16,}"),
    "S3 signature": re.compile(r"(?i)X-Amz-Signature=[0-9a-f]{16,}"),
    "install-link token": re.compile(r"/i/[A-Za-z0-9_\-]{32}(?![A-Za-z0-9_\-])"),
    "session cookie": re.compile(r"appyard_session=[A-Za-z0-9_\-]{20,}"),
    "bearer value": re.compile(r"(?i)\bbearer\s+(?!\[REDACTED\])[A-Za-z0-9_\-.:+/=]{20,}"),
    "password": re.compile("|".join(re.escape(p) for p in PASSWORDS)),
}
BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{60,}={0,2}")


def leaks(text: str) -> list[str]:
    """What in ``text`` is a secret, named by kind (with a few characters of context)."""
    found = []
    for kind, pattern in DETECTORS.items():
        for m in pattern.finditer(text):
            found.append(f"{kind}: ...{text[max(0, m.start() - 30) : m.start() + 12]}...")
    for m in BASE64_RUN.finditer(text):
        try:
            decoded = base64.b64decode(m.group(), validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if re.search(TOKEN, decoded):
            found.append(f"Base64 token: {m.group()[:12]}...")
    return found


def test_the_detectors_find_each_kind_of_secret() -> None:
    raw = "ak_0123456789abcdef0123:" + "Ab1_" * 11
    assert leaks(f"key {raw}") and leaks(base64.b64encode(raw.encode()).decode())
    assert leaks("GET /_blob/eyJrIjoiYSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ HTTP/1.1")
    assert leaks("?X-Amz-Signature=" + "ab" * 32) and leaks("Authorization: Bearer " + "x" * 43)
    assert leaks("GET /i/" + "Ab1_" * 8 + " 200") and leaks("whsec_" + "A" * 32)
    assert leaks(f"password={RELEASE_KEY[1]}") and leaks("appyard_session=" + "z" * 43)
    assert not leaks("GET /_blob/[REDACTED] 200 ak_0123456789abcdef0123:[REDACTED]")
    assert not leaks("Authorization: Bearer [REDACTED]; sha256 " + "ab" * 32)


@dataclass
class Transcript:
    path: Path
    argv: list[str]
    lines: list[str]


def transcripts(folder: Path) -> Iterator[Transcript]:
    for path in sorted(folder.iterdir()):
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.name.startswith(("cli-", "runner-")):
            head, _, body = text.partition("\n")
            yield Transcript(path, json.loads(head), body.splitlines())
        else:
            yield Transcript(path, [], text.splitlines())


def scan(folder: Path) -> tuple[int, list[str]]:
    """How many lines were read, and every leak outside the places a value is shown once."""
    read, found = 0, []
    for t in transcripts(folder):
        if SHOWN_ONCE & set(t.argv):
            continue
        for number, line in enumerate(t.lines, 1):
            read += 1
            if BANNER.search(line):
                continue
            found += [f"{t.path.name}:{number} ({' '.join(t.argv[:3])}): {x}" for x in leaks(line)]
    return read, found


def cli(server: Server, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [*APPYARD, *args],
        env={**server.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    srv = start_server(
        tmp_path / "srv",
        database_url,
        env_extra={"APPYARD_LOG_LEVEL": "DEBUG", "APPYARD_WEBHOOK_ALLOW_PRIVATE": "true"},
    )
    yield srv
    srv.stop()


def a_flow_where_every_secret_goes_by(server: Server, tmp_path: Path) -> None:
    """Keys, a management key in Base64, signed URLs both ways, a session, an install link
    opened, a webhook secret, a signing key's password, the CI client: through a real server."""
    made = json.loads(cli(server, "admin", "create-key", "--tenant", "default", "--json"))
    key = made["key"]
    cli(server, "admin", "list-keys", "--tenant", "default")
    keystore, password, alias = RELEASE_KEY
    cli(
        server,
        "admin", "add-signing-key", "--tenant", "default", "--name", "release",
        "--keystore", str(FIXTURES / "keys" / keystore), "--alias", alias,
        "--password-env", "SCAN_KEYSTORE_PASSWORD", "--default",
        env={"SCAN_KEYSTORE_PASSWORD": password},
    )  # fmt: skip
    cli(
        server, "admin", "create-user", "scan@default.test", "--name", "Scan",
        "--role", "developer", "--tenant", "default", "--password-env", "SCAN_PASSWORD",
        env={"SCAN_PASSWORD": "a secret password for the scan"},
    )  # fmt: skip
    hook = json.loads(
        cli(
            server,
            "admin",
            "add-webhook",
            "--tenant",
            "default",
            "--url",
            "http://127.0.0.1:9/hook",
            "--json",
        )
    )
    cli(server, "admin", "list-webhooks", "--tenant", "default")
    work = tmp_path / "ci"
    work.mkdir()
    shutil.copyfile(RELEASE_APK, work / "app.apk")
    env = {"APPYARD_URL": server.url, "APPYARD_TOKEN": key}
    done = subprocess.run(
        [*APPYARD, "upload", "app.apk", "--wait", "--download", "out.apk", "--json"],
        cwd=work, env={**server.env, **env}, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode in (0, 3), done.stdout + done.stderr
    number = json.loads(done.stdout)["job_id"]
    subprocess.run(
        [*APPYARD, "status", str(number)], env={**server.env, **env}, capture_output=True,
        timeout=60, check=True,
    )  # fmt: skip
    auth = {"Authorization": f"Bearer {key}"}
    status = httpx.get(f"{server.url}/automate/download/{number}", headers=auth).json()
    assert httpx.get(status["download_url"]).status_code == 200
    mgmt = json.loads(
        cli(server, "admin", "create-key", "--tenant", "default", "--kind", "management", "--json")
    )["key"]
    basic = base64.b64encode(mgmt.encode()).decode()
    assert httpx.post(
        f"{server.url}/frontend/get_applications",
        headers={"Authorization": f"Bearer {basic}", "tenant": "default"}, json={},
    ).status_code == 200  # fmt: skip
    with httpx.Client(base_url=server.url) as person:
        r = person.post(
            "/appyard/v1/auth/login",
            json={"email": "scan@default.test", "password": "a secret password for the scan"},
        )
        assert r.status_code == 200, r.text
        assert person.get("/").status_code == 200
        person.post("/appyard/v1/auth/logout")
    link = json.loads(cli(server, "admin", "install-link", str(number), "--json"))
    assert httpx.get(link["url"]).status_code == 200
    assert httpx.get(link["url"] + "/download").status_code in (200, 302)
    assert hook["secret"].startswith("whsec_")


def test_no_secret_in_any_log_line_or_cli_output(server: Server, tmp_path: Path) -> None:
    folder = Path(os.environ[TRANSCRIPTS])
    a_flow_where_every_secret_goes_by(server, tmp_path)
    server.stop()  # its last lines written
    read, found = scan(folder)
    assert read > 100, f"only {read} lines were read: are transcripts being written?"
    assert not found, "\n".join(found[:50]) + f"\n({len(found)} in all)"
