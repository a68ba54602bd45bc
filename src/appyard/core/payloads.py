"""appyard's own JSON shapes of builds and versions: what the native API answers and what
webhook deliveries carry, so that a receiver sees the same object either way."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from appyard.core import versions as _versions
from appyard.core.models import Build, Member, Version, Webhook, WebhookDelivery
from appyard.core.ports import UnitOfWork


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def build(b: Build) -> dict[str, Any]:
    return {
        "id": b.id,
        "tenant_id": b.tenant_id,
        "app_id": b.app_id,
        "number": b.number,
        "platform": b.platform.value,
        "version": b.config_version.value,
        "file_name": b.file_name,
        "source": b.source,
        "status": b.status.value,
        "progress": b.progress.value,
        "identifier": b.identifier,
        "version_code": b.version_code,
        "version_name": b.version_name,
        "size": b.size,
        "sha256": b.sha256,
        "output_size": b.output_size,
        "output_sha256": b.output_sha256,
        "signed": b.signed,
        "signing_key_id": b.signing_key_id,
        "error_message": b.error_message,
        "signing_error_message": b.signing_error_message,
        "deleted": b.deleted,
        "meta": b.meta,
        "created_at": _iso(b.created_at),
        "updated_at": _iso(b.updated_at),
        "started_at": _iso(b.started_at),
        "finished_at": _iso(b.finished_at),
    }


def version(uow: UnitOfWork, v: Version) -> dict[str, Any]:
    count = _versions.open_issue_count(uow, v)
    return {
        "id": v.id,
        "tenant_id": v.tenant_id,
        "app_id": v.app_id,
        "build_id": v.build_id,
        "version_code": v.version_code,
        "version_name": v.version_name,
        "status": v.status.value,
        "open_issue_count": count,
        "live_with_open_issues": v.status.value == "live" and count > 0,
        "targets": {"countries": list(v.countries), "vehicle_contexts": list(v.vehicle_contexts)},
        "rollout": {"percentage": v.rollout_percentage, "halted": v.rollout_halted},
        "rejection_reason": v.rejection_reason,
        "created_at": _iso(v.created_at),
        "updated_at": _iso(v.updated_at),
    }


def member(m: Member) -> dict[str, Any]:
    return {
        "id": m.id,
        "email": m.email,
        "name": m.name,
        "role": m.role.value,
        "groups": list(m.groups),
        "app_id": m.app_id,
        "language": m.language,
        "created_at": _iso(m.created_at),
    }


def webhook(w: Webhook) -> dict[str, Any]:
    """An endpoint, never its secret (``events`` empty: every event)."""
    return {
        "id": w.id,
        "url": w.url,
        "events": list(w.events),
        "disabled": w.disabled,
        "created_at": _iso(w.created_at),
    }


def delivery(d: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "webhook_id": d.webhook_id,
        "event_id": d.event_id,
        "topic": d.topic,
        "attempt": d.attempt,
        "at": _iso(d.at),
        "status_code": d.status_code,
        "latency_ms": d.latency_ms,
        "error": d.error,
    }
