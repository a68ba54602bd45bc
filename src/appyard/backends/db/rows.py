"""Rows to core dataclasses and back (enums, tuples, aware datetimes), and the repositories'
common base, which translates a unique violation into core's Conflict."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, insert, select
from sqlalchemy.exc import IntegrityError

from appyard import errors

T = TypeVar("T")


def aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def to_row(obj: Any, **override: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    out.update(override)
    return out


_HINTS: dict[type, dict[str, Any]] = {}


def to_obj(cls: type[T], row: Any, **extra: Any) -> T:
    """Build a core dataclass from a row, converting enums and datetimes by field type."""
    hints = _HINTS.setdefault(cls, typing.get_type_hints(cls))
    mapping = dict(row._mapping)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in extra:
            kwargs[f.name] = extra[f.name]
            continue
        if f.name not in mapping:
            continue
        value = mapping[f.name]
        hint = hints[f.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        target = next((a for a in args if a is not type(None)), hint)
        if value is None:
            kwargs[f.name] = None
        elif isinstance(target, type) and issubclass(target, enum.Enum):
            kwargs[f.name] = target(value)
        elif target is datetime:
            kwargs[f.name] = aware(value)
        elif typing.get_origin(target) is tuple:
            kwargs[f.name] = tuple(value)
        else:
            kwargs[f.name] = value
    return cls(**kwargs)


class Repo:
    table: Table

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _insert(self, values: dict[str, Any]) -> None:
        try:
            with self.conn.begin_nested():
                self.conn.execute(insert(self.table).values(**values))
        except IntegrityError as exc:
            raise errors.Conflict(f"{self.table.name} already exists.") from exc

    def _one(self, *where: Any) -> Any:
        return self.conn.execute(select(self.table).where(*where)).first()
