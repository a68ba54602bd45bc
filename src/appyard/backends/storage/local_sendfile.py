"""The local store's download listener: signed GETs answered with ``sendfile(2)``.

ASGI cannot hand a socket to the kernel: Granian's ``pathsend`` reads the file in 128 KiB
chunks on its blocking pool and writes them to the socket (about 0.55 s of CPU per GiB
here, against nginx's 0.19 s with ``sendfile``). ``appyard serve`` therefore runs this small
HTTP/1.1 listener beside the API (``APPYARD_DOWNLOAD_PORT``, the API port + 1 by default)
and points the local store's signed download URLs at it, so the bytes go from the page
cache to the socket without entering the process. It serves exactly what
``GET /_blob/<token>`` on the API port serves (same tokens, same checks, same headers and
``{"error": ...}`` bodies; that route stays for deployments that route one port), nothing else:

* ``GET`` and ``HEAD`` of ``/_blob/<token>`` with a download grant; a single byte range
  (``Range: bytes=a-b``, ``a-``, ``-n``) answers 206, an unsatisfiable one 416; other
  methods 405, other paths 404;
* the same validators as the API route (``ETag``, ``Last-Modified``; ``If-None-Match`` and
  ``If-Modified-Since`` answer 304, ``If-Range`` that does not name the file gives the whole
  file), so a client (Android's DownloadManager) can resume;
* request heads are bounded (8 KiB, 100 header lines, 30 s to arrive, else the connection
  is closed) and connections are kept alive between requests (HTTP/1.1 unless
  ``Connection: close``);
* ``GET /healthz`` answers 200 while the listener runs (liveness);
* every answer carries ``X-Request-ID`` (the client's when sane), and each request is one
  access log line (its path redacted: tokens are never logged) and the request metrics
  (dialect ``downloads``), written after the file was sent.

It runs its own event loop on a thread of its own, so a slow client never holds the API's loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import threading
import time
from dataclasses import dataclass

from appyard import errors, logs, metrics
from appyard.backends.storage.local import LocalBlobStore
from appyard.backends.storage.local_http import (
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
PREFIX = "/_blob/"
_REASONS = {
    200: "OK",
    206: "Partial Content",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    416: "Range Not Satisfiable",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


async def _read_head(reader: asyncio.StreamReader) -> _Request | None:
    """The next request's head; ``None`` when the connection is to be closed quietly: the
    client closed it, or sent no complete head within ``HEAD_TIMEOUT``."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise _BadRequest(400, "The request head is incomplete.") from None
    except asyncio.LimitOverrunError:
        raise _BadRequest(431, "The request head is larger than 8 KiB.") from None
    except TimeoutError:  # an idle keep-alive connection, or a client too slow to send a head
        return None
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
    bytes: int = 0


