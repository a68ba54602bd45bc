"""``appyard admin`` commands for apps, the people notified of builds, and webhook endpoints:
create-app, add-member, list-members, remove-member, add-webhook, list-webhooks,
disable-webhook, enable-webhook, delete-webhook, webhook-deliveries, redeliver-webhook."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from appyard.cli.admin import JsonFlag, _emit, _run, app, out
from appyard.cli.common import runtime_from
from appyard.core import apps, notifications, payloads, tenants, webhooks
from appyard.core.models import Member, MemberRole, Webhook
from appyard.core.ports import UnitOfWork

Tenant = Annotated[str, typer.Option(help="tenant name")]


def _split(values: list[str] | None) -> tuple[str, ...]:
    return tuple(v.strip() for value in values or () for v in value.split(",") if v.strip())


@app.command("create-app")
def create_app(
    ctx: typer.Context,
    tenant: Tenant,
    slug: Annotated[str, typer.Argument(help="the app's name in URLs (letters, digits, . _ -)")],
    name: Annotated[str, typer.Option(help="its display name (default: the slug)")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Make an app ahead of its first build (which binds its package or bundle id)."""
    made = _run(
        ctx,
        lambda uow, clock: apps.create(
            uow, clock, tenant_id=tenants.by_name(uow, name=tenant).id, slug=slug, name=name
        ),
    )
    _emit(
        as_json,
        {"id": made.id, "slug": made.slug, "name": made.name, "tenant": tenant},
        f"created app {made.slug} ({made.id})",
    )


