"""Rows to core dataclasses and back (enums, tuples, aware datetimes), and the repositories'
common base, which translates a unique violation into core's Conflict."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Row, Select, Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.compiler import Compiled

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


# Per dataclass, result shape and column prefix: where each field's value sits in a row. A
# field looked up by name in a row's mapping costs more than the rest of a lookup by key (every
# request reads a token, a tenant and what it asks for); by position it is a tuple index.
_Layout = tuple[tuple[str, int, Callable[[Any], Any] | None], ...]
_LAYOUTS: dict[tuple[type, tuple[str, ...], str], _Layout] = {}


def _layout(cls: type, fields: tuple[str, ...], prefix: str) -> _Layout:
    key = (cls, fields, prefix)
    layout = _LAYOUTS.get(key)
    if layout is None:
        at = {name: i for i, name in enumerate(fields)}
        layout = tuple(
            (name, at[prefix + name], convert)
            for name, convert in _plan(cls)
            if prefix + name in at
        )
        _LAYOUTS[key] = layout
    return layout


def to_obj(cls: type[T], row: Any, *, prefix: str = "", **extra: Any) -> T:
    """Build a core dataclass from a row (or a mapping), converting enums and datetimes by
    field type. A field takes the column named ``prefix`` + its name (a row may carry the
    columns of several tables); fields without a column keep their defaults; ``extra`` gives
    fields their values."""
    kwargs: dict[str, Any] = {}
    if isinstance(row, Found | Row):
        fields, values = (row.fields, row.values) if isinstance(row, Found) else (row._fields, row)
        for name, i, convert in _layout(cls, fields, prefix):
            value = values[i]
            kwargs[name] = value if value is None or convert is None else convert(value)
    else:
        for name, convert in _plan(cls):
            if prefix + name in row:
                value = row[prefix + name]
                kwargs[name] = value if value is None or convert is None else convert(value)
    kwargs.update(extra)
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
        return first(self.conn, stmt, {f"k_{n}": v for n, v in equal.items()})


_BY_KEY: dict[tuple[str, tuple[str, ...]], Select[Any]] = {}


@dataclass(frozen=True, slots=True)
class Found:
    """One row read past SQLAlchemy's result machinery: its columns' names and values, the
    values converted as SQLAlchemy's column types convert them."""

    fields: tuple[str, ...]
    values: tuple[Any, ...]

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self.fields, self.values, strict=True))


@dataclass(frozen=True, slots=True)
class _Prepared:
    compiled: Compiled
    params: tuple[str, ...]  # the bound parameters' names, in the statement's order
    fields: tuple[str, ...]
    convert: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column, its type's conversion)


_PREPARED: dict[Select[Any], _Prepared] = {}  # a Select hashes and compares by identity


def first(conn: Connection, stmt: Select[Any], params: dict[str, Any]) -> Row[Any] | Found | None:
    """The first row of a constant statement (a module-level or cached ``Select`` with bound
    parameters of plain values: strings, numbers). On SQLite it runs on the cursor of the unit of
    work's own connection (inside its transaction), compiled once: a lookup by key costs
    SQLite about 15 us and SQLAlchemy's execution and result objects about 40 more, on every
    authenticated request (bench/README.md, "2026-12-06, third session"). Elsewhere,
    SQLAlchemy's ``execute(...).first()``."""
    if conn.dialect.name != "sqlite":
        return conn.execute(stmt, params).first()
    prepared = _PREPARED.get(stmt)
    if prepared is None:
        compiled = stmt.compile(dialect=conn.dialect)
        processors = [
            c.type.dialect_impl(conn.dialect).result_processor(conn.dialect, None)
            for c in stmt.selected_columns
        ]
        prepared = _PREPARED[stmt] = _Prepared(
            compiled=compiled,
            params=tuple(compiled.positiontup or ()),
            fields=tuple(stmt.selected_columns.keys()),
            convert=tuple((i, f) for i, f in enumerate(processors) if f is not None),
        )
    values = prepared.compiled.construct_params(params) or {}  # given, and the statement's own
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        raw = cursor.execute(
            prepared.compiled.string, [values[name] for name in prepared.params]
        ).fetchone()
    finally:
        cursor.close()
    if raw is None:
        return None
    columns = list(raw)
    for i, convert in prepared.convert:
        if columns[i] is not None:
            columns[i] = convert(columns[i])
    return Found(prepared.fields, tuple(columns))
