"""The automation API on the scale-out backends, in process: the client's signed URLs go
straight to the object store, appyard's workers notice finished uploads (a status read never
does: reads never write),
stale uploads expire with their parts aborted on the store, and a tenant's concurrency limit
holds across workers."""

from __future__ import annotations

import hashlib
import threading
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from appyard import errors
from appyard.core import jobs, tenants
from appyard.core.models import JobState, LimitOverrides
from appyard.runtime import Runtime, build_runtime
from appyard.settings import Settings
from appyard.worker import Worker
from tests.conftest import FIXTURES, FakeClock, add_signing_key, make_tenant, padded_apk

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"
MIB = 1024 * 1024


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def request_upload(client: TestClient, key: str, **fields: Any) -> dict[str, Any]:
    body = {"file_name": "app-release.apk", "platform": "android", "version": "prod", **fields}
    r = client.post("/automate/upload", json=body, headers=auth(key))
    assert r.status_code == 200, r.text
    return dict(r.json())


def status(client: TestClient, key: str, job_id: str) -> dict[str, Any]:
    r = client.get(f"/automate/status/{job_id}", headers=auth(key))
    assert r.status_code == 200, r.text
    return dict(r.json())


def store_endpoint(runtime: Runtime) -> str:
    return str(urlsplit(runtime.settings.storage_url).query).split("endpoint=")[1].split("&")[0]


def test_serve_runs_no_jobs_with_the_redis_queue(scaled: Runtime) -> None:
    assert not scaled.settings.serve_runs_worker
    assert Settings(queue_url=scaled.settings.queue_url, run_worker=True).serve_runs_worker


def test_single_upload_goes_to_the_store_and_a_worker_notices_it(
    scaled_client: TestClient, scaled: Runtime
) -> None:
    tenant = make_tenant(scaled)
    ticket = request_upload(scaled_client, tenant.key, file_size=RELEASE_APK.stat().st_size)
    endpoint = store_endpoint(scaled)
    assert ticket["upload_url"].startswith(endpoint + "/")  # straight to the store
    assert "X-Amz-Signature=" in ticket["upload_url"]
    put = httpx.put(ticket["upload_url"], content=RELEASE_APK.read_bytes())
    assert put.status_code == 200 and put.headers["ETag"]

    waiting = status(scaled_client, tenant.key, ticket["job_id"])
    assert waiting["progress"] == "Waiting for upload"  # a read changes nothing
    worker = Worker(scaled.services)
    assert worker.notice() == 1  # what the worker does every couple of seconds on S3
    assert status(scaled_client, tenant.key, ticket["job_id"])["progress"] == "Queued"
    assert worker.run_once("w1")
    done = status(scaled_client, tenant.key, ticket["job_id"])
    assert done["status"] == "completed", done

    dl = scaled_client.get(f"/automate/download/{ticket['job_id']}", headers=auth(tenant.key))
    url = dl.json()["download_url"]
    assert url.startswith(endpoint + "/")
    got = httpx.get(url)
    assert got.status_code == 200
    assert 'filename="app-release.apk"' in got.headers["content-disposition"]
    with zipfile.ZipFile(__import__("io").BytesIO(got.content)) as zf:
        assert "AndroidManifest.xml" in zf.namelist()


def test_the_sweep_notices_an_upload_nobody_polls(
    scaled_client: TestClient, scaled: Runtime
) -> None:
    tenant = make_tenant(scaled)
    ticket = request_upload(scaled_client, tenant.key)
    httpx.put(ticket["upload_url"], content=RELEASE_APK.read_bytes()).raise_for_status()
    worker = Worker(scaled.services)
    assert not worker.run_once("w1")  # nobody told appyard yet
    worker.sweep()
    assert worker.run_once("w1")
    assert status(scaled_client, tenant.key, ticket["job_id"])["status"] == "completed"


def test_an_object_larger_than_file_size_is_refused_and_removed(
    scaled_client: TestClient, scaled: Runtime
) -> None:
    tenant = make_tenant(scaled)
    ticket = request_upload(scaled_client, tenant.key, file_size=100)
    # A presigned PUT cannot cap the body; appyard refuses it when it notices.
    httpx.put(ticket["upload_url"], content=b"x" * 101).raise_for_status()
    Worker(scaled.services).notice()
    body = status(scaled_client, tenant.key, ticket["job_id"])
    assert body["status"] == "failed" and "file_size" in body["error_message"]
    assert scaled.services.store.stat(ticket["file_path"]) is None


