"""Portal tests: a real ``appyard serve`` driven by Debian's Chromium through Playwright.

Screenshots of every page a browser test visits go to ``$APPYARD_SCREENSHOTS`` (default
``tests/.screenshots``); their paths are listed at the end of the run, so CI keeps them in
its log."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, need
from tests.e2e.conftest import Server, server

__all__ = ["server"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(os.environ.get("APPYARD_SCREENSHOTS") or ROOT / "tests" / ".screenshots")
PASSWORD = "correct horse battery"
TAKEN: list[Path] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TAKEN:
        terminalreporter.section("portal screenshots")
        for path in TAKEN:
            terminalreporter.write_line(str(path))


class Shots:
    """Numbered full-page screenshots of one test, in SCREENSHOTS/<test name>/."""

    def __init__(self, name: str) -> None:
        self.folder = SCREENSHOTS / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.png"):
            old.unlink()
        self.count = 0

    def __call__(self, page: Any, what: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{what}.png"
        page.screenshot(path=str(path), full_page=True)
        TAKEN.append(path)
        return path


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    return Shots(request.node.name)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    need(CHROMIUM.exists(), "Debian's chromium is needed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "playwright is needed (pip install -e '.[dev]')")
        raise
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def create_user(server: Server, email: str, role: str, tenant: str | None = None) -> None:
    args = ["create-user", email, "--role", role, "--password-env", "PORTAL_PW", "--json"]
    if tenant:
        args += ["--tenant", tenant]
    made = server.admin(*args, env={"PORTAL_PW": PASSWORD})
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["email"] == email
