"""``pip wheel`` and ``pip install`` work from a fresh clone, and the wheel carries what
appyard reads at run time; installed without extras, appyard serves the embedded default and
names the extra a scale-out URL needs."""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port, need, wait_for_port
from tests.packaging.test_dependencies import PROJECT, requirement_name

pytestmark = pytest.mark.slow

PACKAGE_DATA = [
    "appyard/py.typed",
    "appyard/checks/controls.yaml",
    "appyard/backends/db/migrations/env.py",
    "appyard/backends/db/migrations/script.py.mako",
    "appyard/portal/templates/base.html",  # the portal and install pages render from these
    "appyard/portal/static/portal.css",
]


def fresh_clone(target: Path) -> Path:
    """The files a clone of this checkout holds (tracked, and new files not ignored)."""
    need(shutil.which("git") is not None and (ROOT / ".git").exists(), "not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is not cloned
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, timeout=900
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clone = fresh_clone(tmp_path_factory.mktemp("clone"))
    dist = tmp_path_factory.mktemp("dist")
    built = run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, clone)
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("appyard-*.whl")
    return wheel


def test_the_wheel_holds_the_package_data_and_the_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.parser.Parser().parsestr(whl.read(meta_name).decode())
    migrations = sorted(
        p.name for p in (ROOT / "src/appyard/backends/db/migrations/versions").glob("0*.py")
    )

    assert set(PACKAGE_DATA) <= names
    assert {f"appyard/backends/db/migrations/versions/{m}" for m in migrations} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    assert meta["License-Expression"] == "MIT"
    assert meta["Summary"] and "appyard" in meta.get_payload()  # the README
    assert meta.get_all("Project-URL")
    assert {e for e in meta.get_all("Provides-Extra")} >= {"postgres", "s3", "redis", "all"}
    required = {requirement_name(r) for r in meta.get_all("Requires-Dist") if "extra ==" not in r}
    assert required == {requirement_name(r) for r in PROJECT["dependencies"]}


def test_installed_without_extras_it_serves_and_names_the_extra_a_url_needs(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    installed = run(venv / "bin/python", "-m", "pip", "install", "-q", wheel)
    assert installed.returncode == 0, installed.stderr
    missing = run(
        venv / "bin/python",
        "-c",
        "import importlib.util as u; print([m for m in ('boto3', 'redis', 'psycopg', 'jks',"
        " 'playwright') if u.find_spec(m)])",  # httpx (webhooks) and jinja2 (portal) are runtime
    )
    assert missing.stdout.strip() == "[]"

    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "APPYARD_DATA_DIR": str(tmp_path)}
    for variable, url, client, extra in [
        ("APPYARD_STORAGE_URL", "s3://bucket?endpoint=http://127.0.0.1:9", "boto3", "s3"),
        ("APPYARD_QUEUE_URL", "redis://127.0.0.1:9/0", "redis", "redis"),
        ("APPYARD_DATABASE_URL", "postgresql://u@127.0.0.1:9/db", "psycopg", "postgres"),
    ]:
        refused = run(venv / "bin/appyard", "serve", env={**env, variable: url})
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines() == [
            f"appyard: {variable} needs the {client} client, which is not installed: "
            f"pip install 'appyard[{extra}]'."
        ]

    port, downloads = free_port(), free_port()
    args = ["serve", "--port", str(port), "--download-port", str(downloads)]
    with subprocess.Popen(
        [venv / "bin/appyard", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as server:
        try:
            wait_for_port(port, server, timeout=60)
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        finally:
            server.terminate()
            server.wait(timeout=30)
