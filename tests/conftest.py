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
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from appyard.backends.db import migrate
from appyard.backends.db.engine import make_engine
from appyard.backends.db.tables import metadata
from appyard.core import identity, tenants
from appyard.core.models import Actor, Build, Plan, TokenKind
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


LOCAL_EXPECTED = FIXTURES / "expected-generated.json"


def reference_truth() -> dict[str, dict[str, Any]]:
    """What the reference tools (aapt, apksigner, jarsigner, ...) say about each fixture,
    by file name: the committed generated artifacts' (tests/fixtures/expected-generated.json)
    always, the third-party corpus's (../shared/fixtures/expected.json) when it is there."""
    import json

    truth: dict[str, dict[str, Any]] = {}
    shared = SHARED / "fixtures" / "expected.json"
    if shared.exists():
        truth.update(json.loads(shared.read_text()))
    truth.update(json.loads(LOCAL_EXPECTED.read_text()))
    return truth


def artifact(relative: str) -> Path:
    """A fixture by its path in expected.json: ``generated/X`` is the committed
    tests/fixtures/X (made by scripts/make-test-artifacts); ``thirdparty/X`` is in ../shared."""
    folder, _, name = relative.partition("/")
    if folder == "generated":
        return FIXTURES / name
    return shared_path("fixtures", *relative.split("/"))


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


# --- backends: the embedded shape, or the scale-out one ------------------------------------------
#
# APPYARD_TEST_SCALE_OUT=1 runs the tests that use ``settings``/``runtime`` (the dialect tests)
# on the scale-out backends: S3 storage on SeaweedFS (a key prefix per test) and the Redis
# queue (a list per test); with APPYARD_DATABASE_URL also on PostgreSQL. A TestClient then
# sends absolute URLs that are not its own (the store's presigned URLs) over real HTTP.

SCALE_OUT = os.environ.get("APPYARD_TEST_SCALE_OUT", "").lower() in ("1", "true", "yes")

