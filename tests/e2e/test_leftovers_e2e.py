"""A server killed with ``kill -9`` in the middle of an upload leaves a half-written file; the
next start removes it (and a killed job's working folder), while files of live processes stay.
And what appyard writes is private to its user: files 0600, folders 0700."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.conftest import FIXTURES
from tests.e2e.conftest import Server, start_server

SIZE = 64 * 1024 * 1024


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".log")}


def half_sent_put(url: str) -> socket.socket:
    """Start a PUT of ``SIZE`` bytes to ``url`` and send 8 MiB of it (the socket stays open)."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall(
        f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {SIZE}\r\n\r\n".encode()
    )
    for _ in range(8):
        sock.sendall(os.urandom(1024 * 1024))
    return sock


def wait_for(condition: object, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_what_a_killed_server_left_is_removed_on_the_next_start(
    tmp_path: Path, database_url: str
) -> None:
    data = tmp_path / "srv"
    first = start_server(data, database_url)
    try:
        ticket = httpx.post(
            f"{first.url}/automate/upload",
            json={"file_name": "app.apk", "platform": "android", "version": "production"},
            headers={"Authorization": f"Bearer {first.key}"},
        ).json()
        before = files_under(data)
        sock = half_sent_put(ticket["upload_url"])
        wait_for(lambda: files_under(data) - before, "the upload's temporary file")
        left = files_under(data) - before
        first.proc.kill()  # kill -9: no cleanup runs
        first.proc.wait()
        sock.close()
    finally:
        first.stop()
    assert left and all(p.exists() for p in left)
    dead_job = data / "work" / f"job-p{first.proc.pid}-abc123"
    dead_job.mkdir(parents=True)
    (dead_job / "input.apk").write_bytes(b"x" * 1024)
    live = data / "spool" / f"form-p{os.getpid()}-0123456789abcdef"  # this process is alive
    live.write_bytes(b"still being written")

    second: Server = start_server(data, database_url)
    try:
        assert not [p for p in left if p.exists()], left
        assert not dead_job.exists()
        assert live.exists()
        assert "leftovers.removed" in second.log.read_text()
    finally:
        second.stop()
        live.unlink()


def test_what_appyard_writes_is_private_to_its_user(server: Server) -> None:
    ticket = httpx.post(
        f"{server.url}/automate/upload",
        json={"file_name": "app.apk", "platform": "android", "version": "production"},
        headers={"Authorization": f"Bearer {server.key}"},
    ).json()

    assert (
        httpx.put(
            ticket["upload_url"], content=(FIXTURES / "fixture-release-v1v2v3.apk").read_bytes()
        ).status_code
        == 200
    )
    written = [p for p in server.data_dir.rglob("*") if not p.name.endswith(".log")]
    assert any(p.is_file() for p in written) and any(p.is_dir() for p in written)
    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
