"""The raw layout of a zip/APK: EOCD, central directory, local headers, APK Signing Block.

Everything here reads from a seekable binary file object and never holds more than one bounded
structure in memory (the central directory, the signing block, one 1 MiB buffer of entry data).
The rules follow apksig (the library behind ``apksigner``), so that what this module accepts and
refuses matches what ``apksigner verify`` accepts and refuses:

* :func:`find_zip_sections` finds the End of Central Directory record (with up to 65535 bytes of
  comment after it), refuses ZIP64 and multi-disk archives and requires the central directory to
  end exactly where the EOCD starts (an APK's three v2/v3 "sections" are then well defined).
* :func:`read_central_directory` parses every record (names are decoded as UTF-8, invalid bytes
  replaced); :func:`local_data_range` checks a record's local header against it.
* :func:`find_signing_block` returns the APK Signing Block that immediately precedes the central
  directory, or ``None`` when there is none. Like apksig, a block whose footer or sizes are
  inconsistent counts as absent; :attr:`SigningBlock.malformed` records why.

Errors: :class:`NotAZip` (an :class:`~appyard.errors.InvalidArtifact`) when the file has no
usable EOCD at all, :class:`MalformedZip` (also an ``InvalidArtifact``) for a zip whose
structures are damaged or exceed the bounds below. ``struct.error`` and ``IndexError`` never
escape.

Every entry inflated anywhere in appyard (inspection, v1 verification, signing, the IPA
re-signer) is bounded by :func:`check_ratio`: past ``RATIO_GRACE`` bytes it may not expand more
than ``MAX_RATIO`` times its compressed size (a zip bomb costs a refusal, not CPU time).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from appyard.errors import ArtifactTooLarge, InvalidArtifact

MAX_RATIO = 200
RATIO_GRACE = 1024 * 1024


def check_ratio(what: str, produced: int, compressed: int) -> None:
    """Refuse an entry that expanded more than ``MAX_RATIO`` times its compressed size."""
    if produced > RATIO_GRACE and produced > max(compressed, 1) * MAX_RATIO:
        raise ArtifactTooLarge(
            f"{what} expands more than {MAX_RATIO}x its compressed size (zip bomb?).",
            reason="compression_ratio",
        )


__all__ = [
    "APK_SIG_BLOCK_MAGIC",
    "APK_SIG_BLOCK_MIN_SIZE",
    "CD_RECORD_MIN_SIZE",
    "CHUNK_SIZE",
    "EOCD_MIN_SIZE",
    "FLAG_DATA_DESCRIPTOR",
    "FLAG_ENCRYPTED",
    "LOCAL_HEADER_SIZE",
    "MAX_CENTRAL_DIRECTORY_SIZE",
    "MAX_ENTRIES",
    "MAX_SIGNING_BLOCK_SIZE",
    "METHOD_DEFLATED",
    "METHOD_STORED",
    "CentralDirectoryEntry",
    "MalformedZip",
    "NotAZip",
    "SigningBlock",
    "SigningBlockPair",
    "SigningBlockProbe",
    "ZipSections",
    "eocd_with_cd_offset",
    "find_signing_block",
    "find_zip_sections",
    "iter_raw_data",
    "iter_uncompressed_data",
    "local_data_range",
    "probe_signing_block",
    "read_central_directory",
    "read_exactly",
    "read_uncompressed",
]

CHUNK_SIZE = 1024 * 1024
"""Read size for streaming, and the v2/v3 digest chunk size."""

EOCD_MIN_SIZE = 22
EOCD_SIGNATURE = 0x06054B50
ZIP64_LOCATOR_SIGNATURE = 0x07064B50
ZIP64_LOCATOR_SIZE = 20
CD_RECORD_SIGNATURE = 0x02014B50
CD_RECORD_MIN_SIZE = 46
LOCAL_HEADER_SIGNATURE = 0x04034B50
LOCAL_HEADER_SIZE = 30
MAX_COMMENT_SIZE = 0xFFFF

METHOD_STORED = 0
METHOD_DEFLATED = 8
FLAG_ENCRYPTED = 0x0001
FLAG_DATA_DESCRIPTOR = 0x0008

APK_SIG_BLOCK_MAGIC = b"APK Sig Block 42"
APK_SIG_BLOCK_MIN_SIZE = 32
"""Smallest possible block: two uint64 sizes and the 16-byte magic."""

MAX_SIGNING_BLOCK_SIZE = 16 * 1024 * 1024
"""Largest APK Signing Block read into memory (real ones are a few KiB, padded to 4 KiB)."""

MAX_CENTRAL_DIRECTORY_SIZE = 64 * 1024 * 1024
"""Largest central directory read into memory (65535 records of maximal size is ~12 MiB)."""

MAX_ENTRIES = 0xFFFF
"""Without ZIP64 an archive cannot have more entries."""

_EOCD = struct.Struct("<IHHHHIIH")
_CD = struct.Struct("<IHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_U64 = struct.Struct("<Q")
_PAIR_HEADER = struct.Struct("<QI")


class NotAZip(InvalidArtifact):
    """The file is not a zip archive."""

    code = "artifact.not_a_zip"


class MalformedZip(InvalidArtifact):
    """The zip archive is damaged."""

    code = "artifact.malformed_zip"


# --- reading helpers --------------------------------------------------------------------------


def read_exactly(fh: BinaryIO, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset``, or :class:`MalformedZip` when the file is shorter."""
    if offset < 0 or size < 0:
        raise MalformedZip(f"Invalid read of {size} bytes at offset {offset}.")
    fh.seek(offset)
    data = fh.read(size)
    if len(data) != size:
        raise MalformedZip(f"The file ends before offset {offset + size}.")
    return data


