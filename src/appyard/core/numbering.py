"""Numbers a dialect hands its clients for things of its own (an upload context, say): per
tenant and scope, 1, 2, 3, ... with no gaps, allocated in the caller's transaction. Core keeps
only how far each scope has counted; what a number means stays in the dialect."""

from __future__ import annotations

import re

from appyard import errors
from appyard.core.models import Actor
from appyard.core.ports import UnitOfWork

_SCOPE = re.compile(r"^[a-z0-9][a-z0-9._:/-]{0,99}$")


def _scope(scope: str) -> str:
    if not _SCOPE.match(scope):
        raise errors.InvalidField(f"Invalid numbering scope {scope!r}.", field="scope")
    return scope


def next_number(uow: UnitOfWork, actor: Actor, *, scope: str) -> int:
    return uow.sequences.next(actor.tenant, _scope(scope))


def issued(uow: UnitOfWork, actor: Actor, *, scope: str, number: int) -> bool:
    """Whether ``number`` was handed out in ``scope`` of the actor's tenant."""
    return 1 <= number <= uow.sequences.current(actor.tenant, _scope(scope))