@app.command("add-member")
def add_member(
    ctx: typer.Context,
    tenant: Tenant,
    email: Annotated[str, typer.Option(help="where the notifications go")],
    role: Annotated[MemberRole, typer.Option(help="collaborator or employee")],
    groups: Annotated[
        list[str] | None, typer.Option(help="employee groups, repeat or g1,g2")
    ] = None,
    app_slug: Annotated[
        str | None, typer.Option("--app", help="a collaborator of this app only")
    ] = None,
    language: Annotated[str, typer.Option(help="es en fr ge it zh pt ru")] = "en",
    name: Annotated[str, typer.Option(help="display name")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Add a person who is emailed about the tenant's builds when an upload asks for it."""
    member = _run(
        ctx,
        lambda uow, clock: notifications.add_member(
            uow,
            clock,
            tenant_id=tenants.by_name(uow, name=tenant).id,
            email=email,
            role=role,
            groups=_split(groups),
            app_slug=app_slug,
            language=language,
            name=name,
        ),
    )
    _emit(
        as_json, payloads.member(member), f"added {member.role.value} {member.email} ({member.id})"
    )


@app.command("list-members")
def list_members(ctx: typer.Context, tenant: Tenant, as_json: JsonFlag = False) -> None:
    """List the people notified of the tenant's builds."""

    def fetch(uow: UnitOfWork, clock: Any) -> list[Member]:
        return notifications.list_members(uow, tenant_id=tenants.by_name(uow, name=tenant).id)

    members = _run(ctx, fetch)
    if as_json:
        typer.echo(json.dumps([payloads.member(m) for m in members], indent=2))
        return
    table = Table("id", "email", "role", "groups", "app", "language")
    for m in members:
        table.add_row(m.id, m.email, m.role.value, ",".join(m.groups), m.app_id or "-", m.language)
    out.print(table)


@app.command("remove-member")
def remove_member(
    ctx: typer.Context, tenant: Tenant, member_id: str, as_json: JsonFlag = False
) -> None:
    """Remove a person from the tenant's notifications."""
    _run(
        ctx,
        lambda uow, clock: notifications.remove_member(
            uow, tenant_id=tenants.by_name(uow, name=tenant).id, member_id=member_id
        ),
    )
    _emit(as_json, {"id": member_id, "removed": True}, f"removed {member_id}")


@app.command("add-webhook")
def add_webhook(
    ctx: typer.Context,
    tenant: Tenant,
    url: Annotated[str, typer.Option(help="where events are POSTed")],
    events: Annotated[
        list[str] | None,
        typer.Option(help="build.processed,build.failed,version.released,... (default: all)"),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a webhook endpoint; print its signing secret (whsec_...) ONCE."""
    runtime = runtime_from(ctx)
    svc = runtime.services
    assert svc.sender is not None
    made = _run(
        ctx,
        lambda uow, clock: webhooks.add(
            uow,
            clock,
            svc.sealer(),
            svc.sender,  # type: ignore[arg-type]
            tenant_id=tenants.by_name(uow, name=tenant).id,
            url=url,
            events=_split(events),
        ),
    )
    _emit(
        as_json,
        {**payloads.webhook(made.webhook), "secret": made.secret},
        f"webhook {made.webhook.id} -> {made.webhook.url}\\nsecret (shown once): {made.secret}",
    )


@app.command("list-webhooks")
def list_webhooks(ctx: typer.Context, tenant: Tenant, as_json: JsonFlag = False) -> None:
    """List the tenant's webhook endpoints (never their secrets)."""
    found = _run(
        ctx,
        lambda uow, clock: webhooks.list_webhooks(
            uow, tenant_id=tenants.by_name(uow, name=tenant).id
        ),
    )
    if as_json:
        typer.echo(json.dumps([payloads.webhook(w) for w in found], indent=2))
        return
    table = Table("id", "url", "events", "disabled")
    for w in found:
        table.add_row(w.id, w.url, ",".join(w.events) or "*", str(w.disabled))
    out.print(table)


def _toggle(ctx: typer.Context, tenant: str, webhook_id: str, disabled: bool) -> Webhook:
    return _run(
        ctx,
        lambda uow, clock: webhooks.set_disabled(
            uow,
            tenant_id=tenants.by_name(uow, name=tenant).id,
            webhook_id=webhook_id,
            disabled=disabled,
        ),
    )


@app.command("disable-webhook")
def disable_webhook(
    ctx: typer.Context, tenant: Tenant, webhook_id: str, as_json: JsonFlag = False
) -> None:
    """Stop delivering to an endpoint (queued deliveries are dropped when they come due)."""
    _emit(
        as_json, payloads.webhook(_toggle(ctx, tenant, webhook_id, True)), f"disabled {webhook_id}"
    )


@app.command("enable-webhook")
def enable_webhook(
    ctx: typer.Context, tenant: Tenant, webhook_id: str, as_json: JsonFlag = False
) -> None:
    """Deliver to a disabled endpoint again (from the next event on)."""
    _emit(
        as_json, payloads.webhook(_toggle(ctx, tenant, webhook_id, False)), f"enabled {webhook_id}"
    )


@app.command("delete-webhook")
def delete_webhook(
    ctx: typer.Context, tenant: Tenant, webhook_id: str, as_json: JsonFlag = False
) -> None:
    """Delete an endpoint and its secret."""
    _run(
        ctx,
        lambda uow, clock: webhooks.delete(
            uow, tenant_id=tenants.by_name(uow, name=tenant).id, webhook_id=webhook_id
        ),
    )
    _emit(as_json, {"id": webhook_id, "deleted": True}, f"deleted {webhook_id}")


@app.command("webhook-deliveries")
def webhook_deliveries(
    ctx: typer.Context, tenant: Tenant, webhook_id: str, as_json: JsonFlag = False
) -> None:
    """An endpoint's delivery log, newest first: event, attempt, status code, latency."""
    found = _run(
        ctx,
        lambda uow, clock: webhooks.deliveries(
            uow, tenant_id=tenants.by_name(uow, name=tenant).id, webhook_id=webhook_id
        ),
    )
    if as_json:
        typer.echo(json.dumps([payloads.delivery(d) for d in found], indent=2))
        return
    table = Table("at", "event", "topic", "attempt", "status", "ms", "error")
    for d in found:
        table.add_row(
            d.at.isoformat(timespec="seconds"),
            str(d.event_id),
            d.topic,
            str(d.attempt),
            str(d.status_code or "-"),
            str(d.latency_ms if d.latency_ms is not None else "-"),
            d.error or "",
        )
    out.print(table)


@app.command("redeliver-webhook")
def redeliver_webhook(
    ctx: typer.Context,
    tenant: Tenant,
    webhook_id: str,
    event: Annotated[int, typer.Option(help="the event id (see webhook-deliveries)")],
    as_json: JsonFlag = False,
) -> None:
    """Send one event to an endpoint again (with its own retries)."""
    job_id = _run(
        ctx,
        lambda uow, clock: webhooks.redeliver(
            uow,
            clock,
            tenant_id=tenants.by_name(uow, name=tenant).id,
            webhook_id=webhook_id,
            event_id=event,
        ),
    )
    _emit(as_json, {"webhook_id": webhook_id, "event_id": event, "job_id": job_id}, "queued")
