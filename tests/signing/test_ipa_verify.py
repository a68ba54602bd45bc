"""The IPA signature verifier, proven first on signatures made by others: Apple's codesign
(``very-capable-app.ipa``) and the linker's ad-hoc signatures (``ld64.lld-14``); then every
kind of tampering is caught and named."""

from __future__ import annotations

import plistlib
import struct
import zipfile
from pathlib import Path

import pytest

from appyard.signing.ios.verify import check_macho, verify_ipa
from tests.conftest import need, shared_path
from tests.signing.ios_kit import build_macho, make_identity, make_profile, rezip, tools_present

APP = "Payload/very-capable-app.app/"
EXE = f"{APP}very-capable-app"


@pytest.fixture
def capable() -> Path:
    return shared_path("fixtures", "thirdparty", "very-capable-app.ipa")


def read(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as zf:
        return zf.read(name)


def test_apple_signed_fixture_verifies(capable: Path) -> None:
    report = verify_ipa(capable)
    assert report.intact, report.problems
    assert report.machos == (EXE,)
    (sl,) = report.app.slices
    assert sl.arch == "arm64" and sl.identifier == "org.fastlane.very-capable-app"
    assert sl.hash_types == ("sha1", "sha256")  # codesign wrote a SHA-1 CodeDirectory first
    assert not sl.adhoc and sl.signer is not None and sl.signer.common_name == "TestFixture"
    assert sl.designated_requirement == (
        'identifier "org.fastlane.very-capable-app" and certificate root = '
        'H"c8d1aac67c23186501a9ddc93356d8e14ae29e14"'
    )
    assert sl.entitlements is not None and sl.entitlements["get-task-allow"] is True
    profile = report.app.profile
    assert profile is not None and profile.signing_type == "development"


def _tampered(capable: Path, tmp: Path, change: dict[str, bytes | None]) -> tuple[str, ...]:
    return verify_ipa(rezip(capable, tmp / "tampered.ipa", change=change)).problems


def test_a_changed_code_page_is_caught_and_named(capable: Path, tmp_path: Path) -> None:
    exe = bytearray(read(capable, EXE))
    exe[3 * 4096 + 100] ^= 0xFF
    problems = _tampered(capable, tmp_path, {EXE: bytes(exe)})
    assert f"{EXE} (arm64): code page 3 changed (sha1 page hashes)" in problems
    assert f"{EXE} (arm64): code page 3 changed (sha256 page hashes)" in problems
    assert len(problems) == 2


def test_a_changed_resource_is_caught_and_named(capable: Path, tmp_path: Path) -> None:
    name = f"{APP}Base.lproj/Main.storyboardc/Info.plist"
    problems = _tampered(capable, tmp_path, {name: read(capable, name) + b" "})
    assert problems == (f"{APP}: changed file: Base.lproj/Main.storyboardc/Info.plist",)


def test_an_added_file_is_caught_and_named(capable: Path, tmp_path: Path) -> None:
    problems = _tampered(capable, tmp_path, {f"{APP}payload.dylib": b"\xcf\xfa\xed\xfe"})
    assert f"{APP}: added file: payload.dylib" in problems


def test_a_removed_file_is_caught_and_named(capable: Path, tmp_path: Path) -> None:
    problems = _tampered(capable, tmp_path, {f"{APP}PkgInfo": None})
    assert problems == ()  # PkgInfo is omitted by rules2: iOS does not seal it
    name = f"{APP}Base.lproj/Main.storyboardc/UIViewController-BYZ-38-t0r.nib"
    problems = _tampered(capable, tmp_path, {name: None})
    assert problems == (
        f"{APP}: missing file: Base.lproj/Main.storyboardc/UIViewController-BYZ-38-t0r.nib",
    )


def test_a_changed_info_plist_is_caught_and_named(capable: Path, tmp_path: Path) -> None:
    info = plistlib.loads(read(capable, f"{APP}Info.plist"))
    info["CFBundleIdentifier"] = "com.evil.app"
    problems = _tampered(capable, tmp_path, {f"{APP}Info.plist": plistlib.dumps(info)})
    assert f"{EXE} (arm64): Info.plist changed (special slot -1, sha1)" in problems
    assert f"{EXE} (arm64): Info.plist changed (special slot -1, sha256)" in problems


def test_a_swapped_profile_is_caught_and_named(capable: Path, tmp_path: Path) -> None:
    other = make_profile(make_identity(), app_id="TestFixture.org.fastlane.*", team="TestFixture")
    problems = _tampered(capable, tmp_path, {f"{APP}embedded.mobileprovision": other})
    assert f"{APP}: changed file: embedded.mobileprovision" in problems
    assert any(
        p.startswith(f"{APP}embedded.mobileprovision does not list the signing certificate")
        for p in problems
    )


def test_changed_entitlements_are_caught(capable: Path, tmp_path: Path) -> None:
    exe = bytearray(read(capable, EXE))
    at = exe.find(b"<key>get-task-allow</key>")
    assert at > 0
    exe[at + 5 : at + 8] = b"GET"  # inside the entitlements blob, past the code limit
    problems = _tampered(capable, tmp_path, {EXE: bytes(exe)})
    assert f"{EXE} (arm64): entitlements changed (special slot -5, sha256)" in problems


def test_a_changed_cms_signature_is_caught(capable: Path, tmp_path: Path) -> None:
    exe = bytearray(read(capable, EXE))
    at = exe.find(struct.pack(">I", 0xFADE0B01))
    (length,) = struct.unpack_from(">I", exe, at + 4)
    exe[at + length - 10] ^= 0x01  # the CMS blob ends with the SignerInfo's signature value
    problems = _tampered(capable, tmp_path, {EXE: bytes(exe)})
    assert any("the CMS signature does not verify" in p for p in problems), problems


def test_linker_adhoc_signatures_verify(tmp_path: Path) -> None:
    """ld64.lld-14 signs ad hoc: a second, independent writer of CodeDirectories."""
    need(tools_present(), "llvm-mc, ld64.lld-14 and llvm-lipo-14 (apt: llvm lld-14)")
    for kind in ("execute", "dylib"):
        path = build_macho(tmp_path / kind, kind=kind, const_bytes=30000)
        (sl,) = check_macho(path, what=kind, info_plist=None, code_resources=None)
        assert sl.problems == () and sl.adhoc and sl.hash_types == ("sha256",)
        assert sl.identifier == kind and sl.signer is None
        data = bytearray(path.read_bytes())
        data[4096 * 2 + 8] ^= 0x10
        path.write_bytes(bytes(data))
        (sl,) = check_macho(path, what=kind, info_plist=None, code_resources=None)
        assert sl.problems == (f"{kind} (arm64): code page 2 changed (sha256 page hashes)",)


def test_an_unsigned_binary_is_reported(tmp_path: Path) -> None:
    need(tools_present(), "llvm-mc, ld64.lld-14 and llvm-lipo-14 (apt: llvm lld-14)")
    path = build_macho(tmp_path / "bare", adhoc=False)
    (sl,) = check_macho(path, what="bare", info_plist=None, code_resources=None)
    assert sl.problems == ("bare (arm64): not signed (no LC_CODE_SIGNATURE)",)


def test_a_lying_signature_index_is_a_problem_not_a_crash(capable: Path, tmp_path: Path) -> None:
    exe = bytearray(read(capable, EXE))
    at = exe.find(struct.pack(">I", 0xFADE0CC0))
    struct.pack_into(">I", exe, at + 8, 60000)  # the SuperBlob's count
    problems = _tampered(capable, tmp_path, {EXE: bytes(exe)})
    assert any("signature's index is damaged" in p for p in problems), problems
