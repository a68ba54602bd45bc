"""JAR signatures (``META-INF/MANIFEST.MF``, ``*.SF``, ``*.RSA|EC|DSA``), as ``jarsigner``
verifies them. Used for Android App Bundles, which carry no APK signing block.

:func:`jar_signers` reads who signed (cheap: the signature blocks only);
:func:`verify_jar` also checks, like ``jarsigner -verify``:

1. each signature block is a PKCS#7 SignedData whose signer (found by issuer and serial
   number) signed the ``.SF`` file (directly, or through signed attributes whose
   ``messageDigest`` is the ``.SF`` digest);
2. the ``.SF`` digest of the whole manifest (``*-Digest-Manifest``) matches, or else the
   digest of every manifest section it lists;
3. every entry named in the manifest that is present in the zip has the content digest the
   manifest records (``SHA-256-Digest``, ``SHA1-Digest``...).

Entries in the zip that the manifest does not list are reported as ``unsigned_entries``
(jarsigner warns about them but still says "jar verified"). Broken signature data is a
verification failure with a reason, never an exception.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from appyard.inspect.archive import SafeZip
from appyard.signing.legacy import DSAPublicKey, certificate_key

MANIFEST = "META-INF/MANIFEST.MF"
MAX_MANIFEST_BYTES = 32 * 1024 * 1024
MAX_SF_BYTES = 32 * 1024 * 1024
MAX_BLOCK_BYTES = 1024 * 1024
MAX_SIGNERS = 10
MAX_SIGNED_ENTRY_BYTES = 8 * 1024 * 1024 * 1024
MAX_LISTED = 100  # unsigned entries / errors kept in the report

_BLOCK = re.compile(r"^META-INF/([^/]+)\.(RSA|DSA|EC)$", re.IGNORECASE)
_LINE = re.compile(rb"\r\n|\r|\n")
_DIGESTS = {
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
    "SHA1": "sha1",
    "SHA": "sha1",
    "SHA-1": "sha1",
    "MD5": "md5",
}
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),  # noqa: S303 - verifying existing signatures
    "sha224": hashes.SHA224(),
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}
# asn1crypto and cryptography raise these on malformed or unsupported signature data
_BAD_DATA = (ValueError, TypeError, KeyError, IndexError, OverflowError, UnsupportedAlgorithm)


@dataclass(frozen=True)
class JarSigner:
    name: str  # the signer's file name without extension, e.g. "META-INF/RELEASE"
    block: str  # the signature block entry, e.g. "META-INF/RELEASE.RSA"
    cert_sha256: str | None  # the signer certificate's SHA-256 (hex), None if unreadable
    subject: str | None  # RFC 4514 ("CN=...,O=...,C=US")
    issuer: str | None
    key_algorithm: str | None  # "RSA", "EC", "DSA"


@dataclass(frozen=True)
class JarSignature:
    signers: tuple[JarSigner, ...]
    verified: bool | None  # None: not checked (facts only)
    errors: tuple[str, ...]  # why it does not verify, in jarsigner's words where possible
    unsigned_entries: tuple[str, ...]  # entries the manifest does not cover (first 100)


def signature_blocks(zf: SafeZip) -> list[str]:
    return sorted(n for n in zf.names() if _BLOCK.match(n))


def _digest_name(attribute: str) -> str | None:
    return _DIGESTS.get(attribute.upper())


@dataclass
class _Section:
    attributes: dict[str, str]  # keys lowercased
    raw: bytes


def parse_manifest(raw: bytes) -> list[_Section]:
    """java.util.jar.Manifest sections: the main one first, each with its raw bytes."""
    sections: list[_Section] = []
    attributes: dict[str, str] = {}
    last: str | None = None
    start = pos = 0
    length = len(raw)
    while pos < length:
        match = _LINE.search(raw, pos)
        line_end, next_pos = (match.start(), match.end()) if match else (length, length)
        line = raw[pos:line_end]
        if not line:  # a blank line ends a section (the main section may be empty)
            if attributes or not sections:
                sections.append(_Section(attributes, raw[start:next_pos]))
            attributes, last, start = {}, None, next_pos
        elif line.startswith(b" ") and last is not None:
            attributes[last] += line[1:].decode("utf-8", errors="replace")
        else:
            key, sep, value = line.partition(b":")
            if sep:
                last = key.decode("utf-8", errors="replace").strip().lower()
                attributes[last] = value.removeprefix(b" ").decode("utf-8", errors="replace")
            else:
                last = None
        pos = next_pos
    if attributes:
        sections.append(_Section(attributes, raw[start:]))
    return sections


def _cert_facts(cert: asn1_x509.Certificate) -> tuple[str | None, str | None, str | None, str]:
    der = cert.dump()
    try:
        parsed = x509.load_der_x509_certificate(der)
        subject: str | None = parsed.subject.rfc4514_string()
        issuer: str | None = parsed.issuer.rfc4514_string()
    except _BAD_DATA:
        subject = issuer = None
    algorithm = None
    try:
        algorithm = {"rsa": "RSA", "ec": "EC", "dsa": "DSA"}.get(
            cert.public_key.algorithm, cert.public_key.algorithm.upper()
        )
    except _BAD_DATA:
        algorithm = None
    return subject, issuer, algorithm, hashlib.sha256(der).hexdigest()


def _signer_cert(signed: cms.SignedData, info: cms.SignerInfo) -> asn1_x509.Certificate | None:
    sid = info["sid"]
    for choice in signed["certificates"] or []:
        if choice.name != "certificate":
            continue
        cert = choice.chosen
        if sid.name == "issuer_and_serial_number":
            wanted = sid.chosen
            if (
                cert.issuer == wanted["issuer"]
                and cert.serial_number == wanted["serial_number"].native
            ):
                return cert
        elif sid.name == "subject_key_identifier" and cert.key_identifier == sid.chosen.native:
            return cert
    return None


def _read_block(zf: SafeZip, block: str) -> tuple[JarSigner, cms.SignedData | None, str | None]:
    name = block.rsplit(".", 1)[0]
    try:
        data = zf.read(block, limit=MAX_BLOCK_BYTES)
        info = cms.ContentInfo.load(data)
        signed = info["content"]
        if info["content_type"].native != "signed_data" or not isinstance(signed, cms.SignedData):
            raise ValueError("not a PKCS#7 SignedData")
        infos = signed["signer_infos"]
        if len(infos) != 1:
            raise ValueError(f"{len(infos)} signer infos")
        cert = _signer_cert(signed, infos[0])
        if cert is None:
            raise ValueError("the signer's certificate is not in the block")
        subject, issuer, algorithm, sha256 = _cert_facts(cert)
    except _BAD_DATA as exc:
        signer = JarSigner(name, block, None, None, None, None)
        return signer, None, f"{block} is not a valid signature block ({exc})"
    return JarSigner(name, block, sha256, subject, issuer, algorithm), signed, None


def jar_signers(zf: SafeZip) -> tuple[JarSigner, ...]:
    """Who signed the JAR (no verification)."""
    return tuple(_read_block(zf, b)[0] for b in signature_blocks(zf)[:MAX_SIGNERS])


def _verify_block(signed: cms.SignedData, sf: bytes) -> str | None:
    """None when the block's signer signed ``sf``, else the reason."""
    try:
        info = signed["signer_infos"][0]
        cert = _signer_cert(signed, info)
        if cert is None:
            return "the signer's certificate is not in the block"
        digest_name = info["digest_algorithm"]["algorithm"].native
        algorithm = _HASHES.get(digest_name)
        if algorithm is None:
            return f"unsupported digest algorithm {digest_name}"
        data = sf
        attrs = info["signed_attrs"]
        if attrs.native is not None and len(attrs):
            message_digest = None
            for attr in attrs:
                if attr["type"].native == "message_digest":
                    message_digest = attr["values"][0].native
            if message_digest != hashlib.new(digest_name, sf).digest():
                return "the signed attributes' message digest does not match the .SF file"
            data = b"\x31" + attrs.dump()[1:]
        key = certificate_key(cert.dump())
        signature = info["signature"].native
        sig_algo = info["signature_algorithm"].signature_algo
        if isinstance(key, rsa.RSAPublicKey) and sig_algo == "rsassa_pkcs1v15":
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and sig_algo == "ecdsa":
            key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(key, DSAPublicKey) and sig_algo == "dsa":
            key.verify(signature, data, algorithm)
        else:
            return f"unsupported signature algorithm {sig_algo}"
    except InvalidSignature:
        return "the signature does not verify"
    except _BAD_DATA as exc:
        return f"the signature block cannot be read ({exc})"
    return None


