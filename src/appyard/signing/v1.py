"""JAR signature (APK Signature Scheme v1) verification, following Android's rules.

Android's JAR verification differs from ``jarsigner``'s, and this module follows Android (as
apksig's ``V1SchemeVerifier`` encodes it) for an SDK range ``[min_sdk, max_sdk]``:

* signers are ``META-INF/<name>.RSA|.DSA|.EC`` blocks with a matching ``META-INF/<name>.SF``;
  a block without its ``.SF`` is ignored with a warning, so a decoy ``.RSA`` never counts;
* each block is PKCS#7 SignedData whose SignerInfo must verify over the ``.SF`` (or over its
  signed attributes, whose message digest must match the ``.SF``); the digest and signature
  algorithms must be supported on every API level of the range;
* the ``.SF`` must carry the digest of the whole ``MANIFEST.MF`` or of each of its sections,
  and, when ``max_sdk >= 24``, honour ``X-Android-APK-Signed`` (a scheme listed there that is
  known to the platform but absent from the APK means the v2/v3 signature was stripped);
* every entry outside ``META-INF/`` must have a digest in ``MANIFEST.MF`` matching its
  uncompressed bytes (streamed), be listed in some ``.SF``, and all must share one set of
  signers; files in ``META-INF/`` not part of the signature get a warning.

Digest attribute selection (``Digest-Algorithms`` before API 18, strongest of SHA-512/384/256/1
from 18) and the signature algorithm table are apksig's. Memory is bounded: the manifest,
``.SF`` and block files are read whole up to the limits below, entries are streamed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import BinaryIO

from asn1crypto import cms

from appyard.signing.certs import (
    CertificateError,
    ParsedCertificate,
    SignatureKind,
    parse_certificate,
    verify_signature,
)
from appyard.signing.zipmeta import (
    CentralDirectoryEntry,
    MalformedZip,
    iter_uncompressed_data,
    read_uncompressed,
)

__all__ = [
    "MANIFEST_NAME",
    "MAX_MANIFEST_SIZE",
    "MAX_SIGNATURE_BLOCK_SIZE",
    "MAX_SIGNATURE_FILE_SIZE",
    "ManifestSection",
    "V1Result",
    "jar_signature_present",
    "parse_manifest",
    "verify_v1",
]

MANIFEST_NAME = "META-INF/MANIFEST.MF"
MAX_MANIFEST_SIZE = 64 * 1024 * 1024
MAX_SIGNATURE_FILE_SIZE = 64 * 1024 * 1024
MAX_SIGNATURE_BLOCK_SIZE = 4 * 1024 * 1024
MAX_JAR_SIGNERS = 10
ANDROID_APK_SIGNED_ATTR = "X-Android-APK-Signed"

JELLY_BEAN_MR2 = 18
KITKAT = 19
N = 24

_ANY = 0x7FFFFFFF

# --- MANIFEST.MF / .SF parsing ---------------------------------------------------------------


@dataclass(frozen=True)
class ManifestSection:
    """One section of a manifest: its byte range and ``(name, value)`` attributes in order."""

    start: int
    size: int
    attributes: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        """The first attribute called ``name`` (case-insensitive), or ``None``."""
        lowered = name.lower()
        for key, value in self.attributes:
            if key.lower() == lowered:
                return value
        return None

    @property
    def name(self) -> str | None:
        return self.get("Name")


class _ManifestReader:
    """apksig's ``ManifestParser``: lines end in CRLF, LF or CR; continuation lines start
    with one space; sections are separated by empty lines."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0
        self._end_of_section = False
        self._pending: bytes | None = None

    def _read_line(self) -> bytes | None:
        data, start = self._data, self._offset
        if start >= len(data):
            return None
        end = start
        while end < len(data) and data[end] not in (0x0A, 0x0D):
            end += 1
        line = data[start:end]
        if end < len(data):
            if data[end] == 0x0D and end + 1 < len(data) and data[end + 1] == 0x0A:
                end += 2
            else:
                end += 1
        self._offset = end
        return line

    def _read_attribute(self) -> bytes | None:
        """The next logical line (continuations joined), ``b""`` at a section end."""
        if self._pending is None:
            line = self._read_line()
            if line is None:
                return None
        else:
            line = self._pending
            self._pending = None
        if not line:
            return b""
        parts = [line]
        while True:
            offset = self._offset
            following = self._read_line()
            if following is None:
                break
            if following.startswith(b" "):
                parts.append(following[1:])
                continue
            # Not a continuation: give it back.
            self._offset = offset
            break
        return b"".join(parts)

    def read_section(self) -> ManifestSection | None:
        while True:
            start = self._offset
            attr = self._read_attribute()
            if attr is None:
                return None
            if attr:
                break
        attributes = [_parse_attribute(attr)]
        while True:
            attr = self._read_attribute()
            if not attr:
                break
            attributes.append(_parse_attribute(attr))
        return ManifestSection(start=start, size=self._offset - start, attributes=tuple(attributes))


