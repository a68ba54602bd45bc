"""PostgreSQL and Redis restarted mid-run, in the scale-out shape: ``appyard serve`` (no jobs)
and an ``appyard worker`` on a PostgreSQL cluster of the test's own (``initdb`` in a temporary
folder, a free port) and a redis-server of its own. Builds are uploaded while the service goes
away and comes back; clients retry what failed. Every build must end completed with its
output intact, and nothing may be left. Runs in the scale-out line of .ci/run
(``APPYARD_TEST_SCALE_OUT=1``); the shared services on 5432 and 6379 are never touched."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backends.services import PrivateRedis
from tests.conftest import SCALE_OUT
from tests.faults.conftest import PrivatePostgres, Site, audit, make_site, retrying, wait_settled

pytestmark = pytest.mark.skipif(
    not SCALE_OUT, reason="runs in the scale-out line of .ci/run (APPYARD_TEST_SCALE_OUT=1)"
)

BUILDS = 6


def scale_out_site(root: Path, pg: PrivatePostgres, redis: PrivateRedis) -> Site:
    site = make_site(root, pg.url, APPYARD_QUEUE_URL=redis.url)
    site.cli("db", "upgrade")
    return site


def upload_all(site: Site, url: str, data: bytes, during: Any) -> list[str]:
    """Upload ``BUILDS`` builds from threads, retrying as a CI pipeline would, while
    ``during()`` runs (the fault); the job ids."""
    headers = {"Authorization": f"Bearer {site.key}"}
    job_ids: list[str] = []
    failures: list[BaseException] = []

    def one(n: int) -> None:
        try:
            time.sleep(0.4 * n)
            with httpx.Client(base_url=url, headers=headers, timeout=60) as api:
                ticket = retrying(lambda: api.post("/automate/upload", json={
                    "file_name": f"app-{n}.apk", "platform": "android",
                    "version": "production", "file_size": len(data),
                }), ok=lambda r: r.status_code == 200).json()  # fmt: skip
                retrying(lambda: httpx.put(ticket["upload_url"], content=data, timeout=60),
                         ok=lambda r: r.status_code == 200)  # fmt: skip
                job_ids.append(str(ticket["job_id"]))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(BUILDS)]
    for t in threads:
        t.start()
    during()
    for t in threads:
        t.join(120)
    assert not failures, failures
    return job_ids


def settle(site: Site, url: str, job_ids: list[str]) -> None:
    headers = {"Authorization": f"Bearer {site.key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as api:
        for job_id in job_ids:
            done = wait_settled(api, job_id, timeout=120)
            assert done["status"] == "completed", done


def test_builds_survive_a_postgresql_restart_mid_run(
    tmp_path: Path, private_postgres: PrivatePostgres, private_redis: PrivateRedis,
    signed_apk: Path,
) -> None:  # fmt: skip
    site = scale_out_site(tmp_path / "site", private_postgres, private_redis)
    try:
        serve = site.serve("--no-worker")
        site.signing_key()
        site.cli("admin", "set-limits", "--tenant", "default", "--concurrent-builds", "0",
                 "--weekly-builds", "0")  # fmt: skip
        site.worker(concurrency=2)

        def restart() -> None:
            time.sleep(1.0)  # some uploads and jobs are under way
            private_postgres.stop("fast")
            time.sleep(2.0)
            private_postgres.start()

        job_ids = upload_all(site, serve.url, signed_apk.read_bytes(), restart)
        settle(site, serve.url, job_ids)
    finally:
        site.stop_all()
    result = audit(site)
    assert len(result.builds) == BUILDS


def test_builds_survive_a_redis_restart_mid_run(
    tmp_path: Path, private_postgres: PrivatePostgres, private_redis: PrivateRedis,
    signed_apk: Path,
) -> None:  # fmt: skip
    site = scale_out_site(tmp_path / "site", private_postgres, private_redis)
    try:
        serve = site.serve("--no-worker")
        site.signing_key()
        site.cli("admin", "set-limits", "--tenant", "default", "--concurrent-builds", "0",
                 "--weekly-builds", "0")  # fmt: skip
        worker = site.worker(concurrency=2)

        def restart() -> None:
            time.sleep(1.0)
            private_redis.stop()
            time.sleep(2.0)
            private_redis.start()

        job_ids = upload_all(site, serve.url, signed_apk.read_bytes(), restart)
        settle(site, serve.url, job_ids)
        assert worker.proc is not None and worker.proc.poll() is None  # it carried on
    finally:
        site.stop_all()
    result = audit(site)
    assert len(result.builds) == BUILDS
