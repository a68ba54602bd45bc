"""``embedded.mobileprovision``: a CMS SignedData envelope around a property list.

:func:`parse_mobileprovision` opens the envelope with :mod:`asn1crypto`, reads the signed
plist (team, app id, dates, devices, entitlements, developer certificates) and derives the
signing type. It also checks that the envelope's signature verifies with the certificate the
envelope carries (``cms_signature_valid``); it does NOT check that this certificate chains
to Apple, so a profile made with a self-signed certificate (as in the test fixtures) is
reported as cryptographically intact, not as trusted.

Every malformed or lying envelope (not CMS, not SignedData, content that is detached, not a
plist, a plist that is not a dictionary, developer certificates that are not X.509) raises
:class:`InvalidArtifact` with a reason a person can act on. Bounds: the caller reads at
most ``MAX_PROFILE_BYTES``; the plist inside obeys :mod:`appyard.inspect.plist`'s bounds;
at most ``MAX_CERTIFICATES`` certificates are parsed.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asn1crypto import cms, core
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from appyard.errors import InvalidArtifact
from appyard.signing.ios.plist import get_bool, get_date, get_str, get_str_list, load_plist
from appyard.signing.legacy import certificate_key

MAX_PROFILE_BYTES = 2 * 1024 * 1024
MAX_CERTIFICATES = 256

_ASN1_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError)
_NAME_OVERRIDES = {NameOID.EMAIL_ADDRESS: "emailAddress"}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class SigningType(enum.StrEnum):
    """How an iOS build is provisioned, derived from its profile."""

    DEVELOPMENT = "development"  # get-task-allow: a debugger may attach
    AD_HOC = "ad-hoc"  # a list of devices, no get-task-allow
    ENTERPRISE = "enterprise"  # ProvisionsAllDevices (in-house distribution)
    APP_STORE = "app-store"  # none of the above


@dataclass(frozen=True)
class CertificateInfo:
    sha256: str  # lowercase hex of the DER certificate
    sha1: str
    subject: str  # RFC 4514 (most specific RDN first, like ``openssl -nameopt RFC2253``)
    issuer: str
    common_name: str | None
    serial_number: str  # hex
    not_before: datetime  # aware, UTC
    not_after: datetime


@dataclass(frozen=True)
class ProvisioningProfile:
    name: str | None
    uuid: str | None
    team_id: str | None  # the first TeamIdentifier
    team_name: str | None
    app_id_name: str | None
    application_identifier: str | None  # entitlements' "TEAMID.com.example.app" (may end in *)
    bundle_id_pattern: str | None  # application_identifier without its prefix ("com.example.*")
    app_id_prefixes: tuple[str, ...]
    creation_date: datetime | None  # aware, UTC
    expiration_date: datetime | None
    platforms: tuple[str, ...]
    provisioned_devices: tuple[str, ...]
    provisions_all_devices: bool
    get_task_allow: bool
    signing_type: SigningType
    developer_certificates: tuple[CertificateInfo, ...]
    cms_signers: tuple[CertificateInfo, ...]  # certificates of the envelope's signers
    cms_signature_valid: bool  # the envelope verifies with its own certificate (not trust)
    entitlements: dict[str, Any] = field(hash=False)
    plist: dict[str, Any] = field(hash=False, repr=False)  # the whole signed plist


def bundle_id_matches(pattern: str, bundle_id: str) -> bool:
    """Whether an app id from a profile (``com.example.app``, ``com.example.*``, ``*``)
    covers ``bundle_id``."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return bundle_id.startswith(pattern[:-1])
    if pattern.endswith("*"):
        return bundle_id.startswith(pattern[:-1])
    return pattern == bundle_id


