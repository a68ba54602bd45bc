"""Fault tests: appyard processes on loopback killed with SIGKILL at chosen moments, services of
the test's own restarted, a store on a small filesystem filled up. After each fault the same
audit runs (:func:`audit`): no build reported completed whose output is missing or differs
(SHA-256), no orphan object or temporary file after the sweep, no job left running or queued,
every failed build says why.

Processes here are only the ones a test starts, stopped by their own PID; PostgreSQL is a
cluster of the test's own (``initdb`` in a temporary folder, stopped with ``pg_ctl`` by its
data folder), Redis a ``redis-server`` of its own, on free ports. The machine's shared services
(5432, 6379) are never touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from appyard.core.models import Stage
from appyard.runtime import build_runtime
from appyard.settings import Settings
from appyard.worker import Worker
from tests.conftest import APPYARD, FIXTURES, KEYS, free_port, need, padded_apk, wait_for_port

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"
LEASE_SECONDS = 5


@dataclass
class Proc:
    """An ``appyard`` subprocess this test started (serve or worker) and its log."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int | None = None

    def start(self) -> Proc:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                [*APPYARD, *self.args], env=self.env, stdout=fh, stderr=subprocess.STDOUT
            )
        if self.port is not None:
            try:
                wait_for_port(self.port, self.proc, timeout=60)
            except (RuntimeError, TimeoutError):
                self.stop()
                raise RuntimeError(self.log.read_text(errors="replace")) from None
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill9(self) -> None:
        """SIGKILL: nothing of the process's own cleanup runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Site:
    """One appyard installation on this machine: its settings (as environment variables),
    the processes started for it, its first tenant's automation key."""

    root: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)
    key: str = ""

    @property
    def data_dir(self) -> Path:
        return Path(self.env["APPYARD_DATA_DIR"])

    @property
    def database_url(self) -> str:
        return self.env["APPYARD_DATABASE_URL"]

    def cli(self, *args: str, extra: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [*APPYARD, *args],
            env={**self.env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def serve(self, *extra: str, name: str = "serve", port: int | None = None) -> Proc:
        """``appyard serve`` on ``port`` (a free one when None; a restart passes the port of
        the server it replaces: the signed URLs clients hold point at it)."""
        port = port or free_port()
        env = {**self.env, "APPYARD_PORT": str(port), "APPYARD_DOWNLOAD_PORT": "0"}
        proc = Proc(name, ["serve", *extra], env, self.root / f"{name}.log", port=port)
        self.procs.append(proc)
        proc.start()
        found = re.search(r"APPTEGO_API_KEY=(\S+)", proc.text())
        if found:
            self.key = found.group(1)
        return proc

    def worker(self, name: str = "worker", concurrency: int = 1) -> Proc:
        proc = Proc(
            name, ["worker", "--concurrency", str(concurrency)], self.env, self.root / f"{name}.log"
        )
        self.procs.append(proc)
        return proc.start()

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop()

    def signing_key(self) -> None:
        self.cli("admin", "add-signing-key", "--tenant", "default", "--name", "release",
                 "--keystore", str(KEYS / "release.p12"), "--alias", "release",
                 "--password-env", "KEYSTORE_PASSWORD", "--json",
                 extra={"KEYSTORE_PASSWORD": "fixture-release"})  # fmt: skip

    def admin_key(self, *args: str) -> str:
        return str(json.loads(self.cli("admin", "create-key", "--tenant", "default", *args,
                                       "--json"))["key"])  # fmt: skip

    def settings(self) -> Settings:
        return Settings(
            data_dir=self.data_dir,
            database_url=self.database_url,
            storage_url=self.env.get("APPYARD_STORAGE_URL", ""),
            secret_key=self.env["APPYARD_SECRET_KEY"],  # type: ignore[arg-type]
            master_key=self.env["APPYARD_MASTER_KEY"],  # type: ignore[arg-type]
        )


def make_site(root: Path, database_url: str = "", **env: str) -> Site:
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    base = {k: v for k, v in os.environ.items() if not k.startswith("APPYARD_")}
    site = Site(
        root,
        {
            **base,
            "APPYARD_DATA_DIR": str(data),
            "APPYARD_DATABASE_URL": database_url or f"sqlite:///{root / 'appyard.db'}",
            "APPYARD_HOST": "127.0.0.1",
            "APPYARD_SECRET_KEY": "fault-test-secret",
            "APPYARD_MASTER_KEY": "ZmF1bHQtdGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzISE=",
            "APPYARD_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
            "APPYARD_UPLOAD_SWEEP_SECONDS": "2",
            "APPYARD_LOG_LEVEL": "INFO",
            **env,
        },
    )
    return site


@pytest.fixture(scope="session")
def signed_apk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24 MiB APK signed with the release fixture key (what a CI pipeline uploads)."""
    folder = tmp_path_factory.mktemp("apk")
    padded_apk(folder / "padded.apk", 24 * 1024 * 1024)
    done = subprocess.run(
        [*APPYARD, "sign", str(folder / "padded.apk"), str(folder / "app.apk"),
         "--keystore", str(KEYS / "release.p12"), "--alias", "release",
         "--password-env", "KEYSTORE_PASSWORD"],
        env={**os.environ, "KEYSTORE_PASSWORD": "fixture-release"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return folder / "app.apk"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = make_site(tmp_path / "site")
    yield made
    made.stop_all()


# --- what every fault test checks afterwards --------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


@dataclass
class Audit:
    builds: list[Any]
    jobs: list[Any]

    def status(self, build_id: str) -> str:
        return next(str(b.status) for b in self.builds if b.id == build_id)


def audit(site: Site, *, expected: dict[str, str] | None = None) -> Audit:
    """Run a sweep (with every process of the site stopped), then check the site's state:
    every completed build's output is in the store with the recorded SHA-256 (and, for the
    builds in ``expected``, equal to the SHA-256 of a run without faults); every failed one
    says why; no job is queued or running; no object nobody refers to; no temporary file, job
    folder, spooled body or multipart part left over."""
    site.stop_all()
    runtime = build_runtime(site.settings())
    try:
        Worker(runtime.services).sweep()
        with runtime.engine.connect() as conn:
            builds = list(conn.execute(text(
                "SELECT id, tenant_id, status, progress, source_key, sha256, output_key,"
                " output_sha256, error_message FROM builds")))  # fmt: skip
            jobs = list(conn.execute(text("SELECT id, build_id, state, attempts FROM jobs")))
            uploads = list(conn.execute(text("SELECT key, state, multipart FROM uploads")))
    finally:
        runtime.engine.dispose()
    blobs = Path(site.settings().effective_storage_url.removeprefix("file://"))
    referenced: set[str] = set()
    for b in builds:
        assert b.status in ("completed", "failed"), f"build {b.id} stuck: {b.status} {b.progress}"
        referenced.update({b.source_key, f"{b.tenant_id}/icons/{b.id}"})
        if b.status == "completed":
            # what the build hands out: its output, or (a store version) its input
            key, sha = (b.output_key, b.output_sha256) if b.output_key else (b.source_key, b.sha256)
            assert key and sha, b
            referenced.add(key)
            path = blobs / "objects" / key
            assert path.is_file(), f"build {b.id} completed but its output is missing"
            assert sha256_of(path) == sha, f"build {b.id}: output differs"
            if expected and b.id in expected:
                assert sha == expected[b.id], f"build {b.id}: not the faultless output"
        else:
            assert b.error_message, f"build {b.id} failed without a message"
    for j in jobs:
        assert j.state in ("succeeded", "failed", "cancelled"), f"job {j.id} left {j.state}"
    assert not [u for u in uploads if u.state == "pending"], uploads
    objects = blobs / "objects"
    orphans = [p for p in files_in(objects) if str(p.relative_to(objects)) not in referenced]
    assert not orphans, f"orphan objects: {orphans}"
    data = site.data_dir
    left = [
        *files_in(blobs / "tmp"),
        *files_in(blobs / "multipart"),
        *files_in(blobs / "slots"),
        *files_in(data / "spool"),
        *files_in(data / "work"),
    ]
    assert not left, f"left over after the sweep: {left}"
    return Audit(builds, jobs)


# --- clients that retry, as CI pipelines do ----------------------------------------------------


def retrying(call: Callable[[], httpx.Response], *, ok: Callable[[httpx.Response], bool],
             timeout: float = 60) -> httpx.Response:  # fmt: skip
    """Call until the answer is ``ok``; connection errors and 5xx are retried."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            r = call()
            if ok(r):
                return r
            last = (r.status_code, r.text)
            if r.status_code < 500:
                raise AssertionError(f"the retry was refused: {last}")
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"no retry succeeded: {last}")


