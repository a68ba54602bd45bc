"""The ``appyard`` command: serve, worker, db, admin, inspect, sign (on the server's machine)
and upload, status, download, findings (a client of a server, from CI: ``cli/client.py``).

Exit codes are the same for every command (``cli/exits.py``, docs/cli.md)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from appyard import metrics
from appyard.cli import admin, admin_going_out, admin_ops, client, exits
from appyard.cli.common import ctx_obj, runtime_from, set_data_dir
from appyard.cli.reports import appyard_version
from appyard.core import identity, signing_keys, tenants
from appyard.core.models import Plan, TokenKind
from appyard.logs import granian_dictconfig, setup_logging
from appyard.runtime import check_backends

log = logging.getLogger("appyard.serve")

app = typer.Typer(
    help="appyard: a self-hosted home for mobile app builds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(admin.app, name="admin")  # admin_going_out adds its commands to it
assert admin_going_out.__name__  # its import registers its commands on admin.app
assert admin_ops.__name__  # so does this one's
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
client.register(app)
console = Console()

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="data directory (APPYARD_DATA_DIR; default ./appyard-data); also accepted "
        "after the subcommand",
        show_default=False,
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"appyard {appyard_version()}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: DataDir = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Settings come from APPYARD_* environment variables (see docs/configuration.md)."""
    set_data_dir(ctx, data_dir)


FIRST_KEY_NAME = "first key"


