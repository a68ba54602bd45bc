"""Helpers shared by the benchmarks in ``bench/``: processes, memory, timing, statistics.

Everything here is standard library only and Linux specific (it reads ``/proc``).

- :class:`Proc` starts a server in its own session with its output in files, waits for it
  to listen, and stops it again: SIGTERM to the process it started, then SIGKILL to whatever
  is left of the tree it has seen (by PID, never by name).
- :func:`process_tree`, :func:`status_kib` and :class:`RssSampler` measure memory: the sum
  of ``VmRSS`` over a process tree, sampled every 50 ms, with a peak per labelled phase, and
  each process's ``VmHWM``.
- :func:`interleave` runs A B A B ...; :func:`paired_ratio` and :func:`summary` reduce it.
- :func:`curl` runs one transfer with curl and returns what curl measured.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MB = 1_000_000  # throughput and memory figures are printed in MB (10^6 bytes)
MIB = 1024 * 1024


# -- the machine's memory ---------------------------------------------------------------------
def mem_available() -> int:
    """``MemAvailable`` in bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


PAGE_REPORTING = Path("/sys/module/page_reporting/parameters/min_free_ms")
HOLD_FREED_MS = 300_000  # the most this kernel takes (5 minutes)


@contextlib.contextmanager
def freed_memory_kept() -> Iterator[str]:
    """While the run lasts, the guest keeps the memory it frees instead of returning it to the
    host at once; yields a line saying what was done.

    These virtual machines report free pages to the host (``page_reporting``, with
    ``min_free_ms`` 0): the pages of a deleted 1 GiB upload go back to the host almost at
    once, and the next writer meets fresh pages, which cost 2.8 s of kernel time per GiB (see
    :func:`prefault_memory`). Which side of a pair meets them depended on what ran in between:
    appyard's build job, which used to copy its input, happened to touch memory again before
    appyard's next upload; once the job linked its input instead, appyard's uploads met the
    returned pages and fell to 0.3-0.7x nginx at 2-3 s of CPU per GiB, while with reporting
    held back the same code measured 1.1-1.3x at 0.37 s. Holding freed pages in the guest
    for the run (root only; the old value is put back) takes the host out of every pair."""
    try:
        before = PAGE_REPORTING.read_text().strip()
        PAGE_REPORTING.write_text(str(HOLD_FREED_MS))
    except OSError as exc:
        yield f"free page reporting left as it is ({exc.strerror or exc}): figures may be noisy"
        return
    try:
        yield f"free page reporting held back for the run (min_free_ms {before} -> {HOLD_FREED_MS})"
    finally:
        PAGE_REPORTING.write_text(before)


def prefault_memory(gib: float) -> tuple[int, float]:
    """Write to ``gib`` GiB of fresh anonymous memory once, then free it; (bytes, seconds).

    On a virtual machine whose memory the host backs lazily (these machines), the first write
    into a guest page the VM never touched costs a host fault: 2.8 s of kernel time per GiB
    measured here, against 0.2 s for a page touched before. A 1 GiB upload lands in fresh
    page-cache pages until the VM has touched as much memory as the run will use, and the
    side (appyard or nginx) that happens to meet them pays for the machine's history, not
    for its own work: single PUTs moved between 0.26x and 1.23x nginx from pair to pair.
    Touching the memory once, before the first pair, takes that out of every pair."""
    size = int(min(gib * 2**30, max(mem_available() - 2 * 2**30, 0)))
    size -= size % mmap.PAGESIZE
    if size <= 0:
        return 0, 0.0
    started = time.perf_counter()
    with mmap.mmap(-1, size) as region:
        page = b"\1" * mmap.PAGESIZE
        for offset in range(0, size, mmap.PAGESIZE):
            region[offset : offset + 1] = page[:1]
    return size, time.perf_counter() - started


# -- ports, files, deadlines ------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the usual bind-to-0 trick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(
    host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Until something accepts connections on host:port; RuntimeError when ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"process {proc.pid} exited with {proc.returncode} "
                f"before listening on {host}:{port}"
            )
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f} s")


