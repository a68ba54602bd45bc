"""The local store's blob listener: signed PUTs and GETs, off the API's event loop.

``appyard serve`` runs this small HTTP/1.1 listener beside the API (``APPYARD_DOWNLOAD_PORT``,
the API port + 1 by default) and points the local store's signed URLs (uploads, parts and
downloads) at it. It answers exactly what ``/_blob/<token>`` on the API port answers (same
tokens, same checks, same headers and ``{"error": ...}`` bodies; that route stays for
deployments that route one port), nothing else. Why a listener of its own:

* *Downloads.* ASGI cannot hand a socket to the kernel: Granian's ``pathsend`` reads the file
  in 128 KiB chunks and writes them to the socket (about 0.55 s of CPU per GiB here, against
  nginx's 0.19 s with ``sendfile``). Here the file goes from the page cache to the socket in
  one blocking ``sendfile(2)`` call on a transfer thread: the kernel loops, Python is not
  woken per socket-buffer's worth.
* *Uploads.* Through ASGI every piece of a body (tens of KiB) crosses from the server into
  Python and through an ``await``; the API's event loop, which also answers status polls,
  spent a fifth of its time writing upload bodies to disk (bench/README.md, "Load"). Here a
  transfer thread receives the body with ``recv_into`` (``MSG_WAITALL``) straight into a
  1 MiB buffer and writes that buffer to the file: one copy out of the socket, one into the
  page cache, the same work nginx does.

How a connection is served: the listener's own event loop (a thread of its own) accepts
connections and reads request heads; a transfer (a body received, a file sent) runs on a
thread of a bounded pool (``TRANSFER_THREADS``; more transfers wait for a thread) with the
socket in blocking mode and ``SO_RCVTIMEO`` / ``SO_SNDTIMEO`` set, so a client that stops
sending or reading for ``IDLE_TIMEOUT`` seconds is dropped (an upload keeps nothing). While a
thread holds the socket the loop does not watch it; it gets it back for the next request.

What it answers:

* ``GET`` and ``HEAD`` of ``/_blob/<token>`` with a download grant; a single byte range
  (``Range: bytes=a-b``, ``a-``, ``-n``) answers 206, an unsatisfiable one 416; the same
  validators as the API route (``ETag``, ``Last-Modified``; ``If-None-Match`` and
  ``If-Modified-Since`` answer 304, ``If-Range`` that does not name the file gives the whole
  file), so a client (Android's DownloadManager) can resume;
* ``PUT`` of ``/_blob/<token>`` with an upload or part grant: a ``Content-Length`` or
  ``chunked`` body, ``Expect: 100-continue`` answered (or the refusal sent before any body is
  read: 403 for a bad token, 410 for a used or cancelled upload, 413 for a body over the
  grant's size); 200 with the object's ``ETag``; a published object is reported to the
  store's listener (core's arrivals), as the API route does;
* other methods 405, other paths 404; ``GET /healthz`` answers 200 while the listener runs;
* request heads are bounded (8 KiB, 100 header lines, 30 s to arrive, else the connection
  is closed) and connections are kept alive between requests (HTTP/1.1 unless
  ``Connection: close``);
* every answer carries ``X-Request-ID`` (the client's when sane), and each request is one
  access log line (its path redacted: tokens are never logged) and the request metrics
  (dialect ``downloads`` for GET and HEAD, ``blob`` for PUT, as on the API port), written
  after the transfer.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from appyard import errors, logs, metrics
from appyard.backends.storage.local import LocalBlobStore, PartWrite, StreamingWrite
from appyard.backends.storage.local_http import (
    blob_status,
    content_disposition,
    file_etag,
    http_date,
    media_type,
    not_modified,
    range_applies,
)

log = logging.getLogger("appyard.blob")
log_access = logging.getLogger("appyard.access")

MAX_HEAD = 8 * 1024
MAX_HEADERS = 100
HEAD_TIMEOUT = 30.0
IDLE_TIMEOUT = 60  # seconds a transfer may make no progress before the client is dropped
LINGER_SECONDS = 5.0  # after a refusal, how long the rest of a body is read and dropped
TRANSFER_THREADS = 256
RECEIVE_BLOCK = 1024 * 1024  # an upload's buffer: one recv_into (MSG_WAITALL), one write
MAX_CHUNK_LINE = 4096  # a chunked body's size line (with extensions)
PREFIX = "/_blob/"
_REASONS = {
    200: "OK",
    206: "Partial Content",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    413: "Content Too Large",
    416: "Range Not Satisfiable",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    507: "Insufficient Storage",
}
T = TypeVar("T")


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _ClientGone(Exception):
    """The client closed the connection, or sent nothing for ``IDLE_TIMEOUT`` seconds."""


@dataclass(frozen=True)
class _Request:
    method: str
    target: str
    keep_alive: bool
    headers: dict[str, str]


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of one ``bytes=`` range; ``None`` when the header is to be ignored
    (not bytes, several ranges); raises ``_BadRequest(416)`` when nothing of it is in the file."""
    unit, _, spec = value.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    try:
        if not dash:
            raise ValueError
        if first_text == "":
            suffix = int(last_text)
            if suffix <= 0:
                raise ValueError
            first, last = max(size - suffix, 0), size - 1
        else:
            first = int(first_text)
            last = int(last_text) if last_text else size - 1
            last = min(last, size - 1)
        if first < 0 or first > last:
            raise ValueError
    except ValueError:
        raise _BadRequest(416, "The requested range is not satisfiable.") from None
    return first, last


