"""The blobs of an embedded code signature (Apple's ``cs_blobs.h``), built and parsed.

Every blob starts with a big-endian ``magic`` and ``length``. The embedded signature is a
SuperBlob (``0xfade0cc0``) of ``(slot type, offset)`` pairs: slot 0 the CodeDirectory,
2 the requirements, 5 the XML entitlements, 7 the DER entitlements, ``0x1000`` an alternate
CodeDirectory (another hash type), ``0x10000`` the CMS signature (a ``0xfade0b01`` wrapper).

The CodeDirectory (``0xfade0c02``, version ``0x20400``) names the code (identifier, team) and
holds one hash per 4 KiB code page, plus the *special slots* (negative indices): -1 Info.plist,
-2 requirements blob, -3 ``_CodeSignature/CodeResources``, -5 entitlements blob, -7 DER
entitlements blob. Its hash (the CDHash) is what the CMS signature covers.
"""

from __future__ import annotations

import hashlib
import plistlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from appyard.signing.ios.errors import BadMachO, EntitlementsUnencodable

CSMAGIC_REQUIREMENT = 0xFADE0C00
CSMAGIC_REQUIREMENTS = 0xFADE0C01
CSMAGIC_CODEDIRECTORY = 0xFADE0C02
CSMAGIC_EMBEDDED_SIGNATURE = 0xFADE0CC0
CSMAGIC_EMBEDDED_ENTITLEMENTS = 0xFADE7171
CSMAGIC_EMBEDDED_DER_ENTITLEMENTS = 0xFADE7172
CSMAGIC_BLOBWRAPPER = 0xFADE0B01

CSSLOT_CODEDIRECTORY = 0
CSSLOT_INFOSLOT = 1
CSSLOT_REQUIREMENTS = 2
CSSLOT_RESOURCEDIR = 3
CSSLOT_ENTITLEMENTS = 5
CSSLOT_DER_ENTITLEMENTS = 7
CSSLOT_ALTERNATE_CODEDIRECTORIES = 0x1000
CSSLOT_SIGNATURESLOT = 0x10000

SLOT_NAMES = {
    CSSLOT_INFOSLOT: "Info.plist",
    CSSLOT_REQUIREMENTS: "requirements",
    CSSLOT_RESOURCEDIR: "CodeResources",
    4: "application-specific",
    CSSLOT_ENTITLEMENTS: "entitlements",
    6: "rep-specific",
    CSSLOT_DER_ENTITLEMENTS: "DER entitlements",
}

CS_HASHTYPE_SHA1 = 1
CS_HASHTYPE_SHA256 = 2
CS_HASHTYPE_SHA256_TRUNCATED = 3
CS_HASHTYPE_SHA384 = 4
HASH_TYPES: dict[int, tuple[str, int]] = {
    CS_HASHTYPE_SHA1: ("sha1", 20),
    CS_HASHTYPE_SHA256: ("sha256", 32),
    CS_HASHTYPE_SHA256_TRUNCATED: ("sha256", 20),
    CS_HASHTYPE_SHA384: ("sha384", 48),
}
HASH_OIDS = {
    "sha1": "1.3.14.3.2.26",
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
}

CS_ADHOC = 0x2
CS_LINKER_SIGNED = 0x20000
CS_EXECSEG_MAIN_BINARY = 0x1
CS_EXECSEG_ALLOW_UNSIGNED = 0x10
CS_EXECSEG_DEBUGGER = 0x20
CS_EXECSEG_JIT = 0x40
CS_EXECSEG_SKIP_LV = 0x80
CS_EXECSEG_CAN_LOAD_CDHASH = 0x100
CS_EXECSEG_CAN_EXEC_CDHASH = 0x200
# the entitlements codesign turns into executable-segment flags
EXECSEG_ENTITLEMENTS = {
    "get-task-allow": CS_EXECSEG_ALLOW_UNSIGNED,
    "run-unsigned-code": CS_EXECSEG_ALLOW_UNSIGNED,
    "com.apple.private.cs.debugger": CS_EXECSEG_DEBUGGER,
    "dynamic-codesigning": CS_EXECSEG_JIT,
    "com.apple.private.skip-library-validation": CS_EXECSEG_SKIP_LV,
    "com.apple.private.amfi.can-load-cdhash": CS_EXECSEG_CAN_LOAD_CDHASH,
    "com.apple.private.amfi.can-execute-cdhash": CS_EXECSEG_CAN_EXEC_CDHASH,
}

