"""``appyard serve`` killed with SIGKILL in the middle of each way bytes arrive: a signed single
PUT, a multipart ``complete`` (before it answered, and after it committed but before its answer
reached the client), and the two form uploads (store CI ``/portal/api/uploads/ci``,
distribution ``/v1/integrations/builds``). A new server starts on the same data; the client
sends the same request again and it succeeds; the build completes with the output a run without
faults gives; nothing is left after the sweep."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.faults.conftest import Site, audit, retrying, wait_settled

MIB = 1024 * 1024


def half_sent(url: str, head: str, body: bytes, total: int) -> socket.socket:
    """Open a request to ``url`` announcing ``total`` bytes of body and send ``body`` (fewer);
    the socket stays open, as a client's would while the server dies."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    sock.sendall(f"{head} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode())
    return _send(sock, body, total)


def _send(sock: socket.socket, body: bytes, total: int, headers: str = "") -> socket.socket:
    sock.sendall(f"{headers}Content-Length: {total}\r\n\r\n".encode())
    sock.sendall(body)
    return sock


def wait_for_bytes(folder: Path, at_least: int, timeout: float = 20) -> None:
    """Until the server has written ``at_least`` bytes to some file under ``folder``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sizes = [p.stat().st_size for p in folder.rglob("*") if p.is_file()]
        if sizes and max(sizes) >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"the server wrote nothing under {folder}")


def test_serve_killed_during_a_single_put(site: Site, signed_apk: Path) -> None:
    data = signed_apk.read_bytes()
    serve = site.serve()
    headers = {"Authorization": f"Bearer {site.key}"}
    ticket = httpx.post(f"{serve.url}/automate/upload", headers=headers, json={
        "file_name": "app.apk", "platform": "android", "version": "production",
        "file_size": len(data),
    }).json()  # fmt: skip
    sock = half_sent(ticket["upload_url"], "PUT", data[: 8 * MIB], len(data))
    wait_for_bytes(site.data_dir / "blobs" / "tmp", 4 * MIB)
    serve.kill9()
    sock.close()

    serve = site.serve(name="serve-2", port=serve.port)
    retrying(lambda: httpx.put(ticket["upload_url"], content=data, timeout=60),
             ok=lambda r: r.status_code == 200)  # fmt: skip
    with httpx.Client(base_url=serve.url, headers=headers, timeout=30) as api:
        done = wait_settled(api, ticket["job_id"])
    assert done["status"] == "completed", done
    audit(site)


def _multipart(site: Site, url: str, data: bytes) -> tuple[dict[str, object], dict[str, object]]:
    headers = {"Authorization": f"Bearer {site.key}"}
    ticket = httpx.post(f"{url}/automate/upload", headers=headers, json={
        "file_name": "app.apk", "platform": "android", "version": "production",
        "file_size": len(data),
    }).json()  # fmt: skip
    assert ticket["multipart"] is True, ticket
    chunk = int(ticket["chunk_size"])
    parts = []
    for number, part_url in enumerate(ticket["part_urls"], start=1):
        piece = data[(number - 1) * chunk : number * chunk]
        r = httpx.put(part_url, content=piece, timeout=60)
        assert r.status_code == 200, r.text
        parts.append({"ETag": r.headers["ETag"], "PartNumber": number})
    complete = {"file_path": ticket["file_path"], "upload_id": ticket["upload_id"],
                "parts": parts}  # fmt: skip
    return ticket, complete


@pytest.mark.parametrize("when", ["before_it_answered", "after_it_committed"])
def test_serve_killed_during_a_multipart_complete(site: Site, signed_apk: Path, when: str) -> None:
    site.env |= {"APPYARD_MULTIPART_THRESHOLD": str(8 * MIB),
                 "APPYARD_MULTIPART_CHUNK_SIZE": str(10 * MIB)}  # fmt: skip
    data = signed_apk.read_bytes()
    serve = site.serve()
    headers = {"Authorization": f"Bearer {site.key}"}
    ticket, complete = _multipart(site, serve.url, data)
    if when == "before_it_answered":
        # The request reaches a server that is stopped, and dies there.
        os.kill(serve.pid, signal.SIGSTOP)
        import json

        body = json.dumps(complete).encode()
        sock = socket.create_connection(("127.0.0.1", serve.port or 0), timeout=30)
        sock.sendall(
            f"POST /automate/upload/complete HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {site.key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        serve.kill9()
        sock.close()
    else:
        # The complete went through, but its answer never reached the client.
        r = httpx.post(f"{serve.url}/automate/upload/complete", headers=headers, json=complete)
        assert r.status_code == 200, r.text
        serve.kill9()

    serve = site.serve(name="serve-2", port=serve.port)
    with httpx.Client(base_url=serve.url, headers=headers, timeout=60) as api:
        r = retrying(lambda: api.post("/automate/upload/complete", json=complete),
                     ok=lambda r: r.status_code == 200)  # fmt: skip
        assert r.json()["job_id"] == ticket["job_id"]
        done = wait_settled(api, str(ticket["job_id"]))
    assert done["status"] == "completed", done
    audit(site)


FORM_BOUNDARY = "faultsboundary7MA4YWxkTrZu0gW"


def form_body(field: str, data: bytes, fields: dict[str, str]) -> bytes:
    head = f"--{FORM_BOUNDARY}\r\nContent-Disposition: form-data; name="
    out = b""
    for name, value in fields.items():
        out += f'{head}"{name}"\r\n\r\n{value}\r\n'.encode()
    out += f'{head}"{field}"; filename="app.apk"\r\n'.encode()
    out += b"Content-Type: application/octet-stream\r\n\r\n"
    return out + data + f"\r\n--{FORM_BOUNDARY}--\r\n".encode()


@pytest.mark.parametrize("dialect", ["store_ci", "distribution"])
def test_serve_killed_during_a_form_upload(site: Site, signed_apk: Path, dialect: str) -> None:
    data = signed_apk.read_bytes()
    serve = site.serve()
    if dialect == "store_ci":
        token = site.admin_key("--kind", "ci")
        path, field, fields, created = "/portal/api/uploads/ci", "apk", {}, 201
    else:
        token = site.admin_key("--kind", "app", "--app", "myapp")
        path, field, created = "/v1/integrations/builds", "build", 200
        fields = {"versionName": "1.0.0", "changelog": "fault test"}
    body = form_body(field, data, fields)
    sock = socket.create_connection(("127.0.0.1", serve.port or 0), timeout=30)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={FORM_BOUNDARY}\r\n".encode()
    )
    _send(sock, body[: 8 * MIB], len(body))
    wait_for_bytes(site.data_dir / "spool", 4 * MIB)
    serve.kill9()
    sock.close()

    serve = site.serve(name="serve-2", port=serve.port)
    content_type = f"multipart/form-data; boundary={FORM_BOUNDARY}"
    r = retrying(
        lambda: httpx.post(
            f"{serve.url}{path}",
            content=body,
            timeout=60,
            headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
        ),
        ok=lambda r: r.status_code == created,
    )
    assert r.status_code == created, r.text
    deadline = time.monotonic() + 90
    while True:
        found = audit_ready(site)
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    result = audit(site)
    assert [b.status for b in result.builds] == ["completed"], result.builds


def audit_ready(site: Site) -> bool:
    """Whether every job of the site has ended (read from its database)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(site.database_url)
    try:
        with engine.connect() as conn:
            states = [r.state for r in conn.execute(text("SELECT state FROM jobs"))]
    finally:
        engine.dispose()
    return bool(states) and all(s in ("succeeded", "failed", "cancelled") for s in states)