def parse_head(head: bytes) -> _Request:
    """A request head (without its closing blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(400, "The request line is not HTTP/1.x.")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _BadRequest(400, "A request header is malformed.")
        headers[name.lower()] = value.strip()
        if len(headers) > MAX_HEADERS:
            raise _BadRequest(431, "The request has too many header fields.")
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
    return _Request(method, target, keep_alive, headers)


@dataclass
class _Exchange:
    """One request as the access log and the metrics see it."""

    request_id: str
    status: int = 0
    sent: int = 0
    received: int = 0


_EXCHANGE: contextvars.ContextVar[_Exchange | None] = contextvars.ContextVar(
    "appyard_blob_exchange", default=None
)


def _head_bytes(status: int, headers: list[tuple[str, str]], keep_alive: bool) -> bytes:
    exchange = _EXCHANGE.get()
    if exchange is not None:  # every answer to a request carries its id
        exchange.status = status
        headers = [*headers, ("x-request-id", exchange.request_id)]
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append("connection: keep-alive" if keep_alive else "connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _error_bytes(
    status: int, message: str, keep_alive: bool, extra: list[tuple[str, str]] | None = None
) -> bytes:
    body = json.dumps({"error": message}).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    exchange = _EXCHANGE.get()
    if exchange is not None:
        exchange.sent = len(body)
    return _head_bytes(status, [*headers, *(extra or [])], keep_alive) + body


# -- blocking transfers (on a transfer thread, the socket in blocking mode) -----------------------


@contextlib.contextmanager
def _blocking(conn: socket.socket) -> Iterator[None]:
    """The socket in blocking mode with send and receive timeouts of ``IDLE_TIMEOUT``, for a
    transfer thread; back to non-blocking (the event loop's mode) afterwards."""
    idle = struct.pack("ll", IDLE_TIMEOUT, 0)
    conn.setblocking(True)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, idle)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, idle)
    try:
        yield
    except (BlockingIOError, TimeoutError, ConnectionError):  # the kernel's timeout (no
        raise _ClientGone from None  # progress for too long), or the client went away
    finally:
        conn.setblocking(False)


def _send_file(conn: socket.socket, fd: int, offset: int, count: int) -> int:
    """Send ``count`` bytes of ``fd`` from ``offset`` with ``sendfile(2)``; bytes sent.

    The socket is corked meanwhile (``TCP_CORK``, nginx's ``tcp_nopush``): only full segments
    leave until the end. Uncorked, the file went out in the kernel's 64 KiB splice pieces, each
    pushed at once: 0.50 s of CPU per GiB and 2.0 GB/s, against 0.35 s and 2.8 GB/s corked
    (bench/README.md, "Upload path", 2026-12-05, second session)."""
    sent = 0
    with _blocking(conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        try:
            while sent < count:
                done = os.sendfile(conn.fileno(), fd, offset + sent, count - sent)
                if done == 0:  # the file became shorter than its size said
                    break
                sent += done
        finally:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)  # sends what is left
    return sent


