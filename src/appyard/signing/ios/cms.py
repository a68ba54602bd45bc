"""The CMS signature of an embedded code signature (slot ``0x10000``), made and checked.

It is a detached CMS SignedData over the bytes of the first CodeDirectory, with SHA-256 and
these signed attributes, as Apple's codesign writes them: contentType (data), signingTime,
messageDigest, ``1.2.840.113635.100.9.1`` (an XML plist ``{cdhashes: [<20-byte CDHash of
each CodeDirectory>]}``) and ``1.2.840.113635.100.9.2`` (CDHashes2: one ``SEQUENCE {hash
algorithm, full hash}`` per CodeDirectory). The signer is identified by issuer and serial
number and the certificate chain (leaf first) is embedded. The DER is written here with a
few lines of encoder (SET OF members sorted, as DER wants); reading uses asn1crypto.
"""

from __future__ import annotations

import hashlib
import plistlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from appyard.errors import InvalidArtifact
from appyard.signing.ios.blobs import HASH_OIDS, CodeDirectory
from appyard.signing.ios.mobileprovision import _verify_signer
from appyard.signing.ios.plist import load_plist
from appyard.signing.keystore import SigningMaterial

OID_DATA = "1.2.840.113549.1.7.1"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SIGNING_TIME = "1.2.840.113549.1.9.5"
OID_CDHASHES = "1.2.840.113635.100.9.1"
OID_CDHASHES2 = "1.2.840.113635.100.9.2"
OID_RSA = "1.2.840.113549.1.1.1"
OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"

_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError)


