"""Property lists (Info.plist, the payload of embedded.mobileprovision) read as hostile input.

:func:`load_plist` wraps :mod:`plistlib` so that a plist an attacker wrote ends as
:class:`InvalidArtifact` with a reason a person can act on, never as a plistlib, expat or
struct error, and never as a value that makes later code recurse or loop forever.

Bounds (documented in docs/inspection-ios.md):

* the caller reads at most ``MAX_PLIST_BYTES`` bytes (the zip reader enforces it);
* a binary plist's trailer is checked before plistlib trusts it (object count, offset table
  inside the file, top object in range), so a lying trailer cannot make plistlib allocate or
  loop beyond the file's size;
* XML entity declarations are refused (plistlib does this; no "billion laughs");
* after parsing, the value is measured without recursion, in time linear in its distinct
  values: at most ``MAX_DEPTH`` levels of nesting and ``MAX_NODES`` values counted as a
  naive walk would meet them (a binary plist may share one array from many places, which
  expands exponentially in any later JSON dump), and no cycles (a binary plist can make an
  array contain itself).
"""

from __future__ import annotations

import plistlib
import re
import struct
from datetime import UTC, datetime
from typing import Any, Literal
from xml.parsers.expat import ExpatError

from appyard.errors import InvalidArtifact

MAX_PLIST_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000

PlistFormat = Literal["xml", "binary"]

_BINARY_MAGIC = b"bplist00"


def plist_format(data: bytes) -> PlistFormat | None:
    """``"binary"``, ``"xml"`` or None when ``data`` does not look like a property list."""
    if data.startswith(_BINARY_MAGIC):
        return "binary"
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith((b"<?xml", b"<plist", b"<!DOCTYPE plist")):
        return "xml"
    return None


def _check_binary_trailer(data: bytes, what: str) -> None:
    if len(data) < len(_BINARY_MAGIC) + 32:
        raise InvalidArtifact(f"{what} is a truncated binary plist.", reason="bad_plist")
    offset_size, ref_size, num_objects, top_object, table_offset = struct.unpack(
        ">6xBBQQQ", data[-32:]
    )
    body_end = len(data) - 32
    if (
        offset_size not in (1, 2, 4, 8)
        or ref_size not in (1, 2, 4, 8)
        or num_objects == 0
        or top_object >= num_objects
        or table_offset < len(_BINARY_MAGIC)
        or table_offset > body_end
        or num_objects * offset_size > body_end - table_offset
    ):
        raise InvalidArtifact(
            f"{what} is a binary plist whose trailer does not describe the file "
            "(corrupt or truncated).",
            reason="bad_plist",
        )


_XML_CONTAINER = re.compile(rb"<(/?)(?:array|dict)\b[^>]*?(/?)>")


def _check_xml_depth(data: bytes, what: str) -> None:
    """Refuse deep nesting before plistlib builds it (a cheap scan of the tags)."""
    depth = 0
    for match in _XML_CONTAINER.finditer(data):
        if match.group(2):  # <array/>
            continue
        depth += -1 if match.group(1) else 1
        if depth > MAX_DEPTH:
            raise InvalidArtifact(
                f"{what} is nested more than {MAX_DEPTH} levels deep.", reason="plist_too_deep"
            )


def _check_shape(value: object, what: str, max_nodes: int = MAX_NODES) -> None:
    """Refuse cycles, deep nesting and exponential sharing, in time linear in the number of
    distinct values and without recursing.

    Each container's expanded size and height are computed once (post-order, memoised by
    identity), so an array shared from many places costs one visit, while the sizes still
    add up to what a naive walk (or a JSON dump) of the value would meet.
    """
    sizes: dict[int, int] = {}
    heights: dict[int, int] = {}
    open_: set[int] = set()  # expanded, not finished: the current path
    stack: list[tuple[object, int, bool]] = [(value, 0, False)]
    while stack:
        item, depth, finish = stack.pop()
        if not isinstance(item, dict | list):
            continue
        key = id(item)
        children = list(item.values()) if isinstance(item, dict) else item
        if finish:
            size, height = 1, 0
            for child in children:
                if isinstance(child, dict | list):
                    size += sizes[id(child)]
                    height = max(height, heights[id(child)] + 1)
                else:
                    size += 1
            sizes[key], heights[key] = size, height
            open_.discard(key)
            if size > max_nodes:
                raise InvalidArtifact(
                    f"{what} has more than {max_nodes} values; refusing to read it.",
                    reason="plist_too_large",
                )
            if height >= MAX_DEPTH:
                raise InvalidArtifact(
                    f"{what} is nested more than {MAX_DEPTH} levels deep.",
                    reason="plist_too_deep",
                )
            continue
        if key in sizes:
            continue
        if key in open_:
            raise InvalidArtifact(
                f"{what} contains itself (a cyclic binary plist).", reason="bad_plist"
            )
        if depth >= MAX_DEPTH:
            raise InvalidArtifact(
                f"{what} is nested more than {MAX_DEPTH} levels deep.", reason="plist_too_deep"
            )
        open_.add(key)
        stack.append((item, depth, True))
        stack.extend(
            (child, depth + 1, False)
            for child in children
            if isinstance(child, dict | list) and id(child) not in sizes
        )


def load_plist(
    data: bytes,
    *,
    what: str,
    max_bytes: int = MAX_PLIST_BYTES,
    max_nodes: int = MAX_NODES,
) -> tuple[dict[str, Any], PlistFormat]:
    """Parse ``data`` as a property list whose top level is a dictionary.

    ``what`` names the file in error messages ("Payload/App.app/Info.plist"); ``max_bytes``
    and ``max_nodes`` raise the bounds for large plists (CodeResources lists every file).
    """
    if len(data) > max_bytes:
        raise InvalidArtifact(
            f"{what} is {len(data)} bytes; at most {max_bytes} are read.",
            reason="plist_too_large",
        )
    fmt = plist_format(data)
    if fmt is None:
        raise InvalidArtifact(
            f"{what} is neither an XML nor a binary property list.", reason="bad_plist"
        )
    if fmt == "binary":
        _check_binary_trailer(data, what)
    else:
        _check_xml_depth(data, what)
    try:
        value = plistlib.loads(
            data, fmt=plistlib.FMT_BINARY if fmt == "binary" else plistlib.FMT_XML
        )
    except RecursionError:
        raise InvalidArtifact(
            f"{what} is nested too deeply to read.", reason="plist_too_deep"
        ) from None
    except (
        plistlib.InvalidFileException,
        ExpatError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        OverflowError,
        struct.error,
        UnicodeError,
        LookupError,  # an XML declaration naming an unknown encoding
    ) as exc:
        detail = str(exc) or type(exc).__name__
        raise InvalidArtifact(
            f"{what} is not a valid property list ({detail}).", reason="bad_plist"
        ) from None
    _check_shape(value, what, max_nodes)
    if not isinstance(value, dict):
        raise InvalidArtifact(
            f"{what} is a property list but not a dictionary (it holds a {type(value).__name__}).",
            reason="bad_plist",
        )
    return value, fmt


def get_str(plist: dict[str, Any], key: str) -> str | None:
    value = plist.get(key)
    return value if isinstance(value, str) else None


def get_bool(plist: dict[str, Any], key: str) -> bool | None:
    value = plist.get(key)
    return value if isinstance(value, bool) else None


def get_str_list(plist: dict[str, Any], key: str) -> tuple[str, ...]:
    value = plist.get(key)
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def get_date(plist: dict[str, Any], key: str) -> datetime | None:
    """A plist date as an aware UTC datetime (plistlib returns naive UTC)."""
    value = plist.get(key)
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