def _digests(attributes: dict[str, str], suffix: str) -> dict[str, bytes]:
    """{hashlib name: expected digest} from "<ALG><suffix>" attributes."""
    out: dict[str, bytes] = {}
    for key, value in attributes.items():
        if not key.endswith(suffix):
            continue
        name = _digest_name(key[: -len(suffix)])
        if name is None:
            continue
        try:
            out[name] = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            out[name] = b""
    return out


def _jar_name(digest: str) -> str:
    return {"sha256": "SHA-256", "sha1": "SHA1", "sha384": "SHA-384", "sha512": "SHA-512"}.get(
        digest, digest.upper()
    )


def verify_jar(zf: SafeZip, *, skip: frozenset[str] = frozenset()) -> JarSignature:
    """Verify the JAR signature of ``zf`` the way ``jarsigner -verify`` does."""
    blocks = signature_blocks(zf)[:MAX_SIGNERS]
    errors: list[str] = []
    signers: list[JarSigner] = []
    if MANIFEST not in zf:
        return JarSignature((), False, ("the JAR has no META-INF/MANIFEST.MF",), ())
    manifest_raw = zf.read(MANIFEST, limit=MAX_MANIFEST_BYTES)
    sections = parse_manifest(manifest_raw)
    by_name = {s.attributes["name"]: s for s in sections[1:] if "name" in s.attributes}
    covered: set[str] | None = set()  # manifest sections some verified .SF covers (None: all)
    if not blocks:
        errors.append("the JAR has no signature block (META-INF/*.RSA, *.EC or *.DSA)")
    for block in blocks:
        signer, signed, problem = _read_block(zf, block)
        signers.append(signer)
        if problem is not None or signed is None:
            errors.append(problem or f"{block} cannot be read")
            continue
        sf_name = signer.name + ".SF"
        sf_entry = next((n for n in zf.names() if n.upper() == sf_name.upper()), None)
        if sf_entry is None:
            errors.append(f"{block} has no matching .SF file")
            continue
        sf = zf.read(sf_entry, limit=MAX_SF_BYTES)
        reason = _verify_block(signed, sf)
        if reason is not None:
            errors.append(f"{block}: {reason}")
            continue
        sf_errors, sf_covers = _check_sf(
            sf_entry, parse_manifest(sf), manifest_raw, sections, by_name
        )
        errors += sf_errors
        if sf_covers is None:
            covered = None
        elif covered is not None:
            covered |= sf_covers
    unsigned: list[str] = []
    for info in zf.infos():
        name = info.filename
        if info.is_dir() or name in skip or _is_signature_file(name):
            continue
        section = by_name.get(name)
        if section is None or (covered is not None and name not in covered):
            unsigned.append(name)
            continue
        expected = _digests(section.attributes, "-digest")
        if not expected:
            unsigned.append(name)
            continue
        actual = {alg: hashlib.new(alg) for alg in expected}
        for chunk in zf.iter_chunks(name, limit=MAX_SIGNED_ENTRY_BYTES):
            for h in actual.values():
                h.update(chunk)
        for alg, digest in expected.items():
            if actual[alg].digest() != digest:
                errors.append(f"{_jar_name(alg)} digest error for {name}")
                break
    return JarSignature(
        signers=tuple(signers),
        verified=not errors,
        errors=tuple(errors[:MAX_LISTED]),
        unsigned_entries=tuple(unsigned[:MAX_LISTED]),
    )


