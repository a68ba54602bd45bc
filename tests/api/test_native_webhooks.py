"""Webhook endpoints in the native API (``/appyard/v1/webhooks``): redelivery reaches its own
route (it was taken for ``/webhooks/{id}/{action}`` and always answered 404), and another
tenant's endpoint or event is not found, as an unknown one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from appyard.app import create_app
from appyard.core import users
from appyard.core.models import Role
from appyard.runtime import Runtime
from appyard.settings import Settings
from appyard.worker import Worker
from tests.conftest import FIXTURES, make_tenant, upload_build

PASSWORD = "a long password"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allow_private": True})


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime, start_worker=False)) as c:
        yield c


def member(runtime: Runtime, client: TestClient, tenant: str) -> dict[str, str]:
    svc = runtime.services
    with svc.transaction() as uow:
        users.create(uow, svc.clock, email=f"dev@{tenant}.test", name="Dev",
                     role=Role.DEVELOPER, password=PASSWORD, tenant_name=tenant)  # fmt: skip
    r = client.post(
        "/appyard/v1/auth/login", json={"email": f"dev@{tenant}.test", "password": PASSWORD}
    )
    client.cookies.clear()
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_an_event_is_redelivered_through_the_native_api(
    runtime: Runtime, client: TestClient
) -> None:
    tenant = make_tenant(runtime, "acme")
    dev = member(runtime, client, "acme")
    hook = client.post(
        "/appyard/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=dev
    ).json()
    upload_build(runtime, tenant, FIXTURES / "fixture-release-v1v2v3.apk")
    while Worker(runtime.services).run_once("w"):
        pass
    tried = client.get(f"/appyard/v1/webhooks/{hook['id']}/deliveries", headers=dev).json()
    event_id = tried[0]["event_id"]

    r = client.post(
        f"/appyard/v1/webhooks/{hook['id']}/redeliver", json={"event_id": event_id}, headers=dev
    )
    assert r.status_code == 200, r.text
    assert r.json()["webhook_id"] == hook["id"] and r.json()["event_id"] == event_id
    assert r.json()["job_id"]

    other = member(runtime, client, make_tenant(runtime, "globex").name)
    for webhook_id in (hook["id"], "wh_00000000000000000000"):
        r = client.post(
            f"/appyard/v1/webhooks/{webhook_id}/redeliver",
            json={"event_id": event_id},
            headers=other,
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "webhook.not_found", r.text
