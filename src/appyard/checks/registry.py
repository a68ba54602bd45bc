"""Evaluators keyed by control id: the Python half of a control (controls.yaml is the other).

An evaluator is a function ``(Context[F]) -> Iterable[Hit]`` registered for the fact types
it reads; the engine stamps each hit with the control's id and configured severity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from appyard.checks.model import History, Thresholds

F = TypeVar("F")


@dataclass(frozen=True)
class Context(Generic[F]):
    facts: F
    history: History | None
    thresholds: Thresholds
    now: datetime  # aware


@dataclass(frozen=True)
class Hit:
    message: str
    details: dict[str, Any] = field(default_factory=dict, hash=False)


Evaluator = Callable[[Context[Any]], Iterable[Hit]]


@dataclass(frozen=True)
class Registered:
    fact_types: tuple[type[Any], ...]
    run: Evaluator


EVALUATORS: dict[str, Registered] = {}


def evaluator(
    control_id: str, *fact_types: type[Any]
) -> Callable[[Callable[[Context[F]], Iterable[Hit]]], Callable[[Context[F]], Iterable[Hit]]]:
    """Register the decorated function as the evaluator of ``control_id``."""

    def register(
        fn: Callable[[Context[F]], Iterable[Hit]],
    ) -> Callable[[Context[F]], Iterable[Hit]]:
        if control_id in EVALUATORS:
            raise ValueError(f"two evaluators for control {control_id!r}")
        EVALUATORS[control_id] = Registered(fact_types, fn)
        return fn

    return register
