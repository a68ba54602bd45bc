"""The local store's signed uploads keep S3's promises over real HTTP on loopback.

* A part upload that does not complete leaves the stored part exactly as it was, and the
  completed object is byte-identical to the parts whose ETags ``complete`` names.
* A part never writes past its own slot; an oversize part is refused and changes nothing.
* A signed PUT is good for one upload: after its object was published, or its key deleted,
  it writes nothing (409/410), before reading the body.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from appyard.backends.storage.local import LocalBlobStore
from appyard.backends.storage.local_listener import BlobListener
from appyard.core.models import Part
from tests.backends.conftest import BlobHttp
from tests.conftest import free_port

KEY = "t_1/uploads/ios/production/7/app.ipa"
PART = 64 * 1024


@pytest.fixture(params=["api", "listener"])
def store(
    request: pytest.FixtureRequest, blob_http: BlobHttp, tmp_path: Path
) -> Iterator[LocalBlobStore]:
    """The store's signed URLs served by the API port's route (``local_http``) or by the blob
    listener of ``appyard serve`` (``local_listener``): both keep the same promises."""
    if request.param == "api":
        name = f"local-{os.urandom(4).hex()}"
        made = LocalBlobStore(
            tmp_path / "blobs", secret=b"s", public_url=f"{blob_http.base_url}/{name}"
        )
        blob_http.mount(name, made)
        yield made
        return
    port = free_port()
    made = LocalBlobStore(
        tmp_path / "blobs",
        secret=b"s",
        public_url="http://api.invalid",
        download_url=f"http://127.0.0.1:{port}",
    )
    listener = BlobListener(made, "127.0.0.1", port)
    listener.start()
    yield made
    listener.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def put_part(
    http: httpx.Client, store: LocalBlobStore, upload_id: str, n: int, data: bytes
) -> httpx.Response:
    url = store.presign_part(KEY, upload_id, n, max_size=PART, expires_in=60).url
    return http.put(url, content=data)


def broken_put(url: str, declared: int, sent: bytes) -> None:
    """A client that declares ``declared`` bytes, sends ``sent`` and drops the connection."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port or 80)) as sock:
        head = (
            f"PUT {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Length: {declared}\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        sock.sendall(head.encode() + sent)
    time.sleep(0.3)  # let the server notice the disconnect


def complete(store: LocalBlobStore, upload_id: str, etags: list[str], sizes: list[int]) -> bytes:
    pairs = enumerate(zip(etags, sizes, strict=True), 1)
    parts = [Part(number=n, size=s, etag=e) for n, (e, s) in pairs]
    store.complete_multipart(KEY, upload_id, parts)
    with store.open_read(KEY) as fh:
        return fh.read()


def test_a_part_sent_again_and_broken_off_leaves_the_stored_part_as_it_was(
    store: LocalBlobStore, http: httpx.Client
) -> None:
    upload_id = store.create_multipart(KEY)
    one, two = os.urandom(PART), os.urandom(PART // 2)
    etags = [
        put_part(http, store, upload_id, n, d).headers["ETag"] for n, d in ((1, one), (2, two))
    ]
    url = store.presign_part(KEY, upload_id, 1, max_size=PART, expires_in=60).url
    broken_put(url, PART, b"\xff" * (PART // 2))  # re-send part 1, drop halfway

    assert [p.etag for p in store.list_parts(KEY, upload_id)] == etags
    assert complete(store, upload_id, etags, [PART, PART // 2]) == one + two


def test_the_completed_object_has_the_bytes_of_the_etags_named(
    store: LocalBlobStore, http: httpx.Client
) -> None:
    upload_id = store.create_multipart(KEY)
    first, second = os.urandom(PART), os.urandom(PART)
    tail = os.urandom(100)
    put_part(http, store, upload_id, 1, first)
    put_part(http, store, upload_id, 2, tail)
    newer = put_part(http, store, upload_id, 1, second).headers["ETag"]  # sent again, whole
    stored = {p.number: p for p in store.list_parts(KEY, upload_id)}
    assert stored[1].etag == newer
    data = complete(store, upload_id, [newer, stored[2].etag], [PART, 100])
    assert data == second + tail


def test_an_oversize_part_is_refused_and_writes_nothing_into_the_next_part(
    store: LocalBlobStore, http: httpx.Client
) -> None:
    upload_id = store.create_multipart(KEY)
    two = os.urandom(PART // 4)
    etag2 = put_part(http, store, upload_id, 2, two).headers["ETag"]
    r = put_part(http, store, upload_id, 1, os.urandom(PART + 4096))  # first try: in place
    assert r.status_code == 413
    assert [p.number for p in store.list_parts(KEY, upload_id)] == [2]
    one = os.urandom(PART)
    etag1 = put_part(http, store, upload_id, 1, one).headers["ETag"]
    assert complete(store, upload_id, [etag1, etag2], [PART, PART // 4]) == one + two


def test_a_signed_put_writes_once(store: LocalBlobStore, http: httpx.Client) -> None:
    url = store.presign_put(KEY, max_size=100, expires_in=60).url
    assert http.put(url, content=b"first").status_code == 200
    again = http.put(url, content=b"second")
    assert again.status_code in (409, 410)
    with store.open_read(KEY) as fh:
        assert fh.read() == b"first"
    store.delete(KEY)  # the object goes (a deleted build): the URL still writes nothing
    assert http.put(url, content=b"third").status_code == 410
    assert store.stat(KEY) is None


def test_a_put_for_a_deleted_key_is_refused_before_its_body_is_read(
    store: LocalBlobStore,
) -> None:
    url = store.presign_put(KEY, max_size=2 * 1024**3, expires_in=60).url
    store.delete(KEY)  # its upload was cancelled
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=10) as sock:
        head = (
            f"PUT {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Length: {2 * 1024**3}\r\n\r\n"
        )
        sock.sendall(head.encode())  # no body at all: the answer must not wait for it
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 410")
    assert store.stat(KEY) is None


def test_more_bytes_than_allowed_are_refused_and_nothing_is_kept(
    store: LocalBlobStore, http: httpx.Client
) -> None:
    url = store.presign_put(KEY, max_size=1000, expires_in=60).url

    def body() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(4):
            yield b"x" * 400

    assert http.put(url, content=body()).status_code == 413
    assert store.stat(KEY) is None
    assert not [p for p in (store.root / "objects").rglob("*") if p.is_file()]
    assert http.put(url, content=b"y" * 1000).status_code == 200  # the URL is still good