class _BodyReader:
    """A request body read from a blocking socket, after the bytes the head came with."""

    def __init__(self, conn: socket.socket, buffered: bytearray) -> None:
        self.conn = conn
        self.buffered = buffered  # received, not yet consumed; what is left goes back
        self.block = bytearray(RECEIVE_BLOCK)
        self.received = 0

    def _recv_some(self) -> None:
        data = self.conn.recv(65536)
        if not data:
            raise _ClientGone
        self.buffered += data

    def copy(self, count: int, feed: Callable[[memoryview], None]) -> None:
        """Exactly ``count`` body bytes to ``feed``, in blocks of up to ``RECEIVE_BLOCK``."""
        if self.buffered:
            take = min(count, len(self.buffered))
            feed(memoryview(self.buffered[:take]))  # a copy: the slice outlives the del
            del self.buffered[:take]
            count -= take
            self.received += take
        view = memoryview(self.block)
        while count:
            want = min(count, RECEIVE_BLOCK)
            filled = 0
            while filled < want:  # MSG_WAITALL: one call per block unless the peer is slow
                done = self.conn.recv_into(view[filled:want], want - filled, socket.MSG_WAITALL)
                if not done:
                    raise _ClientGone
                filled += done
            feed(view[:filled])  # written before it returns: the block is reused
            count -= filled
            self.received += filled

    def line(self) -> bytes:
        """One CRLF-terminated line (without it), bounded."""
        while (end := self.buffered.find(b"\r\n")) < 0:
            if len(self.buffered) > MAX_CHUNK_LINE:
                raise _BadRequest(400, "A chunk-size line of the chunked body is too long.")
            self._recv_some()
        line = bytes(self.buffered[:end])
        del self.buffered[: end + 2]
        return line

    def chunked(self, feed: Callable[[memoryview], None]) -> None:
        """A ``Transfer-Encoding: chunked`` body (RFC 9112 7.1), trailers read and dropped."""
        while True:
            size_text = self.line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _BadRequest(400, "The chunked body is malformed.") from None
            if size < 0:
                raise _BadRequest(400, "The chunked body is malformed.")
            if size == 0:
                break
            self.copy(size, feed)
            if self.line():
                raise _BadRequest(400, "The chunked body is malformed.")
        while self.line():  # trailer fields, up to the blank line
            pass


# -- the listener -----------------------------------------------------------------------------


