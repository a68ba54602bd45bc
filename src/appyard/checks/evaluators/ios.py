"""iOS controls: code signature, provisioning profile, entitlements."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from appyard.checks.registry import Context, Hit, evaluator
from appyard.inspect.ipa import IpaFacts
from appyard.inspect.mobileprovision import ProvisioningProfile, bundle_id_matches


def _profile_details(profile: ProvisioningProfile) -> dict[str, object]:
    return {
        "profile_name": profile.name,
        "profile_uuid": profile.uuid,
        "team_id": profile.team_id,
        "expiration_date": (
            profile.expiration_date.isoformat() if profile.expiration_date else None
        ),
    }


@evaluator("unsigned_ipa", IpaFacts)
def unsigned_ipa(ctx: Context[IpaFacts]) -> Iterator[Hit]:
    facts = ctx.facts
    missing = []
    if not facts.code_signature_present:
        missing.append("code signature (_CodeSignature/CodeResources)")
    if facts.provisioning_profile is None:
        missing.append("provisioning profile (embedded.mobileprovision)")
    if missing:
        yield Hit(
            f"The app {facts.app_dir} has no {' and no '.join(missing)}.",
            {
                "code_signature_present": facts.code_signature_present,
                "provisioning_profile_present": facts.provisioning_profile is not None,
            },
        )


@evaluator("provisioning_profile_expired", IpaFacts)
def provisioning_profile_expired(ctx: Context[IpaFacts]) -> Iterator[Hit]:
    profile = ctx.facts.provisioning_profile
    if profile is None or profile.expiration_date is None:
        return
    if profile.expiration_date <= ctx.now:
        days = (ctx.now - profile.expiration_date).days
        yield Hit(
            f"The provisioning profile {profile.name!r} expired on "
            f"{profile.expiration_date:%Y-%m-%d} ({days} days ago).",
            {**_profile_details(profile), "days_expired": days},
        )


@evaluator("provisioning_profile_expires_soon", IpaFacts)
def provisioning_profile_expires_soon(ctx: Context[IpaFacts]) -> Iterator[Hit]:
    profile = ctx.facts.provisioning_profile
    if profile is None or profile.expiration_date is None:
        return
    window = timedelta(days=ctx.thresholds.profile_expiry_warning_days)
    left = profile.expiration_date - ctx.now
    if timedelta(0) < left <= window:
        yield Hit(
            f"The provisioning profile {profile.name!r} expires on "
            f"{profile.expiration_date:%Y-%m-%d}, in {left.days} days.",
            {
                **_profile_details(profile),
                "days_left": left.days,
                "threshold_days": ctx.thresholds.profile_expiry_warning_days,
            },
        )


@evaluator("provisioning_profile_signature_invalid", IpaFacts)
def provisioning_profile_signature_invalid(ctx: Context[IpaFacts]) -> Iterator[Hit]:
    profile = ctx.facts.provisioning_profile
    if profile is not None and not profile.cms_signature_valid:
        yield Hit(
            f"The signature of the provisioning profile {profile.name!r} does not verify; "
            "it was changed after it was signed.",
            _profile_details(profile),
        )


@evaluator("get_task_allow", IpaFacts)
def get_task_allow(ctx: Context[IpaFacts]) -> Iterator[Hit]:
    profile = ctx.facts.provisioning_profile
    if profile is not None and profile.get_task_allow:
        yield Hit(
            f"The provisioning profile {profile.name!r} grants get-task-allow: this is a "
            "development build a debugger can attach to.",
            {**_profile_details(profile), "signing_type": profile.signing_type.value},
        )


@evaluator("bundle_id_mismatch", IpaFacts)
def bundle_id_mismatch(ctx: Context[IpaFacts]) -> Iterator[Hit]:
    facts = ctx.facts
    profile = facts.provisioning_profile
    if profile is None:
        return
    pattern = profile.bundle_id_pattern
    details = {
        **_profile_details(profile),
        "bundle_id": facts.bundle_id,
        "application_identifier": profile.application_identifier,
    }
    if pattern is None:
        yield Hit(
            f"The provisioning profile {profile.name!r} names no application-identifier, "
            f"so it covers no app (bundle id {facts.bundle_id!r}).",
            details,
        )
    elif not bundle_id_matches(pattern, facts.bundle_id):
        yield Hit(
            f"The provisioning profile is for {pattern!r}, but the app's bundle id is "
            f"{facts.bundle_id!r}.",
            details,
        )
