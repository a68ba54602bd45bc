"""Status polls under upload load, on loopback (issue 11).

    .venv/bin/python bench/load.py [--uploads 20] [--size-mb 100] [--clients 200]
    .venv/bin/python bench/load.py --uploads 4 --size-mb 20 --clients 50   # a quick run

Starts ``appyard serve`` (the embedded default: SQLite, local store, in-process queue and
worker threads) on a fresh data directory on 127.0.0.1, takes the first start's automation key
from its banner, lifts the default tenant's build limits (``bench/upload.py``'s
``configure_tenant``), and builds one real APK of ``--size-mb`` MB (the signed fixture plus a
stored random asset). Then:

- **A, idle**: ``--uploads`` uploads of that APK through the automation API (``POST
  /automate/upload``, then ``curl -T`` to the signed URL), ``--upload-concurrency`` at a time;
  upload throughput in MB/s (10^6 bytes/s): all bytes over the wall time of the series, and the
  median of curl's per-upload figures. Each upload starts a build job, which the server's
  worker threads run while the later uploads arrive.
- **P, polls alone**: ``--clients`` pollers, each its own keep-alive HTTP/1.1 connection,
  ``GET /automate/status/{job_id}`` once every ``--interval`` seconds for
  ``--idle-poll-seconds``: the latency of a poll with nothing else going on.
- **B, under load**: the same uploads again while the same pollers run; status latency of
  every poll sent during the uploads, p50 / p99 / max, from the request's hand-off to the
  kernel to the kernel's receive timestamp of the answer's last piece (``SO_TIMESTAMPNS``: the
  server's latency, not this process's, which shares the two CPUs with the uploads; the time
  the polling loop read the answer is shown too), and upload throughput against A's.
- A then B, ``--rounds`` times (P once, after the first A): one series of 20 uploads moved
  by half between runs, so B/A is the median of the rounds' ratios and the p99 is over the
  polls of every round (each round's is shown too).
- **C, most requests per second**: ``--hammer-connections`` keep-alive connections send
  requests back to back for ``--hammer-seconds``, ``/healthz`` and the status route in turn,
  ``--hammer-pairs`` pairs (H S H S ...); the median of the per-pair ratios status/healthz.
  With ``wrk`` installed (Debian: ``apt-get install wrk``) wrk sends them; otherwise a small
  asyncio client in this process (it then competes with the server for the CPUs: both routes
  alike, so the ratio holds, the absolute figures are lower).

Between phases every build job is waited for and what it stored is removed (both upload series
start from the same disk state). Memory is written once before the run (``--prefault-gib``),
the guest keeps what it frees for the run (bench/_common.py: ``freed_memory_kept``), so that no
series meets pages the host has just taken back. Peak RSS is the sum of VmRSS over the server's
process tree, sampled every 50 ms, per phase. ``--profile FILE`` records the server with
py-spy during phase C's status runs (raw folded stacks). Bounded: the whole run is stopped once
``--max-minutes`` are spent (a phase already running finishes; later ones are skipped).
Everything it starts is stopped by PID; its temporary directory is removed (``--keep`` keeps
it). See bench/README.md ("Load").

``--uploads-elsewhere`` measures an arrangement appyard does not have yet: the uploads go to
the blob listener of a second ``appyard serve`` on the same data directory, whose worker runs
the build jobs, while the pollers (and the benchmark's own API calls) go to the first, which
runs no worker. The uploads and jobs then hold a GIL of their own, apart from the event loop
that answers the polls. Server CPU and RSS are then the first process's alone.
"""

from __future__ import annotations

# isort: off
import _path  # noqa: F401  (first: see bench/_path.py)

# isort: on

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import selectors
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    MB,
    CpuMeter,
    Deadline,
    Proc,
    RssSampler,
    free_bytes,
    free_port,
    freed_memory_kept,
    prefault_memory,
    temp_dir,
    terminate_on_sigterm,
    wait_http_ok,
    write_random_file,
)
from upload import (
    HOST,
    VENV_BIN,
    Api,
    build_apk,
    configure_tenant,
    curl_put,
    server_env,
    start_granian,
)

