"""Shared fixtures: a migrated database per test (SQLite, or PostgreSQL when
APPYARD_DATABASE_URL names one), a real local blob store, a controllable clock, services.

A test that needs a service that is absent skips locally; with CI=true it fails instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from appyard.backends.db import migrate
from appyard.backends.db.tables import metadata
from appyard.backends.db.uow import make_engine
from appyard.core import identity, tenants
from appyard.core.models import Plan, Principal, TokenKind
from appyard.runtime import Runtime, build_runtime
from appyard.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SHARED = ROOT.parent / "shared"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip when a service or file is absent on a developer's machine; fail in CI."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    need(path.exists(), f"{path} is absent (../shared not beside the checkout)")
    return path


class FakeClock:
    def __init__(self) -> None:
        self.current = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **kwargs: float) -> None:
        self.current += timedelta(**kwargs)


# --- databases ---------------------------------------------------------------------------------

PG_URL = os.environ.get("APPYARD_DATABASE_URL", "")


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database: a SQLite file to copy, or a PostgreSQL schema to truncate."""
    if PG_URL.startswith("postgresql"):
        schema = f"t_{uuid.uuid4().hex[:10]}"
        admin = make_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in PG_URL else "?"
        url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    else:
        path = tmp_path_factory.mktemp("db") / "template.db"
        engine = make_engine(f"sqlite:///{path}")
        migrate.upgrade(engine)
        engine.dispose()
        yield str(path)


@pytest.fixture
def database_url(database_template: str, tmp_path: Path) -> Iterator[str]:
    if database_template.startswith("postgresql"):
        engine = make_engine(database_template)
        with engine.begin() as conn:
            names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} CASCADE"))
        engine.dispose()
        yield database_template
    else:
        path = tmp_path / "appyard.db"
        shutil.copyfile(database_template, path)
        yield f"sqlite:///{path}"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        public_url="http://testserver",
        secret_key="test-secret-key",  # type: ignore[arg-type]
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runtime(settings: Settings, clock: FakeClock) -> Iterator[Runtime]:
    rt = build_runtime(settings, clock=clock)
    yield rt
    rt.engine.dispose()


@dataclass
class TenantKey:
    tenant_id: str
    name: str
    key: str
    principal: Principal


def make_tenant(runtime: Runtime, name: str = "acme", plan: Plan = Plan.TEAM) -> TenantKey:
    svc = runtime.services
    with svc.uow() as uow:
        tenant = tenants.create(uow, svc.clock, name=name, plan=plan)
        issued = (
            identity.create_token(uow, svc.clock, tenant_id=tenant.id, kind=TokenKind.AUTOMATION)
            if plan is not Plan.FREE
            else None
        )
        uow.commit()
    principal = Principal(
        tenant_id=tenant.id,
        token_id=issued.token.id if issued else "",
        kind=TokenKind.AUTOMATION,
        scopes=(),
    )
    return TenantKey(tenant.id, name, issued.raw if issued else "", principal)


KEYS = FIXTURES / "keys"
RELEASE_KEY = ("release.p12", "fixture-release", "release")  # file, password, alias


def add_signing_key(
    runtime: Runtime,
    tenant_id: str,
    key: tuple[str, str, str] = RELEASE_KEY,
    name: str = "release key",
    default: bool = True,
) -> str:
    """A managed signing key from tests/fixtures/keys; returns its id."""
    from appyard.core import signing_keys
    from appyard.core.models import Platform

    svc = runtime.services
    with svc.uow() as uow:
        made = signing_keys.create_from_bytes(
            uow,
            svc.clock,
            svc.sealer(),
            tenant_id=tenant_id,
            name=name,
            platform=Platform.ANDROID,
            data=(KEYS / key[0]).read_bytes(),
            password=key[1],
            alias=key[2],
            created_by="test",
            make_default=default,
        )
        uow.commit()
    return made.id


@pytest.fixture
def tenant(runtime: Runtime) -> TenantKey:
    return make_tenant(runtime)


# --- processes on loopback ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


APPYARD = [sys.executable, "-m", "appyard.cli"]
