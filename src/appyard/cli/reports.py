"""Findings as CI reports: SARIF 2.1.0, JUnit XML, GitHub workflow annotations, JSON.

One input shape for a build on a server (``appyard findings``) and a local file
(``appyard inspect --format``): the findings (dicts with ``code``, ``severity``,
``message``, ``details``) and the outcome of every control (:mod:`appyard.checks.outcomes`).

- SARIF: one rule per control of the artifact's platform (rule id = control id; short
  description = title; help = description and CWE/MASVS references), one result per
  finding (``error`` for blocking, ``warning``, ``note`` for info), located at the artifact.
- JUnit: one test case per control of the platform: failed (a finding; ``type`` is its
  severity), passed, or skipped (with the reason).
- GitHub: ``::error``/``::warning``/``::notice`` lines, one per finding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from xml.etree import ElementTree as ET

from appyard.checks.model import ControlSpec
from appyard.checks.outcomes import FAILED, SKIPPED, Outcome

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
FORMATS = ("json", "sarif", "junit")
_LEVEL = {"blocking": "error", "warning": "warning", "info": "note"}
_SECURITY_SEVERITY = {"blocking": "8.0", "warning": "5.0", "info": "2.0"}
_GITHUB = {"blocking": "error", "warning": "warning", "info": "notice"}


def appyard_version() -> str:
    try:
        return version("appyard")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0+unknown"


@dataclass(frozen=True)
class Subject:
    """What the findings are about: the artifact (and the build, when on a server)."""

    file_name: str
    platform: str
    findings: Sequence[Mapping[str, Any]]
    controls: Sequence[Outcome]
    sha256: str | None = None
    build: Mapping[str, Any] = field(default_factory=dict)  # build_id, job_id, status

    @property
    def rules(self) -> list[ControlSpec]:
        """The controls of the artifact's platform, in catalog order."""
        return [o.spec for o in self.controls if self.platform in o.spec.platforms]


def _help_text(spec: ControlSpec) -> str:
    refs = [*spec.references.cwe, *spec.references.masvs]
    text = spec.description
    return f"{text} References: {', '.join(refs)}." if refs else text


def _help_markdown(spec: ControlSpec) -> str:
    lines = [f"**{spec.title}**", "", spec.description]
    if spec.references.cwe or spec.references.masvs:
        lines.append("")
        for cwe in spec.references.cwe:
            number = cwe.split("-", 1)[1]
            lines.append(f"- [{cwe}](https://cwe.mitre.org/data/definitions/{number}.html)")
        for masvs in spec.references.masvs:
            lines.append(f"- {masvs} (OWASP MASVS)")
    return "\n".join(lines)


def _rule(spec: ControlSpec) -> dict[str, Any]:
    name = "".join(part.capitalize() for part in spec.id.split("_"))
    tags = ["security", "mobile", *spec.references.cwe, *spec.references.masvs]
    rule: dict[str, Any] = {
        "id": spec.id,
        "name": name,
        "shortDescription": {"text": spec.title},
        "fullDescription": {"text": spec.description},
        "help": {"text": _help_text(spec), "markdown": _help_markdown(spec)},
        "defaultConfiguration": {"level": _LEVEL[spec.severity.value]},
        "properties": {
            "tags": tags,
            "precision": "high",
            "security-severity": _SECURITY_SEVERITY[spec.severity.value],
        },
    }
    if spec.references.cwe:
        number = spec.references.cwe[0].split("-", 1)[1]
        rule["helpUri"] = f"https://cwe.mitre.org/data/definitions/{number}.html"
    return rule


