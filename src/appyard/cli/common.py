"""What every command shares: Settings built once from APPYARD_* (and CLI options)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

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


def runtime_from(ctx: typer.Context, *, migrate: bool = True) -> Runtime:
    obj = ctx_obj(ctx)
    if obj.runtime is None:
        obj.runtime = build_runtime(obj.settings())
        if migrate and obj.runtime.settings.effective_database_url.startswith("sqlite"):
            upgrade_database(obj.runtime)  # the embedded shape migrates itself
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
