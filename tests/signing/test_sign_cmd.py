"""``appyard sign``: the command-line signer (run_sign), passwords from the environment."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from appyard.cli.sign_cmd import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, KeyOptions, run_sign
from tests.conftest import FIXTURES, need, shared_path

KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "keys"


def apksigner_ok(path: Path, *extra: str) -> bool:
    need(shutil.which("apksigner") is not None, "apksigner is not installed")
    return (
        subprocess.run(["apksigner", "verify", *extra, str(path)], capture_output=True).returncode
        == 0
    )


@pytest.fixture
def release_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELEASE_PW", "fixture-release")


def test_signs_an_apk_with_schemes_chosen_from_its_min_sdk(
    release_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = FIXTURES / "fixture-unsigned.apk"

    status = run_sign(
        src,
        tmp_path / "out.apk",
        key=KeyOptions(KEYS / "release.p12", "release", "RELEASE_PW", None),
        schemes=None,
    )

    assert status == EXIT_OK
    assert "(v1,v2,v3)" in capsys.readouterr().out
    assert apksigner_ok(tmp_path / "out.apk")


def test_explicit_schemes_and_a_separate_key_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STORE_PW", "android")
    monkeypatch.setenv("KEY_PW", "android")
    src = FIXTURES / "fixture-unsigned.apk"

    status = run_sign(
        src,
        tmp_path / "out.apk",
        key=KeyOptions(KEYS / "debug.keystore", "androiddebugkey", "STORE_PW", "KEY_PW"),
        schemes="v2,v3",
    )

    assert status == EXIT_OK
    assert apksigner_ok(tmp_path / "out.apk", "--min-sdk-version", "24")


def test_signs_an_aab(release_env: None, tmp_path: Path) -> None:
    src = FIXTURES / "fixture-bundle.aab"

    status = run_sign(
        src,
        tmp_path / "out.aab",
        key=KeyOptions(KEYS / "release.p12", "release", "RELEASE_PW", None),
        schemes=None,
    )

    assert status == EXIT_OK
    jarsigner = shutil.which("jarsigner")
    if jarsigner is not None:
        result = subprocess.run(
            [jarsigner, "-verify", str(tmp_path / "out.aab")], capture_output=True, text=True
        )
        assert "jar verified." in result.stdout


def test_missing_password_variable_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NOPE_PW", raising=False)
    src = FIXTURES / "fixture-unsigned.apk"

    status = run_sign(
        src,
        tmp_path / "out.apk",
        key=KeyOptions(KEYS / "release.p12", "release", "NOPE_PW", None),
        schemes=None,
    )

    assert status == EXIT_USAGE
    assert "NOPE_PW" in capsys.readouterr().err
    assert not (tmp_path / "out.apk").exists()


def test_wrong_password_is_refused_without_printing_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RELEASE_PW", "hunter2-wrong")
    src = FIXTURES / "fixture-unsigned.apk"

    status = run_sign(
        src,
        tmp_path / "out.apk",
        key=KeyOptions(KEYS / "release.p12", "release", "RELEASE_PW", None),
        schemes=None,
    )

    captured = capsys.readouterr()
    assert status == EXIT_REFUSED
    assert "password is wrong" in captured.err
    assert "hunter2" not in captured.err + captured.out


@pytest.mark.parametrize(
    ("alias", "schemes", "status", "message"),
    [
        ("nope", None, EXIT_REFUSED, "no private key under alias 'nope'"),
        ("release", "v1,v4", EXIT_USAGE, "Unknown signature scheme v4"),
    ],
)
def test_bad_alias_or_scheme_says_why(
    alias: str,
    schemes: str | None,
    status: int,
    message: str,
    release_env: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = FIXTURES / "fixture-unsigned.apk"

    assert (
        run_sign(
            src,
            tmp_path / "o.apk",
            key=KeyOptions(KEYS / "release.p12", alias, "RELEASE_PW", None),
            schemes=schemes,
        )
        == status
    )
    assert message in capsys.readouterr().err


def test_ec_key_on_an_old_min_sdk_is_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTHER_PW", "fixture-other")
    src = shared_path("fixtures", "thirdparty", "urzip.apk")

    status = run_sign(
        src,
        tmp_path / "o.apk",
        key=KeyOptions(KEYS / "other.p12", "other", "OTHER_PW", None),
        schemes=None,
    )

    assert status == EXIT_REFUSED
    assert "minSdk 18" in capsys.readouterr().err


def test_missing_input_and_wrong_extension_are_usage_errors(
    release_env: None, tmp_path: Path
) -> None:
    for src in (tmp_path / "absent.apk", KEYS / "release.pem"):
        assert (
            run_sign(
                src,
                tmp_path / "o.apk",
                key=KeyOptions(KEYS / "release.p12", "release", "RELEASE_PW", None),
                schemes=None,
            )
            == EXIT_USAGE
        )
