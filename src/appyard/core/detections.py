"""Detection controls on a build: facts (and the app's history) -> findings.

The evaluators live in ``appyard.checks``; this module decides which run (the tenant's
enabled detection controls for the build's platform and version, at the severity the checks
catalog gives them for that version), and what history they see: for a store version, the
app's previous accepted version (its version code and signer certificate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appyard import checks
from appyard.checks.outcomes import Outcome, outcomes
from appyard.core import controls, versions
from appyard.core.models import Build, Finding, Severity
from appyard.core.ports import Clock, UnitOfWork

# Controls about the input's own signature: moot when appyard re-signs the output.
RESIGNED_MOOT = frozenset({"unsigned_apk", "signature_invalid", "debug_certificate"})


def config_for(build: Build, enabled: list[str]) -> checks.ControlConfig:
    config = checks.default_config(build.platform.value, build.config_version.value)
    specs = {spec.id: spec for spec in checks.catalog()}
    resigned = build.signing_key_id is not None
    for control_id in specs:
        if control_id not in enabled or (resigned and control_id in RESIGNED_MOOT):
            config = config.with_control(control_id, None)
        elif control_id not in config.severities:
            config = config.with_control(control_id, specs[control_id].severity)
    return config


def signers_of(facts: Any) -> tuple[str, ...]:
    """SHA-256 of the artifact's verified signer certificates (APK, AAB); () otherwise."""
    return checks.signer_fingerprints(facts)


def history_for(uow: UnitOfWork, build: Build) -> checks.History | None:
    version = uow.versions.get_by_build(build.id)
    if version is None:
        return None
    app = uow.apps.get(version.app_id)
    previous = versions.previous_accepted(uow, version)
    return checks.History(
        package=app.identifier if app else None,
        version_code=str(previous.version_code) if previous else None,
        signer_sha256=tuple((previous.signer_sha256 or "").split(","))
        if previous and previous.signer_sha256
        else (),
    )


def evaluate(
    uow: UnitOfWork, clock: Clock, *, build: Build, facts: Any, enabled: list[str]
) -> list[Finding]:
    config = config_for(build, enabled)
    found = checks.evaluate(facts, config, history_for(uow, build), clock.now())
    return [
        Finding(
            code=f.code,
            severity=Severity(f.severity.value),
            message=f.message,
            details=dict(f.details),
        )
        for f in found
    ]


@dataclass(frozen=True)
class Report:
    """A build's findings and what became of every control (passed, failed, skipped), with
    the tenant's current control settings for the build's platform and version."""

    build: Build
    findings: list[Finding]
    controls: list[Outcome]

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.BLOCKING]


def report(uow: UnitOfWork, build: Build) -> Report:
    found = uow.findings.list(build.id)
    enabled = controls.enabled(
        uow, tenant_id=build.tenant_id, platform=build.platform, version=build.config_version
    )
    config = config_for(build, enabled)
    kind = build.file_name.rsplit(".", 1)[-1].lower()
    return Report(
        build=build,
        findings=found,
        controls=outcomes(
            platform=build.platform.value,
            kind=kind,
            ran={k: v.value for k, v in config.severities.items()},
            failed=[f.code for f in found],
            inspected=build.facts is not None,
        ),
    )
