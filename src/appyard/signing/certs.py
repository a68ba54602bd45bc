"""Certificate helpers: describe an X.509 certificate as apksigner prints it, check signatures.

Certificates are parsed with asn1crypto (lenient, like Java's: negative serial numbers and
other RFC 5280 violations common in old Android keys are accepted) and public keys are loaded
into ``cryptography`` from the certificate's SubjectPublicKeyInfo for signature checks.

:func:`java_dn` renders a Name the way ``X500Principal.toString()`` does (most specific RDN
first, ``EMAILADDRESS``/``ST``/``OID.x.y`` keywords, RFC 1779 quoting), which is the ``DN``
apksigner prints and what ``expected.json`` holds.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from appyard.signing import legacy
from appyard.signing.legacy import DSAPublicKey
from appyard.signing.model import CertificateInfo

__all__ = [
    "DEBUG_SUBJECT",
    "CertificateError",
    "ParsedCertificate",
    "SignatureKind",
    "describe_certificate",
    "hash_for",
    "java_dn",
    "load_public_key",
    "parse_certificate",
    "verify_signature",
]

DEBUG_SUBJECT = "CN=Android Debug, O=Android, C=US"
"""The subject of keys made by the Android SDK for debug builds (``debug.keystore``)."""

_KEYWORDS = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "T",
    "1.3.6.1.4.1.42.2.11.2.1": "IP",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "2.5.4.46": "DNQ",
    "2.5.4.4": "SURNAME",
    "2.5.4.42": "GIVENNAME",
    "2.5.4.43": "INITIALS",
    "2.5.4.44": "GENERATION",
    "1.2.840.113549.1.9.1": "EMAILADDRESS",
    "0.9.2342.19200300.100.1.1": "UID",
    "2.5.4.5": "SERIALNUMBER",
}
_ESCAPEES = ',+=\n<>#;\\"'
_PRINTABLE_EXTRA = " '()+,-./:=?"

_KEY_ALGORITHMS = {
    "1.2.840.113549.1.1.1": "RSA",
    "1.2.840.10045.2.1": "EC",
    "1.2.840.10040.4.1": "DSA",
    "1.3.101.112": "EdDSA",
    "1.3.101.113": "EdDSA",
}

# Critical extensions Java's X509Certificate understands; any other critical extension makes
# hasUnsupportedCriticalExtension() true, and Android refuses such a JAR signing certificate.
_SUPPORTED_CRITICAL = frozenset(
    {
        "2.5.29.15",  # keyUsage
        "2.5.29.19",  # basicConstraints
        "2.5.29.37",  # extKeyUsage
        "2.5.29.17",  # subjectAltName
        "2.5.29.18",  # issuerAltName
        "2.5.29.30",  # nameConstraints
        "2.5.29.32",  # certificatePolicies
        "2.5.29.33",  # policyMappings
        "2.5.29.36",  # policyConstraints
        "2.5.29.54",  # inhibitAnyPolicy
        "2.5.29.14",  # subjectKeyIdentifier
        "2.5.29.35",  # authorityKeyIdentifier
    }
)


class CertificateError(ValueError):
    """A certificate or public key could not be parsed."""


def _is_printable(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char in _PRINTABLE_EXTRA)


def _quote(value: str) -> str:
    """RFC 1779 value rendering, as ``sun.security.x509.AVA.toKeywordValueString``."""
    length = len(value)
    already_quoted = length > 1 and value[0] == '"' and value[-1] == '"'
    quote_needed = False
    previous_white = False
    out: list[str] = []
    for i, char in enumerate(value):
        if already_quoted and i in (0, length - 1):
            out.append(char)
            continue
        if _is_printable(char) or char in _ESCAPEES:
            if not quote_needed and ((i == 0 and char in " \n") or char in _ESCAPEES):
                quote_needed = True
            if char not in " \n":
                if char in '"\\':
                    out.append("\\")
                previous_white = False
            else:
                if not quote_needed and previous_white:
                    quote_needed = True
                previous_white = True
            out.append(char)
        else:
            previous_white = False
            out.append(char)
    text = "".join(out)
    if text and text[-1] in " \n":
        quote_needed = True
    if not already_quoted and quote_needed:
        return f'"{text}"'
    return text


def _value_string(value: asn1_core.Asn1Value) -> str:
    raw: bytes = value.dump()
    try:
        parsed = asn1_core.load(raw)
    except (ValueError, TypeError):
        parsed = None
    if isinstance(parsed, asn1_core.AbstractString):
        try:
            return _quote(str(parsed.native))
        except (ValueError, TypeError, UnicodeDecodeError):
            pass
    return "#" + raw.hex()


def java_dn(name: asn1_x509.Name) -> str:
    """``name`` as Java's ``X500Principal.toString()`` prints it (most specific RDN first)."""
    rdns: list[str] = []
    for rdn in name.chosen:
        parts: list[str] = []
        for atv in rdn:
            oid = atv["type"].dotted
            keyword = _KEYWORDS.get(oid, f"OID.{oid}")
            parts.append(f"{keyword}={_value_string(atv['value'])}")
        rdns.append(" + ".join(parts))
    return ", ".join(reversed(rdns))


