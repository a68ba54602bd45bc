"""Manifest semantics the fixtures do not cover, on manifests written by the tests
(tests/inspect/conftest.py make_axml): exported components, launcher aliases, security
flags, permissions, and what Android ignores or refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from appyard.errors import InvalidArtifact
from appyard.inspect.apk import ApkFacts, inspect_apk
from tests.inspect.conftest import E, make_apk, make_axml, manifest

LAUNCHER = E(
    "intent-filter",
    children=[
        E("action", {"name": "android.intent.action.MAIN"}),
        E("category", {"name": "android.intent.category.LAUNCHER"}),
    ],
)
VIEW = E("intent-filter", children=[E("action", {"name": "android.intent.action.VIEW"})])


def inspect(tmp_path: Path, root: E, **kwargs: frozenset[str]) -> ApkFacts:
    apk = make_apk(tmp_path / "app.apk", {"AndroidManifest.xml": make_axml(root, **kwargs)})
    return inspect_apk(apk, verify_signatures=False)


def app(*children: E, **attrs: str | bool | int | tuple[str, int]) -> E:
    return E("application", dict(attrs), list(children))


def sdk(min_sdk: int, target: int) -> E:
    return E("uses-sdk", {"minSdkVersion": min_sdk, "targetSdkVersion": target})


def test_components_with_intent_filters_are_exported_unless_they_say_otherwise(
    tmp_path: Path,
) -> None:
    f = inspect(
        tmp_path,
        manifest(
            sdk(21, 30),
            app(
                E("activity", {"name": ".Main"}, [LAUNCHER]),
                E("activity", {"name": ".Private"}),
                E("activity", {"name": ".Closed", "exported": False}, [VIEW]),
                E("service", {"name": ".Sync", "permission": "org.example.SYNC"}, [VIEW]),
                E("receiver", {"name": "org.other.Boot", "exported": True}),
            ),
        ),
    )
    exported = {c.name: c for c in f.manifest.exported_components}
    assert list(exported) == [
        "org.example.app.Main",
        "org.example.app.Sync",
        "org.other.Boot",
    ]
    assert exported["org.example.app.Main"].exported_attribute is None
    assert exported["org.example.app.Main"].has_intent_filter
    assert exported["org.example.app.Sync"].permission == "org.example.SYNC"
    assert exported["org.other.Boot"].exported_attribute is True
    assert f.manifest.launcher_activity == "org.example.app.Main"


def test_providers_are_exported_by_default_only_below_api_17(tmp_path: Path) -> None:
    def providers(target: int) -> list[str]:
        f = inspect(
            tmp_path,
            manifest(
                sdk(9, target),
                app(
                    E(
                        "provider",
                        {"name": ".Files", "authorities": "a", "readPermission": "org.R"},
                    )
                ),
            ),
        )
        return [c.name for c in f.manifest.exported_components if c.kind == "provider"]

    assert providers(16) == ["org.example.app.Files"]
    assert providers(17) == []


def test_a_launcher_activity_alias_counts_and_disabled_ones_do_not(tmp_path: Path) -> None:
    f = inspect(
        tmp_path,
        manifest(
            sdk(21, 33),
            app(
                E("activity", {"name": ".Old", "enabled": False, "exported": True}, [LAUNCHER]),
                E("activity", {"name": ".Real", "exported": False}),
                E(
                    "activity-alias",
                    {"name": ".Launcher", "targetActivity": ".Real", "exported": True},
                    [LAUNCHER],
                ),
            ),
        ),
    )
    assert f.manifest.launcher_activity == "org.example.app.Launcher"
    alias = next(c for c in f.manifest.exported_components if c.kind == "activity-alias")
    assert alias.target_activity == "org.example.app.Real"
    disabled = next(c for c in f.manifest.exported_components if c.name.endswith(".Old"))
    assert disabled.enabled is False


def test_targeting_api_31_without_android_exported_is_warned_about(tmp_path: Path) -> None:
    f = inspect(tmp_path, manifest(sdk(21, 31), app(E("activity", {"name": ".M"}, [LAUNCHER]))))
    assert any("android:exported" in w for w in f.manifest.warnings)


def test_security_flags_are_read_from_the_application(tmp_path: Path) -> None:
    f = inspect(
        tmp_path,
        manifest(
            sdk(23, 34),
            app(
                debuggable=True,
                testOnly=True,
                allowBackup=False,
                usesCleartextTraffic=True,
                extractNativeLibs=False,
                networkSecurityConfig=("@", 0x7F120000),
            ),
        ),
    )
    m = f.manifest
    assert (m.debuggable, m.test_only, m.allow_backup, m.uses_cleartext_traffic) == (
        True,
        True,
        False,
        True,
    )
    assert m.extract_native_libs is False
    # no resources.arsc: the reference cannot be resolved, so it is reported as written
    assert m.network_security_config == "@0x7f120000"


def test_absent_flags_are_none_so_checks_can_apply_android_defaults(tmp_path: Path) -> None:
    m = inspect(tmp_path, manifest(app())).manifest
    assert (m.allow_backup, m.uses_cleartext_traffic, m.network_security_config) == (
        None,
        None,
        None,
    )
    assert m.debuggable is False
    assert (m.min_sdk, m.target_sdk, m.effective_min_sdk, m.effective_target_sdk) == (
        None,
        None,
        1,
        1,
    )


def test_permissions_are_deduplicated_and_sdk23_ones_marked(tmp_path: Path) -> None:
    def perm(tag: str, name: str) -> E:
        return E(tag, {"name": name})

    f = inspect(
        tmp_path,
        manifest(
            sdk(21, 30),
            perm("uses-permission", "android.permission.INTERNET"),
            perm("uses-permission-sdk-23", "android.permission.CAMERA"),
            perm("uses-permission", "android.permission.INTERNET"),
            perm("uses-permission", "android.permission.WRITE_EXTERNAL_STORAGE"),
            app(),
        ),
    )
    m = f.manifest
    assert m.permissions == (
        "android.permission.INTERNET",
        "android.permission.CAMERA",
        "android.permission.WRITE_EXTERNAL_STORAGE",
    )
    assert m.permissions_sdk_23 == ("android.permission.CAMERA",)
    assert m.implied_permissions == ("android.permission.READ_EXTERNAL_STORAGE",)


def test_version_code_major_makes_the_long_version_code(tmp_path: Path) -> None:
    f = inspect(tmp_path, manifest(app(), versionCode=7, versionCodeMajor=2))
    assert f.manifest.long_version_code == (2 << 32) | 7
    assert f.identity.version_code == str((2 << 32) | 7)


def test_a_literal_label_is_used_without_resources(tmp_path: Path) -> None:
    f = inspect(tmp_path, manifest(app(label="Plain Label")))
    assert f.manifest.label == "Plain Label"
    assert dict(f.manifest.labels) == {}


def test_android_attributes_without_resource_id_are_ignored_like_android_does(
    tmp_path: Path,
) -> None:
    # a name string "debuggable" in the android namespace, but no resource id: Android and
    # aapt look attributes up by id, so this app is not debuggable
    f = inspect(tmp_path, manifest(app(debuggable=True)), unmapped=frozenset({"debuggable"}))
    assert f.manifest.debuggable is False


def test_a_wrong_binary_xml_header_type_is_tolerated_like_android(tmp_path: Path) -> None:
    data = bytearray(make_axml(manifest(app())))
    data[0:2] = b"\x00\x00"
    apk = make_apk(tmp_path / "odd.apk", {"AndroidManifest.xml": bytes(data)})
    f = inspect_apk(apk, verify_signatures=False)
    assert f.identity.identifier == "org.example.app"
    assert any("header type" in w for w in f.warnings)


@pytest.mark.parametrize(
    ("manifest_bytes", "message"),
    [
        (b'<?xml version="1.0"?><manifest package="a.b"/>', "not compiled binary XML"),
        (b"\x03\x00\x08\x00\xff\xff\x00\x00", "declares"),
        (b"PK\x03\x04" + b"\x00" * 60, "not binary XML"),
        (b"", "shorter than"),
    ],
)
def test_a_manifest_that_is_not_binary_xml_is_invalid(
    tmp_path: Path, manifest_bytes: bytes, message: str
) -> None:
    apk = make_apk(tmp_path / "bad.apk", {"AndroidManifest.xml": manifest_bytes})
    with pytest.raises(InvalidArtifact, match=message) as caught:
        inspect_apk(apk, verify_signatures=False)
    assert caught.value.message.startswith("AndroidManifest.xml is not valid binary XML")


def test_a_manifest_whose_root_is_not_manifest_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidArtifact, match=r"root element is <application>"):
        inspect(tmp_path, E("application", {"plain:package": "a.b"}))


@pytest.mark.parametrize("package", ["", "nodots", "a..b", "1a.b", "a.b/../c", "a b.c"])
def test_an_invalid_package_name_is_invalid(tmp_path: Path, package: str) -> None:
    with pytest.raises(InvalidArtifact, match="package"):
        inspect(tmp_path, manifest(app(), package=package))


def test_garbage_resources_arsc_is_invalid(tmp_path: Path) -> None:
    apk = make_apk(
        tmp_path / "app.apk",
        {
            "AndroidManifest.xml": make_axml(manifest(app(label=("@", 0x7F010000)))),
            "resources.arsc": b"\x02\x00\x0c\x00" + b"\xff" * 60,
        },
    )
    with pytest.raises(InvalidArtifact, match=r"resources\.arsc is not a valid resource table"):
        inspect_apk(apk, verify_signatures=False)


def test_a_manifest_declaring_more_than_the_bound_is_refused(tmp_path: Path) -> None:
    big = make_axml(manifest(app())) + b"\x00" * (4 * 1024 * 1024)
    apk = make_apk(tmp_path / "big.apk", {"AndroidManifest.xml": big})
    with pytest.raises(InvalidArtifact, match="at most"):
        inspect_apk(apk, verify_signatures=False)
