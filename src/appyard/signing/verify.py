"""Verify APK signatures (JAR v1, APK Signature Scheme v2, v3, v3.1) the way apksigner does.

:func:`verify_apk` answers "does ``apksigner verify --min-sdk-version A --max-sdk-version B``
say *Verifies*?" without a JVM, for hostile input, in bounded memory:

1. The zip layout is read (:mod:`appyard.signing.zipmeta`); no End of Central Directory means
   :class:`~appyard.signing.zipmeta.NotAZip`, anything else malformed is a failed result.
2. When ``max_sdk >= 24`` the APK Signing Block is searched for v3.1 (``0x1b93ad61``, when
   ``max_sdk >= 33``), v3 (``0xf05368c0``, when ``max_sdk >= 28``) and v2 (``0x7109871a``, when
   ``min_sdk < 28`` or no v3 was found). Each signer's signatures over its signed data are
   checked, then the content digests are recomputed in one streamed pass over the file
   (:mod:`appyard.signing.digest`) and compared; v3 signers must cover ``[max(min_sdk, 28),
   max_sdk]`` without gaps and their proof-of-rotation lineages must agree.
3. The JAR signature is verified (:mod:`appyard.signing.v1`) when ``min_sdk < 24`` or no
   v2/v3 signature was found, with ``X-Android-APK-Signed`` stripping protection.
4. Cross-checks: v1 and v2 signers must be the same certificates; the v1/v2 signer must be
   the v3 signer or the root of its lineage; ``targetSandboxVersion > 1`` needs v2+;
   ``targetSdkVersion >= 30`` needs v2+ (when ``max_sdk`` reaches it).

The rules and messages are apksig's (the library behind apksigner); see docs/apk-signing.md.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from appyard.signing.certs import (
    CertificateError,
    ParsedCertificate,
    SignatureKind,
    load_public_key,
    parse_certificate,
    verify_signature,
)
from appyard.signing.digest import ContentDigestAlgorithm, compute_content_digests
from appyard.signing.model import (
    ANY_SDK,
    ApkVerification,
    CertificateInfo,
    JarVerification,
    SchemeStatus,
    V3Signer,
)
from appyard.signing.v1 import V1Result, jar_signature_present, verify_v1
from appyard.signing.zipmeta import (
    CentralDirectoryEntry,
    MalformedZip,
    NotAZip,
    SigningBlock,
    ZipSections,
    find_zip_sections,
    probe_signing_block,
    read_central_directory,
    read_uncompressed,
)

__all__ = [
    "V2_BLOCK_ID",
    "V3_BLOCK_ID",
    "V31_BLOCK_ID",
    "lineage_certificates",
    "signature_present",
    "verify_apk",
    "verify_jar",
]

V2_BLOCK_ID = 0x7109871A
V3_BLOCK_ID = 0xF05368C0
V31_BLOCK_ID = 0x1B93AD61
STRIPPING_PROTECTION_ATTR_ID = 0xBEEFF00D
PROOF_OF_ROTATION_ATTR_ID = 0x3BA06F8C
ROTATION_MIN_SDK_VERSION_ATTR_ID = 0x559F8B02
SIGNER_TARGETS_DEV_RELEASE_ATTR_ID = 0xC2A6B3BA

SDK_N = 24
SDK_O = 26
SDK_P = 28
SDK_R = 30
SDK_T = 33
MAX_APK_SIGNERS = 10
MAX_ANDROID_MANIFEST_SIZE = 16 * 1024 * 1024

SCHEME_V2 = 2
SCHEME_V3 = 3
SCHEME_V31 = 31
_SCHEME_NAMES = {SCHEME_V2: "APK Signature Scheme v2", SCHEME_V3: "APK Signature Scheme v3"}
_LABEL = {
    "v2": "APK Signature Scheme v2",
    "v3": "APK Signature Scheme v3",
    "v31": "APK Signature Scheme v3.1",
}

_CHUNKED_SHA256 = ContentDigestAlgorithm.CHUNKED_SHA256
_CHUNKED_SHA512 = ContentDigestAlgorithm.CHUNKED_SHA512
_VERITY = ContentDigestAlgorithm.VERITY_CHUNKED_SHA256


@dataclass(frozen=True)
class _SigAlg:
    id: int
    name: str
    kind: SignatureKind
    hash_name: str
    digest: ContentDigestAlgorithm
    min_sdk: int

    @property
    def key_algorithm(self) -> str:
        return {"RSA": "RSA", "RSA/PSS": "RSA", "EC": "EC", "DSA": "DSA"}[self.kind.value]


_SIG_ALGS: dict[int, _SigAlg] = {
    a.id: a
    for a in (
        _SigAlg(
            0x0101, "RSA_PSS_WITH_SHA256", SignatureKind.RSA_PSS, "SHA-256", _CHUNKED_SHA256, SDK_N
        ),
        _SigAlg(
            0x0102, "RSA_PSS_WITH_SHA512", SignatureKind.RSA_PSS, "SHA-512", _CHUNKED_SHA512, SDK_N
        ),
        _SigAlg(
            0x0103,
            "RSA_PKCS1_V1_5_WITH_SHA256",
            SignatureKind.RSA_PKCS1,
            "SHA-256",
            _CHUNKED_SHA256,
            SDK_N,
        ),
        _SigAlg(
            0x0104,
            "RSA_PKCS1_V1_5_WITH_SHA512",
            SignatureKind.RSA_PKCS1,
            "SHA-512",
            _CHUNKED_SHA512,
            SDK_N,
        ),
        _SigAlg(
            0x0201, "ECDSA_WITH_SHA256", SignatureKind.ECDSA, "SHA-256", _CHUNKED_SHA256, SDK_N
        ),
        _SigAlg(
            0x0202, "ECDSA_WITH_SHA512", SignatureKind.ECDSA, "SHA-512", _CHUNKED_SHA512, SDK_N
        ),
        _SigAlg(0x0301, "DSA_WITH_SHA256", SignatureKind.DSA, "SHA-256", _CHUNKED_SHA256, SDK_N),
        _SigAlg(
            0x0421,
            "VERITY_RSA_PKCS1_V1_5_WITH_SHA256",
            SignatureKind.RSA_PKCS1,
            "SHA-256",
            _VERITY,
            SDK_P,
        ),
        _SigAlg(0x0423, "VERITY_ECDSA_WITH_SHA256", SignatureKind.ECDSA, "SHA-256", _VERITY, SDK_P),
        _SigAlg(0x0425, "VERITY_DSA_WITH_SHA256", SignatureKind.DSA, "SHA-256", _VERITY, SDK_P),
    )
}
# Preference between content digests when several signatures target the same SDK version.
_DIGEST_RANK = {_CHUNKED_SHA256: 0, _VERITY: 1, _CHUNKED_SHA512: 2}


# --- little-endian length-prefixed reader -----------------------------------------------------


class _Malformed(Exception):
    """A length-prefixed structure is truncated or inconsistent."""


class _Reader:
    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def bytes_(self) -> bytes:
        return self._data[self._pos : self._end]

    def u32(self) -> int:
        if self.remaining < 4:
            raise _Malformed("buffer underflow")
        (value,) = struct.unpack_from("<I", self._data, self._pos)
        self._pos += 4
        return int(value)

    def i32(self) -> int:
        value = self.u32()
        return value - (1 << 32) if value & 0x80000000 else value

    def slice(self) -> _Reader:
        """A length-prefixed (uint32) slice."""
        length = self.i32()
        if length < 0 or length > self.remaining:
            raise _Malformed(
                f"Length-prefixed field longer than remaining buffer. Field length: {length}, "
                f"remaining: {self.remaining}"
            )
        start = self._pos
        self._pos += length
        return _Reader(self._data, start, start + length)

    def lp_bytes(self) -> bytes:
        return self.slice().bytes_()


# --- v2 / v3 / v3.1 signers -------------------------------------------------------------------


@dataclass(frozen=True)
class _LineageNode:
    cert: ParsedCertificate
    parent_sig_alg: int
    sig_alg: int
    flags: int

    def key(self) -> tuple[bytes, int, int, int]:
        return (self.cert.der, self.parent_sig_alg, self.sig_alg, self.flags)


@dataclass(eq=False)
class _SchemeSigner:
    index: int
    label: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    certs: list[ParsedCertificate] = field(default_factory=list)
    digests: list[tuple[int, bytes]] = field(default_factory=list)
    min_sdk: int = 0
    max_sdk: int = 0
    lineage: list[_LineageNode] | None = None
    targets_dev_release: bool = False

    def error(self, message: str) -> None:
        self.errors.append(f"{self.label} signer #{self.index + 1}: {message}")

    def warning(self, message: str) -> None:
        self.warnings.append(f"{self.label} signer #{self.index + 1}: {message}")


@dataclass(eq=False)
class _SchemeResult:
    scheme: str  # "v2", "v3", "v31"
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    signers: list[_SchemeSigner] = field(default_factory=list)
    needed: set[ContentDigestAlgorithm] = field(default_factory=set)
    lineage: list[_LineageNode] | None = None
    verified: bool = False

    @property
    def label(self) -> str:
        return _LABEL[self.scheme]

    def error(self, message: str) -> None:
        self.errors.append(f"{self.label}: {message}")

    def has_errors(self) -> bool:
        return bool(self.errors) or any(s.errors for s in self.signers)

    def all_errors(self) -> list[str]:
        return self.errors + [e for s in self.signers for e in s.errors]

    def all_warnings(self) -> list[str]:
        return self.warnings + [w for s in self.signers for w in s.warnings]


def _signatures_to_verify(
    supported: Sequence[tuple[_SigAlg, bytes]], min_sdk: int, max_sdk: int
) -> list[tuple[_SigAlg, bytes]] | None:
    """apksig's ``getSignaturesToVerify``; ``None`` when no signature works for ``min_sdk``."""
    best: dict[int, tuple[_SigAlg, bytes]] = {}
    min_provided = ANY_SDK
    for algorithm, signature in supported:
        if algorithm.min_sdk > max_sdk:
            continue
        min_provided = min(min_provided, algorithm.min_sdk)
        current = best.get(algorithm.min_sdk)
        if current is None or _DIGEST_RANK[algorithm.digest] > _DIGEST_RANK[current[0].digest]:
            best[algorithm.min_sdk] = (algorithm, signature)
    if min_sdk < min_provided or not best:
        return None
    return sorted(best.values(), key=lambda item: item[0].id)