class BlobListener:
    """Serves the local store's signed PUTs and GETs on ``host:port`` from a thread of its
    own (the event loop) and a pool of transfer threads."""

    def __init__(self, store: LocalBlobStore, host: str, port: int) -> None:
        self.store = store
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._pool = ThreadPoolExecutor(TRANSFER_THREADS, thread_name_prefix="appyard-transfer")
        self._connections: set[socket.socket] = set()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Bind and serve; raises ``OSError`` here when the port cannot be bound."""
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._main(),), name="appyard-blobs", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            server = socket.create_server((self.host, self.port), family=family, backlog=1024)
        except OSError as exc:  # reported to start()
            self._failure = exc
            self._ready.set()
            return
        server.setblocking(False)
        self.port = server.getsockname()[1]
        self._ready.set()
        accepting = asyncio.create_task(self._accept(server))
        await self._stopping.wait()
        accepting.cancel()
        server.close()
        for conn in list(self._connections):  # wakes transfer threads blocked on them
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        clients = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def _accept(self, server: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        while True:
            try:
                conn, _ = await loop.sock_accept(server)
            except OSError as exc:  # out of files: wait, as a server's accept loop does
                log.warning("blob.accept_failed error=%s", exc)
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = asyncio.create_task(self._client(conn))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    def stop(self) -> None:
        """Close the listener and every connection; returns when the thread has ended."""
        if self._loop is not None and self._failure is None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a transfer thread, in this request's context (ids for the logs)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, contextvars.copy_context().run, fn, *args)

    # -- one connection ------------------------------------------------------------------------
    async def _client(self, conn: socket.socket) -> None:
        self._connections.add(conn)
        buffered = bytearray()
        try:
            while True:
                try:
                    request = await self._read_head(conn, buffered)
                except _BadRequest as exc:
                    await self._refuse(conn, _error_bytes(exc.status, exc.message, False))
                    return
                if request is None:
                    return
                if not await self._answer(request, conn, buffered):
                    return
        except (ConnectionError, _ClientGone, asyncio.CancelledError):
            return
        except Exception:  # never a silent hang: log and close
            log.exception("blob.request_failed")
            return
        finally:
            self._connections.discard(conn)
            conn.close()

    async def _read_head(self, conn: socket.socket, buffered: bytearray) -> _Request | None:
        """The next request's head (taken from ``buffered``, which keeps what follows it);
        ``None`` when the connection is to be closed quietly: the client closed it, or sent no
        complete head within ``HEAD_TIMEOUT``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HEAD_TIMEOUT
        while (end := buffered.find(b"\r\n\r\n")) < 0:
            if len(buffered) > MAX_HEAD:
                raise _BadRequest(431, "The request head is larger than 8 KiB.")
            try:
                data = await asyncio.wait_for(
                    loop.sock_recv(conn, MAX_HEAD + 4), max(deadline - loop.time(), 0)
                )
            except TimeoutError:  # an idle keep-alive connection, or a client too slow
                return None
            if not data:
                if not buffered.strip():
                    return None
                raise _BadRequest(400, "The request head is incomplete.")
            buffered += data
        if end > MAX_HEAD:
            raise _BadRequest(431, "The request head is larger than 8 KiB.")
        head = bytes(buffered[:end])
        del buffered[: end + 4]
        return parse_head(head)

    async def _send(self, conn: socket.socket, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(conn, data)

    async def _refuse(self, conn: socket.socket, data: bytes) -> bool:
        """Send a final answer to a request whose body was not read, then close the way
        servers do (a lingering close): stop sending, and read and drop what the client still
        sends for a while, so that it sees the answer instead of a reset connection."""
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(conn, data)
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
        deadline = loop.time() + LINGER_SECONDS
        with contextlib.suppress(OSError, TimeoutError):
            while loop.time() < deadline:
                if not await asyncio.wait_for(loop.sock_recv(conn, 65536), deadline - loop.time()):
                    break
        return False

    async def _answer(self, request: _Request, conn: socket.socket, buffered: bytearray) -> bool:
        """Answer one request with its request id; then one access log line and the request
        metrics. False when the connection is to be closed."""
        exchange = _Exchange(logs.request_id(request.headers.get("x-request-id")))
        token = _EXCHANGE.set(exchange)
        started = time.perf_counter()
        path = request.target.split("?", 1)[0]
        try:
            with logs.bound(request_id=exchange.request_id):
                if request.method == "PUT" and path.startswith(PREFIX):
                    return await self._put(request, conn, buffered, path)
                return await self._respond(request, conn, path)
        finally:
            _EXCHANGE.reset(token)
            self._observe(request, path, exchange, time.perf_counter() - started)

    def _observe(self, request: _Request, path: str, exchange: _Exchange, seconds: float) -> None:
        route = "/healthz" if path == "/healthz" else f"{PREFIX}{{token}}"
        dialect = "blob" if request.method == "PUT" else "downloads"
        shown = logs.redact(path)
        log_access.info(
            "http.request method=%s path=%s status=%d bytes=%d duration_ms=%.1f "
            "request_id=%s tenant_id=-",
            request.method,
            shown,
            exchange.status,
            exchange.sent,
            seconds * 1000,
            exchange.request_id,
            extra={
                "method": request.method,
                "path": shown,
                "route": route,
                "dialect": dialect,
                "status": exchange.status,
                "bytes": exchange.sent,
                "received": exchange.received,
                "duration_ms": round(seconds * 1000, 3),
                "request_id": exchange.request_id,
            },
        )
        metrics.observe_request(
            dialect=dialect,
            route=route,
            method=request.method,
            status=exchange.status,
            seconds=seconds,
            received=exchange.received,
            sent=exchange.sent,
        )

    # -- uploads -------------------------------------------------------------------------------
    async def _put(
        self, request: _Request, conn: socket.socket, buffered: bytearray, path: str
    ) -> bool:
        """A signed PUT: checked before a byte of the body is read (a refusal closes the
        connection, the body unread), then received on a transfer thread."""
        headers = request.headers
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        declared = headers.get("content-length")
        try:
            if "transfer-encoding" in headers and not chunked:
                raise _BadRequest(501, "Only the chunked transfer coding is understood.")
            if declared is not None and not chunked and not declared.isdigit():
                raise _BadRequest(400, "The Content-Length header is not a number.")
            length = 0 if chunked or declared is None else int(declared)
            grant, writer = self.store.upload(path[len(PREFIX) :], declared=length)
        except _BadRequest as exc:
            return await self._refuse(conn, _error_bytes(exc.status, exc.message, False))
        except errors.AppyardError as exc:
            return await self._refuse(conn, _error_bytes(blob_status(exc), exc.message, False))
        if headers.get("expect", "").lower() == "100-continue":
            await self._send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
        exchange = _EXCHANGE.get()
        reader = _BodyReader(conn, buffered)
        try:
            await self._in_thread(self._receive, reader, writer, None if chunked else length)
            info = await self._in_thread(writer.commit)
        except _ClientGone:
            await self._in_thread(writer.discard)
            log.info("blob.upload_broken bytes=%d", reader.received)
            return False
        except _BadRequest as exc:
            await self._in_thread(writer.discard)
            return await self._refuse(conn, _error_bytes(exc.status, exc.message, False))
        except errors.AppyardError as exc:
            await self._in_thread(writer.discard)
            return await self._refuse(conn, _error_bytes(blob_status(exc), exc.message, False))
        except BaseException:
            await asyncio.shield(self._in_thread(writer.discard))
            raise
        finally:
            if exchange is not None:
                exchange.received = reader.received
        await self._in_thread(self.store.published, grant, info)
        keep = request.keep_alive
        await self._send(
            conn, _head_bytes(200, [("etag", info.etag), ("content-length", "0")], keep)
        )
        return keep

    @staticmethod
    def _receive(
        reader: _BodyReader, writer: StreamingWrite | PartWrite, length: int | None
    ) -> None:
        with _blocking(reader.conn):
            if length is None:
                reader.chunked(writer.feed)
            else:
                reader.copy(length, writer.feed)

    # -- downloads and the rest ----------------------------------------------------------------
    async def _respond(self, request: _Request, conn: socket.socket, path: str) -> bool:
        """Answer one request that is not an upload; False when the connection is to be
        closed."""
        keep = request.keep_alive
        if path == "/healthz" and request.method in ("GET", "HEAD"):  # liveness
            body = b'{"status":"ok"}' if request.method == "GET" else b""
            headers = [("content-type", "application/json"), ("content-length", "15")]
            await self._send(conn, _head_bytes(200, headers, keep) + body)
            return keep
        if not path.startswith(PREFIX) or "/" in path[len(PREFIX) :] or path == PREFIX:
            await self._send(conn, _error_bytes(404, "Not found.", keep))
            return keep
        if request.method not in ("GET", "HEAD"):  # any body is left unread: close after
            allow = [("allow", "GET, HEAD, PUT")]
            return await self._refuse(conn, _error_bytes(405, "Method not allowed.", False, allow))
        if "content-length" in request.headers or "transfer-encoding" in request.headers:
            return await self._refuse(
                conn, _error_bytes(400, "Downloads take no request body.", False)
            )
        try:
            grant, file_path = self.store.download(path[len(PREFIX) :])
            fh = open(file_path, "rb")  # closed by the with block below, after sendfile
        except errors.AppyardError as exc:
            await self._send(conn, _error_bytes(exc.status, exc.message, keep))
            return keep
        except FileNotFoundError:  # deleted between the check and the open
            await self._send(conn, _error_bytes(404, "The object does not exist.", keep))
            return keep
        with fh:
            stat = os.fstat(fh.fileno())
            size = stat.st_size
            if not_modified(request.headers, stat):
                await self._send(conn, _head_bytes(304, [("etag", file_etag(stat))], keep))
                return keep
            try:
                wanted = (
                    parse_range(request.headers["range"], size)
                    if "range" in request.headers and range_applies(request.headers, stat)
                    else None
                )
            except _BadRequest as exc:
                extra = [("content-range", f"bytes */{size}")]
                await self._send(conn, _error_bytes(exc.status, exc.message, keep, extra))
                return keep
            first, last = wanted if wanted is not None else (0, size - 1)
            count = last - first + 1 if size else 0
            headers = [
                ("content-type", media_type(grant.file_name)),
                ("content-length", str(count)),
                ("content-disposition", content_disposition(grant.file_name)),
                ("accept-ranges", "bytes"),
                ("last-modified", http_date(stat)),
                ("etag", file_etag(stat)),
            ]
            if wanted is not None:
                headers.append(("content-range", f"bytes {first}-{last}/{size}"))
            await self._send(conn, _head_bytes(206 if wanted is not None else 200, headers, keep))
            if request.method == "GET" and count:
                sent = await self._in_thread(_send_file, conn, fh.fileno(), first, count)
                exchange = _EXCHANGE.get()
                if exchange is not None:
                    exchange.sent = sent
                if sent < count:
                    return False
        log.info("blob.downloaded bytes=%d ranged=%s", count, wanted is not None)
        return keep
