"""The HTTP side of the CI client: one appyard server, one token; uploads through the
automation dialect (single PUT or multipart parts, in parallel, with retries and backoff, and
resumable), and reads through the native API's build routes.

Nothing here prints a token or a signed URL: requests are described by method and path only
(signed URLs by their host), and every message passes through :func:`appyard.logs.redact`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from appyard.cli import exits
from appyard.logs import redact

NATIVE = "/appyard/v1"
RETRY_STATUSES = {429, 500, 502, 503, 504}
READ_BLOCK = 1024 * 1024
PLATFORMS = {".apk": "android", ".aab": "android", ".ipa": "ios"}


class ClientError(Exception):
    """A failure the command reports with a message and an exit code."""

    def __init__(self, message: str, exit_code: int = exits.FAILED, status: int | None = None):
        super().__init__(redact(message))
        self.message = redact(message)
        self.exit_code = exit_code
        self.status = status


Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass
class Retry:
    """Attempts and exponential backoff (with jitter) for transient failures."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 8.0

    def delay(self, attempt: int) -> float:
        return float(min(self.cap, self.base * 2**attempt) * (0.5 + random.random() / 2))  # noqa: S311


def _message(response: httpx.Response) -> str:
    """The server's error message in any of its dialects' shapes."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)
        if error:
            return str(error)
        if body.get("message"):
            return str(body["message"])
    return response.text[:300]


class Server:
    """An appyard server reached with a token (an automation key ``key_id:key_secret``)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        verbose: Say = _quiet,
        retry: Retry | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.verbose = verbose
        self.retry = retry or Retry()
        headers = {"Authorization": f"Bearer {token}", "User-Agent": "appyard-cli"}
        self._api = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        # signed URLs go to the store: never with the token
        self._store = httpx.Client(timeout=timeout, headers={"User-Agent": "appyard-cli"})

    def close(self) -> None:
        self._api.close()
        self._store.close()

    # -- the API ---------------------------------------------------------------------------

    def call(self, method: str, path: str, *, body: Any = None, idempotent: bool = True) -> Any:
        """One API request; GETs are retried on transient failures, POSTs only when the
        request never reached the server. 401/403 are exit 5, other refusals exit 1."""
        for attempt in range(self.retry.attempts):
            try:
                response = self._api.request(method, path, json=body)
            except httpx.ConnectError as exc:
                if attempt + 1 >= self.retry.attempts:
                    raise ClientError(
                        f"Cannot reach the appyard server at {self.url}: {exc}.", exits.CONFIG
                    ) from None
                self._wait(attempt, f"{method} {path}: cannot connect")
                continue
            except httpx.TransportError as exc:
                if not idempotent or attempt + 1 >= self.retry.attempts:
                    raise ClientError(f"{method} {path} failed: {exc}.") from None
                self._wait(attempt, f"{method} {path}: {type(exc).__name__}")
                continue
            self.verbose(f"{method} {path} -> {response.status_code}")
            if response.status_code in RETRY_STATUSES and idempotent:
                if attempt + 1 < self.retry.attempts:
                    self._wait(attempt, f"{method} {path}: {response.status_code}")
                    continue
            if response.status_code in (401, 403):
                raise ClientError(
                    f"The server refused the token ({response.status_code}): {_message(response)}",
                    exits.CONFIG,
                    response.status_code,
                )
            if response.status_code >= 400:
                raise ClientError(
                    f"{_message(response)} ({response.status_code})",
                    exits.FAILED,
                    response.status_code,
                )
            try:
                return response.json()
            except ValueError:
                raise ClientError(
                    f"{method} {path}: the server's answer is not JSON; is {self.url} an "
                    "appyard server?",
                    exits.CONFIG,
                ) from None
        raise AssertionError("unreachable")

    def _wait(self, attempt: int, what: str) -> None:
        delay = self.retry.delay(attempt)
        self.verbose(f"{what}; retrying in {delay:.1f}s")
        time.sleep(delay)

    def build(self, ref: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call("GET", f"{NATIVE}/builds/{ref}")
        return body

    def findings(self, ref: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call("GET", f"{NATIVE}/builds/{ref}/findings")
        return body

    def output(self, ref: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call("GET", f"{NATIVE}/builds/{ref}/output")
        return body

    def upload_state(self, ref: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call("GET", f"{NATIVE}/builds/{ref}/upload")
        return body

    # -- the store ---------------------------------------------------------------------------

    def put(
        self,
        url: str,
        read: Callable[[], Iterator[bytes]],
        size: int,
        *,
        what: str,
        on_retry: Callable[[], None] = lambda: None,
    ) -> httpx.Response:
        """PUT ``size`` bytes (``read`` gives a fresh stream each attempt) to a signed URL,
        with retries; returns the store's answer (refusals raise)."""
        host = urlsplit(url).netloc
        for attempt in range(self.retry.attempts):
            try:
                response = self._store.put(
                    url,
                    content=read(),
                    headers={
                        "Content-Length": str(size),
                        "Content-Type": "application/octet-stream",
                    },
                )
            except httpx.TransportError as exc:
                if attempt + 1 >= self.retry.attempts:
                    raise ClientError(f"{what}: {type(exc).__name__} talking to {host}.") from None
                on_retry()
                self._wait(attempt, f"PUT {what} to {host}: {type(exc).__name__}")
                continue
            self.verbose(f"PUT {what} to {host} -> {response.status_code}")
            if response.status_code in RETRY_STATUSES and attempt + 1 < self.retry.attempts:
                on_retry()
                self._wait(attempt, f"PUT {what}: {response.status_code}")
                continue
            if response.status_code >= 400:
                raise ClientError(
                    f"{what}: the store refused it: {_message(response)} ({response.status_code})",
                    status=response.status_code,
                )
            return response
        raise AssertionError("unreachable")

    def get_file(
        self,
        url: str,
        target: Path,
        *,
        headers: dict[str, str] | None = None,
        advance: Callable[[int], None] = lambda n: None,
    ) -> tuple[int, str]:
        """Stream a signed URL into ``target``; returns (size, SHA-256)."""
        host = urlsplit(url).netloc
        for attempt in range(self.retry.attempts):
            digest = hashlib.sha256()
            size = 0
            try:
                with self._store.stream("GET", url, headers=headers or {}) as response:
                    self.verbose(f"GET output from {host} -> {response.status_code}")
                    if response.status_code in RETRY_STATUSES:
                        raise httpx.TransportError(f"status {response.status_code}")
                    if response.status_code >= 400:
                        response.read()
                        raise ClientError(
                            f"Download refused: {_message(response)} ({response.status_code})"
                        )
                    with open(target, "wb") as out:
                        for chunk in response.iter_bytes(READ_BLOCK):
                            out.write(chunk)
                            digest.update(chunk)
                            size += len(chunk)
                            advance(len(chunk))
                return size, digest.hexdigest()
            except httpx.TransportError as exc:
                if attempt + 1 >= self.retry.attempts:
                    raise ClientError(f"Download failed: {type(exc).__name__}.") from None
                advance(-size)
                self._wait(attempt, f"GET output from {host}: {exc}")
        raise AssertionError("unreachable")


# --- files ------------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(READ_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def read_range(
    path: Path, offset: int, size: int, advance: Callable[[int], None]
) -> Callable[[], Iterator[bytes]]:
    """A fresh stream of ``size`` bytes of ``path`` from ``offset``, counted as it goes."""

    def stream() -> Iterator[bytes]:
        with path.open("rb") as fh:
            fh.seek(offset)
            left = size
            while left > 0:
                block = fh.read(min(READ_BLOCK, left))
                if not block:
                    return
                left -= len(block)
                advance(len(block))
                yield block

    return stream


# --- resumable state --------------------------------------------------------------------------


class UploadState:
    """What a resumed run needs, kept in the config directory under the file's SHA-256:
    the server, the build and the multipart upload (no token, no signed URL)."""

    def __init__(self, folder: Path, sha256: str) -> None:
        self.path = folder / "uploads" / f"{sha256}.json"

    def load(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


# --- uploading --------------------------------------------------------------------------------


@dataclass
class Uploaded:
    job_id: str
    file_path: str
    multipart: bool
    parts_total: int = 0
    parts_sent: int = 0
    resumed: bool = False


class Meter:
    """Counts bytes from many threads for the progress display."""

    def __init__(self, on_change: Callable[[int], None]) -> None:
        self._lock = threading.Lock()
        self.done = 0
        self._on_change = on_change

    def advance(self, n: int) -> None:
        with self._lock:
            self.done += n
            done = self.done
        self._on_change(done)


def upload(
    server: Server,
    path: Path,
    *,
    sha256: str,
    version: str,
    signing_key: str | None,
    parallel: int,
    state_dir: Path,
    meter: Meter,
    say: Say,
    deadline: float | None,
) -> Uploaded:
    """Send ``path`` through the automation dialect, resuming an interrupted multipart
    upload of the same file to the same server when one is on record."""
    size = path.stat().st_size
    state = UploadState(state_dir, sha256)
    previous = state.load()
    if (
        previous
        and previous.get("server") == server.url
        and previous.get("version") == version
        and previous.get("signing_key") == signing_key
    ):
        resumed = _resume(server, path, previous, state, parallel, meter, say, deadline)
        if resumed is not None:
            return resumed
    state.clear()
    platform = PLATFORMS[path.suffix]
    request: dict[str, Any] = {
        "file_name": path.name,
        "platform": platform,
        "version": version,
        "file_size": size,
    }
    if signing_key is not None:
        request["signing_key_id"] = signing_key
    ticket = server.call("POST", "/automate/upload", body=request, idempotent=False)
    job_id = str(ticket["job_id"])
    record = {
        "server": server.url,
        "version": version,
        "signing_key": signing_key,
        "job_id": job_id,
        "file_path": ticket["file_path"],
        "upload_id": ticket.get("upload_id"),
        "multipart": bool(ticket.get("multipart")),
        "file_size": size,
    }
    state.save(record)
    if not ticket.get("multipart"):
        say(f"upload: job {job_id}, one PUT of {size} bytes")
        mark = meter.done

        def rewind() -> None:
            meter.advance(mark - meter.done)

        server.put(
            ticket["url"],
            read_range(path, 0, size, meter.advance),
            size,
            what="the file",
            on_retry=rewind,
        )
        state.clear()
        return Uploaded(job_id=job_id, file_path=ticket["file_path"], multipart=False)
    urls = {n + 1: url for n, url in enumerate(ticket["part_urls"])}
    say(
        f"upload: job {job_id}, {ticket['total_parts']} parts of {ticket['chunk_size']} bytes, "
        f"{parallel} at a time"
    )
    etags = _send_parts(
        server, path, urls, int(ticket["chunk_size"]), size, parallel, meter, deadline, job_id
    )
    _complete(server, ticket["file_path"], ticket["upload_id"], etags)
    state.clear()
    return Uploaded(
        job_id=job_id,
        file_path=ticket["file_path"],
        multipart=True,
        parts_total=int(ticket["total_parts"]),
        parts_sent=len(urls),
    )


def _resume(
    server: Server,
    path: Path,
    previous: dict[str, Any],
    state: UploadState,
    parallel: int,
    meter: Meter,
    say: Say,
    deadline: float | None,
) -> Uploaded | None:
    job_id = str(previous["job_id"])
    try:
        seen = server.upload_state(job_id)
    except ClientError as exc:
        if exc.status == 404:
            return None
        raise
    if seen.get("upload_id") != previous.get("upload_id"):
        return None
    if seen["state"] == "received":  # completed before the interruption
        state.clear()
        say(f"upload: job {job_id} was already uploaded")
        return Uploaded(
            job_id=job_id,
            file_path=seen["file_path"],
            multipart=bool(seen["multipart"]),
            resumed=True,
        )
    if seen["state"] != "pending":
        say(f"upload: the earlier upload of job {job_id} is {seen['state']}; starting again")
        return None
    if not seen["multipart"]:
        # a single PUT cannot be resumed: end the old build (freeing its slot) and send anew
        server.call(
            "POST",
            "/automate/upload/abort",
            body={"file_path": seen["file_path"]},
            idempotent=False,
        )
        say(f"upload: the interrupted single upload of job {job_id} was aborted; sending again")
        return None
    size = path.stat().st_size
    chunk = int(seen["chunk_size"])
    have = {int(p["PartNumber"]): str(p["ETag"]) for p in seen["parts"]}
    held = sum(int(p["Size"]) for p in seen["parts"])
    meter.advance(held)
    urls = {int(n): url for n, url in seen["missing_part_urls"].items()}
    say(
        f"upload: resuming job {job_id}: {len(have)} of {seen['total_parts']} parts already on "
        f"the server, sending {len(urls)}"
    )
    etags = dict(have)
    etags.update(_send_parts(server, path, urls, chunk, size, parallel, meter, deadline, job_id))
    _complete(server, seen["file_path"], seen["upload_id"], etags)
    state.clear()
    return Uploaded(
        job_id=job_id,
        file_path=seen["file_path"],
        multipart=True,
        parts_total=int(seen["total_parts"]),
        parts_sent=len(urls),
        resumed=True,
    )


class Timeout(ClientError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exits.TIMEOUT)


def _send_parts(
    server: Server,
    path: Path,
    urls: dict[int, str],
    chunk: int,
    size: int,
    parallel: int,
    meter: Meter,
    deadline: float | None,
    job_id: str,
) -> dict[int, str]:
    """PUT the parts in ``urls``, ``parallel`` at a time; returns their ETags."""
    stop = threading.Event()

    def send(n: int) -> tuple[int, str]:
        if stop.is_set():
            raise ClientError("stopped")
        if deadline is not None and time.monotonic() > deadline:
            raise Timeout(f"--timeout ran out while uploading job {job_id}.")
        offset = (n - 1) * chunk
        length = min(chunk, size - offset)
        sent = [0]

        def count(k: int) -> None:
            sent[0] += k
            meter.advance(k)

        def rewind() -> None:
            meter.advance(-sent[0])
            sent[0] = 0

        response = server.put(
            urls[n],
            read_range(path, offset, length, count),
            length,
            what=f"part {n}",
            on_retry=rewind,
        )
        etag = response.headers.get("etag")
        if not etag:
            raise ClientError(f"part {n}: the store gave no ETag.")
        return n, etag

    etags: dict[int, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = [pool.submit(send, n) for n in sorted(urls)]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in done if f.exception() is not None]
        if failed:
            stop.set()
            for f in futures:
                f.cancel()
            error = failed[0].exception()
            assert error is not None
            raise error
        for f in futures:
            n, etag = f.result()
            etags[n] = etag
    return etags


def _complete(server: Server, file_path: str, upload_id: str, etags: dict[int, str]) -> None:
    parts = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
    server.call(
        "POST",
        "/automate/upload/complete",
        body={"file_path": file_path, "upload_id": upload_id, "parts": parts},
        idempotent=False,
    )
