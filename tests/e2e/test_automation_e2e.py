"""End to end over loopback: the spec's example script verbatim, a 100 MB+ multipart upload,
the admin CLI against a running server, and a restart that loses no job."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import httpx

from tests.conftest import FIXTURES, KEYS, SHARED, need
from tests.e2e.conftest import Server, start_server

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"
SPEC = SHARED / "specs" / "protection-automation-api.txt"


def spec_script() -> str:
    """The "Example: Single-Part Workflow" script, exactly as the spec prints it."""
    need(SPEC.exists(), f"{SPEC} is absent")
    text = SPEC.read_text()
    start = text.index("set -euo pipefail", text.index("Example: Single-Part Workflow"))
    end = text.index('-o "$OUTPUT_FILE"', start) + len('-o "$OUTPUT_FILE"')
    return text[start:end] + "\n"


def test_spec_single_part_script_runs_unmodified(server: Server, tmp_path: Path) -> None:
    need(
        shutil.which("jq") is not None and shutil.which("curl") is not None,
        "jq and curl are needed to run the spec's script",
    )
    script = spec_script()
    # The only changes the spec allows: API_URL and the key (given in the environment).
    script = re.sub(
        r'^API_URL=".*"$', f'API_URL="{server.url}"', script, count=1, flags=re.MULTILINE
    )
    work = tmp_path / "ci"
    work.mkdir()
    shutil.copyfile(RELEASE_APK, work / "app-release.apk")
    (work / "pipeline.sh").write_text(script)
    result = subprocess.run(
        ["bash", "pipeline.sh"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "APPTEGO_API_KEY": server.key},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Build complete" in result.stdout
    out = work / "app-release-protected.apk"
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None
        assert "AndroidManifest.xml" in zf.namelist()
        assert "classes.dex" in zf.namelist()


def big_apk(path: Path, size: int) -> None:
    """A real APK of at least ``size`` bytes: the fixture plus a stored random asset."""
    with zipfile.ZipFile(RELEASE_APK) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            if not info.filename.startswith("META-INF/"):
                dst.writestr(info, src.read(info))
        with dst.open(zipfile.ZipInfo("assets/big.bin"), "w") as fh:
            block = os.urandom(1024 * 1024)
            for _ in range(size // len(block) + 1):
                fh.write(block)


def wait_done(client: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, object] = client.get(f"/automate/status/{job_id}").json()
        if body["status"] != "processing":
            return body
        time.sleep(0.2)
    raise TimeoutError(body)


def test_multipart_upload_of_100_mb_or_more(server: Server, tmp_path: Path) -> None:
    """A 105 MB APK through multipart parts; the tenant's managed key signs the output."""
    added = server.admin(
        "add-signing-key",
        "--tenant",
        "default",
        "--name",
        "release",
        "--keystore",
        str(KEYS / "release.p12"),
        "--alias",
        "release",
        "--password-env",
        "KEYSTORE_PASSWORD",
        "--default",  # in place of the key the first start made
        "--json",
        env={"KEYSTORE_PASSWORD": "fixture-release"},
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["default"] is True
    path = tmp_path / "app-release.apk"
    big_apk(path, 105 * 1024 * 1024)
    size = path.stat().st_size
    headers = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as api:
        ticket = api.post(
            "/automate/upload",
            json={
                "file_name": "app-release.apk",
                "platform": "android",
                "version": "staging",
                "file_size": size,
            },
        ).json()
        assert ticket["multipart"] is True
        assert ticket["chunk_size"] == 10 * 1024 * 1024
        assert ticket["total_parts"] == len(ticket["part_urls"]) == -(-size // (10 * 1024 * 1024))
        parts = []
        with open(path, "rb") as fh, httpx.Client(timeout=60) as raw:
            for number, url in enumerate(ticket["part_urls"], start=1):
                r = raw.put(url, content=fh.read(ticket["chunk_size"]))
                assert r.status_code == 200
                parts.append({"ETag": r.headers["ETag"], "PartNumber": number})
        r = api.post(
            "/automate/upload/complete",
            json={
                "file_path": ticket["file_path"],
                "upload_id": ticket["upload_id"],
                "parts": parts,
            },
        )
        assert r.status_code == 200, r.text
        done = wait_done(api, ticket["job_id"])
        assert done["status"] == "completed", done.get("error_message")
        dl = api.get(f"/automate/download/{ticket['job_id']}").json()
        protected = tmp_path / "protected.apk"
        with (
            httpx.stream("GET", dl["download_url"], timeout=60) as out,
            open(protected, "wb") as fh,
        ):
            assert out.status_code == 200
            for chunk in out.iter_bytes():
                fh.write(chunk)
        # served by the sendfile download listener, which resumes interrupted downloads
        listener = f"http://127.0.0.1:{server.env['APPYARD_DOWNLOAD_PORT']}/_blob/"
        assert dl["download_url"].startswith(listener)
        tail = httpx.get(dl["download_url"], headers={"Range": "bytes=-1048576"}, timeout=60)
        assert tail.status_code == 206
        assert tail.content == protected.read_bytes()[-1048576:]
    with zipfile.ZipFile(protected) as zf:
        assert zf.getinfo("assets/big.bin").file_size >= 105 * 1024 * 1024
    need(shutil.which("apksigner") is not None, "apksigner is needed to check the signature")
    checked = subprocess.run(
        ["apksigner", "verify", "--print-certs", str(protected)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stderr
    assert "CN=Appyard Fixture Release" in checked.stdout


def test_admin_cli_drives_a_running_server(server: Server) -> None:
    made = server.admin("create-tenant", "ci-team", "--plan", "team", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["plan"] == "team"
    key = server.admin("create-key", "--tenant", "ci-team", "--kind", "automation", "--json")
    raw = json.loads(key.stdout)["key"]
    headers = {"Authorization": f"Bearer {raw}"}
    body = {"file_name": "a.apk", "platform": "android", "version": "dev"}
    assert (
        httpx.post(f"{server.url}/automate/upload", json=body, headers=headers).status_code == 200
    )
    listed = json.loads(server.admin("list-controls", "--json").stdout)
    assert any(c["id"] == "protect.zipalign" for c in listed)
    off = server.admin(
        "set-controls",
        "--tenant",
        "ci-team",
        "--platform",
        "android",
        "--version",
        "dev",
        "--disable",
        ",".join(c["id"] for c in listed if "android" in c["platforms"]),
        "--json",
    )
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout)["enabled"] == []
    r = httpx.post(f"{server.url}/automate/upload", json=body, headers=headers)
    assert r.status_code == 400 and "control" in r.json()["error"]
    assert (
        server.admin(
            "set-limits", "--tenant", "ci-team", "--concurrent-builds", "1", "--json"
        ).returncode
        == 0
    )
    body["version"] = "prod"
    r = httpx.post(f"{server.url}/automate/upload", json=body, headers=headers)
    assert r.status_code == 429  # the dev upload above still holds the one slot
    assert server.admin("disable-key", raw.split(":")[0]).returncode == 0
    r = httpx.post(f"{server.url}/automate/upload", json=body, headers=headers)
    assert r.status_code == 401
    assert raw.split(":")[1] not in server.admin("list-keys", "--tenant", "ci-team").stdout
    bad = server.admin("create-tenant", "ci-team")
    assert bad.returncode == 1 and "already exists" in bad.stderr


def test_restart_loses_no_job(tmp_path: Path, database_url: str) -> None:
    """Bytes arrive while no worker runs; the job waits in the database and is processed
    after the server restarts with its worker."""
    first = start_server(tmp_path / "srv", database_url, "--no-worker")
    try:
        headers = {"Authorization": f"Bearer {first.key}"}
        ticket = httpx.post(
            f"{first.url}/automate/upload",
            headers=headers,
            json={"file_name": "app.apk", "platform": "android", "version": "prod"},
        ).json()
        assert httpx.put(ticket["upload_url"], content=RELEASE_APK.read_bytes()).status_code == 200
        time.sleep(0.5)
        body = httpx.get(f"{first.url}/automate/status/{ticket['job_id']}", headers=headers)
        assert body.json()["progress"] == "Queued"
    finally:
        first.stop()
    second = start_server(tmp_path / "srv", database_url)
    try:
        with httpx.Client(base_url=second.url, headers=headers) as api:
            assert wait_done(api, ticket["job_id"])["status"] == "completed"
    finally:
        second.stop()


def test_server_log_never_shows_keys_or_signed_urls(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.key}"}
    ticket = httpx.post(
        f"{server.url}/automate/upload",
        headers=headers,
        json={"file_name": "app.apk", "platform": "android", "version": "prod"},
    ).json()
    httpx.put(ticket["upload_url"], content=RELEASE_APK.read_bytes())
    with httpx.Client(base_url=server.url, headers=headers) as api:
        wait_done(api, ticket["job_id"])
        url = api.get(f"/automate/download/{ticket['job_id']}").json()["download_url"]
    server.stop()
    log = server.log.read_text()
    token = ticket["upload_url"].rsplit("/", 1)[1]
    assert server.key.split(":")[1] in log  # printed once at first start, on purpose
    assert log.count(server.key.split(":")[1]) == 1
    assert token not in log and url.rsplit("/", 1)[1] not in log