def test_multipart_parts_go_to_the_store_and_complete_with_its_etags(
    scaled_client: TestClient, scaled: Runtime, tmp_path: Path
) -> None:
    tenant = make_tenant(scaled)
    add_signing_key(scaled, tenant.tenant_id)  # the unsigned input is signed on output
    apk = padded_apk(tmp_path / "big.apk", 13 * MIB)
    size = apk.stat().st_size
    ticket = request_upload(scaled_client, tenant.key, file_size=size)
    assert ticket["multipart"] is True and ticket["chunk_size"] == 5 * MIB
    endpoint = store_endpoint(scaled)
    parts = []
    with open(apk, "rb") as fh:
        for n, url in enumerate(ticket["part_urls"], start=1):
            assert url.startswith(endpoint + "/") and "uploadId=" in url
            put = httpx.put(url, content=fh.read(ticket["chunk_size"]))
            assert put.status_code == 200
            parts.append({"ETag": put.headers["ETag"], "PartNumber": n})
    stored = scaled.services.store.list_parts(ticket["file_path"], ticket["upload_id"])
    assert [p.etag for p in stored] == [p["ETag"] for p in parts]  # the store's own ETags
    bad = [dict(p) for p in parts]
    bad[1]["ETag"] = '"00000000000000000000000000000000"'
    body = {"file_path": ticket["file_path"], "upload_id": ticket["upload_id"]}
    r = scaled_client.post(
        "/automate/upload/complete", headers=auth(tenant.key), json={**body, "parts": bad}
    )
    assert r.status_code == 400 and "ETag" in r.json()["error"]
    r = scaled_client.post(
        "/automate/upload/complete", headers=auth(tenant.key), json={**body, "parts": parts}
    )
    assert r.status_code == 200, r.text
    info = scaled.services.store.stat(ticket["file_path"])
    assert info is not None and info.size == size
    assert Worker(scaled.services).run_once("w1")
    done = status(scaled_client, tenant.key, ticket["job_id"])
    assert done["status"] == "completed", done
    with scaled.services.uow() as uow:
        build = uow.builds.get_by_number(tenant.tenant_id, int(ticket["job_id"]))
    assert build is not None and build.sha256 == hashlib.sha256(apk.read_bytes()).hexdigest()


def test_abort_maps_to_the_stores_abort(scaled_client: TestClient, scaled: Runtime) -> None:
    tenant = make_tenant(scaled)
    ticket = request_upload(scaled_client, tenant.key, file_size=20 * MIB)
    httpx.put(ticket["part_urls"][0], content=b"x" * 5 * MIB).raise_for_status()
    r = scaled_client.post(
        "/automate/upload/abort",
        headers=auth(tenant.key),
        json={"file_path": ticket["file_path"], "upload_id": ticket["upload_id"]},
    )
    assert r.status_code == 200, r.text
    with pytest.raises(errors.UploadNotFound):
        scaled.services.store.list_parts(ticket["file_path"], ticket["upload_id"])
    assert status(scaled_client, tenant.key, ticket["job_id"])["status"] == "failed"


def test_a_stale_multipart_upload_expires_and_its_parts_are_aborted(
    scaled_client: TestClient, scaled: Runtime, clock: FakeClock
) -> None:
    tenant = make_tenant(scaled)
    ticket = request_upload(scaled_client, tenant.key, file_size=20 * MIB)
    httpx.put(ticket["part_urls"][0], content=b"x" * 5 * MIB).raise_for_status()
    single = request_upload(scaled_client, tenant.key)  # never sent
    Worker(scaled.services).sweep()
    assert scaled.services.store.list_parts(ticket["file_path"], ticket["upload_id"])
    clock.advance(seconds=scaled.settings.upload_expiry_seconds + 1)
    Worker(scaled.services).sweep()
    with pytest.raises(errors.UploadNotFound):
        scaled.services.store.list_parts(ticket["file_path"], ticket["upload_id"])
    for job_id in (ticket["job_id"], single["job_id"]):
        body = status(scaled_client, tenant.key, job_id)
        assert body["status"] == "failed" and "expired" in body["error_message"]


