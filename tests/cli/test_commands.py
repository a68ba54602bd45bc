"""The ``appyard`` command itself: a version, help for every command, defaults shown, the
data directory accepted anywhere and never silently made anew, lists that cut nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import typer

from appyard.cli.common import hoist_data_dir
from appyard.cli.main import app
from appyard.cli.reports import appyard_version
from tests.conftest import APPYARD


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("APPYARD_")}
    return subprocess.run(
        [*APPYARD, *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_version() -> None:
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"appyard {appyard_version()}"


def test_every_command_and_subcommand_has_a_one_line_help() -> None:
    missing = []

    def walk(command: Any, path: list[str]) -> None:
        first = (command.help or "").strip().splitlines()
        if not first or not first[0].strip():
            missing.append(" ".join(path))
        elif len(first[0]) > 100:
            missing.append(f"{' '.join(path)} (first line over 100 characters)")
        for name, sub in getattr(command, "commands", {}).items():  # typer's own click
            walk(sub, [*path, name])

    root = typer.main.get_command(app)
    walk(root, ["appyard"])
    assert missing == []
    commands = root.commands  # type: ignore[attr-defined]
    assert {"upload", "status", "download", "findings", "serve", "admin"} <= set(commands)
    assert "approve" in commands["admin"].commands["version"].commands  # walked all the way


def test_serve_help_shows_its_defaults() -> None:
    r = run("serve", "--help", env={"COLUMNS": "200"})
    assert r.returncode == 0
    assert "default: 127.0.0.1" in r.stdout and "default: 8080" in r.stdout


def test_the_data_dir_option_moves_before_the_subcommand() -> None:
    assert hoist_data_dir(["admin", "list-keys", "--data-dir", "D", "--tenant", "t"]) == [
        "--data-dir", "D", "admin", "list-keys", "--tenant", "t",
    ]  # fmt: skip
    assert hoist_data_dir(["db", "upgrade", "--data-dir=D"]) == ["--data-dir=D", "db", "upgrade"]
    assert hoist_data_dir(["upload", "a.apk", "--", "--data-dir"]) == [
        "upload", "a.apk", "--", "--data-dir",
    ]  # fmt: skip


def test_admin_commands_say_there_is_no_database_instead_of_making_one(tmp_path: Path) -> None:
    empty = tmp_path / "elsewhere"
    r = run("admin", "list-tenants", "--data-dir", str(empty))
    assert r.returncode == 5
    assert "no appyard database at" in r.stderr and "appyard serve" in r.stderr
    assert not (empty / "appyard.db").exists()
    assert run("db", "current", "--data-dir", str(empty)).returncode == 5


def test_data_dir_after_the_subcommand_and_lists_that_cut_nothing(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    assert run("db", "upgrade", "--data-dir", data).returncode == 0
    made = run(
        "admin", "create-tenant", "acme", "--plan", "enterprise", "--json", "--data-dir", data
    )
    assert made.returncode == 0, made.stderr
    tenant_id = json.loads(made.stdout)["id"]
    limits = run(
        "admin", "set-limits", "--tenant", "acme", "--weekly-builds", "0", "--data-dir", data
    )
    assert limits.returncode == 0 and "None" not in limits.stdout
    assert "weekly builds unlimited" in limits.stdout
    key = run("admin", "create-key", "--tenant", "acme", "--json", "--data-dir", data)
    key_id = json.loads(key.stdout)["key_id"]

    narrow = {"COLUMNS": "50"}
    tenants = run("admin", "list-tenants", "--data-dir", data, env=narrow)
    assert tenant_id in tenants.stdout and "unlimited" in tenants.stdout
    assert "None" not in tenants.stdout
    keys = run("admin", "list-keys", "--tenant", "acme", "--data-dir", data, env=narrow)
    assert key_id in keys.stdout, keys.stdout
    missing = run("admin", "list-keys", "--tenant", "nobody", "--data-dir", data)
    assert missing.returncode == 1 and "nobody" in missing.stderr
