"""A live ``appyard serve`` (a subprocess on loopback, its own SQLite data directory) and the
``appyard`` client commands run against it as a CI job would: environment variables, no
terminal, a config directory of their own."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import APPYARD
from tests.e2e.conftest import Server, start_server


@dataclass
class Cli:
    server: Server
    home: Path  # XDG_CONFIG_HOME of the client

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPYARD_")}
        return {
            **env,
            "APPYARD_URL": self.server.url,
            "APPYARD_TOKEN": self.server.key,
            "XDG_CONFIG_HOME": str(self.home),
        }

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 180,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*APPYARD, *args],
            env={**self.env, **(env or {})},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def serve(tmp: Path, *extra: str, env: dict[str, str] | None = None) -> Server:
    data = tmp / "srv"
    return start_server(data, f"sqlite:///{data / 'appyard.db'}", *extra, env_extra=env)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for a module's tests (each makes its own builds)."""
    srv = serve(tmp_path_factory.mktemp("live"))
    yield srv
    srv.stop()


@pytest.fixture
def cli(live: Server, tmp_path: Path) -> Cli:
    return Cli(server=live, home=tmp_path / "config")
