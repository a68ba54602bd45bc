"""APK Signature Scheme v3.1 (key rotation targeted at Android 13+), through inspect_apk.

No fixture carries a v3.1 block: Debian's apksigner (31.0.2) predates it and cannot write or
check one. So this test builds one the way apksigner 33+ does, from a real release-signed APK
(``sign_apk`` with tests/fixtures/keys/release.p12): the v2 block is kept, the v3 signer is the
original key restricted to API 24-32 with the rotation-min-sdk attribute (33), and a v3.1
signer with the rotated key (other.p12, EC P-256) covers API 33 and later with a
proof-of-rotation lineage release -> other whose link is signed by the original key. The
layout follows apksig (V3SchemeSigner, V3SigningCertificateLineage); each assertion is what
``apksigner verify --print-certs`` of a current build tool prints for such an APK.
"""

from __future__ import annotations

import struct
import tempfile
from functools import cache
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from appyard.checks import History
from appyard.inspect.apk import inspect_apk
from appyard.signing.keystore import SigningMaterial, load_keystore
from appyard.signing.model import ANY_SDK
from appyard.signing.sign import sign_apk
from appyard.signing.verify import verify_apk
from tests.checks.conftest import codes, run
from tests.conftest import FIXTURES

V2_ID, V3_ID, V31_ID = 0x7109871A, 0xF05368C0, 0x1B93AD61
PROOF_OF_ROTATION, ROTATION_MIN_SDK = 0x3BA06F8C, 0x559F8B02
RSA_SHA256, ECDSA_SHA256 = 0x0103, 0x0201
DEFAULT_CAPABILITIES = 0x17  # installed data, shared uid, permission, auth
MAGIC = b"APK Sig Block 42"


@cache
def keys() -> tuple[SigningMaterial, SigningMaterial]:
    old = load_keystore(FIXTURES / "keys" / "release.p12", password="fixture-release")
    new = load_keystore(FIXTURES / "keys" / "other.p12", password="fixture-other")
    return old, new


