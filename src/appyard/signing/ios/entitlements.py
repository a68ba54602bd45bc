"""The entitlements a re-signed app or extension gets: what its profile allows.

A provisioning profile's ``Entitlements`` say what the app *may* claim: exact values, or
patterns with ``*`` (``TEAMID.*`` for keychain groups, ``*`` for associated domains), or
lists of allowed values. :func:`entitlements_for` derives what the binary claims:

* when the old signature had entitlements, each of them is kept if the profile permits it
  (its team prefix moved to the new team first) and dropped otherwise (``dropped``);
* without old entitlements, the profile's are taken, wildcards resolved where the meaning is
  clear (``PREFIX.*`` becomes ``PREFIX.<bundle id>``) and dropped where it is not (``*``);
* always: ``application-identifier`` = ``<prefix>.<bundle id>``,
  ``com.apple.developer.team-identifier`` and ``get-task-allow`` as the profile says.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from appyard.signing.ios.mobileprovision import ProvisioningProfile

FIXED = ("application-identifier", "com.apple.developer.team-identifier", "get-task-allow")


@dataclass(frozen=True)
class Entitlements:
    values: dict[str, Any]
    dropped: tuple[str, ...]  # old entitlements the profile does not permit


def app_id_prefix(profile: ProvisioningProfile) -> str:
    ident = profile.application_identifier or ""
    if "." in ident:
        return ident.split(".", 1)[0]
    return (profile.app_id_prefixes or (profile.team_id or "",))[0]


def _matches(pattern: Any, value: Any) -> bool:
    if isinstance(pattern, str) and isinstance(value, str):
        return fnmatch.fnmatchcase(value, pattern) if "*" in pattern else pattern == value
    return bool(pattern == value)


def permits(allowed: Any, value: Any) -> bool:
    """Whether a profile value ``allowed`` permits the claimed ``value``."""
    if allowed == value:
        return True
    if allowed is True and isinstance(value, bool):
        return True
    if isinstance(value, list):
        return all(permits(allowed, v) for v in value)
    if isinstance(allowed, list):
        return any(_matches(a, value) for a in allowed)
    return _matches(allowed, value)


def _retarget(value: Any, old: str, new: str) -> Any:
    if not old or old == new:
        return value
    if isinstance(value, str) and value.startswith(old + "."):
        return new + value[len(old) :]
    if isinstance(value, list):
        return [_retarget(v, old, new) for v in value]
    return value


def _concrete(value: Any, prefix: str, bundle_id: str) -> Any | None:
    """A profile value made concrete, or None when its wildcard has no clear meaning."""
    if isinstance(value, str):
        if value == f"{prefix}.*":
            return f"{prefix}.{bundle_id}"
        return None if "*" in value else value
    if isinstance(value, list):
        items = [_concrete(v, prefix, bundle_id) for v in value]
        kept = [v for v in items if v is not None]
        return kept if kept or not value else None
    return value


def entitlements_for(
    profile: ProvisioningProfile, bundle_id: str, old: dict[str, Any] | None
) -> Entitlements:
    allowed = profile.entitlements
    prefix = app_id_prefix(profile)
    values: dict[str, Any] = {}
    dropped: list[str] = []
    if old:
        old_app_id = old.get("application-identifier")
        old_prefix = old_app_id.split(".", 1)[0] if isinstance(old_app_id, str) else ""
        for key, value in old.items():
            if key in FIXED:
                continue
            moved = _retarget(value, old_prefix, prefix)
            if key in allowed and permits(allowed[key], moved):
                values[key] = moved
            else:
                dropped.append(key)
    else:
        for key, value in allowed.items():
            if key in FIXED:
                continue
            made = _concrete(value, prefix, bundle_id)
            if made is not None:
                values[key] = made
    values["application-identifier"] = f"{prefix}.{bundle_id}"
    if profile.team_id:
        values["com.apple.developer.team-identifier"] = profile.team_id
    if isinstance(allowed.get("get-task-allow"), bool):
        values["get-task-allow"] = allowed["get-task-allow"]
    return Entitlements(values=values, dropped=tuple(sorted(dropped)))
