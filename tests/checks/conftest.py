"""Helpers for the controls tests: real fixtures (tests/fixtures, ../shared) and a fixed now."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from appyard.checks import ControlConfig, Finding, History, Severity, Thresholds, default_config
from appyard.checks import evaluate as evaluate_controls
from appyard.inspect import Facts, inspect_file
from tests.conftest import FIXTURES, SHARED, need

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def real(name: str) -> Path:
    """A real fixture: tests/fixtures (copied generated APKs), else ../shared/fixtures."""
    for path in (
        FIXTURES / name,
        SHARED / "fixtures" / "generated" / name,
        SHARED / "fixtures" / "thirdparty" / name,
    ):
        if path.exists():
            return path
    need(False, f"fixture {name} is absent (tests/fixtures and ../shared/fixtures)")
    raise AssertionError("unreachable")


def facts_of(name: str) -> Facts:
    return inspect_file(real(name))


def run(
    facts: Facts,
    control: str | None = None,
    *,
    version: str = "production",
    history: History | None = None,
    now: datetime = NOW,
    thresholds: Thresholds | None = None,
) -> list[Finding]:
    """Findings with the default configuration of ``version``; of one control with ``control``
    (enabled even where it is off by default)."""
    config = default_config(facts.identity.platform, version)
    if control is not None:
        severity = config.severities.get(control, Severity.INFO)
        config = ControlConfig(config.platform, config.version, {control: severity})
    if thresholds is not None:
        config = ControlConfig(config.platform, config.version, config.severities, thresholds)
    return evaluate_controls(facts, config, history, now)


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]
