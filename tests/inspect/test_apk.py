"""inspect_apk against the reference tools: expected.json (aapt dump badging, apksigner) for
every APK fixture, and the same tools run live when they are installed."""

from __future__ import annotations

import struct
import subprocess
import zipfile
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from appyard.errors import InvalidArtifact
from appyard.inspect.apk import ApkFacts, inspect_apk
from appyard.inspect.arsc import ArscTable
from tests.conftest import FIXTURES, need
from tests.inspect.conftest import (
    E,
    dedup,
    fixture_names,
    load_fixture,
    make_axml,
    rewrite_zip,
    thirdparty,
    tool,
)

APKS = fixture_names("apk")
AAPT = tool("aapt")
ZIPALIGN = tool("zipalign")


@cache
def facts(name: str) -> ApkFacts:
    return inspect_apk(load_fixture(name).path, verify_signatures=False)


def aapt_of(name: str) -> dict[str, Any]:
    aapt: dict[str, Any] = load_fixture(name).expected["aapt"]
    if not aapt["ok"]:
        pytest.skip(f"aapt cannot read {name}; see the tests of unreadable files")
    return aapt


def as_badging(f: ApkFacts) -> dict[str, Any]:
    """Our facts in the shape of aapt dump badging."""
    m = f.manifest
    declared = [p for p in m.permissions if p not in m.permissions_sdk_23]
    return {
        "package": m.package,
        "versionCode": str(m.version_code) if m.version_code and m.version_code > 0 else "",
        "versionName": m.version_name or "",
        "sdkVersion": None if m.min_sdk is None else str(m.min_sdk),
        "targetSdkVersion": None if m.target_sdk is None else str(m.target_sdk),
        "maxSdkVersion": None if m.max_sdk is None else str(m.max_sdk),
        "application_label": m.label,
        "application_labels": dict(m.labels),
        "application_icon": m.icon_path or "",
        "application_icons": {str(k): v for k, v in m.icon_paths.items()},
        "native_code": list(f.native_abis),
        "debuggable": m.debuggable,
        "uses_permissions": dedup(declared + list(m.implied_permissions)),
        "launchable_activity": m.launcher_activity,
    }


BADGING_KEYS = (
    "package",
    "versionCode",
    "versionName",
    "sdkVersion",
    "targetSdkVersion",
    "maxSdkVersion",
    "application_label",
    "application_labels",
    "application_icon",
    "application_icons",
    "native_code",
    "debuggable",
    "uses_permissions",
    "launchable_activity",
)


def comparable(aapt: dict[str, Any]) -> dict[str, Any]:
    out = {k: aapt[k] for k in BADGING_KEYS}
    out["uses_permissions"] = dedup(aapt["uses_permissions"])  # appyard reports each once
    return out


# --- expected.json ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", APKS)
def test_identity_and_versions_match_aapt(name: str) -> None:
    aapt = aapt_of(name)
    f = facts(name)
    assert f.identity.platform == "android"
    assert f.identity.kind == "apk"
    assert f.identity.identifier == aapt["package"]
    assert f.identity.version_code == aapt["versionCode"]
    assert (f.identity.version_name or "") == aapt["versionName"]


@pytest.mark.parametrize("name", APKS)
def test_sdk_versions_match_aapt(name: str) -> None:
    aapt = aapt_of(name)
    got = as_badging(facts(name))
    for key in ("sdkVersion", "targetSdkVersion", "maxSdkVersion"):
        assert got[key] == aapt[key], key
    compile_sdk = aapt["package_attrs"].get("compileSdkVersion")
    if compile_sdk is not None:
        assert str(facts(name).manifest.compile_sdk) == compile_sdk
        assert (
            facts(name).manifest.compile_sdk_codename
            == (aapt["package_attrs"]["compileSdkVersionCodename"])
        )


@pytest.mark.parametrize("name", APKS)
def test_label_matches_aapt_in_every_locale(name: str) -> None:
    aapt = aapt_of(name)
    m = facts(name).manifest
    assert m.label == aapt["application_label"]
    assert dict(m.labels) == aapt["application_labels"]


@pytest.mark.parametrize("name", APKS)
def test_icon_paths_match_aapt_for_every_density(name: str) -> None:
    aapt = aapt_of(name)
    m = facts(name).manifest
    assert (m.icon_path or "") == aapt["application_icon"]
    assert {str(k): v for k, v in m.icon_paths.items()} == aapt["application_icons"]


