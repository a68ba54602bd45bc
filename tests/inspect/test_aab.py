"""inspect_aab against the reference tools: expected.json (aapt2 dump badging per module,
jarsigner, keytool, openssl, protoc) for every AAB fixture, aapt2 live when installed, and
bundles changed by the tests (tampered, unsigned, without base)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from appyard.errors import InvalidArtifact
from appyard.inspect.aab import AabFacts, BundleModule, inspect_aab
from tests.conftest import need
from tests.inspect.conftest import (
    badging,
    dedup,
    fixture_names,
    load_fixture,
    rewrite_zip,
    thirdparty,
    tool,
)

AABS = fixture_names("aab")
AAPT2 = tool("aapt2")
JARSIGNER = tool("jarsigner")


@cache
def facts(name: str) -> AabFacts:
    return inspect_aab(load_fixture(name).path)


def as_badging(module: BundleModule) -> dict[str, Any]:
    m = module.manifest
    declared = [p for p in m.permissions if p not in m.permissions_sdk_23]
    return {
        "package": m.package,
        "versionCode": str(m.version_code),
        "versionName": m.version_name,
        "split": m.split,
        "sdkVersion": None if m.min_sdk is None else str(m.min_sdk),
        "targetSdkVersion": None if m.target_sdk is None else str(m.target_sdk),
        "application_label": m.label,
        "application_labels": dict(m.labels),
        "application_icon": m.icon_path or "",
        "application_icons": {str(k): v for k, v in m.icon_paths.items()},
        "native_code": list(module.native_abis),
        "debuggable": m.debuggable,
        "uses_permissions": dedup(declared + list(m.implied_permissions)),
        "launchable_activity": m.launcher_activity,
    }


KEYS = (
    "package",
    "versionCode",
    "versionName",
    "sdkVersion",
    "targetSdkVersion",
    "application_label",
    "application_labels",
    "application_icon",
    "application_icons",
    "native_code",
    "debuggable",
    "uses_permissions",
    "launchable_activity",
)


def comparable(aapt2: dict[str, Any]) -> dict[str, Any]:
    out = {k: aapt2[k] for k in KEYS}
    out["split"] = aapt2["package_attrs"].get("split")
    out["uses_permissions"] = dedup(aapt2["uses_permissions"])
    return out


@pytest.mark.parametrize("name", AABS)
def test_modules_are_the_folders_with_a_manifest(name: str) -> None:
    expected = load_fixture(name).expected["modules"]
    modules = facts(name).modules
    assert modules[0].name == "base"
    assert sorted(m.name for m in modules) == sorted(expected)
    for module in modules:
        files = expected[module.name]["files"]
        if len(files) < 200:  # expected.json keeps the first 200 names
            assert module.entries == len(files)
        assert module.has_dex == any(f.startswith(f"{module.name}/dex/") for f in files)


@pytest.mark.parametrize("name", AABS)
def test_every_module_matches_aapt2_badging(name: str) -> None:
    expected = load_fixture(name).expected["modules"]
    for module in facts(name).modules:
        assert as_badging(module) == comparable(expected[module.name]["aapt2"]), module.name


@pytest.mark.parametrize("name", AABS)
def test_identity_is_the_base_module(name: str) -> None:
    f = facts(name)
    base = load_fixture(name).expected["modules"]["base"]["aapt2"]
    assert (f.identity.platform, f.identity.kind) == ("android", "aab")
    assert f.identity.identifier == base["package"]
    assert f.identity.version_code == base["versionCode"]
    assert f.identity.version_name == base["versionName"]


@pytest.mark.parametrize("name", AABS)
def test_bundletool_version_matches_bundle_config(name: str) -> None:
    raw = load_fixture(name).expected["bundle_config_decode_raw"]
    assert f'2: "{facts(name).bundletool_version}"' in raw.split("}")[0]


@pytest.mark.parametrize("name", AABS)
def test_jar_signature_verifies_exactly_when_jarsigner_says_so(name: str) -> None:
    jarsigner = load_fixture(name).expected["jarsigner"]
    signature = facts(name).jar_signature
    assert signature is not None
    assert signature.verified is jarsigner["verified"]
    if not jarsigner["verified"]:
        # jarsigner: "java.lang.SecurityException: SHA-256 digest error for BundleConfig.pb"
        reason = jarsigner["output"][0].rsplit("SecurityException: ", 1)[1]
        assert reason in signature.errors


@pytest.mark.parametrize("name", AABS)
def test_jar_signer_certificate_matches_the_signature_block(name: str) -> None:
    blocks = load_fixture(name).expected["signature_block_certs"]
    signature = facts(name).jar_signature
    assert signature is not None
    assert [s.block for s in signature.signers] == sorted(blocks)
    for signer in signature.signers:
        certs = {c["sha256"]: c for c in blocks[signer.block]}
        assert signer.cert_sha256 in certs
        assert signer.subject == certs[signer.cert_sha256]["subject"]
        assert signer.issuer == certs[signer.cert_sha256]["issuer"]


def test_facts_without_verification_still_name_the_signer() -> None:
    f = inspect_aab(load_fixture("fixture-bundle.aab").path, verify_signatures=False)
    assert f.jar_signed
    assert f.jar_signature is not None
    assert f.jar_signature.verified is None
    assert [s.subject for s in f.jar_signature.signers] == [
        "CN=Appyard Fixture Release,O=Appyard Fixtures,C=US"
    ]


def test_bundle_module_delivery_is_read_from_dist_module() -> None:
    f = inspect_aab(thirdparty("install-time-permanent-modules.aab"), verify_signatures=False)
    delivery = {m.name: (m.delivery, m.manifest.split) for m in f.modules}
    assert delivery == {
        "base": (None, None),
        "assets": ("on-demand", "assets"),
        "initialInstall": ("install-time", "initialInstall"),
        "java": ("on-demand", "java"),
    }


def test_adaptive_icon_with_a_vector_foreground_falls_back_to_the_legacy_png() -> None:
    f = inspect_aab(thirdparty("install-time-permanent-modules.aab"), verify_signatures=False)
    assert f.manifest.icon_path == "res/mipmap-anydpi-v26/ic_launcher.xml"
    assert f.icon is not None
    assert (f.icon.path, f.icon.source, f.icon.density) == (
        "res/mipmap-xxxhdpi-v4/ic_launcher.png",
        "legacy-png",
        640,
    )
    assert f.icon.png.startswith(b"\x89PNG")


def test_generated_bundle_icon_is_its_png() -> None:
    icon = facts("fixture-bundle.aab").icon
    assert icon is not None
    assert (icon.path, icon.width, icon.height, icon.source) == (
        "res/mipmap-mdpi-v4/ic_launcher.png",
        48,
        48,
        "png",
    )


# --- bundles changed by the tests -------------------------------------------------------------


def test_a_changed_entry_breaks_the_jar_signature(tmp_path: Path) -> None:
    source = load_fixture("fixture-bundle.aab").path
    with zipfile.ZipFile(source) as zf:
        dex = zf.read("base/dex/classes.dex")
    tampered = rewrite_zip(source, tmp_path / "t.aab", {"base/dex/classes.dex": dex + b"\0"})
    signature = inspect_aab(tampered).jar_signature
    assert signature is not None
    assert signature.verified is False
    assert signature.errors == ("SHA-256 digest error for base/dex/classes.dex",)


def test_an_added_entry_is_reported_unsigned(tmp_path: Path) -> None:
    source = load_fixture("fixture-bundle.aab").path
    added = rewrite_zip(source, tmp_path / "a.aab", {})
    with zipfile.ZipFile(added, "a") as zf:
        zf.writestr("base/assets/extra.txt", b"not signed")
    signature = inspect_aab(added).jar_signature
    assert signature is not None
    assert signature.verified is True  # as jarsigner: a warning, not a failure
    assert signature.unsigned_entries == ("base/assets/extra.txt",)


def test_a_changed_signature_file_does_not_verify(tmp_path: Path) -> None:
    source = load_fixture("fixture-bundle.aab").path
    with zipfile.ZipFile(source) as zf:
        sf = zf.read("META-INF/RELEASE.SF")
    changed = rewrite_zip(
        source, tmp_path / "s.aab", {"META-INF/RELEASE.SF": sf.replace(b"SHA-256", b"SHA-257")}
    )
    signature = inspect_aab(changed).jar_signature
    assert signature is not None
    assert signature.verified is False
    # jarsigner signs through signed attributes: their messageDigest no longer matches
    assert signature.errors == (
        "META-INF/RELEASE.RSA: the signed attributes' message digest does not match the .SF file",
    )


def test_a_changed_signature_value_does_not_verify(tmp_path: Path) -> None:
    source = load_fixture("fixture-bundle.aab").path
    with zipfile.ZipFile(source) as zf:
        block = bytearray(zf.read("META-INF/RELEASE.RSA"))
    block[-1] ^= 0x01  # the SignerInfo's signature is the last field of the block
    changed = rewrite_zip(source, tmp_path / "r.aab", {"META-INF/RELEASE.RSA": bytes(block)})
    signature = inspect_aab(changed).jar_signature
    assert signature is not None
    assert signature.verified is False
    assert signature.errors == ("META-INF/RELEASE.RSA: the signature does not verify",)
    assert signature.signers[0].cert_sha256 == (
        "a92377e9f4fede6fcc579f2c2f1255b76a0564873adab1ef9a4dce0cc34f0b51"
    )


def test_a_manifest_with_an_appended_section_falls_back_to_section_digests(
    tmp_path: Path,
) -> None:
    source = load_fixture("fixture-bundle.aab").path
    with zipfile.ZipFile(source) as zf:
        manifest_mf = zf.read("META-INF/MANIFEST.MF")
    extra = b"Name: base/assets/extra.txt\r\nSHA-256-Digest: " + base64.b64encode(
        hashlib.sha256(b"extra").digest()
    )
    changed = rewrite_zip(
        source,
        tmp_path / "m.aab",
        {"META-INF/MANIFEST.MF": manifest_mf + extra + b"\r\n\r\n"},
    )
    with zipfile.ZipFile(changed, "a") as zf:
        zf.writestr("base/assets/extra.txt", b"extra")
    signature = inspect_aab(changed).jar_signature
    assert signature is not None
    # the .SF still vouches for every original section; the appended one is not signed
    assert signature.verified is True
    assert signature.unsigned_entries == ("base/assets/extra.txt",)


def test_an_unsigned_bundle_has_no_jar_signature(tmp_path: Path) -> None:
    source = load_fixture("fixture-bundle.aab").path
    drop: dict[str, bytes | None] = {
        n: None for n in ("META-INF/MANIFEST.MF", "META-INF/RELEASE.SF", "META-INF/RELEASE.RSA")
    }
    f = inspect_aab(rewrite_zip(source, tmp_path / "u.aab", drop))
    assert not f.jar_signed
    assert f.jar_signature is None


def test_a_bundle_without_base_module_is_invalid(tmp_path: Path) -> None:
    source = load_fixture("fixture-bundle.aab").path
    broken = rewrite_zip(source, tmp_path / "b.aab", {"base/manifest/AndroidManifest.xml": None})
    with pytest.raises(InvalidArtifact, match=r"no base/manifest/AndroidManifest\.xml"):
        inspect_aab(broken)


def test_a_bundle_with_a_binary_xml_manifest_is_invalid(tmp_path: Path) -> None:
    source = load_fixture("fixture-bundle.aab").path
    with zipfile.ZipFile(load_fixture("fixture-release-v1v2v3.apk").path) as zf:
        binary = zf.read("AndroidManifest.xml")
    broken = rewrite_zip(source, tmp_path / "x.aab", {"base/manifest/AndroidManifest.xml": binary})
    with pytest.raises(InvalidArtifact, match="not a valid protocol-buffer manifest"):
        inspect_aab(broken)


# --- live aapt2 -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", AABS)
def test_live_aapt2_badging_agrees_for_every_module(name: str, tmp_path: Path) -> None:
    need(AAPT2 is not None, "aapt2 is not installed")
    assert AAPT2 is not None
    path = load_fixture(name).path
    for module in facts(name).modules:
        probe = tmp_path / f"{module.name}.zip"
        with zipfile.ZipFile(path) as zf, zipfile.ZipFile(probe, "w") as out:
            out.writestr(
                "AndroidManifest.xml", zf.read(f"{module.name}/manifest/AndroidManifest.xml")
            )
            if f"{module.name}/resources.pb" in zf.namelist():
                out.writestr("resources.pb", zf.read(f"{module.name}/resources.pb"))
        live = badging(AAPT2, probe)
        assert live["ok"]
        assert as_badging(module) == comparable(live), module.name


def _variants(tmp_path: Path) -> list[Path]:
    """The generated bundle and the changed copies the tests above make."""
    source = load_fixture("fixture-bundle.aab").path
    with zipfile.ZipFile(source) as zf:
        dex = zf.read("base/dex/classes.dex")
        sf = zf.read("META-INF/RELEASE.SF")
        block = bytearray(zf.read("META-INF/RELEASE.RSA"))
        manifest_mf = zf.read("META-INF/MANIFEST.MF")
    block[-1] ^= 1
    extra = b"Name: base/x.txt\r\nSHA-256-Digest: " + base64.b64encode(
        hashlib.sha256(b"x").digest()
    )
    out = [
        source,
        rewrite_zip(source, tmp_path / "dex.aab", {"base/dex/classes.dex": dex + b"\0"}),
        rewrite_zip(source, tmp_path / "sf.aab", {"META-INF/RELEASE.SF": sf + b"X: y\r\n"}),
        rewrite_zip(source, tmp_path / "rsa.aab", {"META-INF/RELEASE.RSA": bytes(block)}),
        rewrite_zip(
            source,
            tmp_path / "mf.aab",
            {"META-INF/MANIFEST.MF": manifest_mf + extra + b"\r\n\r\n"},
        ),
    ]
    with zipfile.ZipFile(out[-1], "a") as zf:
        zf.writestr("base/x.txt", b"x")
    return out


def test_live_jarsigner_agrees_on_changed_bundles(tmp_path: Path) -> None:
    need(JARSIGNER is not None, "jarsigner is not installed")
    assert JARSIGNER is not None
    for path in _variants(tmp_path):
        run = subprocess.run(
            [JARSIGNER, "-verify", str(path)], capture_output=True, text=True, timeout=120
        )
        verified = run.returncode == 0 and "jar verified." in run.stdout
        signature = inspect_aab(path).jar_signature
        assert signature is not None
        assert signature.verified is verified, (path.name, run.stdout + run.stderr)


def test_native_abis_are_collected_over_every_module(tmp_path: Path) -> None:
    source = load_fixture("fixture-bundle.aab").path
    path = rewrite_zip(source, tmp_path / "native.aab", {})
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("base/lib/arm64-v8a/libapp.so", b"\x7fELF")
        zf.writestr("base/lib/armeabi-v7a/libapp.so", b"\x7fELF")
        zf.writestr("base/lib/x86_64/", b"")  # a folder entry alone is no library
    f = inspect_aab(path, verify_signatures=False)
    assert f.native_abis == ("arm64-v8a", "armeabi-v7a")
    assert f.modules[0].native_abis == ("arm64-v8a", "armeabi-v7a")
