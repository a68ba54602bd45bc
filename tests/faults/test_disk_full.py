"""The local store on a full disk: a filesystem of 160 MiB made by the test (tmpfs, as root),
mostly taken by a filler file. An upload larger than what is left gets a clear answer in the
dialect's error shape: 507 Insufficient Storage (docs/faults.md), never a 500 with a
traceback; nothing half-written is left; once space is freed the same request succeeds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import need
from tests.faults.conftest import Site, audit, make_site, wait_settled
from tests.faults.test_serve_killed import FORM_BOUNDARY, form_body

MIB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 320 MiB tmpfs mounted at a folder of the test's own, unmounted afterwards."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=320m,mode=0700", "tmpfs", str(folder)],
        capture_output=True, timeout=30,
    ).returncode == 0  # fmt: skip
    need(mounted, "mounting a small filesystem needs root (mount -t tmpfs)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def only_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []


def test_uploads_to_a_full_store_are_refused_cleanly_and_succeed_once_space_is_freed(
    small_disk: Path, signed_apk: Path, tmp_path: Path
) -> None:
    site: Site = make_site(tmp_path / "site", APPYARD_DATA_DIR=str(small_disk / "data"))
    try:
        serve = site.serve()
        site.cli("admin", "set-limits", "--tenant", "default", "--concurrent-builds", "0",
                 "--weekly-builds", "0")  # fmt: skip
        site.cli("admin", "create-tenant", "dist", "--plan", "team")  # an app of its own
        token = json.loads(site.cli("admin", "create-key", "--tenant", "dist", "--kind", "app",
                                    "--app", "myapp", "--json"))["key"]  # fmt: skip
        data = signed_apk.read_bytes()  # 24 MiB
        filler = small_disk / "filler"
        with open(filler, "wb") as fh:  # 10 MiB or less left
            for _ in range(310):
                fh.write(b"\0" * MIB)
        headers = {"Authorization": f"Bearer {site.key}"}

        ticket = httpx.post(f"{serve.url}/automate/upload", headers=headers, json={
            "file_name": "app.apk", "platform": "android", "version": "production",
            "file_size": len(data),
        }).json()  # fmt: skip
        put = httpx.put(ticket["upload_url"], content=data, timeout=60)
        assert put.status_code == 507, put.text
        assert "space" in put.json()["error"]

        body = form_body("build", data, {"versionName": "1.0.0"})
        form = {"Authorization": f"Bearer {token}",
                "Content-Type": f"multipart/form-data; boundary={FORM_BOUNDARY}"}  # fmt: skip
        posted = httpx.post(f"{serve.url}/v1/integrations/builds", content=body, headers=form,
                            timeout=60)  # fmt: skip
        assert posted.status_code == 507, posted.text
        answer = posted.json()
        assert answer["status"] is False and "space" in answer["error"]["message"], answer

        blobs = site.data_dir / "blobs"
        assert not only_files(blobs / "tmp") and not only_files(site.data_dir / "spool")
        assert "Traceback" not in serve.text()

        filler.unlink()  # space is freed: the same requests succeed
        assert httpx.put(ticket["upload_url"], content=data, timeout=60).status_code == 200
        again = httpx.post(f"{serve.url}/v1/integrations/builds", content=body, headers=form,
                           timeout=60)  # fmt: skip
        assert again.status_code == 200, again.text
        with httpx.Client(base_url=serve.url, headers=headers, timeout=60) as api:
            settled = wait_settled(api, str(ticket["job_id"]))
            assert settled["status"] == "completed", json.dumps(settled)

            # room for the upload but not for its processing (a signed copy, then the output):
            # the job fails with the reason, and what it had written goes

            room = shutil.disk_usage(small_disk).free - len(data) - 8 * MIB
            with open(filler, "wb") as fh:
                for _ in range(max(0, room) // MIB):
                    fh.write(b"\0" * MIB)
            third = api.post("/automate/upload", json={
                "file_name": "app.apk", "platform": "android", "version": "production",
            }).json()  # fmt: skip
            assert httpx.put(third["upload_url"], content=data, timeout=60).status_code == 200
            failed = wait_settled(api, str(third["job_id"]))
            assert failed["status"] == "failed", json.dumps(failed)
            assert "storage is full" in failed["error_message"], failed
    finally:
        site.stop_all()
    filler.unlink(missing_ok=True)
    result = audit(site)
    assert len(result.builds) == 3
