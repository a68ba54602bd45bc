"""The compiled resource table of an APK (``resources.arsc``).

:class:`ArscTable` validates the chunk structure on load the way Android's ``ResTable::add``
and ``parsePackage`` do (table header, one global string pool, the declared number of
packages, each package's type and key string pools, type chunks whose entry index fits in
the chunk) and indexes every type chunk by (package id, type id) with its configuration.
Entries are read only when looked up (:meth:`ArscTable.values`), and strings decoded only
when used, so a large table costs little more than a walk over its chunk headers.

Entry formats: dense (``uint32`` offsets), sparse (``FLAG_SPARSE``: ``uint16`` index and
offset/4 pairs, binary searched), 16-bit offsets (``FLAG_OFFSET16``) and compact entries
(``FLAG_COMPACT``). Complex entries (styles, arrays, plurals) are not simple values and are
skipped. Every offset is range-checked; a bad one raises
:class:`~appyard.inspect.android_resources.MalformedResource`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from appyard.inspect.android_resources import (
    CHUNK_HEADER,
    RES_STRING_POOL_TYPE,
    TYPE_STRING,
    Chunk,
    Config,
    MalformedResource,
    ResourceTable,
    ResValue,
    StringPool,
    iter_chunks,
    read_chunk,
)

RES_TABLE_TYPE = 0x0002
RES_TABLE_PACKAGE_TYPE = 0x0200
RES_TABLE_TYPE_TYPE = 0x0201

FLAG_SPARSE = 0x01
FLAG_OFFSET16 = 0x02
ENTRY_FLAG_COMPLEX = 0x0001
ENTRY_FLAG_COMPACT = 0x0008
NO_ENTRY = 0xFFFFFFFF

MAX_PACKAGES = 256
_PACKAGE_MIN_HEADER = 284  # chunk header, id, name[128], 4 string offsets
_TYPE_MIN_HEADER = 24  # chunk header, id/flags/reserved, entryCount, entriesStart, config.size
_TYPE_FIELDS = struct.Struct("<BBHII")
_ENTRY = struct.Struct("<HHI")
_VALUE = struct.Struct("<HBBI")


@dataclass(frozen=True, slots=True)
class _TypeChunk:
    chunk: Chunk
    config: Config
    flags: int
    entry_count: int
    entries_start: int  # absolute


@dataclass(slots=True)
class _Package:
    id: int
    type_strings: StringPool
    key_strings: StringPool
    type_id_offset: int


class ArscTable(ResourceTable):
    """A parsed ``resources.arsc``."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = data
        header = read_chunk(data, 0, len(data), CHUNK_HEADER.size + 4, "resource table")
        if header.type != RES_TABLE_TYPE:
            raise MalformedResource(f"it is not a resource table (type 0x{header.type:04x})")
        (declared,) = struct.unpack_from("<I", data, 8)
        if declared > MAX_PACKAGES:
            raise MalformedResource(f"it declares {declared} packages")
        self._strings: StringPool | None = None
        self._packages: dict[int, _Package] = {}
        self._types: dict[tuple[int, int], list[_TypeChunk]] = {}
        found = 0
        for chunk in iter_chunks(data, header.body, header.end, "resource table"):
            if chunk.type == RES_STRING_POOL_TYPE:
                if self._strings is None:  # Android uses the first one only
                    self._strings = StringPool(data, chunk)
            elif chunk.type == RES_TABLE_PACKAGE_TYPE:
                found += 1
                if found > declared:
                    raise MalformedResource(
                        f"it has more packages than the {declared} its header declares"
                    )
                self._parse_package(chunk)
        if found < declared:
            raise MalformedResource(f"it has {found} of the {declared} packages it declares")

    # -- loading ------------------------------------------------------------------------------
    def _parse_package(self, chunk: Chunk) -> None:
        data = self._data
        if chunk.header_size < _PACKAGE_MIN_HEADER:
            raise MalformedResource("a package chunk header is too small")
        (package_id,) = struct.unpack_from("<I", data, chunk.offset + 8)
        type_strings, _, key_strings, _ = struct.unpack_from("<IIII", data, chunk.offset + 268)
        type_id_offset = 0
        if chunk.header_size >= _PACKAGE_MIN_HEADER + 4:
            (type_id_offset,) = struct.unpack_from("<I", data, chunk.offset + 284)
        for what, rel in (("type", type_strings), ("key", key_strings)):
            if rel >= chunk.size or rel & 3:
                raise MalformedResource(f"a package's {what} strings are outside its chunk")
        if package_id > 0xFF:
            raise MalformedResource(f"package id {package_id} is out of range")
        package = _Package(
            id=package_id,
            type_strings=self._pool(chunk.offset + type_strings, chunk.end, "type"),
            key_strings=self._pool(chunk.offset + key_strings, chunk.end, "key"),
            type_id_offset=type_id_offset,
        )
        self._packages.setdefault(package_id, package)
        for sub in iter_chunks(data, chunk.body, chunk.end, "package"):
            if sub.type == RES_TABLE_TYPE_TYPE:
                type_chunk = self._parse_type(sub)
                key = (package_id, data[sub.offset + 8])
                self._types.setdefault(key, []).append(type_chunk)

    def _pool(self, offset: int, end: int, what: str) -> StringPool:
        chunk = read_chunk(self._data, offset, end, CHUNK_HEADER.size, f"{what} string pool")
        if chunk.type != RES_STRING_POOL_TYPE:
            raise MalformedResource(f"a package's {what} strings are not a string pool")
        return StringPool(self._data, chunk)

    def _parse_type(self, chunk: Chunk) -> _TypeChunk:
        data = self._data
        if chunk.header_size < _TYPE_MIN_HEADER:
            raise MalformedResource("a type chunk header is too small")
        type_id, flags, _, entry_count, entries_start = _TYPE_FIELDS.unpack_from(
            data, chunk.offset + 8
        )
        if type_id == 0:
            raise MalformedResource("a type chunk has type id 0")
        config = Config.from_bytes(data[chunk.offset + 20 : chunk.body])
        index_size = entry_count * (2 if flags & FLAG_OFFSET16 and not flags & FLAG_SPARSE else 4)
        if chunk.header_size + index_size > chunk.size:
            raise MalformedResource("a type chunk's entry index extends past the chunk")
        if entries_start > chunk.size:
            raise MalformedResource("a type chunk's entries start past the chunk")
        return _TypeChunk(chunk, config, flags, entry_count, chunk.offset + entries_start)

    # -- lookups ------------------------------------------------------------------------------
    def _entry_offset(self, t: _TypeChunk, index: int) -> int | None:
        data, base = self._data, t.chunk.body
        if t.flags & FLAG_SPARSE:
            low, high = 0, t.entry_count
            while low < high:
                mid = (low + high) // 2
                idx, off = struct.unpack_from("<HH", data, base + 4 * mid)
                if idx == index:
                    return int(off) * 4
                if idx < index:
                    low = mid + 1
                else:
                    high = mid
            return None
        if index >= t.entry_count:
            return None
        if t.flags & FLAG_OFFSET16:
            (off16,) = struct.unpack_from("<H", data, base + 2 * index)
            return None if off16 == 0xFFFF else off16 * 4
        (off,) = struct.unpack_from("<I", data, base + 4 * index)
        return None if off == NO_ENTRY else off

    def _read_entry(self, t: _TypeChunk, offset: int, res_id: int) -> ResValue | None:
        data, end = self._data, t.chunk.end
        pos = t.entries_start + offset
        if pos > end - _ENTRY.size or pos & 3:
            raise MalformedResource(f"entry 0x{res_id:08x} is outside its type chunk")
        size, flags, key = _ENTRY.unpack_from(data, pos)
        if flags & ENTRY_FLAG_COMPACT:
            return self._value(flags >> 8, key)
        if size < _ENTRY.size:
            raise MalformedResource(f"entry 0x{res_id:08x} is too small")
        if flags & ENTRY_FLAG_COMPLEX:
            return None
        vpos = pos + size
        if vpos > end - _VALUE.size:
            raise MalformedResource(f"the value of entry 0x{res_id:08x} is outside its chunk")
        _, _, dtype, value = _VALUE.unpack_from(data, vpos)
        return self._value(dtype, value)

    def _value(self, dtype: int, data: int) -> ResValue:
        if dtype == TYPE_STRING:
            text = self._strings.get(data) if self._strings else None
            return ResValue(dtype, data, text)
        return ResValue(dtype, data)

    def _values(self, res_id: int) -> list[tuple[Config, ResValue]]:
        key = (res_id >> 24, (res_id >> 16) & 0xFF)
        index = res_id & 0xFFFF
        out = []
        for t in self._types.get(key, ()):
            offset = self._entry_offset(t, index)
            if offset is None:
                continue
            value = self._read_entry(t, offset, res_id)
            if value is not None:
                out.append((t.config, value))
        return out

    def configs(self) -> Iterator[Config]:
        for chunks in self._types.values():
            for t in chunks:
                yield t.config

    def name(self, res_id: int) -> str | None:
        package = self._packages.get(res_id >> 24)
        type_id = (res_id >> 16) & 0xFF
        chunks = self._types.get((res_id >> 24, type_id))
        if package is None or not chunks:
            return None
        type_name = package.type_strings.get(type_id - 1 - package.type_id_offset)
        for t in chunks:
            offset = self._entry_offset(t, res_id & 0xFFFF)
            if offset is None:
                continue
            pos = t.entries_start + offset
            if pos > t.chunk.end - _ENTRY.size or pos & 3:
                return None
            size, flags, key = _ENTRY.unpack_from(self._data, pos)
            key_index = size if flags & ENTRY_FLAG_COMPACT else key
            key_name = package.key_strings.get(key_index)
            if type_name and key_name:
                return f"@{type_name}/{key_name}"
            return None
        return None
