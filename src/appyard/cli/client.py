"""``appyard upload|status|download|findings``: the CI client. These commands talk to an
appyard server over HTTP and never open a database.

Configuration, first match wins: flags (``--url``, ``--token``), then ``APPYARD_URL`` and
``APPYARD_TOKEN``, then a TOML file (``--config FILE``, else
``$XDG_CONFIG_HOME/appyard/config.toml``, i.e. ``~/.config/appyard/config.toml``) with
top-level ``url`` and ``token``. An automation key (``key_id:key_secret``) is the token.

Output: messages and progress go to stderr (a bar on a terminal, a plain line every few
seconds otherwise, nothing with ``--quiet``); with ``--json`` stdout carries only one JSON
document. Tokens and signed URLs are never printed, not even with ``--verbose``. Exit codes:
``appyard.cli.exits`` (docs/cli.md).
"""

from __future__ import annotations

import enum
import json
import os
import re
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from appyard.cli import exits, remote
from appyard.logs import redact

PLAIN_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal
POLL_FIRST, POLL_MAX = 1.0, 5.0


class ReportFormat(enum.StrEnum):
    JSON = "json"
    SARIF = "sarif"
    JUNIT = "junit"


class ConfigVersion(enum.StrEnum):
    PRODUCTION = "production"
    STAGING = "staging"
    DEVELOPMENT = "development"


# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientConfig:
    url: str
    token: str
    folder: Path  # where resumable upload state is kept


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "appyard"


def load_config(url: str | None, token: str | None, config: Path | None) -> ClientConfig:
    """Flags, then APPYARD_URL / APPYARD_TOKEN, then the config file."""
    path = config or config_dir() / "config.toml"
    data: dict[str, Any] = {}
    if config is not None and not config.is_file():
        raise remote.ClientError(f"--config {config}: no such file.", exits.CONFIG)
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise remote.ClientError(
                f"{path}: not a readable TOML file ({exc}).", exits.CONFIG
            ) from None
    chosen_url = url or os.environ.get("APPYARD_URL") or data.get("url")
    chosen_token = token or os.environ.get("APPYARD_TOKEN") or data.get("token")
    if not isinstance(chosen_url, str) or not chosen_url.strip():
        raise remote.ClientError(
            f'No server URL: pass --url, set APPYARD_URL, or put url = "..." in {path}.',
            exits.CONFIG,
        )
    if not re.match(r"^https?://[^/\s]+", chosen_url.strip()):
        raise remote.ClientError(
            "The server URL must start with http:// or https://.", exits.CONFIG
        )
    if not isinstance(chosen_token, str) or not chosen_token.strip():
        raise remote.ClientError(
            f'No token: pass --token, set APPYARD_TOKEN, or put token = "..." in {path} '
            "(an automation key, key_id:key_secret).",
            exits.CONFIG,
        )
    folder = config.parent if config is not None else config_dir()
    return ClientConfig(
        url=chosen_url.strip().rstrip("/"), token=chosen_token.strip(), folder=folder
    )


DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?$")


def parse_duration(value: str) -> float:
    """``90``, ``90s``, ``30m``, ``1h``, ``1h30m`` -> seconds."""
    match = DURATION.match(value.strip().lower())
    if not value.strip() or match is None or not any(match.groups()):
        raise typer.BadParameter(f"{value!r} is not a duration like 90s, 30m or 1h30m.")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise typer.BadParameter("the duration must be positive.")
    return float(total)


# --- output ---------------------------------------------------------------------------------


