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
signer covers SDK 24 to ``0x7fffffff`` (what apksigner 31 writes). Key rotation follows
apksigner with a lineage (:mod:`appyard.signing.lineage`): the original key signs v1 and v2,
the rotated key a v3 signer (rotation from API 28) or a v3.1 signer (from API 33, the
default) carrying the proof-of-rotation lineage.

Existing signatures in the input are replaced: JAR signature files (``META-INF/MANIFEST.MF``,
``*.SF``, ``*.RSA``, ``*.DSA``, ``*.EC``, ``SIG-*``) and any APK Signing Block are dropped.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from appyard.errors import BadRequest, InvalidArtifact
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
from appyard.signing.lineage import InvalidLineage, Rotation
from appyard.signing.v1_sign import (
    MANIFEST_NAME,
    MAX_SOURCE_MANIFEST,
    ContentDigest,
    digest_for,
    is_signature_file,
    needs_digest,
    signature_entries,
)
from appyard.signing.verify import (
    PROOF_OF_ROTATION_ATTR_ID,
    ROTATION_MIN_SDK_VERSION_ATTR_ID,
    STRIPPING_PROTECTION_ATTR_ID,
    V2_BLOCK_ID,
    V3_BLOCK_ID,
    V31_BLOCK_ID,
)
from appyard.signing.zipmeta import CentralDirectoryEntry, read_uncompressed

log = logging.getLogger(__name__)

SCHEMES = ("v1", "v2", "v3")
PADDING_BLOCK_ID = 0x42726577
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


@dataclass(frozen=True)
class SignerPlan:
    """One signer of the APK Signing Block: which block, which key, which SDK range (v3 and
    v3.1 only) and which additional attributes (already encoded as ``u32 id | value``)."""

    block_id: int
    material: SigningMaterial
    min_sdk: int = V3_MIN_SDK
    max_sdk: int = V3_MAX_SDK
    attributes: tuple[bytes, ...] = ()


def _attribute(attr_id: int, value: bytes) -> bytes:
    return struct.pack("<I", attr_id) + value


def plan_signers(
    material: SigningMaterial,
    *,
    v2: bool,
    v3: bool,
    rotation: Rotation | None = None,
    apk_min_sdk: int = 1,
) -> list[SignerPlan]:
    """The v2/v3/v3.1 signers apksigner writes for these schemes and this rotation.

    Without rotation one key signs everything, v3 covering API 24 and later. With a
    rotation, the original key signs v2; the current key, with the lineage, signs v3 (from
    API 24) or, when :meth:`Rotation.uses_v31`, a v3.1 signer from the rotation's minimum
    SDK while the original key signs v3 up to the API level before it and says where
    rotation starts (the v3.1 stripping protection).
    """
    v2_key = rotation.original if rotation is not None else material
    plans: list[SignerPlan] = []
    if v2:
        stripping = (_attribute(STRIPPING_PROTECTION_ATTR_ID, struct.pack("<I", 3)),) if v3 else ()
        plans.append(SignerPlan(V2_BLOCK_ID, v2_key, attributes=stripping))
    if not v3:
        return plans
    if rotation is None:
        plans.append(SignerPlan(V3_BLOCK_ID, material))
        return plans
    proof = (_attribute(PROOF_OF_ROTATION_ATTR_ID, rotation.lineage.encoded),)
    if rotation.uses_v31(apk_min_sdk):
        plans.append(
            SignerPlan(
                V3_BLOCK_ID,
                rotation.original,
                max_sdk=rotation.min_sdk - 1,
                attributes=(
                    _attribute(
                        ROTATION_MIN_SDK_VERSION_ATTR_ID, struct.pack("<i", rotation.min_sdk)
                    ),
                ),
            )
        )
        plans.append(SignerPlan(V31_BLOCK_ID, material, min_sdk=rotation.min_sdk, attributes=proof))
    else:
        plans.append(SignerPlan(V3_BLOCK_ID, material, attributes=proof))
    return plans