def _same_key(spki: bytes, cert: ParsedCertificate) -> bool:
    if spki == cert.spki:
        return True
    try:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        mine = load_public_key(spki).public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        if cert.public_key is None:
            return False
        theirs = cert.public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (CertificateError, ValueError, TypeError):
        return False
    return mine == theirs


def _read_lineage(value: bytes) -> list[_LineageNode]:
    """A proof-of-rotation lineage; raises ``_Malformed`` (unparsable) or ``ValueError``
    (a link does not verify)."""
    reader = _Reader(value)
    version = reader.u32()
    if version != 1:
        raise _Malformed(f"unknown SigningCertificateLineage version {version}")
    nodes: list[_LineageNode] = []
    last: ParsedCertificate | None = None
    last_sig_alg = 0
    seen: set[bytes] = set()
    while reader.remaining:
        node = reader.slice()
        signed = node.slice()
        signed_bytes = signed.bytes_()
        flags = node.u32()
        sig_alg = node.u32()
        signature = node.lp_bytes()
        if last is not None:
            algorithm = _SIG_ALGS.get(last_sig_alg)
            if algorithm is None:
                raise ValueError("unknown signature algorithm in lineage")
            try:
                ok = verify_signature(
                    last.public_key, algorithm.kind, algorithm.hash_name, signature, signed_bytes
                )
            except CertificateError as exc:
                raise ValueError(str(exc)) from exc
            if not ok:
                raise ValueError(
                    f"Unable to verify signature of certificate #{len(nodes) + 1} using "
                    f"{algorithm.name} when verifying V3SigningCertificateLineage object"
                )
        encoded = signed.lp_bytes()
        signed_sig_alg = signed.u32()
        if last is not None and last_sig_alg != signed_sig_alg:
            raise ValueError("Signing algorithm ID mismatch in lineage")
        try:
            cert = parse_certificate(encoded)
        except CertificateError as exc:
            raise ValueError(str(exc)) from exc
        if cert.der in seen:
            raise ValueError("Encountered duplicate entries in SigningCertificateLineage")
        seen.add(cert.der)
        nodes.append(_LineageNode(cert, signed_sig_alg, sig_alg, flags))
        last, last_sig_alg = cert, sig_alg
    return nodes


