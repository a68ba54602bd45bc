"""The engine and its data: controls.yaml, evaluators by id, defaults per version, docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appyard.checks import (
    ControlConfig,
    Severity,
    Thresholds,
    catalog,
    configure,
    control,
    default_config,
    evaluate,
)
from appyard.checks.catalog import CatalogError, load_catalog, parse_catalog
from appyard.checks.engine import blocking
from appyard.checks.registry import EVALUATORS
from tests.checks.conftest import NOW, facts_of

DOCS = Path(__file__).resolve().parents[2] / "docs" / "controls.md"
REQUIRED = {
    "unsigned_apk", "signature_invalid", "debug_certificate", "debuggable", "test_only",
    "signer_changed", "version_code_not_incremented", "package_mismatch", "target_sdk_too_low",
    "min_sdk_too_low", "missing_64bit_abi", "native_lib_not_16k_aligned", "cleartext_traffic",
    "allow_backup", "exported_without_permission", "provisioning_profile_expired",
    "provisioning_profile_expires_soon", "get_task_allow", "bundle_id_mismatch", "unsigned_ipa",
}  # fmt: skip


def test_every_required_control_is_in_the_catalog() -> None:
    assert REQUIRED <= {spec.id for spec in catalog()}


def test_every_control_has_exactly_one_evaluator() -> None:
    assert {spec.id for spec in catalog()} == set(EVALUATORS)


def test_specs_carry_what_people_need() -> None:
    for spec in catalog():
        assert spec.kind == "detection"
        assert spec.title and spec.description
        assert spec.platforms and spec.kinds
        assert all(k == "ipa" for k in spec.kinds) == (spec.platforms == ("ios",)), spec.id
        assert spec.defaults["production"] is not None, spec.id


def test_references_are_cwe_and_masvs_ids() -> None:
    spec = control("debuggable")
    assert spec.references.cwe == ("CWE-489",)
    assert spec.references.masvs == ("MASVS-RESILIENCE-4",)


@pytest.mark.parametrize(
    ("control_id", "development", "production"),
    [
        ("debuggable", Severity.INFO, Severity.BLOCKING),
        ("get_task_allow", Severity.INFO, Severity.BLOCKING),
        ("signature_invalid", Severity.BLOCKING, Severity.BLOCKING),
        ("allow_backup", Severity.INFO, Severity.WARNING),
    ],
)
def test_defaults_differ_by_version(
    control_id: str, development: Severity, production: Severity
) -> None:
    platform = control(control_id).platforms[0]
    assert default_config(platform, "development").severities[control_id] is development
    assert default_config(platform, "production").severities[control_id] is production


def test_default_config_holds_only_the_platforms_controls() -> None:
    ios = default_config("ios", "staging")
    assert "get_task_allow" in ios.severities
    assert "debuggable" not in ios.severities
    assert "package_mismatch" in ios.severities
    android = default_config("android", "staging")
    assert "debuggable" in android.severities
    assert "unsigned_ipa" not in android.severities
    assert ios.thresholds == Thresholds(
        min_target_sdk=33, min_min_sdk=21, profile_expiry_warning_days=30
    )


@pytest.mark.parametrize(("platform", "version"), [("windows", "production"), ("ios", "beta")])
def test_default_config_refuses_unknown_names(platform: str, version: str) -> None:
    with pytest.raises(ValueError, match="unknown"):
        default_config(platform, version)


def test_configure_applies_a_tenants_choices() -> None:
    config = configure(
        "ios",
        "production",
        choices={"get_task_allow": False},
        severities={"provisioning_profile_expires_soon": "blocking"},
        thresholds=Thresholds(profile_expiry_warning_days=10),
    )
    assert "get_task_allow" not in config.enabled
    assert config.severities["provisioning_profile_expires_soon"] is Severity.BLOCKING
    assert config.thresholds.profile_expiry_warning_days == 10
    with pytest.raises(ValueError, match="does not apply"):
        configure("ios", "production", choices={"debuggable": True})
    with pytest.raises(KeyError):
        configure("ios", "production", choices={"no_such_control": True})


def test_with_control_and_thresholds_return_new_configs() -> None:
    base = default_config("ios", "production")
    off = base.with_control("get_task_allow", None)
    assert "get_task_allow" in base.severities
    assert "get_task_allow" not in off.severities
    assert (
        base.with_thresholds(profile_expiry_warning_days=7).thresholds.profile_expiry_warning_days
        == 7
    )


def test_disabled_controls_do_not_run() -> None:
    facts = facts_of("very-capable-app.ipa")
    config = default_config("ios", "production").with_control("get_task_allow", None)
    assert "get_task_allow" not in [f.code for f in evaluate(facts, config, None, NOW)]


def test_a_configuration_for_another_platform_is_refused() -> None:
    with pytest.raises(ValueError, match="android configuration"):
        evaluate(
            facts_of("very-capable-app.ipa"), default_config("android", "production"), None, NOW
        )


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(
            facts_of("very-capable-app.ipa"),
            default_config("ios", "production"),
            None,
            NOW.replace(tzinfo=None),
        )


def test_findings_follow_catalog_order_and_blocking_filters() -> None:
    facts = facts_of("very-capable-app.ipa")
    config = ControlConfig(
        "ios",
        "production",
        {"get_task_allow": Severity.WARNING, "provisioning_profile_expired": Severity.BLOCKING},
    )
    findings = evaluate(facts, config, None, NOW)
    order = [s.id for s in catalog()]
    assert [f.code for f in findings] == sorted((f.code for f in findings), key=order.index)
    assert [f.code for f in blocking(findings)] == ["provisioning_profile_expired"]
    assert findings[0].to_dict()["severity"] in ("warning", "blocking")


# --- controls.yaml is checked strictly ----------------------------------------------------------

GOOD = """
controls:
  - id: sample_control
    kind: detection
    platforms: [ios]
    kinds: [ipa]
    severity: warning
    defaults: {development: off, staging: info, production: warning}
    title: A sample
    description: Something.
    references: {cwe: [CWE-1], masvs: []}
