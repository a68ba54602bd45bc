"""``appyard sign in.ipa out.ipa --p12 ... --password-env ... --profile ... [--bundle-id]``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from appyard.cli.main import app
from appyard.signing.ios.verify import verify_ipa
from tests.conftest import KEYS, need
from tests.signing.ios_kit import TEAM, build_ipa, make_identity, make_profile, tools_present


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    need(tools_present(), "llvm-mc, ld64.lld-14 and llvm-lipo-14 (apt: llvm lld-14)")
    identity = make_identity()
    (tmp_path / "dist.p12").write_bytes(identity.p12)
    (tmp_path / "App.mobileprovision").write_bytes(
        make_profile(identity, app_id=f"{TEAM}.com.acme.*")
    )
    other = make_profile(make_identity(), app_id=f"{TEAM}.com.acme.*")
    (tmp_path / "Other.mobileprovision").write_bytes(other)
    build_ipa(tmp_path / "in.ipa", bundle_id="com.acme.demo", watch=False)
    monkeypatch.setenv("P12_PASSWORD", identity.password)
    return {p.stem: p for p in tmp_path.iterdir()}


def sign(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["sign", *map(str, args)])
    return result.exit_code, result.output


def test_an_ipa_is_resigned_from_the_command_line(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.ipa"
    status, output = sign(
        files["in"], out, "--p12", files["dist"], "--password-env", "P12_PASSWORD",
        "--profile", files["App"], "--bundle-id", "com.acme.renamed",
    )  # fmt: skip
    assert status == 0, output
    assert output.startswith(f"signed {out} (com.acme.renamed, team {TEAM}, 4 Mach-O files)")
    report = verify_ipa(out)
    assert report.intact and report.app.bundle_id == "com.acme.renamed"
    assert "ios-test-password" not in output


def test_a_refusal_exits_1_with_the_reason(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.ipa"
    status, output = sign(
        files["in"], out, "--p12", files["dist"], "--password-env", "P12_PASSWORD",
        "--profile", files["Other"],
    )  # fmt: skip
    assert status == 1 and "does not list the signing certificate" in output
    assert not out.exists()


def test_usage_errors_exit_2(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.ipa"
    status, output = sign(files["in"], out, "--password-env", "P12_PASSWORD")
    assert status == 2 and "--p12" in output
    status, output = sign(files["in"], out, "--p12", files["dist"], "--password-env", "UNSET_X")
    assert status == 2 and "UNSET_X" in output
    pem = KEYS / "release.pem"
    status, output = sign(files["in"], out, "--p12", pem, "--password-env", "P12_PASSWORD")
    assert status == 1 and "PKCS#12" in output
    apk = tmp_path / "x.apk"
    status, output = sign(apk, out, "--password-env", "P12_PASSWORD")
    assert status == 2 and "--keystore and --alias" in output
