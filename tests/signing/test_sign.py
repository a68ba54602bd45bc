"""The signer, proven against the reference tools.

For every APK fixture and every key type, the signed output passes
``apksigner verify --verbose --print-certs`` with the expected schemes and certificate and
``zipalign -c -p 4``, and keeps uncompressed ``.so`` data on 16 KiB. Signed AABs pass
``jarsigner -verify``. Expected minSdk values come from ``aapt`` (expected.json), never from
appyard. Missing tools or third-party fixtures skip locally and fail with CI=true.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import struct
import subprocess
import tracemalloc
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from appyard.errors import BadRequest, InvalidArtifact
from appyard.signing.align import align_apk, check_alignment
from appyard.signing.keystore import SigningMaterial, load_keystore
from appyard.signing.sign import (
    UnsupportedScheme,
    choose_schemes,
    min_sdk_of,
    parse_schemes,
    sign_aab,
    sign_apk,
)
from appyard.signing.v1_sign import UnsupportedMinSdk
from appyard.signing.verify import verify_apk, verify_jar
from tests.conftest import (
    FIXTURES,
    SHARED,
    apk_with_large_assets,
    artifact,
    need,
    reference_truth,
)
from tests.signing.test_align import assert_aligned
from tests.signing.test_keystore import (
    KEY_TYPES,
    expected_subject,
    load_key_type,
    make_cert,
    write_p12,
)

GENERATED_APKS = [
    "fixture-unsigned.apk",
    "fixture-v1-only.apk",
    "fixture-release-v1v2v3.apk",
    "fixture-debug-signed.apk",
    "fixture-debuggable.apk",
    "fixture-release-vc2.apk",
    "fixture-otherkey-vc2.apk",
    "fixture-native-libs.apk",
]
THIRDPARTY_APKS = [
    "urzip.apk",
    "urzip-release.apk",
    "urzip-release-unsigned.apk",
    "urzip-badsig.apk",
    "v2.only.sig_2.apk",
    "v1.v2.sig_1020.apk",
    "obb.mainpatch.current_1619.apk",
    "obb.mainpatch.current_1619_another-release-key.apk",
    "org.bitbucket.tickytacky.mirrormirror_1.apk",
    "org.bitbucket.tickytacky.mirrormirror_4.apk",
    "org.dyndns.fules.ck_20.apk",
    "org.sajeg.fallingblocks_3.apk",
    "janus.apk",
    "minimal_targetsdk_30_unsigned.apk",
    "no.min.target.sdk_987.apk",
    "duplicate.permisssions_9999999.apk",
    "issue-1128-poc1.apk",
    "golden-aligned-v1v2v3-out.apk",
    "golden-aligned-v1v2v3-lineage-out.apk",
    "golden-aligned-v3-out.apk",
    "two-signers.apk",
    "v2-only-with-ecdsa-sha256-p256.apk",
    "v1-only-with-dsa-sha256-1.2.840.10040.4.1-2048.apk",
    "v2-only-with-rsa-pkcs1-sha256-2048-sig-does-not-verify.apk",
    "debuggable-resource.apk",
    "empty-unsigned.apk",
]
APKS = [f"generated/{n}" for n in GENERATED_APKS] + [f"thirdparty/{n}" for n in THIRDPARTY_APKS]
AABS = ["generated/fixture-bundle.aab", "thirdparty/install-time-permanent-modules.aab"]
V2_BLOCK_ID, V3_BLOCK_ID = 0x7109871A, 0xF05368C0


# --- reference tools ------------------------------------------------------------------------------


def tool(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"{name} is not installed")
    assert path is not None
    return path


@dataclass(frozen=True)
class Verification:
    ok: bool
    schemes: dict[str, bool]
    signers: list[tuple[str, str]]  # (certificate DN, certificate SHA-256)
    output: str


def apksigner_verify(path: Path, *extra: str) -> Verification:
    result = subprocess.run(
        [tool("apksigner"), "verify", "--verbose", "--print-certs", *extra, str(path)],
        capture_output=True,
        text=True,
    )
    out = result.stdout + result.stderr
    schemes = {
        f"v{m.group(1)}": m.group(2) == "true"
        for m in re.finditer(r"^Verified using v(\d) scheme .*: (true|false)$", out, re.M)
    }
    dns = re.findall(r"^Signer #\d+ certificate DN: (.*)$", out, re.M)
    digests = re.findall(r"^Signer #\d+ certificate SHA-256 digest: (\w+)$", out, re.M)
    return Verification(result.returncode == 0, schemes, list(zip(dns, digests, strict=True)), out)


def zipalign_ok(path: Path) -> bool:
    return (
        subprocess.run(
            [tool("zipalign"), "-c", "-p", "4", str(path)], capture_output=True
        ).returncode
        == 0
    )


def fixture(rel: str) -> Path:
    return artifact(rel)


@cache
def expected_json() -> dict[str, dict[str, Any]]:
    return reference_truth()


def reference_min_sdk(rel: str, tmp: Path) -> int | None:
    """minSdk according to aapt: expected.json, else aapt on an aligned copy (Janus files)."""
    entry = expected_json().get(rel.split("/")[-1], {})
    aapt = entry.get("aapt")
    if isinstance(aapt, dict) and aapt.get("ok"):
        return int(aapt.get("sdkVersion") or 1)
    try:
        align_apk(fixture(rel), tmp / "aligned-for-aapt.apk")
    except InvalidArtifact:
        return None
    result = subprocess.run(
        [tool("aapt"), "dump", "badging", str(tmp / "aligned-for-aapt.apk")],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        return None
    found = re.search(r"^sdkVersion:'(\d+)'", result.stdout, re.M)
    return int(found.group(1)) if found else 1


def cert_sha256(material: SigningMaterial) -> str:
    return hashlib.sha256(material.certificate.public_bytes(Encoding.DER)).hexdigest()


def signing_block_ids(path: Path) -> list[int]:
    data = path.read_bytes()
    eocd = data.rfind(b"PK\x05\x06")
    cd_offset = struct.unpack_from("<I", data, eocd + 16)[0]
    if data[cd_offset - 16 : cd_offset] != b"APK Sig Block 42":
        return []
    size = struct.unpack_from("<Q", data, cd_offset - 24)[0]
    pos, end, ids = cd_offset - size, cd_offset - 24, []
    while pos < end:
        length, block_id = struct.unpack_from("<QI", data, pos)
        ids.append(block_id)
        pos += 8 + length
    return ids


class Materials(dict[str, SigningMaterial]):
    """Every key type, opened (or made: keytool for ec-jks) on first use, once per module."""

    def __init__(self, tmp: pytest.TempPathFactory) -> None:
        super().__init__()
        self._tmp = tmp

    def __missing__(self, name: str) -> SigningMaterial:
        self[name] = material = load_key_type(name, self._tmp.mktemp(name))
        return material


@pytest.fixture(scope="module")
def materials(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SigningMaterial]:
    return Materials(tmp_path_factory)


# --- every fixture x every key --------------------------------------------------------------------


@pytest.mark.parametrize("key_type", KEY_TYPES)
@pytest.mark.parametrize("rel", APKS)
def test_signed_apk_verifies_with_apksigner(
    rel: str, key_type: str, materials: dict[str, SigningMaterial], tmp_path: Path
) -> None:
    src, out = fixture(rel), tmp_path / "signed.apk"
    material = materials[key_type]
    min_sdk = reference_min_sdk(rel, tmp_path)

    if min_sdk is None:  # not an APK aapt can read (an empty zip): refused, nothing written
        with pytest.raises(InvalidArtifact):
            sign_apk(src, out, material)
        assert not out.exists()
        return
    if material.key_algorithm == "EC" and min_sdk < 18:
        # apksigner refuses too: Android < 4.3 cannot verify ECDSA JAR signatures ...
        with pytest.raises(UnsupportedMinSdk):
            sign_apk(src, out, material)
        # ... so such an APK can only carry v2/v3, which Android 7.0+ verifies.
        sign_apk(src, out, material, schemes={"v2", "v3"})
        report = apksigner_verify(out, "--min-sdk-version", "24")
        assert report.ok, report.output
        assert report.schemes["v2"] and report.schemes["v3"]
        assert verify_apk(out, min_sdk=24).verified
        assert not verify_apk(out, min_sdk=min_sdk).verified  # no JAR signature for old Android
        return

    sign_apk(src, out, material)
    report = apksigner_verify(out)

    assert report.ok, report.output
    # apksigner checks v1 below API 24, v2 for 24-27 and v3 from 28 on; it reports what it used
    assert report.schemes == {"v1": min_sdk < 24, "v2": min_sdk < 28, "v3": True, "v4": False}
    assert report.signers == [(expected_subject(key_type), cert_sha256(material))]
    ours = verify_apk(out, min_sdk=min_sdk)  # appyard's own verifier agrees with apksigner
    assert ours.verified, ours.errors
    assert {k: ours.schemes[k] for k in ("v1", "v2", "v3")} == {
        k: report.schemes[k] for k in ("v1", "v2", "v3")
    }
    assert [c.sha256 for c in ours.signers] == [cert_sha256(material)]
    assert signing_block_ids(out)[:2] == [V2_BLOCK_ID, V3_BLOCK_ID]
    with zipfile.ZipFile(out) as zf:
        sf = [n for n in zf.namelist() if n.endswith(".SF")]
        assert sf == ([f"META-INF/{material.alias.upper()[:8]}.SF"] if min_sdk < 24 else [])
    assert zipalign_ok(out)
    assert_aligned(out)
    assert check_alignment(out) == []


@pytest.mark.parametrize("key_type", KEY_TYPES)
@pytest.mark.parametrize("rel", AABS)
def test_signed_aab_verifies_with_jarsigner(
    rel: str, key_type: str, materials: dict[str, SigningMaterial], tmp_path: Path
) -> None:
    src, out = fixture(rel), tmp_path / "signed.aab"
    jarsigner = shutil.which("jarsigner")
    if jarsigner is None:
        pytest.skip("jarsigner (a JDK) is not installed")

    sign_aab(src, out, materials[key_type])
    result = subprocess.run(
        [jarsigner, "-verify", "-verbose", "-certs", str(out)], capture_output=True, text=True
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "jar verified." in result.stdout
    assert "unsigned entries" not in result.stdout
    assert expected_subject(key_type) in result.stdout
    assert verify_jar(out).verified  # appyard's own verifier agrees with jarsigner
    assert signing_block_ids(out) == []
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(out) as b:
        unsigned = [n for n in a.namelist() if not n.startswith("META-INF/")]
        assert [n for n in b.namelist() if not n.startswith("META-INF/")] == unsigned
        for name in unsigned:
            assert a.read(name) == b.read(name)


# --- scheme choice --------------------------------------------------------------------------------


def test_schemes_follow_min_sdk_like_apksigner() -> None:
    assert choose_schemes(1) == {"v1", "v2", "v3"}
    assert choose_schemes(23) == {"v1", "v2", "v3"}
    assert choose_schemes(24) == {"v2", "v3"}
    assert choose_schemes(33) == {"v2", "v3"}


def test_min_sdk_is_read_from_the_manifest_as_aapt_reads_it() -> None:
    checked = 0
    for name, entry in expected_json().items():
        aapt = entry.get("aapt")
        if entry.get("kind") != "apk" or not isinstance(aapt, dict) or not aapt.get("ok"):
            continue
        rel = str(entry["path"])
        path = (
            FIXTURES / rel.split("/")[-1]
            if rel.startswith("generated/")
            else SHARED / "fixtures" / rel
        )
        if path.exists():
            assert min_sdk_of(path) == int(aapt.get("sdkVersion") or 1), name
            checked += 1
    assert checked >= 8


@pytest.mark.parametrize(
    ("text", "expected"),
    [("v1,v2,v3", {"v1", "v2", "v3"}), (" V2 , v3 ", {"v2", "v3"}), ("v1", {"v1"})],
)
def test_scheme_lists_parse(text: str, expected: set[str]) -> None:
    assert parse_schemes(text) == expected


@pytest.mark.parametrize("text", ["", "v4", "v1,v3.1", ","])
def test_unknown_or_empty_schemes_are_refused(text: str) -> None:
    with pytest.raises(UnsupportedScheme) as caught:
        parse_schemes(text)
    assert isinstance(caught.value, BadRequest)


@pytest.mark.parametrize(
    ("schemes", "expected"),
    [
        ({"v1"}, {"v1": True, "v2": False, "v3": False}),
        ({"v1", "v2"}, {"v1": True, "v2": True, "v3": False}),
        ({"v2"}, {"v1": False, "v2": True, "v3": False}),
        ({"v3"}, {"v1": False, "v2": False, "v3": True}),
    ],
)
def test_chosen_schemes_are_exactly_what_is_signed(
    schemes: set[str],
    expected: dict[str, bool],
    materials: dict[str, SigningMaterial],
    tmp_path: Path,
) -> None:
    out = tmp_path / "signed.apk"

    sign_apk(fixture("generated/fixture-unsigned.apk"), out, materials["rsa-p12"], schemes=schemes)
    # without v1, only Android 7.0+ (API 24) can verify: ask apksigner about that range
    report = apksigner_verify(out, *([] if "v1" in schemes else ["--min-sdk-version", "24"]))

    assert report.ok, report.output
    assert {k: report.schemes[k] for k in expected} == expected
    assert zipalign_ok(out)


def test_min_sdk_24_drops_the_jar_signature(
    materials: dict[str, SigningMaterial], tmp_path: Path
) -> None:
    out = tmp_path / "signed.apk"

    sign_apk(fixture("generated/fixture-release-v1v2v3.apk"), out, materials["ec-p12"], min_sdk=24)

    with zipfile.ZipFile(out) as zf:
        assert not [n for n in zf.namelist() if n.startswith("META-INF/")]
    assert apksigner_verify(out, "--min-sdk-version", "24").ok


@pytest.mark.parametrize(
    ("rel", "attribute"),
    [
        ("thirdparty/urzip.apk", "SHA1-Digest"),  # minSdk 4: Android < 4.3 only knows SHA-1
        ("generated/fixture-unsigned.apk", "SHA-256-Digest"),
    ],
)
def test_jar_digest_follows_min_sdk(
    rel: str, attribute: str, materials: dict[str, SigningMaterial], tmp_path: Path
) -> None:
    sign_apk(fixture(rel), tmp_path / "s.apk", materials["rsa-p12"])

    with zipfile.ZipFile(tmp_path / "s.apk") as zf:
        manifest = zf.read("META-INF/MANIFEST.MF").decode()
        sf = zf.read("META-INF/RELEASE.SF").decode()
    assert f"\r\n{attribute}: " in manifest
    assert "X-Android-APK-Signed: 2, 3\r\n" in sf


def test_jar_manifest_digests_match_the_entries(
    materials: dict[str, SigningMaterial], tmp_path: Path
) -> None:
    sign_apk(fixture("generated/fixture-native-libs.apk"), tmp_path / "s.apk", materials["rsa-jks"])

    with zipfile.ZipFile(tmp_path / "s.apk") as zf:
        manifest = zf.read("META-INF/MANIFEST.MF").decode().replace("\r\n ", "")
        digests = dict(re.findall(r"Name: (.*)\r\nSHA-256-Digest: (.*)\r\n", manifest))
        names = [n for n in zf.namelist() if not n.startswith("META-INF/") and not n.endswith("/")]
        assert sorted(digests) == sorted(names)
        for name in names:
            assert (
                digests[name] == base64.b64encode(hashlib.sha256(zf.read(name)).digest()).decode()
            )


# --- re-signing, tampering, hostile input ---


def test_resigning_with_rsa_gives_the_same_bytes(
    materials: dict[str, SigningMaterial], tmp_path: Path
) -> None:
    sign_apk(
        fixture("generated/fixture-native-libs.apk"), tmp_path / "once.apk", materials["rsa-p12"]
    )
    sign_apk(tmp_path / "once.apk", tmp_path / "twice.apk", materials["rsa-p12"])

    assert (tmp_path / "once.apk").read_bytes() == (tmp_path / "twice.apk").read_bytes()


def test_signing_in_place_replaces_the_file(
    materials: dict[str, SigningMaterial], tmp_path: Path
) -> None:
    apk = tmp_path / "app.apk"
    shutil.copyfile(fixture("generated/fixture-unsigned.apk"), apk)

    sign_apk(apk, apk, materials["rsa-p12"])

    assert apksigner_verify(apk).ok
    assert [p.name for p in tmp_path.iterdir()] == ["app.apk"]


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(data)


@pytest.mark.parametrize("key_type", ["rsa-p12", "ec-pem-chain"])
@pytest.mark.parametrize("where", ["entry", "central_directory", "signing_block"])
def test_apksigner_rejects_a_flipped_byte(
    where: str, key_type: str, materials: dict[str, SigningMaterial], tmp_path: Path
) -> None:
    out = tmp_path / "signed.apk"
    sign_apk(fixture("generated/fixture-unsigned.apk"), out, materials[key_type], min_sdk=24)
    data = out.read_bytes()
    eocd = data.rfind(b"PK\x05\x06")
    cd_offset = struct.unpack_from("<I", data, eocd + 16)[0]
    with zipfile.ZipFile(out) as zf:
        dex = zf.getinfo("classes.dex")
    offsets = {
        "entry": dex.header_offset + 30 + len("classes.dex") + 10,
        "central_directory": cd_offset + 46 + 5,  # inside the first entry's name
        # inside the v2 signer's signed data (the block ends in unsigned zero padding)
        "signing_block": cd_offset - struct.unpack_from("<Q", data, cd_offset - 24)[0] + 120,
    }
    assert apksigner_verify(out, "--min-sdk-version", "24").ok
    assert verify_apk(out, min_sdk=24).verified

    _flip(out, offsets[where])

    assert not apksigner_verify(out, "--min-sdk-version", "24").ok
    assert not verify_apk(out, min_sdk=24).verified


def test_unsigned_apk_is_refused_by_both_verifiers(tmp_path: Path) -> None:
    src = fixture("generated/fixture-unsigned.apk")

    assert not apksigner_verify(src).ok
    ours = verify_apk(src, min_sdk=reference_min_sdk("generated/fixture-unsigned.apk", tmp_path))
    assert not ours.verified and ours.errors


def test_v1_signed_output_tampered_in_an_entry_is_refused_by_both(
    materials: dict[str, SigningMaterial], tmp_path: Path
) -> None:
    """v1+v2+v3 output (minSdk < 24): flip a byte of classes.dex, verify for all versions."""
    out = tmp_path / "signed.apk"
    sign_apk(fixture("generated/fixture-unsigned.apk"), out, materials["ec-jks"], min_sdk=21)
    assert apksigner_verify(out).ok and verify_apk(out, min_sdk=21).verified
    with zipfile.ZipFile(out) as zf:
        dex = zf.getinfo("classes.dex")
    _flip(out, dex.header_offset + 30 + len("classes.dex") + dex.compress_size // 2)

    assert not apksigner_verify(out).ok
    assert not verify_apk(out, min_sdk=21).verified


def test_rsa_4096_key_signs_like_apksigner_expects(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    cert = make_cert(key, cn="Appyard Test RSA 4096")
    store = write_p12(tmp_path / "rsa4096.p12", key, [cert], password="pw-4096", alias="big")
    material = load_keystore(store, password="pw-4096", alias="big")
    out = tmp_path / "signed.apk"

    sign_apk(fixture("generated/fixture-native-libs.apk"), out, material)

    report = apksigner_verify(out)
    assert report.ok, report.output
    assert report.signers == [("CN=Appyard Test RSA 4096", cert_sha256(material))]
    assert "Signer #1 key size (bits): 4096" in report.output
    assert verify_apk(out, min_sdk=min_sdk_of(out)).verified
    assert zipalign_ok(out)
    assert_aligned(out)


def test_corrupt_entry_is_refused_not_signed(
    materials: dict[str, SigningMaterial], tmp_path: Path
) -> None:
    src = tmp_path / "corrupt.apk"
    shutil.copyfile(fixture("generated/fixture-unsigned.apk"), src)
    with zipfile.ZipFile(src) as zf:
        dex = zf.getinfo("classes.dex")
    _flip(src, dex.header_offset + 30 + len("classes.dex") + dex.compress_size // 2)

    with pytest.raises(InvalidArtifact) as caught:
        sign_apk(src, tmp_path / "out.apk", materials["rsa-p12"])

    assert caught.value.details["reason"] == "corrupt_entry"
    assert not (tmp_path / "out.apk").exists()


def test_entry_name_with_a_line_break_is_refused(
    materials: dict[str, SigningMaterial], tmp_path: Path
) -> None:
    src = tmp_path / "bad.apk"
    with (
        zipfile.ZipFile(fixture("generated/fixture-unsigned.apk")) as a,
        zipfile.ZipFile(src, "w") as b,
    ):
        for info in a.infolist():
            b.writestr(info, a.read(info))
        b.writestr("assets/evil\r\nName: x", b"x")

    with pytest.raises(InvalidArtifact):
        sign_apk(src, tmp_path / "out.apk", materials["rsa-p12"])


def test_apk_without_manifest_is_refused(
    materials: dict[str, SigningMaterial], tmp_path: Path
) -> None:
    src = tmp_path / "nomanifest.apk"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("classes.dex", b"dex\n035\x00")

    with pytest.raises(InvalidArtifact):
        sign_apk(src, tmp_path / "out.apk", materials["rsa-p12"], min_sdk=21)


def test_signing_memory_stays_flat_for_a_large_apk(
    materials: dict[str, SigningMaterial], tmp_path: Path
) -> None:
    src = apk_with_large_assets(
        tmp_path / "big.apk", fixture("generated/fixture-unsigned.apk"), mib=24
    )

    tracemalloc.start()
    try:
        sign_apk(src, tmp_path / "out.apk", materials["rsa-p12"])
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 8 * 1024 * 1024, f"peak Python allocation {peak} bytes for a 48 MB APK"
    assert apksigner_verify(tmp_path / "out.apk").ok