def test_tenant_concurrency_limit_holds_across_workers(
    scaled_settings: Settings, scaled: Runtime, clock: FakeClock
) -> None:
    """Eight workers, each with its own database connections (as on eight machines), claim
    at the same instant, again and again: the tenant never has more running than its limit."""
    if not scaled_settings.effective_database_url.startswith("postgresql"):
        pytest.skip("a claim race needs PostgreSQL (SQLite serializes every writer)")
    tenant = make_tenant(scaled)
    svc = scaled.services

    def set_limit(concurrent: int) -> None:
        with svc.uow() as uow:
            tenants.set_limits(
                uow,
                tenant_id=tenant.tenant_id,
                overrides=LimitOverrides(concurrent_builds=concurrent, weekly_builds=0),
            )
            uow.commit()

    set_limit(0)  # unlimited while the builds are made
    with svc.uow() as uow:
        from appyard.core import builds

        for n in range(12):
            ticket = builds.request_upload(
                uow,
                svc.clock,
                svc.store,
                replace(svc.policy, max_size=10**9),
                tenant.actor,
                file_name=f"app-{n}.apk",
                platform="android",
                version="dev",
                file_size=None,
                signing_key_id="none",
                source="test",
            )
            for job in uow.jobs.for_build(ticket.build.id):
                uow.jobs.save(replace(job, state=JobState.QUEUED))
        uow.commit()
    set_limit(2)

    workers = [build_runtime(scaled_settings, clock=clock) for _ in range(8)]
    claimed: list[str] = []
    lock = threading.Lock()
    for _round in range(4):
        gate = threading.Barrier(len(workers))

        def claim(rt: Runtime, name: str, gate: threading.Barrier) -> None:
            gate.wait()
            with rt.services.uow() as uow:
                job = jobs.claim(uow, rt.services.clock, owner=name, lease_seconds=60)
                uow.commit()
            if job is not None:
                with lock:
                    claimed.append(job.id)

        threads = [
            threading.Thread(target=claim, args=(rt, f"w{i}", gate)) for i, rt in enumerate(workers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with svc.uow() as uow:
            assert uow.jobs.count_running(tenant.tenant_id, clock.now()) <= 2
        clock.advance(seconds=61)  # every lease expires: the next round claims again
    assert len(claimed) >= 4  # some claims did happen in each round
    for rt in workers:
        rt.services.queue.close()
        rt.engine.dispose()


def test_a_claim_under_way_for_a_tenant_holds_off_other_workers(
    scaled_settings: Settings, scaled: Runtime, clock: FakeClock
) -> None:
    """The count-then-claim of a limited tenant is one step across machines: while one worker
    is claiming for the tenant (its transaction open), another takes none of its jobs."""
    if not scaled_settings.effective_database_url.startswith("postgresql"):
        pytest.skip("a claim race needs PostgreSQL (SQLite serializes every writer)")
    from appyard.core import builds

    tenant = make_tenant(scaled)
    svc = scaled.services
    with svc.uow() as uow:
        for n in range(2):
            ticket = builds.request_upload(
                uow, svc.clock, svc.store, svc.policy, tenant.actor,
                file_name=f"app-{n}.apk", platform="android", version="dev",
                file_size=None, signing_key_id="none", source="test",
            )  # fmt: skip
            for job in uow.jobs.for_build(ticket.build.id):
                uow.jobs.save(replace(job, state=JobState.QUEUED))
        uow.commit()
    other = build_runtime(scaled_settings, clock=clock)
    try:
        with svc.uow() as first:
            assert first.jobs.lock_tenant(tenant.tenant_id)
            with other.services.uow() as second:
                assert not second.jobs.lock_tenant(tenant.tenant_id)
                assert jobs.claim(second, clock, owner="w2", lease_seconds=60) is None
            first.commit()
        with other.services.uow() as second:
            assert jobs.claim(second, clock, owner="w2", lease_seconds=60) is not None
            second.commit()
    finally:
        other.services.queue.close()
        other.engine.dispose()