def lineage_certificates(value: bytes) -> list[CertificateInfo]:
    """The certificates of an encoded proof-of-rotation lineage (the v3 signer attribute's
    value), oldest first, after checking every link's signature. Raises ``ValueError`` with
    apksig's wording when the lineage is unparsable or a link does not verify."""
    try:
        return [node.cert.info for node in _read_lineage(value)]
    except _Malformed as exc:
        raise ValueError(f"Malformed SigningCertificateLineage: {exc}") from None


def _parse_signer(
    reader: _Reader,
    signer: _SchemeSigner,
    result: _SchemeResult,
    *,
    min_sdk: int,
    max_sdk: int,
    supported_schemes: Mapping[int, str],
    found_schemes: set[int],
    rotation_min_sdk: int | None,
) -> None:
    v3 = result.scheme != "v2"
    signed_data = reader.slice()
    signed_bytes = signed_data.bytes_()
    if v3:
        signer.min_sdk = reader.i32()
        signer.max_sdk = reader.i32()
        if signer.min_sdk < 0 or signer.min_sdk > signer.max_sdk:
            signer.error(
                "Invalid SDK Version parameter(s) encountered in APK Signature scheme v3 "
                f"signature: minSdkVersion {signer.min_sdk} maxSdkVersion: {signer.max_sdk}"
            )
    signatures = reader.slice()
    public_key_bytes = reader.lp_bytes()

    records: list[int] = []
    supported: list[tuple[_SigAlg, bytes]] = []
    count = 0
    while signatures.remaining:
        count += 1
        try:
            record = signatures.slice()
            alg_id = record.u32()
            sig_bytes = record.lp_bytes()
        except _Malformed:
            signer.error(f"Malformed {result.label} signature record #{count}")
            return
        records.append(alg_id)
        algorithm = _SIG_ALGS.get(alg_id)
        if algorithm is None:
            signer.warning(f"Unknown signature algorithm: {alg_id:#x}")
            continue
        supported.append((algorithm, sig_bytes))
    if not records:
        signer.error("No signatures")
        return

    if v3:
        lo, hi = signer.min_sdk, signer.max_sdk
        if _targets_dev_release(signed_bytes):
            lo += 1
    else:
        lo, hi = min_sdk, max_sdk
    to_verify = _signatures_to_verify(supported, lo, hi)
    if to_verify is None:
        signer.error("No supported signatures" + ("" if v3 else ": none for the SDK range"))
        return
    for algorithm, sig_bytes in to_verify:
        try:
            key = load_public_key(public_key_bytes)
        except CertificateError as exc:
            signer.error(f"Malformed public key: {exc}")
            return
        try:
            ok = verify_signature(key, algorithm.kind, algorithm.hash_name, sig_bytes, signed_bytes)
        except CertificateError as exc:
            signer.error(f"Malformed public key: {exc}")
            return
        if not ok:
            signer.error(f"{algorithm.name} signature over signed-data did not verify")
            return
        result.needed.add(algorithm.digest)

    digests = signed_data.slice()
    certificates = signed_data.slice()
    if v3:
        signed_min = signed_data.i32()
        if signed_min != signer.min_sdk:
            signer.error(
                "minSdkVersion mismatch between signed data and signature record: "
                f"<{signer.min_sdk}> vs <{signed_min}>"
            )
        signed_max = signed_data.i32()
        if signed_max != signer.max_sdk:
            signer.error(
                "maxSdkVersion mismatch between signed data and signature record: "
                f"<{signer.max_sdk}> vs <{signed_max}>"
            )
    attributes = signed_data.slice()

    index = -1
    while certificates.remaining:
        index += 1
        encoded = certificates.lp_bytes()
        try:
            signer.certs.append(parse_certificate(encoded))
        except CertificateError as exc:
            signer.error(f"Malformed certificate #{index + 1}: {exc}")
            return
    if not signer.certs:
        signer.error("No certificates")
        return
    if not _same_key(public_key_bytes, signer.certs[0]):
        signer.error(
            "Public key mismatch between certificate and signature record: "
            f"<{signer.certs[0].spki.hex()}> vs <{public_key_bytes.hex()}>"
        )
        return

    count = 0
    while digests.remaining:
        count += 1
        try:
            record = digests.slice()
            alg_id = record.u32()
            signer.digests.append((alg_id, record.lp_bytes()))
        except _Malformed:
            signer.error(f"Malformed {result.label} digest record #{count}")
            return
    if records != [alg for alg, _ in signer.digests]:
        signer.error(
            "Signature algorithms mismatch between signatures and digests records: "
            f"{records} vs {[alg for alg, _ in signer.digests]}"
        )
        return

    count = 0
    expected_schemes: list[int] = []
    while attributes.remaining:
        count += 1
        try:
            attribute = attributes.slice()
            attr_id = attribute.u32()
            value = attribute.bytes_()
            if not v3 and attr_id == STRIPPING_PROTECTION_ATTR_ID:
                scheme_id = _Reader(value).u32()
                if scheme_id in supported_schemes:
                    expected_schemes.append(scheme_id)
                else:
                    signer.warning(
                        f"APK Signature Scheme v2 signer: {signer.index} references unknown "
                        f"APK signature scheme ID: {scheme_id}"
                    )
            elif v3 and attr_id == PROOF_OF_ROTATION_ATTR_ID:
                try:
                    signer.lineage = _read_lineage(value)
                except _Malformed:
                    signer.error(
                        "Failed to parse the SigningCertificateLineage structure in the APK "
                        "Signature Scheme v3 signature's additional attributes section."
                    )
                except ValueError:
                    signer.error(
                        "SigningCertificateLineage attribute containd a proof-of-rotation "
                        "record with signature(s) that did not verify."
                    )
                else:
                    ders = [node.cert.der for node in signer.lineage]
                    if signer.certs[0].der not in ders or ders[-1] != signer.certs[0].der:
                        signer.error(
                            "APK signing certificate differs from the associated certificate "
                            "found in the signer's SigningCertificateLineage."
                        )
            elif v3 and attr_id == ROTATION_MIN_SDK_VERSION_ATTR_ID:
                if max_sdk >= SDK_T and result.scheme == "v3":
                    attr_min = _Reader(value).i32()
                    if rotation_min_sdk is None:
                        signer.error(
                            "The v3 signer indicates key rotation should be supported starting "
                            f"from SDK version {attr_min}, but a v3.1 block was not found"
                        )
                    elif attr_min != rotation_min_sdk:
                        signer.error(
                            "The v3 signer indicates key rotation should be supported starting "
                            f"from SDK version {attr_min}, but the v3.1 block targets "
                            f"{rotation_min_sdk} for rotation"
                        )
            elif v3 and attr_id == SIGNER_TARGETS_DEV_RELEASE_ATTR_ID:
                signer.targets_dev_release = True
                if result.scheme == "v3":
                    signer.warning(
                        "The rotation-targets-dev-release attribute is only supported on v3.1 "
                        "signers; this attribute will be ignored by the platform in a v3.0 "
                        "signer"
                    )
            else:
                signer.warning(f"Unknown additional attribute: ID {attr_id:#x}")
        except _Malformed:
            signer.error(f"Malformed additional attribute #{count}")
            return
    for scheme_id in expected_schemes:
        if scheme_id not in found_schemes:
            signer.error(
                f"APK Signature Scheme v2 signature {signer.index} indicates the APK is signed "
                f"using {supported_schemes[scheme_id]} but no such signature was found. "
                "Signature stripped?"
            )


