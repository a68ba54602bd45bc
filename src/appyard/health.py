"""Readiness: can this process do its work right now?

:func:`readiness` checks the three things every request and job needs: the database answers
and is at the migration head of this code (``appyard db upgrade`` has run), the blob store
can be used (``BlobStore.check``) and the queue answers (``check()`` of the queue backend).
Each check has its own time limit, so a hung dependency is named rather than waited for.

:func:`readyz` makes the ``GET /readyz`` endpoint: 200 ``{"status": "ready", ...}``, or 503
``{"status": "unavailable", "failing": ["database"], "checks": {...}}`` with one sentence
per failing part. Liveness (``/healthz``) stays a plain answer of the process.

:class:`HealthServer` answers the same, and ``/metrics``, on ``appyard worker``'s own port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from appyard import logs, metrics
from appyard.backends.db import migrate
from appyard.core.context import Services
from appyard.core.ports import BlobStore, JobQueue

log = logging.getLogger("appyard.health")
log_access = logging.getLogger("appyard.access")

CHECK_TIMEOUT = 5.0  # seconds per part


@dataclass(frozen=True)
class Check:
    part: str  # "database" | "store" | "queue"
    ok: bool
    detail: str  # "ok", or one sentence saying what is wrong
    seconds: float


@dataclass(frozen=True)
class Readiness:
    checks: tuple[Check, ...]

    @property
    def ready(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failing(self) -> list[str]:
        return [c.part for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, object]:
        return {
            "status": "ready" if self.ready else "unavailable",
            "failing": self.failing,
            "checks": {c.part: c.detail for c in self.checks},
        }


@lru_cache(maxsize=1)
def _head() -> str | None:
    return migrate.head()  # the code's head cannot change while the process runs


def check_database(engine: Engine) -> str:
    """``ok``, or why not: unreachable, or not at this code's migration head."""
    try:
        current = migrate.current(engine)
    except SQLAlchemyError as exc:
        original = getattr(exc, "orig", None)  # the driver's own error, without SQL
        reason = str(original) if original is not None else str(exc)
        first_line = reason.strip().splitlines()[0] if reason.strip() else type(exc).__name__
        return f"The database cannot be reached ({first_line})."
    head = _head()
    if current != head:
        return (
            f"The database is at migration {current or 'none'}, this code needs {head}: "
            "run `appyard db upgrade`."
        )
    return "ok"


def check_store(store: BlobStore) -> str:
    try:
        store.check()
    except Exception as exc:  # any failure of the backend is the answer, never a 500
        return str(exc) or f"The blob store cannot be used ({type(exc).__name__})."
    return "ok"


def check_queue(queue: JobQueue) -> str:
    probe: Callable[[], None] | None = getattr(queue, "check", None)
    if probe is None:
        return "ok"  # a queue without a probe lives in this process
    try:
        probe()
    except Exception as exc:  # as above: named, not raised
        return str(exc) or f"The job queue cannot be reached ({type(exc).__name__})."
    return "ok"


async def readiness(
    engine: Engine, store: BlobStore, queue: JobQueue, *, timeout: float = CHECK_TIMEOUT
) -> Readiness:
    """Run the three checks at once, each in a thread, each within ``timeout`` seconds."""

    async def run(part: str, probe: Callable[[], str]) -> Check:
        started = time.monotonic()
        try:
            detail = await asyncio.wait_for(asyncio.to_thread(probe), timeout)
        except TimeoutError:
            detail = f"The {part} did not answer within {timeout:g} s."
        return Check(part, detail == "ok", detail, round(time.monotonic() - started, 3))

    checks = await asyncio.gather(
        run("database", lambda: check_database(engine)),
        run("store", lambda: check_store(store)),
        run("queue", lambda: check_queue(queue)),
    )
    return Readiness(tuple(checks))


def readyz(
    engine: Engine, store: BlobStore, queue: JobQueue, *, timeout: float = CHECK_TIMEOUT
) -> Callable[[Request], Awaitable[Response]]:
    """The ``/readyz`` endpoint for ``app.add_route("/readyz", readyz(...))``."""

    async def endpoint(request: Request) -> Response:
        result = await readiness(engine, store, queue, timeout=timeout)
        if not result.ready:
            log.warning(
                "health.unavailable %s",
                " ".join(f"{c.part}={c.detail!r}" for c in result.checks if not c.ok),
            )
        return JSONResponse(result.to_dict(), status_code=200 if result.ready else 503)

    return endpoint


class HealthServer:
    """``appyard worker``'s own port (``APPYARD_WORKER_HEALTH_PORT``): ``GET /healthz``
    (liveness: the process answers), ``/readyz`` (the same checks as the API's) and
    ``/metrics`` (``APPYARD_METRICS_TOKEN`` applies), from a thread of its own. Every answer
    carries ``X-Request-ID``; each request is one access log line."""

    def __init__(
        self,
        services: Services,
        engine: Engine,
        host: str,
        port: int,
        *,
        metrics_token: str | None = None,
        timeout: float = CHECK_TIMEOUT,
    ) -> None:
        self.services = services
        self.engine = engine
        self.metrics_token = metrics_token
        self.timeout = timeout
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="appyard-health", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def answer(self, path: str, authorization: str | None) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of ``path``."""
        if path == "/healthz":
            return 200, "application/json", b'{"status": "ok"}'
        if path == "/readyz":
            svc = self.services
            result = asyncio.run(readiness(self.engine, svc.store, svc.queue, timeout=self.timeout))
            body = json.dumps(result.to_dict()).encode()
            return (200 if result.ready else 503), "application/json", body
        if path == "/metrics":
            token = self.metrics_token
            if token and not metrics.authorized(authorization, token):
                return 401, "application/json", b'{"error": "Send the metrics token."}'
            return 200, metrics.CONTENT_TYPE, metrics.exposition(self.services)
        return 404, "application/json", b'{"error": "Not found."}'

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                started = time.perf_counter()
                rid = logs.request_id(self.headers.get("x-request-id"))
                path = self.path.split("?", 1)[0]
                with logs.bound(request_id=rid):
                    try:
                        status, media, body = server.answer(path, self.headers.get("authorization"))
                    except Exception:
                        log.exception("health.failed path=%s", path)
                        status, media, body = 500, "application/json", b'{"error": "failed"}'
                    self.send_response(status)
                    self.send_header("Content-Type", media)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("X-Request-ID", rid)
                    self.end_headers()
                    self.wfile.write(body)
                    log_access.info(
                        "http.request method=GET path=%s status=%d bytes=%d duration_ms=%.1f "
                        "request_id=%s tenant_id=-",
                        logs.redact(path),
                        status,
                        len(body),
                        (time.perf_counter() - started) * 1000,
                        rid,
                    )

            def log_message(self, format: str, *args: object) -> None:
                return None  # the access line above replaces the standard library's

        return Handler
