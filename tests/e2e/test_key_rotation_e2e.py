"""A tenant rotates its Android signing key: the lineage comes from ``apksigner rotate``, the
operator attaches it with ``appyard admin set-key-rotation`` while the server runs, and the
next build's APK is signed the way Android accepts an update signed with the new key."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx

from tests.conftest import FIXTURES, KEYS, need
from tests.e2e.conftest import Server
from tests.e2e.test_automation_e2e import wait_done

PASSWORDS = {"RELEASE_PW": "fixture-release", "OTHER_PW": "fixture-other"}


def add_key(server: Server, name: str, keystore: str, password_env: str) -> str:
    added = server.admin(
        "add-signing-key", "--tenant", "default", "--name", name,
        "--keystore", str(KEYS / keystore), "--password-env", password_env, "--default", "--json",
        env=PASSWORDS,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    return str(json.loads(added.stdout)["id"])


def apksigner(*args: str) -> subprocess.CompletedProcess[str]:
    need(shutil.which("apksigner") is not None, "apksigner is not installed")
    return subprocess.run(["apksigner", *args], capture_output=True, text=True, timeout=120)


def build(server: Server, out: Path) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as api:
        ticket = api.post(
            "/automate/upload",
            json={"file_name": "app.apk", "platform": "android", "version": "prod"},
        ).json()
        assert (
            httpx.put(
                ticket["upload_url"], content=(FIXTURES / "fixture-unsigned.apk").read_bytes()
            ).status_code
            == 200
        )
        done = wait_done(api, ticket["job_id"])
        if done["status"] == "completed":
            url = api.get(f"/automate/download/{ticket['job_id']}").json()["download_url"]
            out.write_bytes(httpx.get(url, timeout=60).content)
        return done


def test_builds_are_signed_with_the_rotated_key_and_its_lineage(
    server: Server, tmp_path: Path
) -> None:
    original = add_key(server, "first release key", "release.p12", "RELEASE_PW")
    rotated = add_key(server, "rotated key", "other.p12", "OTHER_PW")
    lineage = tmp_path / "lineage.bin"
    made = apksigner(
        "rotate", "--out", str(lineage),
        "--old-signer", "--ks", str(KEYS / "release.p12"), "--ks-pass", "pass:fixture-release",
        "--new-signer", "--ks", str(KEYS / "other.p12"), "--ks-pass", "pass:fixture-other",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr

    backwards = server.admin(
        "set-key-rotation", "--tenant", "default", original,
        "--original", rotated, "--lineage", str(lineage),
    )  # fmt: skip
    attached = server.admin(
        "set-key-rotation", "--tenant", "default", rotated, "--original", original,
        "--lineage", str(lineage), "--rotation-min-sdk-version", "28", "--json",
    )  # fmt: skip

    assert backwards.returncode == 1
    assert "lineage" in backwards.stderr
    assert attached.returncode == 0, attached.stderr
    assert json.loads(attached.stdout)["rotation"] == {"original_key_id": original, "min_sdk": 28}

    out = tmp_path / "protected.apk"
    done = build(server, out)
    assert done["status"] == "completed", done
    verified = apksigner("verify", "--print-certs", str(out))
    assert verified.returncode == 0, verified.stderr
    assert "Signer #1 certificate DN: CN=Appyard Fixture Other" in verified.stdout
    before_9 = apksigner("verify", "--print-certs", "--max-sdk-version", "27", str(out))
    assert "Signer #1 certificate DN: CN=Appyard Fixture Release" in before_9.stdout
    history = apksigner("lineage", "--in", str(out), "--print-certs")
    assert history.stdout.index("Appyard Fixture Release") < history.stdout.index(
        "Appyard Fixture Other"
    )

    deleted = server.admin("delete-signing-key", "--tenant", "default", original)
    assert deleted.returncode == 0, deleted.stderr
    failed = build(server, tmp_path / "never.apk")
    assert failed["status"] == "failed"
    assert "rotates from a key that cannot be used" in str(failed.get("error_message"))
    assert not (tmp_path / "never.apk").exists()
