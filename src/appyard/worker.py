"""Workers: claim job rows, run their stages, renew leases; sweep expired uploads.

``appyard worker`` runs :func:`run_worker`; the embedded ``appyard serve`` starts the same
:class:`Worker` threads inside the server process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from appyard.core import jobs, uploads
from appyard.core.context import Services
from appyard.pipeline.process import process

log = logging.getLogger("appyard.worker")

SWEEP_SECONDS = 30.0
IDLE_POLL_SECONDS = 2.0


class Worker:
    def __init__(
        self,
        services: Services,
        *,
        concurrency: int = 1,
        name: str | None = None,
        sweep_seconds: float = SWEEP_SECONDS,
    ):
        self.services = services
        self.concurrency = concurrency
        self.sweep_seconds = sweep_seconds
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_sweep = 0.0
        self._sweep_lock = threading.Lock()

    def start(self) -> None:
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
        """Claim and process one job; False when there was none."""
        s = self.services
        with s.uow() as uow:
            job = jobs.claim(uow, s.clock, owner=owner, lease_seconds=s.lease_seconds)
            uow.commit()
        if job is None:
            return False
        log.info(
            "job.claimed job_id=%s build_id=%s attempt=%d owner=%s",
            job.id,
            job.build_id,
            job.attempts,
            owner,
        )
        process(s, job, owner)
        return True

    def sweep(self) -> None:
        """Expire uploads that never arrived (aborting their multipart parts on the store),
        and queue the jobs of uploads whose object reached the store unnoticed."""
        s = self.services
        with s.uow() as uow:
            expired, queued = uploads.expire_stale(uow, s.clock, s.store)
            uow.commit()
        with s.uow() as uow:
            queued += uploads.notice_arrived(uow, s.clock, s.store)
            uow.commit()
        for job_id in queued:
            s.queue.notify(job_id)
        if expired:
            log.info("uploads.expired count=%d", expired)
        if queued:
            log.info("uploads.noticed count=%d", len(queued))

    def _maybe_sweep(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < self.sweep_seconds or not self._sweep_lock.acquire(False):
            return
        try:
            self._last_sweep = now
            self.sweep()
        finally:
            self._sweep_lock.release()

    def _loop(self, owner: str) -> None:
        while not self._stop.is_set():
            try:
                self._maybe_sweep()
                if not self.run_once(owner):
                    self.services.queue.wait(IDLE_POLL_SECONDS)
            except Exception:
                log.exception("worker.error owner=%s", owner)
                self._stop.wait(IDLE_POLL_SECONDS)
