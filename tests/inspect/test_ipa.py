"""inspect_ipa on IPAs the tests build: Info.plist, layout, icon, profile, signing type."""

from __future__ import annotations

import hashlib
import plistlib
import struct
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms

from appyard.errors import InvalidArtifact
from appyard.inspect import inspect_file
from appyard.inspect.ipa import IpaFacts, inspect_ipa
from appyard.inspect.mobileprovision import SigningType, bundle_id_matches
from tests.inspect.test_ipa_factory import (
    NOW,
    decode_png,
    gradient_rgba,
    info_plist,
    make_cgbi_png,
    make_ipa,
    make_png,
    make_profile,
    make_signer,
    profile_plist,
    sign_cms,
)


def ipa(tmp_path: Path, name: str = "app.ipa", **kwargs: Any) -> IpaFacts:
    return inspect_ipa(make_ipa(tmp_path / name, **kwargs))


def invalid(tmp_path: Path, **kwargs: Any) -> InvalidArtifact:
    with pytest.raises(InvalidArtifact) as err:
        ipa(tmp_path, **kwargs)
    return err.value


# --- Info.plist ------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "xml"])
def test_info_plist_fields_are_read_in_both_plist_forms(tmp_path: Path, binary: bool) -> None:
    facts = ipa(tmp_path, binary_plist=binary)
    assert facts.info_plist_format == ("binary" if binary else "xml")
    assert facts.identity.platform == "ios"
    assert facts.identity.kind == "ipa"
    assert facts.identity.identifier == facts.bundle_id == "com.example.app"
    assert facts.identity.version_code == facts.build_version == "42"
    assert facts.identity.version_name == facts.short_version == "2.3.1"
    assert facts.display_name == "Example App"
    assert facts.bundle_name == "Example"
    assert facts.minimum_os == "15.0"
    assert facts.device_family == (1, 2)
    assert facts.device_family_names == ("iphone", "ipad")
    assert facts.supported_platforms == ("iPhoneOS",)
    assert facts.platform_name == "iphoneos"
    assert facts.sdk_name == "iphoneos17.0"
    assert facts.executable == "Example"
    assert facts.executable_present
    assert facts.executable_arches == ("arm64",)
    assert facts.app_dir == "Payload/Example.app/"
    assert facts.standard_layout
    assert facts.info_plist["CFBundlePackageType"] == "APPL"


def test_display_name_falls_back_to_bundle_name(tmp_path: Path) -> None:
    facts = ipa(tmp_path, info=info_plist(CFBundleDisplayName=None))
    assert facts.display_name == "Example"


def test_inspect_file_dispatches_ipa_by_extension(tmp_path: Path) -> None:
    facts = inspect_file(make_ipa(tmp_path / "x.ipa"))
    assert isinstance(facts, IpaFacts)


def test_a_fat_executable_lists_every_architecture(tmp_path: Path) -> None:
    fat = struct.pack(">II", 0xCAFEBABE, 2)
    fat += struct.pack(">IIIII", 12, 9, 4096, 100, 14)  # armv7
    fat += struct.pack(">IIIII", 0x0100000C, 0, 8192, 100, 14)  # arm64
    facts = ipa(tmp_path, executable=fat + b"\x00" * 64)
    assert facts.executable_arches == ("armv7", "arm64")


def test_a_missing_executable_is_reported(tmp_path: Path) -> None:
    facts = ipa(tmp_path, executable=None)
    assert not facts.executable_present
    assert facts.executable_arches == ()


def test_code_signature_presence(tmp_path: Path) -> None:
    assert ipa(tmp_path, name="a.ipa").code_signature_present
    assert not ipa(tmp_path, name="b.ipa", code_signature=False).code_signature_present


# --- layout ------------------------------------------------------------------------------------


