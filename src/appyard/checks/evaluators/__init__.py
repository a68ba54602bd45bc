"""Evaluators, one module per platform plus the ones every platform shares.

Importing this package registers them all in :data:`appyard.checks.registry.EVALUATORS`.
"""

from __future__ import annotations

from appyard.checks.evaluators import android, common, ios

__all__ = ["android", "common", "ios"]
