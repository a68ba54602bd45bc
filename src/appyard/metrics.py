"""Metrics in Prometheus text format (prometheus-client), served at ``/metrics`` on the API
port and on ``appyard worker``'s health port.

What is counted, and where:

* HTTP requests by dialect, route template, method and status, their duration, and the bytes
  received and sent: the HTTP middleware (``api/observe.py``) once each response is done, and
  the sendfile download listener once each download is sent;
* uploads started and finished (completed, expired, aborted, refused), lease expiries, mail and
  webhook deliveries: core names them (``core/telemetry.py``) and this module's
  :class:`Meter` counts them once their transaction commits;
* builds uploaded and finished: consumers of the outbox's domain events (``build.uploaded``,
  ``build.processed``, ``build.failed``);
* jobs finished by kind and outcome, their duration and attempt numbers: the worker;
* jobs by kind and state and the queue's depth: read from the database at each scrape (the
  database holds the truth about jobs, so every process answers the same).

Several processes on one machine (``appyard serve`` beside ``appyard worker``, or several
``serve``) share a folder (``<data dir>/metrics/<host>``, prometheus-client's multiprocess
mode), so whichever process answers a scrape reports the sum of all of them. :func:`setup`
chooses the mode once per process, before any metric exists; files of processes that are no
longer running are removed then.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.telemetry import TelemetryConfig
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from appyard.core import outbox, telemetry
from appyard.core.context import Services
from appyard.core.models import Event
from appyard.core.ports import Clock, UnitOfWork

log = logging.getLogger("appyard.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# What every FastAPI app of appyard is given: its telemetry is these metrics and the access
# log, so FastAPI's own OpenTelemetry instrumentation stays off rather than asking on every
# request whether a tracer, meter or logger provider has been configured (3 us a request).
FASTAPI_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
JOB_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
ATTEMPT_BUCKETS = (1.0, 2.0, 3.0, 5.0, 10.0, 20.0)
UPLOAD_OUTCOMES = {"received": "completed"}  # core's upload state -> the metric's outcome


class _Metrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        def counter(name: str, doc: str, labels: Iterable[str]) -> Counter:
            return Counter(name, doc, list(labels), registry=registry)

        self.requests = counter(
            "appyard_http_requests",
            "HTTP requests answered, by dialect, route template, method and status.",
            ("dialect", "route", "method", "status"),
        )
        self.duration = Histogram(
            "appyard_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response.",
            ["dialect", "route", "method"],
            registry=registry,
        )
        self.received = counter(
            "appyard_http_received_bytes", "Request body bytes received.", ("dialect",)
        )
        self.sent = counter("appyard_http_sent_bytes", "Response body bytes sent.", ("dialect",))
        # The labelled children each request updates, by their labels (a bounded set: route
        # templates, not paths), as prometheus-client suggests for hot paths: ``labels()``
        # checks its arguments and takes a lock on every call.
        self.request_children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
        self.byte_children: dict[str, tuple[Any, Any]] = {}
        self.uploads_started = counter(
            "appyard_uploads_started", "Uploads opened (signed URLs or form posts).", ("purpose",)
        )
        self.uploads_finished = counter(
            "appyard_uploads_finished",
            "Uploads that ended: completed, expired, aborted or refused.",
            ("purpose", "outcome"),
        )
        self.builds_uploaded = counter(
            "appyard_builds_uploaded", "Builds whose artifact arrived.", ("source",)
        )
        self.build_bytes = counter(
            "appyard_builds_uploaded_bytes", "Bytes of the artifacts that arrived.", ()
        )
        self.builds_finished = counter(
            "appyard_builds_finished", "Builds that finished, processed or failed.", ("outcome",)
        )
        self.jobs_finished = counter(
            "appyard_jobs_finished",
            "Job runs by kind and outcome (succeeded, failed, retried, cancelled, lost).",
            ("kind", "outcome"),
        )
        self.job_duration = Histogram(
            "appyard_job_duration_seconds",
            "Time a worker spent on one run of a job.",
            ["kind", "outcome"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.job_attempts = Histogram(
            "appyard_job_attempt",
            "The attempt number of each job run (1 for a first run).",
            ["kind"],
            buckets=ATTEMPT_BUCKETS,
            registry=registry,
        )
        self.lease_expiries = counter(
            "appyard_job_lease_expiries",
            "Jobs taken over after their worker's lease expired (a worker died or hung).",
            ("kind",),
        )
        self.mail = counter(
            "appyard_mail_deliveries", "Notification emails by status.", ("status",)
        )
        self.webhooks = counter(
            "appyard_webhook_deliveries",
            "Webhook delivery attempts by outcome and event topic.",
            ("outcome", "topic"),
        )


@dataclass
class _State:
    metrics: _Metrics
    registry: CollectorRegistry | None  # single-process mode: the registry they live in
    directory: Path | None  # multiprocess mode: the shared folder


_state: _State | None = None


def setup(directory: Path | None = None) -> None:
    """Make this process's metrics (once: later calls change nothing). ``directory``: share
    them with the machine's other appyard processes through that folder (multiprocess mode);
    files left by processes that no longer run are removed first."""
    global _state
    if _state is not None:
        return
    registry: CollectorRegistry | None = None
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        _clean(directory)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)  # read by prometheus-client
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry(auto_describe=True)
    _state = _State(_Metrics(registry), registry, directory)
    telemetry.install(Meter())
    outbox.consume("build.uploaded", _build_uploaded)
    outbox.consume("build.processed", _build_finished)
    outbox.consume("build.failed", _build_finished)


def _metrics() -> _Metrics:
    if _state is None:
        setup()
    assert _state is not None
    return _state.metrics


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean(directory: Path) -> None:
    for path in directory.glob("*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if not pid.isdigit() or not _alive(int(pid)):
            path.unlink(missing_ok=True)


# --- counting -----------------------------------------------------------------------------------


def observe_request(
    *,
    dialect: str,
    route: str,
    method: str,
    status: int,
    seconds: float,
    received: int,
    sent: int,
) -> None:
    m = _metrics()
    key = (dialect, route, method, status)
    counted = m.request_children.get(key)
    if counted is None:
        counted = m.request_children[key] = (
            m.requests.labels(dialect, route, method, str(status)),
            m.duration.labels(dialect, route, method),
        )
    counted[0].inc()
    counted[1].observe(seconds)
    if received or sent:
        bytes_in, bytes_out = m.byte_children.get(dialect) or m.byte_children.setdefault(
            dialect, (m.received.labels(dialect), m.sent.labels(dialect))
        )
        if received:
            bytes_in.inc(received)
        if sent:
            bytes_out.inc(sent)


def observe_job(*, kind: str, outcome: str, seconds: float, attempt: int) -> None:
    m = _metrics()
    m.jobs_finished.labels(kind, outcome).inc()
    m.job_duration.labels(kind, outcome).observe(seconds)
    m.job_attempts.labels(kind).observe(attempt)


class Meter:
    """core.ports.Meter: what core reports (core/telemetry.py), as Prometheus counters."""

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        m = _metrics()
        if name == "upload.started":
            m.uploads_started.labels(labels.get("purpose", "")).inc(amount)
        elif name == "upload.ended":
            state = labels.get("state", "")
            outcome = UPLOAD_OUTCOMES.get(state, state)
            m.uploads_finished.labels(labels.get("purpose", ""), outcome).inc(amount)
        elif name == "job.lease_expired":
            m.lease_expiries.labels(labels.get("kind", "")).inc(amount)
        elif name == "mail.delivery":
            m.mail.labels(labels.get("status", "")).inc(amount)
        elif name == "webhook.delivery":
            m.webhooks.labels(labels.get("outcome", ""), labels.get("topic", "")).inc(amount)


def _build_uploaded(uow: UnitOfWork, clock: Clock, event: Event) -> None:
    source = str(event.data.get("source") or "")
    size = int(event.data.get("size") or 0)

    def counted() -> None:
        m = _metrics()
        m.builds_uploaded.labels(source).inc()
        if size > 0:
            m.build_bytes.inc(size)

    uow.after_commit(counted)


def _build_finished(uow: UnitOfWork, clock: Clock, event: Event) -> None:
    outcome = "processed" if event.topic == "build.processed" else "failed"
    uow.after_commit(lambda: _metrics().builds_finished.labels(outcome).inc())


# --- exposition ---------------------------------------------------------------------------------


class DatabaseCollector(Collector):
    """Jobs by kind and state and the queue's depth, read at each scrape."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        svc = self.services
        try:
            with svc.uow() as uow:
                counts = uow.jobs.counts()
                due = uow.jobs.count_due(svc.clock.now())
        except Exception:  # a scrape never fails on the database: /readyz names it
            log.warning("metrics.database_unavailable", exc_info=True)
            return
        jobs = GaugeMetricFamily(
            "appyard_jobs",
            "Jobs by kind and state (the database's count).",
            labels=["kind", "state"],
        )
        for kind, state, count in counts:
            jobs.add_metric([kind, state.value], count)
        yield jobs
        yield GaugeMetricFamily(
            "appyard_queue_depth", "Queued jobs whose time has come (waiting for a worker).", due
        )


def exposition(services: Services | None = None) -> bytes:
    """The text a scrape gets: this machine's processes' counters (or this process's alone),
    and the database's job counts when ``services`` is given."""
    _metrics()
    assert _state is not None
    registry = CollectorRegistry(auto_describe=False)
    if _state.directory is not None:
        MultiProcessCollector(registry, path=str(_state.directory))  # type: ignore[no-untyped-call]
    else:
        assert _state.registry is not None
        registry.register(_Forward(_state.registry))
    if services is not None:
        registry.register(DatabaseCollector(services))
    return generate_latest(registry)


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()

    def describe(self) -> list[Any]:
        return []


def authorized(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>`` (``APPYARD_METRICS_TOKEN``,
    compared in constant time)."""
    scheme, _, value = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), token.encode()
    )
