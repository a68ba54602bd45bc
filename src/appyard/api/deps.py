"""Shared API plumbing: the Services of the running app, and one-transaction helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from starlette.requests import Request

from appyard.core.context import Services
from appyard.core.ports import UnitOfWork

T = TypeVar("T")


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


@contextmanager
def transaction(svc: Services) -> Iterator[UnitOfWork]:
    """One unit of work that commits when the block ends without an error."""
    with svc.uow() as uow:
        yield uow
        uow.commit()


def in_transaction(svc: Services, fn: Callable[[UnitOfWork], T]) -> T:
    with transaction(svc) as uow:
        return fn(uow)
