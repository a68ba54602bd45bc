"""The value types of the controls engine: findings, control specs, configuration, history.

``appyard.checks`` sits below ``appyard.core`` (core may import it, not the reverse), so
these types are its own; their string values are the ones core and the dialects use
(``Severity`` has the values of ``core.models.Severity``, versions those of
``core.models.ConfigVersion``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Platform = Literal["android", "ios"]
Kind = Literal["apk", "aab", "ipa"]
PLATFORMS: tuple[Platform, ...] = ("android", "ios")
KINDS: tuple[Kind, ...] = ("apk", "aab", "ipa")
VERSIONS: tuple[str, ...] = ("development", "staging", "production")


class Severity(enum.StrEnum):
    BLOCKING = "blocking"  # the build must not go on (store API: 422/409, CLI exit 1)
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    code: str  # the control id, e.g. "debuggable"; stable, part of the API
    severity: Severity
    message: str  # one sentence for a person
    details: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "details": self.details,
        }


@dataclass(frozen=True)
class References:
    cwe: tuple[str, ...] = ()  # "CWE-489"
    masvs: tuple[str, ...] = ()  # "MASVS-RESILIENCE-4"


@dataclass(frozen=True)
class ControlSpec:
    """One detection control as declared in controls.yaml."""

    id: str
    kind: str  # "detection" (protection controls live in core.controls / pipeline)
    platforms: tuple[Platform, ...]
    kinds: tuple[Kind, ...]  # artifact kinds it reads
    severity: Severity  # the default severity (what production uses unless it says otherwise)
    defaults: Mapping[str, Severity | None]  # per configuration version; None: off by default
    title: str
    description: str
    references: References
    needs_history: bool = False  # reads History (previous build, expected identifier)


@dataclass(frozen=True)
class Thresholds:
    """The numbers controls compare against; every field is configurable."""

    min_target_sdk: int = 33  # target_sdk_too_low below this
    min_min_sdk: int = 21  # min_sdk_too_low below this
    profile_expiry_warning_days: int = 30  # provisioning_profile_expires_soon within this


@dataclass(frozen=True)
class ControlConfig:
    """Which controls run for one platform and configuration version, and how severe.

    ``severities`` maps each *enabled* control id to its severity; a control that is absent
    does not run. Build one with :func:`appyard.checks.default_config` and adjust it with
    :meth:`with_control` / :meth:`with_thresholds`.
    """

    platform: Platform
    version: str
    severities: Mapping[str, Severity]
    thresholds: Thresholds = Thresholds()

    @property
    def enabled(self) -> tuple[str, ...]:
        return tuple(self.severities)

    def with_control(self, control_id: str, severity: Severity | str | None) -> ControlConfig:
        """This configuration with one control enabled at ``severity``, or disabled (None)."""
        severities = dict(self.severities)
        if severity is None:
            severities.pop(control_id, None)
        else:
            severities[control_id] = Severity(severity)
        return replace(self, severities=severities)

    def with_thresholds(self, **changes: int) -> ControlConfig:
        return replace(self, thresholds=replace(self.thresholds, **changes))


@dataclass(frozen=True)
class History:
    """What the caller knows about the app the build was uploaded to.

    ``package`` is the identifier the app expects (package name or bundle id; it is set
    when the app exists, even before any build was accepted); ``version_code`` and
    ``signer_sha256`` come from the app's previous *accepted* build, None when there is none.
    """

    package: str | None = None
    version_code: str | None = None  # Android versionCode (decimal) or iOS CFBundleVersion
    signer_sha256: tuple[str, ...] = ()  # SHA-256 of the previous build's signer certificates
