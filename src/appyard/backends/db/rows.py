"""Rows to core dataclasses and back (enums, tuples, aware datetimes), and the repositories'
common base, which translates a unique violation into core's Conflict."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Select, Table, bindparam, insert, select
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


# Per dataclass, computed once: each field's name and how a column value becomes the field's
# value (an enum, an aware datetime, a tuple, or as it is). Evaluating the type hints is dear
# (``typing.get_type_hints`` evaluates every annotation string), so never per row.
_Plan = list[tuple[str, Callable[[Any], Any] | None]]
_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls)
        plan = []
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
            target = next((a for a in args if a is not type(None)), hint)
            convert: Callable[[Any], Any] | None = None
            if isinstance(target, type) and issubclass(target, enum.Enum):
                convert = target
            elif target is datetime:
                convert = aware
            elif typing.get_origin(target) is tuple:
                convert = tuple
            plan.append((f.name, convert))
        _PLANS[cls] = plan
    return plan


def to_obj(cls: type[T], row: Any, **extra: Any) -> T:
    """Build a core dataclass from a row (or a row's mapping), converting enums and
    datetimes by field type."""
    mapping = row._mapping if hasattr(row, "_mapping") else row
    kwargs: dict[str, Any] = {}
    for name, convert in _plan(cls):
        if name in extra:
            kwargs[name] = extra[name]
            continue
        if name not in mapping:
            continue
        value = mapping[name]
        kwargs[name] = value if value is None or convert is None else convert(value)
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

    def _one_by(self, **equal: Any) -> Any:
        """The row whose columns equal ``equal``: for the hot lookups by key (every request
        authenticates), with the statement built once per table and columns rather than per
        call (building and hashing a statement costs more than SQLite running it)."""
        key = (self.table.name, tuple(equal))
        stmt = _BY_KEY.get(key)
        if stmt is None:
            where = [self.table.c[name] == bindparam(f"k_{name}") for name in equal]
            stmt = _BY_KEY.setdefault(key, select(self.table).where(*where))
        return self.conn.execute(stmt, {f"k_{n}": v for n, v in equal.items()}).first()


_BY_KEY: dict[tuple[str, tuple[str, ...]], Select[Any]] = {}