def _targets_dev_release(signed_data: bytes) -> bool:
    """Whether v3.1 signed data carries the rotation-targets-dev-release attribute."""
    try:
        reader = _Reader(signed_data)
        reader.slice()
        reader.slice()
        reader.u32()
        reader.u32()
        attributes = reader.slice()
        while attributes.remaining:
            attribute = attributes.slice()
            if attribute.u32() == SIGNER_TARGETS_DEV_RELEASE_ATTR_ID:
                return True
    except _Malformed:
        return False
    return False


def _parse_scheme(
    value: bytes,
    scheme: str,
    *,
    min_sdk: int,
    max_sdk: int,
    supported_schemes: Mapping[int, str],
    found_schemes: set[int],
    rotation_min_sdk: int | None = None,
) -> _SchemeResult:
    result = _SchemeResult(scheme=scheme)
    try:
        signers = _Reader(value).slice()
    except _Malformed:
        result.error("Malformed list of signers")
        return result
    if not signers.remaining:
        result.error(f"No signers in {result.label} signature")
        return result
    index = 0
    while signers.remaining:
        signer = _SchemeSigner(index=index, label=result.label)
        result.signers.append(signer)
        index += 1
        try:
            _parse_signer(
                signers.slice(),
                signer,
                result,
                min_sdk=min_sdk,
                max_sdk=max_sdk,
                supported_schemes=supported_schemes,
                found_schemes=found_schemes,
                rotation_min_sdk=rotation_min_sdk,
            )
        except _Malformed:
            signer.error("Malformed signer block")
            return result
        if index > 0x10000:
            break
    if scheme == "v2" and len(result.signers) > MAX_APK_SIGNERS:
        result.error(
            f"APK Signature Scheme V2 only supports a maximum of {MAX_APK_SIGNERS} signers, "
            f"found {len(result.signers)}"
        )
    return result


def _lineage_prefix(short: list[_LineageNode], long: list[_LineageNode]) -> bool:
    return [n.key() for n in short] == [n.key() for n in long[: len(short)]]


