"""``appyard worker`` killed with SIGKILL inside each stage of ``build.process``. The worker
runs a few milliseconds at a time (SIGSTOP/SIGCONT) until the build's recorded progress is the
stage, then dies; a new worker takes the job once its lease (5 s) has run out. The build must
end completed with the output a run without faults gives (same SHA-256), or failed with a
message, never stuck processing; and nothing is left after the sweep."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import httpx

from appyard.core.models import Stage
from tests.conftest import need
from tests.faults.conftest import Proc, Site, audit, kill_in_stage, wait_settled

STAGES = [Stage.DOWNLOADING, Stage.INSPECTING, Stage.PROTECTING, Stage.PACKAGING,
          Stage.SIGNING, Stage.UPLOADING]  # fmt: skip


def upload(api: httpx.Client, data: bytes) -> str:
    ticket = api.post("/automate/upload", json={
        "file_name": "app.apk", "platform": "android", "version": "production",
        "file_size": len(data),
    }).json()  # fmt: skip
    assert "upload_url" in ticket, ticket
    assert httpx.put(ticket["upload_url"], content=data, timeout=60).status_code == 200
    return str(ticket["job_id"])


def output(api: httpx.Client, job_id: str, path: Path) -> Path:
    url = api.get(f"/automate/download/{job_id}").json()["download_url"]
    path.write_bytes(httpx.get(url, timeout=60).content)
    return path


def test_a_worker_killed_in_each_stage_leaves_a_build_that_completes(
    site: Site, signed_apk: Path, tmp_path: Path
) -> None:
    serve = site.serve("--no-worker")
    site.signing_key()
    site.cli("admin", "set-limits", "--tenant", "default", "--concurrent-builds", "0",
             "--weekly-builds", "0")  # fmt: skip
    data = signed_apk.read_bytes()
    db = site.database_url.removeprefix("sqlite:///")

    def progress_of(job_id: str) -> str | None:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute(
                "SELECT status, progress FROM builds WHERE number = ?", (int(job_id),)
            ).fetchone()
        return None if row is None or row[0] != "processing" else str(row[1])

    headers = {"Authorization": f"Bearer {site.key}"}
    with httpx.Client(base_url=serve.url, headers=headers, timeout=60) as api:
        worker: Proc = site.worker("worker-0")
        faultless = upload(api, data)
        assert wait_settled(api, faultless)["status"] == "completed"
        expected = output(api, faultless, tmp_path / "faultless.apk").read_bytes()

        caught: dict[Stage, str] = {}
        for n, stage in enumerate(STAGES, start=1):
            job_id = upload(api, data)
            for _ in range(3):  # a stage that went by between two looks: the next build
                if kill_in_stage(worker, lambda j=job_id: progress_of(j), stage):  # type: ignore[misc]
                    break
                assert wait_settled(api, job_id)["status"] == "completed"
                job_id = upload(api, data)
            else:
                raise AssertionError(f"never caught the worker in {stage.value!r}")
            caught[stage] = job_id
            worker = site.worker(f"worker-{n}")  # takes the job once the lease runs out

        for stage, job_id in caught.items():
            done = wait_settled(api, job_id, timeout=60)
            assert done["status"] == "completed", (stage, done)
            got = output(api, job_id, tmp_path / f"{job_id}.apk")
            assert got.read_bytes() == expected, f"killed in {stage.value!r}: output differs"
    if shutil.which("apksigner"):
        verified = subprocess.run(["apksigner", "verify", str(got)], capture_output=True,
                                  text=True, timeout=120)  # fmt: skip
        assert verified.returncode == 0, verified.stderr
    else:
        need(False, "apksigner checks the re-signed output")
    result = audit(site)
    assert {b.status for b in result.builds} == {"completed"}
