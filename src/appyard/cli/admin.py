"""``appyard admin``: operator commands that scripts can drive (``--json``).

They work on the database directly, so they run while the server runs (SQLite in WAL mode
lets both write)."""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from appyard import errors
from appyard.cli import exits
from appyard.cli.common import parse_duration, runtime_from
from appyard.core import (
    apps,
    controls,
    identity,
    install_links,
    signing_keys,
    tenants,
    users,
    versions,
)
from appyard.core.crypto import SecretBox
from appyard.core.models import (
    Actor,
    ConfigVersion,
    LimitOverrides,
    Plan,
    Platform,
    Role,
    SigningKey,
    StoreIssue,
    TokenKind,
)
from appyard.core.ports import UnitOfWork
from appyard.core.uploads import parse_platform, parse_version
from appyard.inspect.mobileprovision import MAX_PROFILE_BYTES
from appyard.signing.keystore import MAX_KEYSTORE_BYTES
from appyard.signing.lineage import DEFAULT_ROTATION_MIN_SDK, MAX_LINEAGE_BYTES

app = typer.Typer(help="Operator commands: tenants, keys, limits, controls.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def _run(ctx: typer.Context, fn: Callable[[UnitOfWork, Any], T]) -> T:
    runtime = runtime_from(ctx)
    try:
        with runtime.services.transaction() as uow:
            return fn(uow, runtime.services.clock)
    except errors.AppyardError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        code = (
            exits.CONFIG
            if isinstance(exc, errors.Unauthenticated | errors.Forbidden)
            else exits.FAILED
        )
        raise typer.Exit(code) from None


def _limit(value: int | None) -> str:
    """A limit as people read it: None is no limit at all."""
    return "unlimited" if value is None else str(value)


def _limits_text(limits: dict[str, Any]) -> str:
    return ", ".join(
        f"{k.replace('_', ' ')} {_limit(v) if not isinstance(v, bool) else ('yes' if v else 'no')}"
        for k, v in limits.items()
    )


def _table(*columns: str, ids: list[str] | None = None) -> Table:
    """A table whose first column (ids) is never cut or wrapped (print it with
    :func:`_print_table`)."""
    table = Table()
    width = max((len(i) for i in ids or []), default=0)
    for n, name in enumerate(columns):
        if n == 0:
            table.add_column(name, no_wrap=True, min_width=max(width, len(name)))
        else:
            table.add_column(name, no_wrap=n < len(columns) - 1, overflow="fold")
    return table


def _print_table(table: Table) -> None:
    """As wide as the table needs (ids and limits whole), even past the terminal's width."""
    from rich.measure import Measurement

    needed = Measurement.get(out, out.options.update_width(400), table).maximum
    Console(width=max(needed, out.width)).print(table)


def _emit(as_json: bool, data: dict[str, Any] | list[Any], text: str) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        out.print(text)


@app.command("create-tenant")
def create_tenant(
    ctx: typer.Context,
    name: str,
    plan: Annotated[Plan, typer.Option(help="free, team or enterprise")] = Plan.TEAM,
    as_json: JsonFlag = False,
) -> None:
    """Create a tenant (organization/workspace) on a plan."""
    tenant = _run(ctx, lambda uow, clock: tenants.create(uow, clock, name=name, plan=plan))
    _emit(
        as_json,
        {"id": tenant.id, "name": tenant.name, "plan": tenant.plan.value},
        f"created tenant {tenant.name} ({tenant.id}) on the {tenant.plan.value} plan",
    )


@app.command("list-tenants")
def list_tenants(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List tenants with their plan and effective limits."""
    rows = _run(ctx, lambda uow, clock: uow.tenants.list())
    if as_json:
        data = [
            {"id": t.id, "name": t.name, "plan": t.plan.value, "limits": vars(tenants.limits(t))}
            for t in rows
        ]
        typer.echo(json.dumps(data, indent=2))
        return
    table = _table("id", "name", "plan", "concurrent", "weekly", ids=[t.id for t in rows])
    for t in rows:
        limits = tenants.limits(t)
        table.add_row(
            t.id,
            t.name,
            t.plan.value,
            _limit(limits.concurrent_builds),
            _limit(limits.weekly_builds),
        )
    _print_table(table)


@app.command("create-key")
def create_key(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="tenant name")],
    kind: Annotated[
        TokenKind,
        typer.Option(help="automation, ci, management, context, app, service-account"),
    ] = TokenKind.AUTOMATION,
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
    app_slug: Annotated[
        str | None,
        typer.Option("--app", help="kind app: the app it uploads to (made when unknown)"),
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="expire after a time such as 90d, 12h or 30m")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a key and print its raw value ONCE (key_id:key_secret); only a hash is kept."""
    lifetime = parse_duration(expires) if expires else None

    def make(uow: UnitOfWork, clock: Any) -> identity.IssuedToken:
        t = tenants.by_name(uow, name=tenant)
        app_id = None
        if app_slug is not None:
            app_id = apps.named(uow, clock, tenant_id=t.id, slug=app_slug, create=True).id
        return identity.create_token(
            uow,
            clock,
            tenant_id=t.id,
            kind=kind,
            name=name,
            app_id=app_id,
            expires_at=clock.now() + lifetime if lifetime else None,
        )

    issued = _run(ctx, make)
    data = {
        "key_id": issued.token.id,
        "key": issued.raw,
        "kind": kind.value,
        "tenant": tenant,
        "name": issued.token.name,
        "app_id": issued.token.app_id,
        "expires_at": issued.token.expires_at.isoformat() if issued.token.expires_at else None,
    }
    _emit(
        as_json,
        data,
        f"key {issued.token.id} ({kind.value}) for {tenant}:\n{issued.raw}\n"
        "Store it now: the secret is not shown again.",
    )


@app.command("list-keys")
def list_keys(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="tenant name")],
    as_json: JsonFlag = False,
) -> None:
    """List a tenant's keys (never their secrets)."""

    def fetch(uow: UnitOfWork, clock: Any) -> list[dict[str, Any]]:
        t = tenants.by_name(uow, name=tenant)
        return [
            {
                "key_id": k.id,
                "kind": k.kind.value,
                "name": k.name,
                "disabled": k.disabled,
                "created_at": k.created_at.isoformat(),
                "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
            }
            for k in identity.list_tokens(uow, tenant_id=t.id)
        ]

    data = _run(ctx, fetch)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = _table(
        "key_id", "kind", "name", "disabled", "last used", ids=[d["key_id"] for d in data]
    )
    for d in data:
        table.add_row(
            d["key_id"], d["kind"], d["name"], str(d["disabled"]), d["last_used_at"] or "-"
        )
    _print_table(table)


