"""Hostile Mach-O files: the verifier reports or refuses (BadMachO), the re-signer refuses
with an AppyardError; neither crashes with anything else."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appyard.errors import AppyardError, InvalidArtifact
from appyard.signing.ios.errors import BadMachO
from appyard.signing.ios.resign import resign_ipa
from appyard.signing.ios.verify import check_macho, verify_ipa
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
