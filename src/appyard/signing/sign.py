"""Sign an APK (v1 JAR + APK Signature Scheme v2 + v3) or an AAB (JAR signature), streaming.

:func:`sign_apk` makes one pass over the input: every kept entry is copied raw into the output
with its data aligned (:mod:`appyard.signing.align`), its uncompressed content digested for the
JAR manifest (:mod:`appyard.signing.v1_sign`), and every byte written is fed to the 1 MiB
chunked SHA-256 of the v2/v3 content digest as it goes (:class:`appyard.signing.digest.
ContentDigester`, the verifier's own digest code). Then come the JAR signature entries,
zero padding to 4096 (apksigner does the same, so the APK Signing Block is page aligned), the
APK Signing Block, the central directory and its end record. Memory is bounded by the central
directory and the v1 digests, never by the APK's size; the output is written to a temporary
file beside ``dst`` and renamed into place.

Scheme choice follows apksigner: v1 is kept when minSdk < 24, v2 and v3 always; the JAR
digest is SHA-256 (SHA-1 for RSA keys when minSdk < 18). v2 and v3 use RSASSA-PKCS1-v1_5
with SHA-256 (``0x0103``) or ECDSA with SHA-256 (``0x0201``) over the same content digest;
the v2 signer carries the stripping-protection attribute when v3 is present, and the v3
signer covers SDK 24 to ``0x7fffffff`` (what apksigner 31 writes). Key rotation (v3.1,
proof-of-rotation lineage) is not implemented.

Existing signatures in the input are replaced: JAR signature files (``META-INF/MANIFEST.MF``,
``*.SF``, ``*.RSA``, ``*.DSA``, ``*.EC``, ``SIG-*``) and any APK Signing Block are dropped.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from appyard.core.errors import BadRequest, InvalidArtifact
from appyard.signing.align import (
    DEFAULT_ALIGNMENT,
    PAGE_ALIGNMENT,
    OffsetWriter,
    ZipLayout,
    copy_entries,
    end_of_central_directory,
    read_layout,
    replacing,
    write_entry,
)
from appyard.signing.digest import ContentDigestAlgorithm, ContentDigester
from appyard.signing.keystore import SigningMaterial
from appyard.signing.v1_sign import (
    MANIFEST_NAME,
    MAX_SOURCE_MANIFEST,
    ContentDigest,
    digest_for,
    is_signature_file,
    needs_digest,
    signature_entries,
)
from appyard.signing.zipmeta import CentralDirectoryEntry, read_uncompressed

log = logging.getLogger(__name__)

SCHEMES = ("v1", "v2", "v3")
V2_BLOCK_ID = 0x7109871A
V3_BLOCK_ID = 0xF05368C0
PADDING_BLOCK_ID = 0x42726577
STRIPPING_PROTECTION_ATTR_ID = 0xBEEFF00D
RSA_PKCS1_SHA256 = 0x0103
ECDSA_SHA256 = 0x0201
V3_MIN_SDK = 24
V3_MAX_SDK = 0x7FFFFFFF
MIN_SDK_WITHOUT_V1 = 24  # Android 7.0 verifies v2; below that only v1 counts
BLOCK_MAGIC = b"APK Sig Block 42"
PAGE = 4096


class UnsupportedScheme(BadRequest):
    """Choose signature schemes among v1, v2 and v3."""

    code = "signing.unsupported_scheme"


# --- scheme choice ----------------------------------------------------------------------------


def choose_schemes(min_sdk: int) -> frozenset[str]:
    """apksigner's default: v1 when minSdk < 24, v2 and v3 always."""
    if min_sdk >= MIN_SDK_WITHOUT_V1:
        return frozenset({"v2", "v3"})
    return frozenset(SCHEMES)


def parse_schemes(text: str) -> frozenset[str]:
    """``"v1,v2,v3"`` -> ``{"v1", "v2", "v3"}``, refusing unknown or empty choices."""
    chosen = frozenset(part.strip().lower() for part in text.split(",") if part.strip())
    return _validate(chosen)