@app.command("disable-key")
def disable_key(ctx: typer.Context, key_id: str, as_json: JsonFlag = False) -> None:
    """Disable a key; requests with it are refused at once."""
    token = _run(ctx, lambda uow, clock: identity.disable_token(uow, token_id=key_id))
    _emit(as_json, {"key_id": token.id, "disabled": True}, f"disabled key {token.id}")


@app.command("set-limits")
def set_limits(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="tenant name")],
    plan: Annotated[Plan | None, typer.Option(help="change the plan")] = None,
    concurrent_builds: Annotated[int | None, typer.Option(help="0 = unlimited")] = None,
    weekly_builds: Annotated[
        int | None,
        typer.Option(help="per platform and configuration version over 7 days; 0 = unlimited"),
    ] = None,
    automation_keys: Annotated[
        int | None, typer.Option(help="active automation keys allowed")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a tenant's plan and per-tenant limit overrides."""

    def change(uow: UnitOfWork, clock: Any) -> dict[str, Any]:
        t = tenants.by_name(uow, name=tenant)
        if plan is not None:
            t = tenants.set_plan(uow, tenant_id=t.id, plan=plan)
        t = tenants.set_limits(
            uow,
            tenant_id=t.id,
            overrides=LimitOverrides(
                concurrent_builds=concurrent_builds,
                weekly_builds=weekly_builds,
                automation_keys=automation_keys,
            ),
        )
        return {"tenant": t.name, "plan": t.plan.value, "limits": vars(tenants.limits(t))}

    data = _run(ctx, change)
    _emit(
        as_json,
        data,
        f"{data['tenant']}: plan {data['plan']}, limits: {_limits_text(data['limits'])}",
    )


@app.command("list-controls")
def list_controls(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(help="show what this tenant has enabled")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The control catalog, with each control's default (or a tenant's) enabled versions."""

    def fetch(uow: UnitOfWork, clock: Any) -> list[dict[str, Any]]:
        t = tenants.by_name(uow, name=tenant) if tenant else None
        rows = []
        for spec in controls.catalog():
            enabled: dict[str, list[str]] = {}
            for platform in spec.platforms:
                versions = []
                for version in ConfigVersion:
                    on = (
                        spec.id
                        in controls.enabled(uow, tenant_id=t.id, platform=platform, version=version)
                        if t
                        else version in spec.default_versions
                    )
                    if on:
                        versions.append(version.value)
                enabled[platform.value] = versions
            rows.append(
                {
                    "id": spec.id,
                    "kind": spec.kind,
                    "title": spec.title,
                    "platforms": [p.value for p in spec.platforms],
                    "enabled": enabled,
                }
            )
        return rows

    data = _run(ctx, fetch)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = _table("id", "kind", "platforms", "enabled for", "title", ids=[d["id"] for d in data])
    for d in data:
        on = "; ".join(f"{p}: {','.join(v) or '-'}" for p, v in d["enabled"].items())
        table.add_row(d["id"], d["kind"], ",".join(d["platforms"]), on, d["title"])
    _print_table(table)


def _split(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


@app.command("set-controls")
def set_controls(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="tenant name")],
    platform: Annotated[str, typer.Option(help="android or ios")],
    version: Annotated[str, typer.Option(help="dev|development|stg|staging|prod|production")],
    enable: Annotated[
        list[str] | None,
        typer.Option(help="control id; repeat the flag or separate ids with commas"),
    ] = None,
    disable: Annotated[
        list[str] | None,
        typer.Option(help="control id; repeat the flag or separate ids with commas"),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Enable or disable controls for a tenant, platform and configuration version."""

    def change(uow: UnitOfWork, clock: Any) -> tuple[Platform, ConfigVersion, list[str]]:
        plat, ver = parse_platform(platform), parse_version(version)
        t = tenants.by_name(uow, name=tenant)
        return (
            plat,
            ver,
            controls.set_controls(
                uow,
                tenant_id=t.id,
                platform=plat,
                version=ver,
                enable=_split(enable or []),
                disable=_split(disable or []),
            ),
        )

    plat, ver, enabled = _run(ctx, change)
    _emit(
        as_json,
        {"tenant": tenant, "platform": plat.value, "version": ver.value, "enabled": enabled},
        f"{tenant} {plat.value}/{ver.value}: {', '.join(enabled) or 'no controls'} enabled",
    )


# --- people and the store team's actions --------------------------------------------------------


@app.command("create-user")
def create_user(
    ctx: typer.Context,
    email: str,
    role: Annotated[Role, typer.Option(help="store-admin, store-reviewer or developer")],
    password_env: Annotated[str, typer.Option(help="environment variable holding the password")],
    tenant: Annotated[str | None, typer.Option(help="the developer's tenant")] = None,
    name: Annotated[str, typer.Option()] = "",
    as_json: JsonFlag = False,
) -> None:
    """Create a portal user (the password is read from an environment variable)."""
    password = os.environ.get(password_env, "")
    if not password:
        err.print(f"[red]error:[/red] ${password_env} is empty or unset.")
        raise typer.Exit(2)
    user = _run(
        ctx,
        lambda uow, clock: users.create(
            uow, clock, email=email, name=name, role=role, password=password, tenant_name=tenant
        ),
    )
    _emit(
        as_json,
        {"id": user.id, "email": user.email, "role": user.role.value, "tenant_id": user.tenant_id},
        f"created {user.role.value} {user.email} ({user.id})",
    )


OPERATOR = Actor(id="operator", tenant_id=None, role=Role.STORE_ADMIN)
version_app = typer.Typer(
    help="The store team's actions on versions (as a store admin).", no_args_is_help=True
)
app.add_typer(version_app, name="version")


def _act(ctx: typer.Context, as_json: bool, fn: Callable[..., Any], **kwargs: Any) -> None:
    def run(uow: UnitOfWork, clock: Any) -> dict[str, Any]:
        result = fn(uow, clock, OPERATOR, **kwargs)
        if isinstance(result, StoreIssue):
            return {"id": result.id, "title": result.title, "status": result.status.value}
        version = versions.get(uow, OPERATOR, version_id=result.id)
        return {
            "id": version.id,
            "status": version.status.value,
            "countries": list(version.countries),
            "vehicle_contexts": list(version.vehicle_contexts),
            "rollout_percentage": version.rollout_percentage,
            "rollout_halted": version.rollout_halted,
            "open_issue_count": versions.open_issue_count(uow, version),
        }

    data = _run(ctx, run)
    _emit(as_json, data, json.dumps(data))


VersionId = Annotated[str, typer.Argument(help="version id")]


@version_app.command("show")
def version_show(ctx: typer.Context, version_id: VersionId, as_json: JsonFlag = False) -> None:
    """A version with its history."""

    def fetch(uow: UnitOfWork, clock: Any) -> dict[str, Any]:
        v = versions.get(uow, OPERATOR, version_id=version_id)
        return {
            "id": v.id,
            "status": v.status.value,
            "version_code": v.version_code,
            "history": [
                {
                    "action": e.action,
                    "from": e.from_status,
                    "to": e.to_status,
                    "actor": e.actor,
                    "at": e.at.isoformat(),
                }
                for e in versions.history(uow, OPERATOR, version_id=v.id)
            ],
        }

    data = _run(ctx, fetch)
    _emit(as_json, data, json.dumps(data, indent=2))


@version_app.command("submit")
def version_submit(ctx: typer.Context, version_id: VersionId, as_json: JsonFlag = False) -> None:
    """Submit a draft version for review."""
    _act(ctx, as_json, versions.submit, version_id=version_id)


@version_app.command("approve")
def version_approve(ctx: typer.Context, version_id: VersionId, as_json: JsonFlag = False) -> None:
    """Approve a version in review."""
    _act(ctx, as_json, versions.approve, version_id=version_id)


@version_app.command("reject")
def version_reject(
    ctx: typer.Context,
    version_id: VersionId,
    reason: Annotated[str, typer.Option()],
    as_json: JsonFlag = False,
) -> None:
    """Reject a version in review, with a reason."""
    _act(ctx, as_json, versions.reject, version_id=version_id, reason=reason)


@version_app.command("release")
def version_release(
    ctx: typer.Context,
    version_id: VersionId,
    countries: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2, comma separated")],
    vehicle_contexts: Annotated[str, typer.Option(help="comma separated")] = "",
    rollout: Annotated[int, typer.Option(help="rollout percentage")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """Release an approved version to countries (and vehicle contexts)."""
    _act(
        ctx,
        as_json,
        versions.release,
        version_id=version_id,
        countries=_split([countries]),
        vehicle_contexts=_split([vehicle_contexts]),
        rollout_percentage=rollout,
    )


@version_app.command("rollout")
def version_rollout(
    ctx: typer.Context,
    version_id: VersionId,
    percentage: Annotated[int, typer.Option()],
    as_json: JsonFlag = False,
) -> None:
    """Change a live version's rollout percentage."""
    _act(ctx, as_json, versions.set_rollout, version_id=version_id, percentage=percentage)


@version_app.command("halt")
def version_halt(ctx: typer.Context, version_id: VersionId, as_json: JsonFlag = False) -> None:
    """Halt a live version's rollout."""
    _act(ctx, as_json, versions.halt, version_id=version_id)


@version_app.command("resume")
def version_resume(ctx: typer.Context, version_id: VersionId, as_json: JsonFlag = False) -> None:
    """Resume a halted rollout."""
    _act(ctx, as_json, versions.resume, version_id=version_id)


@version_app.command("withdraw")
def version_withdraw(
    ctx: typer.Context,
    version_id: VersionId,
    reason: Annotated[str, typer.Option()] = "",
    as_json: JsonFlag = False,
) -> None:
    """Withdraw a live version from the store."""
    _act(ctx, as_json, versions.withdraw, version_id=version_id, reason=reason)


@version_app.command("file-issue")
def version_file_issue(
    ctx: typer.Context,
    version_id: VersionId,
    title: Annotated[str, typer.Option()],
    severity: Annotated[str, typer.Option(help="low, medium, high, critical")] = "medium",
    as_json: JsonFlag = False,
) -> None:
    """File an issue against a version."""
    _act(ctx, as_json, versions.file_issue, version_id=version_id, title=title, severity=severity)


@version_app.command("resolve-issue")
def version_resolve_issue(ctx: typer.Context, issue_id: str, as_json: JsonFlag = False) -> None:
    """Resolve an open issue."""
    _act(ctx, as_json, versions.resolve_issue, issue_id=issue_id)


# --- managed signing keys and the master key ----------------------------------------------------


def _key_body(key: SigningKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "platform": key.platform.value,
        "default": key.is_default,
        "state": key.state.value,
        "alias": key.alias,
        "cert_sha256": key.cert_sha256,
        "subject": key.subject,
        "not_after": key.not_after.isoformat() if key.not_after else None,
        "error": key.error_message,
        "rotation": (
            {"original_key_id": key.original_key_id, "min_sdk": key.rotation_min_sdk}
            if key.lineage is not None
            else None
        ),
        "profile": (
            {
                "name": key.profile_name,
                "uuid": key.profile_uuid,
                "team_id": key.profile_team_id,
                "app_id": key.profile_app_id,
                "expires_at": (
                    key.profile_expires_at.isoformat() if key.profile_expires_at else None
                ),
            }
            if key.profile_uuid is not None or key.profile_expires_at is not None
            else None
        ),
    }


@app.command("add-signing-key")
def add_signing_key(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="tenant name")],
    name: Annotated[str, typer.Option(help="display name")],
    keystore: Annotated[
        Path, typer.Option(help="JKS, PKCS#12 or PEM (key + certificates); iOS: PKCS#12 only")
    ],
    password_env: Annotated[str, typer.Option(help="variable holding the store password")],
    platform: Annotated[str, typer.Option(help="android or ios")] = "android",
    alias: Annotated[str | None, typer.Option(help="key alias (optional with one key)")] = None,
    key_password_env: Annotated[
        str | None, typer.Option(help="variable holding the key password, when it differs")
    ] = None,
    default: Annotated[bool, typer.Option("--default", help="make it the default")] = False,
    profile: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="iOS only: a .mobileprovision that lists the key's certificate",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a managed signing key; it is opened now and refused with a reason if unusable."""
    password = os.environ.get(password_env)
    if password is None:
        err.print(f"[red]error:[/red] ${password_env} is unset.")
        raise typer.Exit(2)
    key_password = os.environ.get(key_password_env) if key_password_env else None
    if profile is not None and platform.strip().lower() != Platform.IOS.value:
        err.print("[red]error:[/red] --profile is for iOS keys (--platform ios) only.")
        raise typer.Exit(2)
    if keystore.stat().st_size > MAX_KEYSTORE_BYTES:
        err.print("[red]error:[/red] signing-key files over 10 MB are rejected.")
        raise typer.Exit(2)
    data = keystore.read_bytes()
    profile_data = None
    if profile is not None:
        if profile.stat().st_size > MAX_PROFILE_BYTES:
            err.print(
                f"[red]error:[/red] provisioning profiles over {MAX_PROFILE_BYTES} bytes "
                "are rejected."
            )
            raise typer.Exit(2)
        profile_data = profile.read_bytes()
    box = runtime_from(ctx).services.sealer()

    def make(uow: UnitOfWork, clock: Any) -> SigningKey:
        t = tenants.by_name(uow, name=tenant)
        return signing_keys.create_from_bytes(
            uow,
            clock,
            box,
            tenant_id=t.id,
            name=name,
            platform=parse_platform(platform),
            data=data,
            password=password,
            alias=alias,
            key_password=key_password,
            created_by="operator",
            make_default=default,
            profile=profile_data,
        )

    key = _run(ctx, make)
    _emit(
        as_json,
        _key_body(key),
        f"added signing key {key.name} ({key.id}), "
        f"{'default' if key.is_default else 'not default'}, {key.subject}",
    )


@app.command("list-signing-keys")
def list_signing_keys(
    ctx: typer.Context, tenant: Annotated[str, typer.Option()], as_json: JsonFlag = False
) -> None:
    """A tenant's signing keys (never their secrets)."""
    keys = _run(
        ctx,
        lambda uow, clock: signing_keys.list_keys(
            uow, tenant_id=tenants.by_name(uow, name=tenant).id
        ),
    )
    data = [_key_body(k) for k in keys]
    _emit(as_json, data, "\n".join(json.dumps(d) for d in data) or "no signing keys")


@app.command("set-default-signing-key")
def set_default_signing_key(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option()],
    key_id: str,
    as_json: JsonFlag = False,
) -> None:
    """Make a signing key its platform's default for the tenant."""
    key = _run(
        ctx,
        lambda uow, clock: signing_keys.set_default(
            uow, tenant_id=tenants.by_name(uow, name=tenant).id, key_id=key_id
        ),
    )
    _emit(as_json, _key_body(key), f"{key.name} is now the {key.platform.value} default")


@app.command("delete-signing-key")
def delete_signing_key(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option()],
    key_id: str,
    as_json: JsonFlag = False,
) -> None:
    """Delete a key: its material is wiped; queued builds that need it fail, unsigned."""
    store = runtime_from(ctx).services.store
    key = _run(
        ctx,
        lambda uow, clock: signing_keys.delete(
            uow, store, tenant_id=tenants.by_name(uow, name=tenant).id, key_id=key_id
        ),
    )
    _emit(as_json, _key_body(key), f"deleted signing key {key.name}")