def _file_size(fh: BinaryIO) -> int:
    return fh.seek(0, os.SEEK_END)


# --- EOCD -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZipSections:
    """Where an archive's central directory and end record are.

    For an APK these delimit the v2/v3 sections: entries ``[0, cd_offset)`` (minus the signing
    block, if any), central directory ``[cd_offset, eocd_offset)``, and ``eocd``.
    """

    file_size: int
    cd_offset: int
    cd_size: int
    cd_record_count: int
    eocd_offset: int
    eocd: bytes
    """The End of Central Directory record including its comment, exactly as in the file."""

    @property
    def comment(self) -> bytes:
        return self.eocd[EOCD_MIN_SIZE:]


def _find_eocd_in(tail: bytes) -> int:
    """Offset in ``tail`` of the EOCD whose comment runs exactly to the end, or -1.

    Candidates are tried from the end backwards, i.e. shortest comment first (apksig's order).
    """
    pos = len(tail) - EOCD_MIN_SIZE
    if pos < 0:
        return -1
    lowest = max(0, pos - MAX_COMMENT_SIZE)
    while pos >= lowest:
        pos = tail.rfind(b"PK\x05\x06", lowest, pos + 4)
        if pos < 0:
            return -1
        if struct.unpack_from("<H", tail, pos + 20)[0] == len(tail) - EOCD_MIN_SIZE - pos:
            return pos
        pos -= 1
    return -1


def find_zip_sections(fh: BinaryIO) -> ZipSections:
    """Locate the EOCD and central directory of ``fh``.

    Raises :class:`NotAZip` when there is no End of Central Directory record, and
    :class:`MalformedZip` for ZIP64, multi-disk, or a central directory that does not end where
    the EOCD begins.
    """
    size = _file_size(fh)
    if size < EOCD_MIN_SIZE:
        raise NotAZip("The file is too short to be a zip archive.", size=size)
    tail_len = min(size, EOCD_MIN_SIZE + MAX_COMMENT_SIZE)
    tail_start = size - tail_len
    tail = read_exactly(fh, tail_start, tail_len)
    pos = _find_eocd_in(tail)
    if pos < 0:
        raise NotAZip("The file has no zip End of Central Directory record.")
    eocd_offset = tail_start + pos
    (_sig, disk, cd_disk, disk_records, total_records, cd_size, cd_offset, _clen) = (
        _EOCD.unpack_from(tail, pos)
    )
    if eocd_offset >= ZIP64_LOCATOR_SIZE:
        locator = read_exactly(fh, eocd_offset - ZIP64_LOCATOR_SIZE, 4)
        if struct.unpack("<I", locator)[0] == ZIP64_LOCATOR_SIGNATURE:
            raise MalformedZip("ZIP64 archives are not supported.", reason="zip64")
    if disk != 0 or cd_disk != 0 or disk_records != total_records:
        raise MalformedZip("Multi-disk zip archives are not supported.", reason="multi_disk")
    if cd_offset > eocd_offset:
        raise MalformedZip(
            f"ZIP Central Directory start offset out of range: {cd_offset}. "
            f"ZIP End of Central Directory offset: {eocd_offset}",
            reason="bad_cd_offset",
        )
    if cd_offset + cd_size != eocd_offset:
        raise MalformedZip(
            "ZIP Central Directory is not immediately followed by End of Central Directory. "
            f"CD end: {cd_offset + cd_size}, EoCD start: {eocd_offset}",
            reason="bad_cd_size",
        )
    return ZipSections(
        file_size=size,
        cd_offset=cd_offset,
        cd_size=cd_size,
        cd_record_count=total_records,
        eocd_offset=eocd_offset,
        eocd=tail[pos:],
    )


