"""JAR signing (APK Signature Scheme v1), the way apksigner does it.

Three entries make the signature, produced by :func:`signature_entries`:

* ``META-INF/MANIFEST.MF``: the main section (copied from the input's manifest when there is
  one, else ``Manifest-Version: 1.0``), then one section per entry, sorted by name, with the
  base64 digest of the entry's *uncompressed* content (``SHA-256-Digest``, or ``SHA1-Digest``
  for RSA keys when minSdk < 18, as apksigner does: older Android only verifies SHA-1);
* ``META-INF/<SIGNER>.SF``: the digest of the whole manifest, ``X-Android-APK-Signed: 2, 3``
  when v2/v3 signatures follow (stripping protection), and the digest of every manifest
  section;
* ``META-INF/<SIGNER>.RSA`` or ``.EC``: a detached PKCS#7 SignedData over the ``.SF`` bytes
  (no signed attributes; issuer and serial number; the certificate chain).

Entry contents are digested as they stream past (:class:`ContentDigest`), so nothing is held
in memory but the digests.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from asn1crypto import algos, cms
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from appyard.errors import InvalidArtifact
from appyard.signing.keystore import SigningMaterial
from appyard.signing.zipmeta import (
    METHOD_DEFLATED,
    METHOD_STORED,
    CentralDirectoryEntry,
    check_ratio,
)

MANIFEST_NAME = "META-INF/MANIFEST.MF"
MAX_SOURCE_MANIFEST = 16 * 1024 * 1024
_MAX_LINE = 70
_INFLATE_CHUNK = 1024 * 1024
_CREATED_BY = "1.0 (appyard)"
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,70}$")

# digest name -> (hashlib name, manifest attribute prefix, asn1crypto digest name)
_DIGESTS = {
    "sha256": ("sha256", "SHA-256", "sha256"),
    "sha1": ("sha1", "SHA1", "sha1"),
}


# --- which entries ----------------------------------------------------------------------------


def is_signature_file(name: str) -> bool:
    """``META-INF/MANIFEST.MF``, ``*.SF``, ``*.RSA``, ``*.DSA``, ``*.EC``, ``SIG-*`` (top level)."""
    if not name.startswith("META-INF/") or "/" in name[len("META-INF/") :]:
        return False
    file_name = name[len("META-INF/") :].lower()
    return (
        file_name == "manifest.mf"
        or file_name.endswith((".sf", ".rsa", ".dsa", ".ec"))
        or file_name.startswith("sig-")
    )


def needs_digest(name: str) -> bool:
    """Whether the JAR manifest lists this entry (not directories, not signature files)."""
    return not name.endswith("/") and not is_signature_file(name)


def digest_for(material: SigningMaterial, min_sdk: int) -> str:
    """``"sha256"`` or ``"sha1"``: the JAR digest apksigner picks for this key and minSdk."""
    if isinstance(material.private_key, rsa.RSAPrivateKey):
        return "sha1" if min_sdk < 18 else "sha256"
    if min_sdk < 18:
        raise UnsupportedMinSdk(
            f"ECDSA JAR signatures need minSdk 18 or higher; this APK declares {min_sdk}.",
            min_sdk=min_sdk,
        )
    return "sha256"


class UnsupportedMinSdk(InvalidArtifact):
    """The key cannot make a JAR signature that this APK's minSdk verifies."""

    code = "signing.key_unsupported_for_min_sdk"


# --- streaming entry digests ------------------------------------------------------------------


