"""Detection controls: facts -> findings.

Controls are data (``controls.yaml``: id, platforms, kinds, default severity per
configuration version, title, description, CWE and MASVS references) with one evaluator per
id in ``appyard.checks.evaluators``. ``evaluate(facts, config, history, now)`` runs the
controls a :class:`ControlConfig` enables; ``default_config(platform, version)`` is what a
new tenant gets; ``catalog()`` lists every control. docs/controls.md has the table.
"""

from __future__ import annotations

from appyard.checks.engine import (
    blocking,
    catalog,
    configure,
    control,
    default_config,
    evaluate,
)
from appyard.checks.evaluators.android import signer_fingerprints
from appyard.checks.model import (
    ControlConfig,
    ControlSpec,
    Finding,
    History,
    References,
    Severity,
    Thresholds,
)

__all__ = [
    "ControlConfig",
    "ControlSpec",
    "Finding",
    "History",
    "References",
    "Severity",
    "Thresholds",
    "blocking",
    "catalog",
    "configure",
    "control",
    "default_config",
    "evaluate",
    "signer_fingerprints",
]