def _validate(schemes: Collection[str]) -> frozenset[str]:
    chosen = frozenset(schemes)
    unknown = sorted(chosen - set(SCHEMES))
    if unknown or not chosen:
        raise UnsupportedScheme(
            f"Unknown signature scheme {', '.join(unknown)}; choose among v1, v2 and v3."
            if unknown
            else "Choose at least one signature scheme among v1, v2 and v3.",
            schemes=sorted(chosen),
        )
    return chosen


# --- APK Signing Block ------------------------------------------------------------------------


def _lp(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


def _lp_seq(items: Collection[bytes]) -> bytes:
    return _lp(b"".join(_lp(item) for item in items))


def _algorithm_id(material: SigningMaterial) -> int:
    return (
        RSA_PKCS1_SHA256 if isinstance(material.private_key, rsa.RSAPrivateKey) else (ECDSA_SHA256)
    )


def _sign(material: SigningMaterial, data: bytes) -> bytes:
    key = material.private_key
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def _signer(
    material: SigningMaterial, content_digest: bytes, *, v3: bool, v3_present: bool
) -> bytes:
    algorithm = _algorithm_id(material)
    certs = [c.public_bytes(Encoding.DER) for c in material.cert_chain]
    public_key = asn1_x509.Certificate.load(certs[0])["tbs_certificate"][
        "subject_public_key_info"
    ].dump()
    digests = _lp_seq([struct.pack("<I", algorithm) + _lp(content_digest)])
    if v3:
        sdk = struct.pack("<II", V3_MIN_SDK, V3_MAX_SDK)
        signed_data = digests + _lp_seq(certs) + sdk + _lp_seq([])
    else:
        attributes = [struct.pack("<II", STRIPPING_PROTECTION_ATTR_ID, 3)] if v3_present else []
        signed_data = digests + _lp_seq(certs) + _lp_seq(attributes)
    signatures = _lp_seq([struct.pack("<I", algorithm) + _lp(_sign(material, signed_data))])
    if v3:
        return _lp(signed_data) + sdk + signatures + _lp(public_key)
    return _lp(signed_data) + signatures + _lp(public_key)


def signing_block(material: SigningMaterial, content_digest: bytes, *, v2: bool, v3: bool) -> bytes:
    """The APK Signing Block with v2 and/or v3 signers, padded to a multiple of 4096 bytes."""
    pairs: list[tuple[int, bytes]] = []
    if v2:
        pairs.append(
            (V2_BLOCK_ID, _lp(_lp(_signer(material, content_digest, v3=False, v3_present=v3))))
        )
    if v3:
        pairs.append(
            (V3_BLOCK_ID, _lp(_lp(_signer(material, content_digest, v3=True, v3_present=True))))
        )
    body = b"".join(struct.pack("<QI", len(value) + 4, key) + value for key, value in pairs)
    total = 8 + len(body) + 8 + len(BLOCK_MAGIC)
    pad = (-total) % PAGE
    if pad:
        if pad < 12:
            pad += PAGE
        body += struct.pack("<QI", pad - 8, PADDING_BLOCK_ID) + b"\x00" * (pad - 12)
    size = struct.pack("<Q", len(body) + 8 + len(BLOCK_MAGIC))
    return size + body + size + BLOCK_MAGIC


# --- minSdkVersion ----------------------------------------------------------------------------

MANIFEST_XML = "AndroidManifest.xml"
MAX_MANIFEST_XML = 8 * 1024 * 1024
_MIN_SDK_ATTR = 0x0101020C  # android:minSdkVersion
_RES_STRING_POOL, _RES_XML, _RES_XML_RESOURCE_MAP, _RES_XML_START_ELEMENT = (
    0x0001,
    0x0003,
    0x0180,
    0x0102,
)


def _axml_strings(data: bytes, at: int) -> list[str]:
    _t, header_size, _size, count, _styles, flags, strings_start = struct.unpack_from(
        "<HHIIIII", data, at
    )
    utf8 = bool(flags & 0x100)
    offsets = struct.unpack_from(f"<{count}I", data, at + header_size)
    base = at + strings_start
    strings = []
    for offset in offsets:
        pos = base + offset
        if utf8:
            pos += 2 if data[pos] & 0x80 else 1  # length in UTF-16 units
            n = data[pos]
            pos += 1
            if n & 0x80:
                n = ((n & 0x7F) << 8) | data[pos]
                pos += 1
            strings.append(data[pos : pos + n].decode("utf-8", "replace"))
        else:
            (n,) = struct.unpack_from("<H", data, pos)
            pos += 2
            if n & 0x8000:
                n = ((n & 0x7FFF) << 16) | struct.unpack_from("<H", data, pos)[0]
                pos += 2
            strings.append(data[pos : pos + 2 * n].decode("utf-16-le", "replace"))
    return strings


def min_sdk_from_manifest(data: bytes) -> int:
    """``minSdkVersion`` of a binary AndroidManifest.xml; 1 (Android's default) when absent.

    A minimal reader of the compiled XML (string pool, resource map, start elements) that
    looks only at ``<uses-sdk android:minSdkVersion>``; a codename (preview SDK) or a
    resource reference counts as absent. Raises :class:`InvalidArtifact` when not binary XML.
    """
    try:
        if struct.unpack_from("<H", data, 0)[0] != _RES_XML:
            raise ValueError("not binary XML")
        strings: list[str] = []
        resource_ids: tuple[int, ...] = ()
        pos = struct.unpack_from("<H", data, 2)[0]
        while pos + 8 <= len(data):
            kind, header_size, size = struct.unpack_from("<HHI", data, pos)
            if size < 8:
                raise ValueError("bad chunk")
            if kind == _RES_STRING_POOL:
                strings = _axml_strings(data, pos)
            elif kind == _RES_XML_RESOURCE_MAP:
                resource_ids = struct.unpack_from(
                    f"<{(size - header_size) // 4}I", data, pos + header_size
                )
            elif kind == _RES_XML_START_ELEMENT:
                name, attr_start, attr_size, attr_count = struct.unpack_from(
                    "<IHHH", data, pos + header_size + 4
                )
                if strings[name] == "uses-sdk":
                    for i in range(attr_count):
                        at = pos + header_size + attr_start + i * attr_size
                        _ns, attr_name, raw, _vsize, _res0, dtype, value = struct.unpack_from(
                            "<IIIHBBI", data, at
                        )
                        is_min = (
                            resource_ids[attr_name] == _MIN_SDK_ATTR
                            if attr_name < len(resource_ids)
                            else strings[attr_name] == "minSdkVersion"
                        )
                        if not is_min:
                            continue
                        if dtype in (0x10, 0x11):
                            return max(int(value), 1)
                        if dtype == 0x03 and strings[raw].isdigit():
                            return max(int(strings[raw]), 1)
                        return 1
            pos += size
    except (struct.error, IndexError, ValueError) as exc:
        raise InvalidArtifact(
            f"The APK's AndroidManifest.xml is not readable binary XML ({exc}).",
            reason="bad_manifest",
        ) from None
    return 1


def min_sdk_of(apk: str | os.PathLike[str]) -> int:
    """The APK's ``minSdkVersion`` (what apksigner reads to choose schemes and digests)."""
    with open(apk, "rb") as fh:
        layout = read_layout(fh)
        return _min_sdk(fh, layout)


def _min_sdk(fh: BinaryIO, layout: ZipLayout) -> int:
    entry = layout.find(MANIFEST_XML)
    if entry is None:
        raise InvalidArtifact("The APK has no AndroidManifest.xml.", reason="no_manifest")
    return min_sdk_from_manifest(
        read_uncompressed(fh, entry, layout.sections.cd_offset, limit=MAX_MANIFEST_XML)
    )


# --- signing ----------------------------------------------------------------------------------


def _source_manifest(fh: BinaryIO, layout: ZipLayout) -> bytes | None:
    """The input's ``META-INF/MANIFEST.MF`` (its main section is kept), if readable."""
    entry = layout.find(MANIFEST_NAME)
    if entry is None:
        return None
    try:
        return read_uncompressed(fh, entry, layout.sections.cd_offset, limit=MAX_SOURCE_MANIFEST)
    except InvalidArtifact:  # a damaged or huge old manifest is replaced, not fatal
        return None


def _sign_archive(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    material: SigningMaterial,
    *,
    v1_digest: str | None,
    v2: bool,
    v3: bool,
    alignment: int,
    so_alignment: int,
    required: str | None = None,
) -> None:
    apk_schemes = [n for n, on in ((2, v2), (3, v3)) if on]
    with open(src, "rb") as fh:
        layout = read_layout(fh)
        if required is not None and layout.find(required) is None:
            raise InvalidArtifact(f"The archive has no {required}.", reason="missing_entry")
        source_manifest = _source_manifest(fh, layout) if v1_digest else None
        with replacing(Path(dst)) as raw:
            content = (
                ContentDigester([ContentDigestAlgorithm.CHUNKED_SHA256]) if apk_schemes else None
            )
            out = OffsetWriter(raw, content.update if content is not None else None)
            digests: dict[str, bytes] = {}
            pending: dict[str, ContentDigest] = {}

            def observe(entry: CentralDirectoryEntry) -> ContentDigest | None:
                if v1_digest is None or not needs_digest(entry.name):
                    return None
                pending[entry.name] = ContentDigest(entry, v1_digest)
                return pending[entry.name]

            def after(entry: CentralDirectoryEntry) -> None:
                d = pending.pop(entry.name, None)
                if d is not None:
                    digests[entry.name] = d.finish()

            cd_records = copy_entries(
                fh,
                layout,
                out,
                keep=lambda entry: not is_signature_file(entry.name),
                alignment=alignment,
                so_alignment=so_alignment,
                observe=observe,
                after=after,
            )
            if v1_digest is not None:
                for name, data in signature_entries(
                    material,
                    digests,
                    digest=v1_digest,
                    apk_schemes=apk_schemes,
                    source_manifest=source_manifest,
                ):
                    cd_records.append(write_entry(out, name, data))
            block = b""
            if content is not None:
                out.write(b"\x00" * ((-out.offset) % PAGE))
                entries_end = out.offset
                cd = b"".join(cd_records)
                content.end_section()
                content.update(cd)
                content.end_section()
                content.update(
                    end_of_central_directory(
                        entry_count=len(cd_records),
                        cd_size=len(cd),
                        cd_offset=entries_end,
                        comment=layout.comment,
                    )
                )
                digest = content.digests()[ContentDigestAlgorithm.CHUNKED_SHA256]
                block = signing_block(material, digest, v2=v2, v3=v3)
                raw.write(block)
            else:
                entries_end = out.offset
                cd = b"".join(cd_records)
            cd_offset = entries_end + len(block)
            raw.write(cd)
            raw.write(
                end_of_central_directory(
                    entry_count=len(cd_records),
                    cd_size=len(cd),
                    cd_offset=cd_offset,
                    comment=layout.comment,
                )
            )


def sign_apk(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    material: SigningMaterial,
    *,
    schemes: Collection[str] | None = None,
    min_sdk: int | None = None,
) -> None:
    """Align and sign ``src`` into ``dst``.

    ``min_sdk`` is the APK's ``minSdkVersion``; when not given it is read from the APK's
    AndroidManifest.xml, as apksigner does. It picks the default ``schemes``
    (:func:`choose_schemes`) and the JAR digest (:func:`~appyard.signing.v1_sign.digest_for`).
    """
    chosen = _validate(schemes) if schemes is not None else None
    if min_sdk is None:
        min_sdk = min_sdk_of(src)
    if chosen is None:
        chosen = choose_schemes(min_sdk)
    v1_digest = digest_for(material, min_sdk) if "v1" in chosen else None
    _sign_archive(
        src,
        dst,
        material,
        v1_digest=v1_digest,
        v2="v2" in chosen,
        v3="v3" in chosen,
        alignment=DEFAULT_ALIGNMENT,
        so_alignment=PAGE_ALIGNMENT,
        required=MANIFEST_XML,
    )
    log.info(
        "signing.apk_signed schemes=%s min_sdk=%d signer=%s",
        ",".join(sorted(chosen)),
        min_sdk,
        material.alias,
    )


def sign_aab(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], material: SigningMaterial
) -> None:
    """JAR-sign an Android App Bundle (SHA-256 digests; no alignment, no APK Signing Block)."""
    _sign_archive(
        src,
        dst,
        material,
        v1_digest="sha256",
        v2=False,
        v3=False,
        alignment=1,
        so_alignment=1,
    )
    log.info("signing.aab_signed signer=%s", material.alias)