def _finish_scheme(
    result: _SchemeResult,
    actual: Mapping[ContentDigestAlgorithm, bytes],
    *,
    min_sdk: int,
    max_sdk: int,
    rotation_min_sdk: int | None = None,
) -> None:
    """Integrity (content digests) and, for v3/v3.1, SDK coverage and lineage consistency."""
    for signer in result.signers:
        for alg_id, expected in signer.digests:
            algorithm = _SIG_ALGS.get(alg_id)
            if algorithm is None or algorithm.digest not in result.needed:
                continue
            computed = actual[algorithm.digest]
            if computed != expected:
                signer.error(
                    f"APK integrity check failed. {algorithm.digest.name} digest mismatch. "
                    f"Expected: <{expected.hex()}>, actual: <{computed.hex()}>"
                )
    if result.scheme != "v2":
        first_min = 0
        last_max = 0
        last_lineage = 0
        lineages: list[list[_LineageNode]] = []
        for signer in sorted(result.signers, key=lambda s: s.max_sdk):
            if first_min == 0:
                first_min = signer.min_sdk
            elif signer.min_sdk != last_max + 1 and not (
                signer.min_sdk == last_max and signer.targets_dev_release
            ):
                result.error(
                    "APK Signature Scheme v3 signers supported min/max SDK versions are not "
                    "continuous."
                )
                break
            last_max = signer.max_sdk
            if signer.lineage is not None:
                if len(signer.lineage) < last_lineage:
                    result.error(
                        "SigningCertificateLineages targeting different platform versions using "
                        "APK Signature Scheme v3 are not all a part of the same overall lineage."
                    )
                    break
                last_lineage = len(signer.lineage)
                lineages.append(signer.lineage)
        needed_max = rotation_min_sdk - 1 if rotation_min_sdk is not None else max_sdk
        if first_min > min_sdk or last_max < needed_max:
            result.error(
                "APK Signature Scheme v3 signers supported min/max SDK versions do not cover "
                f"the entire desired range.  Found min:  {first_min} max {last_max}"
            )
        if lineages:
            longest = max(lineages, key=len)
            if all(_lineage_prefix(lineage, longest) for lineage in lineages):
                result.lineage = longest
            else:
                result.error(
                    "SigningCertificateLineages targeting different platform versions using "
                    "APK Signature Scheme v3 are not all a part of the same overall lineage."
                )
    result.verified = not result.has_errors()


# --- AndroidManifest.xml (binary XML) ---------------------------------------------------------

_TARGET_SANDBOX_VERSION_ATTR = 0x0101054C
_TARGET_SDK_VERSION_ATTR = 0x01010270
_MIN_SDK_VERSION_ATTR = 0x0101020C


@dataclass(frozen=True)
class _ManifestFacts:
    target_sandbox_version: int = 1
    target_sdk: int | None = None
    min_sdk: int | None = None


def _axml_string(data: bytes, pool: int, index: int) -> str | None:
    (_t, header_size, _size) = struct.unpack_from("<HHI", data, pool)
    count, _styles, flags, strings_start, _ = struct.unpack_from("<IIIII", data, pool + 8)
    if index < 0 or index >= count:
        return None
    (offset,) = struct.unpack_from("<I", data, pool + header_size + 4 * index)
    pos = pool + strings_start + offset
    if flags & 0x100:  # UTF-8
        n = data[pos]
        pos += 2 if n & 0x80 else 1
        length = data[pos]
        if length & 0x80:
            length = ((length & 0x7F) << 8) | data[pos + 1]
            pos += 2
        else:
            pos += 1
        return data[pos : pos + length].decode("utf-8", "replace")
    (length,) = struct.unpack_from("<H", data, pos)
    pos += 2
    if length & 0x8000:
        (low,) = struct.unpack_from("<H", data, pos)
        length = ((length & 0x7FFF) << 16) | low
        pos += 2
    return data[pos : pos + 2 * length].decode("utf-16-le", "replace")


def _sdk_value(data: bytes, pool: int, raw: int, vtype: int, value: int) -> int | None:
    if vtype in (0x10, 0x11):
        return value - (1 << 32) if value & 0x80000000 else value
    if vtype == 0x03:
        text = _axml_string(data, pool, value) if pool >= 0 else None
        if text is None:
            return None
        try:
            return int(text)
        except ValueError:
            return 10000  # a development codename: Build.VERSION_CODES.CUR_DEVELOPMENT
    return None


def _manifest_facts(data: bytes) -> _ManifestFacts:
    """targetSandboxVersion, targetSdkVersion and minSdkVersion from binary XML.

    Raises ``ValueError``/``struct.error``/``IndexError`` on malformed data (callers catch).
    """
    (chunk_type, header_size, size) = struct.unpack_from("<HHI", data, 0)
    if chunk_type != 0x0003:
        raise ValueError("not a binary XML resource")
    end = min(size, len(data))
    pos = header_size
    pool = -1
    resource_ids: list[int] = []
    depth = 0
    sandbox = 1
    target: int | None = None
    minimum: int | None = None
    while pos + 8 <= end:
        (ctype, chead, csize) = struct.unpack_from("<HHI", data, pos)
        if csize < 8 or pos + csize > end:
            raise ValueError("malformed chunk")
        if ctype == 0x0001 and pool < 0:
            pool = pos
        elif ctype == 0x0180:
            count = (csize - chead) // 4
            resource_ids = list(struct.unpack_from(f"<{count}I", data, pos + chead))
        elif ctype == 0x0102:
            depth += 1
            ext = pos + chead
            (_ns, name_idx, attr_start, attr_size, attr_count) = struct.unpack_from(
                "<IIHHH", data, ext
            )
            name = _axml_string(data, pool, name_idx) if pool >= 0 else None
            wanted = (depth == 1 and name == "manifest") or (depth == 2 and name == "uses-sdk")
            if wanted:
                for i in range(attr_count):
                    apos = ext + attr_start + i * attr_size
                    (_ans, aname, raw, _vsize, _res0, vtype, value) = struct.unpack_from(
                        "<IIIHBBI", data, apos
                    )
                    res_id = resource_ids[aname] if aname < len(resource_ids) else 0
                    if depth == 1 and res_id == _TARGET_SANDBOX_VERSION_ATTR:
                        parsed = _sdk_value(data, pool, raw, vtype, value)
                        sandbox = parsed if parsed is not None else 1
                    elif depth == 2 and res_id == _TARGET_SDK_VERSION_ATTR and target is None:
                        target = _sdk_value(data, pool, raw, vtype, value)
                    elif depth == 2 and res_id == _MIN_SDK_VERSION_ATTR and minimum is None:
                        minimum = _sdk_value(data, pool, raw, vtype, value)
        elif ctype == 0x0103:
            depth -= 1
        pos += csize
    return _ManifestFacts(target_sandbox_version=sandbox, target_sdk=target, min_sdk=minimum)


