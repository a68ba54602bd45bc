"""run_inspect (``appyard inspect FILE [--json]``) called as a function, output via capsys."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appyard.cli.inspect_cmd import SCHEMA, run_inspect, to_jsonable
from tests.checks.conftest import NOW, real
from tests.inspect.test_ipa_factory import (
    decode_png,
    gradient_rgba,
    make_cgbi_png,
    make_ipa,
    make_profile,
)


def built(tmp_path: Path, **kwargs: object) -> Path:
    return make_ipa(tmp_path / "app.ipa", **kwargs)  # type: ignore[arg-type]


def test_a_clean_store_build_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = built(tmp_path, profile=make_profile())
    assert run_inspect(path, as_json=False, now=NOW) == 0
    out = capsys.readouterr().out
    assert "com.example.app" in out
    assert "app-store" in out
    assert "No findings with the default production controls." in out
    assert "0 blocking" in out


def test_blocking_findings_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_inspect(real("very-capable-app.ipa"), as_json=False, now=NOW) == 3
    captured = capsys.readouterr()
    assert "provisioning_profile_expired" in captured.out
    assert "get_task_allow" in captured.out
    assert "2 blocking" in captured.out
    assert captured.err == ""


def test_the_configuration_version_changes_the_verdict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before_expiry = datetime(2019, 1, 1, tzinfo=UTC)
    path = real("very-capable-app.ipa")
    assert run_inspect(path, as_json=False, version="development", now=before_expiry) == 0
    assert run_inspect(path, as_json=False, version="production", now=before_expiry) == 3
    capsys.readouterr()


def test_an_invalid_artifact_exits_1_with_a_message_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.ipa"
    path.write_bytes(b"this is not a zip")
    assert run_inspect(path, as_json=False) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "broken.ipa is not a valid artifact" in captured.err
    assert "not a readable zip archive" in captured.err


def test_an_invalid_artifact_with_json_also_prints_an_error_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = built(tmp_path, info_bytes=b"<plist><array>")
    assert run_inspect(path, as_json=True) == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["schema"] == SCHEMA
    assert doc["exit_code"] == 1
    assert doc["error"]["code"] == "artifact.invalid"
    assert doc["error"]["reason"] == "bad_plist"
    assert "Info.plist" in captured.err


@pytest.mark.parametrize(("name", "code"), [("missing.ipa", 2), ("notes.txt", 1)])
def test_a_missing_file_is_a_usage_error_and_an_unknown_kind_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, code: int
) -> None:
    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_text("hello")
    assert run_inspect(path, as_json=False) == code
    err = capsys.readouterr().err
    assert name in err or "Unknown artifact kind" in err


def test_an_unknown_version_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_inspect(built(tmp_path), as_json=False, version="beta") == 2
    assert "unknown configuration version 'beta'" in capsys.readouterr().err


def test_the_json_document_is_stable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = make_profile(get_task_allow=True, expires=NOW + timedelta(days=10))
    icon = make_cgbi_png(5, 5, gradient_rgba(5, 5))
    path = built(tmp_path, profile=profile, icons={"AppIcon60x60@2x.png": icon})
    assert run_inspect(path, as_json=True, now=NOW) == 3
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == [
        "schema", "file", "identity", "facts", "config", "findings", "summary", "exit_code",
    ]  # fmt: skip
    assert doc["file"]["name"] == "app.ipa"
    assert doc["file"]["size"] == path.stat().st_size
    assert len(doc["file"]["sha256"]) == 64
    assert doc["identity"] == {
        "platform": "ios",
        "kind": "ipa",
        "identifier": "com.example.app",
        "version_code": "42",
        "version_name": "2.3.1",
    }
    assert doc["config"] == {"platform": "ios", "version": "production"}
    assert doc["summary"] == {"blocking": 1, "warning": 1, "info": 0}
    assert {(f["code"], f["severity"]) for f in doc["findings"]} == {
        ("get_task_allow", "blocking"),
        ("provisioning_profile_expires_soon", "warning"),
    }
    facts = doc["facts"]
    assert facts["provisioning_profile"]["signing_type"] == "development"
    assert facts["provisioning_profile"]["expiration_date"] == "2026-12-03T12:00:00+00:00"
    assert facts["icon"]["width"] == 5
    assert "png" not in facts["icon"]  # bytes are left out without the flag
    assert "DeveloperCertificates" not in facts["provisioning_profile"]["plist"]


def test_bytes_are_base64_with_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    icon = make_cgbi_png(4, 3, gradient_rgba(4, 3))
    path = built(tmp_path, profile=make_profile(), icons={"AppIcon60x60@3x.png": icon})
    run_inspect(path, as_json=True, include_bytes=True, now=NOW)
    facts = json.loads(capsys.readouterr().out)["facts"]
    png = base64.b64decode(facts["icon"]["png"])
    assert decode_png(png)[:2] == (4, 3)
    (cert,) = facts["provisioning_profile"]["plist"]["DeveloperCertificates"]
    assert base64.b64decode(cert)[:1] == b"\x30"


def test_the_non_standard_layout_is_pointed_out(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_inspect(real("ContainsWatchApp.ipa"), as_json=False, now=NOW) == 3
    out = capsys.readouterr().out
    assert "non-standard layout" in out
    assert "ContainsWatchApp/Payload/Sample.app/" in out


def test_to_jsonable_handles_plist_values() -> None:
    value = {"when": datetime(2020, 1, 2), "data": b"\x00", "nested": ({1, 2},)}
    assert to_jsonable(value) == {"when": "2020-01-02T00:00:00+00:00", "nested": [[1, 2]]}
    assert to_jsonable(value, include_bytes=True)["data"] == "AA=="


def test_a_release_apk_with_only_advice_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_inspect(real("fixture-release-v1v2v3.apk"), as_json=False) == 0
    out = capsys.readouterr().out
    assert "org.appyard.fixture" in out
    assert "target_sdk_too_low" in out
    assert "0 blocking, 2 warning" in out


def test_a_debug_signed_apk_exits_3_in_production_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = real("fixture-debug-signed.apk")
    assert run_inspect(path, as_json=True) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["identity"]["identifier"] == "org.appyard.fixture"
    assert doc["facts"]["signatures"]["signers"][0]["is_debug"] is True
    assert "der" not in doc["facts"]["signatures"]["signers"][0]
    assert ("debug_certificate", "blocking") in {
        (f["code"], f["severity"]) for f in doc["findings"]
    }
    assert run_inspect(path, as_json=False, version="development") == 0
    capsys.readouterr()


def test_an_apk_without_manifest_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_inspect(real("empty-unsigned.apk"), as_json=False) == 1
    assert "AndroidManifest.xml" in capsys.readouterr().err
