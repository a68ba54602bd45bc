"""Bodies are bounded before authentication, against a real ``appyard serve``: a 112 MB JSON
body with no credentials used to raise the server's memory by about a gigabyte before it
answered 401. Now it is a 413 whatever the framing, and the server's memory does not follow the
body."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.e2e.conftest import Server

BODY = 112 * 1024 * 1024
CHUNK = 1024 * 1024


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def send(server: Server, path: str, *, chunked: bool) -> str:
    """POST ``BODY`` bytes of JSON-looking data without credentials; the answer's status line.
    The body is sent until the server answers or closes the connection."""
    host, port = server.url.removeprefix("http://").split(":")
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BODY}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n\r\n"
    ).encode()
    piece = b"[" + b"1," * (CHUNK // 2 - 1) + b"1"
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        sent = 0
        answer = b""
        while sent < BODY:
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            if answer:
                break
            data = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
            try:
                sock.sendall(data)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        sock.setblocking(True)
        while b"\r\n" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    return answer.split(b"\r\n", 1)[0].decode()


@pytest.mark.parametrize(
    "path", ["/automate/upload/complete", "/frontend/get_applications", "/appyard/v1/auth/login"]
)
@pytest.mark.parametrize("chunked", [False, True])
def test_a_large_body_without_credentials_is_a_413_in_bounded_memory(
    server: Server, path: str, chunked: bool
) -> None:
    before = rss(server.proc.pid)
    status = send(server, path, chunked=chunked)
    after = rss(server.proc.pid)
    assert status.startswith("HTTP/1.1 413"), status
    assert after - before < 32 * 1024 * 1024, (before, after)
