"""``appyard upload|status|download|findings`` against a live ``appyard serve``: the first
start's signing key makes the first build verify, exit codes a pipeline can branch on,
--json alone on stdout, resumable multipart uploads, and no secret in any output."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import httpx
import jsonschema
import pytest

from tests.cli.conftest import Cli, serve
from tests.conftest import APPYARD, FIXTURES, need, padded_apk

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"
SCHEMA = Path(__file__).parent / "schemas" / "sarif-schema-2.1.0.json"


def secrets_of(cli: Cli) -> list[str]:
    """What must never be printed: the key's secret."""
    return [cli.server.key.split(":", 1)[1]]


def assert_no_secrets(cli: Cli, *texts: str) -> None:
    for text in texts:
        for secret in secrets_of(cli):
            assert secret not in text
        assert "/_blob/" not in text  # signed URLs of the local store
        assert "X-Amz-Signature" not in text


def test_upload_waits_downloads_and_the_first_build_verifies(cli: Cli, tmp_path: Path) -> None:
    shutil.copyfile(RELEASE_APK, tmp_path / "app-release.apk")
    r = cli.run(
        "upload",
        "app-release.apk",
        "--wait",
        "--download",
        "out/app-signed.apk",
        "--json",
        "--verbose",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout is the JSON document alone
    assert doc["status"] == "completed" and doc["exit_code"] == 0
    assert doc["build_id"].startswith("bd_") and doc["job_id"].isdigit()
    out = tmp_path / "out" / "app-signed.apk"
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert doc["sha256"] == digest == doc["download"]["sha256"]
    assert doc["signed"] is True
    assert "POST /automate/upload -> 200" in r.stderr  # --verbose says what it does...
    assert_no_secrets(cli, r.stdout, r.stderr)  # ...and never a token or a signed URL
    # the first start made a signing key: its certificate is the banner's, and it verifies
    banner = cli.server.log.read_text()
    fingerprint = re.search(r"certificate SHA-256: ([0-9A-F:]+)", banner)
    assert fingerprint is not None
    need(shutil.which("apksigner") is not None, "apksigner is needed to verify the output")
    verify = subprocess.run(
        ["apksigner", "verify", "--print-certs", str(out)], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    expected = fingerprint.group(1).replace(":", "").lower()
    assert f"certificate SHA-256 digest: {expected}" in verify.stdout


def test_status_download_and_findings_commands(cli: Cli, tmp_path: Path) -> None:
    shutil.copyfile(RELEASE_APK, tmp_path / "app.apk")
    up = cli.run("upload", "app.apk", "--wait", "--json", cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    job = json.loads(up.stdout)["job_id"]

    status = cli.run("status", job)
    assert status.returncode == 0 and "completed, signed" in status.stdout

    got = cli.run("download", job, "-o", str(tmp_path / "dl.apk"), "--json")
    assert got.returncode == 0, got.stderr
    doc = json.loads(got.stdout)
    assert hashlib.sha256((tmp_path / "dl.apk").read_bytes()).hexdigest() == doc["sha256"]

    sarif_path = tmp_path / "appyard.sarif"
    r = cli.run("findings", job, "--format", "sarif", "-o", str(sarif_path))
    assert r.returncode == 0, r.stderr
    sarif = json.loads(sarif_path.read_text())
    jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(sarif)
    (run,) = sarif["runs"]
    rules = {rule["id"]: rule for rule in run["tool"]["driver"]["rules"]}
    assert "debuggable" in rules and rules["debuggable"]["help"]["text"]
    assert {res["ruleId"] for res in run["results"]} == {"target_sdk_too_low", "allow_backup"}
    assert run["properties"]["job_id"] == job

    junit = cli.run("findings", job, "--format", "junit")
    assert junit.returncode == 0
    cases = ET.fromstring(junit.stdout).findall(".//testcase")
    by_name = {c.get("name", "").split(":")[0]: c for c in cases}
    assert by_name["target_sdk_too_low"].find("failure") is not None
    assert by_name["debuggable"].find("failure") is None
    assert by_name["debuggable"].find("skipped") is None  # passed
    assert by_name["unsigned_apk"].find("skipped") is not None  # moot when appyard signs

    github = cli.run("findings", job, "--github")
    assert github.returncode == 0
    assert any(
        line.startswith("::warning file=app.apk,title=target_sdk_too_low")
        for line in github.stdout.splitlines()
    )


def test_blocking_findings_exit_3_and_a_broken_file_exits_1(cli: Cli, tmp_path: Path) -> None:
    shutil.copyfile(FIXTURES / "fixture-debuggable.apk", tmp_path / "debug.apk")
    blocked = cli.run("upload", "debug.apk", "--wait", "--json", cwd=tmp_path)
    assert blocked.returncode == 3, blocked.stderr
    doc = json.loads(blocked.stdout)
    assert doc["status"] == "failed" and doc["findings"]["blocking"] >= 1
    assert "debuggable" in blocked.stderr

    (tmp_path / "broken.apk").write_bytes(b"PK\x03\x04 not really a zip")
    broken = cli.run("upload", "broken.apk", "--wait", cwd=tmp_path)
    assert broken.returncode == 1, broken.stderr
    assert "failed" in broken.stderr


def test_configuration_and_usage_errors(cli: Cli, tmp_path: Path) -> None:
    shutil.copyfile(RELEASE_APK, tmp_path / "app.apk")
    wrong = cli.run("upload", "app.apk", "--token", "ak_00000000000000000000:nope", cwd=tmp_path)
    assert wrong.returncode == 5 and "refused the token" in wrong.stderr
    assert "nope" not in wrong.stderr
    nowhere = cli.run("status", "1", env={"APPYARD_URL": ""}, cwd=tmp_path)
    assert nowhere.returncode == 5 and "No server URL" in nowhere.stderr
    unreachable = cli.run("status", "1", "--url", "http://127.0.0.1:9", cwd=tmp_path)
    assert unreachable.returncode == 5 and "Cannot reach" in unreachable.stderr
    missing = cli.run("upload", "missing.apk", cwd=tmp_path)
    assert missing.returncode == 2
    unknown = cli.run("status", "123")
    assert unknown.returncode == 1 and "not found" in unknown.stderr


def test_the_config_file_is_read_after_flags_and_environment(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "appyard.toml"
    config.write_text(f'url = "{cli.server.url}"\ntoken = "{cli.server.key}"\n')
    shutil.copyfile(RELEASE_APK, tmp_path / "app.apk")
    env = {"APPYARD_URL": "", "APPYARD_TOKEN": ""}
    r = cli.run("upload", "app.apk", "--config", str(config), "--json", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] in {"processing", "completed"}  # the worker may be quick
    flag_wins = cli.run(
        "status", "1", "--config", str(config), "--url", "http://127.0.0.1:9", env=env
    )
    assert flag_wins.returncode == 5


def test_wait_times_out_with_exit_4(tmp_path: Path) -> None:
    srv = serve(tmp_path, "--no-worker")  # nothing processes the build
    try:
        cli = Cli(server=srv, home=tmp_path / "config")
        shutil.copyfile(RELEASE_APK, tmp_path / "app.apk")
        r = cli.run("upload", "app.apk", "--wait", "--timeout", "2s", "--json", cwd=tmp_path)
        assert r.returncode == 4, r.stderr
        assert json.loads(r.stdout)["exit_code"] == 4
        assert "--timeout ran out" in r.stderr
    finally:
        srv.stop()


def test_an_interrupted_multipart_upload_resumes_with_the_missing_parts(tmp_path: Path) -> None:
    chunk = 128 * 1024
    srv = serve(
        tmp_path,
        env={
            "APPYARD_MULTIPART_THRESHOLD": str(1024 * 1024),
            "APPYARD_MULTIPART_CHUNK_SIZE": str(chunk),
        },
    )
    try:
        cli = Cli(server=srv, home=tmp_path / "config")
        apk = padded_apk(tmp_path / "big.apk", 40 * 1024 * 1024)
        total = -(-apk.stat().st_size // chunk)
        state_dir = tmp_path / "config" / "appyard" / "uploads"
        first = subprocess.Popen(
            [*APPYARD, "upload", "big.apk", "--parallel", "1", "--quiet"],
            env=cli.env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        api = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.key}"})
        try:
            deadline = time.monotonic() + 60
            job = None
            while time.monotonic() < deadline and first.poll() is None:
                states = list(state_dir.glob("*.json")) if state_dir.exists() else []
                if states and job is None:
                    job = json.loads(states[0].read_text())["job_id"]
                if job is not None:
                    seen = api.get(f"/appyard/v1/builds/{job}/upload").json()
                    if seen["parts"]:
                        break
                time.sleep(0.01)
            os.kill(first.pid, signal.SIGKILL)  # interrupted mid-upload, no chance to clean up
            first.wait()
            assert job is not None, "the client kept no resumable state"
            held = len(api.get(f"/appyard/v1/builds/{job}/upload").json()["parts"])
            assert held >= 1
            state = next(state_dir.glob("*.json")).read_text()
            assert srv.key.split(":", 1)[1] not in state and "/_blob/" not in state
        finally:
            api.close()
        again = cli.run("upload", "big.apk", "--wait", "--json", "--parallel", "4", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        doc = json.loads(again.stdout)
        assert doc["job_id"] == job and doc["status"] == "completed"
        assert doc["upload"]["resumed"] is True
        assert doc["upload"]["parts_total"] == total
        assert doc["upload"]["parts_sent"] == total - held
        assert f"{held} of {total} parts already on the server" in again.stderr
        assert not list(state_dir.glob("*.json"))  # the state goes once the upload completed
    finally:
        srv.stop()


@pytest.mark.parametrize("fmt", ["sarif", "junit"])
def test_inspect_writes_ci_reports_for_a_local_file(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"report.{fmt}"
    r = subprocess.run(
        [
            *APPYARD,
            "inspect",
            str(FIXTURES / "fixture-debuggable.apk"),
            "--format",
            fmt,
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 3, r.stderr  # debuggable is blocking in production
    if fmt == "sarif":
        sarif = json.loads(out.read_text())
        jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(sarif)
        results = sarif["runs"][0]["results"]
        assert any(res["ruleId"] == "debuggable" and res["level"] == "error" for res in results)
        assert sarif["runs"][0]["artifacts"][0]["hashes"]["sha-256"]
    else:
        suite = ET.parse(out).getroot().find("testsuite")
        assert suite is not None
        failed = {
            c.get("name", "").split(":")[0]
            for c in suite.findall("testcase")
            if c.find("failure") is not None
        }
        assert "debuggable" in failed
        assert int(suite.get("tests", "0")) == len(suite.findall("testcase"))


def test_an_interrupted_single_put_is_aborted_and_sent_again(cli: Cli, tmp_path: Path) -> None:
    """A single PUT cannot resume: the run after an interruption ends the old build (its
    slot freed) and uploads the file as a new one."""
    shutil.copyfile(RELEASE_APK, tmp_path / "app.apk")
    size = (tmp_path / "app.apk").stat().st_size
    api = httpx.Client(
        base_url=cli.server.url, headers={"Authorization": f"Bearer {cli.server.key}"}
    )
    ticket = api.post(
        "/automate/upload",
        json={
            "file_name": "app.apk",
            "platform": "android",
            "version": "production",
            "file_size": size,
        },
    ).json()
    # what the interrupted run left in the config directory (its bytes never arrived)
    digest = hashlib.sha256((tmp_path / "app.apk").read_bytes()).hexdigest()
    state = cli.home / "appyard" / "uploads" / f"{digest}.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({
        "server": cli.server.url, "version": "production", "signing_key": None,
        "job_id": ticket["job_id"], "file_path": ticket["file_path"], "upload_id": None,
        "multipart": False, "file_size": size,
    }))  # fmt: skip
    r = cli.run("upload", "app.apk", "--wait", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["job_id"] != ticket["job_id"]
    old = api.get(f"/appyard/v1/builds/{ticket['job_id']}").json()
    assert old["status"] == "failed" and "aborted" in old["error_message"]
    assert not state.exists()
    api.close()


def test_progress_is_a_bar_on_a_terminal_plain_lines_otherwise_and_nothing_when_quiet(
    cli: Cli, tmp_path: Path
) -> None:
    import pty

    shutil.copyfile(RELEASE_APK, tmp_path / "app.apk")
    plain = cli.run("upload", "app.apk", cwd=tmp_path)  # stderr is a pipe here, as in CI
    assert plain.returncode == 0, plain.stderr
    assert re.search(
        r"upload app\.apk: [\d.]+ MiB of [\d.]+ MiB \(100%\), [\d.]+ MiB/s", plain.stderr
    )
    assert "━" not in plain.stderr

    quiet = cli.run("upload", "app.apk", "--quiet", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""

    leader, follower = pty.openpty()  # a terminal: rich draws its bar with bytes and speed
    proc = subprocess.Popen(
        [*APPYARD, "upload", "app.apk"],
        cwd=tmp_path,
        env={**cli.env, "TERM": "xterm", "COLUMNS": "120"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(60) == 0
    os.close(leader)
    text = seen.decode("utf-8", "replace")
    assert "━" in text and "upload app.apk" in text and "8.7/8.7 kB" in text  # bytes done/total
    assert_no_secrets(cli, text)


def test_a_download_whose_sha256_differs_is_refused(cli: Cli, tmp_path: Path) -> None:
    shutil.copyfile(RELEASE_APK, tmp_path / "app.apk")
    up = cli.run("upload", "app.apk", "--wait", "--json", cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    job = json.loads(up.stdout)["job_id"]
    # the stored output changes behind the server's back (a disk error, a tampered store)
    blobs = cli.server.data_dir / "blobs" / "objects"
    outputs = list(blobs.glob(f"*/outputs/android/production/{job}/*"))
    assert len(outputs) == 1
    data = bytearray(outputs[0].read_bytes())
    data[-1] ^= 0xFF  # the zip comment's length: one byte changed
    outputs[0].write_bytes(bytes(data))
    r = cli.run("download", job, "-o", str(tmp_path / "out.apk"))
    assert r.returncode == 1 and "differs from the server's" in r.stderr
    assert not (tmp_path / "out.apk").exists()


def test_store_puts_are_retried_with_backoff(tmp_path: Path) -> None:
    """Transient answers of a store (503, a dropped connection) are retried; the bytes sent
    again are the same; a refusal (403) is not retried."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from appyard.cli import remote

    seen: list[tuple[str, int, bytes]] = []

    class Flaky(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, len(seen), body))
            tries = sum(1 for p, _, _ in seen if p == self.path)
            if self.path == "/refused":
                self.send_response(403)
                self.end_headers()
            elif tries <= 2:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_response(200)
                self.send_header("ETag", '"abc"')
                self.send_header("Content-Length", "0")
                self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    path = tmp_path / "part.bin"
    path.write_bytes(os.urandom(3000))
    said: list[str] = []
    server = remote.Server(base, "ak_x:y", verbose=said.append, retry=remote.Retry(base=0.01))
    try:
        response = server.put(
            f"{base}/part", remote.read_range(path, 1000, 1500, lambda n: None), 1500, what="p"
        )
        assert response.headers["etag"] == '"abc"'
        bodies = [b for p, _, b in seen if p == "/part"]
        assert len(bodies) == 3 and all(b == path.read_bytes()[1000:2500] for b in bodies)
        assert sum("retrying" in line for line in said) == 2
        with pytest.raises(remote.ClientError, match="refused"):
            server.put(
                f"{base}/refused", remote.read_range(path, 0, 10, lambda n: None), 10, what="p"
            )
        assert sum(1 for p, _, _ in seen if p == "/refused") == 1
    finally:
        server.close()
        httpd.shutdown()
