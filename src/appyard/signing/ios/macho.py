"""Mach-O files as the code signer sees them: slices, load commands, and where a signature goes.

A Mach-O is *thin* (one architecture) or *fat* (a big-endian ``fat_header`` and one
``fat_arch`` per slice, each slice a thin Mach-O at an aligned offset). Each slice is signed on
its own: its embedded signature (a SuperBlob) sits at the end of the ``__LINKEDIT`` segment and
``LC_CODE_SIGNATURE`` points at it; the code pages it hashes run from the slice's first byte to
the signature (``codeLimit``).

:func:`parse_slice` reads a slice's header and load commands (bounded, hostile input);
:func:`plan_signature` computes the patched header for a signature of a given size: the
``LC_CODE_SIGNATURE`` command (added when the slice has none and the header has 16 spare bytes
before the first section), and ``__LINKEDIT``'s ``filesize``/``vmsize`` grown to cover the
signature. It refuses (:class:`NoRoomForSignature`) when ``__LINKEDIT`` is not the last segment
in the file and in memory, when a segment lies where ``__LINKEDIT`` would grow, or when a
32-bit field would overflow. :func:`write_fat` reassembles a fat file from signed slices.
Only little-endian slices (every Apple CPU since PowerPC) are read.
"""

from __future__ import annotations

import itertools
import os
import shutil
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from appyard.signing.ios.errors import BadMachO, NoRoomForSignature

MH_MAGIC = 0xFEEDFACE
MH_MAGIC_64 = 0xFEEDFACF
FAT_MAGIC = 0xCAFEBABE
FAT_MAGIC_64 = 0xCAFEBABF

MH_EXECUTE = 0x2
MH_DYLIB = 0x6
MH_BUNDLE = 0x8

LC_SEGMENT = 0x1
LC_SEGMENT_64 = 0x19
LC_CODE_SIGNATURE = 0x1D
LC_ENCRYPTION_INFO = 0x21
LC_ENCRYPTION_INFO_64 = 0x2C
LC_VERSION_MIN_MACOSX = 0x24
LC_VERSION_MIN_IPHONEOS = 0x25
LC_VERSION_MIN_TVOS = 0x2F
LC_VERSION_MIN_WATCHOS = 0x30
LC_BUILD_VERSION = 0x32

CPU_ARM = 12
CPU_ARM64 = 0x0100000C
CPU_ARM64_32 = 0x0200000C
CPU_X86_64 = 0x01000007

PLATFORM_MACOS, PLATFORM_IOS, PLATFORM_TVOS, PLATFORM_WATCHOS = 1, 2, 3, 4
_VERSION_MIN_PLATFORM = {
    LC_VERSION_MIN_MACOSX: PLATFORM_MACOS,
    LC_VERSION_MIN_IPHONEOS: PLATFORM_IOS,
    LC_VERSION_MIN_TVOS: PLATFORM_TVOS,
    LC_VERSION_MIN_WATCHOS: PLATFORM_WATCHOS,
}

MAX_SLICES = 16
MAX_LOAD_COMMANDS_BYTES = 16 * 1024 * 1024
VM_PAGE = 0x4000  # arm64 pages; __LINKEDIT's vmsize is rounded to it
SIGNATURE_ALIGNMENT = 16
COPY_CHUNK = 1024 * 1024


def is_macho(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) starts a thin or fat Mach-O."""
    if len(head) < 4:
        return False
    little = struct.unpack("<I", head[:4])[0]
    big = struct.unpack(">I", head[:4])[0]
    if little in (MH_MAGIC, MH_MAGIC_64):
        return True
    # 0xcafebabe is also a Java class file; a fat header has a small slice count after it
    return big in (FAT_MAGIC, FAT_MAGIC_64) and len(head) >= 8 and 0 < head[7] <= MAX_SLICES


def arch_name(cputype: int, cpusubtype: int) -> str:
    sub = cpusubtype & 0x00FFFFFF
    if cputype == CPU_ARM64:
        return "arm64e" if sub == 2 else "arm64"
    if cputype == CPU_ARM64_32:
        return "arm64_32"
    if cputype == CPU_ARM:
        return {9: "armv7", 11: "armv7s", 12: "armv7k"}.get(sub, "arm")
    if cputype == CPU_X86_64:
        return "x86_64"
    return f"cpu{cputype:#x}"


@dataclass(frozen=True)
class SliceRef:
    """Where one architecture's thin Mach-O lies in a file."""

    offset: int
    size: int
    cputype: int
    cpusubtype: int
    align: int  # log2, from the fat_arch (0 for a thin file)

    @property
    def arch(self) -> str:
        return arch_name(self.cputype, self.cpusubtype)