def eocd_with_cd_offset(eocd: bytes, cd_offset: int) -> bytes:
    """``eocd`` with its "offset of start of central directory" field set to ``cd_offset``.

    The v2/v3 content digest covers the EOCD as if the central directory started where the
    APK Signing Block starts.
    """
    if len(eocd) < EOCD_MIN_SIZE:
        raise MalformedZip("The End of Central Directory record is truncated.")
    if not 0 <= cd_offset <= 0xFFFFFFFF:
        raise MalformedZip(f"Central directory offset {cd_offset} does not fit a zip.")
    return eocd[:16] + struct.pack("<I", cd_offset) + eocd[20:]


# --- central directory ------------------------------------------------------------------------


@dataclass(frozen=True)
class CentralDirectoryEntry:
    """One central directory record."""

    name: str
    raw_name: bytes
    version_made_by: int
    version_needed: int
    flags: int
    method: int
    last_mod_time: int
    last_mod_date: int
    crc32: int
    compressed_size: int
    uncompressed_size: int
    extra: bytes
    comment: bytes
    external_attrs: int
    local_header_offset: int
    record_offset: int
    """Offset of this record from the start of the central directory."""
    record_size: int

    @property
    def is_directory(self) -> bool:
        return self.name.endswith("/")


def read_central_directory(
    fh: BinaryIO, sections: ZipSections, *, max_size: int = MAX_CENTRAL_DIRECTORY_SIZE
) -> list[CentralDirectoryEntry]:
    """Parse all central directory records, in file order.

    Raises :class:`MalformedZip` when the directory is larger than ``max_size``, a record is
    truncated or has a bad signature, or the record count differs from the EOCD's.
    """
    if sections.cd_size > max_size:
        raise MalformedZip(
            f"The central directory is {sections.cd_size} bytes; at most {max_size} are read.",
            reason="cd_too_large",
        )
    if sections.cd_record_count > MAX_ENTRIES:
        raise MalformedZip("The archive has too many entries.", reason="too_many_entries")
    cd = read_exactly(fh, sections.cd_offset, sections.cd_size)
    entries: list[CentralDirectoryEntry] = []
    pos = 0
    for index in range(sections.cd_record_count):
        if pos + CD_RECORD_MIN_SIZE > len(cd):
            raise MalformedZip(
                f"Central directory record #{index + 1} is truncated.", reason="cd_truncated"
            )
        fields = _CD.unpack_from(cd, pos)
        if fields[0] != CD_RECORD_SIGNATURE:
            raise MalformedZip(
                f"Central directory record #{index + 1} has a bad signature.",
                reason="cd_bad_signature",
            )
        name_len, extra_len, comment_len = fields[10], fields[11], fields[12]
        name_start = pos + CD_RECORD_MIN_SIZE
        end = name_start + name_len + extra_len + comment_len
        if end > len(cd):
            raise MalformedZip(
                f"Central directory record #{index + 1} is truncated.", reason="cd_truncated"
            )
        raw_name = cd[name_start : name_start + name_len]
        entries.append(
            CentralDirectoryEntry(
                name=raw_name.decode("utf-8", "replace"),
                raw_name=raw_name,
                version_made_by=fields[1],
                version_needed=fields[2],
                flags=fields[3],
                method=fields[4],
                last_mod_time=fields[5],
                last_mod_date=fields[6],
                crc32=fields[7],
                compressed_size=fields[8],
                uncompressed_size=fields[9],
                extra=cd[name_start + name_len : name_start + name_len + extra_len],
                comment=cd[name_start + name_len + extra_len : end],
                external_attrs=fields[15],
                local_header_offset=fields[16],
                record_offset=pos,
                record_size=end - pos,
            )
        )
        pos = end
    return entries


# --- local headers and entry data -------------------------------------------------------------


