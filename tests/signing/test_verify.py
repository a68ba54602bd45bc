"""verify_apk against apksigner's ground truth for every APK fixture (expected.json).

Each fixture is checked three ways, as gen-expected.py ran apksigner: with the APK's own
minSdkVersion (what ``apksigner verify`` reads from the manifest; aapt's value from
expected.json, 1 when aapt found none), with ``--min-sdk-version 24`` and with
``--max-sdk-version 27``. Verdict, schemes used, signers (DN, SHA-256, key algorithm and
size) must be equal, and so must errors and warnings wherever apksigner printed them as
ERROR/WARNING lines (not when it died with a Java exception).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from appyard.errors import InvalidArtifact
from appyard.signing.model import ANY_SDK, ApkVerification
from appyard.signing.verify import verify_apk, verify_jar
from appyard.signing.zipmeta import NotAZip

ROOT = Path(__file__).resolve().parents[2]
LOCAL_FIXTURES = ROOT / "tests" / "fixtures"
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

VARIANTS = ("apksigner", "apksigner_min_sdk_24", "apksigner_max_sdk_27")


def _need(condition: bool, reason: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@cache
def expected() -> dict[str, dict[str, Any]]:
    """The committed artifacts' reference results, and the shared corpus's when present."""
    from tests.conftest import reference_truth

    return reference_truth()


def fixture_path(name: str) -> Path:
    """tests/fixtures/<name> for generated fixtures, else the shared copy."""
    entry = expected().get(name)
    _need(entry is not None, f"{name} is not in expected.json")
    assert entry is not None
    relative = Path(entry["path"])
    if relative.parts[0] == "generated" and (LOCAL_FIXTURES / relative.name).exists():
        return LOCAL_FIXTURES / relative.name
    path = SHARED_FIXTURES / relative
    _need(path.exists(), f"{path} is absent")
    return path


def apk_names() -> list[str]:
    names = sorted(n for n, e in expected().items() if "apksigner" in e)
    return names or ["<expected.json absent>"]


def apk_min_sdk(name: str) -> int:
    sdk = (expected()[name].get("aapt") or {}).get("sdkVersion")
    return int(sdk) if sdk else 1


@dataclass(frozen=True)
class Case:
    min_sdk: int | None
    max_sdk: int | None


def case_for(name: str, variant: str) -> Case:
    if variant == "apksigner_min_sdk_24":
        return Case(24, None)
    if variant == "apksigner_max_sdk_27":
        return Case(apk_min_sdk(name), 27)
    return Case(apk_min_sdk(name), None)


def _strip(lines: list[str], prefix: str) -> list[str] | None:
    """apksigner's lines without ERROR:/WARNING:, or None when it died with an exception."""
    if any(line.startswith("Exception in thread") for line in lines):
        return None
    return [line.removeprefix(prefix) for line in lines]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", apk_names())
def test_verdict_schemes_and_signers_match_apksigner(name: str, variant: str) -> None:
    _need(bool(expected()), f"{SHARED_FIXTURES / 'expected.json'} is absent")
    truth = expected()[name][variant]
    case = case_for(name, variant)

    result = verify_apk(fixture_path(name), min_sdk=case.min_sdk, max_sdk=case.max_sdk)

    assert result.verified is truth["verifies"], (result.errors, truth["errors"])
    if truth["verifies"]:
        for scheme in ("v1", "v2", "v3"):
            assert result.schemes[scheme] is truth["schemes"][scheme], scheme
    else:
        assert not any(result.schemes.values())
        assert result.errors, "a failed verification says why"
    got = [(s.dn, s.sha256, s.sha1, s.key_algorithm, s.key_size, s.cn) for s in result.signers]
    want = [
        (s["dn"], s["cert_sha256"], s["cert_sha1"], s["key_algorithm"], s["key_size"], s["cn"])
        for s in truth["signers"]
    ]
    assert got == want


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", apk_names())
def test_errors_and_warnings_match_apksigner(name: str, variant: str) -> None:
    _need(bool(expected()), f"{SHARED_FIXTURES / 'expected.json'} is absent")
    truth = expected()[name][variant]
    case = case_for(name, variant)
    errors = _strip(truth["errors"], "ERROR: ")
    warnings = _strip(truth["warnings"], "WARNING: ")
    if errors is None or warnings is None:
        pytest.skip("apksigner stopped with a Java exception; the verdict is compared above")

    result = verify_apk(fixture_path(name), min_sdk=case.min_sdk, max_sdk=case.max_sdk)

    assert list(result.errors) == errors
    assert sorted(result.warnings) == sorted(warnings)