TARGET_P99_MS = 50.0
TARGET_UPLOAD_RATIO = 0.8  # uploads under polls within 20% of idle
TARGET_STATUS_RATIO = 0.5  # status requests/s at least half of /healthz's


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def parse_head(head: bytes) -> tuple[int, int, bool, bool]:
    """An answer's head: (status, Content-Length, chunked, connection: close)."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, chunked, close = 0, False, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            close = True
    return status, length, chunked, close


# -- a minimal HTTP/1.1 keep-alive client --------------------------------------------------------
class HttpConn:
    """One keep-alive connection; GET only; Content-Length or chunked bodies."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reconnects = 0

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None

    async def get(self, request: bytes) -> int:
        """Send a prepared request; read the whole answer; its status code."""
        for attempt in (0, 1):
            if self.writer is None:
                await self._open()
            assert self.reader is not None and self.writer is not None
            try:
                self.writer.write(request)
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()  # the server closed an idle keep-alive connection: once more
                self.reconnects += 1
                if attempt:
                    raise
                continue
            status, length, chunked, close = parse_head(head)
            if chunked:
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    await self.reader.readexactly(size + 2)
                    if size == 0:
                        break
            elif length:
                await self.reader.readexactly(length)
            if close:
                self.close()
            return status
        raise AssertionError("unreachable")


def get_request(path: str, key: str | None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{auth}\r\n".encode()


# -- pollers ------------------------------------------------------------------------------------
@dataclass
class Polls:
    """Every poll: (send time, latency seconds, status code, latency as the polling loop
    read the answer); errors counted apart."""

    samples: list[tuple[float, float, int, float]] = field(default_factory=list)
    errors: int = 0
    late: int = 0  # polls sent later than their slot (the previous answer was slow)

    def window(self, start: float, end: float) -> list[tuple[float, float, int, float]]:
        return [s for s in self.samples if start <= s[0] < end]


class Pollers:
    """``clients`` keep-alive connections each polling once per ``interval``, driven by one
    selector loop in a thread of its own (the benchmark's other work does not delay its
    clocks).

    A poll's latency runs from the moment its request is handed to the kernel to the kernel's
    receive timestamp (``SO_TIMESTAMPNS``) of the last piece of its answer, so it is the
    server's latency as a client on another machine would see it (plus loopback), not the
    time this loop, on the same two CPUs as the uploads, took to be scheduled and read the
    answer; that second figure is kept too."""

    def __init__(self, port: int, key: str, job_ids: list[str], clients: int, interval: float):
        self.port, self.key, self.job_ids = port, key, job_ids
        self.clients, self.interval = clients, interval
        self.polls = Polls()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reconnects = 0
        self.inflight: dict[int, float] = {}  # client -> send time of its unanswered poll

    def start(self) -> Pollers:
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Polls:
        """Stop polling; a poll still unanswered after one more interval counts with the
        time it has waited so far (a lower bound) and status 0."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 5)
        now = time.time()
        for t0 in list(self.inflight.values()):
            self.polls.samples.append((t0, now - t0, 0, now - t0))
        return self.polls

    def _main(self) -> None:
        sel = selectors.DefaultSelector()
        start = time.time()
        polls = [_Poll(i, start + self.interval * i / self.clients) for i in range(self.clients)]
        try:
            while not self._stop.is_set():
                now = time.time()
                for poll in polls:
                    if poll.sent is None and poll.slot <= now:
                        self._send(sel, poll, now)
                waiting = [p.slot for p in polls if p.sent is None]
                timeout = max(0.0, min(waiting) - time.time()) if waiting else 0.05
                for sel_key, _ in sel.select(min(timeout, 0.05)):
                    self._receive(sel, sel_key.data)
        finally:
            for poll in polls:
                if poll.sock is not None:
                    poll.sock.close()
            sel.close()

    def _send(self, sel: selectors.BaseSelector, poll: _Poll, now: float) -> None:
        if now - poll.slot > 0.01:
            self.polls.late += 1
            poll.slot = now
        if poll.sock is None:
            poll.sock = socket.create_connection((HOST, self.port))
            poll.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            poll.sock.setblocking(False)
            sel.register(poll.sock, selectors.EVENT_READ, poll)
        job = self.job_ids[(poll.index + poll.count) % len(self.job_ids)]
        poll.count += 1
        poll.buffer.clear()
        poll.sent = self.inflight[poll.index] = time.time()
        try:
            poll.sock.sendall(get_request(f"/automate/status/{job}", self.key))
        except OSError:
            self._ended(sel, poll)

    def _receive(self, sel: selectors.BaseSelector, poll: _Poll) -> None:
        assert poll.sock is not None
        try:
            data, ancillary, _, _ = poll.sock.recvmsg(65536, socket.CMSG_SPACE(16))
        except BlockingIOError:
            return
        except OSError:
            data, ancillary = b"", []
        if not data:
            self._ended(sel, poll)
            return
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanos = struct.unpack("qq", value[:16])
                poll.arrived = seconds + nanos / 1e9
        poll.buffer += data
        answer = complete_answer(poll.buffer)
        if answer is None or poll.sent is None:
            return
        status, close = answer
        seen = time.time()
        arrived = poll.arrived if poll.arrived is not None else seen
        self.polls.samples.append((poll.sent, arrived - poll.sent, status, seen - poll.sent))
        del self.inflight[poll.index]
        poll.sent = poll.arrived = None
        poll.retried = False
        poll.slot += self.interval
        if close:
            self._ended(sel, poll)

    def _ended(self, sel: selectors.BaseSelector, poll: _Poll) -> None:
        """The connection ended. A poll it carried is sent once more on a new connection (the
        server may close an idle keep-alive connection as a poll is sent); a second time it
        counts as an error."""
        if poll.sock is not None:
            sel.unregister(poll.sock)
            poll.sock.close()
            poll.sock = None
            self.reconnects += 1
        if poll.sent is None:
            return
        del self.inflight[poll.index]
        poll.sent = poll.arrived = None
        if poll.retried:
            self.polls.errors += 1
            poll.retried = False
            poll.slot += self.interval
        else:
            poll.retried = True
            poll.slot = time.time()
            poll.count -= 1


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux


@dataclass
class _Poll:
    index: int
    slot: float
    sock: socket.socket | None = None
    sent: float | None = None
    arrived: float | None = None  # the kernel's receive time of the latest piece
    count: int = 0
    retried: bool = False
    buffer: bytearray = field(default_factory=bytearray)


def complete_answer(buffer: bytearray) -> tuple[int, bool] | None:
    """(status, connection: close) once ``buffer`` holds a whole answer (Content-Length or
    chunked), else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    status, length, chunked, close = parse_head(bytes(buffer[:end]))
    body = buffer[end + 4 :]
    if chunked:
        return (status, close) if body.endswith(b"0\r\n\r\n") else None
    return (status, close) if len(body) >= length else None


# -- hammer: the most requests per second ------------------------------------------------------
@dataclass(frozen=True)
class HammerResult:
    rps: float
    requests: int
    non_2xx: int
    p50_ms: float
    p99_ms: float
    tool: str


def hammer_wrk(url: str, key: str | None, connections: int, seconds: float) -> HammerResult:
    wrk = shutil.which("wrk")
    assert wrk is not None
    threads = min(2, connections)
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    if key:
        argv += ["-H", f"Authorization: Bearer {key}"]
    out = subprocess.run(
        [*argv, url], capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return HammerResult(rps, total, int(bad.group(1)) if bad else 0, ms("50%"), ms("99%"), "wrk")


def hammer_python(
    path: str, port: int, key: str | None, connections: int, seconds: float
) -> HammerResult:
    request = get_request(path, key)
    latencies: list[float] = []
    bad = 0

    async def one(end: float) -> None:
        nonlocal bad
        conn = HttpConn(HOST, port)
        try:
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                status = await conn.get(request)
                latencies.append(time.perf_counter() - t0)
                bad += not 200 <= status < 400
        finally:
            conn.close()

    async def main() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(t0 + seconds) for _ in range(connections)))
        return time.perf_counter() - t0

    elapsed = asyncio.run(main())
    ms = [x * 1000 for x in latencies]
    return HammerResult(
        len(ms) / elapsed, len(ms), bad, percentile(ms, 50), percentile(ms, 99), "asyncio"
    )


