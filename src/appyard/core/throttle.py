"""Failed sign-ins, throttled per account and per client address.

Every failed sign-in counts against two keys: the account (the email as typed, hashed, so an
unknown address is counted like a real one and nothing tells them apart) and the client
address (an IPv6 address by its /64, which one machine usually holds whole). A key that has
failed more than its free allowance within :data:`WINDOW` is locked for a time that doubles
with every further failure, up to a cap; while a key is locked, sign-ins are refused with
:class:`SignInThrottled` (429, ``Retry-After``) before the password is even checked.

The two keys have different caps, so that an attacker cannot lock a real person out for long:

* an **address** that keeps failing is locked for up to 15 minutes: one machine guessing
  passwords is slowed to a crawl, whatever accounts it tries;
* an **account** is locked for at most a minute at a time: guesses spread over many machines
  are slowed, while its owner, from their own address, waits a minute at worst. A successful
  sign-in clears the account's counter (never the address's: signing in to an account of your
  own does not buy more guesses at someone else's).

Counters live in the database, so every ``appyard serve`` behind a load balancer shares them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from appyard import errors
from appyard.core.models import Throttle
from appyard.core.ports import Clock, UnitOfWork

WINDOW = timedelta(minutes=15)


@dataclass(frozen=True)
class Rule:
    free: int  # failures within the window before any lock
    first_lock: timedelta  # the lock after the first failure beyond them; doubles after
    cap: timedelta


ACCOUNT = Rule(free=5, first_lock=timedelta(seconds=2), cap=timedelta(minutes=1))
ADDRESS = Rule(free=10, first_lock=timedelta(seconds=2), cap=timedelta(minutes=15))


class SignInThrottled(errors.LimitExceeded):
    """Too many failed sign-ins; wait before trying again."""

    code = "auth.throttled"


def account_key(email: str) -> str:
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:40]
    return f"account:{digest}"


def address_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return f"address:{address.strip()[:60] or 'unknown'}"
    if ip.version == 6:
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return f"address:{mapped}"
        return f"address:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"address:{ip}"


def _keys(email: str, address: str) -> tuple[tuple[str, Rule], ...]:
    return ((account_key(email), ACCOUNT), (address_key(address), ADDRESS))


def check(uow: UnitOfWork, clock: Clock, *, email: str, address: str) -> None:
    """Raise :class:`SignInThrottled` (with ``retry_after`` seconds) while either key is
    locked."""
    now = clock.now()
    wait = 0.0
    for key, _ in _keys(email, address):
        state = uow.sign_in_throttle.get(key)
        if state is not None and state.locked_until is not None and state.locked_until > now:
            wait = max(wait, (state.locked_until - now).total_seconds())
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise SignInThrottled(
            f"Too many failed sign-ins. Try again in {_say(seconds)}.", retry_after=seconds
        )


def failed(uow: UnitOfWork, clock: Clock, *, email: str, address: str) -> None:
    """Count a failed sign-in against the account and the address."""
    now = clock.now()
    uow.sign_in_throttle.prune(now - WINDOW)
    for key, rule in _keys(email, address):
        state = uow.sign_in_throttle.get(key)
        if state is None or now - state.first_at > WINDOW:
            state = Throttle(key=key, failures=0, first_at=now)
        count = state.failures + 1
        locked = state.locked_until
        if count > rule.free:
            lock = min(rule.first_lock * (2 ** min(count - rule.free - 1, 20)), rule.cap)
            locked = now + lock
        uow.sign_in_throttle.put(replace(state, failures=count, locked_until=locked))


def succeeded(uow: UnitOfWork, *, email: str) -> None:
    """A correct password clears the account's counter (not the address's)."""
    uow.sign_in_throttle.delete(account_key(email))


def locked_until(uow: UnitOfWork, key: str) -> datetime | None:
    state = uow.sign_in_throttle.get(key)
    return state.locked_until if state else None


def _say(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes"