def signing_type(
    *, get_task_allow: bool, provisions_all_devices: bool, devices: int
) -> SigningType:
    if get_task_allow:
        return SigningType.DEVELOPMENT
    if provisions_all_devices:
        return SigningType.ENTERPRISE
    if devices:
        return SigningType.AD_HOC
    return SigningType.APP_STORE


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def describe_certificate(der: bytes, *, what: str) -> CertificateInfo:
    """SHA-256 fingerprint, names and validity of a DER X.509 certificate."""
    try:
        cert = x509.load_der_x509_certificate(der)
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        cn = cns[0].value if cns else None
        return CertificateInfo(
            sha256=hashlib.sha256(der).hexdigest(),
            sha1=hashlib.sha1(der).hexdigest(),  # noqa: S324 - a fingerprint, not security
            subject=cert.subject.rfc4514_string(_NAME_OVERRIDES),
            issuer=cert.issuer.rfc4514_string(_NAME_OVERRIDES),
            common_name=cn if isinstance(cn, str) else None,
            serial_number=format(cert.serial_number, "x"),
            not_before=_utc(cert.not_valid_before_utc),
            not_after=_utc(cert.not_valid_after_utc),
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidArtifact(
            f"{what} holds a certificate that is not valid X.509 ({exc}).",
            reason="bad_certificate",
        ) from None


def _verify_signer(signer: Any, certs: list[Any], content: bytes) -> tuple[bool, Any | None]:
    """(signature verifies, the signer's certificate) for one SignerInfo."""
    sid = signer["sid"]
    cert = None
    for candidate in certs:
        if sid.name == "issuer_and_serial_number":
            if (
                candidate.issuer == sid.chosen["issuer"]
                and candidate.serial_number == sid.chosen["serial_number"].native
            ):
                cert = candidate
                break
        elif candidate.key_identifier == sid.chosen.native:
            cert = candidate
            break
    if cert is None:
        return False, None
    digest_name = signer["digest_algorithm"]["algorithm"].native
    hash_cls = _HASHES.get(digest_name)
    if hash_cls is None:
        return False, cert
    signed_attrs = signer["signed_attrs"]
    if not isinstance(signed_attrs, core.Void):
        digests = [
            attr["values"][0].native
            for attr in signed_attrs
            if attr["type"].native == "message_digest"
        ]
        actual = hashlib.new(digest_name, content).digest()
        if digests != [actual]:
            return False, cert
        to_verify = b"\x31" + signed_attrs.dump()[1:]  # [0] IMPLICIT -> SET OF
    else:
        to_verify = content
    signature = signer["signature"].native
    try:
        public_key = certificate_key(cert.dump())
        if isinstance(public_key, rsa.RSAPublicKey):
            if signer["signature_algorithm"].signature_algo != "rsassa_pkcs1v15":
                return False, cert
            public_key.verify(signature, to_verify, padding.PKCS1v15(), hash_cls())
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, to_verify, ec.ECDSA(hash_cls()))
        else:
            return False, cert
    except (InvalidSignature, UnsupportedAlgorithm, *_ASN1_ERRORS):
        return False, cert
    return True, cert