# Tests of the local store's own signed URLs (its token format, size cap, one-PUT rule,
# parts on disk); S3 has other rules, which tests/backends/ and tests/scale/ cover.
LOCAL_STORE_ONLY = {
    "test_signed_upload_url_rejects_tampering_and_expiry": "local signed-URL token format",
    "test_signed_url_expires": "uses runtime.local_store",
    "test_upload_url_accepts_one_upload_only": "a presigned S3 PUT may be repeated",
    "test_part_larger_than_chunk_is_refused": "a presigned UploadPart cannot cap its size",
    "test_abort_discards_parts": "uses runtime.local_store",
    "test_multipart_that_never_completes_expires_and_parts_are_removed": "uses local_store",
    "test_multipart_upload_complete_and_process": "256 KiB parts; S3 needs 5 MiB",
    "test_multipart_upload_complete_and_abort": "256 KiB parts; S3 needs 5 MiB",
    "test_an_oversized_key_file_is_refused_at_the_url": "a presigned S3 PUT cannot cap its size",
}


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The run ends by saying, once, what it skipped and why (a count per reason), so a
    contributor sees what a fresh clone or a machine without some tool did not prove."""
    from collections import Counter

    reasons: Counter[str] = Counter()
    shared = (
        "../shared is not beside the checkout: the third-party fixture corpus and the vendor "
        "specs (extra cross-checks; the repository's own artifacts ran)"
    )
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = str(longrepr[2] if isinstance(longrepr, tuple) else longrepr)
        reason = reason.removeprefix("Skipped: ")
        if not SHARED.exists() and (
            "shared" in reason or "expected.json" in reason or "absent (tests/fixtures" in reason
        ):
            reason = shared
        reasons[reason] += 1
    if not reasons:
        return
    total = sum(reasons.values())
    terminalreporter.section(f"skipped: {total} test(s), by reason")
    for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
        terminalreporter.write_line(f"{count:5d}  {reason}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # the secrets scan reads what every other test wrote: it runs last
    items.sort(key=lambda item: item.nodeid.startswith(SECRETS_SCAN))
    if not SCALE_OUT:
        return
    for item in items:
        reason = LOCAL_STORE_ONLY.get(getattr(item, "originalname", item.name))
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"local store only ({reason})"))


@pytest.fixture
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str
) -> Iterator[Settings]:
    scale_out: dict[str, str] = {}
    run = uuid.uuid4().hex[:12]
    if SCALE_OUT:
        s3: S3Server = request.getfixturevalue("s3_server")
        redis_url: str = request.getfixturevalue("redis_url")
        sep = "&" if "?" in redis_url else "?"
        scale_out = {
            "storage_url": s3.url(f"t-{run}"),
            "queue_url": f"{redis_url}{sep}list=appyard-test:{run}",
        }
        request.getfixturevalue("_real_http_for_other_hosts")
    yield Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        public_url="http://testserver",
        secret_key="test-secret-key",  # type: ignore[arg-type]
        **scale_out,  # type: ignore[arg-type]
    )
    if SCALE_OUT:  # wake-ups nobody took stay in the shared Redis otherwise
        import redis

        client = redis.Redis.from_url(redis_url)
        client.delete(f"appyard-test:{run}")
        client.close()


@dataclass
class StoreEvents:
    """Stands in for the bucket's event notification (AWS S3, MinIO and SeaweedFS can send
    one on each finished PUT): after a presigned PUT through a TestClient, appyard notices
    the object as after the local store's callback; so dialect tests that upload and then
    run a job directly hold on both shapes. Polling and the periodic sweep
    alone are tested in tests/scale/."""

    runtime: Runtime | None = None

    def object_put(self, path: str) -> None:
        """What the local store's report does (core.arrivals.stored) for the object at ``path``
        (``/<bucket>/<prefix>/<key>`` of a path-style presigned URL)."""
        if self.runtime is None:
            return
        from urllib.parse import unquote

        svc = self.runtime.services
        bucket, prefix = getattr(svc.store, "bucket", ""), getattr(svc.store, "prefix", "")
        head = "/" + "/".join(p for p in (bucket, prefix) if p) + "/"
        if not unquote(path).startswith(head):
            return
        key = unquote(path)[len(head) :]
        from appyard.core import arrivals

        info = svc.store.stat(key)
        if info is None:
            return
        with svc.transaction() as uow:
            arrivals.stored(svc, uow, key=key, info=info)


@pytest.fixture
def _real_http_for_other_hosts(monkeypatch: pytest.MonkeyPatch) -> Iterator[StoreEvents]:
    """TestClient requests to any host but its own go over the network (presigned URLs)."""
    from starlette import testclient

    httpx = testclient.httpx  # the httpx (or httpx2) the TestClient is built on
    network = httpx.HTTPTransport()
    in_app = testclient._TestClientTransport.handle_request
    events = StoreEvents()

    def handle(self: testclient._TestClientTransport, req: Any) -> Any:
        if req.url.host != "testserver":
            response = network.handle_request(req)
            response.read()
            if req.method == "PUT" and response.status_code == 200:
                if "uploadId" not in req.url.params:
                    events.object_put(req.url.path)
            return response
        return in_app(self, req)

    monkeypatch.setattr(testclient._TestClientTransport, "handle_request", handle)
    yield events
    network.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runtime(
    request: pytest.FixtureRequest, settings: Settings, clock: FakeClock
) -> Iterator[Runtime]:
    rt = build_runtime(settings, clock=clock)
    if SCALE_OUT:
        events: StoreEvents = request.getfixturevalue("_real_http_for_other_hosts")
        events.runtime = rt
    yield rt
    rt.engine.dispose()


@dataclass
class TenantKey:
    tenant_id: str
    name: str
    key: str
    actor: Actor

    @property
    def principal(self) -> Actor:
        return self.actor


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
    actor = Actor(
        id=issued.token.id if issued else "",
        tenant_id=tenant.id,
        token_kind=TokenKind.AUTOMATION,
    )
    return TenantKey(tenant.id, name, issued.raw if issued else "", actor)


def upload_build(
    runtime: Runtime,
    tenant: TenantKey,
    artifact: Path | bytes,
    *,
    file_name: str = "app.apk",
    version: str = "production",
    signing_key_id: str | None = None,
    services: Any = None,
) -> Build:
    """A build whose artifact arrived: requested as a client would, its bytes written to the
    store, and the arrival reported as the store does (its job is queued)."""
    from appyard.core import arrivals, builds

    svc = services or runtime.services
    data = artifact if isinstance(artifact, bytes) else artifact.read_bytes()
    with svc.transaction() as uow:
        made = builds.request_upload(
            uow,
            svc.clock,
            svc.store,
            svc.policy,
            tenant.actor,
            file_name=file_name,
            platform=builds.uploads.EXTENSION_PLATFORM[file_name.rsplit(".", 1)[1]].value,
            version=version,
            file_size=len(data),
            signing_key_id=signing_key_id,
            source="test",
        )
    info = svc.store.write(made.build.source_key, [data])
    with svc.transaction() as uow:
        assert arrivals.stored(svc, uow, key=made.build.source_key, info=info) is not None
    return made.build


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


def rewrite_zip(source: Path, target: Path, replace: dict[str, bytes | None]) -> Path:
    """Copy a zip entry by entry, replacing (bytes) or dropping (None) some entries."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as out:
        for info in src.infolist():
            if info.filename in replace:
                data = replace[info.filename]
                if data is None:
                    continue
            else:
                data = src.read(info.filename)
            out.writestr(info, data)
    return target