def wait_http_ok(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s ({last})")


def write_random_file(path: Path, size: int, *, chunk: int = 16 * MIB) -> None:
    """``size`` random bytes (os.urandom), written in pieces: never all in memory."""
    with open(path, "wb") as fh:
        left = size
        while left > 0:
            n = min(chunk, left)
            fh.write(os.urandom(n))
            left -= n


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


@contextlib.contextmanager
def temp_dir(prefix: str, parent: Path | None = None, *, keep: bool = False) -> Iterator[Path]:
    """A temporary directory, removed on the way out unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        if keep:
            print(f"(kept {path})")
        else:
            shutil.rmtree(path, ignore_errors=True)


class Deadline:
    """A wall-clock budget for a whole run: ``left()`` seconds, ``expired``."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.left() <= 0


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so ``finally`` blocks (process and temp cleanup) run."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# -- /proc ------------------------------------------------------------------------------------
def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        rest = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(rest[1]), []).append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants (root first)."""
    children = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def status_kib(pid: int, *fields: str) -> dict[str, int]:
    """Fields of /proc/<pid>/status in KiB (e.g. VmRSS, VmHWM); {} if the process is gone."""
    wanted = {f.encode() + b":" for f in fields}
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                key = line.split(b":", 1)[0] + b":"
                if key in wanted:
                    found[key[:-1].decode()] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return {}
    return found


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time consumed so far by ``pids`` (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                rest = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += int(rest[11]) + int(rest[12])  # utime, stime (fields 14 and 15)
    return total / _TICK


class CpuMeter:
    """CPU seconds a process tree spends inside a ``with`` block: a figure that, unlike
    throughput, barely moves when other work competes for the machine's cores."""

    def __init__(self, root: int) -> None:
        self.pids = process_tree(root)
        self.seconds = 0.0

    def __enter__(self) -> CpuMeter:
        self._start = cpu_seconds(self.pids)
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = cpu_seconds(self.pids) - self._start


def pss_bytes(pid: int) -> int:
    """Proportional set size (shared pages divided among their users); 0 if gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass
class RssSampler:
    """Samples the sum of VmRSS over ``root``'s process tree every ``interval`` seconds.

    ``phase(name)`` labels the samples taken while it is active; ``peaks[name]`` is the
    highest sum seen in that phase, ``peak`` the highest overall (bytes). ``hwm`` keeps each
    process's last-read VmHWM (its own peak RSS, bytes), ``hwm_sum`` adds them up: an upper
    bound of the tree's peak that does not depend on the sampling interval. Every
    ``pss_every``-th sample also sums PSS (``pss_peak``): RSS counts pages a forked worker
    still shares with its parent twice, PSS does not (it is dearer to read, hence rarer).
    """

    root: int
    interval: float = 0.05
    tree_refresh: float = 1.0
    peak: int = 0
    peaks: dict[str, int] = field(default_factory=dict)
    hwm: dict[int, int] = field(default_factory=dict)
    samples: int = 0
    pss_every: int = 10
    pss_peak: int = 0
    label: str = "idle"
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> RssSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        previous, self.label = self.label, name
        try:
            yield
        finally:
            self.label = previous

    @property
    def hwm_sum(self) -> int:
        return sum(self.hwm.values())

    def sample(self, pids: Sequence[int]) -> int:
        total = 0
        for pid in pids:
            values = status_kib(pid, "VmRSS", "VmHWM")
            total += values.get("VmRSS", 0) * 1024
            if "VmHWM" in values:
                self.hwm[pid] = max(self.hwm.get(pid, 0), values["VmHWM"] * 1024)
        if self.pss_every and self.samples % self.pss_every == 0:
            self.pss_peak = max(self.pss_peak, sum(pss_bytes(pid) for pid in pids))
        label = self.label
        self.peak = max(self.peak, total)
        self.peaks[label] = max(self.peaks.get(label, 0), total)
        self.samples += 1
        return total

    def _run(self) -> None:
        pids: list[int] = []
        refreshed = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - refreshed >= self.tree_refresh:
                pids, refreshed = process_tree(self.root), now
            self.sample(pids)
            self._stop.wait(self.interval)


# -- processes ----------------------------------------------------------------------------------
class Proc:
    """A server process started by a benchmark, with stdout/stderr in files under ``logs``.

    Started in a new session (a Ctrl-C at the terminal reaches the benchmark only, which then
    stops its servers in order). ``stop()`` sends SIGTERM to the process it started, waits, and
    SIGKILLs any process of the tree it has seen that is still there: by PID only.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        logs: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.stdout_path = logs / f"{name}.stdout"
        self.stderr_path = logs / f"{name}.stderr"
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self.seen: set[int] = {self.popen.pid}

    @property
    def pid(self) -> int:
        return self.popen.pid

    def remember_tree(self) -> list[int]:
        pids = process_tree(self.pid) if self.popen.poll() is None else []
        self.seen.update(pids)
        return pids

    def wait_stdout(self, needle: str, timeout: float) -> str:
        """The first stdout line containing ``needle``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stdout_path.read_text(errors="replace").splitlines():
                if needle in line:
                    return line
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(
            f"{self.name}: no {needle!r} on stdout; stderr ends with:\n" + self.tail()
        )

    def tail(self, lines: int = 20) -> str:
        text = self.stderr_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(text)

    def stop(self, timeout: float = 15.0) -> None:
        self.remember_tree()
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of what we started (workers that outlived their parent included).
        for pid in sorted(self.seen):
            if _alive_and_ours(pid, self.popen.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._out.close()
        self._err.close()


def _alive_and_ours(pid: int, session_leader: int) -> bool:
    """Still running and still in the session we created (guards against PID reuse)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    rest = stat[stat.rfind(b")") + 2 :].split()
    state, session = rest[0], int(rest[3])
    return state != b"Z" and session == session_leader