class ContentDigest:
    """Digest of an entry's uncompressed content, fed its raw (compressed) bytes in chunks.

    Inflation is bounded by the size the central directory declares, and the size and CRC-32
    are checked at the end, so a corrupt or bomb entry is refused instead of signed.
    """

    def __init__(
        self,
        entry: CentralDirectoryEntry,
        digest: str,
        *,
        sink: Callable[[bytes], None] | None = None,
    ) -> None:
        if entry.method not in (METHOD_STORED, METHOD_DEFLATED):
            raise InvalidArtifact(
                f"The entry {entry.name!r} uses compression method {entry.method}; "
                "only stored and deflated entries can be signed.",
                reason="unsupported_compression",
            )
        self._entry = entry
        if entry.method == METHOD_DEFLATED:
            check_ratio(f"The entry {entry.name!r}", entry.uncompressed_size, entry.compressed_size)
        self._hash = hashlib.new(_DIGESTS[digest][0])
        self._inflate = zlib.decompressobj(-15) if entry.method == METHOD_DEFLATED else None
        self._produced = 0
        self._crc = 0
        self._sink = sink

    def _corrupt(self, what: str) -> InvalidArtifact:
        return InvalidArtifact(
            f"The entry {self._entry.name!r} is corrupt ({what}).", reason="corrupt_entry"
        )

    def _take(self, data: bytes) -> None:
        self._produced += len(data)
        if self._produced > self._entry.uncompressed_size:
            raise self._corrupt("it expands beyond its declared size")
        self._hash.update(data)
        self._crc = zlib.crc32(data, self._crc)
        if self._sink is not None:
            self._sink(data)

    def __call__(self, chunk: bytes) -> None:
        if self._inflate is None:
            self._take(chunk)
            return
        data = chunk
        try:
            while data:
                room = self._entry.uncompressed_size - self._produced + 1
                self._take(self._inflate.decompress(data, min(room, _INFLATE_CHUNK)))
                data = self._inflate.unconsumed_tail
        except zlib.error as exc:
            raise self._corrupt(str(exc)) from None

    def finish(self) -> bytes:
        if self._inflate is not None:
            try:
                self._take(self._inflate.flush())
            except zlib.error as exc:
                raise self._corrupt(str(exc)) from None
            if not self._inflate.eof:
                raise self._corrupt("its deflate stream is truncated")
        if self._produced != self._entry.uncompressed_size:
            raise self._corrupt("its size differs from the central directory")
        if self._crc != self._entry.crc32:
            raise self._corrupt("CRC-32 mismatch")
        return self._hash.digest()


# --- manifest and signature file --------------------------------------------------------------


def _line(text: str) -> bytes:
    raw = text.encode("utf-8")
    parts = [raw[:_MAX_LINE]]
    pos = _MAX_LINE
    while pos < len(raw):
        parts.append(b" " + raw[pos : pos + _MAX_LINE - 1])
        pos += _MAX_LINE - 1
    return b"\r\n".join(parts) + b"\r\n"


def _section(attributes: Iterable[tuple[str, str]]) -> bytes:
    return b"".join(_line(f"{key}: {value}") for key, value in attributes) + b"\r\n"


def main_attributes(source_manifest: bytes | None) -> list[tuple[str, str]]:
    """The main section of a source manifest (``Manifest-Version`` first, then sorted)."""
    attributes: dict[str, tuple[str, str]] = {}
    if source_manifest:
        text = source_manifest.decode("utf-8", "replace").replace("\r\n", "\n")
        lines: list[str] = []
        for line in text.replace("\r", "\n").split("\n"):
            if line == "":
                break
            if line.startswith(" ") and lines:
                lines[-1] += line[1:]
            else:
                lines.append(line)
        for line in lines:
            key, sep, value = line.partition(": ")
            if sep and _ATTRIBUTE_NAME.match(key) and key.lower() not in attributes:
                attributes[key.lower()] = (key, value)
    version = attributes.pop("manifest-version", ("Manifest-Version", "1.0"))
    return [("Manifest-Version", version[1] or "1.0"), *sorted(attributes.values())]


@dataclass(frozen=True)
class Manifest:
    content: bytes
    sections: dict[str, bytes]


