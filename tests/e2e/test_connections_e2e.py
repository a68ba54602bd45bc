"""Many keep-alive clients at once (bench/README.md, "Load"): a real ``appyard serve`` keeps
answering new connections - ``/healthz``, a new upload's ticket and its signed-URL PUT - while
more clients than Granian's default of 128 connections poll the status route on connections
they keep open. With that default the 129th connection was never accepted: the server
stopped answering anyone new for as long as the pollers stayed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tests.conftest import padded_apk
from tests.e2e.conftest import Server

POLLERS = 160  # more than Granian's default limit (128), far below appyard's
UPLOAD_BYTES = 12 * 1024 * 1024
CHUNK = 256 * 1024
PACE = 0.05  # seconds between chunks: each upload lasts about two seconds
ANSWER_WITHIN = 5.0  # seconds; a stalled server answers never


class Conn:
    """One HTTP/1.1 keep-alive connection to the server: a request, then its whole answer."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def answer(self) -> tuple[int, bytes]:
        assert self.reader is not None
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        )
        return int(lines[0].split()[1]), await self.reader.readexactly(length)

    async def request(self, head: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.writer is not None
        self.writer.write(head.encode() + body)
        return await self.answer()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


def get(path: str, key: str = "") -> str:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n"


@dataclass
class Seen:
    """Latencies (seconds) of answered requests, and what went wrong."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    async def timed(
        self, what: str, call: Awaitable[tuple[int, bytes]], within: float = ANSWER_WITHIN
    ) -> bytes | None:
        """The answer's body; None when none came in time."""
        t0 = time.perf_counter()
        try:
            status, body = await asyncio.wait_for(call, within)
        except TimeoutError:
            self.failures.append(f"{what}: no answer within {within:.0f} s")
            return None
        self.latencies.append(time.perf_counter() - t0)
        if status != 200:
            self.failures.append(f"{what}: {status} {body[:200]!r}")
        return body


async def load(server: Server, apk: Path) -> tuple[Seen, Seen, Seen]:
    port = int(urlsplit(server.url).port or 0)
    polls, probes, uploads = Seen(), Seen(), Seen()
    stop = asyncio.Event()

    async def ticket(conn: Conn, name: str) -> dict[str, str]:
        body = json.dumps({"file_name": name, "platform": "android", "version": "dev"}).encode()
        head = (
            "POST /automate/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {server.key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        answer = await uploads.timed(f"POST /automate/upload ({name})", conn.request(head, body))
        return json.loads(answer) if answer else {}

    async def poller(job_id: str) -> None:
        conn = Conn(port)
        try:
            while not stop.is_set():
                poll = conn.request(get(f"/automate/status/{job_id}", server.key))
                if await polls.timed("status poll", poll) is None:
                    conn.close()  # its answer may still come: a new connection next time
                await asyncio.sleep(1.0)
        finally:
            conn.close()

    async def prober() -> None:
        while not stop.is_set():
            conn = Conn(port)  # a new client each time: what a stalled server never accepts
            await probes.timed("/healthz on a new connection", conn.request(get("/healthz")))
            conn.close()
            await asyncio.sleep(0.5)

    async def put(conn: Conn, url: str) -> tuple[int, bytes]:
        await conn.open()
        assert conn.writer is not None
        size = apk.stat().st_size
        conn.writer.write(
            f"PUT {urlsplit(url).path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n".encode()
        )
        with open(apk, "rb") as fh:
            while chunk := fh.read(CHUNK):
                conn.writer.write(chunk)
                await conn.writer.drain()  # a server that does not read stops us here
                await asyncio.sleep(PACE)
        return await conn.answer()

    async def upload(name: str, made: dict[str, str] | None = None) -> None:
        conn = Conn(port)
        try:
            made = made or await ticket(conn, name)
            if not made:
                return
            conn.close()  # the signed URL is another origin to a client: a connection of its own
            budget = ANSWER_WITHIN + UPLOAD_BYTES / CHUNK * PACE * 4
            await uploads.timed(f"PUT {name}", put(conn, made["upload_url"]), budget)
        finally:
            conn.close()

    first_conn = Conn(port)
    first = await ticket(first_conn, "first.apk")  # the build every poller asks about
    first_conn.close()
    assert first, uploads.failures
    pollers = [asyncio.create_task(poller(first["job_id"])) for _ in range(POLLERS)]
    await asyncio.sleep(1.5)  # every poller connected and answered once
    probing = asyncio.create_task(prober())
    await asyncio.gather(upload("first.apk", first), upload("second.apk"))
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(probing, *pollers)
    return polls, probes, uploads


def test_new_clients_are_answered_while_many_keep_alive_pollers_stay_connected(
    server: Server, tmp_path: Path
) -> None:
    apk = padded_apk(tmp_path / "app.apk", UPLOAD_BYTES)
    t0 = time.monotonic()
    polls, probes, uploads = asyncio.run(load(server, apk))
    took = time.monotonic() - t0
    assert not uploads.failures, uploads.failures
    assert len(uploads.latencies) == 4  # two tickets, two PUTs
    assert not probes.failures, probes.failures[:3]
    assert probes.latencies and max(probes.latencies) < 3.0
    assert not polls.failures, f"{len(polls.failures)} polls failed: {polls.failures[:3]}"
    assert len(polls.latencies) >= 2 * POLLERS
    assert max(polls.latencies) < 3.0, sorted(polls.latencies)[-5:]
    assert took < 40, took