def _parse_attribute(line: bytes) -> tuple[str, str]:
    text = line.decode("utf-8", "replace")
    name, sep, value = text.partition(": ")
    return (name, value) if sep else (text, "")


def parse_manifest(data: bytes) -> tuple[ManifestSection, list[ManifestSection]]:
    """The main section and the individual sections of a ``MANIFEST.MF`` or ``.SF``."""
    reader = _ManifestReader(data)
    main = reader.read_section() or ManifestSection(0, 0, ())
    sections: list[ManifestSection] = []
    while (section := reader.read_section()) is not None:
        sections.append(section)
    return main, sections


# --- digests ----------------------------------------------------------------------------------

_CANONICAL_DIGEST = {
    "MD5": "MD5",
    "SHA": "SHA-1",
    "SHA1": "SHA-1",
    "SHA-1": "SHA-1",
    "SHA-256": "SHA-256",
    "SHA-384": "SHA-384",
    "SHA-512": "SHA-512",
}
_DIGEST_MIN_SDK = {"MD5": 0, "SHA-1": 0, "SHA-256": 0, "SHA-384": 9, "SHA-512": 9}
_JB_MR2_DIGESTS = ("SHA-512", "SHA-384", "SHA-256", "SHA-1")
_HASHLIB = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-224": "sha224",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return b""


def _attr_name(algorithm: str, suffix: str) -> str:
    return ("SHA1" if algorithm == "SHA-1" else algorithm) + suffix


def _digests_to_verify(
    section: ManifestSection, suffix: str, min_sdk: int, max_sdk: int
) -> list[tuple[str, bytes]]:
    """apksig's ``getDigestsToVerify``: ``(algorithm, expected digest)`` pairs to check."""
    result: list[tuple[str, bytes]] = []
    if min_sdk < JELLY_BEAN_MR2:
        algorithms = section.get("Digest-Algorithms") or "SHA SHA1"
        for token in algorithms.split():
            value = section.get(token + suffix)
            if value is None:
                continue
            canonical = _CANONICAL_DIGEST.get(token.upper())
            if canonical is None or _DIGEST_MIN_SDK[canonical] > min_sdk:
                continue
            result.append((canonical, _b64(value)))
            break
        if not result:
            return result
    if max_sdk >= JELLY_BEAN_MR2:
        for algorithm in _JB_MR2_DIGESTS:
            value = section.get(_attr_name(algorithm, suffix))
            if value is None:
                continue
            digest = _b64(value)
            if not any(alg == algorithm and d == digest for alg, d in result):
                result.append((algorithm, digest))
            break
    return result


def _digest(algorithm: str, data: bytes) -> bytes:
    return hashlib.new(_HASHLIB[algorithm], data, usedforsecurity=False).digest()


