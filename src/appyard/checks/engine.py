"""The controls engine: ``evaluate(facts, config, history, now) -> list[Finding]``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from appyard.checks import evaluators as _evaluators  # noqa: F401 - registers evaluators
from appyard.checks.catalog import load_catalog
from appyard.checks.model import (
    PLATFORMS,
    VERSIONS,
    ControlConfig,
    ControlSpec,
    Finding,
    History,
    Platform,
    Severity,
    Thresholds,
)
from appyard.checks.registry import EVALUATORS, Context
from appyard.inspect import Facts


def catalog() -> list[ControlSpec]:
    """Every detection control, in the order of controls.yaml (and of findings)."""
    return list(load_catalog())


def control(control_id: str) -> ControlSpec:
    for spec in load_catalog():
        if spec.id == control_id:
            return spec
    raise KeyError(f"unknown control {control_id!r}")


def _platform(platform: str) -> Platform:
    for p in PLATFORMS:
        if p == platform:
            return p
    raise ValueError(f"unknown platform {platform!r}: expected one of {PLATFORMS}")


def _version(version: str) -> str:
    if version not in VERSIONS:
        raise ValueError(f"unknown configuration version {version!r}: expected one of {VERSIONS}")
    return str(version)


def default_config(platform: str, version: str) -> ControlConfig:
    """The controls a new tenant runs for this platform and configuration version."""
    plat, ver = _platform(str(platform)), _version(str(version))
    severities: dict[str, Severity] = {}
    for spec in load_catalog():
        severity = spec.defaults.get(ver)
        if plat in spec.platforms and severity is not None:
            severities[spec.id] = severity
    return ControlConfig(platform=plat, version=ver, severities=severities)


def configure(
    platform: str,
    version: str,
    *,
    choices: Mapping[str, bool] | None = None,
    severities: Mapping[str, Severity | str] | None = None,
    thresholds: Thresholds | None = None,
) -> ControlConfig:
    """The default configuration with a tenant's choices on top.

    ``choices`` enables (True) or disables (False) controls, as ``core.controls`` stores
    them; a control enabled that is off by default runs at its default severity.
    ``severities`` overrides the severity of controls (and so enables them).
    """
    config = default_config(platform, version)
    for control_id, on in (choices or {}).items():
        spec = control(control_id)
        if config.platform not in spec.platforms:
            raise ValueError(f"control {control_id!r} does not apply to {config.platform}")
        if not on:
            config = config.with_control(control_id, None)
        elif control_id not in config.severities:
            config = config.with_control(control_id, spec.severity)
    for control_id, severity in (severities or {}).items():
        spec = control(control_id)
        if config.platform not in spec.platforms:
            raise ValueError(f"control {control_id!r} does not apply to {config.platform}")
        config = config.with_control(control_id, Severity(severity))
    if thresholds is not None:
        config = ControlConfig(config.platform, config.version, config.severities, thresholds)
    return config


def evaluate(
    facts: Facts,
    config: ControlConfig,
    history: History | None,
    now: datetime,
) -> list[Finding]:
    """Run every enabled control that applies to ``facts``; findings in catalog order.

    ``history`` is what the caller knows about the app (see :class:`History`); controls
    that need it are silent without it. ``now`` (aware) is the time expiry is measured at.
    """
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    identity = facts.identity
    if identity.platform != config.platform:
        raise ValueError(
            f"a {config.platform} configuration cannot evaluate {identity.platform} facts"
        )
    ctx: Context[Facts] = Context(facts, history, config.thresholds, now)
    findings: list[Finding] = []
    for spec in load_catalog():
        severity = config.severities.get(spec.id)
        if severity is None or identity.kind not in spec.kinds:
            continue
        registered = EVALUATORS[spec.id]
        if not isinstance(facts, registered.fact_types):
            continue
        findings.extend(
            Finding(spec.id, severity, hit.message, dict(hit.details))
            for hit in registered.run(ctx)
        )
    return findings


def blocking(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity is Severity.BLOCKING]
