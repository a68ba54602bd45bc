"""How the portal shows core's values: sizes, times, statuses, facts, CI metadata, events.

Pure functions and Jinja filters; nothing here reads the database.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

import segno
from jinja2 import Environment

from appyard.core.models import App, Build, BuildStatus, Stage

# The pipeline's stages in order, as a build page shows its progress.
STAGES: tuple[Stage, ...] = (
    Stage.WAITING_FOR_UPLOAD,
    Stage.QUEUED,
    Stage.DOWNLOADING,
    Stage.INSPECTING,
    Stage.PROTECTING,
    Stage.PACKAGING,
    Stage.SIGNING,
    Stage.UPLOADING,
    Stage.DONE,
)

SOURCES = {
    "automation": "Automation API",
    "management": "Management API",
    "store-ci": "Store CI API",
    "upload-context": "Upload-context API",
    "distribution": "Distribution API",
    "test": "Test",
}

TOKEN_KINDS = {
    "automation": ("Automation keys", "Upload, poll and download with the automation API."),
    "management": ("Management keys", "Build history, applications and signing keys."),
    "ci": ("Store CI tokens", "Upload versions to the store from CI."),
    "context": ("Upload-context tokens", "Upload builds through the upload-context API."),
    "app": ("App tokens", "Distribution uploads to one app."),
    "service-account": ("Service accounts", "Distribution uploads to any app of the tenant."),
}

TOPICS = {
    "build.uploaded": "Build uploaded",
    "build.processed": "Build processed",
    "build.failed": "Build failed",
    "build.deleted": "Build deleted",
    "version.uploaded": "Version uploaded",
    "version.submitted": "Version submitted for review",
    "version.approved": "Version approved",
    "version.rejected": "Version rejected",
    "version.released": "Version released",
    "version.superseded": "Version superseded",
    "version.withdrawn": "Version withdrawn",
    "version.halted": "Rollout halted",
    "version.resumed": "Rollout resumed",
    "version.rollout_changed": "Rollout raised",
    "version.narrowed": "Countries narrowed",
    "version.issue_filed": "Issue filed",
    "version.issue_resolved": "Issue resolved",
    "install_link.created": "Install link created",
    "install_link.revoked": "Install link revoked",
    "token.created": "Key created",
    "token.disabled": "Key disabled",
    "token.deleted": "Key deleted",
    "signing_key.added": "Signing key added",
    "signing_key.default_set": "Default signing key set",
    "signing_key.deleted": "Signing key deleted",
    "webhook.created": "Webhook endpoint added",
    "webhook.disabled": "Webhook endpoint disabled",
    "webhook.enabled": "Webhook endpoint enabled",
    "webhook.deleted": "Webhook endpoint deleted",
    "user.signed_in": "Signed in",
}

VERSION_STATUS = {
    "draft": "Draft",
    "in_review": "In review",
    "approved": "Approved",
    "live": "Live",
    "rejected": "Rejected",
    "withdrawn": "Withdrawn",
    "superseded": "Superseded",
}


def size(value: int | None) -> str:
    if value is None:
        return "—"
    amount = float(value)
    for unit in ("bytes", "KB", "MB", "GB"):
        if amount < 1024 or unit == "GB":
            return f"{int(amount)} bytes" if unit == "bytes" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GB"


def stamp(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "—"
    seconds = int((now - value).total_seconds())
    if seconds < 0:
        return _until(-seconds)
    if seconds < 60:
        return "just now"
    for span, unit in ((86400 * 30, "month"), (86400, "day"), (3600, "hour"), (60, "min")):
        if seconds >= span:
            n = seconds // span
            plural = "s" if n != 1 and unit != "min" else ""
            return f"{n} {unit}{plural} ago"
    return "just now"


def _until(seconds: int) -> str:
    for span, unit in ((86400, "day"), (3600, "hour"), (60, "min")):
        if seconds >= span:
            n = round(seconds / span)
            plural = "s" if n != 1 and unit != "min" else ""
            return f"in {n} {unit}{plural}"
    return "in a moment"


def tone(status: str) -> str:
    """A status's colour: good, bad, busy, warn or neutral."""
    return {
        "completed": "good",
        "live": "good",
        "approved": "good",
        "passed": "good",
        "active": "good",
        "ready": "good",
        "failed": "bad",
        "rejected": "bad",
        "blocking": "bad",
        "revoked": "bad",
        "invalid": "bad",
        "critical": "bad",
        "high": "bad",
        "processing": "busy",
        "running": "busy",
        "in_review": "busy",
        "pending": "busy",
        "warning": "warn",
        "medium": "warn",
        "withdrawn": "warn",
        "expired": "warn",
        "draft": "neutral",
    }.get(status, "neutral")


