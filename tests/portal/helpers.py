"""Factories for portal tests: people, completed builds, a signed-in TestClient."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from appyard.core import apps, builds, jobs, users
from appyard.core.models import Build, ConfigVersion, Platform, Role
from appyard.runtime import Runtime

PASSWORD = "correct horse battery"


def make_user(runtime: Runtime, email: str, role: Role, tenant: str | None = None) -> None:
    svc = runtime.services
    with svc.transaction() as uow:
        users.create(
            uow,
            svc.clock,
            email=email,
            name=email,
            role=role,
            password=PASSWORD,
            tenant_name=tenant,
        )


def csrf_in(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:2000]
    return found.group(1)


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> Any:
    page = client.get("/signin")
    return client.post(
        "/signin",
        data={"csrf": csrf_in(page.text), "email": email, "password": password, "next": "/"},
        follow_redirects=False,
    )


def completed_build(
    runtime: Runtime,
    tenant_id: str,
    *,
    file_name: str,
    platform: Platform,
    identifier: str,
    version_code: str,
    version_name: str = "2.0.0",
    facts: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    data: bytes = b"PK\x05\x06" + b"\x00" * 18,
) -> Build:
    """A build of an app that went through core as an inspected build does: made, its bytes
    stored, its job succeeded with its facts."""
    svc = runtime.services
    with svc.transaction() as uow:
        app = apps.find_or_create(
            uow, svc.clock, tenant_id=tenant_id, platform=platform, identifier=identifier
        )
        build, job = builds.create(
            uow,
            svc.clock,
            tenant_id=tenant_id,
            platform=platform,
            config_version=ConfigVersion.PRODUCTION,
            file_name=file_name,
            source="test",
            job_kind=jobs.INSPECT_BUILD,
            waiting=False,
            app_id=app.id,
            meta=meta,
            identifier=identifier,
            version_code=version_code,
            version_name=version_name,
        )
    info = svc.store.write(build.source_key, [data])
    with svc.transaction() as uow:
        current = uow.jobs.get(job.id)
        assert current is not None
        jobs.succeed(
            uow,
            svc.clock,
            job=current,
            output_key=build.source_key,
            output_size=info.size,
            size=info.size,
            facts=facts or {},
        )
        done = uow.builds.get(build.id)
    assert done is not None
    return done