def parse_mobileprovision(data: bytes, *, what: str) -> ProvisioningProfile:
    """Open the CMS envelope of a provisioning profile and read the plist inside."""
    if len(data) > MAX_PROFILE_BYTES:
        raise InvalidArtifact(
            f"{what} is {len(data)} bytes; at most {MAX_PROFILE_BYTES} are read.",
            reason="profile_too_large",
        )
    try:
        info = cms.ContentInfo.load(data)
        content_type = info["content_type"].native
    except _ASN1_ERRORS as exc:
        raise InvalidArtifact(
            f"{what} is not a CMS (PKCS#7) envelope ({exc}).", reason="bad_profile"
        ) from None
    if content_type != "signed_data":
        raise InvalidArtifact(
            f"{what} is a CMS envelope of type {content_type!r}, not signed data.",
            reason="bad_profile",
        )
    try:
        signed = info["content"]
        encap = signed["encap_content_info"]
        encap_type = encap["content_type"].native
        if encap_type != "data":
            raise InvalidArtifact(
                f"{what} signs content of type {encap_type!r}; a profile signs a plist (data).",
                reason="bad_profile",
            )
        content = encap["content"].native
        certs = [c.chosen for c in signed["certificates"] if c.name == "certificate"]
        signer_infos = list(signed["signer_infos"])
    except _ASN1_ERRORS as exc:
        raise InvalidArtifact(
            f"{what} is a damaged CMS envelope ({exc}).", reason="bad_profile"
        ) from None
    if not isinstance(content, bytes):
        raise InvalidArtifact(
            f"{what} does not carry its profile inside the envelope (content missing: "
            "a detached signature).",
            reason="bad_profile",
        )
    if len(certs) > MAX_CERTIFICATES:
        raise InvalidArtifact(
            f"{what} carries {len(certs)} certificates; at most {MAX_CERTIFICATES} are read.",
            reason="bad_profile",
        )
    plist, _fmt = load_plist(content, what=f"the profile inside {what}")

    valid = bool(signer_infos)
    signers: list[CertificateInfo] = []
    for signer in signer_infos[:MAX_CERTIFICATES]:
        try:
            ok, cert = _verify_signer(signer, certs, content)
        except _ASN1_ERRORS:
            ok, cert = False, None
        valid = valid and ok
        if cert is not None:
            signers.append(describe_certificate(cert.dump(), what=f"the envelope of {what}"))

    dev_certs_raw = plist.get("DeveloperCertificates")
    dev_certs: list[CertificateInfo] = []
    if isinstance(dev_certs_raw, list):
        if len(dev_certs_raw) > MAX_CERTIFICATES:
            raise InvalidArtifact(
                f"{what} lists {len(dev_certs_raw)} developer certificates; at most "
                f"{MAX_CERTIFICATES} are read.",
                reason="bad_profile",
            )
        for der in dev_certs_raw:
            if not isinstance(der, bytes):
                raise InvalidArtifact(
                    f"{what} lists a developer certificate that is not binary data.",
                    reason="bad_certificate",
                )
            dev_certs.append(describe_certificate(der, what=f"{what} (DeveloperCertificates)"))

    raw_entitlements = plist.get("Entitlements")
    entitlements: dict[str, Any] = raw_entitlements if isinstance(raw_entitlements, dict) else {}
    get_task_allow = entitlements.get("get-task-allow") is True
    all_devices = get_bool(plist, "ProvisionsAllDevices") is True
    devices = get_str_list(plist, "ProvisionedDevices")
    prefixes = get_str_list(plist, "ApplicationIdentifierPrefix")
    app_identifier = get_str(entitlements, "application-identifier")
    pattern = app_identifier
    if app_identifier is not None:
        for prefix in prefixes:
            if app_identifier.startswith(prefix + "."):
                pattern = app_identifier[len(prefix) + 1 :]
                break
        else:
            pattern = app_identifier.split(".", 1)[1] if "." in app_identifier else None
    teams = get_str_list(plist, "TeamIdentifier")
    return ProvisioningProfile(
        name=get_str(plist, "Name"),
        uuid=get_str(plist, "UUID"),
        team_id=teams[0] if teams else None,
        team_name=get_str(plist, "TeamName"),
        app_id_name=get_str(plist, "AppIDName"),
        application_identifier=app_identifier,
        bundle_id_pattern=pattern,
        app_id_prefixes=prefixes,
        creation_date=get_date(plist, "CreationDate"),
        expiration_date=get_date(plist, "ExpirationDate"),
        platforms=get_str_list(plist, "Platform"),
        provisioned_devices=devices,
        provisions_all_devices=all_devices,
        get_task_allow=get_task_allow,
        signing_type=signing_type(
            get_task_allow=get_task_allow, provisions_all_devices=all_devices, devices=len(devices)
        ),
        developer_certificates=tuple(dev_certs),
        cms_signers=tuple(signers),
        cms_signature_valid=valid,
        entitlements=entitlements,
        plist=plist,
    )