def _bootstrap(ctx: typer.Context) -> None:
    """On a database with no tenant, create 'default' (team plan), its first automation key
    and an Android signing key (RSA 3072), so the first build's output verifies; print the
    key once, and the certificate's SHA-256 with the command that replaces it."""
    runtime = runtime_from(ctx)
    svc = runtime.services
    with svc.transaction() as uow:
        if uow.tenants.list():
            return
        tenant = tenants.create(uow, svc.clock, name="default", plan=Plan.TEAM)
        issued = identity.create_token(
            uow, svc.clock, tenant_id=tenant.id, kind=TokenKind.AUTOMATION, name=FIRST_KEY_NAME
        )
        key = signing_keys.generate(
            uow,
            svc.clock,
            svc.sealer(),
            tenant_id=tenant.id,
            name=FIRST_KEY_NAME,
            created_by="first start",
        )
    data_dir = runtime.settings.data_dir.resolve()
    console.print(f"First tenant: [bold]{tenant.name}[/bold] ({tenant.plan.value} plan)")
    console.print("Automation key (shown once, store it now):")
    typer.echo(f"  export APPTEGO_API_KEY={issued.raw}")
    typer.echo('  export APPYARD_TOKEN="$APPTEGO_API_KEY"    # what `appyard upload` reads')
    fingerprint = ":".join(
        (key.cert_sha256 or "")[i : i + 2].upper() for i in range(0, len(key.cert_sha256 or ""), 2)
    )
    console.print(
        f"Android signing key [bold]{key.name}[/bold] ({key.id}, RSA 3072, made here): "
        "builds are signed with it unless they ask for another key or none."
    )
    typer.echo(f"  certificate SHA-256: {fingerprint}")
    typer.echo(
        "  Replace it with your release key (it becomes the default):\n"
        f"  appyard admin add-signing-key --data-dir {data_dir} --tenant {tenant.name} "
        "--name release --keystore release.jks --alias release "
        "--password-env KEYSTORE_PASSWORD --default"
    )


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="listen address (APPYARD_HOST)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port (APPYARD_PORT)")] = 8080,
    data_dir: DataDir = None,
    worker: Annotated[
        bool | None,
        typer.Option(
            "--worker/--no-worker",
            help="process jobs in this process (default: yes with the embedded queue, no with "
            "Redis)",
            show_default=False,
        ),
    ] = None,
    download_port: Annotated[
        int | None,
        typer.Option(
            help="signed uploads and downloads (APPYARD_DOWNLOAD_PORT; default: port + 1; 0: "
            "the API port serves them)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start the API server (embedded default: SQLite, local storage, in-process queue)."""
    set_data_dir(ctx, data_dir)
    obj = ctx_obj(ctx)
    given = {  # a flag left at its default leaves APPYARD_HOST / APPYARD_PORT in charge
        name: value
        for name, value in (("host", host), ("port", port))
        if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"
    }
    for key, value in (*given.items(), ("run_worker", worker), ("download_port", download_port)):
        if value is not None:
            obj.overrides[key] = value
    settings = obj.settings()
    listen_downloads = settings.effective_download_port
    if listen_downloads and not settings.download_url and not settings.public_url:
        obj.overrides["download_url"] = f"http://{settings.host}:{listen_downloads}"
        settings = obj.settings()
    setup_logging(settings.log_level, settings.log_format)
    metrics.setup(settings.metrics_dir)  # shared with this machine's other appyard processes
    # migrates the embedded database (in a child: the server never loads Alembic)
    runtime = runtime_from(ctx, create_database=True, migrate_apart=True)
    check_backends(runtime)  # the bucket, in one sentence, before listening
    runtime.services.tidy()  # what a killed predecessor left behind
    _bootstrap(ctx)
    listener = None
    if listen_downloads and runtime.local_store is not None:
        from appyard.backends.storage.local_listener import BlobListener

        listener = BlobListener(runtime.local_store, settings.host, listen_downloads)
        try:
            listener.start()
        except OSError as exc:
            console.print(
                f"[red]Cannot listen for downloads on {settings.host}:{listen_downloads}: "
                f"{exc.strerror or exc}.[/red] Choose another --download-port (0: none)."
            )
            raise typer.Exit(exits.CONFIG) from None
    console.print(
        f"appyard listening on {settings.effective_public_url} "
        f"(data in {settings.data_dir.resolve()})"
    )
    if listener is not None:
        console.print(f"signed uploads and downloads on http://{settings.host}:{listener.port}")
    from appyard.app import create_app

    connections = _connections_allowed(settings.max_connections)
    try:
        _serve_in_process(create_app(runtime=runtime), settings.host, settings.port, connections)
    finally:
        if listener is not None:
            listener.stop()


# Files the process opens beside its client connections: database connections (SQLite: the
# file, its WAL and shared memory each), objects being written, the download listener's clients.
FILES_BESIDE_CONNECTIONS = 512
LISTEN_BACKLOG = 1024  # connections the kernel completes before Granian accepts them
# The most of a request body Granian reads from a connection at once, and so the largest piece
# the app's body stream hands over (Granian's default: 408 KiB). Form uploads are the bodies
# that come through it in bulk: at 1 MiB they cost 0.89-0.93 s of server CPU per GiB instead of
# 1.15-1.26 (fewer pieces, each one a hand-over between Granian's threads and the event loop,
# a parser call and a write); 4 MiB saved little more and held 17 MB more memory
# (bench/README.md, "2026-12-06, second session"). Small requests never grow the buffer this
# far.
HTTP1_BUFFER = 1024 * 1024


def _connections_allowed(wanted: int) -> int:
    """Raise this process's open-files limit (the soft one, up to the hard one) so that
    ``wanted`` client connections fit beside the files appyard opens otherwise; how many fit.
    A hard limit too low for them leaves fewer, with a warning line."""
    import resource

    need = wanted + FILES_BESIDE_CONNECTIONS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft == resource.RLIM_INFINITY or soft >= need:
        return wanted
    allowed = max(16, soft - FILES_BESIDE_CONNECTIONS)
    log.warning(
        "serve.connections_limited max_connections=%d allowed=%d open_files_limit=%d",
        wanted,
        allowed,
        soft,
    )
    return allowed


def _serve_in_process(asgi: Any, host: str, port: int, max_connections: int) -> None:
    """Granian's embedded server, in this process: one interpreter holds the app (a Granian
    worker process would import everything a second time; see bench/README.md for RSS). The
    API port's file responses leave Python through ASGI pathsend; signed downloads of the
    local store go to the sendfile listener started beside it (``serve``).

    ``backpressure`` is the number of connections Granian keeps open at once: it takes a
    permit before it accepts a connection and gives it back when the connection closes (an
    idle keep-alive connection after Granian's 30 s header timeout), not per request. Left
    to itself it is backlog / workers = 128 here, and 128 clients polling on keep-alive
    connections left every new client, ``/healthz`` included, in the kernel's accept queue
    (bench/README.md, "Load"). How much Python work runs at once is bounded elsewhere (one
    event loop, AnyIO's 40 request threads), so this only bounds sockets and their buffers."""
    import asyncio
    import signal

    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.server.embed import Server

    async def run() -> None:
        server = Server(
            asgi,
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            backlog=LISTEN_BACKLOG,
            backpressure=max_connections,
            http1_settings=HTTP1Settings(max_buffer_size=HTTP1_BUFFER),
            log_access=False,  # appyard writes its own access line (api/observe.py)
            log_dictconfig=granian_dictconfig(),  # Granian's lines in appyard's format
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.stop)
        await server.serve()

    class _Quiet(logging.Filter):  # the embedded API is stable enough for one process here
        def filter(self, record: logging.LogRecord) -> bool:
            return "experimental" not in record.getMessage()

    logging.getLogger("_granian").addFilter(_Quiet())
    freeze_heap()
    asyncio.run(run())


def freeze_heap() -> None:
    """Leave what the server built before serving (modules, routes, schemas, table metadata:
    most of its objects) out of every later garbage collection. A full collection walks every
    tracked object with the GIL held: over the whole heap it stopped every request for 50-90 ms
    each time; over what requests create since, it takes 3-4 ms (bench/README.md, "Load")."""
    import gc

    gc.collect()
    gc.freeze()


@app.command()
def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="jobs processed at once (APPYARD_WORKER_CONCURRENCY)"),
    ] = None,
    health_port: Annotated[
        int | None,
        typer.Option(
            min=0, max=65535, help="/healthz, /readyz, /metrics (APPYARD_WORKER_HEALTH_PORT)"
        ),
    ] = None,
) -> None:
    """Process jobs beside `appyard serve` (scale-out: any number, on any machines).

    With a Redis queue, `appyard serve` processes run no jobs themselves."""
    import signal
    import threading

    from appyard.worker import Worker

    obj = ctx_obj(ctx)
    if health_port is not None:
        obj.overrides["worker_health_port"] = health_port
    settings = obj.settings()
    setup_logging(settings.log_level, settings.log_format)
    metrics.setup(settings.metrics_dir)
    runtime = runtime_from(ctx)
    check_backends(runtime)
    health = None
    if settings.worker_health_port:
        from appyard.health import HealthServer

        token = settings.metrics_token
        try:
            health = HealthServer(
                runtime.services,
                runtime.engine,
                settings.host,
                settings.worker_health_port,
                metrics_token=token.get_secret_value() if token else None,
            )
        except OSError as exc:
            console.print(
                f"[red]Cannot listen for health checks on {settings.host}:"
                f"{settings.worker_health_port}: {exc.strerror or exc}.[/red]"
            )
            raise typer.Exit(1) from None
        health.start()
        console.print(f"worker health on http://{settings.host}:{health.port}")
    w = Worker(
        runtime.services,
        concurrency=concurrency or settings.worker_concurrency,
        sweep_seconds=settings.upload_sweep_seconds,
        retention_seconds=settings.retention_interval_seconds,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    w.start()
    stop.wait()
    w.stop()
    if health is not None:
        health.stop()


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply every migration (Alembic) to APPYARD_DATABASE_URL."""
    from appyard.backends.db import migrate

    runtime = runtime_from(ctx, migrate=False, create_database=True)
    migrate.upgrade(runtime.engine)
    console.print(f"database at revision {migrate.current(runtime.engine)}")


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Print the database's migration revision and the code's head."""
    from appyard.backends.db import migrate

    runtime = runtime_from(ctx, migrate=False)
    typer.echo(json.dumps({"current": migrate.current(runtime.engine), "head": migrate.head()}))


@app.command("inspect")
def inspect_artifact(
    file: Annotated[Path, typer.Argument(help="an .apk, .aab or .ipa")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document")] = False,
    version: Annotated[
        str, typer.Option(help="configuration version whose default controls run")
    ] = "production",
    include_bytes: Annotated[bool, typer.Option(help="include icons (base64) in --json")] = False,
    fmt: Annotated[
        client.ReportFormat | None,
        typer.Option("--format", help="sarif or junit (json: --json)", show_default=False),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the report to this file")
    ] = None,
    github: Annotated[
        bool, typer.Option("--github", help="GitHub Actions annotations on stdout")
    ] = False,
) -> None:
    """Print a local artifact's facts and findings (exit 3 if blocking, 1 if invalid)."""
    from appyard.cli.inspect_cmd import run_inspect

    chosen = fmt.value if fmt is not None else None
    raise typer.Exit(
        run_inspect(
            file,
            as_json=as_json or chosen == "json",
            version=version,
            include_bytes=include_bytes,
            fmt=chosen,
            output=output,
            github=github,
        )
    )


@app.command("sign")
def sign(
    src: Annotated[Path, typer.Argument(help="input .apk, .aab or .ipa")],
    dst: Annotated[Path, typer.Argument(help="output file")],
    password_env: Annotated[str, typer.Option(help="variable holding the store password")],
    keystore: Annotated[
        Path | None, typer.Option(help="APK/AAB: JKS, PKCS#12 or PEM (key + certificates)")
    ] = None,
    alias: Annotated[str | None, typer.Option(help="APK/AAB: key alias")] = None,
    key_password_env: Annotated[
        str | None, typer.Option(help="variable holding the key password, when it differs")
    ] = None,
    schemes: Annotated[
        str | None, typer.Option(help="v1,v2,v3 (default: chosen from minSdk as apksigner does)")
    ] = None,
    lineage: Annotated[
        Path | None,
        typer.Option(help="SigningCertificateLineage from `apksigner rotate` (key rotation)"),
    ] = None,
    original_keystore: Annotated[
        Path | None, typer.Option(help="with --lineage: the key the app was first signed with")
    ] = None,
    original_alias: Annotated[str | None, typer.Option(help="alias in --original-keystore")] = None,
    original_password_env: Annotated[
        str | None, typer.Option(help="variable holding --original-keystore's password")
    ] = None,
    original_key_password_env: Annotated[
        str | None, typer.Option(help="variable holding the original key's password")
    ] = None,
    rotation_min_sdk_version: Annotated[
        int, typer.Option(help="rotate from this API level: 33+ in v3.1, 28-32 in v3")
    ] = 33,
    p12: Annotated[
        Path | None, typer.Option(help="IPA: the signing certificate and key (.p12)")
    ] = None,
    profile: Annotated[
        list[Path] | None,
        typer.Option(help="IPA: provisioning profile (repeat for extensions; default: embedded)"),
    ] = None,
    bundle_id: Annotated[
        str | None, typer.Option(help="IPA: new bundle id (inner bundle ids follow)")
    ] = None,
) -> None:
    """Sign an APK (v1/v2/v3, rotation) or AAB, or re-sign an IPA, without a server."""
    from appyard.cli.sign_cmd import KeyOptions, run_sign, run_sign_ipa

    if src.suffix.lower() == ".ipa":
        if p12 is None:
            raise typer.BadParameter("an IPA is re-signed with --p12 (and --profile)")
        raise typer.Exit(
            run_sign_ipa(
                src,
                dst,
                p12=p12,
                password_env=password_env,
                profiles=list(profile or []),
                bundle_id=bundle_id,
            )
        )
    if keystore is None or alias is None:
        raise typer.BadParameter("an APK or AAB is signed with --keystore and --alias")
    original = None
    if original_keystore is not None:
        if original_alias is None or original_password_env is None:
            raise typer.BadParameter(
                "--original-keystore needs --original-alias and --original-password-env"
            )
        original = KeyOptions(
            original_keystore, original_alias, original_password_env, original_key_password_env
        )
    raise typer.Exit(
        run_sign(
            src,
            dst,
            key=KeyOptions(keystore, alias, password_env, key_password_env),
            schemes=schemes,
            lineage=lineage,
            original=original,
            rotation_min_sdk=rotation_min_sdk_version,
        )
    )


def main() -> None:
    from appyard.cli.common import hoist_data_dir

    os.umask(0o077)  # data files 0600, folders 0700: the database, blobs, spool, keys
    app(args=hoist_data_dir(sys.argv[1:]), prog_name="appyard")