def _signer(plan: SignerPlan, content_digest: bytes) -> bytes:
    material = plan.material
    algorithm = _algorithm_id(material)
    certs = [c.public_bytes(Encoding.DER) for c in material.cert_chain]
    public_key = asn1_x509.Certificate.load(certs[0])["tbs_certificate"][
        "subject_public_key_info"
    ].dump()
    digests = _lp_seq([struct.pack("<I", algorithm) + _lp(content_digest)])
    attributes = _lp_seq(plan.attributes)
    sdk = b"" if plan.block_id == V2_BLOCK_ID else struct.pack("<II", plan.min_sdk, plan.max_sdk)
    signed_data = digests + _lp_seq(certs) + sdk + attributes
    signatures = _lp_seq([struct.pack("<I", algorithm) + _lp(material.sign(signed_data))])
    return _lp(signed_data) + sdk + signatures + _lp(public_key)


def signing_block(plans: Collection[SignerPlan], content_digest: bytes) -> bytes:
    """The APK Signing Block holding ``plans`` (one signer per block, in the order given),
    padded to a multiple of 4096 bytes."""
    pairs = [(plan.block_id, _lp(_lp(_signer(plan, content_digest)))) for plan in plans]
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
    jar_signer: SigningMaterial,
    *,
    v1_digest: str | None,
    plans: Collection[SignerPlan],
    alignment: int,
    so_alignment: int,
    required: str | None = None,
) -> None:
    ids = {plan.block_id for plan in plans}
    apk_schemes = [n for n, block_id in ((2, V2_BLOCK_ID), (3, V3_BLOCK_ID)) if block_id in ids]
    with open(src, "rb") as fh:
        layout = read_layout(fh)
        if required is not None and layout.find(required) is None:
            raise InvalidArtifact(f"The archive has no {required}.", reason="missing_entry")
        source_manifest = _source_manifest(fh, layout) if v1_digest else None
        with replacing(Path(dst)) as raw:
            content = ContentDigester([ContentDigestAlgorithm.CHUNKED_SHA256]) if plans else None
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
                    jar_signer,
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
                block = signing_block(plans, digest)
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
    rotation: Rotation | None = None,
) -> None:
    """Align and sign ``src`` into ``dst``.

    ``min_sdk`` is the APK's ``minSdkVersion``; when not given it is read from the APK's
    AndroidManifest.xml, as apksigner does. It picks the default ``schemes``
    (:func:`choose_schemes`) and the JAR digest (:func:`~appyard.signing.v1_sign.digest_for`).
    ``rotation`` signs with a rotated key (:mod:`appyard.signing.lineage`): ``material`` is
    the lineage's newest key, the rotation's original key signs v1 and v2.
    """
    chosen = _validate(schemes) if schemes is not None else None
    if min_sdk is None:
        min_sdk = min_sdk_of(src)
    if chosen is None:
        chosen = choose_schemes(min_sdk)
    if rotation is not None:
        if "v3" not in chosen:
            raise InvalidLineage(
                "Key rotation is carried by the v3 signature: sign with v3 when giving a lineage."
            )
        rotation.check(material)
    jar_signer = rotation.original if rotation is not None else material
    _sign_archive(
        src,
        dst,
        jar_signer,
        v1_digest=digest_for(jar_signer, min_sdk) if "v1" in chosen else None,
        plans=plan_signers(
            material,
            v2="v2" in chosen,
            v3="v3" in chosen,
            rotation=rotation,
            apk_min_sdk=min_sdk,
        ),
        alignment=DEFAULT_ALIGNMENT,
        so_alignment=PAGE_ALIGNMENT,
        required=MANIFEST_XML,
    )
    log.info(
        "signing.apk_signed schemes=%s min_sdk=%d signer=%s rotation_min_sdk=%s",
        ",".join(sorted(chosen)),
        min_sdk,
        material.alias,
        rotation.min_sdk if rotation is not None else "-",
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
        plans=(),
        alignment=1,
        so_alignment=1,
    )
    log.info("signing.aab_signed signer=%s", material.alias)