_EXCHANGE: contextvars.ContextVar[_Exchange | None] = contextvars.ContextVar(
    "appyard_download", default=None
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


class DownloadListener:
    """Serves the local store's signed GETs on ``host:port`` from a thread of its own."""

    def __init__(self, store: LocalBlobStore, host: str, port: int) -> None:
        self.store = store
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Bind and serve; raises ``OSError`` here when the port cannot be bound."""
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._main(),), name="appyard-downloads", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            server = await asyncio.start_server(self._client, self.host, self.port, limit=MAX_HEAD)
        except OSError as exc:  # reported to start()
            self._failure = exc
            self._ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        clients = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        await server.wait_closed()

    def stop(self) -> None:
        """Close the listener and every connection; returns when the thread has ended."""
        if self._loop is not None and self._failure is None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- one connection ------------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    request = await _read_head(reader)
                except _BadRequest as exc:
                    await self._error(writer, exc.status, exc.message, keep_alive=False)
                    return
                if request is None:
                    return
                if not await self._answer(request, writer):
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        except Exception:  # never a silent hang: log, answer 500 if we still can, close
            log.exception("blob.download_failed")
            return
        finally:
            writer.close()

    async def _error(
        self, writer: asyncio.StreamWriter, status: int, message: str, *, keep_alive: bool
    ) -> None:
        body = json.dumps({"error": message}).encode()
        headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
        writer.write(_head_bytes(status, headers, keep_alive) + body)
        await writer.drain()
        exchange = _EXCHANGE.get()
        if exchange is not None:
            exchange.bytes = len(body)

    async def _answer(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request with its request id; then one access log line and the request
        metrics (nothing per chunk: the kernel sends the file)."""
        exchange = _Exchange(logs.request_id(request.headers.get("x-request-id")))
        token = _EXCHANGE.set(exchange)
        started = time.perf_counter()
        path = request.target.split("?", 1)[0]
        try:
            with logs.bound(request_id=exchange.request_id):
                return await self._respond(request, writer, path)
        finally:
            _EXCHANGE.reset(token)
            seconds = time.perf_counter() - started
            route = "/healthz" if path == "/healthz" else f"{PREFIX}{{token}}"
            shown = logs.redact(path)
            log_access.info(
                "http.request method=%s path=%s status=%d bytes=%d duration_ms=%.1f "
                "request_id=%s tenant_id=-",
                request.method,
                shown,
                exchange.status,
                exchange.bytes,
                seconds * 1000,
                exchange.request_id,
                extra={
                    "method": request.method,
                    "path": shown,
                    "route": route,
                    "dialect": "downloads",
                    "status": exchange.status,
                    "bytes": exchange.bytes,
                    "duration_ms": round(seconds * 1000, 3),
                    "request_id": exchange.request_id,
                },
            )
            metrics.observe_request(
                dialect="downloads",
                route=route,
                method=request.method,
                status=exchange.status,
                seconds=seconds,
                received=0,
                sent=exchange.bytes,
            )

    async def _respond(self, request: _Request, writer: asyncio.StreamWriter, path: str) -> bool:
        """Answer one request; False when the connection is to be closed."""
        keep = request.keep_alive
        if path == "/healthz" and request.method in ("GET", "HEAD"):  # liveness
            body = b'{"status":"ok"}' if request.method == "GET" else b""
            headers = [("content-type", "application/json"), ("content-length", "15")]
            writer.write(_head_bytes(200, headers, keep) + body)
            await writer.drain()
            return keep
        if not path.startswith(PREFIX) or "/" in path[len(PREFIX) :] or path == PREFIX:
            await self._error(writer, 404, "Not found.", keep_alive=keep)
            return keep
        if request.method not in ("GET", "HEAD"):  # any body is left unread: close after
            await self._error(writer, 405, "Method not allowed.", keep_alive=False)
            return False
        if "content-length" in request.headers or "transfer-encoding" in request.headers:
            await self._error(writer, 400, "Downloads take no request body.", keep_alive=False)
            return False
        try:
            grant, file_path = self.store.download(path[len(PREFIX) :])
            fh = open(file_path, "rb")  # closed by the with block below, after sendfile
        except errors.AppyardError as exc:
            await self._error(writer, exc.status, exc.message, keep_alive=keep)
            return keep
        except FileNotFoundError:  # deleted between the check and the open
            await self._error(writer, 404, "The object does not exist.", keep_alive=keep)
            return keep
        with fh:
            stat = os.fstat(fh.fileno())
            size = stat.st_size
            if not_modified(request.headers, stat):
                writer.write(_head_bytes(304, [("etag", file_etag(stat))], keep))
                await writer.drain()
                return keep
            try:
                wanted = (
                    parse_range(request.headers["range"], size)
                    if "range" in request.headers and range_applies(request.headers, stat)
                    else None
                )
            except _BadRequest as exc:
                body = json.dumps({"error": exc.message}).encode()
                headers = [
                    ("content-type", "application/json"),
                    ("content-length", str(len(body))),
                    ("content-range", f"bytes */{size}"),
                ]
                writer.write(_head_bytes(416, headers, keep) + body)
                await writer.drain()
                exchange = _EXCHANGE.get()
                if exchange is not None:
                    exchange.bytes = len(body)
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
            writer.write(_head_bytes(206 if wanted is not None else 200, headers, keep))
            await writer.drain()
            if request.method == "GET" and count:
                loop = asyncio.get_running_loop()
                await loop.sendfile(writer.transport, fh, first, count)
                exchange = _EXCHANGE.get()
                if exchange is not None:
                    exchange.bytes = count
        log.info("blob.downloaded bytes=%d ranged=%s", count, wanted is not None)
        return keep