def _first_attribute(name: asn1_x509.Name, oid: str) -> str | None:
    for rdn in name.chosen:
        for atv in rdn:
            if atv["type"].dotted == oid:
                try:
                    native = asn1_core.load(atv["value"].dump()).native
                except (ValueError, TypeError):
                    return None
                return native if isinstance(native, str) else None
    return None


def load_public_key(spki_der: bytes) -> PublicKeyTypes:
    """A ``cryptography`` public key from DER SubjectPublicKeyInfo, or :class:`CertificateError`."""
    try:
        return legacy.public_key(spki_der)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"Malformed public key: {exc}") from exc


def _key_size(key: PublicKeyTypes | None) -> int | None:
    if isinstance(key, rsa.RSAPublicKey | DSAPublicKey):
        return key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.curve.key_size
    return None


def _utc(value: object) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ParsedCertificate:
    """A certificate as read from a signature: its exact DER, description and public key."""

    der: bytes
    asn1: asn1_x509.Certificate
    info: CertificateInfo
    spki: bytes
    """The SubjectPublicKeyInfo DER, as in the certificate."""
    public_key: PublicKeyTypes | None
    """``None`` when the key type is not supported by ``cryptography``."""

    @property
    def subject_der(self) -> bytes:
        return bytes(self.asn1["tbs_certificate"]["subject"].dump())

    @property
    def issuer_der(self) -> bytes:
        return bytes(self.asn1["tbs_certificate"]["issuer"].dump())

    def has_unsupported_critical_extension(self) -> bool:
        extensions = self.asn1["tbs_certificate"]["extensions"]
        if not isinstance(extensions, asn1_x509.Extensions):
            return False
        for extension in extensions:
            if extension["critical"].native and (
                extension["extn_id"].dotted not in _SUPPORTED_CRITICAL
            ):
                return True
        return False

    def allows_digital_signature(self) -> bool:
        """False only when a keyUsage extension lacks digitalSignature and nonRepudiation."""
        extensions = self.asn1["tbs_certificate"]["extensions"]
        if not isinstance(extensions, asn1_x509.Extensions):
            return True
        for extension in extensions:
            if extension["extn_id"].dotted == "2.5.29.15":
                try:
                    usage = extension["extn_value"].parsed.native
                except (ValueError, TypeError):
                    return True
                if not isinstance(usage, set):
                    return True
                return bool({"digital_signature", "non_repudiation"} & usage)
        return True


