"""What the portal offers a person on a version (``versions.allowed_actions``) is exactly what
core lets them do: for every role, in every status, every action either is offered and
succeeds, or is not offered and is refused."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appyard import errors
from appyard.core import identity, tenants, versions
from appyard.core.models import Actor, Plan, Role, TokenKind
from appyard.runtime import Runtime
from appyard.worker import Worker
from tests.conftest import FIXTURES

ATTEMPTS: dict[str, Callable[..., Any]] = {
    "submit": lambda uow, clock, actor, vid: versions.submit(uow, clock, actor, version_id=vid),
    "approve": lambda uow, clock, actor, vid: versions.approve(uow, clock, actor, version_id=vid),
    "reject": lambda uow, clock, actor, vid: versions.reject(
        uow, clock, actor, version_id=vid, reason="not yet"
    ),
    "release": lambda uow, clock, actor, vid: versions.release(
        uow,
        clock,
        actor,
        version_id=vid,
        countries=["DE"],
        vehicle_contexts=[],
        rollout_percentage=10,
    ),
    "rollout": lambda uow, clock, actor, vid: versions.set_rollout(
        uow, clock, actor, version_id=vid, percentage=100
    ),
    "halt": lambda uow, clock, actor, vid: versions.halt(uow, clock, actor, version_id=vid),
    "resume": lambda uow, clock, actor, vid: versions.resume(uow, clock, actor, version_id=vid),
    "withdraw": lambda uow, clock, actor, vid: versions.withdraw(
        uow, clock, actor, version_id=vid, reason=""
    ),
    "file_issue": lambda uow, clock, actor, vid: versions.file_issue(
        uow, clock, actor, version_id=vid, title="crash", severity="high"
    ),
}


def test_allowed_actions_are_exactly_what_core_permits(runtime: Runtime, tmp_path: Path) -> None:
    svc = runtime.services
    with svc.transaction() as uow:
        tenant = tenants.create(uow, svc.clock, name="acme", plan=Plan.TEAM)
        ci = identity.create_token(uow, svc.clock, tenant_id=tenant.id, kind=TokenKind.CI)
    token = Actor(id=ci.token.id, tenant_id=tenant.id, token_kind=TokenKind.CI)
    people = {
        "developer": Actor(id="us_dev", tenant_id=tenant.id, role=Role.DEVELOPER),
        "reviewer": Actor(id="us_rev", tenant_id=None, role=Role.STORE_REVIEWER),
        "admin": Actor(id="us_adm", tenant_id=None, role=Role.STORE_ADMIN),
        "ci token": token,
    }

    def upload(name: str) -> str:
        path = tmp_path / name
        shutil.copyfile(FIXTURES / name, path)
        with svc.transaction() as uow:
            version, _ = versions.ingest_ci_upload(svc, uow, token, path=path, file_name=name)
        while Worker(svc).run_once("test"):
            pass
        return version.id

    def check(vid: str, label: str) -> None:
        for who, actor in people.items():
            with svc.uow() as uow:
                version = versions.get(uow, actor, version_id=vid)
                offered = versions.allowed_actions(uow, actor, version)
            for name, attempt in ATTEMPTS.items():
                with svc.uow() as uow:  # never committed: each attempt is undone
                    try:
                        attempt(uow, svc.clock, actor, vid)
                        worked = True
                    except errors.AppyardError:
                        worked = False
                assert worked == (name in offered), f"{who} / {name} / {label}"

    def do(name: str, vid: str, actor: str, **kwargs: Any) -> None:
        with svc.transaction() as uow:
            ATTEMPTS[name](uow, svc.clock, people[actor], vid)

    first = upload("fixture-release-v1v2v3.apk")
    check(first, "draft")
    do("submit", first, "developer")
    check(first, "in review")
    do("approve", first, "reviewer")
    check(first, "approved")
    do("release", first, "admin")
    check(first, "live at 10%")
    do("halt", first, "admin")
    check(first, "live, halted")
    do("resume", first, "admin")
    do("rollout", first, "admin")
    check(first, "live at 100%")
    do("withdraw", first, "admin")
    check(first, "withdrawn")

    second = upload("fixture-release-vc2.apk")
    do("submit", second, "developer")
    do("reject", second, "reviewer")
    check(second, "rejected")