def padded_apk(path: Path, size: int) -> Path:
    """An unsigned APK of about ``size`` bytes at ``path``: the release fixture without its
    signature files plus a stored random asset (a managed key signs the output)."""
    with (
        zipfile.ZipFile(FIXTURES / "fixture-release-v1v2v3.apk") as src,
        zipfile.ZipFile(path, "w") as dst,
    ):
        for info in src.infolist():
            if not info.filename.startswith("META-INF/"):
                dst.writestr(info, src.read(info))
        dst.writestr(zipfile.ZipInfo("assets/blob.bin"), os.urandom(size))
    return path


def apk_with_large_assets(
    path: Path, base: Path, *, mib: int, extra: dict[str, bytes] | None = None
) -> Path:
    """``base`` plus ``assets/stored.bin`` and ``assets/deflated.bin`` of ``mib`` MiB each,
    written 1 MiB at a time (never whole in memory), and ``extra`` small entries: an input
    for the tests that show memory stays flat in the size of the APK."""
    block = os.urandom(1024 * 1024)
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        for name, method in (
            ("assets/stored.bin", zipfile.ZIP_STORED),
            ("assets/deflated.bin", zipfile.ZIP_DEFLATED),
        ):
            with dst.open(zipfile.ZipInfo(name), "w") as fh:
                fh._compress_type = method  # type: ignore[attr-defined]
                for _ in range(mib):
                    fh.write(block)
        for name, data in (extra or {}).items():
            dst.writestr(name, data)
    return path


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


# ``appyard`` as the tests run it: the CLI in its own process, its output also copied into the
# session's transcripts (tests/transcribe.py), which tests/test_secrets_in_output.py reads.
APPYARD = [sys.executable, str(ROOT / "tests" / "transcribe.py")]


# --- transcripts: every log line and CLI output of the run, for the secrets scan ---------------

TRANSCRIPTS = "APPYARD_TEST_TRANSCRIPTS"
SECRETS_SCAN = "tests/test_secrets_in_output.py"


@pytest.fixture(scope="session", autouse=True)
def transcripts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder that receives the output of every ``appyard`` process the tests start (via
    tests/transcribe.py), of every in-process ``CliRunner`` run, and the in-process log lines
    as appyard's own handler writes them (its formatter and redaction)."""
    import json
    import logging

    from typer.testing import CliRunner

    from appyard import logs

    folder = tmp_path_factory.getbasetemp() / "transcripts"
    folder.mkdir(exist_ok=True)
    os.environ[TRANSCRIPTS] = str(folder)
    stream = open(folder / "in-process.log", "a", encoding="utf-8")
    handler = logs.handler()
    handler.setStream(stream)  # type: ignore[attr-defined]
    handler.setLevel(logging.INFO)
    _LOG_HANDLER.append(handler)
    invoke = CliRunner.invoke

    def recorded(self: CliRunner, app: Any, args: Any = None, *more: Any, **kw: Any) -> Any:
        result = invoke(self, app, args, *more, **kw)
        argv = [str(a) for a in args] if isinstance(args, list | tuple) else [str(args)]
        name = folder / f"runner-{time.time_ns()}.txt"
        name.write_text(json.dumps(argv) + "\n" + result.output, encoding="utf-8")
        return result

    CliRunner.invoke = recorded  # type: ignore[method-assign]
    yield folder
    CliRunner.invoke = invoke  # type: ignore[method-assign]
    _LOG_HANDLER.clear()
    stream.close()
    os.environ.pop(TRANSCRIPTS, None)


_LOG_HANDLER: list[Any] = []


@pytest.fixture(autouse=True)
def _logs_transcribed() -> None:
    """Every test's in-process log lines reach the transcript (a test that set up logging
    replaced the root logger's handlers)."""
    import logging

    root = logging.getLogger()
    for handler in _LOG_HANDLER:
        if handler not in root.handlers:
            root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


# Service fixtures (SeaweedFS, Redis, an SMTP server, a webhook receiver) for every tier;
# imported last: they use the helpers above.
from tests.backends.services import (  # noqa: E402
    S3Server,
    private_redis,
    redis_url,
    s3_server,
)
from tests.going_out import receiver, smtp  # noqa: E402

__all__ = ["S3Server", "private_redis", "receiver", "redis_url", "s3_server", "smtp"]
