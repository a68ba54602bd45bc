"""Who did what, when: the audit trail people read in the portal.

It is read from what core already records: the outbox's event log (every domain event stays
as a row once delivered: builds uploaded, processed and failed; versions submitted, approved,
released, ...; install links, tokens and signing keys made and removed; sign-ins), with the
actor each event names (``user:<id>``, ``token:<id>``, ``operator``) turned into a person's
email or a token's name. A tenant member sees the tenant's events; store staff see the
store's (every version event of every tenant). Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from appyard import errors
from appyard.core.models import Actor, Event, Role
from appyard.core.ports import UnitOfWork

STAFF = (Role.STORE_ADMIN, Role.STORE_REVIEWER)
MAX_ENTRIES = 500


@dataclass(frozen=True)
class Entry:
    at: datetime
    topic: str  # build.processed, version.approved, token.created, ...
    who: str  # a person's email, "token <id> (<name>)", "operator", or how it arrived
    subject_id: str
    tenant_id: str | None
    data: dict[str, Any]


def trail(uow: UnitOfWork, actor: Actor, *, limit: int = 200) -> list[Entry]:
    """The newest ``limit`` events the actor may read, newest first."""
    if not actor.is_user:
        raise errors.Forbidden("The audit trail is for signed-in people.")
    limit = max(1, min(limit, MAX_ENTRIES))
    if actor.role in STAFF:
        events = uow.outbox.recent(tenant_id=None, limit=limit, topic_prefix="version.")
    else:
        events = uow.outbox.recent(tenant_id=actor.tenant, limit=limit)
    names: dict[str, str] = {}
    return [_entry(uow, e, names) for e in events]


def names(uow: UnitOfWork, actors: list[str]) -> dict[str, str]:
    """How to show each actor string (``user:<id>`` -> the person's email, ...)."""
    cache: dict[str, str] = {}
    for actor in actors:
        _name(uow, actor, cache)
    return cache


def _entry(uow: UnitOfWork, event: Event, names: dict[str, str]) -> Entry:
    return Entry(
        at=event.at,
        topic=event.topic,
        who=_who(uow, event, names),
        subject_id=event.subject_id,
        tenant_id=event.tenant_id,
        data={k: v for k, v in event.data.items() if k != "actor"},
    )


def _who(uow: UnitOfWork, event: Event, names: dict[str, str]) -> str:
    actor = str(event.data.get("actor") or "")
    if not actor:
        source = event.data.get("source")
        return f"{source} upload" if source else "appyard"
    return _name(uow, actor, names)


def _name(uow: UnitOfWork, actor: str, names: dict[str, str]) -> str:
    if actor not in names:
        kind, _, ident = actor.partition(":")
        if kind == "user":
            user = uow.users.get(ident)
            names[actor] = user.email if user else actor
        elif kind == "token":
            token = uow.tokens.get(ident)
            names[actor] = f"token {ident}" + (f" ({token.name})" if token else "")
        else:
            names[actor] = actor
    return names[actor]
