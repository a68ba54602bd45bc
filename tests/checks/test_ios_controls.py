"""iOS controls: each triggered by a real fixture (or one the tests build) and not by another."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appyard.checks import History, Severity, Thresholds
from appyard.inspect.ipa import IpaFacts, inspect_ipa
from tests.checks.conftest import NOW, codes, facts_of, run
from tests.inspect.test_ipa_factory import info_plist, make_ipa, make_profile

CAPABLE = "very-capable-app.ipa"  # development profile, expired 2019-04-07T01:27:21Z
MINIMAL = "com.fake.IpaApp_1000000000001.ipa"  # Info.plist only: no signature, no profile
EXPIRES = datetime(2019, 4, 7, 1, 27, 21, tzinfo=UTC)


def built(tmp_path: Path, name: str = "app.ipa", **kwargs: object) -> IpaFacts:
    kwargs.setdefault("profile", make_profile())
    return inspect_ipa(make_ipa(tmp_path / name, **kwargs))  # type: ignore[arg-type]


# --- unsigned_ipa ------------------------------------------------------------------------------


def test_unsigned_ipa_on_the_bare_fixture() -> None:
    (finding,) = run(facts_of(MINIMAL), "unsigned_ipa")
    assert finding.severity is Severity.BLOCKING
    assert finding.details == {
        "code_signature_present": False,
        "provisioning_profile_present": False,
    }
    assert "no code signature" in finding.message


def test_signed_fixture_is_not_unsigned() -> None:
    assert run(facts_of(CAPABLE), "unsigned_ipa") == []


def test_a_profile_without_code_signature_is_unsigned(tmp_path: Path) -> None:
    (finding,) = run(built(tmp_path, code_signature=False), "unsigned_ipa")
    assert finding.details["provisioning_profile_present"] is True
    assert "_CodeSignature" in finding.message


# --- provisioning_profile_expired / expires_soon ----------------------------------------------


def test_expired_profile_on_the_capable_fixture() -> None:
    (finding,) = run(facts_of(CAPABLE), "provisioning_profile_expired")
    assert finding.severity is Severity.BLOCKING
    assert finding.details["expiration_date"] == "2019-04-07T01:27:21+00:00"
    assert "expired on 2019-04-07" in finding.message


def test_the_capable_fixture_was_valid_before_its_expiry() -> None:
    facts = facts_of(CAPABLE)
    before = EXPIRES - timedelta(days=200)
    assert run(facts, "provisioning_profile_expired", now=before) == []
    assert run(facts, "provisioning_profile_expires_soon", now=before) == []


def test_expires_soon_on_the_capable_fixture_three_weeks_before() -> None:
    facts = facts_of(CAPABLE)
    (finding,) = run(facts, "provisioning_profile_expires_soon", now=EXPIRES - timedelta(days=21))
    assert finding.severity is Severity.WARNING
    assert finding.details["days_left"] == 21
    assert run(facts, "provisioning_profile_expired", now=EXPIRES - timedelta(days=21)) == []


def test_an_expired_profile_is_not_also_expiring_soon() -> None:
    assert run(facts_of(CAPABLE), "provisioning_profile_expires_soon") == []


def test_the_expiry_window_is_configurable(tmp_path: Path) -> None:
    facts = built(tmp_path, profile=make_profile(expires=NOW + timedelta(days=45)))
    assert run(facts, "provisioning_profile_expires_soon") == []
    wide = Thresholds(profile_expiry_warning_days=60)
    (finding,) = run(facts, "provisioning_profile_expires_soon", thresholds=wide)
    assert finding.details["threshold_days"] == 60


def test_a_built_profile_expired_a_second_ago(tmp_path: Path) -> None:
    facts = built(tmp_path, profile=make_profile(expires=NOW - timedelta(seconds=1)))
    assert codes(run(facts, "provisioning_profile_expired")) == ["provisioning_profile_expired"]


# --- get_task_allow ----------------------------------------------------------------------------


def test_get_task_allow_on_the_capable_fixture() -> None:
    (finding,) = run(facts_of(CAPABLE), "get_task_allow")
    assert finding.severity is Severity.BLOCKING
    assert finding.details["signing_type"] == "development"


def test_get_task_allow_is_info_in_development() -> None:
    (finding,) = run(facts_of(CAPABLE), version="development", now=EXPIRES - timedelta(days=200))
    assert (finding.code, finding.severity) == ("get_task_allow", Severity.INFO)


@pytest.mark.parametrize(
    "kwargs",
    [{"devices": ("d1",)}, {"all_devices": True}, {}],
    ids=["ad-hoc", "enterprise", "store"],
)
def test_distribution_profiles_do_not_allow_debuggers(
    tmp_path: Path, kwargs: dict[str, object]
) -> None:
    facts = built(tmp_path, profile=make_profile(**kwargs))  # type: ignore[arg-type]
    assert run(facts, "get_task_allow") == []


def test_no_profile_no_get_task_allow() -> None:
    assert run(facts_of(MINIMAL), "get_task_allow") == []


# --- bundle_id_mismatch ------------------------------------------------------------------------


def test_the_capable_fixture_profile_covers_its_bundle_id() -> None:
    assert run(facts_of(CAPABLE), "bundle_id_mismatch") == []


def test_bundle_id_mismatch(tmp_path: Path) -> None:
    profile = make_profile(app_id="ABCDE12345.com.example.other")
    (finding,) = run(built(tmp_path, profile=profile), "bundle_id_mismatch")
    assert finding.severity is Severity.BLOCKING
    assert finding.details["bundle_id"] == "com.example.app"
    assert "'com.example.other'" in finding.message


@pytest.mark.parametrize("app_id", ["ABCDE12345.*", "ABCDE12345.com.example.*"])
def test_wildcard_app_ids_cover_the_bundle_id(tmp_path: Path, app_id: str) -> None:
    assert run(built(tmp_path, profile=make_profile(app_id=app_id)), "bundle_id_mismatch") == []


def test_a_wildcard_for_another_prefix_does_not(tmp_path: Path) -> None:
    profile = make_profile(app_id="ABCDE12345.org.other.*")
    assert codes(run(built(tmp_path, profile=profile), "bundle_id_mismatch")) == [
        "bundle_id_mismatch"
    ]


# --- provisioning_profile_signature_invalid ----------------------------------------------------


def test_the_capable_fixture_profile_signature_verifies() -> None:
    assert run(facts_of(CAPABLE), "provisioning_profile_signature_invalid") == []


def test_an_edited_profile_does_not_verify(tmp_path: Path) -> None:
    data = make_profile().replace(b"Appyard Test Team", b"Appyard Evil Team")
    (finding,) = run(built(tmp_path, profile=data), "provisioning_profile_signature_invalid")
    assert finding.severity is Severity.BLOCKING


# --- shared controls on iOS --------------------------------------------------------------------


def test_package_mismatch_on_ios() -> None:
    facts = facts_of(CAPABLE)
    (finding,) = run(facts, "package_mismatch", history=History(package="org.fastlane.other"))
    assert finding.details == {
        "expected": "org.fastlane.other",
        "actual": "org.fastlane.very-capable-app",
    }
    assert "bundle id" in finding.message
    assert run(facts, "package_mismatch", history=History(package=facts.identity.identifier)) == []
    assert run(facts, "package_mismatch", history=None) == []


@pytest.mark.parametrize(
    ("previous", "current", "fires"),
    [
        ("1", "2", False),
        ("2", "2", True),
        ("10", "9", True),
        ("1.2", "1.10", False),
        ("1.2.3", "1.2.3.0", True),
        ("1.9", "2", False),
    ],
)
def test_version_code_not_incremented_on_ios(
    tmp_path: Path, previous: str, current: str, fires: bool
) -> None:
    facts = built(tmp_path, info=info_plist(CFBundleVersion=current))
    found = run(facts, "version_code_not_incremented", history=History(version_code=previous))
    assert bool(found) is fires


def test_the_real_fixture_after_a_later_build() -> None:
    facts = facts_of(MINIMAL)  # CFBundleVersion 20
    assert run(facts, "version_code_not_incremented", history=History(version_code="19")) == []
    (finding,) = run(facts, "version_code_not_incremented", history=History(version_code="20"))
    assert finding.details == {"previous": "20", "current": "20"}


def test_all_ios_defaults_on_the_capable_fixture_in_production() -> None:
    assert codes(run(facts_of(CAPABLE))) == ["provisioning_profile_expired", "get_task_allow"]
