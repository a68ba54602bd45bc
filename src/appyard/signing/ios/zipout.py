"""Writing a new zip entry from a stream: deflated, with a data descriptor (CRC-32 and sizes
after the data), so a 100 MB signed binary is compressed and written in one pass without
being held in memory. The entry keeps the replaced entry's file mode and time."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable

from appyard.signing.align import OffsetWriter
from appyard.signing.ios.errors import IpaSigningRefused
from appyard.signing.zipmeta import CentralDirectoryEntry

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_DESCRIPTOR = struct.Struct("<IIII")
_DOS_TIME, _DOS_DATE = 0, (1 << 9) | (1 << 5) | 1  # 1981-01-01 for entries that are new
FLAG_DESCRIPTOR, FLAG_UTF8 = 0x08, 0x800
MADE_BY_UNIX = 0x0314
LIMIT = 0xFFFFFFFF


def write_stream_entry(
    out: OffsetWriter,
    name: str,
    chunks: Iterable[bytes],
    *,
    template: CentralDirectoryEntry | None = None,
    mode: int = 0o100644,
) -> bytes:
    """Write ``name`` at ``out.offset``; return its central directory record."""
    raw_name = name.encode("utf-8")
    flags = FLAG_DESCRIPTOR | (0 if raw_name.isascii() else FLAG_UTF8)
    if template is not None:
        made_by, time, date = (
            template.version_made_by,
            template.last_mod_time,
            template.last_mod_date,
        )
        external = template.external_attrs
    else:
        made_by, time, date, external = MADE_BY_UNIX, _DOS_TIME, _DOS_DATE, mode << 16
    offset = out.offset
    out.write(_LOCAL.pack(0x04034B50, 20, flags, 8, time, date, 0, 0, 0, len(raw_name), 0))
    out.write(raw_name)
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    crc = 0
    size = 0
    packed = 0
    for chunk in chunks:
        crc = zlib.crc32(chunk, crc)
        size += len(chunk)
        data = deflater.compress(chunk)
        packed += len(data)
        out.write(data)
    tail = deflater.flush()
    packed += len(tail)
    out.write(tail)
    if size > LIMIT or packed > LIMIT or offset > LIMIT:
        raise IpaSigningRefused(f"{name} would need ZIP64 (over 4 GiB); appyard writes none.")
    out.write(_DESCRIPTOR.pack(0x08074B50, crc, packed, size))
    return (
        _CENTRAL.pack(
            0x02014B50,
            made_by,
            20,
            flags,
            8,
            time,
            date,
            crc,
            packed,
            size,
            len(raw_name),
            0,
            0,
            0,
            0,
            external,
            offset,
        )
        + raw_name
    )
