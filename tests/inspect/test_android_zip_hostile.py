"""Hostile APK and AAB containers: zip bombs, unsafe and duplicate names, huge manifests and
resource tables, too many entries, truncation. Each ends as InvalidArtifact with a stable
reason and a message a person can act on, quickly and within bounded memory (the bounds are
in docs/inspection-android.md)."""

from __future__ import annotations

import struct
import warnings
import zipfile
from pathlib import Path

import pytest

from appyard.errors import ArtifactTooLarge, InvalidArtifact
from appyard.inspect.aab import inspect_aab
from appyard.inspect.apk import MAX_APK_ENTRIES, MAX_MANIFEST_BYTES, inspect_apk
from appyard.inspect.archive import MAX_ENTRIES
from appyard.signing.zipmeta import MAX_RATIO
from tests.inspect.conftest import E, bounded, load_fixture, make_axml, manifest

MANIFEST = make_axml(manifest(E("application")))


def refused(path: Path, *, aab: bool = False) -> InvalidArtifact:
    with bounded(), pytest.raises(InvalidArtifact) as err:
        if aab:
            inspect_aab(path)
        else:
            inspect_apk(path)
    assert err.value.message
    return err.value


def write_zip(path: Path, entries: list[tuple[str, bytes]], *, deflate: bool = True) -> Path:
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", method) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return path


def reason(err: InvalidArtifact) -> str:
    return str(err.details["reason"])


# --- zip bombs --------------------------------------------------------------------------------


def test_a_manifest_that_inflates_past_the_ratio_is_a_zip_bomb(tmp_path: Path) -> None:
    bomb = MANIFEST + b"\0" * (3 * 1024 * 1024)  # below the size bound, ~1000x compressible
    path = write_zip(tmp_path / "bomb.apk", [("AndroidManifest.xml", bomb)])
    err = refused(path)
    assert isinstance(err, ArtifactTooLarge)
    assert reason(err) == "compression_ratio"
    assert f"{MAX_RATIO}x" in err.message


def test_a_manifest_larger_than_its_bound_is_refused_before_inflating(tmp_path: Path) -> None:
    huge = MANIFEST + b"\0" * MAX_MANIFEST_BYTES
    path = write_zip(tmp_path / "huge.apk", [("AndroidManifest.xml", huge)])
    err = refused(path)
    assert reason(err) == "entry_too_large"
    assert "AndroidManifest.xml" in err.message


def test_a_resource_table_bomb_is_refused(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "arsc-bomb.apk",
        [("AndroidManifest.xml", MANIFEST), ("resources.arsc", b"\0" * (48 * 1024 * 1024))],
    )
    err = refused(path)
    assert reason(err) == "compression_ratio"
    assert "resources.arsc" in err.message


def test_a_bundle_manifest_bomb_is_refused(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "bomb.aab",
        [("base/manifest/AndroidManifest.xml", b"\0" * (3 * 1024 * 1024))],
    )
    assert reason(refused(path, aab=True)) == "compression_ratio"


def test_a_large_stored_asset_is_never_read(tmp_path: Path) -> None:
    # 40 MB of stored assets: inspected in bounded memory, since assets are not read at all
    path = write_zip(
        tmp_path / "assets.apk",
        [("AndroidManifest.xml", MANIFEST), ("assets/big.bin", b"\1" * (40 * 1024 * 1024))],
        deflate=False,
    )
    with bounded():
        facts = inspect_apk(path)
    assert facts.identity.identifier == "org.example.app"
    assert facts.alignment.stored_entries == 2


# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../evil.so", "lib/../../evil.so", "/etc/passwd", "\\windows\\x", "C:/x", "a\\..\\b"]
)
def test_unsafe_entry_names_are_refused(tmp_path: Path, name: str) -> None:
    path = write_zip(tmp_path / "unsafe.apk", [("AndroidManifest.xml", MANIFEST), (name, b"x")])
    err = refused(path)
    assert reason(err) == "unsafe_entry_name"
    assert repr(name) in err.message


def test_unsafe_names_in_a_bundle_are_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "unsafe.aab", [("base/../../x", b"x")])
    assert reason(refused(path, aab=True)) == "unsafe_entry_name"


def test_duplicate_entries_are_refused(tmp_path: Path) -> None:
    # two manifests: Android and aapt read different ones, so the facts would be ambiguous
    other = make_axml(manifest(E("application"), package="org.example.other"))
    path = write_zip(
        tmp_path / "dup.apk",
        [("AndroidManifest.xml", MANIFEST), ("AndroidManifest.xml", other)],
    )
    err = refused(path)
    assert reason(err) == "duplicate_entry"
    assert "'AndroidManifest.xml' twice" in err.message


# --- structure --------------------------------------------------------------------------------


def test_a_zip_without_manifest_is_not_an_apk(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "nomanifest.apk", [("classes.dex", b"dex\n035\0")])
    err = refused(path)
    assert reason(err) == "no_manifest"


def test_a_bundle_without_base_manifest_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "nobase.aab", [("feature/dex/classes.dex", b"dex\n035\0")])
    assert refused(path, aab=True).message


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_apks_and_bundles_are_refused(tmp_path: Path, keep: float) -> None:
    for name, aab in (("fixture-release-v1v2v3.apk", False), ("fixture-bundle.aab", True)):
        data = load_fixture(name).path.read_bytes()
        path = tmp_path / f"cut-{name}"
        path.write_bytes(data[: int(len(data) * keep)])
        assert reason(refused(path, aab=aab)) == "not_a_zip"


@pytest.mark.parametrize(("aab", "bound"), [(False, MAX_APK_ENTRIES), (True, MAX_ENTRIES)])
def test_an_end_record_declaring_too_many_entries_is_refused_before_reading(
    tmp_path: Path, aab: bool, bound: int
) -> None:
    path = write_zip(tmp_path / "count.apk", [("AndroidManifest.xml", MANIFEST)])
    data = bytearray(path.read_bytes())
    eocd = data.rindex(b"PK\x05\x06")
    # a zip64 end record claiming more entries than the bound (the directory itself is small)
    zip64 = struct.pack(
        "<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, MAX_ENTRIES + 1, MAX_ENTRIES + 1, 0, 0
    )
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, eocd, 1)
    end = bytearray(data[eocd:])
    struct.pack_into("<HHI", end, 8, 0xFFFF, 0xFFFF, 0xFFFFFFFF)
    path.write_bytes(bytes(data[:eocd]) + zip64 + locator + bytes(end))
    err = refused(path, aab=aab)
    assert reason(err) == "too_many_entries"
    assert f"at most {bound} are accepted" in err.message
    assert ("ZIP64" in err.message) is not aab  # an APK is never ZIP64 (apksigner refuses it)


def test_an_end_record_declaring_a_huge_directory_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "dir.apk", [("AndroidManifest.xml", MANIFEST)])
    data = bytearray(path.read_bytes())
    eocd = data.rindex(b"PK\x05\x06")
    struct.pack_into("<I", data, eocd + 12, 0x7FFFFFFF)
    path.write_bytes(bytes(data))
    assert reason(refused(path)) == "directory_too_large"


def test_an_encrypted_manifest_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "enc.apk", [("AndroidManifest.xml", MANIFEST)])
    data = bytearray(path.read_bytes())
    # set the "encrypted" flag in the local and central headers
    for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        pos = data.index(sig)
        struct.pack_into("<H", data, pos + at, struct.unpack_from("<H", data, pos + at)[0] | 1)
    path.write_bytes(bytes(data))
    assert reason(refused(path)) == "bad_entry"