def test_a_folder_around_payload_is_accepted_as_non_standard(tmp_path: Path) -> None:
    watch = info_plist(CFBundleIdentifier="com.example.app.watchkitapp", CFBundleName="Watch")
    facts = ipa(
        tmp_path,
        prefix="MyApp/",
        extra={
            "MyApp/Payload/Example.app/Watch/Example Watch.app/Info.plist": plistlib.dumps(watch),
            "MyApp/Payload/Example.app/PlugIns/Share.appex/Info.plist": plistlib.dumps(watch),
            "__MACOSX/MyApp/Payload/Example.app/._Info.plist": b"\x00\x05\x16\x07junk",
            "__MACOSX/Payload/Other.app/Info.plist": b"not a plist",
        },
    )
    assert facts.app_dir == "MyApp/Payload/Example.app/"
    assert not facts.standard_layout
    assert facts.bundle_id == "com.example.app"
    assert facts.nested_bundles == ("PlugIns/Share.appex", "Watch/Example Watch.app")


def test_the_outermost_app_wins_over_one_nested_under_payload(tmp_path: Path) -> None:
    inner = plistlib.dumps(info_plist(CFBundleIdentifier="com.example.inner"))
    facts = ipa(tmp_path, extra={"Payload/Example.app/Payload/Inner.app/Info.plist": inner})
    assert facts.bundle_id == "com.example.app"
    assert facts.standard_layout


def test_two_apps_side_by_side_are_refused(tmp_path: Path) -> None:
    other = plistlib.dumps(info_plist(CFBundleIdentifier="com.example.other"))
    err = invalid(tmp_path, extra={"Payload/Other.app/Info.plist": other})
    assert err.details["reason"] == "several_apps"
    assert "Payload/Other.app/" in err.message


def test_a_zip_without_payload_is_not_an_ipa(tmp_path: Path) -> None:
    err = invalid(tmp_path, app="Example.bundle")
    assert err.details["reason"] == "no_app"
    assert "Payload/<Name>.app/Info.plist" in err.message


def test_an_info_plist_without_bundle_id_is_refused(tmp_path: Path) -> None:
    err = invalid(tmp_path, info=info_plist(CFBundleIdentifier=None))
    assert err.details["reason"] == "no_bundle_id"
    assert "CFBundleIdentifier" in err.message


# --- provisioning profile --------------------------------------------------------------------


def test_profile_fields(tmp_path: Path) -> None:
    signer = make_signer()
    devices = ("00008030-001A2B3C4D5E6F70", "1234567890abcdef1234567890abcdef12345678")
    facts = ipa(tmp_path, profile=make_profile(signer, devices=devices))
    profile = facts.provisioning_profile
    assert profile is not None
    assert profile.team_id == "ABCDE12345"
    assert profile.team_name == "Appyard Test Team"
    assert profile.app_id_name == "Example App"
    assert profile.name == "Example App Profile"
    assert profile.uuid == "0b4a7c2e-1d2f-4a3b-9c8d-7e6f5a4b3c2d"
    assert profile.application_identifier == "ABCDE12345.com.example.app"
    assert profile.bundle_id_pattern == "com.example.app"
    assert profile.creation_date == NOW - timedelta(days=10)
    assert profile.expiration_date == NOW + timedelta(days=355)
    assert profile.platforms == ("iOS",)
    assert profile.provisioned_devices == devices
    assert not profile.provisions_all_devices
    assert profile.entitlements["keychain-access-groups"] == ["ABCDE12345.*"]
    assert profile.cms_signature_valid
    (cert,) = profile.developer_certificates
    assert cert.sha256 == hashlib.sha256(signer.der).hexdigest()
    assert cert.common_name == "iPhone Developer: Appyard Test (ABCDE12345)"
    assert cert.subject == (
        "C=US,O=Appyard Test Team,OU=ABCDE12345,CN=iPhone Developer: Appyard Test (ABCDE12345)"
    )
    assert cert.not_after == signer.cert.not_valid_after_utc
    assert profile.cms_signers == (cert,)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"get_task_allow": True, "devices": ("d1",)}, SigningType.DEVELOPMENT),
        ({"devices": ("d1", "d2")}, SigningType.AD_HOC),
        ({"all_devices": True}, SigningType.ENTERPRISE),
        ({}, SigningType.APP_STORE),
    ],
)
def test_signing_type_comes_from_the_profile(
    tmp_path: Path, kwargs: dict[str, Any], expected: SigningType
) -> None:
    profile = ipa(tmp_path, profile=make_profile(**kwargs)).provisioning_profile
    assert profile is not None
    assert profile.signing_type is expected
    assert profile.get_task_allow == ("get_task_allow" in kwargs)