def stages(build: Build) -> list[dict[str, str]]:
    """Each stage with its state (done, current, todo; failed for a failed build's stage)."""
    if build.status is BuildStatus.COMPLETED:
        current = len(STAGES) - 1
    else:
        current = STAGES.index(build.progress) if build.progress in STAGES else 0
    out = []
    for i, stage in enumerate(STAGES):
        if i < current or build.status is BuildStatus.COMPLETED:
            state = "done"
        elif i == current:
            state = "failed" if build.status is BuildStatus.FAILED else "current"
        else:
            state = "todo"
        out.append({"name": stage.value, "state": state})
    return out


def ci(meta: dict[str, Any]) -> dict[str, str]:
    """What CI said about a build, from whichever dialect recorded it."""
    deployer: dict[str, Any] = meta.get("deployer") or {}
    if not isinstance(deployer, dict):
        deployer = {}
    info: dict[str, Any] = deployer.get("info") or {}
    if not isinstance(info, dict):
        info = {}
    found = {
        "deployer": deployer.get("name") or meta.get("deployer_name") or "",
        "commit": info.get("commit") or meta.get("commit") or meta.get("sourceControlId") or "",
        "branch": info.get("branch") or meta.get("branch") or "",
        "message": info.get("commitMessage") or "",
        "build_url": info.get("buildUrl") or "",
        "name": meta.get("name") or "",
    }
    return {k: str(v) for k, v in found.items() if v}


def short_commit(value: str) -> str:
    return value[:10] if len(value) >= 12 and all(c in "0123456789abcdef" for c in value) else value


def display_name(app: App | None, build: Build | None) -> str:
    """What to call an app: a name someone gave it, else the label its build declares (the
    launcher label, the bundle's display name), else its identifier."""
    identifier = (app.identifier if app else None) or (build.identifier if build else None)
    if app is not None and app.name and app.name not in (identifier, app.slug):
        return app.name
    facts = (build.facts if build else None) or {}
    manifest = facts.get("manifest") or {}
    label = manifest.get("label") or facts.get("display_name") or facts.get("bundle_name")
    if isinstance(label, str) and label.strip() and not label.startswith("@"):
        return label.strip()
    return (app.name if app else None) or identifier or (build.file_name if build else "App")