def wait_settled(api: httpx.Client, job_id: str, timeout: float = 90) -> dict[str, Any]:
    """The automation status once it is no longer processing."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            body = api.get(f"/automate/status/{job_id}").json()
            if body["status"] != "processing":
                return body
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"still processing after {timeout} s: {body}")


# --- holding a process at a chosen moment -------------------------------------------------------


def stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "Tt"
    except (FileNotFoundError, IndexError):
        return True


STAGES = list(Stage)


def kill_in_stage(proc: Proc, progress: Callable[[], str | None], stage: Stage,
                  timeout: float = 60) -> bool:  # fmt: skip
    """Run ``proc`` a few milliseconds at a time (SIGSTOP/SIGCONT) and SIGKILL it while the
    build's recorded progress is ``stage``: the worker is then inside that stage (its progress
    is written as the stage begins). False when the build went past the stage unseen."""
    deadline = time.monotonic() + timeout
    target = STAGES.index(stage)
    while time.monotonic() < deadline:
        os.kill(proc.pid, signal.SIGSTOP)
        while not stopped(proc.pid):
            time.sleep(0.0005)
        now = progress()
        at = STAGES.index(Stage(now)) if now else -1
        if at == target:
            proc.kill9()
            return True
        os.kill(proc.pid, signal.SIGCONT)
        if at > target:
            return False
        time.sleep(0.002)
    raise AssertionError(f"the worker never reached {stage.value!r}")


# --- services of the test's own ------------------------------------------------------------------


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own: ``initdb`` in a temporary folder, a free port,
    its unix socket in that folder; stopped and started with ``pg_ctl -D`` of that folder.
    As root it runs as the ``postgres`` user (initdb refuses root)."""

    def __init__(self, bin_dir: Path, folder: Path) -> None:
        self.bin = bin_dir
        self.folder = folder
        self.data = folder / "pgdata"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            need(shutil.which("runuser") is not None, "runuser runs initdb as postgres")
            try:
                import pwd

                pwd.getpwnam("postgres")
            except KeyError:
                need(False, "no 'postgres' user to run initdb as (it refuses root)")
            shutil.chown(folder, "postgres")
            os.chmod(folder, 0o700)

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        argv = [str(self.bin / tool), *args]
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stdout + done.stderr

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")  # fmt: skip

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off")  # fmt: skip
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                  str(self.folder / "postgres.log"), "-w", "start")  # fmt: skip
        wait_for_port(self.port)

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[PrivatePostgres]:
    bin_dir = _pg_bin()
    need(bin_dir is not None, "PostgreSQL's initdb is not installed")
    assert bin_dir is not None
    # not under tmp_path: its parents are private to root, and the cluster runs as postgres
    folder = Path(tempfile.mkdtemp(prefix="appyard-faults-pg-"))
    try:
        server = PrivatePostgres(bin_dir, folder)
        server.init()
        server.start()
        yield server
        server.stop("immediate")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
