"""Facts as JSON-ready values: frozen dataclasses, enums, datetimes and plist values become
plain dicts, lists, strings and numbers (what the database keeps of a build's facts, and what
``appyard inspect --json`` prints)."""

from __future__ import annotations

import base64
import dataclasses
import enum
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any


class _Omit:
    """Marker: leave this value out of the document."""


_OMIT = _Omit()


def to_jsonable(value: Any, *, include_bytes: bool = False) -> Any:
    """Facts (frozen dataclasses, enums, datetimes, plist values) as JSON-ready values.

    Bytes become base64 strings with ``include_bytes``, else the field is left out.
    """
    result = _convert(value, include_bytes)
    return None if isinstance(result, _Omit) else result


def _convert(value: Any, include_bytes: bool) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return _convert(value.value, include_bytes)
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii") if include_bytes else _OMIT
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            converted = _convert(getattr(value, f.name), include_bytes)
            if not isinstance(converted, _Omit):
                out[f.name] = converted
        return out
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            converted = _convert(item, include_bytes)
            if not isinstance(converted, _Omit):
                out[str(key)] = converted
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        kept = [c for c in (_convert(i, include_bytes) for i in items) if not isinstance(c, _Omit)]
        return _OMIT if items and not kept else kept  # a list of bytes goes with its bytes
    return str(value)  # plistlib.UID and anything else: its text form
