"""Android controls: signatures (APK: v1/v2/v3, AAB: JAR), manifest, native code, alignment."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from appyard.checks.registry import Context, Hit, evaluator
from appyard.inspect.aab import AabFacts
from appyard.inspect.android_manifest import Component, Manifest
from appyard.inspect.apk import ApkFacts

AndroidFacts = ApkFacts | AabFacts
ANDROID = (ApkFacts, AabFacts)

# 32-bit ABI -> the 64-bit ABI that must accompany it
_ABI_64 = {
    "armeabi-v7a": "arm64-v8a",
    "armeabi": "arm64-v8a",
    "x86": "x86_64",
    "mips": "mips64",
}
_DEBUG_SUBJECT = frozenset({"CN=Android Debug", "O=Android", "C=US"})


def _manifest(facts: AndroidFacts) -> Manifest:
    return facts.manifest


def _noun(facts: AndroidFacts) -> str:
    return "AAB" if isinstance(facts, AabFacts) else "APK"


# --- signatures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Signer:
    sha256: str
    subject: str
    is_debug: bool

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "subject": self.subject}


@dataclass(frozen=True)
class _Signing:
    """APK (v1/v2/v3/v3.1) and AAB (JAR) signatures, seen the same way by the controls."""

    present: tuple[str, ...]  # schemes whose signature is in the file
    verified: bool | None  # None: not checked
    errors: tuple[str, ...]
    signers: tuple[_Signer, ...]  # the signers that count (apksigner's; every JAR signer)
    lineage: frozenset[str]  # SHA-256 of certificates in a v3 rotation lineage


def _is_debug_subject(subject: str | None) -> bool:
    return subject is not None and frozenset(subject.split(",")) == _DEBUG_SUBJECT


def _signing(facts: AndroidFacts) -> _Signing | None:
    """None when the signatures were not looked at (inspection without verification)."""
    if isinstance(facts, AabFacts):
        jar = facts.jar_signature
        if jar is None:
            return _Signing((), None, (), (), frozenset())
        signers = tuple(
            _Signer(s.cert_sha256, s.subject or "", _is_debug_subject(s.subject))
            for s in jar.signers
            if s.cert_sha256
        )
        return _Signing(("jar",), jar.verified, jar.errors, signers, frozenset())
    v = facts.signatures
    if v is None:
        return None
    present = tuple(
        name
        for name, status in (("v1", v.v1), ("v2", v.v2), ("v3", v.v3), ("v3.1", v.v31))
        if status.present
    )
    lineage = {c.sha256 for c in v.lineage}
    for v3 in v.v3_signers:
        lineage.update(c.sha256 for c in v3.lineage)
    return _Signing(
        present,
        v.verified,
        v.errors,
        tuple(_Signer(c.sha256, c.dn, c.is_debug) for c in v.signers),
        frozenset(lineage),
    )


@evaluator("unsigned_apk", *ANDROID)
def unsigned_apk(ctx: Context[AndroidFacts]) -> Iterator[Hit]:
    signing = _signing(ctx.facts)
    if signing is None or signing.present:
        return
    if isinstance(ctx.facts, AabFacts):
        message = "The AAB is not signed: it has no JAR signature (META-INF/*.RSA, .EC, .DSA)."
    else:
        message = "The APK is not signed: it has no v1 (JAR), v2 or v3 signature."
    yield Hit(message, {"schemes_present": []})


@evaluator("signature_invalid", *ANDROID)
def signature_invalid(ctx: Context[AndroidFacts]) -> Iterator[Hit]:
    signing = _signing(ctx.facts)
    if signing is None or not signing.present or signing.verified is not False:
        return
    first = signing.errors[0] if signing.errors else "no scheme verified"
    yield Hit(
        f"The {_noun(ctx.facts)}'s signature does not verify ({first}).",
        {"schemes_present": list(signing.present), "errors": list(signing.errors)},
    )


@evaluator("debug_certificate", *ANDROID)
def debug_certificate(ctx: Context[AndroidFacts]) -> Iterator[Hit]:
    signing = _signing(ctx.facts)
    debug = [s for s in signing.signers if s.is_debug] if signing else []
    if debug:
        yield Hit(
            f"The {_noun(ctx.facts)} is signed with an Android debug certificate "
            f"({debug[0].subject}); anyone with the Android SDK holds its key.",
            {"signers": [s.to_dict() for s in debug]},
        )


@evaluator("signer_changed", *ANDROID)
def signer_changed(ctx: Context[AndroidFacts]) -> Iterator[Hit]:
    previous = set(ctx.history.signer_sha256) if ctx.history else set()
    signing = _signing(ctx.facts)
    if not previous or signing is None or signing.verified is not True or not signing.signers:
        return
    current = {s.sha256 for s in signing.signers}
    if current == previous or previous <= signing.lineage:
        return  # the same signers, or a v3 rotation whose lineage vouches for the new key
    yield Hit(
        f"The {_noun(ctx.facts)} is signed by a different certificate than the app's previous "
        "build, and no v3 rotation lineage links them; devices will refuse it as an update.",
        {
            "previous": sorted(previous),
            "current": sorted(current),
            "signers": [s.to_dict() for s in signing.signers],
        },
    )


# --- manifest ----------------------------------------------------------------------------------


@evaluator("debuggable", *ANDROID)
def debuggable(ctx: Context[AndroidFacts]) -> Iterator[Hit]:
    m = _manifest(ctx.facts)
    if m.debuggable:
        ref = f" (through {m.debuggable_reference})" if m.debuggable_reference else ""
        yield Hit(
            f'The app is debuggable: android:debuggable="true"{ref}.',
            {"debuggable_reference": m.debuggable_reference},
        )


@evaluator("test_only", *ANDROID)
def test_only(ctx: Context[AndroidFacts]) -> Iterator[Hit]:
    if _manifest(ctx.facts).test_only:
        yield Hit('The app is marked android:testOnly="true".', {})


@evaluator("target_sdk_too_low", *ANDROID)
def target_sdk_too_low(ctx: Context[AndroidFacts]) -> Iterator[Hit]:
    m = _manifest(ctx.facts)
    threshold = ctx.thresholds.min_target_sdk
    effective = m.effective_target_sdk
    if effective < threshold:
        what = (
            f"targetSdkVersion is {effective}"
            if m.target_sdk is not None
            else f"targetSdkVersion is not declared, so it is minSdkVersion ({effective})"
        )
        yield Hit(
            f"{what}; at least {threshold} is required.",
            {"target_sdk": m.target_sdk, "effective_target_sdk": effective, "threshold": threshold},
        )


@evaluator("min_sdk_too_low", *ANDROID)
def min_sdk_too_low(ctx: Context[AndroidFacts]) -> Iterator[Hit]:
    m = _manifest(ctx.facts)
    threshold = ctx.thresholds.min_min_sdk
    effective = m.effective_min_sdk
    if effective < threshold and m.sdk_codename is None:
        what = (
            f"minSdkVersion is {effective}"
            if m.min_sdk is not None
            else "minSdkVersion is not declared, so it is 1"
        )
        yield Hit(
            f"{what}; the app installs on Android versions below API {threshold}.",
            {"min_sdk": m.min_sdk, "effective_min_sdk": effective, "threshold": threshold},
        )


@evaluator("cleartext_traffic", *ANDROID)
def cleartext_traffic(ctx: Context[AndroidFacts]) -> Iterator[Hit]:
    m = _manifest(ctx.facts)
    target = m.effective_target_sdk
    details = {
        "uses_cleartext_traffic": m.uses_cleartext_traffic,
        "effective_target_sdk": target,
        "network_security_config": m.network_security_config,
    }
    if m.uses_cleartext_traffic is True:
        yield Hit('The app allows cleartext HTTP: android:usesCleartextTraffic="true".', details)
    elif m.uses_cleartext_traffic is None and m.network_security_config is None and target <= 27:
        yield Hit(
            f"The app allows cleartext HTTP: it targets API {target} (27 or lower) and does "
            "not set android:usesCleartextTraffic, which then defaults to true.",
            details,
        )


@evaluator("allow_backup", *ANDROID)
def allow_backup(ctx: Context[AndroidFacts]) -> Iterator[Hit]:
    m = _manifest(ctx.facts)
    if m.allow_backup is not False:
        how = 'android:allowBackup="true"' if m.allow_backup else "android:allowBackup is unset"
        yield Hit(
            f"The app's data can be backed up and extracted ({how}; the default is true).",
            {"allow_backup": m.allow_backup},
        )


def _unprotected(component: Component) -> bool:
    if component.permission:
        return False
    if component.kind == "provider":
        return not (component.read_permission and component.write_permission)
    return True


@evaluator("exported_without_permission", *ANDROID)
def exported_without_permission(ctx: Context[AndroidFacts]) -> Iterator[Hit]:
    m = _manifest(ctx.facts)
    launcher = m.launcher_activity
    open_components = [
        c
        for c in m.exported_components
        if c.enabled
        and _unprotected(c)
        and c.name != launcher
        and not (c.kind == "activity-alias" and c.target_activity == launcher and launcher)
    ]
    if open_components:
        names = ", ".join(c.name for c in open_components[:5])
        more = f" and {len(open_components) - 5} more" if len(open_components) > 5 else ""
        yield Hit(
            f"{len(open_components)} component(s) are exported without a permission: "
            f"{names}{more}.",
            {
                "components": [
                    {
                        "kind": c.kind,
                        "name": c.name,
                        "exported_attribute": c.exported_attribute,
                        "has_intent_filter": c.has_intent_filter,
                    }
                    for c in open_components
                ]
            },
        )


# --- native code -------------------------------------------------------------------------------


@evaluator("missing_64bit_abi", *ANDROID)
def missing_64bit_abi(ctx: Context[AndroidFacts]) -> Iterator[Hit]:
    abis = set(ctx.facts.native_abis)
    missing = sorted({_ABI_64[a] for a in abis if a in _ABI_64 and _ABI_64[a] not in abis})
    if missing:
        yield Hit(
            f"Native code for {', '.join(sorted(a for a in abis if a in _ABI_64))} has no "
            f"64-bit counterpart ({', '.join(missing)}).",
            {"abis": sorted(abis), "missing": missing},
        )


@evaluator("native_lib_not_16k_aligned", ApkFacts)
def native_lib_not_16k_aligned(ctx: Context[ApkFacts]) -> Iterator[Hit]:
    misaligned = ctx.facts.alignment.libraries_misaligned_16k
    if misaligned:
        more = f" and {len(misaligned) - 3} more" if len(misaligned) > 3 else ""
        yield Hit(
            f"{len(misaligned)} uncompressed native libraries do not start on a 16 KiB "
            f"boundary: {', '.join(misaligned[:3])}{more}.",
            {"libraries": list(misaligned)},
        )


def signer_fingerprints(facts: object) -> tuple[str, ...]:
    """SHA-256 of the signer certificates that count for ``signer_changed`` (what a caller
    stores as ``History.signer_sha256`` once the build is accepted): an APK's verified
    signers, an AAB's JAR signers; () for iOS, unsigned or unverified artifacts."""
    if not isinstance(facts, ApkFacts | AabFacts):
        return ()
    signing = _signing(facts)
    if signing is None or signing.verified is not True:
        return ()
    return tuple(s.sha256 for s in signing.signers)
