"""Key rotation: signing with a SigningCertificateLineage made by ``apksigner rotate``.

The lineage files come from the reference tool, never from appyard. Rotation from API 28
(the v3 block carries the rotated key) is checked end to end by Debian's apksigner 31:
``verify --print-certs`` and ``lineage --in APK``. Rotation from API 33 (the default, a v3.1
block) is newer than that apksigner: it checks what a device before Android 13 sees (the
original key in v1, v2 and v3, up to ``--max-sdk-version 32``), and appyard's verifier,
whose v3.1 code is tested on its own in tests/inspect/test_apk_v31.py, checks the rest.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from appyard.signing.keystore import SigningMaterial, load_keystore
from appyard.signing.lineage import InvalidLineage, Rotation, load_lineage, read_lineage
from appyard.signing.sign import min_sdk_of, sign_apk
from appyard.signing.verify import V3_BLOCK_ID, V31_BLOCK_ID, verify_apk
from tests.conftest import FIXTURES
from tests.signing.test_sign import apksigner_verify, signing_block_ids, tool

KEYS = FIXTURES / "keys"
RELEASE = ("release.p12", "PKCS12", "fixture-release")
OTHER = ("other.p12", "PKCS12", "fixture-other")
DEBUG = ("debug.keystore", "PKCS12", "android")
APKS = [
    "fixture-unsigned.apk",
    "fixture-release-v1v2v3.apk",
    "fixture-debuggable.apk",
    "fixture-native-libs.apk",
]


def _signer_args(key: tuple[str, str, str]) -> list[str]:
    name, kind, password = key
    return ["--ks", str(KEYS / name), "--ks-type", kind, "--ks-pass", f"pass:{password}"]


def rotate(out: Path, old: tuple[str, str, str], new: tuple[str, str, str], *more: str) -> Path:
    """``apksigner rotate --out out --old-signer old --new-signer new``."""
    subprocess.run(
        [
            tool("apksigner"),
            "rotate",
            "--out",
            str(out),
            *more,
            "--old-signer",
            *_signer_args(old),
            "--new-signer",
            *_signer_args(new),
        ],
        check=True,
        capture_output=True,
    )
    return out


@cache
def material(key: tuple[str, str, str]) -> SigningMaterial:
    return load_keystore(KEYS / key[0], password=key[2])


def sha256(key: tuple[str, str, str]) -> str:
    return hashlib.sha256(material(key).certificate.public_bytes(Encoding.DER)).hexdigest()


@pytest.fixture(scope="module")
def lineage_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """release (RSA 2048) -> other (EC P-256), made by apksigner."""
    return rotate(tmp_path_factory.mktemp("lineage") / "lineage.bin", RELEASE, OTHER)


def lineage_certs(apk: Path) -> list[str]:
    """SHA-256 of each certificate ``apksigner lineage --in APK --print-certs`` prints."""
    result = subprocess.run(
        [tool("apksigner"), "lineage", "--in", str(apk), "--print-certs"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [
        line.split(": ")[1]
        for line in result.stdout.splitlines()
        if "in lineage certificate SHA-256 digest" in line
    ]


@pytest.mark.parametrize("name", APKS)
def test_rotation_in_v3_verifies_with_apksigner_and_carries_the_lineage(
    name: str, lineage_file: Path, tmp_path: Path
) -> None:
    src, out = FIXTURES / name, tmp_path / "rotated.apk"
    rotation = Rotation(load_lineage(lineage_file), material(RELEASE), min_sdk=28)

    sign_apk(src, out, material(OTHER), rotation=rotation)

    reference = apksigner_verify(out)
    assert reference.ok, reference.output
    assert reference.schemes["v3"] is True
    assert [digest for _dn, digest in reference.signers] == [sha256(OTHER)]
    assert lineage_certs(out) == [sha256(RELEASE), sha256(OTHER)]
    ours = verify_apk(out, min_sdk=min_sdk_of(src))
    assert ours.verified, ours.errors
    assert [c.sha256 for c in ours.signers] == [sha256(OTHER)]
    assert [c.sha256 for c in ours.lineage] == [sha256(RELEASE), sha256(OTHER)]
    assert V31_BLOCK_ID not in signing_block_ids(out)


@pytest.mark.parametrize("name", APKS)
def test_default_rotation_is_v31_and_older_devices_see_the_original_key(
    name: str, lineage_file: Path, tmp_path: Path
) -> None:
    src, out = FIXTURES / name, tmp_path / "rotated.apk"

    sign_apk(
        src, out, material(OTHER), rotation=Rotation(load_lineage(lineage_file), material(RELEASE))
    )

    before_13 = apksigner_verify(out, "--max-sdk-version", "32")
    assert before_13.ok, before_13.output
    assert before_13.schemes["v3"] is True
    assert [digest for _dn, digest in before_13.signers] == [sha256(RELEASE)]
    ours = verify_apk(out, min_sdk=min_sdk_of(src))
    assert ours.verified, ours.errors
    assert ours.schemes["v31"] is True
    assert [c.sha256 for c in ours.signers] == [sha256(OTHER)]
    ranges = {(s.scheme, s.min_sdk, s.max_sdk, s.certificate.sha256) for s in ours.v3_signers}
    assert ranges == {("v3", 24, 32, sha256(RELEASE)), ("v31", 33, 0x7FFFFFFF, sha256(OTHER))}
    assert [c.sha256 for c in ours.lineage] == [sha256(RELEASE), sha256(OTHER)]


def test_apk_whose_min_sdk_reaches_the_rotation_needs_no_v31_block(
    lineage_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "rotated.apk"
    rotation = Rotation(load_lineage(lineage_file), material(RELEASE))

    sign_apk(FIXTURES / "fixture-unsigned.apk", out, material(OTHER), rotation=rotation, min_sdk=33)

    assert V3_BLOCK_ID in signing_block_ids(out) and V31_BLOCK_ID not in signing_block_ids(out)
    reference = apksigner_verify(out, "--min-sdk-version", "33")
    assert reference.ok, reference.output
    assert [digest for _dn, digest in reference.signers] == [sha256(OTHER)]


def test_a_lineage_of_three_keys_signs_v1_v2_with_the_first(tmp_path: Path) -> None:
    two = rotate(tmp_path / "two.bin", RELEASE, OTHER)
    three = rotate(tmp_path / "three.bin", OTHER, DEBUG, "--in", str(two))
    out = tmp_path / "rotated.apk"

    sign_apk(
        FIXTURES / "fixture-unsigned.apk",
        out,
        material(DEBUG),
        rotation=Rotation(load_lineage(three), material(RELEASE), min_sdk=28),
    )

    reference = apksigner_verify(out)
    assert reference.ok, reference.output
    assert [digest for _dn, digest in reference.signers] == [sha256(DEBUG)]
    assert lineage_certs(out) == [sha256(RELEASE), sha256(OTHER), sha256(DEBUG)]
    v2_only = apksigner_verify(out, "--max-sdk-version", "27")
    assert [digest for _dn, digest in v2_only.signers] == [sha256(RELEASE)]


def test_flipped_byte_in_the_v31_lineage_is_refused(lineage_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "rotated.apk"
    lineage = load_lineage(lineage_file)
    sign_apk(
        FIXTURES / "fixture-unsigned.apk",
        out,
        material(OTHER),
        rotation=Rotation(lineage, material(RELEASE)),
    )
    data = bytearray(out.read_bytes())
    at = bytes(data).index(lineage.encoded) + len(lineage.encoded) - 40  # in the link's signature
    data[at] ^= 0x01
    out.write_bytes(bytes(data))

    ours = verify_apk(out, min_sdk=21)

    assert not ours.verified
    assert any("v3.1" in e for e in ours.errors), ours.errors


@pytest.mark.parametrize(
    ("current", "original", "min_sdk", "message"),
    [
        (RELEASE, RELEASE, 33, "not the lineage's last certificate"),
        (OTHER, OTHER, 33, "not the lineage's first certificate"),
        (OTHER, RELEASE, 27, "Android 9 (API 28)"),
    ],
)
def test_keys_that_do_not_match_the_lineage_are_refused(
    current: tuple[str, str, str],
    original: tuple[str, str, str],
    min_sdk: int,
    message: str,
    lineage_file: Path,
    tmp_path: Path,
) -> None:
    rotation = Rotation(load_lineage(lineage_file), material(original), min_sdk=min_sdk)

    with pytest.raises(InvalidLineage, match=message.replace("(", r"\(").replace(")", r"\)")):
        sign_apk(
            FIXTURES / "fixture-unsigned.apk",
            tmp_path / "o.apk",
            material(current),
            rotation=rotation,
        )

    assert not (tmp_path / "o.apk").exists()


def test_rotation_without_v3_is_refused(lineage_file: Path, tmp_path: Path) -> None:
    rotation = Rotation(load_lineage(lineage_file), material(RELEASE))

    with pytest.raises(InvalidLineage, match="sign with v3"):
        sign_apk(
            FIXTURES / "fixture-unsigned.apk",
            tmp_path / "o.apk",
            material(OTHER),
            schemes={"v1", "v2"},
            rotation=rotation,
        )


def test_damaged_lineage_files_are_refused_with_the_reason(lineage_file: Path) -> None:
    good = lineage_file.read_bytes()
    flipped = bytearray(good)
    flipped[-40] ^= 0x01  # inside the second node's signature by the first key

    cases = {
        b"not a lineage at all": "wrong magic",
        good[:20]: "length does not match",
        bytes(flipped): "does not verify",
        FIXTURES.joinpath("fixture-unsigned.apk").read_bytes()[:4096]: "wrong magic",
    }
    for data, reason in cases.items():
        with pytest.raises(InvalidLineage, match=reason):
            read_lineage(data)


def test_the_sign_command_rotates_keys(lineage_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "rotated.apk"
    env = {**os.environ, "NEW_PW": "fixture-other", "OLD_PW": "fixture-release"}

    result = subprocess.run(
        [
            sys.executable, "-m", "appyard.cli", "sign",
            str(FIXTURES / "fixture-unsigned.apk"), str(out),
            "--keystore", str(KEYS / "other.p12"), "--alias", "other", "--password-env", "NEW_PW",
            "--lineage", str(lineage_file),
            "--original-keystore", str(KEYS / "release.p12"), "--original-alias", "release",
            "--original-password-env", "OLD_PW",
            "--rotation-min-sdk-version", "28",
        ],
        capture_output=True,
        text=True,
        env=env,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "rotated v3" in result.stdout
    assert "fixture-other" not in result.stdout + result.stderr  # passwords are not echoed
    assert "fixture-release" not in result.stdout + result.stderr
    assert lineage_certs(out) == [sha256(RELEASE), sha256(OTHER)]
    assert apksigner_verify(out).ok
