"""``inspect_ipa`` and ``appyard inspect`` report an IPA's signing facts from the verifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appyard.cli.inspect_cmd import run_inspect
from appyard.inspect.ipa import inspect_ipa
from appyard.signing.ios.resign import resign_ipa
from tests.conftest import need, shared_path
from tests.signing.ios_kit import TEAM, build_ipa, make_identity, make_profile, rezip, tools_present

APP = "Payload/very-capable-app.app/"


def test_the_apple_signed_fixture_reports_intact_facts() -> None:
    facts = inspect_ipa(shared_path("fixtures", "thirdparty", "very-capable-app.ipa"))
    sig = facts.signature
    assert sig is not None and sig.intact and sig.problems == ()
    assert sig.certificate is not None and sig.certificate.common_name == "TestFixture"
    assert sig.profile_type == "development" and sig.certificate_in_profile is True
    assert sig.identifier == "org.fastlane.very-capable-app" and not sig.adhoc
    assert sig.entitlements["application-identifier"] == "TestFixture.org.fastlane.very-capable-app"
    assert (
        inspect_ipa(
            shared_path("fixtures", "thirdparty", "very-capable-app.ipa"), verify_signatures=False
        ).signature
        is None
    )


def test_a_tampered_ipa_reports_what_broke(tmp_path: Path) -> None:
    src = shared_path("fixtures", "thirdparty", "very-capable-app.ipa")
    bad = rezip(src, tmp_path / "bad.ipa", change={f"{APP}PkgInfo": b"XXXXXXXX", f"{APP}x": b"1"})
    sig = inspect_ipa(bad).signature
    assert sig is not None and not sig.intact
    assert sig.problems == (f"{APP}: added file: x",)


def test_inspect_json_carries_the_signature_of_a_resigned_ipa(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need(tools_present(), "llvm-mc, ld64.lld-14 and llvm-lipo-14 (apt: llvm lld-14)")
    identity = make_identity()
    built = build_ipa(tmp_path / "in.ipa", watch=False)
    out = tmp_path / "out.ipa"
    resign_ipa(built.path, out, identity.material, profiles=[make_profile(identity)])
    run_inspect(out, as_json=True)
    doc = json.loads(capsys.readouterr().out)
    sig = doc["facts"]["signature"]
    assert sig["intact"] is True and sig["team_id"] == TEAM
    assert sig["certificate"]["sha256"] == identity.material.certificate_sha256
    assert sig["profile_type"] == "app-store" and sig["certificate_in_profile"] is True
    assert sig["signed_bundles"][-1] == built.app
    assert sig["entitlements"]["application-identifier"] == f"{TEAM}.com.example.demo"
