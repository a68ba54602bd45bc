"""The in-process queue of the embedded shape: a condition variable that wakes the worker
threads running inside ``appyard serve``. The database holds every job; nothing is lost if the
process stops, because workers also poll."""

from __future__ import annotations

import threading


class EmbeddedQueue:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending = 0

    def notify(self, job_id: str) -> None:
        with self._cond:
            self._pending += 1
            self._cond.notify()

    def wait(self, timeout: float) -> None:
        with self._cond:
            if self._pending == 0:
                self._cond.wait(timeout)
            self._pending = max(0, self._pending - 1)

    def check(self) -> None:
        """In this process: always reachable."""

    def close(self) -> None:
        with self._cond:
            self._pending += 1_000
            self._cond.notify_all()
