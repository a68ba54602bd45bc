"""Streaming zipalign: rewrite an APK so uncompressed entry data starts on aligned offsets.

Semantics of ``zipalign -p 4`` with 16 KiB pages: the data of every *stored* (uncompressed)
entry starts on a multiple of :data:`DEFAULT_ALIGNMENT` (4) bytes, and the data of stored
``.so`` files on a multiple of :data:`PAGE_ALIGNMENT` (16384) so Android can ``mmap`` them on
4 KiB and 16 KiB page devices alike (16384 is a multiple of 4096). Compressed entries are not
aligned (zipalign does not either).

The padding goes into the local file header's extra field as an alignment record (header id
``0xd935``, the id apksigner uses: ``uint16 alignment`` then zero bytes), replacing any earlier
alignment record or zero padding; other extra records are kept. Entry data is copied raw
(never recompressed) in :data:`COPY_CHUNK` pieces, central directory offsets are rewritten,
and anything that is not an entry (bytes before the first entry, gaps, an APK Signing Block)
is dropped. Memory use is bounded by the central directory, never by the APK's size.

The same machinery (:func:`read_layout`, :class:`OffsetWriter`, :func:`copy_entries`) is what
:mod:`appyard.signing.sign` uses to align while it signs, in one pass.

The zip structures are read with :mod:`appyard.signing.zipmeta` (the verifier's reader, which
follows apksig), so what the signer accepts is what ``apksigner`` accepts. Hostile input is
refused with :class:`~appyard.errors.InvalidArtifact` subclasses: no end of central
directory (``NotAZip``), ZIP64 or multi-disk archives, local headers that disagree with the
central directory (``MalformedZip``), and here, with a ``reason``: entries that overlap
(``overlapping_entries``), encrypted entries (``encrypted_entry``), duplicate names
(``duplicate_entry``).
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from appyard.errors import InvalidArtifact
from appyard.signing.zipmeta import (
    CHUNK_SIZE,
    FLAG_DATA_DESCRIPTOR,
    FLAG_ENCRYPTED,
    LOCAL_HEADER_SIZE,
    MAX_ENTRIES,
    METHOD_DEFLATED,
    METHOD_STORED,
    CentralDirectoryEntry,
    MalformedZip,
    ZipSections,
    find_zip_sections,
    local_data_range,
    read_central_directory,
    read_exactly,
)

DEFAULT_ALIGNMENT = 4
PAGE_ALIGNMENT = 16384
ALIGNMENT_EXTRA_ID = 0xD935
COPY_CHUNK = CHUNK_SIZE

STORED = METHOD_STORED
DEFLATED = METHOD_DEFLATED

_LOCAL = struct.Struct("<IHHHHHIIIHH")  # 30 bytes
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # 46 bytes
_EOCD = struct.Struct("<IHHHHIIH")  # 22 bytes
_LOCAL_SIG = 0x04034B50
_CENTRAL_SIG = 0x02014B50
_EOCD_SIG = 0x06054B50
_DESCRIPTOR_SIG = 0x08074B50
_OFFSET_FIELD = 42  # local header offset inside a central directory record


def _invalid(message: str, reason: str) -> InvalidArtifact:
    return InvalidArtifact(message, reason=reason)


# --- reading the layout -----------------------------------------------------------------------


@dataclass(frozen=True)
class ZipLayout:
    """An archive's central directory: entries in CD order, and each record's exact bytes."""

    sections: ZipSections
    entries: tuple[CentralDirectoryEntry, ...]
    records: tuple[bytes, ...]

    @property
    def comment(self) -> bytes:
        return self.sections.comment

    def find(self, name: str) -> CentralDirectoryEntry | None:
        return next((e for e in self.entries if e.name == name), None)


def record_with_offset(record: bytes, offset: int) -> bytes:
    """A central directory record with its local header offset set to ``offset``."""
    return record[:_OFFSET_FIELD] + struct.pack("<I", offset) + record[_OFFSET_FIELD + 4 :]


def read_layout(fh: BinaryIO) -> ZipLayout:
    """Locate and parse the EOCD and central directory of ``fh`` (refusing what we can't sign)."""
    sections = find_zip_sections(fh)
    entries = read_central_directory(fh, sections)
    cd = read_exactly(fh, sections.cd_offset, sections.cd_size)
    seen: set[str] = set()
    for entry in entries:
        if entry.flags & FLAG_ENCRYPTED:
            raise _invalid(f"The entry {entry.name!r} is encrypted.", "encrypted_entry")
        if entry.name in seen:
            raise _invalid(
                f"The archive contains the entry {entry.name!r} twice.", "duplicate_entry"
            )
        seen.add(entry.name)
    return ZipLayout(
        sections=sections,
        entries=tuple(entries),
        records=tuple(cd[e.record_offset : e.record_offset + e.record_size] for e in entries),
    )


# --- writing ----------------------------------------------------------------------------------


class OffsetWriter:
    """Writes to a binary file, counts the offset, and shows every byte to ``listener``."""

    def __init__(
        self, fh: BinaryIO, listener: Callable[[bytes | memoryview], None] | None = None
    ) -> None:
        self._fh = fh
        self._listener = listener
        self.offset = 0

    def write(self, data: bytes | memoryview) -> None:
        if not data:
            return
        self._fh.write(data)
        if self._listener is not None:
            self._listener(data)
        self.offset += len(data)


def alignment_for(entry: CentralDirectoryEntry, *, alignment: int, so_alignment: int) -> int:
    """The alignment ``entry``'s data needs (1: none, compressed entries are not aligned)."""
    if entry.method != STORED:
        return 1
    if entry.name.endswith(".so"):
        return so_alignment
    return alignment


def _without_padding(extra: bytes) -> bytes:
    """Extra records except alignment records and zero padding (a ragged tail is padding)."""
    kept = bytearray()
    pos = 0
    while pos + 4 <= len(extra):
        header_id, size = struct.unpack_from("<HH", extra, pos)
        if pos + 4 + size > len(extra):
            break
        if header_id not in (0, ALIGNMENT_EXTRA_ID):
            kept += extra[pos : pos + 4 + size]
        pos += 4 + size
    return bytes(kept)


def aligned_extra(extra: bytes, *, data_offset_without_extra: int, alignment: int) -> bytes:
    """``extra`` with an alignment record that makes the data start on ``alignment``."""
    if alignment <= 1:
        return extra
    kept = _without_padding(extra)
    start = data_offset_without_extra + len(kept) + 6
    padding = (-start) % alignment
    out = kept + struct.pack("<HHH", ALIGNMENT_EXTRA_ID, 2 + padding, alignment)
    out += b"\x00" * padding
    if len(out) > 0xFFFF:
        raise _invalid("An entry's extra field is too large to align.", "bad_entry")
    return out


def copy_entry(
    src: BinaryIO,
    entry: CentralDirectoryEntry,
    record: bytes,
    out: OffsetWriter,
    *,
    cd_offset: int,
    alignment: int,
    on_data: Callable[[bytes], None] | None = None,
) -> tuple[bytes, int]:
    """Copy ``entry``'s local record to ``out`` at ``out.offset``, aligned.

    ``on_data`` sees the entry's raw (compressed) data chunk by chunk. Returns the updated
    central directory record and the offset in ``src`` where the copied record ended.
    """
    data_offset, size = local_data_range(src, entry, cd_offset)
    fields = list(_LOCAL.unpack(read_exactly(src, entry.local_header_offset, LOCAL_HEADER_SIZE)))
    name_end = entry.local_header_offset + LOCAL_HEADER_SIZE + len(entry.raw_name)
    extra = read_exactly(src, name_end, data_offset - name_end)
    new_offset = out.offset
    extra = aligned_extra(
        extra,
        data_offset_without_extra=new_offset + LOCAL_HEADER_SIZE + len(entry.raw_name),
        alignment=alignment,
    )
    fields[10] = len(extra)
    out.write(_LOCAL.pack(*fields) + entry.raw_name + extra)
    src.seek(data_offset)
    remaining = size
    while remaining:
        chunk = src.read(min(remaining, COPY_CHUNK))
        if not chunk:
            raise MalformedZip(f"The data of entry {entry.name} is truncated.")
        remaining -= len(chunk)
        out.write(chunk)
        if on_data is not None:
            on_data(chunk)
    if entry.flags & FLAG_DATA_DESCRIPTOR:
        descriptor = src.read(12)
        if descriptor[:4] == struct.pack("<I", _DESCRIPTOR_SIG):
            descriptor += src.read(4)
        if len(descriptor) not in (12, 16) or src.tell() > cd_offset:
            raise MalformedZip(f"The data descriptor of entry {entry.name} is truncated.")
        out.write(descriptor)
    return record_with_offset(record, new_offset), src.tell()


def copy_entries(
    src: BinaryIO,
    layout: ZipLayout,
    out: OffsetWriter,
    *,
    keep: Callable[[CentralDirectoryEntry], bool] = lambda _entry: True,
    alignment: int = DEFAULT_ALIGNMENT,
    so_alignment: int = PAGE_ALIGNMENT,
    observe: Callable[[CentralDirectoryEntry], Callable[[bytes], None] | None] | None = None,
    after: Callable[[CentralDirectoryEntry], None] | None = None,
) -> list[bytes]:
    """Copy the entries ``keep`` accepts in local-offset order; return their new CD records
    in central directory order.

    Refuses entries whose local records overlap (several entries sharing one piece of data is
    how "overlapping" zip bombs multiply their size). ``observe(entry)`` may return a callback
    that sees the entry's raw data; ``after(entry)`` runs once the entry is copied.
    """
    cd_offset = layout.sections.cd_offset
    kept = [i for i, entry in enumerate(layout.entries) if keep(entry)]
    new_records: dict[int, bytes] = {}
    previous_end = 0
    for i in sorted(kept, key=lambda i: layout.entries[i].local_header_offset):
        entry = layout.entries[i]
        if entry.local_header_offset < previous_end:
            raise _invalid(
                f"The entry {entry.name!r} overlaps another entry.", "overlapping_entries"
            )
        new_records[i], previous_end = copy_entry(
            src,
            entry,
            layout.records[i],
            out,
            cd_offset=cd_offset,
            alignment=alignment_for(entry, alignment=alignment, so_alignment=so_alignment),
            on_data=observe(entry) if observe is not None else None,
        )
        if after is not None:
            after(entry)
    return [new_records[i] for i in kept]


_DOS_DATE = (1 << 9) | (1 << 5) | 1  # 1981-01-01, fixed so output does not depend on the clock


def write_entry(out: OffsetWriter, name: str, data: bytes) -> bytes:
    """Write a new deflated entry (small, in memory) at ``out.offset``; return its CD record."""
    raw_name = name.encode("utf-8")
    flags = 0 if raw_name.isascii() else 0x800
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = compressor.compress(data) + compressor.flush()
    crc = zlib.crc32(data)
    offset = out.offset
    out.write(
        _LOCAL.pack(
            _LOCAL_SIG,
            20,
            flags,
            DEFLATED,
            0,
            _DOS_DATE,
            crc,
            len(packed),
            len(data),
            len(raw_name),
            0,
        )
        + raw_name
    )
    out.write(packed)
    return (
        _CENTRAL.pack(
            _CENTRAL_SIG,
            20,
            20,
            flags,
            DEFLATED,
            0,
            _DOS_DATE,
            crc,
            len(packed),
            len(data),
            len(raw_name),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        + raw_name
    )


def end_of_central_directory(
    *, entry_count: int, cd_size: int, cd_offset: int, comment: bytes
) -> bytes:
    if entry_count > MAX_ENTRIES:
        raise _invalid(f"The archive would have more than {MAX_ENTRIES} entries.", "too_many")
    return (
        _EOCD.pack(_EOCD_SIG, 0, 0, entry_count, entry_count, cd_size, cd_offset, len(comment))
        + comment
    )


def finish_archive(out: OffsetWriter, records: list[bytes], *, comment: bytes) -> None:
    """Write the central directory ``records`` where ``out`` stands, then the end record."""
    cd_offset = out.offset
    cd = b"".join(records)
    out.write(cd)
    out.write(
        end_of_central_directory(
            entry_count=len(records), cd_size=len(cd), cd_offset=cd_offset, comment=comment
        )
    )


@contextlib.contextmanager
def replacing(dst: Path) -> Iterator[BinaryIO]:
    """A temporary file next to ``dst`` that replaces it on success and vanishes on failure."""
    dst = Path(dst)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb", buffering=COPY_CHUNK) as fh:
            yield fh
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --- public operations ------------------------------------------------------------------------


def align_apk(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    alignment: int = DEFAULT_ALIGNMENT,
    so_alignment: int = PAGE_ALIGNMENT,
) -> None:
    """Write an aligned copy of ``src`` to ``dst`` (``zipalign -p`` with 16 KiB pages).

    An APK Signing Block, if any, is dropped (alignment changes offsets, so v2+ signatures
    would no longer verify anyway); JAR (v1) signature files are kept and stay valid.
    """
    with open(src, "rb") as fh:
        layout = read_layout(fh)
        with replacing(Path(dst)) as raw:
            out = OffsetWriter(raw)
            records = copy_entries(fh, layout, out, alignment=alignment, so_alignment=so_alignment)
            finish_archive(out, records, comment=layout.comment)


@dataclass(frozen=True)
class Misaligned:
    name: str
    data_offset: int
    required: int


def check_alignment(
    path: str | os.PathLike[str],
    *,
    alignment: int = DEFAULT_ALIGNMENT,
    so_alignment: int = PAGE_ALIGNMENT,
) -> list[Misaligned]:
    """Stored entries whose data does not start on its required alignment (empty: aligned)."""
    bad: list[Misaligned] = []
    with open(path, "rb") as fh:
        layout = read_layout(fh)
        for entry in layout.entries:
            required = alignment_for(entry, alignment=alignment, so_alignment=so_alignment)
            data_offset, _size = local_data_range(fh, entry, layout.sections.cd_offset)
            if data_offset % required:
                bad.append(Misaligned(entry.name, data_offset, required))
    return bad
