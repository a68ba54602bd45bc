"""``signature_present`` (the store upload's fast check) agrees with the full verifier on
whether an APK carries a signature at all, without reading the entries' data."""

from __future__ import annotations

from pathlib import Path

import pytest

from appyard.signing.verify import signature_present, verify_apk
from tests.conftest import FIXTURES


@pytest.mark.parametrize("apk", sorted(FIXTURES.glob("*.apk")), ids=lambda p: p.name)
def test_presence_matches_the_full_verification(apk: Path) -> None:
    full = verify_apk(apk, min_sdk=24)
    present = any(s.present for s in (full.v1, full.v2, full.v3, full.v31))

    assert signature_present(apk) is present
    assert present is (apk.name != "fixture-unsigned.apk")