def sarif(subject: Subject) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run."""
    rules = subject.rules
    index = {spec.id: i for i, spec in enumerate(rules)}
    location = {"physicalLocation": {"artifactLocation": {"uri": subject.file_name}}}
    results = []
    for f in subject.findings:
        result: dict[str, Any] = {
            "ruleId": f["code"],
            "level": _LEVEL.get(str(f["severity"]), "warning"),
            "message": {"text": str(f["message"])},
            "locations": [location],
            "properties": {"severity": f["severity"], "details": f.get("details") or {}},
        }
        if f["code"] in index:
            result["ruleIndex"] = index[f["code"]]
        results.append(result)
    artifact: dict[str, Any] = {"location": {"uri": subject.file_name}}
    if subject.sha256:
        artifact["hashes"] = {"sha-256": subject.sha256}
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "appyard",
                "version": appyard_version(),
                "semanticVersion": appyard_version(),
                "rules": [_rule(spec) for spec in rules],
            }
        },
        "artifacts": [artifact],
        "results": results,
        "columnKind": "unicodeCodePoints",
    }
    if subject.build:
        run["properties"] = dict(subject.build)
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def junit(subject: Subject) -> str:
    """JUnit XML: one test case per control of the platform."""
    outcomes = [o for o in subject.controls if subject.platform in o.spec.platforms]
    by_code: dict[str, list[Mapping[str, Any]]] = {}
    for f in subject.findings:
        by_code.setdefault(str(f["code"]), []).append(f)
    failures = sum(1 for o in outcomes if o.status == FAILED)
    skipped = sum(1 for o in outcomes if o.status == SKIPPED)
    counts = {
        "tests": str(len(outcomes)),
        "failures": str(failures),
        "errors": "0",
        "skipped": str(skipped),
    }
    root = ET.Element("testsuites", {"name": "appyard", **counts})
    suite = ET.SubElement(
        root, "testsuite", {"name": f"appyard controls: {subject.file_name}", **counts}
    )
    if subject.build:
        props = ET.SubElement(suite, "properties")
        for key, value in subject.build.items():
            ET.SubElement(props, "property", {"name": str(key), "value": str(value)})
    for o in outcomes:
        case = ET.SubElement(
            suite,
            "testcase",
            {"classname": f"appyard.{subject.platform}", "name": f"{o.spec.id}: {o.spec.title}"},
        )
        if o.status == FAILED:
            for f in by_code.get(o.spec.id, []):
                fail = ET.SubElement(
                    case, "failure", {"type": str(f["severity"]), "message": str(f["message"])}
                )
                fail.text = f"{f['severity']}: {f['message']}\n{_help_text(o.spec)}"
        elif o.status == SKIPPED:
            ET.SubElement(case, "skipped", {"message": o.reason})
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def github(subject: Subject) -> list[str]:
    """GitHub Actions workflow commands, one annotation per finding."""
    titles = {o.spec.id: o.spec.title for o in subject.controls}
    lines = []
    for f in subject.findings:
        code = str(f["code"])
        title = f"{code}: {titles.get(code, code)}"
        lines.append(
            f"::{_GITHUB.get(str(f['severity']), 'warning')} "
            f"file={_escape_property(subject.file_name)},title={_escape_property(title)}::"
            f"{_escape_data(str(f['message']))}"
        )
    return lines


def as_json(subject: Subject) -> dict[str, Any]:
    return {
        "schema": "appyard.findings/1",
        **dict(subject.build),
        "file_name": subject.file_name,
        "platform": subject.platform,
        "findings": [dict(f) for f in subject.findings],
        "controls": [
            {
                "id": o.spec.id,
                "title": o.spec.title,
                "status": o.status,
                "severity": o.severity,
                "reason": o.reason or None,
            }
            for o in subject.controls
            if subject.platform in o.spec.platforms
        ],
        "summary": {
            s: sum(1 for f in subject.findings if f["severity"] == s)
            for s in ("blocking", "warning", "info")
        },
    }


def render(subject: Subject, fmt: str) -> str:
    if fmt == "sarif":
        return json.dumps(sarif(subject), indent=2, ensure_ascii=False) + "\n"
    if fmt == "junit":
        return junit(subject)
    return json.dumps(as_json(subject), indent=2, ensure_ascii=False) + "\n"