@dataclass(frozen=True)
class Layout:
    """A Mach-O file's slices; ``fat_magic`` is None for a thin file."""

    fat_magic: int | None
    slices: tuple[SliceRef, ...]


@dataclass(frozen=True)
class Segment:
    name: str
    command_offset: int  # of its load command, from the slice's start
    vmaddr: int
    vmsize: int
    fileoff: int
    filesize: int
    is64: bool
    first_section_offset: int | None  # lowest file offset of a section with data


@dataclass(frozen=True)
class MachOSlice:
    """The header facts of one thin Mach-O (offsets are from the slice's first byte)."""

    size: int
    is64: bool
    cputype: int
    cpusubtype: int
    filetype: int
    ncmds: int
    sizeofcmds: int
    header_size: int
    segments: tuple[Segment, ...]
    code_signature: tuple[int, int, int] | None  # (command offset, dataoff, datasize)
    encryption_ids: tuple[int, ...]  # cryptid of each LC_ENCRYPTION_INFO(_64)
    platform: int | None
    min_os: tuple[int, int, int] | None

    @property
    def arch(self) -> str:
        return arch_name(self.cputype, self.cpusubtype)

    @property
    def encrypted(self) -> bool:
        return any(cryptid != 0 for cryptid in self.encryption_ids)

    def segment(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    @property
    def commands_end(self) -> int:
        return self.header_size + self.sizeofcmds

    @property
    def header_room(self) -> int:
        """Bytes free between the load commands and the first section's data."""
        starts = [s.first_section_offset for s in self.segments if s.first_section_offset]
        limit = min(starts) if starts else self.size
        return max(0, limit - self.commands_end)


def _read(fh: BinaryIO, offset: int, size: int, what: str) -> bytes:
    fh.seek(offset)
    data = fh.read(size)
    if len(data) != size:
        raise BadMachO(f"{what} is truncated (wanted {size} bytes at offset {offset}).")
    return data


def read_layout(fh: BinaryIO, size: int, *, what: str) -> Layout:
    """The slices of the Mach-O in ``fh`` (``size`` bytes long)."""
    head = _read(fh, 0, min(size, 8), what) if size >= 4 else b""
    if len(head) < 4:
        raise BadMachO(f"{what} is too short to be a Mach-O file.")
    big = struct.unpack(">I", head[:4])[0]
    little = struct.unpack("<I", head[:4])[0]
    if little in (MH_MAGIC, MH_MAGIC_64):
        cputype, cpusubtype = struct.unpack("<II", _read(fh, 4, 8, what))
        return Layout(None, (SliceRef(0, size, cputype, cpusubtype, 0),))
    if big not in (FAT_MAGIC, FAT_MAGIC_64):
        raise BadMachO(f"{what} is not a Mach-O file (magic {big:#010x}).")
    (count,) = struct.unpack(">I", _read(fh, 4, 4, what))
    if not 0 < count <= MAX_SLICES:
        raise BadMachO(f"{what} is a fat file with {count} slices; 1 to {MAX_SLICES} are read.")
    entry = 32 if big == FAT_MAGIC_64 else 20
    table = _read(fh, 8, count * entry, what)
    slices: list[SliceRef] = []
    for i in range(count):
        if big == FAT_MAGIC_64:
            cputype, cpusubtype, offset, length, align = struct.unpack_from(
                ">IIQQI", table, i * entry
            )
        else:
            cputype, cpusubtype, offset, length, align = struct.unpack_from(
                ">IIIII", table, i * entry
            )
        if offset < 8 + count * entry or offset + length > size or length < 28 or align > 20:
            raise BadMachO(f"{what}: slice {i} lies outside the file.")
        slices.append(SliceRef(offset, length, cputype, cpusubtype, align))
    ordered = sorted(slices, key=lambda s: s.offset)
    for a, b in itertools.pairwise(ordered):
        if a.offset + a.size > b.offset:
            raise BadMachO(f"{what}: two slices overlap.")
    return Layout(big, tuple(slices))


def _version(value: int) -> tuple[int, int, int]:
    return (value >> 16, (value >> 8) & 0xFF, value & 0xFF)


def check_commands_end(end: int, limit: int, where: str, *, what: str) -> None:
    """Refuse load commands that end (``end``, header included) past ``limit``.

    The one bound on load commands, applied to every slice read (``limit`` the slice's end,
    then its code signature's start, since the code pages hashed stop there) and to every
    header the re-signer plans (``limit`` the new signature's start), so the re-signer never
    accepts a slice the verifier would refuse, nor writes one.
    """
    if end > limit:
        raise BadMachO(
            f"{what}: its load commands run past {where} (byte {limit}): the header's "
            f"sizeofcmds says they end at byte {end}."
        )


def parse_slice(fh: BinaryIO, offset: int, size: int, *, what: str) -> MachOSlice:
    """Read the header and load commands of the thin Mach-O at ``offset``."""
    if size < 28:
        raise BadMachO(f"{what} is too short to be a Mach-O file.")
    (magic,) = struct.unpack("<I", _read(fh, offset, 4, what))
    if magic not in (MH_MAGIC, MH_MAGIC_64):
        raise BadMachO(f"{what} is not a little-endian Mach-O slice (magic {magic:#010x}).")
    is64 = magic == MH_MAGIC_64
    header_size = 32 if is64 else 28
    fields = struct.unpack("<IiiIIII", _read(fh, offset, 28, what))
    _magic, cputype, cpusubtype, filetype, ncmds, sizeofcmds, _flags = fields
    if sizeofcmds > MAX_LOAD_COMMANDS_BYTES:
        raise BadMachO(
            f"{what}: its load commands claim {sizeofcmds} bytes; appyard reads at most "
            f"{MAX_LOAD_COMMANDS_BYTES}."
        )
    check_commands_end(header_size + sizeofcmds, size, "the end of the file", what=what)
    commands = _read(fh, offset + header_size, sizeofcmds, what)
    segments: list[Segment] = []
    code_signature = None
    encryption: list[int] = []
    platform = None
    min_os = None
    pos = 0
    for _ in range(ncmds):
        if pos + 8 > len(commands):
            raise BadMachO(f"{what}: a load command runs past sizeofcmds.")
        cmd, cmdsize = struct.unpack_from("<II", commands, pos)
        if cmdsize < 8 or pos + cmdsize > len(commands):
            raise BadMachO(f"{what}: a load command has a bad size ({cmdsize}).")
        body = commands[pos : pos + cmdsize]
        at = header_size + pos
        if cmd in (LC_SEGMENT_64, LC_SEGMENT):
            seg64 = cmd == LC_SEGMENT_64
            fmt, sect_size = ("<16sQQQQiiII", 80) if seg64 else ("<16sIIIIiiII", 68)
            base = struct.calcsize(fmt)
            if cmdsize < 8 + base:
                raise BadMachO(f"{what}: a segment command is truncated.")
            name_raw, vmaddr, vmsize, fileoff, filesize, _mx, _ip, nsects, _fl = struct.unpack_from(
                fmt, body, 8
            )
            if 8 + base + nsects * sect_size > cmdsize:
                raise BadMachO(f"{what}: a segment's sections run past its command.")
            first = None
            for s in range(nsects):
                sect = 8 + base + s * sect_size
                sfmt = "<16s16sQQII" if seg64 else "<16s16sIIII"
                _sn, _sg, _addr, ssize, soffset, _al = struct.unpack_from(sfmt, body, sect)
                if soffset and ssize and (first is None or soffset < first):
                    first = soffset
            segments.append(
                Segment(
                    name=name_raw.rstrip(b"\x00").decode("ascii", "replace"),
                    command_offset=at,
                    vmaddr=vmaddr,
                    vmsize=vmsize,
                    fileoff=fileoff,
                    filesize=filesize,
                    is64=seg64,
                    first_section_offset=first,
                )
            )
        elif cmd == LC_CODE_SIGNATURE:
            if cmdsize < 16:
                raise BadMachO(f"{what}: LC_CODE_SIGNATURE is truncated.")
            dataoff, datasize = struct.unpack_from("<II", body, 8)
            if dataoff + datasize > size:
                raise BadMachO(f"{what}: its code signature lies past the end of the file.")
            check_commands_end(
                header_size + sizeofcmds, dataoff, "the start of its code signature", what=what
            )
            code_signature = (at, dataoff, datasize)
        elif cmd in (LC_ENCRYPTION_INFO, LC_ENCRYPTION_INFO_64):
            if cmdsize < 20:
                raise BadMachO(f"{what}: LC_ENCRYPTION_INFO is truncated.")
            encryption.append(struct.unpack_from("<I", body, 16)[0])
        elif cmd == LC_BUILD_VERSION and cmdsize >= 24:
            platform, minos = struct.unpack_from("<II", body, 8)
            min_os = _version(minos)
        elif cmd in _VERSION_MIN_PLATFORM and cmdsize >= 16 and min_os is None:
            platform = _VERSION_MIN_PLATFORM[cmd]
            min_os = _version(struct.unpack_from("<I", body, 8)[0])
        pos += cmdsize
    return MachOSlice(
        size=size,
        is64=is64,
        cputype=cputype & 0xFFFFFFFF,
        cpusubtype=cpusubtype & 0xFFFFFFFF,
        filetype=filetype,
        ncmds=ncmds,
        sizeofcmds=sizeofcmds,
        header_size=header_size,
        segments=tuple(segments),
        code_signature=code_signature,
        encryption_ids=tuple(encryption),
        platform=platform,
        min_os=min_os,
    )


def read_header(fh: BinaryIO, offset: int, sl: MachOSlice, *, what: str) -> bytes:
    """The header and load commands of a parsed slice, as bytes."""
    return _read(fh, offset, sl.commands_end, what)


@dataclass(frozen=True)
class SignaturePlan:
    """How a slice changes to carry a signature of ``reserved`` bytes at ``code_limit``."""

    code_limit: int
    reserved: int
    header: bytes  # the new header and load commands, written at offset 0
    added_command: bool
    grew_linkedit_vm: bool


def code_limit_of(sl: MachOSlice, *, what: str) -> int:
    """Where the signature starts: the old signature's offset, or ``__LINKEDIT``'s end."""
    linkedit = _linkedit(sl, what)
    if sl.code_signature is not None:
        return sl.code_signature[1]
    end = linkedit.fileoff + linkedit.filesize
    return end + (-end) % SIGNATURE_ALIGNMENT


def _linkedit(sl: MachOSlice, what: str) -> Segment:
    linkedit = sl.segment("__LINKEDIT")
    if linkedit is None:
        raise NoRoomForSignature(
            f"{what} ({sl.arch}) has no __LINKEDIT segment to hold a code signature."
        )
    for seg in sl.segments:
        if seg is linkedit or seg.filesize == 0:
            continue
        if seg.fileoff + seg.filesize > linkedit.fileoff:
            raise NoRoomForSignature(
                f"{what} ({sl.arch}): __LINKEDIT is not the last segment in the file "
                f"({seg.name} follows it), so a signature cannot be placed at its end."
            )
    return linkedit


def plan_signature(sl: MachOSlice, header: bytes, reserved: int, *, what: str) -> SignaturePlan:
    """The patched header for a signature of ``reserved`` bytes (a multiple of 16)."""
    linkedit = _linkedit(sl, what)
    code_limit = code_limit_of(sl, what=what)
    if code_limit < linkedit.fileoff:
        raise NoRoomForSignature(
            f"{what} ({sl.arch}): its code signature lies before __LINKEDIT's data."
        )
    out = bytearray(header)
    added = False
    if sl.code_signature is None:
        if sl.header_room < 16:
            raise NoRoomForSignature(
                f"{what} ({sl.arch}) has no LC_CODE_SIGNATURE and only {sl.header_room} bytes "
                "free after its load commands (16 are needed); relink it with "
                "-headerpad or sign it once with ld/codesign."
            )
        out += struct.pack("<IIII", LC_CODE_SIGNATURE, 16, code_limit, reserved)
        ncmds, sizeofcmds = struct.unpack_from("<II", out, 16)
        struct.pack_into("<II", out, 16, ncmds + 1, sizeofcmds + 16)
        added = True
    else:
        at = sl.code_signature[0]
        struct.pack_into("<II", out, at + 8, code_limit, reserved)
    check_commands_end(
        len(out), code_limit, "where its code signature goes", what=f"{what} ({sl.arch})"
    )
    filesize = code_limit + reserved - linkedit.fileoff
    vmsize = max(linkedit.vmsize, filesize + (-filesize) % VM_PAGE)
    if not linkedit.is64 and (vmsize > 0xFFFFFFFF or code_limit + reserved > 0xFFFFFFFF):
        raise NoRoomForSignature(f"{what} ({sl.arch}): the signature would overflow 32 bits.")
    grew = vmsize > linkedit.vmsize
    if grew:
        end = linkedit.vmaddr + vmsize
        for seg in sl.segments:
            if seg is linkedit or seg.vmsize == 0:
                continue
            if seg.vmaddr < end and seg.vmaddr + seg.vmsize > linkedit.vmaddr:
                raise NoRoomForSignature(
                    f"{what} ({sl.arch}): __LINKEDIT cannot grow to hold the signature; "
                    f"{seg.name} follows it in memory."
                )
    at = linkedit.command_offset
    if linkedit.is64:
        struct.pack_into("<QQQQ", out, at + 24, linkedit.vmaddr, vmsize, linkedit.fileoff, filesize)
    else:
        struct.pack_into("<IIII", out, at + 24, linkedit.vmaddr, vmsize, linkedit.fileoff, filesize)
    return SignaturePlan(code_limit, reserved, bytes(out), added, grew)


def apply_plan(fh: BinaryIO, plan: SignaturePlan) -> None:
    """Write the plan's header into the slice file ``fh`` and cut it (or zero-pad it) to
    ``code_limit``; the caller then hashes the pages and writes the signature there."""
    fh.seek(0)
    fh.write(plan.header)
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    if size > plan.code_limit:
        fh.truncate(plan.code_limit)
    elif size < plan.code_limit:
        fh.write(b"\x00" * (plan.code_limit - size))
    fh.flush()


def copy_range(src: BinaryIO, offset: int, size: int, dst: BinaryIO) -> None:
    src.seek(offset)
    left = size
    while left:
        chunk = src.read(min(left, COPY_CHUNK))
        if not chunk:
            raise BadMachO("A Mach-O slice is truncated.")
        dst.write(chunk)
        left -= len(chunk)


def write_fat(out: BinaryIO, fat_magic: int, slices: Sequence[tuple[SliceRef, Path]]) -> None:
    """A fat file of the signed slices (in the original order, each at its alignment)."""
    entry = 32 if fat_magic == FAT_MAGIC_64 else 20
    offset = 8 + entry * len(slices)
    table = b""
    placed: list[tuple[int, Path]] = []
    for ref, path in slices:
        size = path.stat().st_size
        offset += (-offset) % (1 << ref.align)
        if fat_magic == FAT_MAGIC_64:
            table += struct.pack(">IIQQII", ref.cputype, ref.cpusubtype, offset, size, ref.align, 0)
        else:
            if offset + size > 0xFFFFFFFF:
                raise NoRoomForSignature("The signed fat binary would exceed 4 GiB.")
            table += struct.pack(">IIIII", ref.cputype, ref.cpusubtype, offset, size, ref.align)
        placed.append((offset, path))
        offset += size
    out.write(struct.pack(">II", fat_magic, len(slices)) + table)
    position = 8 + len(table)
    for at, path in placed:
        out.write(b"\x00" * (at - position))
        with open(path, "rb") as fh:
            shutil.copyfileobj(fh, out, COPY_CHUNK)
        position = at + path.stat().st_size
