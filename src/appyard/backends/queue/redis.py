"""The Redis-backed job queue of the scale-out shape: how workers on many machines hear of work.

Configured by ``APPYARD_QUEUE_URL=redis://[[user]:password@]host:6379[/db][?list=appyard:jobs]``
(any other query option is redis-py's own, e.g. ``socket_connect_timeout``). Needs Redis >= 6
(fractional BRPOP timeouts).

The database holds every job; this queue only wakes workers. :meth:`RedisQueue.notify` LPUSHes
the job id onto one list (trimmed, so a list nobody reads cannot grow without bound);
:meth:`RedisQueue.wait` BRPOPs it, so each notification wakes one idle worker at once, and a
worker that hears nothing returns after ``timeout`` to poll the database anyway. A lost
notification therefore only costs latency, never a job.

Redis going away never raises out of :meth:`~RedisQueue.notify` or :meth:`~RedisQueue.wait`:
a dropped connection is re-made on the next call (one immediate retry hides a single killed
connection, e.g. ``CLIENT KILL`` or a quick restart). While the server is down it is tried
again at most every ``RETRY_AFTER`` seconds: ``wait`` sleeps in between until its timeout (so
the worker falls back to polling the database) and ``notify`` drops the wake-up at once rather
than stall a request. One warning is logged per outage (``queue.unavailable``) and one line
when it ends (``queue.recovered``).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

log = logging.getLogger("appyard.queue")

DEFAULT_LIST = "appyard:jobs"
MAX_PENDING = 10_000  # notifications kept when no worker reads them
MAX_BLOCK = 10.0  # longest single BRPOP; the socket timeout is longer than this
MIN_BLOCK = 0.01
WAKE_TTL = 60
RETRY_AFTER = 1.0  # while Redis is down, try it again at most this often (per instance)


def _split(url: str) -> tuple[str, str, str]:
    """(redis-py URL, list name, URL without password for logs)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("The queue URL must be a redis:// or rediss:// URL.")
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = [value for name, value in query if name == "list"]
    rest = urlencode([(name, value) for name, value in query if name != "list"])
    host = parts.hostname or "localhost"
    shown = f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path}"
    return urlunsplit(parts._replace(query=rest)), (names[-1] if names else DEFAULT_LIST), shown


class RedisQueue:
    """A :class:`appyard.core.ports.JobQueue` over one Redis list; safe to share across threads."""

    def __init__(self, url: str, *, list_name: str | None = None) -> None:
        redis_url, url_list, self.shown_url = _split(url)
        self._url = redis_url
        self.list_name = list_name or url_list
        self._redis: redis.Redis = redis.Redis.from_url(
            redis_url,
            socket_timeout=MAX_BLOCK + 5,
            socket_connect_timeout=2,
            socket_keepalive=True,
            health_check_interval=30,
            retry=Retry(NoBackoff(), 1),
        )
        # A key only this instance BRPOPs too: close() pushes to it to release its waiters.
        self._wake_key = f"{self.list_name}:wake:{secrets.token_hex(8)}"
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._down = False
        self._failed_at = 0.0
        self._waiting = 0

    def __repr__(self) -> str:
        return f"RedisQueue({self.shown_url!r}, list_name={self.list_name!r})"

    # -- outage bookkeeping: one line when it starts, one when it ends --------------------------
    def _failed(self, exc: RedisError) -> None:
        with self._lock:
            self._failed_at = time.monotonic()
            if self._down:
                return
            self._down = True
        log.warning(
            "queue.unavailable url=%s error=%s: workers poll the database until it returns",
            self.shown_url,
            str(exc) or type(exc).__name__,
        )

    def _worked(self) -> None:
        if not self._down:
            return
        with self._lock:
            if not self._down:
                return
            self._down = False
        log.info("queue.recovered url=%s", self.shown_url)

    def _backing_off(self) -> float:
        """Seconds before Redis may be tried again (0 when it is up or may be retried now)."""
        if not self._down:
            return 0.0
        return max(self._failed_at + RETRY_AFTER - time.monotonic(), 0.0)

    # -- JobQueue ------------------------------------------------------------------------------
    def notify(self, job_id: str) -> None:
        """Wake one waiting worker. Never raises, and never stalls a request on an outage:
        a wake-up that cannot be sent is dropped (the job is in the database either way)."""
        if self._backing_off():
            return
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.lpush(self.list_name, job_id)
                pipe.ltrim(self.list_name, 0, MAX_PENDING - 1)
                pipe.execute()
        except RedisError as exc:
            self._failed(exc)
        else:
            self._worked()

    def wait(self, timeout: float) -> None:
        """Block until one notification is taken, ``timeout`` passes, or :meth:`close`."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            self._waiting += 1
        try:
            while not self._closed.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                pause = self._backing_off()
                if pause:
                    self._closed.wait(min(pause, remaining))
                    continue
                try:
                    got = self._redis.brpop(
                        [self.list_name, self._wake_key],
                        timeout=round(max(min(remaining, MAX_BLOCK), MIN_BLOCK), 3),
                    )
                except RedisError as exc:
                    self._failed(exc)
                    continue
                self._worked()
                if got is not None:
                    return
        finally:
            with self._lock:
                self._waiting -= 1
                last = self._waiting == 0
            if last and self._closed.is_set():
                self._redis.connection_pool.disconnect(inuse_connections=False)

    def check(self, timeout: float = 1.0) -> None:
        """Fail, in one sentence, when Redis does not answer a PING (readiness): each step
        of the connection (connect, the client's handshake, the PING) gets ``timeout``
        seconds, without retries. A connection of its own, so a probe never waits behind,
        or holds, the workers' long BRPOPs."""
        probe = redis.Redis.from_url(
            self._url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            probe.ping()
        except RedisError as exc:
            raise RuntimeError(
                f"Redis at {self.shown_url} cannot be reached ({str(exc) or type(exc).__name__})."
            ) from None
        finally:
            probe.close()

    def close(self) -> None:
        """Release this instance's waiters at once; later waits return immediately."""
        self._closed.set()
        with self._lock:
            waiting = self._waiting
        if waiting:
            try:
                with self._redis.pipeline(transaction=False) as pipe:
                    pipe.lpush(self._wake_key, *(["1"] * waiting))
                    pipe.expire(self._wake_key, WAKE_TTL)
                    pipe.execute()
            except RedisError:
                pass  # they return when their BRPOP times out
        self._redis.connection_pool.disconnect(inuse_connections=False)