def parse_certificate(der: bytes) -> ParsedCertificate:
    """Parse DER ``der``; raises :class:`CertificateError` when it is not a certificate."""
    try:
        cert = asn1_x509.Certificate.load(der, strict=True)
        tbs = cert["tbs_certificate"]
        subject = tbs["subject"]
        issuer = tbs["issuer"]
        spki = tbs["subject_public_key_info"]
        spki_der = bytes(spki.dump())
        key_oid = spki["algorithm"]["algorithm"].dotted
        serial = int(tbs["serial_number"].native)
        validity = tbs["validity"]
        not_before = _utc(validity["not_before"].native)
        not_after = _utc(validity["not_after"].native)
        dn = java_dn(subject)
        issuer_dn = java_dn(issuer)
        cn = _first_attribute(subject, "2.5.4.3")
        organization = _first_attribute(subject, "2.5.4.10")
        country = _first_attribute(subject, "2.5.4.6")
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise CertificateError(f"Malformed certificate: {exc}") from exc
    try:
        public_key: PublicKeyTypes | None = load_public_key(spki_der)
    except CertificateError:
        public_key = None
    info = CertificateInfo(
        sha256=hashlib.sha256(der).hexdigest(),
        sha1=hashlib.sha1(der, usedforsecurity=False).hexdigest(),
        md5=hashlib.md5(der, usedforsecurity=False).hexdigest(),
        dn=dn,
        cn=cn,
        issuer=issuer_dn,
        serial_number=serial,
        not_before=not_before,
        not_after=not_after,
        key_algorithm=_KEY_ALGORITHMS.get(key_oid, key_oid),
        key_size=_key_size(public_key),
        is_debug=(cn, organization, country) == ("Android Debug", "Android", "US"),
        der=bytes(der),
    )
    return ParsedCertificate(
        der=bytes(der), asn1=cert, info=info, spki=spki_der, public_key=public_key
    )


def describe_certificate(der: bytes) -> CertificateInfo:
    """A :class:`CertificateInfo` for DER ``der`` (raises :class:`CertificateError`)."""
    return parse_certificate(der).info


class SignatureKind(enum.Enum):
    """Public key signature families used by APK signatures."""

    RSA_PKCS1 = "RSA"
    RSA_PSS = "RSA/PSS"
    ECDSA = "EC"
    DSA = "DSA"


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "MD5": hashes.MD5,
    "SHA-1": hashes.SHA1,
    "SHA-224": hashes.SHA224,
    "SHA-256": hashes.SHA256,
    "SHA-384": hashes.SHA384,
    "SHA-512": hashes.SHA512,
}


def hash_for(name: str) -> hashes.HashAlgorithm:
    """A ``cryptography`` hash from a Java name (``SHA-256``)."""
    return _HASHES[name]()


def verify_signature(
    key: PublicKeyTypes | None,
    kind: SignatureKind,
    hash_name: str,
    signature: bytes,
    data: bytes,
) -> bool:
    """Whether ``signature`` over ``data`` verifies with ``key``.

    Raises :class:`CertificateError` when the key does not fit ``kind`` (apksig reports a
    malformed public key then), returns False for a signature that does not verify, including
    a malformed DER ECDSA/DSA signature.
    """
    algorithm = hash_for(hash_name)
    if kind is SignatureKind.RSA_PKCS1 or kind is SignatureKind.RSA_PSS:
        if not isinstance(key, rsa.RSAPublicKey):
            raise CertificateError("Malformed public key: not an RSA key")
    elif kind is SignatureKind.ECDSA:
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise CertificateError("Malformed public key: not an EC key")
    elif not isinstance(key, DSAPublicKey):
        raise CertificateError("Malformed public key: not a DSA key")
    try:
        if isinstance(key, rsa.RSAPublicKey):
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if kind is SignatureKind.RSA_PKCS1
                else padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
            )
            key.verify(signature, data, pad, algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(algorithm))
        else:
            key.verify(signature, data, algorithm)
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        return False
    return True
