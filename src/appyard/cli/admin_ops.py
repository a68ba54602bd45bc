"""``appyard admin`` commands for running appyard for months: jobs (list, retry, cancel),
uploads (list), pinned builds, retention rules and runs, backup and restore."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from appyard import errors
from appyard.cli import backup as backups
from appyard.cli.admin import JsonFlag, _emit, _run, app, err, out
from appyard.cli.common import ctx_obj, runtime_from
from appyard.core import apps, retention, tenants
from appyard.core.models import Build, Job, JobState, Upload, UploadState
from appyard.core.ports import UnitOfWork

jobs_app = typer.Typer(help="Jobs: list, run again, cancel.", no_args_is_help=True)
uploads_app = typer.Typer(help="Uploads: list.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(uploads_app, name="uploads")

TenantOption = Annotated[str | None, typer.Option("--tenant", help="tenant name (default: all)")]
Limit = Annotated[int, typer.Option(min=1, max=10_000, help="at most this many, newest first")]


def _tenant_id(uow: UnitOfWork, name: str | None) -> str | None:
    return tenants.by_name(uow, name=name).id if name else None


def _job(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "tenant_id": job.tenant_id,
        "kind": job.kind,
        "state": job.state.value,
        "build_id": job.build_id,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
        "lease_owner": job.lease_owner,
        "lease_until": job.lease_until.isoformat() if job.lease_until else None,
        "run_after": job.run_after.isoformat() if job.run_after else None,
    }


@jobs_app.command("list")
def jobs_list(
    ctx: typer.Context,
    tenant: TenantOption = None,
    state: Annotated[
        list[JobState] | None, typer.Option(help="only jobs in this state (repeat for more)")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="only jobs of this kind")] = None,
    limit: Limit = 50,
    as_json: JsonFlag = False,
) -> None:
    """Jobs, newest first: kind, state, build, attempts, lease."""
    rows = _run(
        ctx,
        lambda uow, clock: uow.jobs.recent(
            tenant_id=_tenant_id(uow, tenant), states=tuple(state or ()), kind=kind, limit=limit
        ),
    )
    if as_json:
        typer.echo(json.dumps([_job(j) for j in rows], indent=2))
        return
    table = Table("id", "kind", "state", "build", "attempts", "updated", "lease owner")
    for j in rows:
        table.add_row(
            j.id,
            j.kind,
            j.state.value,
            j.build_id or "-",
            f"{j.attempts}/{j.max_attempts}",
            j.updated_at.isoformat(timespec="seconds"),
            j.lease_owner or "-",
        )
    out.print(table)


@jobs_app.command("retry")
def jobs_retry(ctx: typer.Context, job_id: str, as_json: JsonFlag = False) -> None:
    """Run a failed or cancelled job again, with fresh attempts."""
    from appyard.core import jobs

    job = _run(ctx, lambda uow, clock: jobs.run_again(uow, clock, job_id=job_id))
    _emit(as_json, _job(job), f"job {job.id} ({job.kind}) queued again")


@jobs_app.command("cancel")
def jobs_cancel(
    ctx: typer.Context,
    job_id: str,
    reason: Annotated[str, typer.Option(help="what the build's error says")] = (
        "Cancelled by an operator."
    ),
    as_json: JsonFlag = False,
) -> None:
    """Stop a job that has not finished (its build fails with the reason)."""
    from appyard.core import jobs

    job = _run(ctx, lambda uow, clock: jobs.cancel(uow, clock, job_id=job_id, reason=reason))
    _emit(as_json, _job(job), f"job {job.id} ({job.kind}) cancelled")


def _upload(upload: Upload) -> dict[str, Any]:
    return {
        "id": upload.id,
        "tenant_id": upload.tenant_id,
        "purpose": upload.purpose.value,
        "subject_id": upload.subject_id,
        "state": upload.state.value,
        "file_name": upload.file_name,
        "multipart": upload.multipart,
        "declared_size": upload.declared_size,
        "size": upload.size,
        "created_at": upload.created_at.isoformat(),
        "expires_at": upload.expires_at.isoformat(),
        "reason": upload.reason,
    }


@uploads_app.command("list")
def uploads_list(
    ctx: typer.Context,
    tenant: TenantOption = None,
    state: Annotated[
        list[UploadState] | None,
        typer.Option(help="pending, received, aborted, expired or refused (repeat for more)"),
    ] = None,
    limit: Limit = 50,
    as_json: JsonFlag = False,
) -> None:
    """Uploads, newest first: what they are for, their state, size and expiry."""
    rows = _run(
        ctx,
        lambda uow, clock: uow.uploads.recent(
            tenant_id=_tenant_id(uow, tenant), states=tuple(state or ()), limit=limit
        ),
    )
    if as_json:
        typer.echo(json.dumps([_upload(u) for u in rows], indent=2))
        return
    table = Table("id", "purpose", "subject", "state", "file", "bytes", "expires")
    for u in rows:
        table.add_row(
            u.id,
            u.purpose.value,
            u.subject_id,
            u.state.value,
            u.file_name,
            str(u.size if u.size is not None else u.declared_size or "-"),
            u.expires_at.isoformat(timespec="seconds"),
        )
    out.print(table)


# --- pinned builds and retention ----------------------------------------------------------------


def _build(build: Build) -> dict[str, Any]:
    return {
        "id": build.id,
        "tenant_id": build.tenant_id,
        "number": build.number,
        "app_id": build.app_id,
        "platform": build.platform.value,
        "config_version": build.config_version.value,
        "file_name": build.file_name,
        "status": build.status.value,
        "created_at": build.created_at.isoformat(),
        "pinned": build.pinned,
        "bytes": retention.freed_bytes(build),
    }


@app.command("pin")
def pin(
    ctx: typer.Context,
    build_id: str,
    unpin: Annotated[bool, typer.Option("--unpin", help="let retention decide again")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Pin a build: retention never removes it (it still counts among the last N)."""
    build = _run(
        ctx, lambda uow, clock: retention.pin(uow, clock, build_id=build_id, pinned=not unpin)
    )
    _emit(as_json, _build(build), f"build {build.id} {'pinned' if build.pinned else 'unpinned'}")


