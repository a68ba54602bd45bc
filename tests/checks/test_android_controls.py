"""Android controls: each triggered by a real fixture and not by another.

Generated fixtures (tests/fixtures, else ../shared/fixtures/generated) are all
org.appyard.fixture, minSdk 21, targetSdk 29; third-party ones come from ../shared (skipped
when it is absent, failing with CI=true). No fixture sets android:testOnly, so that one test
patches a real manifest (see ``test_only_apk``).
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from appyard.checks import History, Severity, Thresholds, signer_fingerprints
from appyard.inspect.aab import AabFacts, inspect_aab
from appyard.inspect.apk import ApkFacts, inspect_apk
from appyard.signing.align import align_apk
from tests.checks.conftest import codes, facts_of, real, run

RELEASE = "fixture-release-v1v2v3.apk"


def apk(name: str) -> ApkFacts:
    facts = facts_of(name)
    assert isinstance(facts, ApkFacts)
    return facts


def signer_history(name: str, **kwargs: str) -> History:
    signatures = apk(name).signatures
    assert signatures is not None and signatures.signers
    return History(signer_sha256=tuple(c.sha256 for c in signatures.signers), **kwargs)


# --- unsigned_apk / signature_invalid / debug_certificate ------------------------------------


@pytest.mark.parametrize("name", ["fixture-unsigned.apk", "urzip-release-unsigned.apk"])
def test_unsigned_apk(name: str) -> None:
    (finding,) = run(apk(name), "unsigned_apk")
    assert finding.severity is Severity.BLOCKING
    assert finding.details == {"schemes_present": []}


@pytest.mark.parametrize("name", [RELEASE, "fixture-v1-only.apk", "v2.only.sig_2.apk"])
def test_signed_apks_are_not_unsigned(name: str) -> None:
    assert run(apk(name), "unsigned_apk") == []


@pytest.mark.parametrize(
    "name",
    ["urzip-badsig.apk", "v2-only-with-rsa-pkcs1-sha256-2048-sig-does-not-verify.apk"],
)
def test_signature_invalid(name: str) -> None:
    (finding,) = run(apk(name), "signature_invalid")
    assert finding.severity is Severity.BLOCKING
    assert finding.details["schemes_present"]
    assert finding.details["errors"]


@pytest.mark.parametrize("name", [RELEASE, "fixture-unsigned.apk", "two-signers.apk"])
def test_valid_or_absent_signatures_are_not_invalid(name: str) -> None:
    assert run(apk(name), "signature_invalid") == []


@pytest.mark.parametrize("name", ["fixture-debug-signed.apk", "urzip.apk"])
def test_debug_certificate(name: str) -> None:
    (finding,) = run(apk(name), "debug_certificate")
    assert finding.severity is Severity.BLOCKING
    assert "CN=Android Debug" in finding.message


def test_a_release_certificate_is_not_debug() -> None:
    assert run(apk(RELEASE), "debug_certificate") == []
    assert run(apk("urzip-release.apk"), "debug_certificate") == []


def test_debug_certificate_is_info_in_development() -> None:
    (finding,) = run(apk("fixture-debug-signed.apk"), "debug_certificate", version="development")
    assert finding.severity is Severity.INFO


# --- signer_changed ----------------------------------------------------------------------------


def test_signer_changed_after_the_release_build() -> None:
    history = signer_history(RELEASE)
    (finding,) = run(apk("fixture-otherkey-vc2.apk"), "signer_changed", history=history)
    assert finding.severity is Severity.BLOCKING
    assert finding.details["previous"] == list(history.signer_sha256)
    assert finding.details["signers"][0]["subject"].startswith("CN=Appyard Fixture Other")


def test_same_key_upgrade_is_not_a_signer_change() -> None:
    history = signer_history(RELEASE)
    assert run(apk("fixture-release-vc2.apk"), "signer_changed", history=history) == []


def test_a_v3_rotation_lineage_is_honoured() -> None:
    history = signer_history("golden-aligned-v1v2v3-out.apk")  # CN=rsa-2048
    rotated = apk("golden-aligned-v1v2v3-lineage-out.apk")  # CN=rsa-2048_2, lineage from it
    assert run(rotated, "signer_changed", history=history) == []


def test_going_back_past_a_rotation_is_a_change() -> None:
    history = signer_history("golden-aligned-v1v2v3-lineage-out.apk")
    assert codes(run(apk("golden-aligned-v1v2v3-out.apk"), "signer_changed", history=history)) == [
        "signer_changed"
    ]


def test_another_release_key_for_the_same_version() -> None:
    history = signer_history("obb.mainpatch.current_1619.apk")
    other = apk("obb.mainpatch.current_1619_another-release-key.apk")
    assert codes(run(other, "signer_changed", history=history)) == ["signer_changed"]


def test_no_history_no_signer_change() -> None:
    assert run(apk("fixture-otherkey-vc2.apk"), "signer_changed") == []


# --- version_code_not_incremented / package_mismatch -------------------------------------------


def test_version_code_not_incremented() -> None:
    (finding,) = run(
        apk(RELEASE), "version_code_not_incremented", history=History(version_code="1")
    )
    assert finding.details == {"previous": "1", "current": "1"}
    assert "versionCode 1" in finding.message


def test_version_code_incremented() -> None:
    history = History(version_code="1")
    assert (
        run(apk("fixture-release-vc2.apk"), "version_code_not_incremented", history=history) == []
    )


def test_a_downgrade_between_real_releases() -> None:
    history = History(version_code="4")
    old = apk("org.bitbucket.tickytacky.mirrormirror_1.apk")
    assert codes(run(old, "version_code_not_incremented", history=history)) == [
        "version_code_not_incremented"
    ]
    newer = apk("org.bitbucket.tickytacky.mirrormirror_4.apk")
    assert run(newer, "version_code_not_incremented", history=History(version_code="1")) == []


def test_package_mismatch() -> None:
    history = History(package="org.appyard.fixture")
    (finding,) = run(apk("fixture-native-libs.apk"), "package_mismatch", history=history)
    assert finding.details == {
        "expected": "org.appyard.fixture",
        "actual": "org.appyard.fixture.jni",
    }
    assert run(apk(RELEASE), "package_mismatch", history=history) == []


# --- manifest flags ----------------------------------------------------------------------------


def test_debuggable() -> None:
    (finding,) = run(apk("fixture-debuggable.apk"), "debuggable")
    assert finding.severity is Severity.BLOCKING
    assert run(apk(RELEASE), "debuggable") == []


def test_debuggable_through_a_false_resource_is_not_debuggable() -> None:
    assert run(apk("debuggable-resource.apk"), "debuggable") == []


@pytest.mark.parametrize(
    ("version", "severity"),
    [
        ("development", Severity.INFO),
        ("staging", Severity.WARNING),
        ("production", Severity.BLOCKING),
    ],
)
def test_debuggable_severity_by_version(version: str, severity: Severity) -> None:
    (finding,) = run(apk("fixture-debuggable.apk"), "debuggable", version=version)
    assert finding.severity is severity


def make_test_only_apk(tmp_path: Path) -> Path:
    """fixture-debuggable.apk with its android:debuggable attribute turned into
    android:testOnly: the resource map entry that says which attribute the name is
    (0x0101000f -> 0x01010272, what Android and appyard go by) and the name string itself
    (UTF-16 "debuggable" -> "testOnly", same byte length). The signature no longer matters."""
    source = real("fixture-debuggable.apk")
    out = tmp_path / "fixture-test-only.apk"
    old_name = b"\x0a\x00" + "debuggable".encode("utf-16le")
    new_name = b"\x08\x00" + "testOnly".encode("utf-16le") + b"\x00\x00\x00\x00"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "AndroidManifest.xml":
                assert data.count(bytes.fromhex("0f000101")) == 1
                assert data.count(old_name) == 1
                data = data.replace(bytes.fromhex("0f000101"), bytes.fromhex("72020101"))
                data = data.replace(old_name, new_name)
            zout.writestr(info, data)
    return out


def test_test_only(tmp_path: Path) -> None:
    path = make_test_only_apk(tmp_path)
    if shutil.which("aapt"):
        tree = subprocess.run(
            ["aapt", "dump", "xmltree", str(path), "AndroidManifest.xml"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "android:testOnly(0x01010272)=(type 0x12)0xffffffff" in tree
    facts = inspect_apk(path, verify_signatures=False)
    (finding,) = run(facts, "test_only")
    assert finding.severity is Severity.BLOCKING
    assert run(facts, "debuggable") == []
    assert run(apk(RELEASE), "test_only") == []


def test_target_sdk_too_low() -> None:
    (finding,) = run(apk(RELEASE), "target_sdk_too_low")
    assert finding.severity is Severity.WARNING
    assert finding.details == {"target_sdk": 29, "effective_target_sdk": 29, "threshold": 33}


def test_target_sdk_threshold_is_configurable() -> None:
    facts = apk("org.sajeg.fallingblocks_3.apk")  # targetSdk 32
    assert codes(run(facts, "target_sdk_too_low")) == ["target_sdk_too_low"]
    assert run(facts, "target_sdk_too_low", thresholds=Thresholds(min_target_sdk=32)) == []


def test_a_missing_target_sdk_counts_as_min_sdk() -> None:
    (finding,) = run(apk("v2.only.sig_2.apk"), "target_sdk_too_low")  # minSdk 27, no target
    assert "not declared, so it is minSdkVersion (27)" in finding.message
    assert finding.details["target_sdk"] is None
    assert finding.details["effective_target_sdk"] == 27


def test_min_sdk_too_low() -> None:
    (finding,) = run(apk("no.min.target.sdk_987.apk"), "min_sdk_too_low")
    assert finding.details == {"min_sdk": None, "effective_min_sdk": 1, "threshold": 21}
    assert run(apk(RELEASE), "min_sdk_too_low") == []  # minSdk 21
    strict = Thresholds(min_min_sdk=24)
    assert codes(run(apk(RELEASE), "min_sdk_too_low", thresholds=strict)) == ["min_sdk_too_low"]


def test_cleartext_traffic_by_default_on_old_targets() -> None:
    (finding,) = run(apk("urzip-release.apk"), "cleartext_traffic")  # targetSdk 18
    assert finding.details["effective_target_sdk"] == 18
    assert finding.details["uses_cleartext_traffic"] is None


def test_no_cleartext_by_default_on_api_28_and_later() -> None:
    assert run(apk(RELEASE), "cleartext_traffic") == []  # targetSdk 29


def test_allow_backup() -> None:
    (finding,) = run(apk("urzip-release.apk"), "allow_backup")  # allowBackup="true"
    assert finding.details == {"allow_backup": True}
    (unset,) = run(apk(RELEASE), "allow_backup")
    assert unset.details == {"allow_backup": None}
    assert run(apk("org.sajeg.fallingblocks_3.apk"), "allow_backup") == []  # "false"


def test_exported_without_permission() -> None:
    (finding,) = run(apk("org.dyndns.fules.ck_20.apk"), "exported_without_permission")
    names = [c["name"] for c in finding.details["components"]]
    assert "org.dyndns.fules.ck.CompassKeyboardSettings" in names
    assert "org.dyndns.fules.ck.CompassKeyboard" not in names  # BIND_INPUT_METHOD
    assert finding.severity is Severity.WARNING


def test_the_launcher_activity_alone_is_not_reported() -> None:
    assert run(apk(RELEASE), "exported_without_permission") == []


# --- native code -------------------------------------------------------------------------------


def test_missing_64bit_abi() -> None:
    (finding,) = run(apk("golden-aligned-v1v2v3-out.apk"), "missing_64bit_abi")  # lib/armeabi
    assert finding.details == {"abis": ["armeabi"], "missing": ["arm64-v8a"]}


@pytest.mark.parametrize("name", ["fixture-native-libs.apk", "org.dyndns.fules.ck_20.apk", RELEASE])
def test_64bit_abis_present_or_no_native_code(name: str) -> None:
    assert run(apk(name), "missing_64bit_abi") == []


def test_native_libs_aligned_to_4k_only() -> None:
    (finding,) = run(apk("fixture-native-libs.apk"), "native_lib_not_16k_aligned")
    assert sorted(finding.details["libraries"]) == [
        "lib/arm64-v8a/libfixture.so",
        "lib/armeabi-v7a/libfixture.so",
    ]


def test_native_libs_aligned_to_16k(tmp_path: Path) -> None:
    aligned = tmp_path / "aligned.apk"
    align_apk(real("fixture-native-libs.apk"), aligned)
    facts = inspect_apk(aligned, verify_signatures=False)
    assert run(facts, "native_lib_not_16k_aligned") == []
    assert run(apk(RELEASE), "native_lib_not_16k_aligned") == []  # no native code


# --- all defaults together ----------------------------------------------------------------------


def test_release_fixture_in_production_has_only_advice() -> None:
    findings = run(apk(RELEASE))
    assert codes(findings) == ["target_sdk_too_low", "allow_backup"]
    assert all(f.severity is Severity.WARNING for f in findings)


def test_debug_signed_fixture_blocks_in_production() -> None:
    findings = run(apk("fixture-debug-signed.apk"))
    assert (findings[0].code, findings[0].severity) == ("debug_certificate", Severity.BLOCKING)


# --- bundles (AAB): the same controls over the base manifest and the JAR signature ------------

BUNDLE = "fixture-bundle.aab"  # JAR-signed with the release key, versionCode 3
BUNDLETOOL = "install-time-permanent-modules.aab"  # its JAR signature does not verify


def aab(name: str) -> AabFacts:
    facts = facts_of(name)
    assert isinstance(facts, AabFacts)
    return facts


def unsigned_bundle(tmp_path: Path) -> AabFacts:
    """fixture-bundle.aab without its META-INF signature files (no unsigned AAB fixture)."""
    out = tmp_path / "unsigned.aab"
    with zipfile.ZipFile(real(BUNDLE)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            if not info.filename.startswith("META-INF/"):
                zout.writestr(info, zin.read(info))
    return inspect_aab(out)


def test_bundle_release_fixture_has_only_advice() -> None:
    assert codes(run(aab(BUNDLE))) == ["target_sdk_too_low", "allow_backup"]


def test_unsigned_bundle(tmp_path: Path) -> None:
    (finding,) = run(unsigned_bundle(tmp_path), "unsigned_apk")
    assert "AAB is not signed" in finding.message
    assert run(aab(BUNDLE), "unsigned_apk") == []


def test_bundle_signature_invalid() -> None:
    (finding,) = run(aab(BUNDLETOOL), "signature_invalid")
    assert finding.details["errors"] == ["SHA-256 digest error for BundleConfig.pb"]
    assert run(aab(BUNDLE), "signature_invalid") == []


def test_bundle_signer_compared_with_the_apk_history() -> None:
    assert run(aab(BUNDLE), "signer_changed", history=signer_history(RELEASE)) == []
    other = signer_history("fixture-otherkey-vc2.apk")
    (finding,) = run(aab(BUNDLE), "signer_changed", history=other)
    assert finding.details["signers"][0]["subject"].startswith("CN=Appyard Fixture Release")


def test_bundle_version_code_and_package() -> None:
    history = History(version_code="3", package="org.appyard.fixture")
    assert codes(run(aab(BUNDLE), history=history)) == [
        "version_code_not_incremented",
        "target_sdk_too_low",
        "allow_backup",
    ]
    other_app = History(package="com.google.android.samples.dynamicfeatures.ondemand")
    assert codes(run(aab(BUNDLE), "package_mismatch", history=other_app)) == ["package_mismatch"]


def test_bundle_manifest_controls() -> None:
    facts = aab(BUNDLETOOL)
    assert codes(run(facts, "exported_without_permission")) == ["exported_without_permission"]
    assert codes(run(facts, "allow_backup")) == ["allow_backup"]
    assert run(facts, "debuggable") == []
    assert run(facts, "missing_64bit_abi") == []


def test_signer_fingerprints_is_what_history_stores() -> None:
    release = signer_history(RELEASE).signer_sha256
    assert signer_fingerprints(apk(RELEASE)) == release
    assert signer_fingerprints(aab(BUNDLE)) == release  # the same release key
    assert signer_fingerprints(apk("fixture-unsigned.apk")) == ()
    assert signer_fingerprints(aab(BUNDLETOOL)) == ()  # does not verify
    assert signer_fingerprints(facts_of("very-capable-app.ipa")) == ()