# --- a small DER writer -----------------------------------------------------------------------


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _seq(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def _set(*items: bytes) -> bytes:
    return _tlv(0x31, b"".join(sorted(items)))


def _oid(dotted: str) -> bytes:
    return bytes(asn1_core.ObjectIdentifier(dotted).dump())


def _int(value: int) -> bytes:
    return bytes(asn1_core.Integer(value).dump())


def _octets(value: bytes) -> bytes:
    return _tlv(0x04, value)


def _algorithm(dotted: str, *, null: bool = True) -> bytes:
    return _seq(_oid(dotted), b"\x05\x00") if null else _seq(_oid(dotted))


def _attribute(dotted: str, *values: bytes) -> bytes:
    return _seq(_oid(dotted), _set(*values))


def cdhashes_plist(cds: Sequence[CodeDirectory]) -> bytes:
    return plistlib.dumps({"cdhashes": [cd.cdhash for cd in cds]}, fmt=plistlib.FMT_XML)


def sign_code_directories(
    material: SigningMaterial, cds: Sequence[CodeDirectory], *, signing_time: datetime
) -> bytes:
    """A detached CMS SignedData (DER) over ``cds[0]`` with the CDHashes attributes."""
    when = signing_time.astimezone(UTC).strftime("%y%m%d%H%M%SZ").encode("ascii")
    attributes = [
        _attribute(OID_CONTENT_TYPE, _oid(OID_DATA)),
        _attribute(OID_SIGNING_TIME, _tlv(0x17, when)),
        _attribute(OID_MESSAGE_DIGEST, _octets(hashlib.sha256(cds[0].raw).digest())),
        _attribute(OID_CDHASHES, _octets(cdhashes_plist(cds))),
        _attribute(
            OID_CDHASHES2,
            *(_seq(_oid(HASH_OIDS[cd.hash_name]), _octets(cd.cdhash_full)) for cd in cds),
        ),
    ]
    signed_attrs = _set(*attributes)
    signature = material.sign(signed_attrs, hashes.SHA256())
    cert = material.certificate
    is_rsa = isinstance(material.private_key, rsa.RSAPrivateKey)
    signer_info = _seq(
        _int(1),
        _seq(cert.issuer.public_bytes(), _int(cert.serial_number)),
        _algorithm(HASH_OIDS["sha256"]),
        b"\xa0" + signed_attrs[1:],  # [0] IMPLICIT SET OF Attribute
        _algorithm(OID_RSA) if is_rsa else _algorithm(OID_ECDSA_SHA256, null=False),
        _octets(signature),
    )
    certificates = b"".join(c.public_bytes(serialization.Encoding.DER) for c in material.cert_chain)
    signed_data = _seq(
        _int(1),
        _set(_algorithm(HASH_OIDS["sha256"])),
        _seq(_oid(OID_DATA)),
        _tlv(0xA0, certificates),
        _set(signer_info),
    )
    return _seq(_oid(OID_SIGNED_DATA), _tlv(0xA0, signed_data))


# --- checking ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CmsCheck:
    """What the CMS signature says, and what is wrong with it (``problems`` empty: intact)."""

    problems: tuple[str, ...]
    signer_der: bytes | None = field(default=None, repr=False)
    chain_der: tuple[bytes, ...] = field(default=(), repr=False)
    signing_time: datetime | None = None
    cdhashes: tuple[bytes, ...] = ()  # the plist attribute's list
    cdhashes2: tuple[tuple[str, bytes], ...] = ()  # (hash name, full hash)


def _attr_values(signer: Any, dotted: str) -> list[bytes]:
    attrs = signer["signed_attrs"]
    if isinstance(attrs, asn1_core.Void):
        return []
    out: list[bytes] = []
    for attr in attrs:
        if attr["type"].dotted == dotted:
            out.extend(bytes(v.dump()) for v in attr["values"])
    return out


def check_cms(data: bytes, cds: Sequence[CodeDirectory]) -> CmsCheck:
    """Check a CMS signature against the CodeDirectories it must cover (slot 0 first)."""
    try:
        info = asn1_cms.ContentInfo.load(data)
        if info["content_type"].native != "signed_data":
            return CmsCheck(("the CMS signature is not SignedData",))
        signed = info["content"]
        certs = [c.chosen for c in signed["certificates"] if c.name == "certificate"]
        signers = list(signed["signer_infos"])
    except _ERRORS as exc:
        return CmsCheck((f"the CMS signature cannot be read ({exc})",))
    if len(signers) != 1:
        return CmsCheck((f"the CMS signature has {len(signers)} signers, not one",))
    signer = signers[0]
    problems: list[str] = []
    try:
        ok, cert = _verify_signer(signer, certs, cds[0].raw)
    except _ERRORS:
        ok, cert = False, None
    if cert is None:
        problems.append("the CMS signature does not carry its signer's certificate")
    elif not ok:
        problems.append(
            "the CMS signature does not verify over the CodeDirectory (message digest or "
            "signature mismatch)"
        )
    signing_time = None
    cdhashes: tuple[bytes, ...] = ()
    cdhashes2: list[tuple[str, bytes]] = []
    try:
        for raw in _attr_values(signer, OID_SIGNING_TIME):
            value = asn1_core.load(raw).native
            if isinstance(value, datetime):
                signing_time = value
        plists = _attr_values(signer, OID_CDHASHES)
        if plists:
            content = asn1_core.load(plists[0]).native
            parsed = load_plist(content, what="the CDHashes attribute")[0]
            listed = parsed.get("cdhashes")
            if not isinstance(listed, list) or not all(isinstance(h, bytes) for h in listed):
                problems.append("the CDHashes attribute is not a plist with a cdhashes list")
            else:
                cdhashes = tuple(listed)
                if list(cdhashes) != [cd.cdhash for cd in cds]:
                    problems.append(
                        "the CDHashes attribute does not list the CodeDirectories' hashes"
                    )
        names = {v: k for k, v in HASH_OIDS.items()}
        for raw in _attr_values(signer, OID_CDHASHES2):
            seq = asn1_core.load(raw)
            oid = seq[0].dotted if isinstance(seq[0], asn1_core.ObjectIdentifier) else "?"
            digest = seq[1].native
            cdhashes2.append((names.get(oid, oid), bytes(digest)))
        if cdhashes2:
            expected = {(cd.hash_name, cd.cdhash_full) for cd in cds}
            for entry in cdhashes2:
                if entry not in expected:
                    problems.append(
                        f"the CDHashes2 attribute's {entry[0]} hash matches no CodeDirectory"
                    )
    except InvalidArtifact as exc:
        problems.append(exc.message)
    except _ERRORS as exc:
        problems.append(f"a CDHashes attribute cannot be read ({exc})")
    if not cdhashes and not cdhashes2:
        problems.append("the CMS signature has no CDHashes attribute")
    return CmsCheck(
        problems=tuple(problems),
        signer_der=bytes(cert.dump()) if cert is not None else None,
        chain_der=tuple(bytes(c.dump()) for c in certs),
        signing_time=signing_time,
        cdhashes=cdhashes,
        cdhashes2=tuple(cdhashes2),
    )