@app.command("set-retention")
def set_retention(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="tenant name")],
    app_slug: Annotated[
        str | None, typer.Option("--app", help="this app only (default: the tenant's rule)")
    ] = None,
    keep_last: Annotated[
        int | None, typer.Option(help="keep the last N builds of each app and version")
    ] = None,
    keep_days: Annotated[int | None, typer.Option(help="keep builds younger than D days")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="remove the rule")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Set (or --clear) a retention rule; a build goes when neither part keeps it."""

    def change(uow: UnitOfWork, clock: Any) -> dict[str, Any]:
        t = tenants.by_name(uow, name=tenant)
        app_id = (
            apps.named(uow, clock, tenant_id=t.id, slug=app_slug, create=False).id
            if app_slug
            else None
        )
        if clear:
            gone = retention.clear_rule(uow, tenant_id=t.id, app_id=app_id)
            return {"tenant": tenant, "app": app_slug, "cleared": gone}
        rule = retention.set_rule(
            uow, clock, tenant_id=t.id, app_id=app_id, keep_last=keep_last, keep_days=keep_days
        )
        return {
            "tenant": tenant,
            "app": app_slug,
            "keep_last": rule.keep_last,
            "keep_days": rule.keep_days,
        }

    data = _run(ctx, change)
    _emit(as_json, data, json.dumps(data))


@app.command("retention")
def retention_run(
    ctx: typer.Context,
    tenant: TenantOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="only report what would go and the space freed")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Apply the retention rules now (--dry-run: report only): the builds that go, why, and
    how many bytes that frees; pinned and store builds the rules would take are listed too."""
    runtime = runtime_from(ctx)
    svc = runtime.services
    plans: list[retention.Plan] = []
    try:
        with svc.uow() as uow:
            names = {t.id: t.name for t in uow.tenants.list()}
            wanted = [tenants.by_name(uow, name=tenant).id] if tenant else uow.retention.tenants()
            rules = {t: retention.rules(uow, tenant_id=t) for t in wanted}
            if dry_run:
                plans = [retention.plan(uow, svc.clock, tenant_id=t) for t in wanted]
        if not dry_run:
            plans = [retention.apply(svc, tenant_id=t) for t in wanted]
    except errors.AppyardError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from None
    entries: list[dict[str, Any]] = [
        {
            "tenant": names.get(p.tenant_id, p.tenant_id),
            "rules": [
                {"app_id": r.app_id, "keep_last": r.keep_last, "keep_days": r.keep_days}
                for r in rules[p.tenant_id]
            ],
            "builds": [{**_build(r.build), "reason": r.reason} for r in p.remove],
            "kept_anyway": [{**_build(b), "because": why} for b, why in p.protected],
            "bytes": p.bytes,
        }
        for p in plans
    ]
    report = {
        "dry_run": dry_run,
        "tenants": entries,
        "builds": sum(len(p.remove) for p in plans),
        "bytes": sum(p.bytes for p in plans),
    }
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    for entry in entries:
        out.print(f"[bold]{entry['tenant']}[/bold]: {verb} {len(entry['builds'])} build(s)")
        for b in entry["builds"]:
            out.print(f"  {b['id']} #{b['number']} {b['file_name']} {b['bytes']} B: {b['reason']}")
        for b in entry["kept_anyway"]:
            out.print(f"  kept {b['id']} #{b['number']}: {b['because']}")
    out.print(f"{verb} {report['builds']} build(s), {report['bytes']} bytes")


# --- backup and restore -------------------------------------------------------------------------


@app.command("backup")
def backup(
    ctx: typer.Context,
    target: Annotated[Path, typer.Argument(help="a new (or empty) folder for the backup")],
    as_json: JsonFlag = False,
) -> None:
    """A consistent snapshot while appyard runs: the SQLite database (online backup API), the
    keys and the local blobs. PostgreSQL and S3 are backed up with their own tools (named)."""
    settings = ctx_obj(ctx).settings()
    try:
        manifest = backups.backup(settings, target)
    except backups.BackupError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    lines = [f"backup in {target}"] + [f"  {note}" for note in manifest["notes"]]
    _emit(as_json, manifest, "\n".join(lines))


@app.command("restore")
def restore(
    source: Annotated[Path, typer.Argument(help="a folder `appyard admin backup` made")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="a new (or empty) data folder")],
    as_json: JsonFlag = False,
) -> None:
    """Restore a backup into an empty data folder; `appyard serve --data-dir D` then serves
    it."""
    try:
        manifest = backups.restore(source, data_dir)
    except backups.BackupError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    lines = [f"restored into {data_dir}"] + [f"  {note}" for note in manifest["notes"]]
    _emit(as_json, manifest, "\n".join(lines))
