"""The CI recipes in docs/ci/ work: each recipe's command lines, extracted from the file as
its CI system would read them, run in order against a live ``appyard serve``.

Stand-ins, and only for what is not appyard: ``./gradlew`` "builds" the release APK by
copying a fixture where Gradle puts it; ``pip`` and ``apt-get`` do nothing (the client is
installed here already). Everything else runs as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import Cli
from tests.conftest import FIXTURES, ROOT, need

RECIPES = ROOT / "docs" / "ci"
APK = "app/build/outputs/apk/release/app-release.apk"
EXPRESSION = re.compile(r"\$\{\{\s*steps\.([\w-]+)\.outputs\.([\w-]+)\s*\}\}")


def github_steps(text: str) -> Iterator[tuple[str | None, str]]:
    """(step id, run script) of every job's steps with ``run:``."""
    for job in yaml.safe_load(text)["jobs"].values():
        for step in job["steps"]:
            if "run" in step:
                yield step.get("id"), step["run"]


def gitlab_lines(text: str) -> Iterator[str]:
    for job in yaml.safe_load(text).values():
        if isinstance(job, dict) and "script" in job:
            for key in ("before_script", "script", "after_script"):
                yield from job.get(key, [])


def jenkins_lines(text: str) -> Iterator[str]:
    yield from re.findall(r"\bsh '([^']*)'", text)


def bitrise_scripts(text: str) -> Iterator[str]:
    for workflow in yaml.safe_load(text)["workflows"].values():
        for step in workflow["steps"]:
            ((name, body),) = step.items()
            if name.startswith("script@"):
                for item in body["inputs"]:
                    if "content" in item:
                        yield item["content"]


def fastlane_lines(text: str) -> Iterator[str]:
    for raw in re.findall(r'\bsh\("((?:[^"\\]|\\.)*)"\)', text):
        yield raw.replace('\\"', '"')


@pytest.fixture
def work(tmp_path: Path, cli: Cli) -> Iterator[tuple[Path, dict[str, str]]]:
    """A checkout-like work directory and the job's environment."""
    need(shutil.which("jq") is not None, "jq is needed by the recipes")
    root = tmp_path / "repo"
    root.mkdir()
    gradlew = root / "gradlew"
    gradlew.write_text(
        "#!/bin/sh\nset -e\n"
        f'mkdir -p "$(dirname {APK})"\ncp "{FIXTURES / "fixture-release-v1v2v3.apk"}" {APK}\n'
    )
    gradlew.chmod(0o755)
    shims = tmp_path / "shims"
    shims.mkdir()
    for tool in ("pip", "apt-get"):
        shim = shims / tool
        shim.write_text("#!/bin/sh\nexit 0\n")
        shim.chmod(0o755)
    client_bin = Path(sys.executable).parent  # where `appyard` is installed
    env = {
        **cli.env,
        "PATH": f"{shims}:{client_bin}:{os.environ.get('PATH', '')}",
        "GITHUB_OUTPUT": str(tmp_path / "github_output"),
        "BITRISE_DEPLOY_DIR": str(root / "deploy"),
    }
    (root / "deploy").mkdir()
    yield root, env


def sh(script: str, cwd: Path, env: dict[str, str]) -> None:
    r = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, f"{script}\n--- exit {r.returncode}\n{r.stdout}\n{r.stderr}"


def verified(apk: Path) -> None:
    assert apk.is_file(), f"{apk} was not written"
    if shutil.which("apksigner"):
        r = subprocess.run(["apksigner", "verify", str(apk)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def test_github_actions_recipe(work: tuple[Path, dict[str, str]]) -> None:
    root, env = work
    outputs: dict[str, dict[str, str]] = {}
    output_file = Path(env["GITHUB_OUTPUT"])
    for step_id, script in github_steps((RECIPES / "github-actions.yml").read_text()):
        script = EXPRESSION.sub(lambda m: outputs[m.group(1)][m.group(2)], script)
        output_file.write_text("")
        sh(script, root, env)
        if step_id:
            outputs[step_id] = dict(
                line.split("=", 1) for line in output_file.read_text().splitlines() if "=" in line
            )
    assert outputs["appyard"]["job_id"].isdigit()
    verified(root / "dist" / "app-release-protected.apk")
    assert (root / "appyard.sarif").is_file() and (root / "appyard-local.sarif").is_file()


def test_gitlab_ci_recipe(work: tuple[Path, dict[str, str]]) -> None:
    root, env = work
    lines = list(gitlab_lines((RECIPES / "gitlab-ci.yml").read_text()))
    assert any(line.startswith("appyard upload") for line in lines)
    for line in lines:
        sh(line, root, env)
    verified(root / "dist" / "app-release-protected.apk")
    assert "<testsuites" in (root / "appyard-junit.xml").read_text()


def test_jenkins_recipe(work: tuple[Path, dict[str, str]]) -> None:
    root, env = work
    lines = list(jenkins_lines((RECIPES / "Jenkinsfile").read_text()))
    assert len(lines) == 3
    for line in lines:
        sh(line, root, env)
    verified(root / "dist" / "app-release-protected.apk")
    assert (root / "appyard-junit.xml").is_file()


def test_bitrise_recipe(work: tuple[Path, dict[str, str]]) -> None:
    root, env = work
    scripts = list(bitrise_scripts((RECIPES / "bitrise.yml").read_text()))
    assert len(scripts) == 2
    for script in scripts:
        sh(script, root, env)
    verified(root / "deploy" / "app-release-protected.apk")
    assert (root / "deploy" / "appyard-junit.xml").is_file()


def test_fastlane_recipe(work: tuple[Path, dict[str, str]]) -> None:
    root, env = work
    sh("./gradlew assembleRelease", root, env)  # what the lane's gradle action does
    lane_dir = root / "fastlane"  # fastlane runs sh() here
    lane_dir.mkdir()
    lines = list(fastlane_lines((RECIPES / "Fastfile").read_text()))
    assert len(lines) == 2
    for line in lines:
        sh(line, lane_dir, env)
    verified(root / "dist" / "app-release-protected.apk")
    assert (root / "appyard-junit.xml").is_file()
