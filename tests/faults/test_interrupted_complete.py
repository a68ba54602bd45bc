"""A multipart ``complete`` is the client's to repeat: when its answer is lost (the server
died after committing), and when the server died between the store assembling the object and
recording it. In process, at the exact moment: the store's own ``complete_multipart`` is what
the dying server had done."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from appyard.app import create_app
from appyard.runtime import Runtime
from appyard.worker import Worker
from tests.conftest import TenantKey, add_signing_key, padded_apk

MIB = 1024 * 1024


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    services = runtime.services
    object.__setattr__(services, "policy", dataclasses.replace(
        services.policy, multipart_threshold=MIB, chunk_size=256 * 1024))  # fmt: skip
    with TestClient(create_app(runtime=runtime, start_worker=False)) as c:
        yield c


def parts_sent(client: TestClient, tenant: TenantKey, data: bytes) -> tuple[Any, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {tenant.key}"}
    ticket = client.post("/automate/upload", headers=headers, json={
        "file_name": "app.apk", "platform": "android", "version": "prod",
        "file_size": len(data),
    }).json()  # fmt: skip
    chunk = ticket["chunk_size"]
    parts = []
    for n, url in enumerate(ticket["part_urls"], start=1):
        put = client.put(url, content=data[(n - 1) * chunk : n * chunk])
        assert put.status_code == 200
        parts.append({"ETag": put.headers["ETag"], "PartNumber": n})
    body = {"file_path": ticket["file_path"], "upload_id": ticket["upload_id"], "parts": parts}
    return ticket, body


def finish(client: TestClient, runtime: Runtime, tenant: TenantKey, job_id: str) -> None:
    assert Worker(runtime.services).run_once("test-worker")
    headers = {"Authorization": f"Bearer {tenant.key}"}
    done = client.get(f"/automate/status/{job_id}", headers=headers).json()
    assert done["status"] == "completed", done


def test_complete_sent_again_after_its_answer_was_lost_answers_the_same(
    client: TestClient, runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    add_signing_key(runtime, tenant.tenant_id)
    ticket, body = parts_sent(client, tenant, padded_apk(tmp_path / "a.apk", MIB).read_bytes())
    headers = {"Authorization": f"Bearer {tenant.key}"}
    first = client.post("/automate/upload/complete", headers=headers, json=body)
    again = client.post("/automate/upload/complete", headers=headers, json=body)
    assert first.status_code == again.status_code == 200, again.text
    assert again.json() == first.json()
    finish(client, runtime, tenant, ticket["job_id"])
    # another upload's id is still refused
    other = client.post("/automate/upload/complete", headers=headers,
                        json={**body, "upload_id": "0" * 32})  # fmt: skip
    assert other.status_code == 400


def test_complete_after_a_server_died_between_assembling_and_recording_arrives(
    client: TestClient, runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    add_signing_key(runtime, tenant.tenant_id)
    ticket, body = parts_sent(client, tenant, padded_apk(tmp_path / "a.apk", MIB).read_bytes())
    store = runtime.services.store
    stored = {p.number: p for p in store.list_parts(body["file_path"], body["upload_id"])}
    # what the dying server had done: the object is assembled, nothing is recorded
    store.complete_multipart(body["file_path"], body["upload_id"],
                             [stored[n] for n in sorted(stored)])  # fmt: skip
    headers = {"Authorization": f"Bearer {tenant.key}"}
    r = client.post("/automate/upload/complete", headers=headers, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["job_id"] == ticket["job_id"]
    finish(client, runtime, tenant, ticket["job_id"])
    assert store.list_parts(body["file_path"], body["upload_id"]) == []
