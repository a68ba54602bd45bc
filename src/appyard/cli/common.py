"""What every server-side command shares: Settings built once from APPYARD_* (and CLI
options), and the runtime over them."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import typer
from pydantic import ValidationError

from appyard.cli import exits
from appyard.runtime import Runtime, build_runtime, upgrade_database
from appyard.settings import Settings


@dataclass
class Ctx:
    overrides: dict[str, Any] = field(default_factory=dict)
    runtime: Runtime | None = None

    def settings(self) -> Settings:
        """The settings; a contradiction or a missing client ends the command in one
        sentence per problem (exit status 2) instead of a traceback."""
        try:
            return Settings(**self.overrides)
        except ValidationError as exc:
            for problem in exc.errors():
                where = "".join(f"APPYARD_{str(p).upper()}" for p in problem["loc"][:1])
                message = str(problem["msg"]).removeprefix("Value error, ")
                typer.echo(f"appyard: {f'{where}: ' if where else ''}{message}", err=True)
            raise typer.Exit(2) from None


def ctx_obj(ctx: typer.Context) -> Ctx:
    root = ctx.find_root()
    if not isinstance(root.obj, Ctx):
        root.obj = Ctx()
    return root.obj


def sqlite_path(database_url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for other databases or in-memory SQLite)."""
    if not database_url.startswith("sqlite"):
        return None
    path = unquote(urlsplit(database_url).path)
    if not path or path == "/:memory:" or ":memory:" in database_url:
        return None
    return Path(path[1:] if path.startswith("//") else path)


def settings_or_exit(obj: Ctx) -> Settings:
    try:
        return obj.settings()
    except ValueError as exc:  # pydantic's ValidationError: a setting is wrong
        sys.stderr.write(f"appyard: configuration error: {exc}\n")
        raise typer.Exit(exits.CONFIG) from None


def runtime_from(
    ctx: typer.Context,
    *,
    migrate: bool = True,
    create_database: bool = False,
    migrate_apart: bool = False,
) -> Runtime:
    """The runtime over the settings. Only ``serve`` and ``db upgrade`` may make a new
    embedded database (``create_database``); every other command says that there is none
    at the chosen place (exit 5) instead of silently starting an empty one. ``serve``
    migrates the embedded database in a child process (``migrate_apart``)."""
    obj = ctx_obj(ctx)
    if obj.runtime is None:
        settings = settings_or_exit(obj)
        path = sqlite_path(settings.effective_database_url)
        if path is not None and not create_database and not path.exists():
            sys.stderr.write(
                f"appyard: no appyard database at {path} (data directory "
                f"{settings.data_dir.resolve()}).\n"
                "Point --data-dir (or APPYARD_DATA_DIR / APPYARD_DATABASE_URL) at the "
                "server's data directory, or start `appyard serve` there first.\n"
            )
            raise typer.Exit(exits.CONFIG)
        obj.runtime = build_runtime(settings)
        if migrate and obj.runtime.settings.effective_database_url.startswith("sqlite"):
            upgrade_database(obj.runtime, apart=migrate_apart)  # the embedded shape migrates itself
    return obj.runtime


def set_data_dir(ctx: typer.Context, data_dir: Path | None) -> None:
    if data_dir is not None:
        ctx_obj(ctx).overrides["data_dir"] = data_dir


_DURATION = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``2w``, ``45s`` -> a timedelta (typer's BadParameter else)."""
    match = _DURATION.match(value)
    if not match or int(match[1]) == 0:
        raise typer.BadParameter(f"{value!r} is not a duration such as 90d, 12h or 30m.")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def hoist_data_dir(argv: list[str]) -> list[str]:
    """``--data-dir D`` (or ``--data-dir=D``) anywhere among the arguments moves before the
    subcommand, where the root command reads it: ``appyard admin list-keys --data-dir D``
    works like ``appyard --data-dir D admin list-keys``. Arguments after ``--`` stay.
    ``admin restore`` keeps its own ``--data-dir`` (where the backup goes)."""
    if [a for a in argv if not a.startswith("-")][:2] == ["admin", "restore"]:
        return argv
    moved: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg == "--data-dir" and i + 1 < len(argv):
            moved = [arg, argv[i + 1]]
            i += 2
            continue
        if arg.startswith("--data-dir="):
            moved = [arg]
            i += 1
            continue
        rest.append(arg)
        i += 1
    return [*moved, *rest]
