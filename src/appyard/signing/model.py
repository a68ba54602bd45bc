"""Result types of APK and JAR signature verification (frozen, typed, no behaviour).

:class:`ApkVerification` mirrors what ``apksigner verify --verbose --print-certs`` reports:
``verified`` has apksigner's "Verifies" meaning for the requested SDK range, the per-scheme
flags say which schemes were present and which were used to verify, ``signers`` are the
certificates apksigner prints (the v3.1/v3 signer when v3 verified, else every v2 signer, else
every JAR signer), ``errors`` and ``warnings`` are human readable (apksigner's wording where
there is one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "ANY_SDK",
    "ApkVerification",
    "CertificateInfo",
    "JarVerification",
    "SchemeStatus",
    "V3Signer",
]

ANY_SDK = 0x7FFFFFFF
"""``Integer.MAX_VALUE``: the default maximum SDK version, and "no upper bound" in v3 ranges."""


@dataclass(frozen=True)
class CertificateInfo:
    """An X.509 certificate, described the way apksigner prints it."""

    sha256: str
    """Lowercase hex SHA-256 of the DER encoding (apksigner's "certificate SHA-256 digest")."""
    sha1: str
    md5: str
    dn: str
    """Subject DN in Java's ``X500Principal.toString()`` form: ``CN=x, O=y, C=US``."""
    cn: str | None
    issuer: str
    serial_number: int
    not_before: datetime
    not_after: datetime
    key_algorithm: str
    """``RSA``, ``EC``, ``DSA`` (Java names), or the public key OID when unknown."""
    key_size: int | None
    """Modulus bits (RSA), field bits (EC), prime bits (DSA)."""
    is_debug: bool
    """Subject is ``CN=Android Debug, O=Android, C=US``, the Android SDK debug key convention."""
    der: bytes = field(repr=False)


@dataclass(frozen=True)
class SchemeStatus:
    """One signature scheme: whether its signature is in the file, and whether it verified.

    ``verified`` is apksigner's "Verified using vN scheme": a scheme that is present but not
    checked for the requested SDK range (v1 when minSdk >= 24 and v2/v3 exist; v2 when v3
    covers the range) is present and not verified, without an error.
    """

    present: bool = False
    verified: bool = False


@dataclass(frozen=True)
class V3Signer:
    """A v3 or v3.1 signer and the platform versions it targets."""

    scheme: str
    """``"v3"`` or ``"v31"``."""
    min_sdk: int
    max_sdk: int
    certificate: CertificateInfo
    lineage: tuple[CertificateInfo, ...] = ()
    """Proof-of-rotation lineage of this signer, oldest first, when it carries one."""


@dataclass(frozen=True)
class ApkVerification:
    """Outcome of :func:`appyard.signing.verify.verify_apk`."""

    verified: bool
    min_sdk: int
    max_sdk: int
    v1: SchemeStatus
    v2: SchemeStatus
    v3: SchemeStatus
    v31: SchemeStatus
    signers: tuple[CertificateInfo, ...]
    """The signer certificates apksigner prints; empty when ``verified`` is false."""
    v3_signers: tuple[V3Signer, ...] = ()
    """Every v3.1 and v3 signer that was parsed, with its SDK range."""
    lineage: tuple[CertificateInfo, ...] = ()
    """The consolidated v3 signing-certificate lineage (oldest first), if any."""
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def schemes(self) -> dict[str, bool]:
        """``{"v1": ..., "v2": ..., "v3": ..., "v31": ...}``: verified using that scheme."""
        return {
            "v1": self.v1.verified,
            "v2": self.v2.verified,
            "v3": self.v3.verified,
            "v31": self.v31.verified,
        }


@dataclass(frozen=True)
class JarVerification:
    """Outcome of :func:`appyard.signing.verify.verify_jar` (JAR signature only)."""

    verified: bool
    present: bool
    signers: tuple[CertificateInfo, ...]
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
