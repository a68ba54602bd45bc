"""Workers: claim job rows and run each with the handler of its kind, renew leases; relay the
outbox; sweep uploads and stalled builds, and schedule the retention jobs.

Each job runs with its job id, build id and tenant id in the log context, and is counted in
the metrics (kind, outcome, duration, attempt).

``appyard worker`` runs :class:`Worker`; the embedded ``appyard serve`` starts the same
threads inside the server process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import timedelta

from appyard import logs, metrics
from appyard.core import arrivals, builds, jobs, retention
from appyard.core.context import Services
from appyard.core.models import Job, JobState
from appyard.pipeline.handlers import HANDLERS, Handler

log = logging.getLogger("appyard.worker")

SWEEP_SECONDS = 30.0
RETENTION_SECONDS = 3600.0
RELAY_SECONDS = 2.0  # the outbox, and (stores that do not report them) upload arrivals
IDLE_POLL_SECONDS = 2.0


class Worker:
    def __init__(
        self,
        services: Services,
        *,
        concurrency: int = 1,
        name: str | None = None,
        sweep_seconds: float = SWEEP_SECONDS,
        handlers: dict[str, Handler] | None = None,
        retention_seconds: float = RETENTION_SECONDS,
        nice: int = 0,
    ):
        self.services = services
        self.nice = nice  # added to the job threads' niceness (Linux: per thread)
        self.retention_seconds = retention_seconds
        self._last_retention: float | None = None  # the first sweep schedules
        self.concurrency = concurrency
        self.sweep_seconds = sweep_seconds
        self.handlers = HANDLERS if handlers is None else handlers
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_sweep = 0.0
        self._last_relay = 0.0
        self._sweep_lock = threading.Lock()

    def start(self) -> None:
        self.services.tidy()  # what a killed predecessor left behind
        for n in range(self.concurrency):
            thread = threading.Thread(
                target=self._loop,
                args=(f"{self.name}/{n}",),
                daemon=True,
                name=f"appyard-worker-{n}",
            )
            thread.start()
            self._threads.append(thread)
        log.info("worker.started name=%s concurrency=%d", self.name, self.concurrency)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.services.queue.close()
        for thread in self._threads:
            thread.join(timeout)

    def run_once(self, owner: str) -> bool:
        """Claim and run one job; False when there was none."""
        s = self.services
        with s.uow() as uow:
            job = jobs.claim(uow, s.clock, owner=owner, lease_seconds=s.lease_seconds)
            uow.commit()
        if job is None:
            return False
        log.info(
            "job.claimed job_id=%s kind=%s build_id=%s attempt=%d owner=%s",
            job.id,
            job.kind,
            job.build_id,
            job.attempts,
            owner,
        )
        handler = self.handlers.get(job.kind)
        started = time.monotonic()
        with logs.bound(job_id=job.id, build_id=job.build_id, tenant_id=job.tenant_id):
            try:
                if handler is None:
                    self._unknown(job)
                else:
                    handler(s, job, owner)
            finally:
                self._observe(job, owner, time.monotonic() - started)
        return True

    def _observe(self, job: Job, owner: str, seconds: float) -> None:
        """Count the run by what became of the job: succeeded, failed, cancelled, retried
        (queued again), lost (another worker holds it now) or interrupted (still ours: the
        handler raised)."""
        try:
            with self.services.uow() as uow:
                current = uow.jobs.get(job.id)
        except Exception:
            log.warning("job.unobserved job_id=%s", job.id, exc_info=True)
            return
        state = current.state if current is not None else JobState.CANCELLED
        if state is JobState.QUEUED:
            outcome = "retried"
        elif state is JobState.RUNNING:
            held = current is not None and current.lease_owner == owner
            outcome = "interrupted" if held else "lost"
        else:
            outcome = state.value
        metrics.observe_job(kind=job.kind, outcome=outcome, seconds=seconds, attempt=job.attempts)

    def _unknown(self, job: Job) -> None:
        log.error("job.unknown_kind job_id=%s kind=%s", job.id, job.kind)
        with self.services.transaction() as uow:
            jobs.fail(
                uow,
                self.services.clock,
                job=job,
                message=f"No handler for jobs of kind {job.kind!r} in this appyard version.",
            )

    def relay(self) -> int:
        """Deliver the outbox (what a crash between commit and delivery left behind)."""
        return self.services.relay()

    def notice(self) -> int:
        """Uploads whose objects reached the store unreported arrive."""
        s = self.services
        with s.transaction() as uow:
            arrived = arrivals.notice(s, uow)
        if arrived:
            log.info("uploads.noticed count=%d", arrived)
        return arrived

    def sweep(self) -> None:
        """Notice uploads that arrived unreported and expire those that never will; fail
        builds that stalled with no worker holding them."""
        s = self.services
        self.notice()
        s.tidy()
        with s.transaction() as uow:
            expired = arrivals.expire(s, uow)
        with s.transaction() as uow:
            stalled = builds.time_out_stalled(uow, s.clock)
        if expired:
            log.info("uploads.expired count=%d", expired)
        if stalled:
            log.info("builds.timed_out count=%d", stalled)
        now = time.monotonic()
        if self._last_retention is None or now - self._last_retention >= self.retention_seconds:
            self._last_retention = now
            with s.transaction() as uow:
                scheduled = retention.schedule(
                    uow, s.clock, every=timedelta(seconds=self.retention_seconds)
                )
            if scheduled:
                log.info("retention.scheduled count=%d", scheduled)

    def _maybe_sweep(self) -> None:
        now = time.monotonic()
        if not self._sweep_lock.acquire(False):
            return
        try:
            if now - self._last_relay >= RELAY_SECONDS:
                self._last_relay = now
                self.relay()
                if not self.services.store.reports_arrivals:
                    self.notice()
            if now - self._last_sweep >= self.sweep_seconds:
                self._last_sweep = now
                self.sweep()
        finally:
            self._sweep_lock.release()

    def _lower_priority(self) -> None:
        """This job thread (and the threads it starts) yields the CPUs to the API's threads
        of the same process: Linux keeps a niceness per thread."""
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + self.nice)
        except OSError as exc:  # not permitted, or not Linux: jobs run at the process's
            log.warning("worker.nice_failed error=%s", exc)

    def _loop(self, owner: str) -> None:
        if self.nice:
            self._lower_priority()
        while not self._stop.is_set():
            try:
                self._maybe_sweep()
                if not self.run_once(owner):
                    self.services.queue.wait(IDLE_POLL_SECONDS)
            except Exception:
                log.exception("worker.error owner=%s", owner)
                self._stop.wait(IDLE_POLL_SECONDS)