def test_min_sdk_none_means_api_level_1() -> None:
    sha1_signed = verify_apk(fixture_path("urzip.apk"))
    sha256_signed = verify_apk(fixture_path("fixture-release-v1v2v3.apk"))

    assert sha1_signed.min_sdk == 1 and sha1_signed.max_sdk == ANY_SDK
    assert sha1_signed.verified and sha1_signed.v1.verified
    # apksigner --min-sdk-version 1 agrees: SHA-256 JAR digests need API 18.
    assert not sha256_signed.verified
    assert "not supported on API Level(s) 9-17" in sha256_signed.errors[0]


def test_v3_only_apk_fails_for_its_min_sdk_and_verifies_from_api_24() -> None:
    path = fixture_path("golden-aligned-v3-out.apk")

    assert not verify_apk(path, min_sdk=23).verified
    result = verify_apk(path, min_sdk=24)

    assert result.verified and result.v3.verified and not result.v2.present
    assert [(s.min_sdk, s.max_sdk) for s in result.v3_signers] == [(24, ANY_SDK)]
    assert "Missing META-INF/MANIFEST.MF" in verify_apk(path, min_sdk=23).errors


def test_decoy_signature_block_is_never_reported_as_signer() -> None:
    path = fixture_path("issue-1128-poc1.apk")

    for min_sdk in (24, 29):
        result = verify_apk(path, min_sdk=min_sdk)
        assert result.verified
        assert [s.cn for s in result.signers] == ["oops"]
        assert not result.v1.present  # CIARANG.RSA has no .SF: not a JAR signature


def test_rotation_lineage_is_reported_and_v1_v2_signer_is_its_root() -> None:
    path = fixture_path("golden-aligned-v1v2v3-lineage-out.apk")

    result = verify_apk(path, min_sdk=23)
    old = verify_apk(path, min_sdk=23, max_sdk=27)

    assert [c.cn for c in result.lineage] == ["rsa-2048", "rsa-2048_2"]
    assert [s.cn for s in result.signers] == ["rsa-2048_2"]
    assert [s.cn for s in old.signers] == ["rsa-2048"]
    assert result.v3_signers[0].lineage == result.lineage


def test_two_signers_are_both_reported_in_order() -> None:
    result = verify_apk(fixture_path("two-signers.apk"), min_sdk=23)

    assert [(s.cn, s.key_algorithm) for s in result.signers] == [
        ("rsa-2048", "RSA"),
        ("ec-p256", "EC"),
    ]


def test_signer_description_has_dates_issuer_and_debug_flag() -> None:
    debug = verify_apk(fixture_path("fixture-debug-signed.apk"), min_sdk=21)
    release = verify_apk(fixture_path("fixture-release-v1v2v3.apk"), min_sdk=21)

    (signer,) = debug.signers
    assert signer.is_debug and signer.issuer == signer.dn
    assert signer.not_before < signer.not_after
    assert not release.signers[0].is_debug


def test_tampered_v2_signature_fails() -> None:
    name = "v2-only-with-rsa-pkcs1-sha256-2048-sig-does-not-verify.apk"

    result = verify_apk(fixture_path(name), min_sdk=24)

    assert not result.verified and result.v2.present and not result.v2.verified
    assert any("did not verify" in e for e in result.errors)


def test_empty_zip_is_a_result_and_text_is_invalid_artifact(tmp_path: Path) -> None:
    result = verify_apk(fixture_path("empty-unsigned.apk"))
    assert not result.verified and result.errors == ("Missing AndroidManifest.xml",)

    with pytest.raises(NotAZip) as raised:
        verify_apk(fixture_path("not-an-ipa.ipa"))
    assert isinstance(raised.value, InvalidArtifact)


def test_min_sdk_above_max_sdk_is_an_error_not_an_exception() -> None:
    result = verify_apk(fixture_path("fixture-release-v1v2v3.apk"), min_sdk=29, max_sdk=27)

    assert not result.verified
    assert result.errors == ("minSdkVersion (29) > maxSdkVersion (27)",)


def _jarsigner_verified(name: str) -> bool:
    text = str(expected()[name]["jarsigner"])
    return "jar verified" in text and "digest error" not in text


@pytest.mark.parametrize("name", ["fixture-bundle.aab", "install-time-permanent-modules.aab"])
def test_aab_jar_signature_matches_jarsigner(name: str) -> None:
    _need(bool(expected()), "expected.json is absent")

    result = verify_jar(fixture_path(name))

    assert result.present
    assert result.verified is _jarsigner_verified(name), result.errors
    if result.verified:
        assert [s.cn for s in result.signers] == ["Appyard Fixture Release"]
    else:
        assert any("BundleConfig.pb" in e for e in result.errors)


def test_apk_result_is_frozen() -> None:
    result: ApkVerification = verify_apk(fixture_path("fixture-v1-only.apk"), min_sdk=21)

    with pytest.raises(AttributeError):
        result.verified = False  # type: ignore[misc]