def build_manifest(
    digests: Mapping[str, bytes], *, digest: str, source_manifest: bytes | None = None
) -> Manifest:
    attribute = f"{_DIGESTS[digest][1]}-Digest"
    sections: dict[str, bytes] = {}
    for name in sorted(digests):
        if any(c in name for c in "\r\n\x00"):
            raise InvalidArtifact(
                f"The entry name {name!r} contains a line break or NUL and cannot be signed.",
                reason="bad_entry_name",
            )
        sections[name] = _section(
            [("Name", name), (attribute, base64.b64encode(digests[name]).decode())]
        )
    content = _section(main_attributes(source_manifest)) + b"".join(sections.values())
    return Manifest(content=content, sections=sections)


def build_signature_file(
    manifest: Manifest, *, digest: str, apk_schemes: Sequence[int] = ()
) -> bytes:
    algorithm, prefix = _DIGESTS[digest][0], _DIGESTS[digest][1]
    main = [
        ("Created-By", _CREATED_BY),
        (f"{prefix}-Digest-Manifest", _b64(algorithm, manifest.content)),
    ]
    if apk_schemes:
        main.append(("X-Android-APK-Signed", ", ".join(str(s) for s in apk_schemes)))
    out = bytearray(_section([("Signature-Version", "1.0"), *sorted(main)]))
    for name, section in manifest.sections.items():
        out += _section([("Name", name), (f"{prefix}-Digest", _b64(algorithm, section))])
    if len(out) % 1024 == 0:  # Android <= 1.6 java.util.jar bug, as apksigner works around it
        out += b"\r\n"
    return bytes(out)


def _b64(algorithm: str, data: bytes) -> str:
    return base64.b64encode(hashlib.new(algorithm, data).digest()).decode()


# --- signature block --------------------------------------------------------------------------


def build_signature_block(sf: bytes, material: SigningMaterial, *, digest: str) -> bytes:
    """Detached PKCS#7 SignedData over ``sf`` (what apksigner writes, byte for byte in shape)."""
    chosen = hashes.SHA256() if digest == "sha256" else hashes.SHA1()  # noqa: S303
    signature = material.sign(sf, chosen)
    signature_algorithm = (
        "rsassa_pkcs1v15"  # rsaEncryption, as apksigner writes it
        if isinstance(material.private_key, rsa.RSAPrivateKey)
        else "1.2.840.10045.2.1"  # ecPublicKey, as apksigner writes it
    )
    certs = [asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in material.cert_chain]
    leaf = certs[0]
    digest_algorithm = algos.DigestAlgorithm({"algorithm": _DIGESTS[digest][2]})
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [digest_algorithm],
            "encap_content_info": {"content_type": "data"},
            "certificates": certs,
            "signer_infos": [
                {
                    "version": "v1",
                    "sid": cms.SignerIdentifier(
                        name="issuer_and_serial_number",
                        value={"issuer": leaf.issuer, "serial_number": leaf.serial_number},
                    ),
                    "digest_algorithm": digest_algorithm,
                    "signature_algorithm": {"algorithm": signature_algorithm},
                    "signature": signature,
                }
            ],
        }
    )
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump())


def signer_name(alias: str) -> str:
    """apksigner's safe signer name: upper case, ``[A-Z0-9_-]``, at most 8 characters."""
    upper = (alias or "CERT").upper()[:8]
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in upper)


def signature_entries(
    material: SigningMaterial,
    digests: Mapping[str, bytes],
    *,
    digest: str,
    apk_schemes: Sequence[int] = (),
    source_manifest: bytes | None = None,
) -> list[tuple[str, bytes]]:
    """The ``(name, content)`` of ``.SF``, ``.RSA``/``.EC`` and ``MANIFEST.MF``, in that order."""
    manifest = build_manifest(digests, digest=digest, source_manifest=source_manifest)
    sf = build_signature_file(manifest, digest=digest, apk_schemes=apk_schemes)
    name = signer_name(material.alias)
    return [
        (f"META-INF/{name}.SF", sf),
        (
            f"META-INF/{name}.{material.key_algorithm}",
            build_signature_block(sf, material, digest=digest),
        ),
        (MANIFEST_NAME, manifest.content),
    ]