PAGE_SIZE_LOG2 = 12
PAGE_SIZE = 1 << PAGE_SIZE_LOG2
CD_VERSION = 0x20400
_CD_HEADER = struct.Struct(">IIIIIIIIIBBBBI")  # 44 bytes, every version
MAX_SIGNATURE_BYTES = 64 * 1024 * 1024


def blob(magic: int, payload: bytes) -> bytes:
    return struct.pack(">II", magic, 8 + len(payload)) + payload


def hasher(name: str) -> Callable[[bytes], bytes]:
    return lambda data: hashlib.new(name, data).digest()


# --- SuperBlob ---------------------------------------------------------------------------------


def build_superblob(entries: Sequence[tuple[int, bytes]]) -> bytes:
    header = 12 + 8 * len(entries)
    index = b""
    offset = header
    for slot, data in entries:
        index += struct.pack(">II", slot, offset)
        offset += len(data)
    return (
        struct.pack(">III", CSMAGIC_EMBEDDED_SIGNATURE, offset, len(entries))
        + index
        + b"".join(d for _s, d in entries)
    )


def parse_superblob(data: bytes, *, what: str) -> list[tuple[int, bytes]]:
    """``(slot type, blob bytes)`` pairs of an embedded signature (each blob whole)."""
    if len(data) < 12:
        raise BadMachO(f"{what}: the code signature is truncated.")
    magic, length, count = struct.unpack_from(">III", data)
    if magic != CSMAGIC_EMBEDDED_SIGNATURE:
        raise BadMachO(f"{what}: the code signature is not an embedded signature ({magic:#x}).")
    if length > len(data) or count > 64 or 12 + 8 * count > length:
        raise BadMachO(f"{what}: the code signature's index is damaged.")
    out: list[tuple[int, bytes]] = []
    for i in range(count):
        slot, offset = struct.unpack_from(">II", data, 12 + 8 * i)
        if offset + 8 > length:
            raise BadMachO(f"{what}: a signature blob lies outside the signature.")
        (blob_len,) = struct.unpack_from(">I", data, offset + 4)
        if blob_len < 8 or offset + blob_len > length:
            raise BadMachO(f"{what}: a signature blob lies outside the signature.")
        out.append((slot, data[offset : offset + blob_len]))
    return out


# --- CodeDirectory -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeDirectory:
    """A parsed (or built) CodeDirectory; ``raw`` is its exact bytes."""

    raw: bytes = field(repr=False)
    version: int
    flags: int
    hash_type: int
    identifier: str
    team_id: str | None
    code_limit: int
    page_size: int
    special_hashes: dict[int, bytes] = field(repr=False)  # slot number (1..n) -> hash
    code_hashes: tuple[bytes, ...] = field(repr=False)
    exec_seg_base: int = 0
    exec_seg_limit: int = 0
    exec_seg_flags: int = 0

    @property
    def hash_name(self) -> str:
        return HASH_TYPES[self.hash_type][0]

    @property
    def hash_size(self) -> int:
        return HASH_TYPES[self.hash_type][1]

    def digest(self, data: bytes) -> bytes:
        return hashlib.new(self.hash_name, data).digest()[: self.hash_size]

    @property
    def cdhash_full(self) -> bytes:
        """The CodeDirectory's hash with its own algorithm (CDHashes2 carries it whole)."""
        return hashlib.new(self.hash_name, self.raw).digest()

    @property
    def cdhash(self) -> bytes:
        """The CDHash: the first 20 bytes of :attr:`cdhash_full`."""
        return self.cdhash_full[:20]


def build_code_directory(
    *,
    identifier: str,
    team_id: str | None,
    hash_type: int,
    special_hashes: dict[int, bytes],
    code_hashes: Sequence[bytes],
    code_limit: int,
    exec_seg_base: int,
    exec_seg_limit: int,
    exec_seg_flags: int,
    flags: int = 0,
) -> CodeDirectory:
    name, size = HASH_TYPES[hash_type]
    ident = identifier.encode("utf-8") + b"\x00"
    team = team_id.encode("utf-8") + b"\x00" if team_id else b""
    n_special = max(special_hashes, default=0)
    header = 88
    ident_offset = header
    team_offset = header + len(ident) if team else 0
    hash_offset = header + len(ident) + len(team) + n_special * size
    specials = b"".join(
        special_hashes.get(slot, b"\x00" * size) for slot in range(n_special, 0, -1)
    )
    length = hash_offset + size * len(code_hashes)
    raw = (
        _CD_HEADER.pack(
            CSMAGIC_CODEDIRECTORY,
            length,
            CD_VERSION,
            flags,
            hash_offset,
            ident_offset,
            n_special,
            len(code_hashes),
            code_limit if code_limit <= 0xFFFFFFFF else 0,
            size,
            hash_type,
            0,
            PAGE_SIZE_LOG2,
            0,
        )
        + struct.pack(
            ">IIIQQQQ",
            0,
            team_offset,
            0,
            code_limit if code_limit > 0xFFFFFFFF else 0,
            exec_seg_base,
            exec_seg_limit,
            exec_seg_flags,
        )
        + ident
        + team
        + specials
        + b"".join(code_hashes)
    )
    assert len(raw) == length and name
    return parse_code_directory(raw, what="the new signature")