class Output:
    """Messages and progress on stderr; JSON alone on stdout."""

    def __init__(self, *, quiet: bool, verbose: bool, as_json: bool) -> None:
        self.quiet = quiet
        self.verbose_on = verbose and not quiet
        self.as_json = as_json
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.tty = sys.stderr.isatty()

    def say(self, text: str) -> None:
        if not self.quiet:
            self.err.print(redact(text), markup=False)

    def verbose(self, text: str) -> None:
        if self.verbose_on:
            self.err.print(f"[dim]{redact(text)}[/dim]", highlight=False)

    def error(self, text: str) -> None:
        self.err.print(f"appyard: error: {redact(text)}", markup=False)

    def result(self, doc: dict[str, Any], text: str) -> None:
        if self.as_json:
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
            sys.stdout.flush()
        elif text:
            self.say(text)

    @contextmanager
    def transfer(self, label: str, total: int, start: int = 0) -> Iterator[remote.Meter]:
        """A byte meter shown as a rich bar on a terminal, as a plain line every
        PLAIN_EVERY seconds otherwise, and not at all with --quiet."""
        if self.quiet:
            yield remote.Meter(lambda done: None)
            return
        if self.tty:
            progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self.err,
                transient=False,
            )
            with progress:
                task: TaskID = progress.add_task(label, total=total)
                yield remote.Meter(lambda done: progress.update(task, completed=done))
            return
        began = time.monotonic()
        last = [began]

        def line(done: int, final: bool = False) -> None:
            now = time.monotonic()
            if not final and now - last[0] < PLAIN_EVERY:
                return
            last[0] = now
            rate = done / max(now - began, 1e-6)
            eta = (total - done) / rate if rate > 0 and done < total else 0
            pct = 100 * done / total if total else 100
            self.err.print(
                f"{label}: {_mib(done)} of {_mib(total)} ({pct:.0f}%), "
                f"{_mib(int(rate))}/s, ETA {eta:.0f}s",
                markup=False,
                highlight=False,
            )

        meter = remote.Meter(line)
        yield meter
        line(meter.done, final=True)


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


# --- shared options ----------------------------------------------------------------------------

Url = Annotated[
    str | None, typer.Option("--url", help="server URL (APPYARD_URL)", show_default=False)
]
Token = Annotated[
    str | None,
    typer.Option("--token", help="automation key (APPYARD_TOKEN)", show_default=False),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config", help="TOML file with url and token (default ~/.config/appyard/config.toml)"
    ),
]
Json = Annotated[bool, typer.Option("--json", help="stdout: one JSON document only")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress or messages")]
Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", help="each request (never tokens or signed URLs)")
]
Wait = Annotated[bool, typer.Option("--wait", help="follow the build until it ends")]
TimeoutOpt = Annotated[
    str | None,
    typer.Option("--timeout", help="give up after this long (90s, 30m, 1h): exit 4"),
]
BuildRef = Annotated[str, typer.Argument(help="a build's job id (number) or build id")]


@dataclass
class Run:
    out: Output
    server: remote.Server
    config: ClientConfig
    deadline: float | None


@contextmanager
def session(
    url: str | None,
    token: str | None,
    config: Path | None,
    *,
    quiet: bool,
    verbose: bool,
    as_json: bool,
    timeout: str | None = None,
) -> Iterator[Run]:
    """Configuration and a server connection; a ClientError ends the command with its
    exit code (and, with --json, a JSON document naming the error)."""
    out = Output(quiet=quiet, verbose=verbose, as_json=as_json)
    deadline = time.monotonic() + parse_duration(timeout) if timeout else None
    server: remote.Server | None = None
    try:
        cfg = load_config(url, token, config)
        server = remote.Server(cfg.url, cfg.token, verbose=out.verbose)
        yield Run(out=out, server=server, config=cfg, deadline=deadline)
    except remote.ClientError as exc:
        out.error(exc.message)
        if as_json:
            out.result({"error": exc.message, "exit_code": exc.exit_code}, "")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        out.error("interrupted; run the same command again to resume the upload.")
        raise typer.Exit(130) from None
    finally:
        if server is not None:
            server.close()


# --- following a build ---------------------------------------------------------------------------


def follow(run: Run, ref: str) -> dict[str, Any]:
    """Poll the build until it is no longer processing (or the deadline passes)."""
    delay = POLL_FIRST
    last_progress = ""
    last_line = 0.0
    while True:
        build = run.server.build(ref)
        if build["status"] != "processing":
            return build
        progress = str(build.get("progress") or "")
        now = time.monotonic()
        if progress != last_progress or now - last_line >= PLAIN_EVERY * 6:
            run.out.say(f"build {build['job_id']}: {progress}")
            last_progress, last_line = progress, now
        if run.deadline is not None and now + delay > run.deadline:
            raise remote.Timeout(
                f"--timeout ran out; build {build['job_id']} is still {progress.lower()}."
            )
        time.sleep(delay)
        delay = min(POLL_MAX, delay * 1.5)


