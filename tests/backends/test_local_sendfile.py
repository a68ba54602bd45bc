"""The sendfile download listener: real HTTP over loopback, compared with the API port's
``GET /_blob/<token>`` (the ASGI route), which must answer the same for the same token."""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from appyard.backends.storage.local import LocalBlobStore
from appyard.backends.storage.local_http import blob_app
from appyard.backends.storage.local_sendfile import DownloadListener

SIZE = 3 * 1024 * 1024 + 17


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs", public_url="http://testserver", secret=b"s" * 32)


@pytest.fixture
def listener(store: LocalBlobStore) -> Iterator[DownloadListener]:
    srv = DownloadListener(store, "127.0.0.1", 0)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def payload(store: LocalBlobStore) -> bytes:
    data = os.urandom(SIZE)
    store.write("builds/b1/output.apk", [data[i : i + 65536] for i in range(0, SIZE, 65536)])
    return data


def on(listener: DownloadListener, url: str) -> str:
    """The same signed URL, on the listener."""
    return f"http://127.0.0.1:{listener.port}/_blob/" + url.rsplit("/_blob/", 1)[1]


def get_url(store: LocalBlobStore, name: str = "app-release.apk", ttl: int = 60) -> str:
    return store.presign_get("builds/b1/output.apk", file_name=name, expires_in=ttl).url


def test_download_is_byte_identical_and_described_like_the_api_route(
    store: LocalBlobStore, listener: DownloadListener, payload: bytes
) -> None:
    for name in ("app-release.apk", "résumé build.ipa"):
        url = get_url(store, name)
        fast = httpx.get(on(listener, url))
        with TestClient(blob_app(store)) as client:
            slow = client.get("/" + url.rsplit("/_blob/", 1)[1])

        assert fast.status_code == slow.status_code == 200
        assert fast.content == slow.content == payload
        for header in ("content-type", "content-length", "content-disposition"):
            assert fast.headers[header] == slow.headers[header], header


def test_head_and_ranges_resume_a_download(
    store: LocalBlobStore, listener: DownloadListener, payload: bytes
) -> None:
    url = on(listener, get_url(store))

    head = httpx.head(url)
    middle = httpx.get(url, headers={"Range": "bytes=1000-2999"})
    rest = httpx.get(url, headers={"Range": "bytes=3000000-"})
    tail = httpx.get(url, headers={"Range": "bytes=-10"})

    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(SIZE)
    assert head.headers["accept-ranges"] == "bytes"
    assert middle.status_code == 206 and middle.content == payload[1000:3000]
    assert middle.headers["content-range"] == f"bytes 1000-2999/{SIZE}"
    assert rest.content == payload[3000000:]
    assert tail.content == payload[-10:]


def test_unsatisfiable_range_is_416_and_a_list_of_ranges_gets_the_whole_file(
    store: LocalBlobStore, listener: DownloadListener, payload: bytes
) -> None:
    url = on(listener, get_url(store))

    beyond = httpx.get(url, headers={"Range": f"bytes={SIZE}-"})
    several = httpx.get(url, headers={"Range": "bytes=0-1,5-6"})

    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{SIZE}"
    assert "error" in beyond.json()
    assert several.status_code == 200 and several.content == payload


def test_tampered_expired_and_upload_tokens_are_refused(
    store: LocalBlobStore, listener: DownloadListener, payload: bytes
) -> None:
    url = on(listener, get_url(store))
    _body, mac = url.rsplit("/", 1)[1].split(".")
    tampered = url.replace(mac, ("A" if mac[0] != "A" else "B") + mac[1:])
    expired = on(listener, get_url(store, ttl=-1))
    upload = on(listener, store.presign_put("builds/b1/output.apk", max_size=10, expires_in=60).url)

    answers = {name: httpx.get(u) for name, u in [("t", tampered), ("e", expired), ("u", upload)]}

    assert {n: r.status_code for n, r in answers.items()} == {"t": 403, "e": 403, "u": 403}
    assert answers["e"].json() == {"error": "The signed URL has expired."}
    assert answers["u"].json() == {"error": "This signed URL is not for downloads."}


def test_missing_object_other_paths_and_methods(
    store: LocalBlobStore, listener: DownloadListener
) -> None:
    url = on(listener, get_url(store))  # signed, but nothing was ever written

    missing = httpx.get(url)
    put = httpx.put(url, content=b"x")
    elsewhere = httpx.get(f"http://127.0.0.1:{listener.port}/automate/upload")

    assert (missing.status_code, missing.json()) == (404, {"error": "The object does not exist."})
    assert put.status_code == 405 and "error" in put.json()
    assert elsewhere.status_code == 404


def test_keep_alive_serves_several_requests_on_one_connection(
    store: LocalBlobStore, listener: DownloadListener, payload: bytes
) -> None:
    path = "/_blob/" + get_url(store).rsplit("/_blob/", 1)[1]
    conn = http.client.HTTPConnection("127.0.0.1", listener.port, timeout=10)
    try:
        bodies = []
        for first in (0, 100, 200):
            conn.request("GET", path, headers={"Range": f"bytes={first}-{first + 9}"})
            response = conn.getresponse()
            bodies.append(response.read())
        assert bodies == [payload[0:10], payload[100:110], payload[200:210]]
    finally:
        conn.close()


def raw(listener: DownloadListener, data: bytes) -> tuple[int, dict[str, str]]:
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def test_malformed_and_oversized_request_heads_get_a_clear_error(
    listener: DownloadListener,
) -> None:
    assert raw(listener, b"GARBAGE\r\n\r\n")[0] == 400
    assert raw(listener, b"GET / HTTP/2\r\n\r\n")[0] == 400
    huge = b"GET /_blob/x HTTP/1.1\r\nX-Pad: " + b"a" * 10000 + b"\r\n\r\n"
    status, body = raw(listener, huge)
    assert status == 431 and "8 KiB" in body["error"]
    status, body = raw(listener, b"GET /_blob/x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
    assert status == 400 and "no request body" in body["error"]


def test_a_busy_port_is_reported_at_start(store: LocalBlobStore) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listener = DownloadListener(store, "127.0.0.1", taken.getsockname()[1])
        with pytest.raises(OSError):
            listener.start()


def test_a_connection_that_sends_no_request_is_closed_after_the_head_timeout(
    listener: DownloadListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appyard.backends.storage import local_sendfile

    monkeypatch.setattr(local_sendfile, "HEAD_TIMEOUT", 0.3)
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as sock:
        sock.sendall(b"GET /_blob/x HTTP/1.1\r\n")  # never finished

        assert sock.recv(1024) == b""  # closed by the listener, well before our 5 s timeout