def _cstring(data: bytes, offset: int, what: str) -> str:
    end = data.find(b"\x00", offset)
    if offset <= 0 or offset >= len(data) or end < 0:
        raise BadMachO(f"{what}: a CodeDirectory string lies outside it.")
    return data[offset:end].decode("utf-8", "replace")


def parse_code_directory(data: bytes, *, what: str) -> CodeDirectory:
    if len(data) < _CD_HEADER.size:
        raise BadMachO(f"{what}: the CodeDirectory is truncated.")
    (
        magic,
        length,
        version,
        flags,
        hash_offset,
        ident_offset,
        n_special,
        n_code,
        code_limit,
        hash_size,
        hash_type,
        _platform,
        page_log2,
        _spare,
    ) = _CD_HEADER.unpack_from(data)
    if magic != CSMAGIC_CODEDIRECTORY or length > len(data):
        raise BadMachO(f"{what}: not a CodeDirectory.")
    data = data[:length]
    if hash_type not in HASH_TYPES or HASH_TYPES[hash_type][1] != hash_size:
        raise BadMachO(f"{what}: unknown CodeDirectory hash type {hash_type}.")
    if page_log2 and not 9 <= page_log2 <= 16:
        raise BadMachO(f"{what}: bad CodeDirectory page size 2^{page_log2}.")
    if hash_offset < n_special * hash_size or hash_offset + n_code * hash_size > length:
        raise BadMachO(f"{what}: the CodeDirectory's hashes lie outside it.")
    team_id = None
    exec_base = exec_limit = exec_flags = 0
    if version >= 0x20200 and len(data) >= 52:
        (team_offset,) = struct.unpack_from(">I", data, 48)
        if team_offset:
            team_id = _cstring(data, team_offset, what)
    if version >= 0x20300 and len(data) >= 64:
        (limit64,) = struct.unpack_from(">Q", data, 56)
        if limit64:
            code_limit = limit64
    if version >= 0x20400 and len(data) >= 88:
        exec_base, exec_limit, exec_flags = struct.unpack_from(">QQQ", data, 64)
    specials = {
        slot: data[hash_offset - slot * hash_size : hash_offset - (slot - 1) * hash_size]
        for slot in range(1, n_special + 1)
    }
    code = tuple(
        data[hash_offset + i * hash_size : hash_offset + (i + 1) * hash_size] for i in range(n_code)
    )
    return CodeDirectory(
        raw=bytes(data),
        version=version,
        flags=flags,
        hash_type=hash_type,
        identifier=_cstring(data, ident_offset, what),
        team_id=team_id,
        code_limit=code_limit,
        page_size=1 << page_log2 if page_log2 else 0,
        special_hashes=specials,
        code_hashes=code,
        exec_seg_base=exec_base,
        exec_seg_limit=exec_limit,
        exec_seg_flags=exec_flags,
    )


# --- requirements ------------------------------------------------------------------------------

OP_FALSE, OP_TRUE, OP_IDENT, OP_APPLE_ANCHOR, OP_ANCHOR_HASH = 0, 1, 2, 3, 4
OP_INFO_KEY_VALUE, OP_AND, OP_OR, OP_CDHASH, OP_NOT = 5, 6, 7, 8, 9
OP_INFO_KEY_FIELD, OP_CERT_FIELD, OP_TRUSTED_CERT, OP_TRUSTED_CERTS = 10, 11, 12, 13
OP_CERT_GENERIC, OP_APPLE_GENERIC_ANCHOR = 14, 15
MATCH_EXISTS, MATCH_EQUAL = 0, 1
KIND_DESIGNATED = 3
APPLE_WWDR_MARKER_OID = "1.2.840.113635.100.6.2.1"


def _req_data(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value + b"\x00" * ((-len(value)) % 4)


def _oid_content(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def _oid_text(content: bytes) -> str:
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        return "?"
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - first * 40, *arcs[1:]])


