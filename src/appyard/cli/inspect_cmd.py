"""``appyard inspect FILE [--json]``: the facts and findings of a local .apk, .aab or .ipa.

A CI step runs it before uploading. Exit codes (``appyard.cli.exits``): 0 no blocking
finding, 3 at least one blocking finding (with the default controls of the chosen
configuration version), 1 the file is not a valid artifact (the reason on stderr), 2 a usage
error (no such file, an unknown configuration version).

``--json`` prints one stable document (``"schema": "appyard.inspect/1"``): file, identity,
facts, configuration, findings and summary. Byte fields (the icon's PNG, certificates inside
plists) are left out unless ``include_bytes`` is set; then they are base64 strings.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from appyard.checks import Finding, History, Severity, default_config, evaluate
from appyard.checks.model import VERSIONS
from appyard.cli import exits
from appyard.core.ports import copy_hashed
from appyard.errors import InvalidArtifact
from appyard.inspect import inspect_file, to_jsonable

SCHEMA = "appyard.inspect/1"
EXIT_OK, EXIT_BLOCKING, EXIT_INVALID, EXIT_USAGE = (
    exits.OK,
    exits.BLOCKING,
    exits.FAILED,
    exits.USAGE,
)
_MAX_LIST_ITEMS = 8  # in the human table; JSON has everything
_SEVERITY_STYLE = {
    Severity.BLOCKING: "bold red",
    Severity.WARNING: "yellow",
    Severity.INFO: "cyan",
}
# big nested mappings that the human table summarises instead of listing
_SUMMARISED = {"info_plist", "plist", "entitlements"}


def _file_info(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        size, sha256 = copy_hashed(fh)
    return {"name": path.name, "size": size, "sha256": sha256}


def _summary(findings: list[Finding]) -> dict[str, int]:
    return {s.value: sum(1 for f in findings if f.severity is s) for s in Severity}


def _exit_code(findings: list[Finding]) -> int:
    return EXIT_BLOCKING if any(f.severity is Severity.BLOCKING for f in findings) else EXIT_OK


def _fail(
    message: str,
    *,
    as_json: bool,
    path: Path,
    details: Mapping[str, Any],
    code: int = EXIT_INVALID,
) -> int:
    sys.stderr.write(f"appyard inspect: {message}\n")
    if as_json:
        doc = {
            "schema": SCHEMA,
            "file": {"name": path.name},
            "error": {"message": message, **to_jsonable(dict(details))},
            "exit_code": code,
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return code


def run_inspect(
    path: Path,
    *,
    as_json: bool,
    version: str = "production",
    include_bytes: bool = False,
    history: History | None = None,
    now: datetime | None = None,
    fmt: str | None = None,
    output: Path | None = None,
    github: bool = False,
) -> int:
    """Inspect a local artifact, print its facts and findings; return the exit code.

    ``version`` picks the default controls of a configuration version (development,
    staging, production); ``history`` (optional) lets the controls that compare with the
    app's previous build run; ``now`` is when profile expiry is measured (default: now).
    """
    path = Path(path)
    if version not in VERSIONS:
        return _fail(
            f"unknown configuration version {version!r}; use one of {', '.join(VERSIONS)}.",
            as_json=as_json,
            path=path,
            details={"code": "request.invalid_field", "field": "version"},
            code=EXIT_USAGE,
        )
    if not path.is_file():
        return _fail(
            f"{path} does not exist or is not a file.",
            as_json=as_json,
            path=path,
            details={"code": "artifact.invalid", "reason": "no_file"},
            code=EXIT_USAGE,
        )
    try:
        facts = inspect_file(path)
    except InvalidArtifact as exc:
        return _fail(
            f"{path.name} is not a valid artifact: {exc.message}",
            as_json=as_json,
            path=path,
            details=exc.to_dict(),
        )
    config = default_config(facts.identity.platform, version)
    findings = evaluate(facts, config, history, now or datetime.now(UTC))
    code = _exit_code(findings)
    file_info = _file_info(path)
    if fmt in ("sarif", "junit") or github:
        _report(facts, findings, config, file_info, fmt, output, github)
        return code
    if as_json:
        doc = {
            "schema": SCHEMA,
            "file": file_info,
            "identity": to_jsonable(facts.identity),
            "facts": to_jsonable(facts, include_bytes=include_bytes),
            "config": {"platform": config.platform, "version": config.version},
            "findings": [to_jsonable(f.to_dict()) for f in findings],
            "summary": _summary(findings),
            "exit_code": code,
        }
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        return code
    _render(facts, findings, file_info, config.version, code)
    return code


def _report(
    facts: Any,
    findings: list[Finding],
    config: Any,
    file_info: dict[str, Any],
    fmt: str | None,
    output: Path | None,
    github: bool,
) -> None:
    """SARIF or JUnit (to ``output`` or stdout) and/or GitHub annotations (stdout)."""
    from appyard.checks.outcomes import outcomes
    from appyard.cli import reports

    subject = reports.Subject(
        file_name=file_info["name"],
        platform=facts.identity.platform,
        sha256=file_info["sha256"],
        findings=[to_jsonable(f.to_dict()) for f in findings],
        controls=outcomes(
            platform=facts.identity.platform,
            kind=facts.identity.kind,
            ran={k: v.value for k, v in config.severities.items()},
            failed=[f.code for f in findings],
        ),
    )
    if fmt in ("sarif", "junit"):
        text = reports.render(subject, fmt)
        if output is not None:
            output.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    if github:
        for line in reports.github(subject):
            sys.stdout.write(line + "\n")


# --- human output ------------------------------------------------------------------------------


def _facts_table(title: str) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("fact", style="dim", no_wrap=True)
    table.add_column("value", overflow="fold")
    return table


def _short(value: Any) -> str:
    if isinstance(value, list):
        shown = [_short(v) for v in value[:_MAX_LIST_ITEMS]]
        more = len(value) - len(shown)
        return ", ".join(shown) + (f" (+{more} more)" if more > 0 else "") if value else "-"
    if isinstance(value, dict):
        return f"{len(value)} keys"
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _rows(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
    """Flatten a JSON-ready facts value into (field, text) rows for the table."""
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{prefix}.{key}" if prefix else key
            if key in _SUMMARISED and isinstance(item, dict):
                yield name, f"{len(item)} keys (see --json)"
            else:
                yield from _rows(name, item)
        return
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, item in enumerate(value[:_MAX_LIST_ITEMS]):
            yield from _rows(f"{prefix}[{i}]", item)
        if len(value) > _MAX_LIST_ITEMS:
            yield prefix, f"(+{len(value) - _MAX_LIST_ITEMS} more, see --json)"
        return
    yield prefix, _short(value)


def _render(
    facts: Any, findings: list[Finding], file_info: dict[str, Any], version: str, code: int
) -> None:
    console = Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 120)
    identity = facts.identity
    plain = to_jsonable(facts)
    title = f"{file_info['name']} - {identity.kind.upper()} {identity.identifier}"
    table = _facts_table(title)
    table.add_row("file.size", f"{file_info['size']} bytes")
    table.add_row("file.sha256", file_info["sha256"])
    sections: list[tuple[str, dict[str, Any]]] = []
    for key, item in plain.items():
        if isinstance(item, dict) and key in _SUMMARISED:
            table.add_row(key, f"{len(item)} keys (see --json)")
        elif isinstance(item, dict):
            sections.append((key, item))
        else:
            for name, text in _rows(key, item):
                table.add_row(name, text)
    icon = getattr(facts, "icon", None)
    if icon is not None and isinstance(getattr(icon, "png", None), bytes):
        table.add_row("icon.png", f"{len(icon.png)} bytes (PNG; --json --include-bytes)")
    console.print(table)
    if getattr(facts, "standard_layout", True) is False:
        console.print(
            f"Note: non-standard layout: the app is at {facts.app_dir}, not at "
            "Payload/<Name>.app/ at the top of the archive."
        )
    for key, item in sections:
        if key == "identity":
            continue
        section = _facts_table(key)
        for name, text in _rows("", item):
            section.add_row(name, text)
        console.print(section)

    if not findings:
        console.print(f"No findings with the default {version} controls.")
    else:
        ftable = Table(title=f"Findings ({version} defaults)", header_style="bold")
        ftable.add_column("severity", no_wrap=True)
        ftable.add_column("control", no_wrap=True)
        ftable.add_column("message", overflow="fold")
        order = {Severity.BLOCKING: 0, Severity.WARNING: 1, Severity.INFO: 2}
        for f in sorted(findings, key=lambda f: order[f.severity]):
            ftable.add_row(
                Text(f.severity.value, style=_SEVERITY_STYLE[f.severity]), f.code, f.message
            )
        console.print(ftable)
    counts = _summary(findings)
    verdict = (
        f"blocking findings: exit {EXIT_BLOCKING}"
        if code == EXIT_BLOCKING
        else "nothing blocking: exit 0"
    )
    console.print(
        f"{counts['blocking']} blocking, {counts['warning']} warning, {counts['info']} info "
        f"- {verdict}"
    )