# -- transfers ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CurlResult:
    status: int
    seconds: float  # curl's time_total
    uploaded: int
    downloaded: int


def curl(args: Sequence[str], *, timeout: float = 300.0) -> CurlResult:
    """Run ``curl -sS <args>`` and return what curl measured (time_total, sizes, status)."""
    fmt = "\n%{http_code} %{time_total} %{size_upload} %{size_download}"
    proc = subprocess.run(
        ["curl", "-sS", "--max-time", str(int(timeout)), "-w", fmt, *args],
        capture_output=True,
        timeout=timeout + 10,
        check=False,
    )
    tail = proc.stdout.decode(errors="replace").rsplit("\n", 1)[-1].split()
    if proc.returncode != 0 or len(tail) != 4:
        raise RuntimeError(
            f"curl {' '.join(args[:3])}... failed ({proc.returncode}): "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    return CurlResult(int(tail[0]), float(tail[1]), int(float(tail[2])), int(float(tail[3])))


# -- statistics ---------------------------------------------------------------------------------
def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / MB if seconds > 0 else float("inf")


def interleave(
    pairs: int,
    a: Callable[[int], float],
    b: Callable[[int], float],
    *,
    between: Callable[[], None] | None = None,
    stop: Callable[[], bool] | None = None,
    on_pair: Callable[[int, float, float], None] | None = None,
) -> tuple[list[float], list[float]]:
    """Run A B A B ... ``pairs`` times; each callable gets the pair index and returns a figure
    (e.g. MB/s). ``between()`` runs (untimed) before every single run; ``stop()`` is asked
    before each pair and ends the series early (a time budget). Returns (as, bs)."""
    xs: list[float] = []
    ys: list[float] = []
    for i in range(pairs):
        if stop is not None and stop():
            break
        if between is not None:
            between()
        x = a(i)
        if between is not None:
            between()
        y = b(i)
        xs.append(x)
        ys.append(y)
        if on_pair is not None:
            on_pair(i, x, y)
    return xs, ys


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """Median of the per-pair ratios a[i]/b[i] (robust to drift on a noisy machine)."""
    ratios = [x / y for x, y in zip(a, b, strict=True) if y > 0]
    return statistics.median(ratios) if ratios else float("nan")


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median:8.0f}  ({self.low:.0f}..{self.high:.0f}, n={self.n})"


def summary(values: Sequence[float]) -> Summary:
    if not values:
        return Summary(0, float("nan"), float("nan"), float("nan"))
    return Summary(len(values), statistics.median(values), min(values), max(values))