def designated_requirement(
    identifier: str, *, apple_issued: bool, leaf_cn: str | None, root_sha1: bytes
) -> bytes:
    """The expression codesign derives by default, as a requirement blob (``0xfade0c00``).

    For a certificate Apple issued (an iOS development or distribution certificate):
    ``identifier "ID" and anchor apple generic and certificate leaf[subject.CN] = "CN" and
    certificate 1[field.1.2.840.113635.100.6.2.1] exists``; for any other certificate:
    ``identifier "ID" and certificate root = H"<SHA-1 of the root certificate>"``.
    ``and`` nests to the left, as Apple's requirement compiler writes it.
    """
    ident = struct.pack(">I", OP_IDENT) + _req_data(identifier.encode("utf-8"))
    if apple_issued and leaf_cn:
        terms = [
            ident,
            struct.pack(">I", OP_APPLE_GENERIC_ANCHOR),
            struct.pack(">Ii", OP_CERT_FIELD, 0)
            + _req_data(b"subject.CN")
            + struct.pack(">I", MATCH_EQUAL)
            + _req_data(leaf_cn.encode("utf-8")),
            struct.pack(">Ii", OP_CERT_GENERIC, 1)
            + _req_data(_oid_content(APPLE_WWDR_MARKER_OID))
            + struct.pack(">I", MATCH_EXISTS),
        ]
    else:
        terms = [ident, struct.pack(">Ii", OP_ANCHOR_HASH, -1) + _req_data(root_sha1)]
    expr = struct.pack(">I", OP_AND) * (len(terms) - 1) + b"".join(terms)
    return blob(CSMAGIC_REQUIREMENT, struct.pack(">I", 1) + expr)


def requirements_blob(designated: bytes) -> bytes:
    return blob(CSMAGIC_REQUIREMENTS, struct.pack(">III", 1, KIND_DESIGNATED, 20) + designated)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def u32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise ValueError("truncated")
        (value,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        return int(value)

    def i32(self) -> int:
        value = self.u32()
        return value - (1 << 32) if value & 0x80000000 else value

    def data_(self) -> bytes:
        size = self.u32()
        if self.pos + size > len(self.data):
            raise ValueError("truncated")
        value = self.data[self.pos : self.pos + size]
        self.pos += size + (-size) % 4
        return value


def _slot(n: int) -> str:
    return {0: "leaf", -1: "root"}.get(n, str(n))


_MATCH = {1: "=", 2: "~", 3: "=*", 4: "*=", 5: "<", 6: ">", 7: "<=", 8: ">="}


def _match(r: _Reader) -> str:
    op = r.u32()
    if op == MATCH_EXISTS:
        return " /* exists */"
    return f' {_MATCH.get(op, f"<match {op}>")} "{r.data_().decode("utf-8", "replace")}"'


def _expr(r: _Reader, depth: int = 0) -> str:
    if depth > 64:
        raise ValueError("nested too deeply")
    op = r.u32() & 0x00FFFFFF
    if op == OP_FALSE:
        return "never"
    if op == OP_TRUE:
        return "always"
    if op == OP_IDENT:
        return f'identifier "{r.data_().decode("utf-8", "replace")}"'
    if op == OP_APPLE_ANCHOR:
        return "anchor apple"
    if op == OP_APPLE_GENERIC_ANCHOR:
        return "anchor apple generic"
    if op == OP_ANCHOR_HASH:
        slot = r.i32()
        return f'certificate {_slot(slot)} = H"{r.data_().hex()}"'
    if op in (OP_AND, OP_OR):
        left = _expr(r, depth + 1)
        right = _expr(r, depth + 1)
        return f"{left} {'and' if op == OP_AND else 'or'} {right}"
    if op == OP_NOT:
        return f"! ({_expr(r, depth + 1)})"
    if op == OP_CDHASH:
        return f'cdhash H"{r.data_().hex()}"'
    if op == OP_INFO_KEY_VALUE:
        key = r.data_().decode("utf-8", "replace")
        return f'info[{key}] = "{r.data_().decode("utf-8", "replace")}"'
    if op == OP_INFO_KEY_FIELD:
        key = r.data_().decode("utf-8", "replace")
        return f"info[{key}]{_match(r)}"
    if op == OP_CERT_FIELD:
        slot = r.i32()
        key = r.data_().decode("utf-8", "replace")
        return f"certificate {_slot(slot)}[{key}]{_match(r)}"
    if op == OP_CERT_GENERIC:
        slot = r.i32()
        oid = _oid_text(r.data_())
        return f"certificate {_slot(slot)}[field.{oid}]{_match(r)}"
    if op == OP_TRUSTED_CERT:
        return f"certificate {_slot(r.i32())} trusted"
    if op == OP_TRUSTED_CERTS:
        return "anchor trusted"
    raise ValueError(f"requirement op {op} is not known")


def requirement_text(requirements: bytes) -> dict[int, str]:
    """The requirements of a requirements blob as text, by kind (3: designated)."""
    out: dict[int, str] = {}
    if len(requirements) < 12:
        return out
    magic, _length, count = struct.unpack_from(">III", requirements)
    if magic != CSMAGIC_REQUIREMENTS or count > 16:
        return out
    for i in range(count):
        try:
            kind, offset = struct.unpack_from(">II", requirements, 12 + 8 * i)
            rmagic, rlen, _form = struct.unpack_from(">III", requirements, offset)
            if rmagic != CSMAGIC_REQUIREMENT:
                continue
            out[kind] = _expr(_Reader(requirements[offset + 12 : offset + rlen]))
        except (ValueError, struct.error):
            out[kind] = "<unreadable requirement>"
    return out


# --- entitlements ------------------------------------------------------------------------------


def entitlements_xml(entitlements: dict[str, Any]) -> bytes:
    return plistlib.dumps(entitlements, fmt=plistlib.FMT_XML, sort_keys=True)


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _der_value(value: Any, path: str) -> bytes:
    if isinstance(value, bool):
        return _der(0x01, b"\xff" if value else b"\x00")
    if isinstance(value, int):
        return _der(0x02, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))
    if isinstance(value, str):
        return _der(0x0C, value.encode("utf-8"))
    if isinstance(value, list):
        return _der(0x30, b"".join(_der_value(v, f"{path}[]") for v in value))
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: str(kv[0]).encode("utf-8"))
        return _der(
            0xB0,  # [CONTEXT 16] constructed: a dictionary
            b"".join(
                _der(0x30, _der(0x0C, str(k).encode("utf-8")) + _der_value(v, f"{path}.{k}"))
                for k, v in items
            ),
        )
    kind = "date" if isinstance(value, datetime) else type(value).__name__
    raise EntitlementsUnencodable(
        f"The entitlement {path.lstrip('.')} is a {kind}; DER entitlements carry only "
        "booleans, integers, strings, arrays and dictionaries.",
        entitlement=path.lstrip("."),
    )