def test_an_ec_signed_profile_verifies(tmp_path: Path) -> None:
    signer = make_signer("EC Developer", ec_key=True)
    profile = ipa(tmp_path, profile=make_profile(signer)).provisioning_profile
    assert profile is not None
    assert profile.cms_signature_valid
    assert profile.cms_signers[0].common_name == "EC Developer"


def test_a_profile_whose_content_was_altered_does_not_verify(tmp_path: Path) -> None:
    data = make_profile(team="ABCDE12345")
    tampered = data.replace(
        b"<string>Appyard Test Team</string>", b"<string>Evil Corp Team!!!</string>"
    )
    assert tampered != data
    profile = ipa(tmp_path, profile=tampered).provisioning_profile
    assert profile is not None
    assert profile.team_name == "Evil Corp Team!!!"
    assert not profile.cms_signature_valid


def test_a_wildcard_app_id_yields_a_wildcard_pattern(tmp_path: Path) -> None:
    profile = ipa(tmp_path, profile=make_profile(app_id="ABCDE12345.*")).provisioning_profile
    assert profile is not None
    assert profile.bundle_id_pattern == "*"


@pytest.mark.parametrize(
    ("pattern", "bundle_id", "matches"),
    [
        ("com.example.app", "com.example.app", True),
        ("com.example.app", "com.example.app2", False),
        ("com.example.*", "com.example.app", True),
        ("com.example.*", "com.examples.app", False),
        ("*", "anything.at.all", True),
        ("com.example.app", "com.example.App", False),
    ],
)
def test_bundle_id_matching_honours_wildcards(pattern: str, bundle_id: str, matches: bool) -> None:
    assert bundle_id_matches(pattern, bundle_id) is matches


def test_no_profile_is_not_an_error(tmp_path: Path) -> None:
    assert ipa(tmp_path).provisioning_profile is None


# --- envelopes that lie ------------------------------------------------------------------------


def _data_content_info() -> bytes:
    return bytes(cms.ContentInfo({"content_type": "data", "content": b"<plist/>"}).dump())


@pytest.mark.parametrize(
    ("profile", "reason", "words"),
    [
        (b"this is not DER at all", "bad_profile", "not a CMS"),
        (b"\x30\x82\xff\xff\x06\x09", "bad_profile", "not a CMS"),
        (_data_content_info(), "bad_profile", "not signed data"),
        (sign_cms(b"hello, I am no plist"), "bad_plist", "neither an XML nor a binary"),
        (sign_cms(plistlib.dumps(["a", "list"])), "bad_plist", "not a dictionary"),
        (sign_cms(plistlib.dumps({"a": 1}), detached=True), "bad_profile", "content missing"),
        (
            sign_cms(plistlib.dumps(profile_plist(developer_certs=(b"not a certificate",)))),
            "bad_certificate",
            "not valid X.509",
        ),
        (
            sign_cms(plistlib.dumps(profile_plist(DeveloperCertificates=["text"]))),
            "bad_certificate",
            "not binary data",
        ),
    ],
    ids=[
        "text",
        "short-der",
        "data-not-signed",
        "not-plist",
        "plist-list",
        "detached",
        "bad-cert",
        "cert-not-data",
    ],
)
def test_a_lying_envelope_is_an_invalid_artifact(
    tmp_path: Path, profile: bytes, reason: str, words: str
) -> None:
    err = invalid(tmp_path, profile=profile)
    assert err.details["reason"] == reason
    assert words in err.message
    assert "embedded.mobileprovision" in err.message


def test_an_envelope_with_a_wrong_content_type_is_refused(tmp_path: Path) -> None:
    signed = cms.ContentInfo.load(sign_cms(plistlib.dumps(profile_plist())))
    signed["content"]["encap_content_info"]["content_type"] = "digested_data"
    err = invalid(tmp_path, profile=signed.dump(force=True))
    assert err.details["reason"] == "bad_profile"
    assert "digested_data" in err.message