# -- uploads ------------------------------------------------------------------------------------
@dataclass
class Series:
    """One series of uploads: per-upload MB/s (curl's), wall time of the whole series;
    ``complete`` False when the time budget ran out first (a stalled server)."""

    speeds: list[float] = field(default_factory=list)
    wall: float = 0.0
    nbytes: int = 0
    tickets: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = True
    server_cpu: float = 0.0  # CPU seconds of the server's process tree during the series
    machine_busy: float = 0.0  # the share of all CPUs' time spent busy during the series
    machine_steal: float = 0.0  # the share of it the host gave to others (MachineMeter)

    @property
    def aggregate(self) -> float:
        return self.nbytes / self.wall / MB if self.wall > 0 else float("nan")


def run_uploads(
    api: Api,
    apk: Path,
    count: int,
    concurrency: int,
    tag: str,
    deadline: Deadline,
    on_ticket: Callable[[str], None] | None = None,
    upload_port: int | None = None,
) -> Series:
    size = apk.stat().st_size
    series = Series()
    lock = threading.Lock()

    def one(i: int) -> None:
        ticket = api.request_upload(f"load-{tag}-{i}.apk")
        if on_ticket is not None:
            on_ticket(str(ticket["job_id"]))
        url = ticket["upload_url"]
        if upload_port is not None:  # --uploads-elsewhere: the same signed URL, another listener
            url = re.sub(r"^(https?://[^/]+):\d+/", rf"\g<1>:{upload_port}/", url)
        speed = curl_put(apk, url)
        with lock:
            series.speeds.append(speed)
            series.tickets.append(ticket)
            series.nbytes += size

    todo = list(range(count))
    failures: list[BaseException] = []

    def worker() -> None:
        while todo and not deadline.expired:
            try:
                one(todo.pop(0))
            except BaseException as exc:
                failures.append(exc)
                return

    # Daemon threads: a stalled server cannot keep the benchmark past its budget.
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline.left()))
    series.wall = time.perf_counter() - t0
    if failures:
        raise failures[0]
    with lock:
        series.complete = len(series.speeds) == count
    return series