def local_data_range(fh: BinaryIO, entry: CentralDirectoryEntry, cd_offset: int) -> tuple[int, int]:
    """``(offset, size)`` of ``entry``'s stored (possibly compressed) data.

    Checks the local header the way apksig does: signature, data-descriptor flag, CRC-32 and
    sizes (unless a data descriptor is used), the name, and that the data ends before the
    central directory.
    """
    name = entry.name
    if entry.local_header_offset + LOCAL_HEADER_SIZE > cd_offset:
        raise MalformedZip(f"Local File Header of {name} is outside the entries section.")
    header = read_exactly(fh, entry.local_header_offset, LOCAL_HEADER_SIZE)
    (sig, _ver, flags, _method, _t, _d, crc, csize, usize, name_len, extra_len) = _LOCAL.unpack(
        header
    )
    if sig != LOCAL_HEADER_SIGNATURE:
        raise MalformedZip(f"Not a ZIP local file header record for entry {name}.")
    if bool(flags & FLAG_DATA_DESCRIPTOR) != bool(entry.flags & FLAG_DATA_DESCRIPTOR):
        raise MalformedZip(
            "Data Descriptor presence mismatch between Local File Header and Central "
            f"Directory for entry {name}."
        )
    if not flags & FLAG_DATA_DESCRIPTOR:
        if crc != entry.crc32:
            raise MalformedZip(
                f"CRC-32 mismatch between Local File Header and Central Directory for entry {name}."
            )
        if csize != entry.compressed_size:
            raise MalformedZip(
                "Compressed size mismatch between Local File Header and Central Directory "
                f"for entry {name}."
            )
        if usize != entry.uncompressed_size:
            raise MalformedZip(
                "Uncompressed size mismatch between Local File Header and Central Directory "
                f"for entry {name}."
            )
    if name_len != len(entry.raw_name):
        raise MalformedZip(
            f"Name mismatch between Local File Header and Central Directory for entry {name}."
        )
    local_name = read_exactly(fh, entry.local_header_offset + LOCAL_HEADER_SIZE, name_len)
    if local_name != entry.raw_name:
        raise MalformedZip(
            f"Name mismatch between Local File Header and Central Directory for entry {name}."
        )
    data_offset = entry.local_header_offset + LOCAL_HEADER_SIZE + name_len + extra_len
    size = entry.uncompressed_size if entry.method == METHOD_STORED else entry.compressed_size
    if data_offset + size > cd_offset:
        raise MalformedZip(f"Local File Header data of {name} overlaps with Central Directory.")
    return data_offset, size


def iter_raw_data(
    fh: BinaryIO, entry: CentralDirectoryEntry, cd_offset: int, *, chunk_size: int = CHUNK_SIZE
) -> Iterator[bytes]:
    """The entry's stored bytes (compressed if it is deflated), in chunks of ``chunk_size``."""
    offset, size = local_data_range(fh, entry, cd_offset)
    while size > 0:
        take = min(size, chunk_size)
        yield read_exactly(fh, offset, take)
        offset += take
        size -= take


