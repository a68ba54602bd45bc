"""The JobQueue contract, for every implementation (``job_queue`` = embedded | redis), and how
the Redis queue lives through Redis going away.

The queue only wakes workers (the database holds the jobs), so what matters is: a notification
wakes one waiting consumer at once, is not lost when nobody is waiting yet, a quiet wait ends
after its timeout, close() releases waiters, and nothing ever raises into the worker loop.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest
import redis

from appyard.backends.queue.redis import RedisQueue
from appyard.core.ports import JobQueue
from tests.backends.conftest import MakeJobQueue, PrivateRedis
from tests.conftest import free_port

PROMPT = 2.0  # "at once": generous for a loaded CI machine, far below the waits used


@dataclass
class Consumer:
    """One thread calling ``queue.wait(timeout)`` once; records when it returned or raised."""

    queue: JobQueue
    timeout: float
    started: threading.Event = field(default_factory=threading.Event)
    returned_at: float | None = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.started.wait(5)

    def _run(self) -> None:
        self.started.set()
        try:
            self.queue.wait(self.timeout)
        except BaseException as exc:
            self.error = exc
        self.returned_at = time.monotonic()

    def join(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


def _settle() -> None:
    """Let a just-started consumer reach its blocking call."""
    time.sleep(0.2)


def test_notify_wakes_a_waiting_consumer_at_once(make_job_queue: MakeJobQueue) -> None:
    consumer = Consumer(make_job_queue(), timeout=30)
    _settle()
    producer = make_job_queue()

    notified = time.monotonic()
    producer.notify("jb_1")

    assert consumer.join(PROMPT)
    assert consumer.error is None
    assert consumer.returned_at is not None and consumer.returned_at - notified < PROMPT


def test_a_notification_before_anyone_waits_is_not_lost(make_job_queue: MakeJobQueue) -> None:
    make_job_queue().notify("jb_1")
    consumer = make_job_queue()

    started = time.monotonic()
    consumer.wait(30)

    assert time.monotonic() - started < PROMPT


def test_wait_returns_after_its_timeout_when_nothing_happens(job_queue: JobQueue) -> None:
    started = time.monotonic()
    job_queue.wait(0.3)
    elapsed = time.monotonic() - started

    assert 0.25 <= elapsed < PROMPT


def test_wait_of_zero_does_not_block(job_queue: JobQueue) -> None:
    started = time.monotonic()
    job_queue.wait(0)
    assert time.monotonic() - started < PROMPT


def test_one_notification_wakes_one_consumer(make_job_queue: MakeJobQueue) -> None:
    first, second = Consumer(make_job_queue(), 3), Consumer(make_job_queue(), 3)
    _settle()

    make_job_queue().notify("jb_1")
    time.sleep(1.0)

    assert [first.returned_at is None, second.returned_at is None].count(True) == 1
    assert first.join(5) and second.join(5)


def test_close_releases_waiters_and_later_waits_return_at_once(
    make_job_queue: MakeJobQueue,
) -> None:
    queue = make_job_queue()
    consumers = [Consumer(queue, 30), Consumer(queue, 30)]
    _settle()

    closed = time.monotonic()
    queue.close()

    for consumer in consumers:
        assert consumer.join(PROMPT + 1)
        assert consumer.error is None
        assert consumer.returned_at is not None and consumer.returned_at - closed < PROMPT + 1
    started = time.monotonic()
    queue.wait(30)
    assert time.monotonic() - started < PROMPT


# --- Redis going away -----------------------------------------------------------------------------


def _kill_connections(url: str, client_name: str) -> int:
    admin = redis.Redis.from_url(url)
    try:
        killed = 0
        for info in admin.client_list():
            if info.get("name") == client_name:
                killed += int(admin.client_kill_filter(_id=info["id"]))
        return killed
    finally:
        admin.close()


def test_a_killed_connection_does_not_crash_the_consumer(redis_url: str) -> None:
    list_name = f"appyard-test:{uuid.uuid4().hex}"
    name = f"appyard-consumer-{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in redis_url else "?"
    consumer_queue = RedisQueue(f"{redis_url}{sep}client_name={name}", list_name=list_name)
    producer = RedisQueue(redis_url, list_name=list_name)
    try:
        consumer = Consumer(consumer_queue, timeout=30)
        _settle()

        assert _kill_connections(redis_url, name) >= 1  # CLIENT KILL, as a restart would
        _settle()
        notified = time.monotonic()
        producer.notify("jb_1")

        assert consumer.join(PROMPT + 1)
        assert consumer.error is None
        assert consumer.returned_at is not None and consumer.returned_at - notified < PROMPT
    finally:
        consumer_queue.close()
        producer.close()
        cleanup = redis.Redis.from_url(redis_url)
        cleanup.delete(list_name)
        cleanup.close()


def test_a_redis_restart_does_not_crash_the_consumer_and_is_logged_once(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="appyard.queue")
    queue = RedisQueue(private_redis.url, list_name="appyard:jobs")
    try:
        queue.notify("jb_0")
        queue.wait(1)  # connected and working

        private_redis.stop()
        started = time.monotonic()
        for _ in range(3):  # a worker loop polling while Redis is down
            queue.wait(0.2)
        queue.notify("jb_lost")  # dropped, never raised: the job is in the database
        assert 0.5 <= time.monotonic() - started < PROMPT + 1

        private_redis.start()
        consumer = Consumer(queue, timeout=30)
        _settle()
        notified = time.monotonic()
        RedisQueue(private_redis.url, list_name="appyard:jobs").notify("jb_1")

        assert consumer.join(PROMPT + 1)
        assert consumer.error is None
        assert consumer.returned_at is not None and consumer.returned_at - notified < PROMPT
    finally:
        queue.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "appyard.queue"]
    assert sum(m.startswith("queue.unavailable") for m in messages) == 1
    assert sum(m.startswith("queue.recovered") for m in messages) == 1


def test_an_unreachable_redis_never_raises_into_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = RedisQueue(f"redis://:hunter2@127.0.0.1:{free_port()}/0")  # nothing listens
    try:
        started = time.monotonic()
        queue.wait(0.3)
        before_notify = time.monotonic()
        queue.notify("jb_1")
        assert time.monotonic() - before_notify < 0.1  # a request is never held up by it
        queue.wait(0.3)

        assert 0.5 <= time.monotonic() - started < PROMPT + 1
    finally:
        queue.close()
    warnings = [r for r in caplog.records if r.name == "appyard.queue"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "hunter2" not in warnings[0].getMessage()


def test_the_queue_url_names_its_list() -> None:
    queue = RedisQueue("redis://127.0.0.1:6379/2?list=team-a:jobs&socket_connect_timeout=1")
    try:
        assert queue.list_name == "team-a:jobs"
        assert queue.shown_url == "redis://127.0.0.1:6379/2"
    finally:
        queue.close()