"""


def test_a_good_catalog_parses() -> None:
    (spec,) = parse_catalog(GOOD)
    assert spec.defaults == {
        "development": None,
        "staging": Severity.INFO,
        "production": Severity.WARNING,
    }


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("severity: warning", "severity: fatal"),
        ("production: warning", "prod: warning"),
        ("kinds: [ipa]", "kinds: [exe]"),
        ("kind: detection", "kind: protection"),
        ("id: sample_control", "id: Sample-Control"),
        ("title: A sample", "titel: A sample"),
        ("cwe: [CWE-1]", "cwe: [1]"),
    ],
)
def test_a_malformed_catalog_is_refused(old: str, new: str) -> None:
    with pytest.raises(CatalogError):
        parse_catalog(GOOD.replace(old, new))


def test_duplicate_ids_are_refused() -> None:
    doubled = GOOD + GOOD.split("controls:\n", 1)[1]
    with pytest.raises(CatalogError, match="duplicate"):
        parse_catalog(doubled)


# --- docs/controls.md keeps the defaults table in step ------------------------------------------


def test_docs_table_matches_controls_yaml() -> None:
    rows: dict[str, tuple[str, str, str]] = {}
    for line in DOCS.read_text().splitlines():
        m = re.match(r"^\|\s*`(\w+)`\s*\|[^|]*\|\s*(\w+)\s*\|\s*(\w+)\s*\|\s*(\w+)\s*\|", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3), m.group(4))
    expected = {
        spec.id: tuple(
            (spec.defaults[v].value if spec.defaults[v] else "off")  # type: ignore[union-attr]
            for v in ("development", "staging", "production")
        )
        for spec in load_catalog()
    }
    assert rows == expected