@app.command("set-key-rotation")
def set_key_rotation(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option()],
    key_id: Annotated[str, typer.Argument(help="the key the tenant rotated to")],
    original: Annotated[
        str | None, typer.Option(help="id of the managed key the app was first signed with")
    ] = None,
    lineage: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="SigningCertificateLineage file"),
    ] = None,
    rotation_min_sdk_version: Annotated[
        int, typer.Option(help="rotate from this API level: 33+ in v3.1, 28-32 in v3")
    ] = DEFAULT_ROTATION_MIN_SDK,
    clear: Annotated[bool, typer.Option("--clear", help="stop signing with a rotation")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Sign a key's APKs as a rotated key (v1/v2 by --original, v3/v3.1 with the lineage
    from `apksigner rotate`), or --clear it. Checked now: the lineage must run from the
    original key's certificate to this key's."""
    if clear:
        key = _run(
            ctx,
            lambda uow, clock: signing_keys.clear_rotation(
                uow, tenant_id=tenants.by_name(uow, name=tenant).id, key_id=key_id
            ),
        )
        _emit(as_json, _key_body(key), f"{key.name} signs without a rotation")
        return
    if original is None or lineage is None:
        err.print("[red]error:[/red] --original and --lineage are required (or --clear).")
        raise typer.Exit(2)
    data = lineage.read_bytes()[: MAX_LINEAGE_BYTES + 1]
    box = runtime_from(ctx).services.sealer()
    key = _run(
        ctx,
        lambda uow, clock: signing_keys.set_rotation(
            uow,
            clock,
            box,
            tenant_id=tenants.by_name(uow, name=tenant).id,
            key_id=key_id,
            original_key_id=original,
            lineage=data,
            min_sdk=rotation_min_sdk_version,
        ),
    )
    _emit(
        as_json,
        _key_body(key),
        f"{key.name} signs APKs as rotated from {original} (API {key.rotation_min_sdk}+)",
    )


@app.command("rotate-master-key")
def rotate_master_key(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Re-encrypt every signing key under a new master key.

    With the key file (default): a new key is written to master.key.next, every secret is
    re-sealed in one transaction, then the file replaces master.key (a crash in between
    loses nothing: both keys are read until the rotation is run again). With
    APPYARD_MASTER_KEY: set the new key there and the old one in
    APPYARD_PREVIOUS_MASTER_KEYS, run this, then drop the old one."""
    settings = runtime_from(ctx).settings
    keys = settings.master_keys()
    pending = settings.data_dir / "master.key.next"
    if settings.master_key is None:
        if not pending.exists():
            fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(base64.b64encode(secrets.token_bytes(32)).decode())
        box = SecretBox(*settings.master_keys())  # master.key.next first
    else:
        box = SecretBox(*keys)
    count = _run(
        ctx,
        lambda uow, clock: signing_keys.reseal_all(uow, box) + install_links.reseal_all(uow, box),
    )
    if settings.master_key is None:
        os.replace(pending, settings.data_dir / "master.key")
    _emit(as_json, {"resealed": count}, f"re-encrypted {count} signing key(s) and install link(s)")