def _check_sf(
    sf_entry: str,
    sf_sections: list[_Section],
    manifest_raw: bytes,
    sections: list[_Section],
    by_name: dict[str, _Section],
) -> tuple[list[str], set[str] | None]:
    """Errors, and the manifest sections the .SF vouches for (None: the whole manifest)."""
    if not sf_sections:
        return [f"{sf_entry} is empty"], set()
    main = sf_sections[0].attributes
    whole = _digests(main, "-digest-manifest")
    if whole and all(hashlib.new(a, manifest_raw).digest() == d for a, d in whole.items()):
        return [], None
    # fall back to the per-section digests, as jarsigner does
    errors = []
    covers: set[str] = set()
    main_attrs = _digests(main, "-digest-manifest-main-attributes")
    if main_attrs and sections:
        if any(hashlib.new(a, sections[0].raw).digest() != d for a, d in main_attrs.items()):
            errors.append(f"invalid {sf_entry} digest for the manifest main attributes")
    for sf_section in sf_sections[1:]:
        name = sf_section.attributes.get("name")
        if name is None:
            continue
        expected = _digests(sf_section.attributes, "-digest")
        section = by_name.get(name)
        if section is None:
            continue  # jarsigner ignores .SF sections for entries the manifest lacks
        if not expected or any(
            hashlib.new(a, section.raw).digest() != d for a, d in expected.items()
        ):
            errors.append(f"invalid {sf_entry} file digest for manifest section of {name}")
        else:
            covers.add(name)
    if not whole and len(sf_sections) == 1:
        errors.append(f"{sf_entry} has no manifest digest")
    return errors, covers


def _is_signature_file(name: str) -> bool:
    if not name.upper().startswith("META-INF/") or "/" in name[len("META-INF/") :]:
        return False
    upper = name.upper()
    return upper == "META-INF/MANIFEST.MF" or upper.endswith((".SF", ".RSA", ".DSA", ".EC"))
