"""Failed sign-ins are throttled per account and per client address, in core, so that a
machine guessing passwords is slowed to a crawl while a person is never locked out for long."""

from __future__ import annotations

import pytest

from appyard import errors
from appyard.core import throttle, users
from appyard.core.models import Role
from appyard.runtime import Runtime
from tests.conftest import FakeClock

PASSWORD = "correct horse battery"


@pytest.fixture
def person(runtime: Runtime) -> str:
    svc = runtime.services
    with svc.transaction() as uow:
        users.create(
            uow,
            svc.clock,
            email="ana@store.test",
            name="Ana",
            role=Role.STORE_ADMIN,
            password=PASSWORD,
        )
    return "ana@store.test"


def attempt(runtime: Runtime, email: str, password: str, address: str) -> str:
    try:
        users.sign_in(runtime.services, email=email, password=password, address=address)
    except throttle.SignInThrottled as exc:
        return f"throttled {exc.details['retry_after']}"
    except errors.Unauthenticated:
        return "wrong"
    return "ok"


def test_an_address_that_keeps_guessing_is_locked_for_longer_and_longer(
    runtime: Runtime, person: str, clock: FakeClock
) -> None:
    results = []
    for i in range(14):
        results.append(attempt(runtime, f"user{i}@x.test", "guess", "203.0.113.7"))
        clock.advance(seconds=1)
    assert results[:10] == ["wrong"] * 10
    assert any(r.startswith("throttled") for r in results[10:])
    waits = []
    for _ in range(6):  # guess again as soon as each lock ends: each lock doubles
        outcome = attempt(runtime, "a@x.test", "guess", "203.0.113.7")
        if outcome.startswith("throttled"):
            wait = int(outcome.split()[1])
            waits.append(wait)
            clock.advance(seconds=wait)
    assert waits == sorted(waits) and waits[-1] > waits[0]
    assert max(waits) <= 15 * 60
    # The person, from their own address, is not held back by that machine.
    assert attempt(runtime, person, PASSWORD, "198.51.100.20") == "ok"


def test_guesses_from_many_addresses_lock_the_account_a_minute_at_most(
    runtime: Runtime, person: str, clock: FakeClock
) -> None:
    for i in range(60):
        outcome = attempt(runtime, person, f"guess {i}", f"10.{i // 250}.{i % 250}.1")
        if outcome.startswith("throttled"):
            assert int(outcome.split()[1]) <= 60
        clock.advance(seconds=5)
    outcome = attempt(runtime, person, PASSWORD, "198.51.100.20")
    assert outcome == "ok" or int(outcome.split()[1]) <= 60
    clock.advance(seconds=61)
    assert attempt(runtime, person, PASSWORD, "198.51.100.20") == "ok"


def test_a_locked_account_is_refused_before_its_password_is_checked(
    runtime: Runtime, person: str, clock: FakeClock
) -> None:
    for i in range(6):
        assert attempt(runtime, person, "nope", f"192.0.2.{i}") == "wrong"
    assert attempt(runtime, person, PASSWORD, "192.0.2.99").startswith("throttled")
    clock.advance(seconds=3)
    assert attempt(runtime, person, PASSWORD, "192.0.2.99") == "ok"
    # a success clears the account's count: the next failure does not lock it
    assert attempt(runtime, person, "nope", "192.0.2.99") == "wrong"
    assert attempt(runtime, person, PASSWORD, "192.0.2.99") == "ok"


def test_an_ipv6_machine_is_one_address_by_its_64() -> None:
    assert throttle.address_key("2001:db8:1:2::1") == throttle.address_key("2001:db8:1:2:ffff::9")
    assert throttle.address_key("2001:db8:1:3::1") != throttle.address_key("2001:db8:1:2::1")
    assert throttle.address_key("::ffff:192.0.2.1") == throttle.address_key("192.0.2.1")
    assert throttle.account_key("Ana@Store.test ") == throttle.account_key("ana@store.test")