def verdict(run: Run, build: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    """The exit code for a build that ended, and its findings' summary when it failed."""
    if build["status"] == "completed":
        return exits.OK, None
    if build["status"] == "processing":
        return exits.OK, None
    report = run.server.findings(str(build["job_id"]))
    if report["summary"].get("blocking"):
        return exits.BLOCKING, report
    return exits.FAILED, report


def describe(build: dict[str, Any]) -> str:
    text = f"build {build['job_id']} ({build['file_name']}, {build['version']}): {build['status']}"
    if build["status"] == "processing":
        return f"{text}, {build['progress']}"
    if build["status"] == "completed":
        output = build.get("output") or {}
        signed = "signed" if build.get("signed") else "unsigned (no signing key was used)"
        return f"{text}, {signed}; output SHA-256 {output.get('sha256')}"
    return f"{text}: {build.get('error_message') or 'failed'}"


def download_output(run: Run, ref: str, target: Path) -> dict[str, Any]:
    """Fetch the build's output to ``target`` and check its SHA-256 against the server's."""
    info = run.server.output(ref)
    expected = str(info["sha256"])
    target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    total = int(info.get("size") or 0)
    with run.out.transfer(f"download {info['file_name']}", total) as meter:
        size, actual = run.server.get_file(
            info["download_url"], partial, headers=info.get("headers"), advance=meter.advance
        )
    if actual != expected:
        partial.unlink(missing_ok=True)
        raise remote.ClientError(
            f"The download's SHA-256 {actual} differs from the server's {expected}; "
            "nothing was written."
        )
    os.replace(partial, target)
    run.out.say(f"downloaded {target} ({size} bytes, SHA-256 {actual} checked)")
    return {"path": str(target), "size": size, "sha256": actual}


def build_doc(build: dict[str, Any], code: int, **extra: Any) -> dict[str, Any]:
    output = build.get("output") or {}
    return {
        "build_id": build["build_id"],
        "job_id": build["job_id"],
        "status": build["status"],
        "progress": build.get("progress"),
        "signed": build.get("signed"),
        "sha256": output.get("sha256"),
        "output": output or None,
        "input": {"file_name": build["file_name"], "sha256": build.get("sha256")},
        "error_message": build.get("error_message"),
        **extra,
        "exit_code": code,
    }


# --- commands --------------------------------------------------------------------------------


def upload_cmd(
    file: Annotated[Path, typer.Argument(help="the .apk, .aab or .ipa to upload")],
    version: Annotated[
        ConfigVersion, typer.Option(help="configuration version whose controls apply")
    ] = ConfigVersion.PRODUCTION,
    signing_key: Annotated[
        str | None,
        typer.Option(
            "--signing-key",
            help="managed signing key id, or none (default: the tenant's default key)",
            show_default=False,
        ),
    ] = None,
    wait_: Wait = False,
    timeout: TimeoutOpt = None,
    download: Annotated[
        Path | None,
        typer.Option(
            "--download", help="save the processed file here (implies --wait; SHA-256 checked)"
        ),
    ] = None,
    parallel: Annotated[int, typer.Option(min=1, max=32, help="parts sent at once")] = 4,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
    url: Url = None,
    token: Token = None,
    config: ConfigFile = None,
) -> None:
    """Upload a build (resumable), optionally wait for it and download the result."""
    if not file.is_file():
        raise typer.BadParameter(f"{file} does not exist or is not a file.", param_hint="FILE")
    if file.suffix not in remote.PLATFORMS:
        raise typer.BadParameter(
            "only files ending in lowercase .apk, .aab or .ipa are uploaded.", param_hint="FILE"
        )
    with session(
        url, token, config, quiet=quiet, verbose=verbose, as_json=as_json, timeout=timeout
    ) as run:
        out = run.out
        size = file.stat().st_size
        out.say(f"{file.name}: {size} bytes; hashing")
        sha256 = remote.sha256_of(file)
        with out.transfer(f"upload {file.name}", size) as meter:
            sent = remote.upload(
                run.server,
                file,
                sha256=sha256,
                version=version.value,
                signing_key=signing_key,
                parallel=parallel,
                state_dir=run.config.folder,
                meter=meter,
                say=out.say,
                deadline=run.deadline,
            )
        out.say(f"uploaded: job {sent.job_id}")
        upload_doc = {
            "multipart": sent.multipart,
            "resumed": sent.resumed,
            "parts_total": sent.parts_total,
            "parts_sent": sent.parts_sent,
        }
        if wait_ or download is not None:
            build = follow(run, sent.job_id)
        else:
            build = run.server.build(sent.job_id)
        code, report = verdict(run, build)
        saved = None
        if download is not None and build["status"] == "completed":
            saved = download_output(run, sent.job_id, download)
        out.say(describe(build))
        if report is not None:
            for f in report["findings"]:
                out.say(f"  {f['severity']}: {f['code']}: {f['message']}")
        doc = build_doc(
            build,
            code,
            file={"name": file.name, "size": size, "sha256": sha256},
            upload=upload_doc,
            download=saved,
            findings=report["summary"] if report else None,
        )
        out.result(doc, "")
    raise typer.Exit(code)


def status_cmd(
    build_ref: BuildRef,
    wait_: Wait = False,
    timeout: TimeoutOpt = None,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
    url: Url = None,
    token: Token = None,
    config: ConfigFile = None,
) -> None:
    """Show a build's status (exit 0 completed or processing, 1 failed, 3 blocked)."""
    with session(
        url, token, config, quiet=quiet, verbose=verbose, as_json=as_json, timeout=timeout
    ) as run:
        build = follow(run, build_ref) if wait_ else run.server.build(build_ref)
        code, report = verdict(run, build)
        if not as_json:
            typer.echo(describe(build))
            if report is not None:
                for f in report["findings"]:
                    typer.echo(f"  {f['severity']}: {f['code']}: {f['message']}")
        run.out.result(build_doc(build, code, findings=report["summary"] if report else None), "")
    raise typer.Exit(code)


def download_cmd(
    build_ref: BuildRef,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="file to write (default: the build's file name)"),
    ] = None,
    wait_: Wait = False,
    timeout: TimeoutOpt = None,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
    url: Url = None,
    token: Token = None,
    config: ConfigFile = None,
) -> None:
    """Download a build's processed file and check its SHA-256."""
    with session(
        url, token, config, quiet=quiet, verbose=verbose, as_json=as_json, timeout=timeout
    ) as run:
        build = follow(run, build_ref) if wait_ else run.server.build(build_ref)
        code, _ = verdict(run, build)
        if build["status"] != "completed":
            run.out.error(describe(build))
            run.out.result(build_doc(build, code), "")
            raise typer.Exit(code)
        saved = download_output(run, build_ref, output or Path(build["file_name"]))
        run.out.result(build_doc(build, code, download=saved), "")
    raise typer.Exit(code)