# --- orchestration ----------------------------------------------------------------------------


def _supported_scheme_names(max_sdk: int) -> dict[int, str]:
    if max_sdk >= SDK_P:
        return dict(_SCHEME_NAMES)
    if max_sdk >= SDK_N:
        return {SCHEME_V2: _SCHEME_NAMES[SCHEME_V2]}
    return {}


@dataclass
class _Outcome:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    present: dict[str, bool] = field(
        default_factory=lambda: {"v1": False, "v2": False, "v3": False, "v31": False}
    )
    schemes: dict[str, _SchemeResult] = field(default_factory=dict)
    v1: V1Result | None = None


def _status(outcome: _Outcome, scheme: str, verified: bool) -> SchemeStatus:
    return SchemeStatus(present=outcome.present[scheme], verified=verified)


def _v3_signers(outcome: _Outcome) -> tuple[V3Signer, ...]:
    out: list[V3Signer] = []
    for scheme in ("v31", "v3"):
        result = outcome.schemes.get(scheme)
        if result is None:
            continue
        for signer in result.signers:
            if not signer.certs:
                continue
            out.append(
                V3Signer(
                    scheme=scheme,
                    min_sdk=signer.min_sdk,
                    max_sdk=signer.max_sdk,
                    certificate=signer.certs[0].info,
                    lineage=tuple(node.cert.info for node in signer.lineage or ()),
                )
            )
    return tuple(out)


def _finish(
    outcome: _Outcome,
    *,
    min_sdk: int,
    max_sdk: int,
    verified: bool,
    signers: Iterable[CertificateInfo] = (),
) -> ApkVerification:
    v1 = outcome.v1
    schemes = outcome.schemes
    lineage: tuple[CertificateInfo, ...] = ()
    for scheme in ("v3", "v31"):
        result = schemes.get(scheme)
        if result is not None and result.lineage:
            lineage = tuple(node.cert.info for node in result.lineage)
            break

    def ok(scheme: str) -> bool:
        result = schemes.get(scheme)
        return verified and result is not None and result.verified

    return ApkVerification(
        verified=verified,
        min_sdk=min_sdk,
        max_sdk=max_sdk,
        v1=_status(outcome, "v1", verified and v1 is not None and v1.verified),
        v2=_status(outcome, "v2", ok("v2")),
        v3=_status(outcome, "v3", ok("v3")),
        v31=_status(outcome, "v31", ok("v31")),
        signers=tuple(signers) if verified else (),
        v3_signers=_v3_signers(outcome),
        lineage=lineage,
        errors=tuple(_messages(outcome, errors=True)),
        warnings=tuple(_messages(outcome, errors=False)),
    )


def _messages(outcome: _Outcome, *, errors: bool) -> list[str]:
    """Global messages, then JAR, v2, v3, v3.1 signers' (apksigner's printing order)."""
    out = list(outcome.errors if errors else outcome.warnings)
    if outcome.v1 is not None:
        out.extend(outcome.v1.errors if errors else outcome.v1.warnings)
    for scheme in ("v2", "v3", "v31"):
        result = outcome.schemes.get(scheme)
        if result is not None:
            out.extend(result.all_errors() if errors else result.all_warnings())
    return out


def _merge(outcome: _Outcome, result: _SchemeResult) -> None:
    outcome.schemes[result.scheme] = result


def _android_manifest(
    fh: BinaryIO, sections: ZipSections, entries: Sequence[CentralDirectoryEntry]
) -> bytes:
    for entry in entries:
        if entry.name == "AndroidManifest.xml":
            try:
                return read_uncompressed(
                    fh, entry, sections.cd_offset, limit=MAX_ANDROID_MANIFEST_SIZE
                )
            except MalformedZip as exc:
                raise MalformedZip(f"Failed to read AndroidManifest.xml: {exc.message}") from exc
    raise MalformedZip("Missing AndroidManifest.xml")


