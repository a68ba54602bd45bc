"""The worker inside `appyard serve` runs its job threads niced, so that build jobs leave the
CPUs to the requests of the same process; the request threads keep the process's niceness."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from appyard.app import EMBEDDED_WORKER_NICE
from appyard.runtime import Runtime
from appyard.worker import Worker


def niceness(tid: int) -> int:
    stat = Path(f"/proc/self/task/{tid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])  # field 19 of proc(5)


def test_job_threads_are_niced_and_the_rest_of_the_process_is_not(runtime: Runtime) -> None:
    base = niceness(threading.get_native_id())
    worker = Worker(runtime.services, concurrency=2, nice=EMBEDDED_WORKER_NICE)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            jobs = [t for t in threading.enumerate() if t.name.startswith("appyard-worker-")]
            seen = sorted(niceness(t.native_id) for t in jobs if t.native_id is not None)
            if seen == [base + EMBEDDED_WORKER_NICE] * 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        worker.stop()

    assert EMBEDDED_WORKER_NICE > 0
    assert seen == [min(base + EMBEDDED_WORKER_NICE, 19)] * 2
    assert niceness(threading.get_native_id()) == base
    assert os.getpriority(os.PRIO_PROCESS, 0) == base