def findings_cmd(
    build_ref: BuildRef,
    fmt: Annotated[
        ReportFormat, typer.Option("--format", help="json, sarif (2.1.0) or junit (XML)")
    ] = ReportFormat.JSON,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the report here (default stdout)")
    ] = None,
    github: Annotated[
        bool, typer.Option("--github", help="GitHub Actions annotations on stdout")
    ] = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
    url: Url = None,
    token: Token = None,
    config: ConfigFile = None,
) -> None:
    """A build's findings as JSON, SARIF or JUnit (exit 3 when one is blocking)."""
    from appyard.checks import catalog
    from appyard.checks.outcomes import Outcome
    from appyard.cli import reports

    with session(url, token, config, quiet=quiet, verbose=verbose, as_json=False) as run:
        report = run.server.findings(build_ref)
        build = run.server.build(build_ref)
        specs = {spec.id: spec for spec in catalog()}
        controls = [
            Outcome(specs[c["id"]], c["status"], c.get("severity"), c.get("reason") or "")
            for c in report["controls"]
            if c["id"] in specs
        ]
        subject = reports.Subject(
            file_name=report["file_name"],
            platform=report["platform"],
            findings=report["findings"],
            controls=controls,
            sha256=build.get("sha256"),
            build={
                "build_id": report["build_id"],
                "job_id": report["job_id"],
                "status": report["status"],
            },
        )
        text = reports.render(subject, fmt.value)
        if output is not None:
            output.write_text(text, encoding="utf-8")
            run.out.say(f"wrote {fmt.value} report to {output}")
        elif not github or fmt is not ReportFormat.JSON:
            sys.stdout.write(text)
        if github:
            for line in reports.github(subject):
                sys.stdout.write(line + "\n")
        code = exits.BLOCKING if report["summary"].get("blocking") else exits.OK
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """The client commands on the root ``appyard`` command."""
    app.command("upload")(upload_cmd)
    app.command("status")(status_cmd)
    app.command("download")(download_cmd)
    app.command("findings")(findings_cmd)