@pytest.mark.parametrize("name", APKS)
def test_permissions_match_aapt_including_implied_ones(name: str) -> None:
    aapt = aapt_of(name)
    assert as_badging(facts(name))["uses_permissions"] == dedup(aapt["uses_permissions"])


@pytest.mark.parametrize("name", APKS)
def test_launcher_activity_abis_and_debuggable_match_aapt(name: str) -> None:
    aapt = aapt_of(name)
    f = facts(name)
    assert f.manifest.launcher_activity == aapt["launchable_activity"]
    assert list(f.native_abis) == aapt["native_code"]
    assert f.manifest.debuggable is aapt["debuggable"]


@pytest.mark.parametrize("name", APKS)
def test_signatures_match_apksigner(name: str) -> None:
    """apksigner verify --verbose --print-certs at the APK's own minSdk: verdict, the schemes
    it verified with, and every signer certificate (DN, CN, fingerprints, key)."""
    fixture = load_fixture(name)
    if name == "empty-unsigned.apk":
        pytest.skip("no manifest to read (see test_empty_zip_is_invalid_...)")
    f = inspect_apk(fixture.path)
    assert f.signatures is not None
    apksigner = fixture.expected["apksigner"]
    assert f.signatures.verified is apksigner["verifies"], f.signatures.errors
    if apksigner["verifies"]:
        for scheme in ("v1", "v2", "v3"):
            assert f.signatures.schemes[scheme] is apksigner["schemes"][scheme], scheme
    got = [
        (c.dn, c.cn, c.sha256, c.sha1, c.key_algorithm, c.key_size) for c in f.signatures.signers
    ]
    want = [
        (s["dn"], s["cn"], s["cert_sha256"], s["cert_sha1"], s["key_algorithm"], s["key_size"])
        for s in apksigner["signers"]
    ]
    assert got == want
    for cert in f.signatures.signers:
        assert cert.is_debug is (cert.dn == "CN=Android Debug, O=Android, C=US")
        assert cert.not_before < cert.not_after


@pytest.mark.parametrize("name", APKS)
def test_entries_match_zipinfo(name: str) -> None:
    fixture = load_fixture(name)
    if name == "empty-unsigned.apk":
        pytest.skip("no manifest to read (see test_empty_zip_is_invalid_...)")
    zipinfo = fixture.expected["zipinfo"]
    assert fixture.path.stat().st_size == fixture.expected["size"]
    assert facts(name).entries == zipinfo["entries"]


