"""Hostile Mach-O files: the verifier reports or refuses (BadMachO), the re-signer refuses
with an AppyardError; neither crashes with anything else."""

from __future__ import annotations

import re
import struct
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appyard.errors import AppyardError, InvalidArtifact
from appyard.signing.ios.errors import BadMachO
from appyard.signing.ios.resign import resign_ipa
from appyard.signing.ios.verify import IpaSignatureReport, check_macho, verify_ipa
from tests.conftest import SHARED, need
from tests.signing.ios_kit import TEAM, make_identity, make_profile, rezip

CAPABLE = SHARED / "fixtures" / "thirdparty" / "very-capable-app.ipa"
EXE = "Payload/very-capable-app.app/very-capable-app"
IDENTITY = make_identity()
PROFILE = make_profile(IDENTITY, app_id=f"{TEAM}.org.fastlane.*")


def _exe() -> bytes:
    if not CAPABLE.exists():
        return b""
    with zipfile.ZipFile(CAPABLE) as zf:
        return zf.read(EXE)


ORIGINAL = _exe()
# the header and load commands, and the signature's index and CodeDirectory
HOT = [*range(0, 3432), *range(54160, 54160 + 1400)]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    flips=st.lists(
        st.tuples(st.sampled_from(HOT), st.integers(min_value=1, max_value=255)),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_binaries_are_reported_or_refused(
    tmp_path_factory: pytest.TempPathFactory, flips: list[tuple[int, int]]
) -> None:
    need(bool(ORIGINAL), f"{CAPABLE} is absent (../shared not beside the checkout)")
    data = bytearray(ORIGINAL)
    for at, value in flips:
        data[at] ^= value
    tmp: Path = tmp_path_factory.mktemp("hostile")
    path = tmp / "exe"
    path.write_bytes(bytes(data))
    try:
        check_macho(path, what="exe", info_plist=None, code_resources=None)
    except BadMachO:
        pass
    ipa = rezip(CAPABLE, tmp / "in.ipa", change={EXE: bytes(data)})
    try:
        verify_ipa(ipa)
    except InvalidArtifact:
        pass
    try:
        resign_ipa(ipa, tmp / "out.ipa", IDENTITY.material, profiles=[PROFILE])
    except AppyardError:
        return
    assert verify_ipa(tmp / "out.ipa").intact


def _resign_refuses(tmp_path: Path, data: bytes, reason: str) -> IpaSignatureReport:
    """Re-signing the fixture with ``data`` as its main executable is refused for ``reason``
    before anything is written; returns what the verifier says of that input."""
    ipa = rezip(CAPABLE, tmp_path / "in.ipa", change={EXE: data})
    out = tmp_path / "out.ipa"
    with pytest.raises(BadMachO) as caught:
        resign_ipa(ipa, out, IDENTITY.material, profiles=[PROFILE])
    assert caught.value.code == "ipa_signing.bad_macho"
    assert EXE in caught.value.message and reason in caught.value.message
    assert not out.exists()
    return verify_ipa(ipa)


def test_load_commands_running_into_the_signature_are_refused_by_both(tmp_path: Path) -> None:
    # hypothesis' @reproduce_failure('6.170.27', b'AAFBFUIA8AA='): byte 21 ^= 0xf0 makes
    # sizeofcmds 64840 (was 3400), so the load commands end at byte 64872: inside the file
    # (66912 bytes) but past the code signature (at 54160). Re-signing cut the file to the new
    # signature's end and wrote a Mach-O whose load commands ran past it.
    need(bool(ORIGINAL), f"{CAPABLE} is absent (../shared not beside the checkout)")
    data = bytearray(ORIGINAL)
    data[21] ^= 0xF0
    reason = "its load commands run past the start of its code signature (byte 54160)"
    path = tmp_path / "exe"
    path.write_bytes(bytes(data))
    with pytest.raises(BadMachO, match=re.escape(reason)):
        check_macho(path, what="exe", info_plist=None, code_resources=None)
    report = _resign_refuses(tmp_path, bytes(data), reason)
    assert any(reason in problem for problem in report.problems)


def test_load_commands_past_where_a_new_signature_goes_are_refused(tmp_path: Path) -> None:
    # unsigned, and __LINKEDIT (the last segment, whose end a new signature goes at) ends at
    # byte 96, inside the load commands: re-signing cut the file there, through them
    need(bool(ORIGINAL), f"{CAPABLE} is absent (../shared not beside the checkout)")
    data = bytearray(ORIGINAL)
    struct.pack_into("<I", data, 3416, 0x7FFFFF00)  # LC_CODE_SIGNATURE -> an unknown command
    struct.pack_into("<Q", data, 104 + 48, 0)  # __TEXT filesize
    struct.pack_into("<Q", data, 816 + 48, 0)  # __DATA filesize
    struct.pack_into("<QQ", data, 1848 + 40, 0, 96)  # __LINKEDIT fileoff, filesize
    reason = "its load commands run past where its code signature goes (byte 96)"
    report = _resign_refuses(tmp_path, bytes(data), reason)
    assert not report.intact
