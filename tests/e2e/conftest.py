"""``appyard serve`` as a subprocess on 127.0.0.1, with its own data dir and database."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import APPYARD, free_port, wait_for_port


@dataclass
class Server:
    url: str
    key: str
    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path

    def admin(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*APPYARD, "admin", *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(
    data_dir: Path, database_url: str, *extra: str, env_extra: dict[str, str] | None = None
) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "APPYARD_DATA_DIR": str(data_dir),
        "APPYARD_DATABASE_URL": database_url,
        "APPYARD_PORT": str(port),
        "APPYARD_DOWNLOAD_PORT": str(free_port()),
        "APPYARD_HOST": "127.0.0.1",
        **(env_extra or {}),
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / f"server-{port}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [*APPYARD, "serve", *extra], env=env, stdout=fh, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port, proc)
    except Exception:
        proc.kill()
        raise RuntimeError(log.read_text()) from None
    match = re.search(r"APPTEGO_API_KEY=(\S+)", log.read_text())
    return Server(
        url=f"http://127.0.0.1:{port}",
        key=match.group(1) if match else "",
        data_dir=data_dir,
        env=env,
        proc=proc,
        log=log,
    )


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    srv = start_server(tmp_path / "srv", database_url)
    yield srv
    srv.stop()