def entitlements_der(entitlements: dict[str, Any]) -> bytes:
    """CoreEntitlements' DER form: ``[APPLICATION 16] { INTEGER 1, dictionary }`` where a
    dictionary is ``[CONTEXT 16] { SEQUENCE { UTF8String key, value } ... }`` sorted by key."""
    return _der(0x70, _der(0x02, b"\x01") + _der_value(entitlements, ""))


def _der_read(data: bytes, pos: int) -> tuple[int, bytes, int]:
    if pos + 2 > len(data):
        raise ValueError("truncated")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first & 0x80:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad length")
        size = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    else:
        size = first
    if pos + size > len(data):
        raise ValueError("truncated")
    return tag, data[pos : pos + size], pos + size


def _der_parse_value(tag: int, content: bytes, depth: int) -> Any:
    if depth > 64:
        raise ValueError("nested too deeply")
    if tag == 0x01:
        return content != b"\x00"
    if tag == 0x02:
        return int.from_bytes(content, "big", signed=True)
    if tag == 0x0C:
        return content.decode("utf-8")
    items: list[Any] = []
    pos = 0
    while pos < len(content):
        t, c, pos = _der_read(content, pos)
        items.append(_der_parse_value(t, c, depth + 1) if tag == 0x30 else (t, c))
    if tag == 0x30:
        return items
    if tag == 0xB0:
        out: dict[str, Any] = {}
        for t, c in items:
            if t != 0x30:
                raise ValueError("a dictionary entry is not a sequence")
            kt, kc, p = _der_read(c, 0)
            vt, vc, _end = _der_read(c, p)
            if kt != 0x0C:
                raise ValueError("a dictionary key is not a string")
            out[kc.decode("utf-8")] = _der_parse_value(vt, vc, depth + 1)
        return out
    raise ValueError(f"unknown DER tag {tag:#x}")


def parse_entitlements_der(data: bytes) -> dict[str, Any]:
    """The dictionary in a DER entitlements payload (``ValueError`` when malformed)."""
    tag, content, end = _der_read(data, 0)
    if tag != 0x70 or end != len(data):
        raise ValueError("not DER entitlements")
    vtag, version, pos = _der_read(content, 0)
    if vtag != 0x02 or version != b"\x01":
        raise ValueError("unknown DER entitlements version")
    dtag, dcontent, _end = _der_read(content, pos)
    value = _der_parse_value(dtag, dcontent, 0)
    if not isinstance(value, dict):
        raise ValueError("DER entitlements are not a dictionary")
    return value
