"""The operator's commands on one database: `appyard admin jobs list|retry|cancel`, `uploads
list`, `pin`, `set-retention` and `retention --dry-run --json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from appyard.cli.main import app
from appyard.core import builds, jobs
from appyard.core.models import BuildStatus, JobState
from appyard.runtime import Runtime
from appyard.settings import Settings
from tests.conftest import FIXTURES, TenantKey, upload_build


@pytest.fixture
def admin(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("APPYARD_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("APPYARD_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("APPYARD_STORAGE_URL", settings.effective_storage_url)
    monkeypatch.setenv("APPYARD_QUEUE_URL", settings.queue_url)
    monkeypatch.setenv("APPYARD_SECRET_KEY", "test-secret-key")

    def run(*args: str, code: int = 0) -> Any:
        result = CliRunner().invoke(app, ["admin", *args])
        assert result.exit_code == code, result.output
        return json.loads(result.stdout) if "--json" in args and code == 0 else result.output

    return run


def test_jobs_are_listed_cancelled_and_run_again(
    admin: Any, runtime: Runtime, tenant: TenantKey
) -> None:
    build = upload_build(runtime, tenant, FIXTURES / "fixture-release-v1v2v3.apk")
    listed = admin("jobs", "list", "--state", "queued", "--json")
    assert [(j["kind"], j["build_id"]) for j in listed] == [(jobs.PROCESS_BUILD, build.id)]
    job_id = listed[0]["id"]
    assert admin("jobs", "list", "--tenant", "acme", "--state", "failed", "--json") == []

    cancelled = admin("jobs", "cancel", job_id, "--reason", "Stuck, by ops.", "--json")
    assert cancelled["state"] == "cancelled"
    with runtime.services.uow() as uow:
        failed = uow.builds.get(build.id)
    assert failed is not None and failed.status is BuildStatus.FAILED
    assert failed.error_message == "Stuck, by ops."
    assert "already cancelled" in admin("jobs", "cancel", job_id, code=1)

    again = admin("jobs", "retry", job_id, "--json")
    assert again["state"] == "queued" and again["attempts"] == 0
    with runtime.services.uow() as uow:
        queued = uow.builds.get(build.id)
    assert queued is not None and queued.status is BuildStatus.PROCESSING
    assert "only failed or cancelled" in admin("jobs", "retry", job_id, code=1)
    assert "not found" in admin("jobs", "retry", "jb_nothing", code=1)


def test_a_running_job_cancelled_loses_its_lease(runtime: Runtime, tenant: TenantKey) -> None:
    upload_build(runtime, tenant, FIXTURES / "fixture-release-v1v2v3.apk")
    svc = runtime.services
    with svc.uow() as uow:
        running = jobs.claim(uow, svc.clock, owner="w", lease_seconds=60)
        uow.commit()
    assert running is not None
    with svc.transaction() as uow:
        jobs.cancel(uow, svc.clock, job_id=running.id, reason="no")
    with svc.uow() as uow:
        assert not jobs.renew(uow, svc.clock, job_id=running.id, owner="w", lease_seconds=60)
        assert jobs.claim(uow, svc.clock, owner="other", lease_seconds=60) is None
        assert (uow.jobs.get(running.id) or running).state is JobState.CANCELLED


def test_uploads_are_listed_by_state(admin: Any, runtime: Runtime, tenant: TenantKey) -> None:
    svc = runtime.services
    upload_build(runtime, tenant, FIXTURES / "fixture-release-v1v2v3.apk")
    with svc.transaction() as uow:
        builds.request_upload(
            uow,
            svc.clock,
            svc.store,
            svc.policy,
            tenant.actor,
            file_name="later.apk",
            platform="android",
            version="production",
            file_size=10,
            signing_key_id=None,
            source="test",
        )
    everything = admin("uploads", "list", "--json")
    assert sorted(u["state"] for u in everything) == ["pending", "received"]
    pending = admin("uploads", "list", "--state", "pending", "--tenant", "acme", "--json")
    assert [u["file_name"] for u in pending] == ["later.apk"]
    assert "later.apk" in admin("uploads", "list")


def test_retention_is_set_reported_dry_and_applied(
    admin: Any, runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    from tests.core.test_retention import finished_build

    old = finished_build(runtime, tenant)
    pinned = finished_build(runtime, tenant)
    newest = finished_build(runtime, tenant)
    admin("pin", pinned.id, "--json")
    assert admin("set-retention", "--tenant", "acme", "--keep-last", "1", "--json") == {
        "tenant": "acme",
        "app": None,
        "keep_last": 1,
        "keep_days": None,
    }

    report = admin("retention", "--dry-run", "--json")
    assert report["dry_run"] is True and report["builds"] == 1 and report["bytes"] == 2000
    (entry,) = report["tenants"]
    assert [b["id"] for b in entry["builds"]] == [old.id]
    assert [(b["id"], b["because"]) for b in entry["kept_anyway"]] == [(pinned.id, "pinned")]
    assert runtime.services.store.stat(old.source_key) is not None  # a dry run removes nothing

    applied = admin("retention", "--json")
    assert applied["dry_run"] is False and applied["builds"] == 1
    assert runtime.services.store.stat(old.source_key) is None
    assert runtime.services.store.stat(newest.source_key) is not None
    assert admin("retention", "--dry-run", "--json")["builds"] == 0
    assert "removed 0 build(s)" in admin("retention")

    admin("pin", pinned.id, "--unpin")
    assert admin("retention", "--dry-run", "--json")["builds"] == 1
    admin("set-retention", "--tenant", "acme", "--clear")
    assert admin("retention", "--dry-run", "--json")["tenants"] == []
    assert "keep-last" in admin("set-retention", "--tenant", "acme", code=1)