def lp(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


def seq(items: list[bytes]) -> bytes:
    return lp(b"".join(lp(i) for i in items))


def der(material: SigningMaterial) -> bytes:
    return material.certificate.public_bytes(Encoding.DER)


def algorithm(material: SigningMaterial) -> int:
    return RSA_SHA256 if isinstance(material.private_key, rsa.RSAPrivateKey) else ECDSA_SHA256


def sign(material: SigningMaterial, data: bytes) -> bytes:
    key = material.private_key
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def lineage(old: SigningMaterial, new: SigningMaterial) -> bytes:
    """SigningCertificateLineage v1: [old, new]; new's node is signed by old's key."""
    root_signed = lp(der(old)) + struct.pack("<I", 0)
    root = lp(root_signed) + struct.pack("<II", DEFAULT_CAPABILITIES, algorithm(old)) + lp(b"")
    child_signed = lp(der(new)) + struct.pack("<I", algorithm(old))
    child = (
        lp(child_signed)
        + struct.pack("<II", DEFAULT_CAPABILITIES, algorithm(new))
        + lp(sign(old, child_signed))
    )
    return struct.pack("<I", 1) + lp(root) + lp(child)


def v3_signer(
    material: SigningMaterial, digest: bytes, lo: int, hi: int, attributes: list[bytes]
) -> bytes:
    alg = algorithm(material)
    spki = asn1_x509.Certificate.load(der(material))["tbs_certificate"]["subject_public_key_info"]
    signed = (
        seq([struct.pack("<I", alg) + lp(digest)])
        + seq([der(material)])
        + struct.pack("<II", lo, hi)
        + seq(attributes)
    )
    signatures = seq([struct.pack("<I", alg) + lp(sign(material, signed))])
    return lp(signed) + struct.pack("<II", lo, hi) + signatures + lp(spki.dump())


def split(apk: bytes) -> tuple[bytes, dict[int, bytes], bytes, bytes]:
    """(entries, {block id: value}, central directory, end record) of a signed APK."""
    eocd = apk.rindex(b"PK\x05\x06")
    (cd_offset,) = struct.unpack_from("<I", apk, eocd + 16)
    assert apk[cd_offset - 16 : cd_offset] == MAGIC
    (size,) = struct.unpack_from("<Q", apk, cd_offset - 24)
    start = cd_offset - size - 8
    pairs: dict[int, bytes] = {}
    at = start + 8
    while at < cd_offset - 24:
        length, key = struct.unpack_from("<QI", apk, at)
        pairs[key] = apk[at + 12 : at + 8 + length]
        at += 8 + length
    return apk[:start], pairs, apk[cd_offset:eocd], apk[eocd:]


def join(entries: bytes, pairs: list[tuple[int, bytes]], cd: bytes, eocd: bytes) -> bytes:
    body = b"".join(struct.pack("<QI", len(v) + 4, k) + v for k, v in pairs)
    size = struct.pack("<Q", len(body) + 8 + len(MAGIC))
    block = size + body + size + MAGIC
    end = bytearray(eocd)
    struct.pack_into("<I", end, 16, len(entries) + len(block))
    return entries + block + cd + bytes(end)


def content_digest(v3_value: bytes) -> bytes:
    """The chunked SHA-256 digest the original v3 signer signed (it does not depend on the
    signing block, so the new signers can sign it too)."""
    signers = v3_value[4:]
    signer = signers[4:]
    signed = signer[4:]
    digests = signed[4:]
    record = digests[4:]
    alg, length = struct.unpack_from("<II", record, 0)
    assert alg == RSA_SHA256
    return record[8 : 8 + length]


@cache
def release_signed() -> bytes:
    """fixture-unsigned.apk signed v1+v2+v3 by appyard with the release key."""
    with tempfile.TemporaryDirectory() as tmp:
        signed = Path(tmp) / "release.apk"
        sign_apk(FIXTURES / "fixture-unsigned.apk", signed, keys()[0])
        return signed.read_bytes()


def build(
    tmp_path: Path, *, rotation_min: int = 33, with_v31: bool = True, v31_lineage: bool = True
) -> Path:
    old, new = keys()
    entries, pairs, cd, eocd = split(release_signed())
    digest = content_digest(pairs[V3_ID])
    v3 = v3_signer(old, digest, 24, 32, [struct.pack("<Ii", ROTATION_MIN_SDK, rotation_min)])
    blocks = [(V2_ID, pairs[V2_ID]), (V3_ID, lp(lp(v3)))]
    if with_v31:
        attributes = (
            [struct.pack("<I", PROOF_OF_ROTATION) + lineage(old, new)] if v31_lineage else []
        )
        v31 = v3_signer(new, digest, 33, ANY_SDK, attributes)
        blocks.append((V31_ID, lp(lp(v31))))
    out = tmp_path / "rotated-v31.apk"
    out.write_bytes(join(entries, blocks, cd, eocd))
    return out


def test_a_v31_rotation_verifies_and_reports_the_rotated_signer(tmp_path: Path) -> None:
    facts = inspect_apk(build(tmp_path))
    sig = facts.signatures
    assert sig is not None
    assert sig.verified, sig.errors
    assert (sig.v1.verified, sig.v2.verified, sig.v3.verified, sig.v31.verified) == (
        True,
        True,
        True,
        True,
    )
    assert [c.cn for c in sig.signers] == ["Appyard Fixture Other"]
    assert [c.cn for c in sig.lineage] == ["Appyard Fixture Release", "Appyard Fixture Other"]
    assert {(s.scheme, s.min_sdk, s.max_sdk) for s in sig.v3_signers} == {
        ("v31", 33, ANY_SDK),
        ("v3", 24, 32),
    }


def test_devices_before_api_33_see_the_original_signer(tmp_path: Path) -> None:
    result = verify_apk(build(tmp_path), min_sdk=21, max_sdk=32)
    assert result.verified, result.errors
    assert not result.v31.verified
    assert [c.cn for c in result.signers] == ["Appyard Fixture Release"]


def test_a_stripped_v31_block_is_detected(tmp_path: Path) -> None:
    # the v3 signer promises rotation from API 33: without the v3.1 block that is stripping
    facts = inspect_apk(build(tmp_path, with_v31=False))
    assert facts.signatures is not None
    assert not facts.signatures.verified
    assert any("v3.1 block was not found" in e for e in facts.signatures.errors)


def test_a_rotation_min_sdk_that_disagrees_with_the_v31_block_fails(tmp_path: Path) -> None:
    facts = inspect_apk(build(tmp_path, rotation_min=34))
    assert facts.signatures is not None
    assert not facts.signatures.verified


def test_signer_changed_honours_the_v31_lineage(tmp_path: Path) -> None:
    release = inspect_apk(FIXTURES / "fixture-release-v1v2v3.apk")
    assert release.signatures is not None
    history = History(signer_sha256=tuple(c.sha256 for c in release.signatures.signers))
    rotated = inspect_apk(build(tmp_path))
    assert run(rotated, "signer_changed", history=history) == []
    without_lineage = inspect_apk(build(tmp_path, v31_lineage=False))
    assert without_lineage.signatures is not None
    if without_lineage.signatures.verified:
        assert codes(run(without_lineage, "signer_changed", history=history)) == ["signer_changed"]
    else:
        pytest.fail(f"a v3.1 signer without lineage: {without_lineage.signatures.errors}")