def settle(api: Api, data: Path, series: Series, deadline: Deadline) -> tuple[int, int]:
    """Untimed: wait for every build job of the series, then remove its input and output
    objects (disk use stays bounded, every series starts from the same state).
    Returns (completed, failed)."""
    done = {"completed": 0, "failed": 0}
    objects = data / "blobs" / "objects"
    for ticket in series.tickets:
        status = api.wait_job(ticket["job_id"], timeout=max(1.0, deadline.left()))
        done[status["status"]] = done.get(status["status"], 0) + 1
        (objects / ticket["file_path"]).unlink(missing_ok=True)
        for out in objects.glob(f"*/outputs/*/*/{ticket['job_id']}/*"):
            out.unlink(missing_ok=True)
    return done["completed"], done["failed"]


class MachineMeter:
    """The share of all CPUs' time spent busy (not idle, not waiting for I/O) in a block, and
    the share stolen: time this virtual machine's CPUs were ready to run and the host ran
    something else (``steal`` in ``/proc/stat``; counted as busy, none of it ours)."""

    busy = 0.0
    steal = 0.0

    @staticmethod
    def _read() -> tuple[int, int, int]:
        with open("/proc/stat") as fh:
            # user nice system idle iowait irq softirq steal (guest time is inside user)
            fields = [int(x) for x in fh.readline().split()[1:9]]
        idle = fields[3] + fields[4]  # idle, iowait
        return sum(fields) - idle, fields[7], sum(fields)

    def __enter__(self) -> MachineMeter:
        self._start = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, steal, total = self._read()
        elapsed = max(1, total - self._start[2])
        self.busy = (busy - self._start[0]) / elapsed
        self.steal = (steal - self._start[1]) / elapsed


# -- the run ------------------------------------------------------------------------------------
@dataclass
class Figures:
    # per round: the idle series (A), the loaded one (B), B's status p99 (ms)
    rounds: list[tuple[Series, Series, float]] = field(default_factory=list)
    jobs: dict[str, tuple[int, int]] = field(default_factory=dict)
    polls_alone: list[float] = field(default_factory=list)  # ms
    poll_cpu_ms: float = float("nan")  # the server's CPU (all threads) per poll in P
    polls_loaded: list[float] = field(default_factory=list)  # ms
    seen_alone: list[float] = field(default_factory=list)  # ms, as the polling loop read them
    seen_loaded: list[float] = field(default_factory=list)  # ms
    poll_notes: dict[str, dict[str, int]] = field(default_factory=dict)
    hammer: list[tuple[HammerResult, HammerResult]] = field(default_factory=list)
    loads: dict[str, float] = field(default_factory=dict)


def latencies_ms(
    polls: Polls, start: float, end: float
) -> tuple[list[float], list[float], dict[str, int]]:
    """Latencies (ms) of the polls sent in [start, end): answered 200, and unanswered ones
    with the time they had waited when polling stopped (so a stalled server shows); the same
    as the polling loop read them; counts."""
    inside = [s for s in polls.window(start, end) if s[2] in (0, 200)]
    ok = [lat * 1000 for _, lat, _, _ in inside]
    seen = [lat * 1000 for *_, lat in inside]
    unanswered = sum(1 for _, _, status, _ in inside if status == 0)
    notes = {"polls": len(polls.window(start, end)), "non_200": 0, "errors": polls.errors}
    notes.update(non_200=notes["polls"] - len(ok), late=polls.late, unanswered=unanswered)
    return ok, seen, notes