def iter_uncompressed_data(
    fh: BinaryIO,
    entry: CentralDirectoryEntry,
    cd_offset: int,
    *,
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[bytes]:
    """The entry's uncompressed bytes, streamed.

    Stored and deflated entries only. The output is bounded by the central directory's
    uncompressed size: more (a zip bomb lying about its size) or less raises
    :class:`MalformedZip`.
    """
    if entry.flags & FLAG_ENCRYPTED:
        raise MalformedZip(f"Entry {entry.name} is encrypted.")
    if entry.method == METHOD_STORED:
        yield from iter_raw_data(fh, entry, cd_offset, chunk_size=chunk_size)
        return
    if entry.method != METHOD_DEFLATED:
        raise MalformedZip(f"Unsupported compression method of entry {entry.name}: {entry.method}")
    expected = entry.uncompressed_size
    check_ratio(f"The entry {entry.name!r}", expected, entry.compressed_size)  # as declared
    produced = 0
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    for raw in iter_raw_data(fh, entry, cd_offset, chunk_size=chunk_size):
        data = raw
        while data:
            try:
                out = inflater.decompress(data, chunk_size)
            except zlib.error as exc:
                raise MalformedZip(f"Failed to inflate entry {entry.name}: {exc}") from exc
            produced += len(out)
            if produced > expected:
                raise MalformedZip(f"Data of entry {entry.name} overflowed its declared size.")
            check_ratio(f"The entry {entry.name!r}", produced, entry.compressed_size)
            if out:
                yield out
            data = inflater.unconsumed_tail
            if inflater.eof:
                break
        if inflater.eof:
            break
    try:
        out = inflater.flush()
    except zlib.error as exc:
        raise MalformedZip(f"Failed to inflate entry {entry.name}: {exc}") from exc
    produced += len(out)
    if produced > expected:
        raise MalformedZip(f"Data of entry {entry.name} overflowed its declared size.")
    if out:
        yield out
    if produced != expected:
        raise MalformedZip(
            f"Data of entry {entry.name} is {produced} bytes, not the declared {expected}."
        )


def read_uncompressed(
    fh: BinaryIO, entry: CentralDirectoryEntry, cd_offset: int, *, limit: int
) -> bytes:
    """The whole uncompressed entry, refusing entries declared larger than ``limit``."""
    if entry.uncompressed_size > limit:
        raise MalformedZip(
            f"Entry {entry.name} is {entry.uncompressed_size} bytes; at most {limit} are read.",
            reason="entry_too_large",
        )
    return b"".join(iter_uncompressed_data(fh, entry, cd_offset))


# --- APK Signing Block ------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningBlockPair:
    """One ID-value pair of the APK Signing Block."""

    block_id: int
    value: bytes


@dataclass(frozen=True)
class SigningBlock:
    """The APK Signing Block that immediately precedes the central directory.

    ``offset`` is where the block starts (its first size field); the block ends at the central
    directory. ``pairs`` are the ID-value pairs read before the first malformed one, in file
    order; ``malformed`` says what was wrong with the rest, if anything (apksig also reads pairs
    front to back and stops at the first bad one).
    """

    offset: int
    size: int
    pairs: tuple[SigningBlockPair, ...]
    malformed: str | None = None

    def find(self, block_id: int) -> bytes | None:
        """The value of the first pair with ``block_id``, or ``None``."""
        for pair in self.pairs:
            if pair.block_id == block_id:
                return pair.value
        return None

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(pair.block_id for pair in self.pairs)


@dataclass(frozen=True)
class SigningBlockProbe:
    """Result of looking for a signing block: the block, or why there is none."""

    block: SigningBlock | None
    reason: str | None


def _parse_pairs(data: bytes) -> tuple[tuple[SigningBlockPair, ...], str | None]:
    pairs: list[SigningBlockPair] = []
    pos = 0
    count = 0
    while pos < len(data):
        count += 1
        if len(data) - pos < 8:
            return tuple(pairs), (
                f"Insufficient data to read size of APK Signing Block entry #{count}"
            )
        (length,) = _U64.unpack_from(data, pos)
        pos += 8
        if length < 4 or length > 0x7FFFFFFF:
            return tuple(pairs), f"APK Signing Block entry #{count} size out of range: {length}"
        if length > len(data) - pos:
            return tuple(pairs), (
                f"APK Signing Block entry #{count} size out of range: {length}, "
                f"available: {len(data) - pos}"
            )
        (block_id,) = struct.unpack_from("<I", data, pos)
        pairs.append(SigningBlockPair(block_id=block_id, value=data[pos + 4 : pos + length]))
        pos += length
    return tuple(pairs), None


def probe_signing_block(
    fh: BinaryIO, sections: ZipSections, *, max_size: int = MAX_SIGNING_BLOCK_SIZE
) -> SigningBlockProbe:
    """Like :func:`find_signing_block`, also saying why no block was found."""
    cd_offset = sections.cd_offset
    if cd_offset < APK_SIG_BLOCK_MIN_SIZE:
        return SigningBlockProbe(
            None,
            f"APK too small for APK Signing Block. ZIP Central Directory offset: {cd_offset}",
        )
    footer = read_exactly(fh, cd_offset - 24, 24)
    if footer[8:] != APK_SIG_BLOCK_MAGIC:
        return SigningBlockProbe(None, "No APK Signing Block before ZIP Central Directory")
    (size_in_footer,) = _U64.unpack_from(footer, 0)
    if size_in_footer < 24 or size_in_footer > 0x7FFFFFFF - 8:
        return SigningBlockProbe(None, f"APK Signing Block size out of range: {size_in_footer}")
    total = size_in_footer + 8
    offset = cd_offset - total
    if offset < 0:
        return SigningBlockProbe(None, f"APK Signing Block offset out of range: {offset}")
    if total > max_size:
        raise MalformedZip(
            f"The APK Signing Block is {total} bytes; at most {max_size} are read.",
            reason="signing_block_too_large",
        )
    block = read_exactly(fh, offset, total)
    (size_in_header,) = _U64.unpack_from(block, 0)
    if size_in_header != size_in_footer:
        return SigningBlockProbe(
            None,
            "APK Signing Block sizes in header and footer do not match: "
            f"{size_in_header} vs {size_in_footer}",
        )
    pairs, malformed = _parse_pairs(block[8 : total - 24])
    return SigningBlockProbe(
        SigningBlock(offset=offset, size=total, pairs=pairs, malformed=malformed), None
    )


def find_signing_block(
    fh: BinaryIO, sections: ZipSections, *, max_size: int = MAX_SIGNING_BLOCK_SIZE
) -> SigningBlock | None:
    """The APK Signing Block before the central directory, or ``None`` when there is none.

    A block larger than ``max_size`` raises :class:`MalformedZip` rather than being read.
    """
    return probe_signing_block(fh, sections, max_size=max_size).block
