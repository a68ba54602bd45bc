"""Conditional downloads: the sendfile listener and the API port's ``GET /_blob/<token>``
(Starlette's FileResponse) answer every conditional request with the same status and
headers, and those are the ones RFC 9110 asks for (ETag, Last-Modified, If-None-Match and
If-Modified-Since -> 304, If-Range -> the range only when it names the file)."""

from __future__ import annotations

import email.utils
import os
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from appyard.backends.storage.local import LocalBlobStore
from appyard.backends.storage.local_http import blob_app
from appyard.backends.storage.local_listener import BlobListener

SIZE = 100_000
MTIME = 1_790_000_000  # 2026-09-21, a fixed time so the validators below are known
KEY = "t1/builds/b1/app-release.apk"


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    store = LocalBlobStore(tmp_path / "blobs", public_url="http://testserver", secret=b"s" * 32)
    store.write(KEY, [os.urandom(SIZE)])
    os.utime(store.path(KEY), (MTIME, MTIME))
    return store


ETAG = f'"{MTIME:x}-{SIZE:x}"'  # nginx's format: mtime and size in hex
DATE = email.utils.formatdate(MTIME, usegmt=True)
EARLIER = email.utils.formatdate(MTIME - 86400, usegmt=True)
LATER = email.utils.formatdate(MTIME + 86400, usegmt=True)
RANGE = {"Range": "bytes=10-19"}

# name -> (method, request headers, expected status)
CASES: dict[str, tuple[str, dict[str, str], int]] = {
    "plain": ("GET", {}, 200),
    "head": ("HEAD", {}, 200),
    "inm-etag": ("GET", {"If-None-Match": ETAG}, 304),
    "inm-weak-etag": ("GET", {"If-None-Match": f"W/{ETAG}"}, 304),
    "inm-list": ("GET", {"If-None-Match": f'"other", {ETAG}'}, 304),
    "inm-star": ("GET", {"If-None-Match": "*"}, 304),
    "inm-other": ("GET", {"If-None-Match": '"other"'}, 200),
    "inm-etag-head": ("HEAD", {"If-None-Match": ETAG}, 304),
    "ims-exact": ("GET", {"If-Modified-Since": DATE}, 304),
    "ims-later": ("GET", {"If-Modified-Since": LATER}, 304),
    "ims-earlier": ("GET", {"If-Modified-Since": EARLIER}, 200),
    "ims-invalid": ("GET", {"If-Modified-Since": "yesterday"}, 200),
    # If-None-Match wins over If-Modified-Since (RFC 9110 13.1.3)
    "inm-other-ims-later": ("GET", {"If-None-Match": '"other"', "If-Modified-Since": LATER}, 200),
    "inm-etag-ims-earlier": ("GET", {"If-None-Match": ETAG, "If-Modified-Since": EARLIER}, 304),
    "range": ("GET", RANGE, 206),
    "range-head": ("HEAD", RANGE, 206),
    "range-if-range-etag": ("GET", {**RANGE, "If-Range": ETAG}, 206),
    "range-if-range-date": ("GET", {**RANGE, "If-Range": DATE}, 206),
    "range-if-range-weak": ("GET", {**RANGE, "If-Range": f"W/{ETAG}"}, 200),
    "range-if-range-other": ("GET", {**RANGE, "If-Range": '"other"'}, 200),
    "range-if-range-earlier": ("GET", {**RANGE, "If-Range": EARLIER}, 200),
    "range-inm-etag": ("GET", {**RANGE, "If-None-Match": ETAG}, 304),
    "range-inm-other": ("GET", {**RANGE, "If-None-Match": '"other"'}, 206),
    "unsatisfiable": ("GET", {"Range": f"bytes={SIZE}-"}, 416),
    "unsatisfiable-if-range-other": (
        "GET",
        {"Range": f"bytes={SIZE}-", "If-Range": '"other"'},
        200,
    ),
}
COMPARED = (
    "etag",
    "last-modified",
    "content-length",
    "content-range",
    "content-type",
    "content-disposition",
    "accept-ranges",
)


def answer(response: httpx.Response) -> tuple[int, dict[str, str | None]]:
    if response.status_code == 416:  # bodies differ (JSON here, empty there): not compared
        return 416, {"content-range": response.headers.get("content-range")}
    return response.status_code, {h: response.headers.get(h) for h in COMPARED}


@pytest.mark.parametrize("case", sorted(CASES))
def test_both_download_routes_answer_a_conditional_request_alike(
    case: str, store: LocalBlobStore, listener: BlobListener
) -> None:
    method, headers, expected = CASES[case]
    token = store.presign_get(KEY, file_name="app.apk", expires_in=60).url.rsplit("/_blob/", 1)[1]

    fast = httpx.request(method, f"http://127.0.0.1:{listener.port}/_blob/{token}", headers=headers)
    with TestClient(blob_app(store)) as client:
        slow = client.request(method, f"/{token}", headers=headers)

    assert answer(fast) == answer(slow)
    assert fast.status_code == expected
    if expected in (200, 206):
        assert fast.headers["etag"] == ETAG and fast.headers["last-modified"] == DATE
        body = store.path(KEY).read_bytes()
        wanted = body[10:20] if expected == 206 else body
        assert fast.content == slow.content == (b"" if method == "HEAD" else wanted)
    if expected == 304:
        assert fast.headers["etag"] == ETAG and fast.content == slow.content == b""
        assert "content-length" not in fast.headers and "last-modified" not in fast.headers