@pytest.mark.parametrize(
    ("name", "pem"),
    [
        ("fixture-release-v1v2v3.apk", "release.pem"),
        ("fixture-debug-signed.apk", "debug.pem"),
        ("fixture-otherkey-vc2.apk", "other.pem"),
    ],
)
def test_certificate_details_match_openssl(name: str, pem: str) -> None:
    """Subject, issuer, validity and SHA-256 of the signer as ``openssl x509`` prints them
    for the key the fixture was signed with."""
    openssl = tool("openssl")
    need(openssl is not None, "openssl is not installed")
    assert openssl is not None
    out = subprocess.run(
        [
            openssl,
            "x509",
            "-in",
            str(FIXTURES / "keys" / pem),
            "-noout",
            "-subject",
            "-issuer",
            "-startdate",
            "-enddate",
            "-fingerprint",
            "-sha256",
            "-nameopt",
            "RFC2253",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    fields = dict(line.split("=", 1) for line in out.splitlines())
    f = inspect_apk(load_fixture(name).path)
    assert f.signatures is not None
    (cert,) = f.signatures.signers
    assert cert.dn == fields["subject"].replace(",", ", ")  # RFC 2253: most specific first
    assert cert.issuer == fields["issuer"].replace(",", ", ")
    assert cert.sha256 == fields["sha256 Fingerprint"].replace(":", "").lower()
    assert cert.not_before == _openssl_date(fields["notBefore"])
    assert cert.not_after == _openssl_date(fields["notAfter"])
    assert cert.is_debug is (pem == "debug.pem")


def _openssl_date(text: str) -> datetime:
    return datetime.strptime(text, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)


def test_rotation_lineage_is_in_the_facts() -> None:
    f = inspect_apk(thirdparty("golden-aligned-v1v2v3-lineage-out.apk"))
    assert f.signatures is not None and f.signatures.verified
    assert [c.cn for c in f.signatures.lineage] == ["rsa-2048", "rsa-2048_2"]
    assert [c.cn for c in f.signatures.signers] == ["rsa-2048_2"]
    assert f.signatures.v3.verified and f.signatures.v3_signers[0].lineage == f.signatures.lineage


def test_signatures_are_checked_for_the_apks_own_min_sdk() -> None:
    # v3 only with minSdk 23: apksigner (and appyard) refuse it, there is no v1 for API 23
    f = inspect_apk(thirdparty("golden-aligned-v3-out.apk"))
    assert f.manifest.min_sdk == 23
    assert f.signatures is not None
    assert f.signatures.min_sdk == 23
    assert not f.signatures.verified
    assert f.signatures.v3.present and not f.signatures.v1.present


def test_facts_without_signature_checks_have_no_signatures() -> None:
    assert facts("fixture-release-v1v2v3.apk").signatures is None


# --- what aapt cannot read --------------------------------------------------------------------


def test_empty_zip_is_invalid_because_it_has_no_manifest() -> None:
    with pytest.raises(InvalidArtifact, match=r"no AndroidManifest\.xml") as caught:
        inspect_apk(thirdparty("empty-unsigned.apk"))
    assert caught.value.details["reason"] == "no_manifest"


def test_janus_apk_is_read_and_flagged_where_aapt_gives_up() -> None:
    f = inspect_apk(thirdparty("janus.apk"), verify_signatures=False)
    assert f.identity.identifier == "com.example"
    assert f.bytes_before_zip == 1032
    assert any("Janus" in w for w in f.warnings)


def test_truncated_apk_is_invalid(tmp_path: Path) -> None:
    data = load_fixture("fixture-release-v1v2v3.apk").path.read_bytes()
    truncated = tmp_path / "truncated.apk"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidArtifact, match="not a readable zip"):
        inspect_apk(truncated)


def test_a_text_file_is_not_an_apk(tmp_path: Path) -> None:
    path = tmp_path / "notes.apk"
    path.write_text("this is not an APK\n")
    with pytest.raises(InvalidArtifact, match="not a readable zip"):
        inspect_apk(path)


# --- resources: references resolve the way aapt and Android resolve them ---------------------


def test_debuggable_reference_to_false_is_not_debuggable() -> None:
    m = inspect_apk(thirdparty("debuggable-resource.apk"), verify_signatures=False).manifest
    assert m.debuggable is False
    assert m.debuggable_reference == "@bool/debuggable"


def test_debuggable_reference_to_true_is_debuggable_as_aapt_says(tmp_path: Path) -> None:
    source = thirdparty("debuggable-resource.apk")
    with zipfile.ZipFile(source) as zf:
        arsc = bytearray(zf.read("resources.arsc"))
    values = ArscTable(bytes(arsc)).values(0x7F030000)
    assert [v.data for _, v in values] == [0]
    # the only 32-bit false that is a TYPE_INT_BOOLEAN Res_value: size 8, res0 0, type 0x12
    marker = struct.pack("<HBBI", 8, 0, 0x12, 0)
    assert arsc.count(marker) == 1
    at = arsc.index(marker)
    arsc[at : at + 8] = struct.pack("<HBBI", 8, 0, 0x12, 0xFFFFFFFF)
    patched = rewrite_zip(source, tmp_path / "debuggable-true.apk", {"resources.arsc": bytes(arsc)})

    m = inspect_apk(patched, verify_signatures=False).manifest
    assert m.debuggable is True
    assert m.debuggable_reference == "@bool/debuggable"
    if AAPT is not None:
        from tests.inspect.conftest import badging

        assert badging(AAPT, patched)["debuggable"] is True


def test_launcher_icon_is_the_png_aapt_names_for_generated_fixtures() -> None:
    f = facts("fixture-release-v1v2v3.apk")
    assert f.icon is not None
    assert f.icon.path == "res/mipmap-mdpi-v4/ic_launcher.png"
    assert (f.icon.width, f.icon.height, f.icon.density, f.icon.source) == (48, 48, 160, "png")
    assert f.icon.png.startswith(b"\x89PNG\r\n\x1a\n")


def test_launcher_icon_is_the_highest_density_png() -> None:
    f = inspect_apk(thirdparty("org.dyndns.fules.ck_20.apk"), verify_signatures=False)
    assert f.icon is not None
    assert (f.icon.path, f.icon.density, f.icon.width) == (
        "res/drawable-hdpi-v4/icon_launcher.png",
        240,
        72,
    )


def test_adaptive_icon_falls_back_to_a_legacy_png_that_exists() -> None:
    # the table names an anydpi-v26 adaptive icon and five densities the zip does not hold
    f = inspect_apk(thirdparty("org.sajeg.fallingblocks_3.apk"), verify_signatures=False)
    assert f.manifest.icon_path == "res/mipmap-anydpi-v26/icon.xml"
    assert f.icon is not None
    assert (f.icon.path, f.icon.source, f.icon.width) == ("res/mipmap/icon.png", "legacy-png", 192)
    assert any("missing" in w for w in f.warnings)


def test_adaptive_icon_uses_its_png_foreground(tmp_path: Path) -> None:
    # the fixture's table names res/mipmap-anydpi-v26/icon.xml but the zip lacks it: add a
    # real adaptive-icon XML whose layers are the fixture's own mipmap PNGs
    source = thirdparty("org.sajeg.fallingblocks_3.apk")
    adaptive = make_axml(
        E(
            "adaptive-icon",
            children=[
                E("background", {"drawable": ("@", 0x7F0A0001)}),  # @mipmap/icon_background
                E("foreground", {"drawable": ("@", 0x7F0A0002)}),  # @mipmap/icon_foreground
            ],
        )
    )
    patched = rewrite_zip(source, tmp_path / "adaptive.apk", {})
    with zipfile.ZipFile(patched, "a") as zf:
        zf.writestr("res/mipmap-anydpi-v26/icon.xml", adaptive)
    if AAPT is not None:  # aapt reads the XML we wrote as an adaptive icon with both layers
        tree = subprocess.run(
            [AAPT, "dump", "xmltree", str(patched), "res/mipmap-anydpi-v26/icon.xml"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "E: adaptive-icon" in tree and "@0x7f0a0002" in tree

    f = inspect_apk(patched, verify_signatures=False)
    assert f.icon is not None
    assert (f.icon.path, f.icon.source) == ("res/mipmap/icon_foreground.png", "adaptive-foreground")
    with zipfile.ZipFile(source) as zf:
        assert f.icon.png == zf.read("res/mipmap/icon_foreground.png")


def test_apk_without_icon_has_none() -> None:
    assert inspect_apk(thirdparty("two-signers.apk"), verify_signatures=False).icon is None


# --- alignment --------------------------------------------------------------------------------


def test_native_libraries_page_aligned_at_4k_are_reported_misaligned_at_16k() -> None:
    alignment = facts("fixture-native-libs.apk").alignment
    assert alignment.aligned
    assert alignment.stored_libraries == 2
    assert alignment.libraries_misaligned_4k == ()
    assert alignment.libraries_misaligned_16k == (
        "lib/arm64-v8a/libfixture.so",
        "lib/armeabi-v7a/libfixture.so",
    )


def test_unaligned_debug_build_lists_its_misaligned_entries() -> None:
    alignment = inspect_apk(thirdparty("urzip.apk"), verify_signatures=False).alignment
    assert not alignment.aligned
    assert alignment.misaligned == ("res/drawable/ic_launcher.png", "resources.arsc")


@pytest.mark.parametrize("name", APKS)
def test_alignment_agrees_with_zipalign(name: str) -> None:
    need(ZIPALIGN is not None, "zipalign is not installed")
    fixture = load_fixture(name)
    if not fixture.expected["aapt"]["ok"]:
        pytest.skip("zipalign and aapt read the same zips")
    assert ZIPALIGN is not None
    run = subprocess.run(
        [ZIPALIGN, "-c", "-v", "-p", "4", str(fixture.path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    bad = sorted(
        line.split()[1] for line in run.stdout.splitlines() if "(BAD" in line and line[:1] == " "
    )
    alignment = facts(name).alignment
    assert sorted({*alignment.misaligned, *alignment.libraries_misaligned_4k}) == bad


# --- live aapt --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", APKS)
def test_live_aapt_badging_agrees(name: str) -> None:
    from tests.inspect.conftest import badging

    need(AAPT is not None, "aapt is not installed")
    fixture = load_fixture(name)
    assert AAPT is not None
    live = badging(AAPT, fixture.path)
    if not live["ok"]:
        assert not fixture.expected["aapt"]["ok"]
        return
    assert as_badging(facts(name)) == comparable(live)
