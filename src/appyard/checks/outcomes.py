"""Which controls passed, failed or were skipped for one artifact: the shape CI reports
(JUnit test cases, SARIF rules) need, from the controls that ran and the findings they made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from appyard.checks.engine import catalog
from appyard.checks.model import ControlSpec

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass(frozen=True)
class Outcome:
    """One control of the catalog for one artifact."""

    spec: ControlSpec
    status: str  # passed | failed | skipped
    severity: str | None  # the severity it ran at; None when it did not run
    reason: str = ""  # why it was skipped


def outcomes(
    *,
    platform: str,
    kind: str,
    ran: Mapping[str, str],
    failed: Iterable[str],
    inspected: bool = True,
) -> list[Outcome]:
    """Every control of the catalog for an artifact of ``platform`` and ``kind``: failed when
    it made a finding, passed when it ran without one, skipped (with the reason) when it is
    for another platform or kind, was not enabled, or the artifact was never inspected.
    ``ran`` maps the enabled control ids to their severity."""
    made = set(failed)
    result = []
    for spec in catalog():
        severity = ran.get(spec.id)
        if platform not in spec.platforms or kind not in spec.kinds:
            result.append(Outcome(spec, SKIPPED, None, f"not for {kind} files"))
        elif spec.id in made:
            result.append(Outcome(spec, FAILED, severity))
        elif severity is None:
            result.append(Outcome(spec, SKIPPED, None, "not enabled for this build"))
        elif not inspected:
            result.append(Outcome(spec, SKIPPED, severity, "the artifact was not inspected"))
        else:
            result.append(Outcome(spec, PASSED, severity))
    return result