# --- icons -------------------------------------------------------------------------------------


def test_the_largest_declared_icon_is_converted_from_cgbi(tmp_path: Path) -> None:
    small, large = gradient_rgba(8, 8), gradient_rgba(12, 12)
    facts = ipa(
        tmp_path,
        icons={
            "AppIcon60x60@2x.png": make_cgbi_png(8, 8, small),
            "AppIcon60x60@3x.png": make_cgbi_png(12, 12, large),
            "AppIcon76x76@2x~ipad.png": make_cgbi_png(4, 4, gradient_rgba(4, 4)),
            "Unrelated@3x.png": make_png(32, 32, gradient_rgba(32, 32)),
        },
    )
    icon = facts.icon
    assert icon is not None
    assert facts.icon_problem is None
    assert icon.path == "Payload/Example.app/AppIcon60x60@3x.png"
    assert (icon.width, icon.height) == (12, 12)
    assert icon.converted_from_cgbi
    width, height, rgba = decode_png(icon.png)
    assert (width, height) == (12, 12)
    assert_unpremultiplied(rgba, large)


def assert_unpremultiplied(got: bytes, original: bytes) -> None:
    """Straight RGBA back within the precision premultiplication leaves."""
    for i in range(0, len(original), 4):
        alpha = original[i + 3]
        assert got[i + 3] == alpha
        if alpha == 0:
            assert got[i : i + 3] == b"\x00\x00\x00"
            continue
        tolerance = 0 if alpha == 255 else 255 // alpha + 1
        for k in range(3):
            assert abs(got[i + k] - original[i + k]) <= tolerance, (i, got[i : i + 4], alpha)


def test_a_standard_png_icon_is_returned_unchanged(tmp_path: Path) -> None:
    png = make_png(10, 10, gradient_rgba(10, 10))
    facts = ipa(tmp_path, icons={"AppIcon60x60@2x.png": png})
    assert facts.icon is not None
    assert facts.icon.png == png
    assert not facts.icon.converted_from_cgbi


def test_legacy_icon_keys_are_honoured(tmp_path: Path) -> None:
    info = info_plist(CFBundleIcons=None, CFBundleIconFiles=["Icon.png", "Icon-72.png"])
    png = make_png(4, 4, gradient_rgba(4, 4))
    facts = ipa(tmp_path, info=info, icons={"Icon@2x.png": png})
    assert facts.icon_names == ("Icon", "Icon-72")
    assert facts.icon is not None
    assert facts.icon.path.endswith("Icon@2x.png")


def test_an_icon_only_in_the_asset_catalog_is_explained(tmp_path: Path) -> None:
    facts = ipa(tmp_path)
    assert facts.icon is None
    assert facts.icon_problem is not None
    assert "Assets.car" in facts.icon_problem


def test_a_broken_icon_is_a_problem_not_an_invalid_ipa(tmp_path: Path) -> None:
    cgbi = make_cgbi_png(6, 6, gradient_rgba(6, 6))
    broken = cgbi[:-40] + b"\x00" * 28 + cgbi[-12:]  # damage the deflate stream
    facts = ipa(tmp_path, icons={"AppIcon60x60@2x.png": broken})
    assert facts.icon is None
    assert facts.icon_problem is not None
    assert "AppIcon60x60@2x.png" in facts.icon_problem


def test_a_broken_large_icon_falls_back_to_the_next(tmp_path: Path) -> None:
    good = make_cgbi_png(6, 6, gradient_rgba(6, 6))
    big = make_cgbi_png(20, 20, gradient_rgba(20, 20))
    broken = big[:60] + b"\xff" * (len(big) - 72) + big[-12:]
    facts = ipa(tmp_path, icons={"AppIcon60x60@2x.png": good, "AppIcon60x60@3x.png": broken})
    assert facts.icon is not None
    assert facts.icon.path.endswith("@2x.png")
