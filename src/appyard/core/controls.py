"""The controls a tenant enables per platform and configuration version.

A control is either a *protection* transform the processing pipeline applies (ids
``protect.*``, implemented in ``appyard.pipeline``) or a *detection* control from
``appyard.checks`` that turns facts into findings. A new tenant starts with every control's
default; ``set_controls`` records the tenant's choices on top of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from appyard import errors
from appyard.core.models import ConfigVersion, Platform
from appyard.core.ports import UnitOfWork

ALL_VERSIONS = tuple(ConfigVersion)
RELEASE_VERSIONS = (ConfigVersion.STAGING, ConfigVersion.PRODUCTION)

# Debug-only content a release need not carry (fnmatch patterns on entry names, a bundle
# entry's name in the APK; ``*`` also matches ``/``). Code, resources, the manifest and native
# libraries are never removed, whatever the patterns say (``pipeline.transforms.PROTECTED``).
DEFAULT_STRIP_PATTERNS: tuple[str, ...] = (
    "*.kotlin_module",
    "META-INF/*.version",
    "DebugProbesKt.bin",
    "kotlin-tooling-metadata.json",
    "META-INF/maven/*",
    "META-INF/proguard/*",
)


@dataclass(frozen=True)
class ProtectionOptions:
    """Server-wide settings of the protection transforms (``APPYARD_STRIP_PATTERNS``,
    ``APPYARD_PROTECTOR_COMMAND``, ``APPYARD_PROTECTOR_TIMEOUT_SECONDS``)."""

    strip_patterns: tuple[str, ...] = DEFAULT_STRIP_PATTERNS
    # argv template with {input} and {output}; split like a shell would, never run by one
    protector_command: str = ""
    protector_timeout_seconds: float = 600.0


@dataclass(frozen=True)
class ControlSpec:
    id: str
    kind: str  # "protection" | "detection"
    platforms: tuple[Platform, ...]
    title: str
    default_versions: tuple[ConfigVersion, ...]  # enabled by default for these versions


# Catalog order is the order the pipeline applies them: alignment stays last before signing.
PROTECTION_CONTROLS: tuple[ControlSpec, ...] = (
    ControlSpec(
        id="protect.strip_debug",
        kind="protection",
        platforms=(Platform.ANDROID,),
        title="Remove debug-only metadata (configurable patterns; never code, resources, "
        "the manifest or native libraries)",
        default_versions=RELEASE_VERSIONS,
    ),
    ControlSpec(
        id="protect.external",
        kind="protection",
        platforms=(Platform.ANDROID, Platform.IOS),
        title="Run the server's external protector command (APPYARD_PROTECTOR_COMMAND; "
        "nothing happens when it is not set)",
        default_versions=RELEASE_VERSIONS,
    ),
    ControlSpec(
        id="protect.integrity",
        kind="protection",
        platforms=(Platform.ANDROID,),
        title="Add a signed integrity manifest (SHA-256 of every entry, signed with the "
        "build's signing key) at assets/appyard-integrity.json (an AAB: base/assets/)",
        default_versions=(),
    ),
    ControlSpec(
        id="protect.zipalign",
        kind="protection",
        platforms=(Platform.ANDROID,),
        title="Align uncompressed entries (4 bytes) and native libraries (16 KiB pages)",
        default_versions=ALL_VERSIONS,
    ),
)


def _detection_controls() -> tuple[ControlSpec, ...]:
    from appyard import checks

    return tuple(
        ControlSpec(
            id=spec.id,
            kind="detection",
            platforms=tuple(Platform(p) for p in spec.platforms),
            title=spec.title,
            default_versions=tuple(
                ConfigVersion(v) for v, severity in spec.defaults.items() if severity is not None
            ),
        )
        for spec in checks.catalog()
    )


def catalog() -> tuple[ControlSpec, ...]:
    return PROTECTION_CONTROLS + _detection_controls()


def _spec(control_id: str) -> ControlSpec:
    for spec in catalog():
        if spec.id == control_id:
            return spec
    raise errors.InvalidField(f"Unknown control {control_id!r}.", field="control")


def enabled(
    uow: UnitOfWork, *, tenant_id: str, platform: Platform, version: ConfigVersion
) -> list[str]:
    """The ids of the controls enabled for this tenant, platform and version, in catalog order."""
    chosen = {s.control_id: s.enabled for s in uow.controls.list(tenant_id, platform, version)}
    return [
        spec.id
        for spec in catalog()
        if platform in spec.platforms and chosen.get(spec.id, version in spec.default_versions)
    ]


def set_controls(
    uow: UnitOfWork,
    *,
    tenant_id: str,
    platform: Platform,
    version: ConfigVersion,
    enable: list[str],
    disable: list[str],
) -> list[str]:
    for control_id in [*enable, *disable]:
        spec = _spec(control_id)
        if platform not in spec.platforms:
            raise errors.InvalidField(
                f"Control {control_id!r} does not apply to {platform.value}.", field="control"
            )
    for control_id in enable:
        uow.controls.set(tenant_id, platform, version, control_id, True)
    for control_id in disable:
        uow.controls.set(tenant_id, platform, version, control_id, False)
    return enabled(uow, tenant_id=tenant_id, platform=platform, version=version)
