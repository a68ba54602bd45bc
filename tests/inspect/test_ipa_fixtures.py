"""inspect_ipa against expected.json (plistlib, openssl, file, unzip) for every IPA fixture in
../shared/fixtures/thirdparty. Skips when ../shared is absent; fails with CI=true."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from appyard.errors import InvalidArtifact
from appyard.inspect.ipa import inspect_ipa
from appyard.inspect.mobileprovision import CertificateInfo, SigningType
from tests.conftest import SHARED, need

FIXTURES = SHARED / "fixtures"
EXPECTED_JSON = FIXTURES / "expected.json"


def _ipa_names() -> list[str]:
    if not EXPECTED_JSON.exists():
        return ["<expected.json absent>"]
    expected = json.loads(EXPECTED_JSON.read_text())
    return sorted(name for name, entry in expected.items() if entry.get("kind") == "ipa")


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    need(EXPECTED_JSON.exists(), f"{EXPECTED_JSON} is absent (../shared not beside the checkout)")
    return dict(json.loads(EXPECTED_JSON.read_text()))


def fixture(expected: dict[str, Any], name: str) -> tuple[Path, dict[str, Any]]:
    need(name in expected, f"{name} is not in {EXPECTED_JSON}")
    entry = expected[name]
    path = FIXTURES / entry["path"]
    need(path.exists(), f"{path} is absent")
    return path, entry


def openssl_date(text: str) -> datetime:
    """``Apr  4 01:11:26 2028 GMT`` as printed by ``openssl x509``."""
    return datetime.strptime(" ".join(text.split()), "%b %d %H:%M:%S %Y GMT").replace(tzinfo=UTC)


def iso_date(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_certificates(got: tuple[CertificateInfo, ...], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for cert, ref in zip(got, want, strict=True):
        assert cert.sha256 == ref["sha256"]
        assert cert.subject == ref["subject"]
        assert cert.issuer == ref["issuer"]
        assert cert.common_name == ref["cn"]
        assert cert.not_after == openssl_date(ref["not_after"])


INFO_FIELDS = {
    "CFBundleIdentifier": "bundle_id",
    "CFBundleShortVersionString": "short_version",
    "CFBundleVersion": "build_version",
    "CFBundleName": "bundle_name",
    "CFBundleExecutable": "executable",
    "MinimumOSVersion": "minimum_os",
    "DTPlatformName": "platform_name",
    "DTSDKName": "sdk_name",
}


@pytest.mark.parametrize("name", _ipa_names())
def test_ipa_fixture_matches_reference_tools(expected: dict[str, Any], name: str) -> None:
    path, ref = fixture(expected, name)
    if "error" in ref:
        with pytest.raises(InvalidArtifact) as err:
            inspect_ipa(path)
        assert err.value.details["reason"] == "not_a_zip"
        assert ref["error"] in err.value.message
        return

    facts = inspect_ipa(path)
    assert facts.app_dir == ref["app_dir"]
    assert f"{facts.app_dir}Info.plist" in ref["info_plist_paths"]
    assert facts.standard_layout is ref["standard_layout"]
    assert facts.info_plist_format == ref["info_plist_format"]
    assert facts.code_signature_present is ref["code_signature_present"]

    info = ref["info_plist"]
    for key, attribute in INFO_FIELDS.items():
        assert getattr(facts, attribute) == info.get(key), key
    assert list(facts.device_family) == info.get("UIDeviceFamily", [])
    assert list(facts.supported_platforms) == info.get("CFBundleSupportedPlatforms", [])
    for key, value in info.items():
        assert facts.info_plist[key] == value, key
    assert facts.identity.identifier == info["CFBundleIdentifier"]
    assert facts.identity.version_code == info.get("CFBundleVersion")
    assert facts.identity.version_name == info.get("CFBundleShortVersionString")
    declared = info.get("CFBundleIcons", {}).get("CFBundlePrimaryIcon", {})
    for icon_name in declared.get("CFBundleIconFiles", []):
        assert icon_name in facts.icon_names

    file_type = ref.get("executable_file_type")
    if file_type is None:
        assert not facts.executable_present
    else:
        assert facts.executable_present
        assert "Mach-O 64-bit arm64" in file_type
        assert facts.executable_arches == ("arm64",)

    mp = ref["mobileprovision"]
    profile = facts.provisioning_profile
    if mp is None:
        assert profile is None
        return
    assert profile is not None
    plist = mp["plist"]
    assert profile.name == plist["Name"]
    assert profile.uuid == plist["UUID"]
    assert profile.team_id == plist["TeamIdentifier"][0]
    assert profile.team_name == plist["TeamName"]
    assert profile.app_id_name == plist["AppIDName"]
    assert list(profile.app_id_prefixes) == plist["ApplicationIdentifierPrefix"]
    assert list(profile.platforms) == plist["Platform"]
    assert profile.creation_date == iso_date(plist["CreationDate"])
    assert profile.expiration_date == iso_date(plist["ExpirationDate"])
    assert len(profile.provisioned_devices) == mp["provisioned_devices_count"]
    assert profile.provisions_all_devices is bool(plist.get("ProvisionsAllDevices", False))
    assert profile.entitlements == mp["entitlements"]
    assert profile.get_task_allow is (mp["entitlements"].get("get-task-allow") is True)
    assert profile.application_identifier == mp["entitlements"]["application-identifier"]
    if profile.get_task_allow:
        assert profile.signing_type is SigningType.DEVELOPMENT
    assert_certificates(profile.developer_certificates, mp["developer_certificates"])
    assert_certificates(profile.cms_signers, mp["cms_signer_certs"])
    assert profile.cms_signature_valid is mp["cms_signature_verified"]


def test_the_watch_app_fixture_picks_the_outer_app(expected: dict[str, Any]) -> None:
    path, _ = fixture(expected, "ContainsWatchApp.ipa")
    facts = inspect_ipa(path)
    assert facts.bundle_id == "com.example.Sample"
    assert not facts.standard_layout
    assert facts.nested_bundles == ("Watch/Sample WatchKit App.app",)


def test_the_capable_app_fixture_is_a_development_build(expected: dict[str, Any]) -> None:
    path, _ = fixture(expected, "very-capable-app.ipa")
    profile = inspect_ipa(path).provisioning_profile
    assert profile is not None
    assert profile.signing_type is SigningType.DEVELOPMENT
    assert profile.bundle_id_pattern == "org.fastlane.very-capable-app"
