"""The scale-out shape under faults, as separate processes on loopback: two ``appyard serve``
(no jobs in them: the queue is Redis) and two ``appyard worker`` on PostgreSQL, a redis-server
of this test's own and SeaweedFS. Twenty builds are uploaded concurrently through both API
processes; one worker is killed with SIGKILL while it holds a job; Redis is restarted once.
Every build must complete exactly once, every output must download from S3, and nothing may
be left in a processing state.

Runs in the scale-out CI line (``APPYARD_TEST_SCALE_OUT=1``; see .ci/run), on the PostgreSQL
of ``APPYARD_DATABASE_URL`` or 127.0.0.1:5432/test, in a schema of its own.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import secrets
import signal
import subprocess
import threading
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import Engine, text

from appyard.backends.db.engine import make_engine
from tests.backends.services import PrivateRedis, S3Server
from tests.conftest import (
    APPYARD,
    FIXTURES,
    KEYS,
    SCALE_OUT,
    free_port,
    need,
    padded_apk,
    wait_for_port,
)

pytestmark = pytest.mark.skipif(
    not SCALE_OUT, reason="runs in the scale-out line of .ci/run (APPYARD_TEST_SCALE_OUT=1)"
)

BUILDS = 20
LEASE_SECONDS = 5
RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A fresh, empty schema on the PostgreSQL server (migrated by ``appyard db upgrade``)."""
    base = os.environ.get("APPYARD_DATABASE_URL", "") or PG_DEFAULT
    need(base.startswith("postgresql"), "the fault test runs on PostgreSQL")
    admin = make_engine(base)
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
        up = True
    except Exception:
        up = False
    need(up, f"no PostgreSQL at {base}")
    schema = f"fault_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def run_cli(env: dict[str, str], *args: str, extra: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [*APPYARD, *args],
        env={**env, **(extra or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def spawn(name: str, args: list[str], env: dict[str, str], folder: Path) -> Proc:
    log = folder / f"{name}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([*APPYARD, *args], env=env, stdout=fh, stderr=subprocess.STDOUT)
    return Proc(name, proc, log)


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def test_builds_survive_a_killed_worker_and_a_redis_restart(
    tmp_path: Path, pg_schema_url: str, private_redis: PrivateRedis, s3_server: S3Server
) -> None:
    started = time.monotonic()
    storage_url = s3_server.url(f"fault-{uuid.uuid4().hex[:10]}")
    env = {
        **os.environ,
        "APPYARD_DATABASE_URL": pg_schema_url,
        "APPYARD_STORAGE_URL": storage_url,
        "APPYARD_QUEUE_URL": private_redis.url,
        "APPYARD_SECRET_KEY": "fault-test-secret",
        "APPYARD_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "APPYARD_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
        "APPYARD_UPLOAD_SWEEP_SECONDS": "2",
        "APPYARD_DATA_DIR": str(tmp_path / "cli"),
        "APPYARD_LOG_LEVEL": "INFO",
    }
    env.pop("APPYARD_RUN_WORKER", None)
    run_cli(env, "db", "upgrade")
    run_cli(env, "admin", "create-tenant", "fault", "--plan", "enterprise", "--json")
    run_cli(env, "admin", "set-limits", "--tenant", "fault", "--concurrent-builds", "0",
            "--weekly-builds", "0")  # fmt: skip
    raw = run_cli(env, "admin", "create-key", "--tenant", "fault", "--kind", "automation", "--json")
    key = re.search(r'"key":\s*"([^"]+)"', raw)
    assert key is not None
    run_cli(env, "admin", "add-signing-key", "--tenant", "fault", "--name", "release",
            "--keystore", str(KEYS / "release.p12"), "--alias", "release",
            "--password-env", "KEYSTORE_PASSWORD", "--json",
            extra={"KEYSTORE_PASSWORD": "fixture-release"})  # fmt: skip

    procs: list[Proc] = []
    engine = make_engine(pg_schema_url)
    try:
        apis = []
        for n in range(2):
            port = free_port()
            api_env = {
                **env,
                "APPYARD_PORT": str(port),
                "APPYARD_DATA_DIR": str(tmp_path / f"api{n}"),
            }
            procs.append(spawn(f"api{n}", ["serve"], api_env, tmp_path))
            wait_for_port(port, procs[-1].proc)
            apis.append(f"http://127.0.0.1:{port}")
        workers = []
        for n in range(2):
            worker_env = {**env, "APPYARD_DATA_DIR": str(tmp_path / f"worker{n}")}
            workers.append(
                spawn(f"worker{n}", ["worker", "--concurrency", "2"], worker_env, tmp_path)
            )
            procs.append(workers[-1])

        apk = tmp_path / "app-release.apk"
        padded_apk(apk, 6 * 1024 * 1024)
        data = apk.read_bytes()
        endpoint = urlsplit(storage_url).query.split("endpoint=")[1].split("&")[0]
        headers = {"Authorization": f"Bearer {key.group(1)}"}
        results: dict[int, dict[str, Any]] = {}
        failures: list[BaseException] = []

        def one_build(n: int) -> None:
            try:
                via, poll = apis[n % 2], apis[(n + 1) % 2]  # upload through one, poll the other
                with httpx.Client(headers=headers, timeout=60) as api:
                    ticket = api.post(f"{via}/automate/upload", json={
                        "file_name": f"app-{n:02d}.apk", "platform": "android",
                        "version": "prod", "file_size": len(data),
                    })  # fmt: skip
                    assert ticket.status_code == 200, ticket.text
                    body = ticket.json()
                    assert body["upload_url"].startswith(endpoint + "/")
                    put = httpx.put(body["upload_url"], content=data, timeout=60)
                    assert put.status_code == 200, put.text
                    deadline = time.monotonic() + 150
                    while time.monotonic() < deadline:
                        r = api.get(f"{poll}/automate/status/{body['job_id']}")
                        if r.status_code == 200 and r.json()["status"] != "processing":
                            break
                        time.sleep(0.3)
                    results[n] = {"job_id": body["job_id"], "status": r.json()}
            except BaseException as exc:
                failures.append(exc)

        # All 20 are the first builds of a new app: the workers also race to create its record.
        # Redis goes away while the workers wait on it and the uploads begin (their wake-ups
        # are lost: workers fall back to polling the database), and comes back 2 s later.
        private_redis.stop()
        deadline = time.monotonic() + 20  # the idle workers notice at once (their BRPOP breaks)
        while "queue.unavailable" not in workers[1].log.read_text(errors="replace"):
            assert time.monotonic() < deadline, "the worker did not notice Redis going away"
            time.sleep(0.1)
        threads = [threading.Thread(target=one_build, args=(n,)) for n in range(BUILDS)]
        for t in threads:
            t.start()
        time.sleep(2)
        private_redis.start()

        # SIGKILL the first worker as soon as it holds a job: its lease runs out, the other
        # worker takes the job again.
        victim = workers[0]
        owner = f"%:{victim.proc.pid}/%"
        killed_jobs: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed_jobs:
            killed_jobs = [
                r.id
                for r in rows(
                    engine,
                    "SELECT id FROM jobs WHERE state = 'running' AND lease_owner LIKE :owner",
                    owner=owner,
                )
            ]
            if not killed_jobs:
                time.sleep(0.02)
        assert killed_jobs, "the first worker never took a job"
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)

        for t in threads:
            t.join(180)
        assert not failures, failures
        assert len(results) == BUILDS

        # Every build completed, and its output downloads from the store.
        with httpx.Client(headers=headers, timeout=60) as api:
            for n, result in sorted(results.items()):
                assert result["status"]["status"] == "completed", result["status"].get(
                    "error_message"
                )
                dl = api.get(f"{apis[n % 2]}/automate/download/{result['job_id']}")
                assert dl.status_code == 200, dl.text
                url = dl.json()["download_url"]
                assert url.startswith(endpoint + "/")
                got = httpx.get(url, timeout=60)
                assert got.status_code == 200
                with zipfile.ZipFile(io.BytesIO(got.content)) as zf:
                    assert "AndroidManifest.xml" in zf.namelist()
                [(sha,)] = rows(
                    engine,
                    "SELECT output_sha256 FROM builds WHERE number = :start",
                    start=int(result["job_id"]),
                )
                assert hashlib.sha256(got.content).hexdigest() == sha

        # Exactly once: one job per build, succeeded; one completion logged per build.
        builds = rows(engine, "SELECT id, status FROM builds")
        assert len(builds) == BUILDS and {b.status for b in builds} == {"completed"}
        job_rows = rows(engine, "SELECT id, build_id, state, attempts FROM jobs")
        assert len(job_rows) == BUILDS and {j.state for j in job_rows} == {"succeeded"}
        assert len({j.build_id for j in job_rows}) == BUILDS
        assert len(rows(engine, "SELECT id FROM apps")) == 1  # one app, though workers raced
        redelivered = {j.id: j.attempts for j in job_rows if j.id in killed_jobs}
        assert redelivered and all(a >= 2 for a in redelivered.values()), redelivered
        logs = "".join(w.log.read_text(errors="replace") for w in workers)
        completions = Counter(re.findall(r"job\.completed job_id=\S+ build_id=(\S+)", logs))
        assert completions == Counter({b.id: 1 for b in builds}), completions
        survivor = workers[1].log.read_text(errors="replace")
        assert "queue.unavailable" in survivor and "queue.recovered" in survivor
        assert not rows(engine, "SELECT id FROM uploads WHERE state = 'pending'")
    finally:
        for p in procs:
            p.stop()
        engine.dispose()
    assert time.monotonic() - started < 180