def start_uploads_server(data: Path, tmp: Path, logs: Path) -> tuple[Proc, int]:
    """``--uploads-elsewhere``: a second ``appyard serve`` on the same data directory (the same
    keys, so it takes the same signed URLs) with its worker; returns it and its blob listener's
    port. The uploads go to its listener and the builds they start run in its worker threads."""
    port, listener = free_port(), free_port()
    proc = Proc(
        "appyard-uploads",
        [str(VENV_BIN / "appyard"), "serve", "--data-dir", str(data), "--host", HOST,
         "--port", str(port), "--download-port", str(listener)],
        logs=logs,
        env=server_env(data, port, tmp),
    )  # fmt: skip
    wait_http_ok(f"http://{HOST}:{port}/healthz", 60)
    return proc, listener


def run(args: argparse.Namespace, work: Path, procs: list[Proc]) -> tuple[Figures, RssSampler]:
    deadline = Deadline(args.max_minutes * 60)
    logs, data, tmp = work / "logs", work / "appyard-data", work / "tmp"
    for d in (logs, tmp):
        d.mkdir()
    size = args.size_mb * MB
    payload, apk = work / "payload.bin", work / "load.apk"
    log(f"building {apk.name}: the fixture plus a {args.size_mb} MB stored random asset")
    write_random_file(payload, size)
    build_apk(payload, apk)
    payload.unlink()

    elsewhere = {"APPYARD_RUN_WORKER": "false"} if args.uploads_elsewhere else None
    proc, base, key = start_granian(data, tmp, logs, env_extra=elsewhere)
    procs.append(proc)
    port = int(base.rsplit(":", 1)[1])
    sampler = RssSampler(proc.pid, label="start, between phases").start()
    log(f"appyard serve {base} (pid {proc.pid}), data in {data}")
    upload_port = None
    if args.uploads_elsewhere:
        second, upload_port = start_uploads_server(data, tmp, logs)
        procs.append(second)
        log(f"uploads and jobs: a second appyard serve (pid {second.pid}), listener {upload_port}")
    configure_tenant(data)
    api = Api(base, key)
    fig = Figures()

    job_ids: list[str] = []
    if args.polls_csv:
        args.polls_csv.write_text("round,sent_unix,latency_ms,status\n")
    for r in range(args.rounds):
        if deadline.expired:
            break
        tag = f"{r + 1}" if args.rounds > 1 else ""
        # A: uploads on an idle server
        fig.loads[f"A{tag}"] = os.getloadavg()[0]
        log(f"A{tag}: {args.uploads} uploads of {apk.stat().st_size / MB:.0f} MB, idle server")
        os.sync()
        with sampler.phase("A: uploads, idle"), CpuMeter(proc.pid) as cpu, MachineMeter() as box:
            idle = run_uploads(
                api, apk, args.uploads, args.upload_concurrency, f"a{r}", deadline,
                upload_port=upload_port,
            )  # fmt: skip
        idle.server_cpu, idle.machine_busy, idle.machine_steal = cpu.seconds, box.busy, box.steal
        log(f"A{tag}: {idle.aggregate:.0f} MB/s over {idle.wall:.1f} s; waiting for the jobs")
        with sampler.phase("A: jobs"):
            fig.jobs[f"A{tag}"] = settle(api, data, idle, deadline)
        job_ids = job_ids or [str(t["job_id"]) for t in idle.tickets]

        # P: polls alone (once)
        if r == 0 and not deadline.expired and args.idle_poll_seconds > 0:
            os.sync()
            fig.loads["P"] = os.getloadavg()[0]
            log(f"P: {args.clients} pollers, {args.idle_poll_seconds:.0f} s, nothing else running")
            pollers = Pollers(port, key, job_ids, args.clients, args.interval).start()
            time.sleep(args.interval)  # every client has sent its first poll
            t0 = time.time()
            with sampler.phase("P: polls alone"), CpuMeter(proc.pid) as cpu:
                time.sleep(args.idle_poll_seconds)
            t1 = time.time()
            polls = pollers.stop()
            fig.polls_alone, fig.seen_alone, fig.poll_notes["P"] = latencies_ms(polls, t0, t1)
            answered = len(polls.window(t0, t1))
            fig.poll_cpu_ms = 1000 * cpu.seconds / answered if answered else float("nan")

        # B: the same uploads under polls
        if deadline.expired:
            break
        os.sync()
        fig.loads[f"B{tag}"] = os.getloadavg()[0]
        log(f"B{tag}: the same uploads while {args.clients} clients poll once per "
            f"{args.interval} s")  # fmt: skip
        pollers = Pollers(port, key, list(job_ids), args.clients, args.interval).start()
        time.sleep(args.interval)
        t0 = time.time()
        with sampler.phase("B: uploads + polls"), CpuMeter(proc.pid) as cpu, MachineMeter() as box:
            loaded = run_uploads(
                api,
                apk,
                args.uploads,
                args.upload_concurrency,
                f"b{r}",
                deadline,
                pollers.job_ids.append,
                upload_port=upload_port,
            )
        t1 = time.time()
        loaded.server_cpu, loaded.machine_busy, loaded.machine_steal = (
            cpu.seconds,
            box.busy,
            box.steal,
        )
        polls = pollers.stop()
        ms, seen, notes = latencies_ms(polls, t0, t1)
        fig.rounds.append((idle, loaded, percentile(ms, 99)))
        fig.polls_loaded += ms
        fig.seen_loaded += seen
        total = fig.poll_notes.setdefault("B", dict.fromkeys(notes, 0))
        for name, count in notes.items():
            total[name] += count
        if args.polls_csv:  # every poll of B, to find stalls (bench/README.md, "Load")
            with open(args.polls_csv, "a") as fh:
                for sent, latency, status, _ in polls.window(t0, t1):
                    fh.write(f"{r + 1},{sent:.4f},{latency * 1000:.2f},{status}\n")
        log(f"B{tag}: {loaded.aggregate:.0f} MB/s ({loaded.aggregate / idle.aggregate:.2f} of "
            f"A); {len(ms)} polls during uploads, p99 {percentile(ms, 99):.1f} ms")  # fmt: skip
        if not loaded.complete:
            log(f"B{tag}: STALLED: {len(loaded.speeds)} of {args.uploads} uploads within the "
                f"time budget ({notes['unanswered']} polls unanswered)")  # fmt: skip
            break
        with sampler.phase("B: jobs"):
            fig.jobs[f"B{tag}"] = settle(api, data, loaded, deadline)

    # C: the most requests per second
    tool = args.hammer_tool
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "python"
    status_path = f"/automate/status/{job_ids[0]}"
    profiler: subprocess.Popen[bytes] | None = None
    for i in range(args.hammer_pairs):
        if deadline.expired:
            log("time budget spent: phase C cut short")
            break
        pair = []
        for label, path, auth in (("healthz", "/healthz", None), ("status", status_path, key)):
            fig.loads[f"C{i}{label[0]}"] = os.getloadavg()[0]
            if label == "status" and args.profile and i == 0 and shutil.which("py-spy"):
                profiler = subprocess.Popen(
                    ["py-spy", "record", "-p", str(proc.pid), "-d", str(int(args.hammer_seconds)),
                     "-r", "200", "-f", "raw", "--nonblocking", "--threads", "-o",
                     str(args.profile)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            with sampler.phase(f"C: hammer {label}"):
                if tool == "wrk":
                    res = hammer_wrk(f"{base}{path}", auth, args.hammer_connections,
                                     args.hammer_seconds)  # fmt: skip
                else:
                    res = hammer_python(path, port, auth, args.hammer_connections,
                                        args.hammer_seconds)  # fmt: skip
            if profiler is not None:
                profiler.wait(30)
                profiler = None
                log(f"py-spy profile of the status hammer in {args.profile}")
            pair.append(res)
            log(f"C{i + 1}: {label} {res.rps:.0f} req/s (p50 {res.p50_ms:.1f} ms, "
                f"p99 {res.p99_ms:.1f} ms, non-2xx {res.non_2xx}, {res.tool})")  # fmt: skip
        fig.hammer.append((pair[0], pair[1]))
    sampler.stop()
    return fig, sampler


def report(fig: Figures, sampler: RssSampler, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "args": {k: str(v) for k, v in vars(args).items()},
        "load_average_1min": fig.loads,
    }
    print()
    print(
        f"=== load: {args.uploads} x {args.size_mb} MB uploads ({args.upload_concurrency} at a "
        f"time), {args.clients} pollers every {args.interval} s, {os.cpu_count()} CPUs, "
        f"{out['date']} ==="
    )
    loads = ", ".join(f"{k} {v:.1f}" for k, v in fig.loads.items())
    print(f"1-min load average before each phase: {loads}")
    rows: list[tuple[str, str, str]] = []

    def row(what: str, value: str, target: str = "") -> None:
        rows.append((what, value, target))

    ratio_up = ratio_c = p99 = float("nan")
    if fig.rounds:
        idle = [i.aggregate for i, _, _ in fig.rounds]
        loaded = [b.aggregate for _, b, _ in fig.rounds]
        ratios = [b.aggregate / i.aggregate for i, b, _ in fig.rounds]
        ratio_up = statistics.median(ratios)

        def each(values: list[float], fmt: str = ".0f") -> str:
            return ", ".join(f"{v:{fmt}}" for v in values)

        n = len(fig.rounds)
        row(f"A upload, idle: MB/s (all bytes / wall; median of {n})",
            f"{statistics.median(idle):.0f} ({each(idle)})")  # fmt: skip
        per_upload = statistics.median([statistics.median(i.speeds) for i, _, _ in fig.rounds])
        row("A upload, idle: per upload, median MB/s", f"{per_upload:.0f}")
    if fig.polls_alone:
        a = fig.polls_alone
        row("P status polls alone: p50 / p99 / max ms",
            f"{percentile(a, 50):.1f} / {percentile(a, 99):.1f} / {max(a):.1f}")  # fmt: skip
        out["polls_alone_ms"] = {"p50": percentile(a, 50), "p99": percentile(a, 99),
                                 "max": max(a), **fig.poll_notes["P"]}  # fmt: skip
        row("P server CPU per poll (all threads), ms", f"{fig.poll_cpu_ms:.2f}")
        out["poll_cpu_ms"] = fig.poll_cpu_ms
    if fig.rounds:
        row(f"B upload under polls: MB/s (median of {n})",
            f"{statistics.median(loaded):.0f} ({each(loaded)})")  # fmt: skip
        per_upload = statistics.median([statistics.median(b.speeds) for _, b, _ in fig.rounds])
        row("B upload under polls: per upload, median MB/s", f"{per_upload:.0f}")
        if not all(b.complete for _, b, _ in fig.rounds):
            row("B uploads done within the budget", "no: see the log")
        cpu = [(i.server_cpu / i.wall, b.server_cpu / b.wall) for i, b, _ in fig.rounds]
        busy = [(i.machine_busy, b.machine_busy) for i, b, _ in fig.rounds]
        steal = [(i.machine_steal, b.machine_steal) for i, b, _ in fig.rounds]
        row("server CPU (cores) during the uploads, A / B",
            " ; ".join(f"{a:.2f} / {b:.2f}" for a, b in cpu))  # fmt: skip
        row("machine busy (all CPUs), A / B",
            " ; ".join(f"{a:.0%} / {b:.0%}" for a, b in busy))  # fmt: skip
        row("of which stolen by the host, A / B",
            " ; ".join(f"{a:.1%} / {b:.1%}" for a, b in steal))  # fmt: skip
        row(f"B/A upload throughput (median of {n} rounds)",
            f"{ratio_up:.2f} ({each(ratios, '.2f')})", f">= {TARGET_UPLOAD_RATIO}")  # fmt: skip
        out["rounds"] = [
            {"idle_mbps": i.aggregate, "loaded_mbps": b.aggregate, "status_p99_ms": p,
             "idle_speeds": i.speeds, "loaded_speeds": b.speeds,
             "idle_wall": i.wall, "loaded_wall": b.wall,
             "idle_steal": i.machine_steal, "loaded_steal": b.machine_steal}
            for i, b, p in fig.rounds
        ]  # fmt: skip
        out["jobs"] = fig.jobs
        out["upload_ratio"] = ratio_up
    if fig.polls_loaded:
        b = fig.polls_loaded
        p99 = percentile(b, 99)
        row("B status during uploads: p50 ms", f"{percentile(b, 50):.1f}")
        row("B status during uploads (all rounds' polls): p99 ms", f"{p99:.1f}",
            f"< {TARGET_P99_MS:.0f}")  # fmt: skip
        row("B status p99 ms, round by round", ", ".join(f"{p:.1f}" for *_, p in fig.rounds))
        row("B status during uploads: max ms", f"{max(b):.1f}")
        seen = fig.seen_loaded
        row("B the same, as the polling loop read them: p50 / p99 ms",
            f"{percentile(seen, 50):.1f} / {percentile(seen, 99):.1f}")  # fmt: skip
        notes = fig.poll_notes["B"]
        counts = (
            f"{notes['polls']} ({notes['non_200']}, {notes['errors']}, {notes['late']}, "
            f"{notes['unanswered']})"
        )
        row("B polls (non-200, errors, late, unanswered)", counts)
        out["polls_loaded_ms"] = {"p50": percentile(b, 50), "p99": p99, "max": max(b), **notes}
        out["polls_loaded_read_ms"] = {"p50": percentile(seen, 50), "p99": percentile(seen, 99)}
    if fig.hammer:
        hs = [h.rps for h, _ in fig.hammer]
        ss = [s.rps for _, s in fig.hammer]
        ratio_c = statistics.median([s.rps / h.rps for h, s in fig.hammer])
        tool = fig.hammer[0][0].tool
        n = args.hammer_connections
        row(f"C /healthz req/s ({n} conns, {tool}), median", f"{statistics.median(hs):.0f}")
        row(f"C status req/s ({n} conns, {tool}), median", f"{statistics.median(ss):.0f}")
        row("C status p50 / p99 ms (median of runs)",
            f"{statistics.median([s.p50_ms for _, s in fig.hammer]):.1f} / "
            f"{statistics.median([s.p99_ms for _, s in fig.hammer]):.1f}")  # fmt: skip
        row("C status / healthz (median of pairs)", f"{ratio_c:.2f}", f">= {TARGET_STATUS_RATIO}")
        out["hammer"] = [{"healthz": vars(h), "status": vars(s)} for h, s in fig.hammer]
        out["status_ratio"] = ratio_c
    row("server peak RSS, whole run (MB)", f"{sampler.peak / MB:.1f}")
    for label, peak in sampler.peaks.items():
        row(f"  peak RSS in {label}", f"{peak / MB:.1f}")
    out["rss_peak_bytes"] = sampler.peak
    out["rss_peaks_bytes"] = dict(sampler.peaks)
    width = max(len(r[0]) for r in rows)
    for what, value, target in rows:
        print(f"  {what:{width}s}  {value:>22s}  {('target ' + target) if target else ''}")

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print(
        f"\ntargets (issue 11): status p99 {p99:.1f} ms {verdict(p99 < TARGET_P99_MS)} "
        f"(< {TARGET_P99_MS:.0f}); uploads {ratio_up:.2f} of idle "
        f"{verdict(ratio_up >= TARGET_UPLOAD_RATIO)} (>= {TARGET_UPLOAD_RATIO}); status/healthz "
        f"{ratio_c:.2f} {verdict(ratio_c >= TARGET_STATUS_RATIO)} (>= {TARGET_STATUS_RATIO})"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--uploads", type=int, default=20, help="uploads per series")
    parser.add_argument("--rounds", type=int, default=3, help="A then B, this many times")
    parser.add_argument("--size-mb", type=int, default=100, help="APK size, MB (10^6 bytes)")
    parser.add_argument("--upload-concurrency", type=int, default=2)
    parser.add_argument("--clients", type=int, default=200, help="status pollers")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--idle-poll-seconds", type=float, default=5.0, help="phase P (0: skip)")
    parser.add_argument("--hammer-connections", type=int, default=50)
    parser.add_argument("--hammer-seconds", type=float, default=5.0)
    parser.add_argument("--hammer-pairs", type=int, default=3)
    parser.add_argument("--hammer-tool", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy raw output (C)")
    parser.add_argument("--max-minutes", type=float, default=10.0, help="time budget")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary dir")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--polls-csv", type=Path, default=None, help="B's polls, one per line")
    parser.add_argument("--prefault-gib", type=float, default=6.0,
                        help="memory to write once before the run (bench/_common.py)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--uploads-elsewhere", action="store_true", help="uploads, jobs: a second appyard serve"
    )
    args = parser.parse_args(argv)
    if args.uploads < 1 or args.clients < 1 or args.size_mb < 1:
        parser.error("--uploads, --clients and --size-mb must be at least 1")
    if shutil.which("curl") is None:
        parser.error("curl is not installed")
    parent = args.dir or Path(os.environ.get("TMPDIR", "/tmp"))
    need = (2 * args.uploads + 2) * args.size_mb * MB + 512 * MB
    if free_bytes(parent) < need:
        parser.error(
            f"{parent} has {free_bytes(parent) / 1e9:.1f} GB free; {need / 1e9:.1f} needed"
        )
    procs: list[Proc] = []
    with (
        terminate_on_sigterm(),
        temp_dir("appyard-load-", parent, keep=args.keep) as work,
        freed_memory_kept() as held,
    ):
        log(held)
        if args.prefault_gib > 0:  # both series write into memory touched before
            touched, seconds = prefault_memory(args.prefault_gib)
            log(f"fresh memory: wrote to {touched / 2**30:.1f} GiB once in {seconds:.1f} s")
        try:
            fig, sampler = run(args, work, procs)
        except BaseException:
            for p in procs:
                print(f"--- {p.name} stderr (last lines) ---\n{p.tail()}", file=sys.stderr)
            raise
        finally:
            for p in reversed(procs):
                p.stop()
        figures = report(fig, sampler, args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
        log(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