def _verify_open(
    fh: BinaryIO, sections: ZipSections, *, min_sdk: int, max_sdk: int
) -> ApkVerification:
    outcome = _Outcome()

    def fail(message: str | None = None) -> ApkVerification:
        if message:
            outcome.errors.append(message)
        return _finish(outcome, min_sdk=min_sdk, max_sdk=max_sdk, verified=False)

    entries = [e for e in read_central_directory(fh, sections)]
    files = [e for e in entries if not e.name.endswith("/")]
    supported = _supported_scheme_names(max_sdk)
    found: set[int] = set()

    # -- APK Signing Block: v3.1, v3, v2 ------------------------------------------------------
    probe = probe_signing_block(fh, sections)
    block: SigningBlock | None = probe.block
    values: dict[str, bytes] = {}
    if block is not None:
        for scheme, block_id in (("v31", V31_BLOCK_ID), ("v3", V3_BLOCK_ID), ("v2", V2_BLOCK_ID)):
            value = block.find(block_id)
            if value is not None:
                values[scheme] = value
                outcome.present[scheme] = True
        if block.malformed:
            outcome.warnings.append(f"APK Signing Block: {block.malformed}")

    parsed: list[_SchemeResult] = []
    rotation_min: int | None = None
    if max_sdk >= SDK_N:
        order: list[str] = []
        if max_sdk >= SDK_T and "v31" in values:
            order.append("v31")
        if max_sdk >= SDK_P and "v3" in values:
            order.append("v3")
        if "v31" in order and "v3" not in order:
            return fail("The APK contains a v3.1 signing block without a v3.0 base block")
        v3_found = bool(order)
        if (min_sdk < SDK_P or not v3_found) and "v2" in values:
            order.append("v2")
        # Parse every scheme to check, stopping at the first with parse errors (apksig stops
        # there too), then hash the file once for all content digests still needed.
        for scheme in order:
            if scheme == "v31":
                scheme_min = max(min_sdk, SDK_T)
            elif scheme == "v3":
                scheme_min = max(min_sdk, SDK_P)
            else:
                scheme_min = max(min_sdk, SDK_N)
            scheme_found = set(found)
            if scheme == "v2":
                scheme_found |= {SCHEME_V3} if "v3" in order else set()
                scheme_found |= {SCHEME_V31} if "v31" in order else set()
            result = _parse_scheme(
                values[scheme],
                scheme,
                min_sdk=scheme_min,
                max_sdk=max_sdk,
                supported_schemes=supported,
                found_schemes=scheme_found,
                rotation_min_sdk=rotation_min if scheme == "v3" else None,
            )
            parsed.append(result)
            if result.has_errors():
                break
            if scheme == "v31":
                rotation_min = min((s.min_sdk for s in result.signers), default=0) or None
        needed: set[ContentDigestAlgorithm] = set()
        for result in parsed:
            if not result.has_errors():
                needed |= result.needed
        actual = (
            compute_content_digests(fh, sections, block.offset, needed)
            if needed and block is not None
            else {}
        )
        for result in parsed:
            if not result.has_errors():
                scheme_min = {"v31": max(min_sdk, SDK_T), "v3": max(min_sdk, SDK_P)}.get(
                    result.scheme, max(min_sdk, SDK_N)
                )
                _finish_scheme(
                    result,
                    actual,
                    min_sdk=scheme_min,
                    max_sdk=max_sdk,
                    rotation_min_sdk=rotation_min if result.scheme == "v3" else None,
                )
            _merge(outcome, result)
            if result.has_errors():
                return fail()
            found.add({"v31": SCHEME_V31, "v3": SCHEME_V3, "v2": SCHEME_V2}[result.scheme])

    # -- AndroidManifest.xml: targetSandboxVersion and targetSdkVersion -----------------------
    facts = _ManifestFacts()
    manifest: bytes | None = None
    if max_sdk >= SDK_O:
        try:
            manifest = _android_manifest(fh, sections, files)
        except MalformedZip as exc:
            return fail(exc.message)
    else:
        try:
            manifest = _android_manifest(fh, sections, files)
        except MalformedZip:
            manifest = None
    if manifest is not None:
        try:
            facts = _manifest_facts(manifest)
        except (ValueError, struct.error, IndexError):
            outcome.warnings.append("AndroidManifest.xml is not valid binary XML")
    if max_sdk >= SDK_O and facts.target_sandbox_version > 1 and not found:
        outcome.errors.append(
            "Missing APK Signature Scheme v2 signature required for target sandbox version "
            f"{facts.target_sandbox_version}"
        )

    # -- JAR signature -------------------------------------------------------------------------
    if min_sdk < SDK_N or not found:
        outcome.v1 = verify_v1(
            fh,
            sections.cd_offset,
            entries,
            min_sdk=min_sdk,
            max_sdk=max_sdk,
            supported_schemes=supported,
            found_schemes=found,
        )
        outcome.present["v1"] = outcome.v1.present
        if outcome.v1.errors:
            return fail()
    else:
        outcome.present["v1"] = jar_signature_present(files)
    if outcome.errors:
        return fail()

    v1_certs = list(outcome.v1.signers) if outcome.v1 is not None and outcome.v1.verified else []
    v2 = outcome.schemes.get("v2")
    v3 = outcome.schemes.get("v3")
    v31 = outcome.schemes.get("v31")
    v2_certs = [s.certs[0] for s in v2.signers] if v2 is not None and v2.verified else []

    # -- cross-checks --------------------------------------------------------------------------
    if v1_certs and v2_certs:
        v1_ders = [c.der for c in v1_certs]
        v2_ders = [c.der for c in v2_certs]
        for cert in v1_certs:
            if cert.der not in v2_ders:
                outcome.errors.append(
                    f"JAR signer {cert.info.dn}: No APK Signature Scheme v2 signature from this "
                    "signer"
                )
                break
        for index, cert in enumerate(v2_certs):
            if cert.der not in v1_ders:
                outcome.errors.append(
                    f"APK Signature Scheme v2 signer #{index + 1}: No JAR signature from this "
                    "signer"
                )
                break
    if v3 is not None and v3.verified and (v1_certs or v2_certs):
        old_signers = v1_certs or v2_certs
        if len(old_signers) != 1:
            outcome.errors.append(
                "Multiple signatures found for pre-v3 signing with an APK  Signature Scheme v3 "
                "signer.  Only one allowed."
            )
        old = old_signers[0]
        if v3.lineage is None:
            if len(v3.signers) != 1:
                outcome.errors.append(
                    "Multiple APK Signature Scheme v3 signatures found for a single  platform "
                    "version."
                )
            if old.der != v3.signers[0].certs[0].der:
                outcome.errors.append(
                    "v3 signer differs from v1/v2 signer without proper signing certificate "
                    "lineage."
                )
        elif v3.lineage[0].cert.der != old.der:
            outcome.errors.append(
                "v3 signer differs from v1/v2 signer without proper signing certificate lineage."
            )

    # -- minimum signature scheme for the target SDK ------------------------------------------
    target = facts.target_sdk
    if target is None:
        target = facts.min_sdk if facts.min_sdk is not None else 1
    if target >= SDK_R and max_sdk >= target and not (v2_certs or (v3 and v3.verified)):
        outcome.errors.append(
            f"Target SDK version {target} requires a minimum of signature scheme v2; the APK is "
            "not signed with this or a later signature scheme"
        )
    if outcome.errors:
        return fail()

    if v31 is not None and v31.verified:
        signers: list[CertificateInfo] = [v31.signers[-1].certs[0].info]
    elif v3 is not None and v3.verified:
        signers = [v3.signers[-1].certs[0].info]
    elif v2_certs:
        signers = [c.info for c in v2_certs]
    elif v1_certs:
        signers = [c.info for c in v1_certs]
    else:
        return fail("APK verified, but has not verified using any of v1, v2 or v3 schemes")
    return _finish(outcome, min_sdk=min_sdk, max_sdk=max_sdk, verified=True, signers=signers)