@app.command("set-key-scopes")
def set_key_scopes(
    ctx: typer.Context,
    key_id: str,
    scope: Annotated[
        list[str] | None,
        typer.Option(help="builds, read; repeat it; none at all gives every permission"),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Limit what a key may do: a management key without the builds scope is read-only."""
    scopes = tuple(scope or ())
    token = _run(ctx, lambda uow, clock: identity.set_scopes(uow, token_id=key_id, scopes=scopes))
    shown = ", ".join(token.scopes) or "every permission"
    _emit(as_json, {"key_id": token.id, "scopes": list(token.scopes)}, f"{token.id}: {shown}")


# --- install links ------------------------------------------------------------------------------


def _link_body(shared: install_links.SharedLink) -> dict[str, Any]:
    link = shared.link
    return {
        "id": link.id,
        "url": shared.url,
        "build_id": link.build_id,
        "state": shared.state,
        "expires_at": link.expires_at.isoformat(),
    }


@app.command("install-link")
def install_link(
    ctx: typer.Context,
    build: Annotated[
        str,
        typer.Argument(help="build id, build number (the automation job_id), or store version id"),
    ],
    expires: Annotated[str, typer.Option(help="how long it lives: 30m, 12h, 7d, 2w")] = "7d",
    tenant: Annotated[
        str | None, typer.Option(help="the build's tenant (when two share a build number)")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Make an install link (/i/<token>) for a completed build and print its URL."""
    runtime = runtime_from(ctx)
    svc = runtime.services

    def make(uow: UnitOfWork, clock: Any) -> install_links.SharedLink:
        span = install_links.parse_expiry(expires)
        tenant_id = tenants.by_name(uow, name=tenant).id if tenant else None
        found = install_links.find_build(uow, ref=build, tenant_id=tenant_id)
        return install_links.create_as_operator(
            uow, clock, svc.sealer(), build=found, expires_in=span, public_url=svc.public_url
        )

    shared = _run(ctx, make)
    body = _link_body(shared)
    _emit(as_json, body, f"{shared.url}\n(link {shared.link.id}, expires {body['expires_at']})")


@app.command("revoke-install-link")
def revoke_install_link(ctx: typer.Context, link_id: str, as_json: JsonFlag = False) -> None:
    """Revoke an install link: its page answers 410 from now on."""
    link = _run(
        ctx, lambda uow, clock: install_links.revoke_as_operator(uow, clock, link_id=link_id)
    )
    _emit(
        as_json,
        {"id": link.id, "state": "revoked", "revoked_at": str(link.revoked_at)},
        f"revoked install link {link.id}",
    )
