"""The blob listener of ``appyard serve``: real HTTP over loopback, compared with the API port's
``/_blob/<token>`` (the ASGI route), which must answer the same for the same token. The
promises every face of the store keeps for uploads (one PUT per URL, parts, limits) are in
``test_local_uploads.py``, which runs over both faces; here is what is the listener's own:
``sendfile`` downloads, bodies received on transfer threads, ``Expect: 100-continue``,
keep-alive across uploads and downloads, and clients that stall or vanish."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from appyard.backends.storage.local import LocalBlobStore
from appyard.backends.storage.local_http import blob_app
from appyard.backends.storage.local_listener import BlobListener

SIZE = 3 * 1024 * 1024 + 17


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs", public_url="http://testserver", secret=b"s" * 32)


@pytest.fixture
def payload(store: LocalBlobStore) -> bytes:
    data = os.urandom(SIZE)
    store.write("builds/b1/output.apk", [data[i : i + 65536] for i in range(0, SIZE, 65536)])
    return data


def on(listener: BlobListener, url: str) -> str:
    """The same signed URL, on the listener."""
    return f"http://127.0.0.1:{listener.port}/_blob/" + url.rsplit("/_blob/", 1)[1]


def get_url(store: LocalBlobStore, name: str = "app-release.apk", ttl: int = 60) -> str:
    return store.presign_get("builds/b1/output.apk", file_name=name, expires_in=ttl).url


def test_download_is_byte_identical_and_described_like_the_api_route(
    store: LocalBlobStore, listener: BlobListener, payload: bytes
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
    store: LocalBlobStore, listener: BlobListener, payload: bytes
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
    store: LocalBlobStore, listener: BlobListener, payload: bytes
) -> None:
    url = on(listener, get_url(store))

    beyond = httpx.get(url, headers={"Range": f"bytes={SIZE}-"})
    several = httpx.get(url, headers={"Range": "bytes=0-1,5-6"})

    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{SIZE}"
    assert "error" in beyond.json()
    assert several.status_code == 200 and several.content == payload


def test_tampered_expired_and_upload_tokens_are_refused(
    store: LocalBlobStore, listener: BlobListener, payload: bytes
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
    store: LocalBlobStore, listener: BlobListener
) -> None:
    url = on(listener, get_url(store))  # signed, but nothing was ever written

    missing = httpx.get(url)
    put = httpx.put(url, content=b"x")  # a download URL does not take uploads
    delete = httpx.delete(url)
    elsewhere = httpx.get(f"http://127.0.0.1:{listener.port}/automate/upload")

    assert (missing.status_code, missing.json()) == (404, {"error": "The object does not exist."})
    assert (put.status_code, put.json()) == (403, {"error": "This signed URL is not for uploads."})
    assert delete.status_code == 405 and delete.headers["allow"] == "GET, HEAD, PUT"
    assert elsewhere.status_code == 404


def test_keep_alive_serves_several_requests_on_one_connection(
    store: LocalBlobStore, listener: BlobListener, payload: bytes
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


def raw(listener: BlobListener, data: bytes) -> tuple[int, dict[str, str]]:
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def test_malformed_and_oversized_request_heads_get_a_clear_error(
    listener: BlobListener,
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
        listener = BlobListener(store, "127.0.0.1", taken.getsockname()[1])
        with pytest.raises(OSError):
            listener.start()


def test_a_connection_that_sends_no_request_is_closed_after_the_head_timeout(
    listener: BlobListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appyard.backends.storage import local_listener

    monkeypatch.setattr(local_listener, "HEAD_TIMEOUT", 0.3)
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as sock:
        sock.sendall(b"GET /_blob/x HTTP/1.1\r\n")  # never finished

        assert sock.recv(1024) == b""  # closed by the listener, well before our 5 s timeout


# -- uploads ------------------------------------------------------------------------------------

PUT_KEY = "t_1/uploads/android/prod/9/app.apk"


def put_url(store: LocalBlobStore, listener: BlobListener, max_size: int = SIZE) -> str:
    return on(listener, store.presign_put(PUT_KEY, max_size=max_size, expires_in=60).url)


def test_a_signed_put_is_stored_byte_identical_and_reported_once(
    store: LocalBlobStore, listener: BlobListener, caplog: pytest.LogCaptureFixture
) -> None:
    reported: list[tuple[str, int]] = []
    store.listen(lambda key, info: reported.append((key, info.size)))
    data = os.urandom(SIZE)  # more than one 1 MiB receive block, and a short last one

    caplog.set_level("INFO", logger="appyard.access")
    response = httpx.put(put_url(store, listener), content=data)

    assert response.status_code == 200 and response.headers["etag"].startswith('"')
    assert store.path(PUT_KEY).read_bytes() == data
    assert reported == [(PUT_KEY, SIZE)]
    assert not list(store.tmp.iterdir())
    # the listener writes the access line once the exchange is over: the client may read
    # the answer first
    deadline = time.monotonic() + 5
    while not (lines := [r for r in caplog.records if getattr(r, "method", "") == "PUT"]):
        assert time.monotonic() < deadline, "no access line for the PUT"
        time.sleep(0.01)
    line = lines[-1]
    assert (line.dialect, line.status, line.received) == ("blob", 200, SIZE)  # type: ignore[attr-defined]
    assert "[REDACTED]" in line.path and "." not in line.path  # type: ignore[attr-defined]


def test_expect_100_continue_is_answered_and_a_refusal_comes_before_the_body(
    store: LocalBlobStore, listener: BlobListener
) -> None:
    url = put_url(store, listener, max_size=10)
    path = url.split(str(listener.port), 1)[1]

    def head(length: int) -> bytes:
        return (
            f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
            "Expect: 100-continue\r\n\r\n"
        ).encode()

    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(head(11))  # over the grant: refused at once, no 100
        refused = sock.recv(65536)
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(head(5))
        interim = sock.recv(65536)
        sock.sendall(b"hello")
        final = sock.recv(65536)

    assert refused.startswith(b"HTTP/1.1 413 ") and b"10 bytes allowed" in refused
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.startswith(b"HTTP/1.1 200 ")
    assert store.path(PUT_KEY).read_bytes() == b"hello"


def test_parts_and_a_download_share_one_keep_alive_connection(
    store: LocalBlobStore, listener: BlobListener, payload: bytes
) -> None:
    upload_id = store.create_multipart(PUT_KEY)
    pieces = [os.urandom(2 * 1024 * 1024), os.urandom(1000)]
    conn = http.client.HTTPConnection("127.0.0.1", listener.port, timeout=10)
    try:
        etags = []
        for n, piece in enumerate(pieces, 1):
            url = store.presign_part(PUT_KEY, upload_id, n, max_size=len(pieces[0]), expires_in=60)
            conn.request("PUT", "/_blob/" + url.url.rsplit("/_blob/", 1)[1], body=piece)
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"")
            etags.append(response.getheader("etag"))
        conn.request("GET", "/_blob/" + get_url(store).rsplit("/_blob/", 1)[1])
        downloaded = conn.getresponse().read()
    finally:
        conn.close()

    assert [p.etag for p in store.list_parts(PUT_KEY, upload_id)] == etags
    assert len(set(etags)) == 2
    assert downloaded == payload


def test_a_client_that_stalls_mid_body_is_dropped_and_nothing_is_kept(
    store: LocalBlobStore, listener: BlobListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appyard.backends.storage import local_listener

    monkeypatch.setattr(local_listener, "IDLE_TIMEOUT", 1)
    url = put_url(store, listener)
    path = url.split(str(listener.port), 1)[1]
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {SIZE}\r\n\r\n".encode())
        sock.sendall(os.urandom(SIZE // 2))  # then nothing
        started = time.monotonic()
        closed = sock.recv(1024)
        waited = time.monotonic() - started

    assert closed == b"" and waited < 8  # dropped after about IDLE_TIMEOUT, without an answer
    assert not store.path(PUT_KEY).exists() and not list(store.tmp.iterdir())
    retried = httpx.put(url, content=b"whole")  # the URL is still good for one upload
    assert retried.status_code == 200 and store.path(PUT_KEY).read_bytes() == b"whole"


def test_stopping_the_listener_ends_an_upload_in_flight_and_keeps_nothing(
    store: LocalBlobStore,
) -> None:
    listener = BlobListener(store, "127.0.0.1", 0)
    listener.start()
    path = put_url(store, listener).split(str(listener.port), 1)[1]
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {SIZE}\r\n\r\n".encode())
        sock.sendall(b"x" * 1000)
        time.sleep(0.3)
        started = time.monotonic()
        listener.stop()

        assert time.monotonic() - started < 5
        assert sock.recv(1024) == b""
    assert not store.path(PUT_KEY).exists() and not list(store.tmp.iterdir())