def verify_apk(
    path: str | os.PathLike[str],
    *,
    min_sdk: int | None = None,
    max_sdk: int | None = None,
) -> ApkVerification:
    """Verify the signatures of the APK at ``path`` for Android versions ``[min_sdk, max_sdk]``.

    ``min_sdk`` should be the APK's ``minSdkVersion`` (what apksigner reads from the manifest);
    ``None`` means 1. ``max_sdk`` defaults to "any future version". ``verified`` is true when
    apksigner would print "Verifies" for the same range.

    Raises :class:`~appyard.signing.zipmeta.NotAZip` (an ``InvalidArtifact``) when the file is
    not a zip archive at all; every other defect is reported in the result.
    """
    lo = 1 if min_sdk is None else min_sdk
    hi = ANY_SDK if max_sdk is None else max_sdk

    def failed(message: str) -> ApkVerification:
        outcome = _Outcome()
        outcome.errors.append(message)
        return _finish(outcome, min_sdk=lo, max_sdk=hi, verified=False)

    with Path(path).open("rb") as fh:
        try:
            sections = find_zip_sections_or_raise(fh)
        except NotAZip:
            raise
        except MalformedZip as exc:
            return failed(f"Malformed APK: {exc.message}")
        if lo < 0:
            return failed(f"minSdkVersion must not be negative: {lo}")
        if lo > hi:
            return failed(f"minSdkVersion ({lo}) > maxSdkVersion ({hi})")
        try:
            return _verify_open(fh, sections, min_sdk=lo, max_sdk=hi)
        except MalformedZip as exc:
            return failed(f"Malformed APK: {exc.message}")
        except (struct.error, IndexError, ValueError, OverflowError, TypeError) as exc:
            # Defence in depth: a parser bug must not turn hostile input into a 500.
            return failed(f"Malformed APK: {type(exc).__name__}: {exc}")


def find_zip_sections_or_raise(fh: BinaryIO) -> ZipSections:
    """:func:`find_zip_sections`; every defect is a :class:`NotAZip` or :class:`MalformedZip`."""
    try:
        return find_zip_sections(fh)
    except (NotAZip, MalformedZip):
        raise
    except (struct.error, IndexError, ValueError) as exc:  # pragma: no cover - defensive
        raise MalformedZip(f"The file is not a readable zip archive: {exc}") from exc


def signature_present(path: str | os.PathLike[str]) -> bool:
    """Whether the APK carries any signature: an APK Signing Block with a v2, v3 or v3.1
    block, or a JAR signature (a ``META-INF`` signature block and its ``.SF``). Reads the
    central directory and the block's header only, verifies nothing (for the upload-time
    fast path; :func:`verify_apk` is the check). ``MalformedZip`` / ``NotAZip`` as usual."""
    with Path(path).open("rb") as fh:
        sections = find_zip_sections_or_raise(fh)
        block = probe_signing_block(fh, sections).block
        if block is not None and any(
            block.find(block_id) is not None
            for block_id in (V2_BLOCK_ID, V3_BLOCK_ID, V31_BLOCK_ID)
        ):
            return True
        return jar_signature_present(read_central_directory(fh, sections))


def verify_jar(path: str | os.PathLike[str]) -> JarVerification:
    """Verify the JAR signature of any zip (an AAB, a JAR) with Android's v1 rules.

    Entries outside ``META-INF/`` must all be signed by the same signers; algorithms are
    checked as for Android 7.0+ (``min_sdk`` 24). Raises
    :class:`~appyard.signing.zipmeta.NotAZip` when the file is not a zip.
    """
    with Path(path).open("rb") as fh:
        try:
            sections = find_zip_sections_or_raise(fh)
            entries = read_central_directory(fh, sections)
            result = verify_v1(
                fh,
                sections.cd_offset,
                entries,
                min_sdk=SDK_N,
                max_sdk=ANY_SDK,
                supported_schemes={},
                found_schemes=set(),
                apk=False,
            )
        except MalformedZip as exc:
            return JarVerification(verified=False, present=False, signers=(), errors=(exc.message,))
        except (struct.error, IndexError, ValueError, OverflowError, TypeError) as exc:
            return JarVerification(
                verified=False,
                present=False,
                signers=(),
                errors=(f"Malformed archive: {type(exc).__name__}: {exc}",),
            )
    return JarVerification(
        verified=result.verified,
        present=result.present,
        signers=tuple(c.info for c in result.signers),
        errors=result.errors,
        warnings=result.warnings,
    )