def _b64s(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- signature algorithms ---------------------------------------------------------------------

_D_MD5 = "1.2.840.113549.2.5"
_D_SHA1 = "1.3.14.3.2.26"
_D_SHA224 = "2.16.840.1.101.3.4.2.4"
_D_SHA256 = "2.16.840.1.101.3.4.2.1"
_D_SHA384 = "2.16.840.1.101.3.4.2.2"
_D_SHA512 = "2.16.840.1.101.3.4.2.3"
_DIGEST_OIDS = {
    _D_MD5: "MD5",
    _D_SHA1: "SHA-1",
    _D_SHA224: "SHA-224",
    _D_SHA256: "SHA-256",
    _D_SHA384: "SHA-384",
    _D_SHA512: "SHA-512",
}

_S_RSA = "1.2.840.113549.1.1.1"
_S_DSA = "1.2.840.10040.4.1"
_S_EC = "1.2.840.10045.2.1"
# signature algorithm OID -> (kind, hash) for OIDs that name their hash
_SIG_WITH_HASH = {
    "1.2.840.113549.1.1.4": (SignatureKind.RSA_PKCS1, "MD5"),
    "1.2.840.113549.1.1.5": (SignatureKind.RSA_PKCS1, "SHA-1"),
    "1.2.840.113549.1.1.14": (SignatureKind.RSA_PKCS1, "SHA-224"),
    "1.2.840.113549.1.1.11": (SignatureKind.RSA_PKCS1, "SHA-256"),
    "1.2.840.113549.1.1.12": (SignatureKind.RSA_PKCS1, "SHA-384"),
    "1.2.840.113549.1.1.13": (SignatureKind.RSA_PKCS1, "SHA-512"),
    "1.2.840.10040.4.3": (SignatureKind.DSA, "SHA-1"),
    "2.16.840.1.101.3.4.3.1": (SignatureKind.DSA, "SHA-224"),
    "2.16.840.1.101.3.4.3.2": (SignatureKind.DSA, "SHA-256"),
    "1.2.840.10045.4.1": (SignatureKind.ECDSA, "SHA-1"),
    "1.2.840.10045.4.3.1": (SignatureKind.ECDSA, "SHA-224"),
    "1.2.840.10045.4.3.2": (SignatureKind.ECDSA, "SHA-256"),
    "1.2.840.10045.4.3.3": (SignatureKind.ECDSA, "SHA-384"),
    "1.2.840.10045.4.3.4": (SignatureKind.ECDSA, "SHA-512"),
}
_SIG_KIND = {_S_RSA: SignatureKind.RSA_PKCS1, _S_DSA: SignatureKind.DSA, _S_EC: SignatureKind.ECDSA}
_SIG_NAMES = {
    _S_RSA: "RSA",
    "1.2.840.113549.1.1.4": "MD5 with RSA",
    "1.2.840.113549.1.1.5": "SHA-1 with RSA",
    "1.2.840.113549.1.1.14": "SHA-224 with RSA",
    "1.2.840.113549.1.1.11": "SHA-256 with RSA",
    "1.2.840.113549.1.1.12": "SHA-384 with RSA",
    "1.2.840.113549.1.1.13": "SHA-512 with RSA",
    _S_DSA: "DSA",
    "1.2.840.10040.4.3": "SHA-1 with DSA",
    "2.16.840.1.101.3.4.3.1": "SHA-224 with DSA",
    "2.16.840.1.101.3.4.3.2": "SHA-256 with DSA",
    _S_EC: "ECDSA",
    "1.2.840.10045.4.1": "SHA-1 with ECDSA",
    "1.2.840.10045.4.3.1": "SHA-224 with ECDSA",
    "1.2.840.10045.4.3.2": "SHA-256 with ECDSA",
    "1.2.840.10045.4.3.3": "SHA-384 with ECDSA",
    "1.2.840.10045.4.3.4": "SHA-512 with ECDSA",
}

_Ranges = tuple[tuple[int, int], ...]
_FROM0: _Ranges = ((0, _ANY),)
_OLD_AND_21: _Ranges = ((0, 8), (21, _ANY))
_L_M: _Ranges = ((21, 23),)


def _build_supported() -> dict[tuple[str, str], _Ranges]:
    """apksig's ``SUPPORTED_SIG_ALG_OIDS``: API levels where a digest+signature OID pair works."""
    rsa_sigs = ["1.2.840.113549.1.1." + s for s in ("4", "5", "14", "11", "12", "13")]
    md5r, sha1r, sha224r, sha256r, sha384r, sha512r = rsa_sigs
    dsa_sigs = ["1.2.840.10040.4.3", "2.16.840.1.101.3.4.3.1", "2.16.840.1.101.3.4.3.2"]
    sha1d, sha224d, sha256d = dsa_sigs
    ec_sigs = ["1.2.840.10045.4.1"] + ["1.2.840.10045.4.3." + s for s in ("1", "2", "3", "4")]
    sha1e, sha224e, sha256e, sha384e, sha512e = ec_sigs
    table: dict[tuple[str, str], _Ranges] = {}
    digests = [_D_MD5, _D_SHA1, _D_SHA224, _D_SHA256, _D_SHA384, _D_SHA512]
    # Cross combinations default to 21-23 (Lollipop/Marshmallow accepted any mix).
    for d in digests:
        for s in rsa_sigs:
            table[(d, s)] = _L_M
        for s in dsa_sigs:
            table[(d, s)] = _L_M
        for s in ec_sigs:
            table[(d, s)] = _L_M
    table.update(
        {
            (_D_MD5, _S_RSA): _FROM0,
            (_D_MD5, md5r): _OLD_AND_21,
            (_D_SHA1, _S_RSA): _FROM0,
            (_D_SHA1, sha1r): _FROM0,
            (_D_SHA224, _S_RSA): _OLD_AND_21,
            (_D_SHA224, sha224r): _OLD_AND_21,
            (_D_SHA224, sha256r): ((21, 21),),
            (_D_SHA256, _S_RSA): ((0, 8), (18, _ANY)),
            (_D_SHA256, sha1r): ((21, 21),),
            (_D_SHA256, sha256r): ((0, 8), (18, _ANY)),
            (_D_SHA384, _S_RSA): ((18, _ANY),),
            (_D_SHA384, sha384r): ((21, _ANY),),
            (_D_SHA512, _S_RSA): ((18, _ANY),),
            (_D_SHA512, sha384r): ((21, 21),),
            (_D_SHA512, sha512r): ((21, _ANY),),
            (_D_SHA1, _S_DSA): _FROM0,
            (_D_SHA1, sha1d): ((9, _ANY),),
            (_D_SHA224, _S_DSA): ((22, _ANY),),
            (_D_SHA224, sha224d): ((21, _ANY),),
            (_D_SHA256, _S_DSA): ((22, _ANY),),
            (_D_SHA256, sha256d): ((21, _ANY),),
            (_D_SHA1, _S_EC): ((18, _ANY),),
            (_D_SHA224, _S_EC): ((21, _ANY),),
            (_D_SHA256, _S_EC): ((18, _ANY),),
            (_D_SHA384, _S_EC): ((18, _ANY),),
            (_D_SHA512, _S_EC): ((18, _ANY),),
            (_D_SHA1, sha1e): ((18, _ANY),),
            (_D_SHA224, sha224e): ((21, _ANY),),
            (_D_SHA256, sha256e): ((21, _ANY),),
            (_D_SHA384, sha384e): ((21, _ANY),),
            (_D_SHA512, sha512e): ((21, _ANY),),
        }
    )
    # Pairs apksig does not list at all (no DSA with SHA-384/512 naming their own hash).
    for d in digests:
        table.pop((d, "2.16.840.1.101.3.4.3.3"), None)
        table.pop((d, "2.16.840.1.101.3.4.3.4"), None)
    # MD5 digest with sha-224/256 rsa etc. are 21-23 per the default above; MD5 with DSA/EC
    # naming SHA-1/224/256 likewise; MD5/SHA-224.. with generic DSA/EC are absent.
    return table


_SUPPORTED = _build_supported()


def _unsupported_levels(ranges: _Ranges, min_sdk: int, max_sdk: int) -> list[tuple[int, int]]:
    """Parts of ``[min_sdk, max_sdk]`` not covered by ``ranges``."""
    missing: list[tuple[int, int]] = []
    cursor = min_sdk
    for lo, hi in sorted(ranges):
        if hi < cursor:
            continue
        if lo > max_sdk:
            break
        if lo > cursor:
            missing.append((cursor, lo - 1))
        cursor = max(cursor, hi + 1)
        if cursor > max_sdk:
            break
    if cursor <= max_sdk:
        missing.append((cursor, max_sdk))
    return missing


def _levels_text(levels: list[tuple[int, int]]) -> str:
    parts = []
    for lo, hi in levels:
        if lo == hi:
            parts.append(str(lo))
        elif hi == _ANY:
            parts.append(f"{lo}+")
        else:
            parts.append(f"{lo}-{hi}")
    return ", ".join(parts)


# --- results ----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Signer:
    name: str
    block: CentralDirectoryEntry
    sf: CentralDirectoryEntry
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    certificate: ParsedCertificate | None = None
    sf_bytes: bytes = b""
    sf_entry_names: frozenset[str] = frozenset()
    ignored: bool = False

    def error(self, message: str) -> None:
        self.errors.append(f"JAR signer {self.name}: {message}")

    def warning(self, message: str) -> None:
        self.warnings.append(f"JAR signer {self.name}: {message}")


@dataclass(frozen=True)
class V1Result:
    """JAR signature verification outcome."""

    present: bool
    """A signature block (``.RSA``/``.DSA``/``.EC``) with its ``.SF`` is in ``META-INF/``."""
    verified: bool
    signers: tuple[ParsedCertificate, ...]
    """Certificates of the signers Android uses (when verified), in central directory order."""
    errors: tuple[str, ...]
    warnings: tuple[str, ...]


@dataclass
class _State:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    signers: list[_Signer] = field(default_factory=list)

    def has_errors(self) -> bool:
        return bool(self.errors) or any(signer.errors for signer in self.signers)


class _EntryError(Exception):
    """A zip entry could not be read (apksigner: ApkFormatException "Malformed ZIP entry")."""


# --- verification -----------------------------------------------------------------------------


def _read(fh: BinaryIO, entry: CentralDirectoryEntry, cd_offset: int, limit: int) -> bytes:
    try:
        return read_uncompressed(fh, entry, cd_offset, limit=limit)
    except MalformedZip as exc:
        raise _EntryError(f"Malformed ZIP entry: {entry.name}: {exc.message}") from exc


def _is_signature_block(name: str) -> bool:
    return name.endswith((".RSA", ".DSA", ".EC"))


def _find_certificate(
    certificates: Sequence[ParsedCertificate], signer_info: cms.SignerInfo
) -> ParsedCertificate | None:
    sid = signer_info["sid"]
    if sid.name != "issuer_and_serial_number":
        return None
    issuer = sid.chosen["issuer"]
    serial = sid.chosen["serial_number"].native
    for cert in certificates:
        tbs = cert.asn1["tbs_certificate"]
        if tbs["serial_number"].native == serial and (
            cert.issuer_der == issuer.dump() or tbs["issuer"] == issuer
        ):
            return cert
    return None


def _signed_attr_values(signed_attrs: cms.CMSAttributes, type_name: str) -> list[object]:
    values: list[object] = []
    for attribute in signed_attrs:
        if attribute["type"].native == type_name:
            values.extend(attribute["values"])
    return values


def _verify_signer_info(
    signer: _Signer,
    signed_data: cms.SignedData,
    certificates: Sequence[ParsedCertificate],
    signer_info: cms.SignerInfo,
    min_sdk: int,
    max_sdk: int,
) -> ParsedCertificate | None:
    """The signing certificate if ``signer_info`` verifies over the .SF, else ``None``.

    Raises ``ValueError`` with apksigner's message for errors that end the signer's checks.
    """
    digest_oid = signer_info["digest_algorithm"]["algorithm"].dotted
    sig_oid = signer_info["signature_algorithm"]["algorithm"].dotted
    ranges = _SUPPORTED.get((digest_oid, sig_oid), ())
    missing = _unsupported_levels(ranges, min_sdk, max_sdk)
    if missing:
        signer.error(
            f"JAR signature {signer.block.name} uses digest algorithm "
            f"{_DIGEST_OIDS.get(digest_oid, digest_oid)} and signature algorithm "
            f"{_SIG_NAMES.get(sig_oid, sig_oid)} which is not supported on API Level(s) "
            f"{_levels_text(missing)} for which this APK is being verified"
        )
        return None
    cert = _find_certificate(certificates, signer_info)
    if cert is None:
        raise ValueError("Signing certificate referenced in SignerInfo not found in SignedData")
    if cert.has_unsupported_critical_extension():
        raise ValueError("Signing certificate has unsupported critical extensions")
    if not cert.allows_digital_signature():
        raise ValueError(
            "Signing certificate not authorized for use in digital signatures: keyUsage "
            "extension missing digitalSignature and nonRepudiation"
        )
    if sig_oid in _SIG_WITH_HASH:
        kind, hash_name = _SIG_WITH_HASH[sig_oid]
    elif sig_oid in _SIG_KIND and digest_oid in _DIGEST_OIDS:
        kind, hash_name = _SIG_KIND[sig_oid], _DIGEST_OIDS[digest_oid]
    else:
        raise ValueError(
            f"Unsupported JCA Signature algorithm . Digest algorithm: {digest_oid}, "
            f"signature algorithm: {sig_oid}"
        )
    signed_attrs = signer_info["signed_attrs"]
    if isinstance(signed_attrs, cms.CMSAttributes) and signed_attrs.contents is not None:
        if min_sdk < KITKAT:
            raise ValueError(
                f"APKs with Signed Attributes broken on platforms with API Level < {KITKAT}"
            )
        if max_sdk >= N:
            content_types = _signed_attr_values(signed_attrs, "content_type")
            if len(content_types) != 1:
                raise ValueError("No Content Type in signed attributes")
            content_type = content_types[0]
            encap = signed_data["encap_content_info"]["content_type"]
            if getattr(content_type, "dotted", None) != encap.dotted:
                return None
        digests = _signed_attr_values(signed_attrs, "message_digest")
        if len(digests) != 1:
            raise ValueError("No content digest in signed attributes")
        if digest_oid not in _DIGEST_OIDS:
            raise ValueError(f"Unsupported digest algorithm: {digest_oid}")
        expected = getattr(digests[0], "native", None)
        if expected != _digest(_DIGEST_OIDS[digest_oid], signer.sf_bytes):
            return None
        encoded = signed_attrs.dump()
        data = b"\x31" + encoded[1:]
    else:
        data = signer.sf_bytes
    try:
        ok = verify_signature(
            cert.public_key, kind, hash_name, bytes(signer_info["signature"].native), data
        )
    except CertificateError as exc:
        raise ValueError(str(exc)) from exc
    return cert if ok else None


def _verify_block(signer: _Signer, block: bytes, min_sdk: int, max_sdk: int) -> None:
    """Check the signature block against the .SF; sets ``signer.certificate`` or an error."""
    block_name = signer.block.name
    try:
        content_info = cms.ContentInfo.load(block)
        if content_info["content_type"].dotted != "1.2.840.113549.1.7.2":
            raise ValueError(
                f"Unsupported ContentInfo.contentType: {content_info['content_type'].dotted}"
            )
        signed_data = content_info["content"]
        signer_infos = list(signed_data["signer_infos"])
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        signer.error(f"Failed to parse JAR signature {block_name}: {exc}")
        return
    if not signer_infos:
        signer.error(f"JAR signature {block_name} contains no signers")
        return
    to_try = signer_infos[:1] if min_sdk < N else signer_infos
    certificates: list[ParsedCertificate] | None = None
    verified: ParsedCertificate | None = None
    for signer_info in to_try:
        if certificates is None:
            certificates = []
            try:
                choices = signed_data["certificates"]
                for index, choice in enumerate(choices or []):
                    if choice.name != "certificate":
                        raise CertificateError(f"Failed to parse certificate #{index + 1}")
                    certificates.append(parse_certificate(choice.chosen.dump()))
            except (CertificateError, ValueError, TypeError, KeyError) as exc:
                signer.error(f"Failed to parse JAR signature {block_name}: {exc}")
                return
        try:
            cert = _verify_signer_info(
                signer, signed_data, certificates, signer_info, min_sdk, max_sdk
            )
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            signer.error(
                f"Failed to verify JAR signature {block_name} against {signer.sf.name}: {exc}"
            )
            return
        if signer.errors:
            return
        if cert is not None and verified is None:
            verified = cert
    if verified is None:
        signer.error(f"JAR signature {block_name} did not verify against {signer.sf.name}")
        return
    signer.certificate = verified


def _check_stripping(
    signer: _Signer,
    sf_main: ManifestSection,
    supported_schemes: Mapping[int, str],
    found_schemes: Set[int],
) -> None:
    listed = sf_main.get(ANDROID_APK_SIGNED_ATTR)
    if listed is None:
        if found_schemes:
            signer.warning(
                "APK is signed using APK Signature Scheme v2 but these signatures may be "
                f"stripped without being detected because {signer.sf.name} does not contain "
                "anti-stripping protections."
            )
        return
    if not supported_schemes:
        return
    expected: list[int] = []
    for token in listed.split(","):
        token = token.strip()
        if not token:
            continue
        try:
            scheme_id = int(token)
        except ValueError:
            continue
        if scheme_id in supported_schemes:
            if scheme_id not in expected:
                expected.append(scheme_id)
        else:
            signer.warning(
                f"JAR signature {signer.sf.name} references unknown APK signature scheme ID: "
                f"{scheme_id}"
            )
    for scheme_id in expected:
        if scheme_id not in found_schemes:
            signer.error(
                f"JAR signature {signer.sf.name} indicates the APK is signed using "
                f"{supported_schemes[scheme_id]} but no such signature was found. "
                "Signature stripped?"
            )


def _verify_sf_against_manifest(
    signer: _Signer,
    manifest: bytes,
    manifest_main: ManifestSection,
    manifest_sections: Mapping[str, ManifestSection],
    supported_schemes: Mapping[int, str],
    found_schemes: Set[int],
    min_sdk: int,
    max_sdk: int,
) -> None:
    sf_main, sf_sections = parse_manifest(signer.sf_bytes)
    if sf_main.get("Signature-Version") is None:
        signer.error(f"Malformed {signer.sf.name}: missing Signature-Version attribute")
        signer.ignored = True
        return
    if max_sdk >= N:
        _check_stripping(signer, sf_main, supported_schemes, found_schemes)
        if signer.errors:
            return
    created_by = sf_main.get("Created-By")
    signtool = created_by is not None and "signtool" in created_by
    # Whole-manifest digest.
    expected = _digests_to_verify(
        sf_main, "-Digest" if signtool else "-Digest-Manifest", min_sdk, max_sdk
    )
    manifest_verified = bool(expected)
    if not expected:
        signer.warning(
            f"{signer.sf.name} does not specify digest of META-INF/MANIFEST.MF. This slows "
            "down verification."
        )
    for algorithm, digest in expected:
        actual = _digest(algorithm, manifest)
        if actual != digest:
            signer.warning(
                f"{algorithm} digest of {MANIFEST_NAME} does not match the digest specified in "
                f"{signer.sf.name}. Expected: <{_b64s(digest)}>, actual: <{_b64s(actual)}>"
            )
            manifest_verified = False
    if not signtool:
        main_expected = _digests_to_verify(
            sf_main, "-Digest-Manifest-Main-Attributes", min_sdk, max_sdk
        )
        main_bytes = manifest[manifest_main.start : manifest_main.start + manifest_main.size]
        for algorithm, digest in main_expected:
            actual = _digest(algorithm, main_bytes)
            if actual != digest:
                signer.error(
                    f"{algorithm} digest of {MANIFEST_NAME} main section does not match the "
                    f"digest specified in {signer.sf.name}. Expected: <{_b64s(digest)}>, "
                    f"actual: <{_b64s(actual)}>"
                )
    if signer.errors:
        return
    names: set[str] = set()
    for number, sf_section in enumerate(sf_sections, start=1):
        entry_name = sf_section.name
        if entry_name is None:
            signer.error(
                f"Malformed {signer.sf.name}: invidual section #{number} does not have a name"
            )
            signer.ignored = True
            return
        if entry_name in names:
            signer.error(f"Duplicate section in {signer.sf.name}: {entry_name}")
            signer.ignored = True
            return
        names.add(entry_name)
        if manifest_verified:
            continue
        manifest_section = manifest_sections.get(entry_name)
        if manifest_section is None:
            signer.error(f"No digest for {entry_name} in {signer.sf.name}")
            signer.ignored = True
            continue
        section_expected = _digests_to_verify(sf_section, "-Digest", min_sdk, max_sdk)
        if not section_expected:
            signer.error(f"No digest for {entry_name} in {signer.sf.name}")
            continue
        start, size = manifest_section.start, manifest_section.size
        if signtool and size >= 2 and manifest[start + size - 2 : start + size] == b"\n\n":
            size -= 1
        section_bytes = manifest[start : start + size]
        for algorithm, digest in section_expected:
            actual = _digest(algorithm, section_bytes)
            if actual != digest:
                signer.error(
                    f"{algorithm} digest of {MANIFEST_NAME} section for {entry_name} does not "
                    f"match the digest specified in {signer.sf.name}. Expected: "
                    f"<{_b64s(digest)}>, actual: <{_b64s(actual)}>"
                )
    signer.sf_entry_names = frozenset(names)


def _verify_entries(
    fh: BinaryIO,
    cd_offset: int,
    entries: Sequence[CentralDirectoryEntry],
    manifest_sections: Mapping[str, ManifestSection],
    signers: Sequence[_Signer],
    state: _State,
    min_sdk: int,
    max_sdk: int,
) -> list[_Signer]:
    first_signers: list[_Signer] | None = None
    first_name = ""
    for entry in sorted(entries, key=lambda e: e.local_header_offset):
        name = entry.name
        if name.startswith("META-INF/") or name.endswith("/"):
            continue
        section = manifest_sections.get(name)
        if section is None:
            state.errors.append(f"No digest for {name} in {MANIFEST_NAME}")
            continue
        entry_signers = [s for s in signers if name in s.sf_entry_names]
        if not entry_signers:
            state.errors.append(f"{name} entry not signed")
            continue
        if first_signers is None:
            first_signers, first_name = entry_signers, name
        elif entry_signers != first_signers:
            state.errors.append(
                f"Entries {first_name} and {name} are signed with different sets of signers : "
                f"<{', '.join(s.name for s in first_signers)}> vs "
                f"<{', '.join(s.name for s in entry_signers)}>"
            )
            continue
        expected = _digests_to_verify(section, "-Digest", min_sdk, max_sdk)
        if not expected:
            state.errors.append(f"No digest for {name} in {MANIFEST_NAME}")
            continue
        hashers = [hashlib.new(_HASHLIB[alg], usedforsecurity=False) for alg, _ in expected]
        try:
            for chunk in iter_uncompressed_data(fh, entry, cd_offset):
                for hasher in hashers:
                    hasher.update(chunk)
        except MalformedZip as exc:
            raise _EntryError(f"Malformed ZIP entry: {name}: {exc.message}") from exc
        for (algorithm, digest), hasher in zip(expected, hashers, strict=True):
            actual = hasher.digest()
            if actual != digest:
                state.errors.append(
                    f"{algorithm} digest of {name} does not match the digest specified in "
                    f"{MANIFEST_NAME}. Expected: <{_b64s(digest)}>, actual: <{_b64s(actual)}>"
                )
    if first_signers is None:
        state.errors.append("No JAR entries covered by JAR signatures")
        return []
    return first_signers


def jar_signature_present(entries: Sequence[CentralDirectoryEntry]) -> bool:
    """Whether ``META-INF/`` holds a signature block (``.RSA``/``.DSA``/``.EC``) and its ``.SF``."""
    names = {e.name for e in entries}
    for name in names:
        if (
            name.startswith("META-INF/")
            and _is_signature_block(name)
            and name[: name.rfind(".")] + ".SF" in names
        ):
            return True
    return False


def verify_v1(
    fh: BinaryIO,
    cd_offset: int,
    entries: Sequence[CentralDirectoryEntry],
    *,
    min_sdk: int,
    max_sdk: int,
    supported_schemes: Mapping[int, str],
    found_schemes: Set[int],
    apk: bool = True,
) -> V1Result:
    """Verify the JAR signature of the archive whose central directory is ``entries``.

    ``supported_schemes`` maps APK signature scheme ids the platform range knows (2, 3) to
    their names, ``found_schemes`` holds the ids whose signatures were found and verified:
    together they drive the ``X-Android-APK-Signed`` stripping protection. ``apk=False``
    (a bundle or plain JAR) only warns about manifest sections naming absent entries, as
    ``jarsigner`` does, where Android refuses the APK.
    """
    files = [e for e in entries if not e.name.endswith("/")]
    present = jar_signature_present(files)
    state = _State()
    try:
        signers = _verify(
            fh,
            cd_offset,
            files,
            state,
            min_sdk=min_sdk,
            max_sdk=max_sdk,
            supported_schemes=supported_schemes,
            found_schemes=found_schemes,
            apk=apk,
        )
    except _EntryError as exc:
        state.errors.append(str(exc))
        signers = []
    errors = list(state.errors)
    warnings = list(state.warnings)
    for signer in state.signers:
        errors.extend(signer.errors)
        warnings.extend(signer.warnings)
    verified = not errors and bool(signers)
    return V1Result(
        present=present,
        verified=verified,
        signers=tuple(s.certificate for s in signers if s.certificate) if verified else (),
        errors=tuple(errors),
        warnings=tuple(warnings),
    )


def _verify(
    fh: BinaryIO,
    cd_offset: int,
    files: Sequence[CentralDirectoryEntry],
    state: _State,
    *,
    min_sdk: int,
    max_sdk: int,
    supported_schemes: Mapping[int, str],
    found_schemes: Set[int],
    apk: bool,
) -> list[_Signer]:
    names: set[str] = set()
    duplicates: list[str] = []
    for entry in files:
        if entry.name in names and entry.name not in duplicates:
            duplicates.append(entry.name)
        names.add(entry.name)
    for name in duplicates:
        state.errors.append(f"Duplicate entry: {name}")
    if state.errors:
        return []

    manifest_entry: CentralDirectoryEntry | None = None
    sf_entries: dict[str, CentralDirectoryEntry] = {}
    block_entries: list[CentralDirectoryEntry] = []
    for entry in files:
        name = entry.name
        if not name.startswith("META-INF/"):
            continue
        if manifest_entry is None and name == MANIFEST_NAME:
            manifest_entry = entry
            continue
        if name.endswith(".SF"):
            sf_entries[name] = entry
            continue
        if _is_signature_block(name):
            block_entries.append(entry)
    if manifest_entry is None:
        state.errors.append(f"Missing {MANIFEST_NAME}")
        return []

    manifest = _read(fh, manifest_entry, cd_offset, MAX_MANIFEST_SIZE)
    manifest_main, manifest_individual = parse_manifest(manifest)
    manifest_sections: dict[str, ManifestSection] = {}
    for number, section in enumerate(manifest_individual, start=1):
        section_name = section.name
        if section_name is None:
            state.errors.append(
                f"Malformed {MANIFEST_NAME}: invidual section #{number} does not have a name"
            )
            continue
        if section_name in manifest_sections:
            state.errors.append(f"Duplicate section in {MANIFEST_NAME}: {section_name}")
            continue
        manifest_sections[section_name] = section
        if section_name not in names:
            (state.errors if apk else state.warnings).append(
                f"{section_name} entry referenced by {MANIFEST_NAME} not found in the APK"
            )
    if state.errors:
        return []

    signers: list[_Signer] = []
    for block_entry in block_entries:
        base = block_entry.name[: block_entry.name.rfind(".")]
        sf_entry = sf_entries.get(base + ".SF")
        if sf_entry is None:
            state.warnings.append(
                f"Partial JAR signature. Found: {block_entry.name}, missing: {base}.SF"
            )
            continue
        signers.append(
            _Signer(name=block_entry.name[len("META-INF/") :], block=block_entry, sf=sf_entry)
        )
    if not signers:
        state.errors.append("No JAR signatures")
        return []
    if len(signers) > MAX_JAR_SIGNERS:
        state.errors.append(
            f"APK Signature Scheme v1 only supports a maximum of {MAX_JAR_SIGNERS} signers, "
            f"found {len(signers)}"
        )
        return []

    for signer in signers:
        block = _read(fh, signer.block, cd_offset, MAX_SIGNATURE_BLOCK_SIZE)
        signer.sf_bytes = _read(fh, signer.sf, cd_offset, MAX_SIGNATURE_FILE_SIZE)
        _verify_block(signer, block, min_sdk, max_sdk)
        if signer.errors:
            state.signers.append(signer)
    if state.has_errors():
        return []

    remaining: list[_Signer] = []
    for signer in signers:
        _verify_sf_against_manifest(
            signer,
            manifest,
            manifest_main,
            manifest_sections,
            supported_schemes,
            found_schemes,
            min_sdk,
            max_sdk,
        )
        if signer.ignored:
            # Ignored signers' messages are not errors of the APK (apksig keeps them apart).
            state.warnings.extend(signer.warnings)
            state.warnings.extend(f"{m} (signer ignored)" for m in signer.errors)
        elif signer.errors:
            state.signers.append(signer)
        else:
            remaining.append(signer)
    if state.has_errors():
        return []
    if not remaining:
        state.errors.append("No JAR signatures")
        return []

    apk_signers = _verify_entries(
        fh, cd_offset, files, manifest_sections, remaining, state, min_sdk, max_sdk
    )
    if state.has_errors():
        return []

    protected = {MANIFEST_NAME}
    for signer in apk_signers:
        protected.add(signer.block.name)
        protected.add(signer.sf.name)
    for entry in files:
        if entry.name.startswith("META-INF/") and entry.name not in protected:
            state.warnings.append(
                f"{entry.name} not protected by signature. Unauthorized modifications to this "
                "JAR entry will not be detected. Delete or move the entry outside of META-INF/."
            )
    for signer in remaining:
        if signer in apk_signers:
            state.signers.append(signer)
    return [s for s in remaining if s in apk_signers]