def facts_summary(build: Build) -> list[tuple[str, str]]:
    """The facts a person looks for first, per platform."""
    facts = build.facts or {}
    rows: list[tuple[str, str]] = []

    def add(label: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            if isinstance(value, list | tuple):
                value = ", ".join(str(v) for v in value)
            rows.append((label, str(value)))

    manifest = facts.get("manifest") or {}
    base = facts.get("base") or {}
    if not manifest and isinstance(base, dict):
        manifest = base.get("manifest") or {}
    if manifest:
        add("Package", manifest.get("package"))
        add("Label", manifest.get("label"))
        add("Min SDK", manifest.get("min_sdk"))
        add("Target SDK", manifest.get("target_sdk"))
        add("Debuggable", "yes" if manifest.get("debuggable") else "no")
        add("Permissions", len(manifest.get("permissions") or []))
        add("Launcher activity", manifest.get("launcher_activity"))
        add("Native ABIs", facts.get("native_abis") or "none")
    if facts.get("bundle_id"):
        add("Bundle id", facts.get("bundle_id"))
        add("Display name", facts.get("display_name") or facts.get("bundle_name"))
        add("Minimum iOS", facts.get("minimum_os"))
        family = {1: "iPhone", 2: "iPad", 3: "Apple TV", 4: "Apple Watch"}
        add("Devices", [family.get(d, str(d)) for d in facts.get("device_family") or []])
        add("SDK", facts.get("sdk_name"))
        add("Architectures", facts.get("executable_arches"))
    return rows


def signing_summary(build: Build) -> dict[str, Any]:
    """The input's signature as inspection found it (schemes, signer certificate)."""
    facts = build.facts or {}
    sig = facts.get("signatures") or {}
    if sig:
        schemes = [
            name
            for name, key in (("v1", "v1"), ("v2", "v2"), ("v3", "v3"), ("v3.1", "v31"))
            if (sig.get(key) or {}).get("present")
        ]
        signers = sig.get("signers") or []
        first = signers[0] if signers else {}
        return {
            "verified": bool(sig.get("verified")),
            "schemes": schemes,
            "subject": first.get("dn"),
            "sha256": first.get("sha256"),
            "not_after": first.get("not_after"),
            "debug": first.get("is_debug"),
        }
    jar = facts.get("jar_signature") or {}
    if jar:
        signers = jar.get("signers") or []
        first = signers[0] if signers else {}
        return {
            "verified": bool(jar.get("verified")),
            "schemes": ["JAR signature"] if signers else [],
            "subject": first.get("dn") if isinstance(first, dict) else None,
            "sha256": first.get("sha256") if isinstance(first, dict) else None,
            "not_after": first.get("not_after") if isinstance(first, dict) else None,
        }
    ios = facts.get("signature") or {}
    if ios:
        cert = ios.get("certificate") or {}
        return {
            "verified": bool(ios.get("intact")),
            "schemes": ["code signature"] if facts.get("code_signature_present") else [],
            "subject": cert.get("subject") if isinstance(cert, dict) else None,
            "sha256": cert.get("sha256") if isinstance(cert, dict) else None,
            "not_after": cert.get("not_after") if isinstance(cert, dict) else None,
            "team": ios.get("team_id"),
            "profile_type": ios.get("profile_type"),
            "problems": ios.get("problems") or [],
        }
    return {}


def qr_svg(url: str) -> str:
    """The QR code of ``url`` as inline SVG (scales with its box; the quiet zone included)."""
    return str(
        segno.make(url, error="m").svg_inline(
            scale=1, border=4, dark="#111827", light="#ffffff", omitsize=True
        )
    )


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


# --- flash messages (a short-lived cookie set by a redirect after a form post) ------------------


def write_flash(*, notice: str = "", error: str = "") -> str:
    data = json.dumps({"notice": notice[:300], "error": error[:500]}).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def read_flash(value: str | None) -> dict[str, str]:
    if not value or len(value) > 2000:
        return {}
    try:
        data = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (ValueError, binascii.Error):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: str(v) for k, v in data.items() if k in ("notice", "error") and v}


def install(env: Environment) -> None:
    env.filters.update(
        size=size,
        stamp=stamp,
        ago=ago,
        tone=tone,
        short_commit=short_commit,
        pretty=pretty,
    )
    env.globals.update(
        SOURCES=SOURCES,
        TOPICS=TOPICS,
        TOKEN_KINDS=TOKEN_KINDS,
        VERSION_STATUS=VERSION_STATUS,
        stages=stages,
        ci=ci,
        facts_summary=facts_summary,
        display_name=display_name,
        signing_summary=signing_summary,
        qr=qr_svg,
    )
