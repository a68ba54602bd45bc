"""The BlobStore contract, for every implementation (``blob_store`` = local | s3).

Signed URLs are used the way clients use them: real HTTP requests with httpx, to appyard's own
``/_blob`` routes for the local store and straight to the object store for S3.
"""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appyard import errors
from appyard.core.ports import BlobStore
from tests.backends.conftest import MakeBlobStore

MIB = 1024 * 1024
KEY = "t_1/uploads/android/production/42/app-release.apk"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:
        yield client


def _tamper(url: str) -> str:
    """Change one character of the signature (both stores end their URLs with it)."""
    at = len(url) - 10
    return url[:at] + ("0" if url[at] != "0" else "1") + url[at + 1 :]


def _pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# --- single signed PUT ----------------------------------------------------------------------------


def test_signed_put_then_stat_read_and_signed_get_round_trip(
    blob_store: BlobStore, http: httpx.Client
) -> None:
    data = os.urandom(300_000)
    url = blob_store.presign_put(KEY, max_size=len(data), expires_in=60).url

    put = http.put(url, content=data)

    assert put.status_code == 200, put.text
    info = blob_store.stat(KEY)
    assert info is not None and info.key == KEY and info.size == len(data)
    with blob_store.open_read(KEY) as fh:
        assert fh.read() == data
    get = http.get(blob_store.presign_get(KEY, file_name="app-release.apk", expires_in=60).url)
    assert get.status_code == 200
    assert get.content == data
    disposition = get.headers["content-disposition"]
    assert disposition.startswith("attachment") and 'filename="app-release.apk"' in disposition


@pytest.mark.parametrize("file_name", ["my app (1)+beta.apk", "a b.ipa"])
def test_signed_urls_work_for_every_file_name_core_accepts(
    blob_store: BlobStore, http: httpx.Client, file_name: str
) -> None:
    key = f"t_1/uploads/android/production/42/{file_name}"
    put = http.put(blob_store.presign_put(key, max_size=5, expires_in=60).url, content=b"bytes")
    assert put.status_code == 200, put.text
    assert blob_store.stat(key) is not None
    get = http.get(blob_store.presign_get(key, file_name=file_name, expires_in=60).url)
    assert get.status_code == 200 and get.content == b"bytes"


def test_stat_of_a_missing_object_is_none_and_reading_it_is_blob_not_found(
    blob_store: BlobStore, http: httpx.Client
) -> None:
    assert blob_store.stat(KEY) is None
    with pytest.raises(errors.BlobNotFound), blob_store.open_read(KEY):
        pass
    get = http.get(blob_store.presign_get(KEY, file_name="app-release.apk", expires_in=60).url)
    assert get.status_code == 404


def test_an_oversize_put_is_refused_or_its_true_size_is_visible_to_stat(
    blob_store: BlobStore, http: httpx.Client
) -> None:
    """Local refuses it (413); S3 presigned PUT cannot, so core must check stat() on notice."""
    url = blob_store.presign_put(KEY, max_size=10, expires_in=60).url

    put = http.put(url, content=b"x" * 11)

    info = blob_store.stat(KEY)
    if put.status_code == 413:
        assert info is None
    else:
        assert put.status_code == 200
        assert info is not None and info.size == 11


def test_a_tampered_signed_url_is_refused(blob_store: BlobStore, http: httpx.Client) -> None:
    put = http.put(
        _tamper(blob_store.presign_put(KEY, max_size=10, expires_in=60).url), content=b"x"
    )
    assert put.status_code == 403
    assert blob_store.stat(KEY) is None
    blob_store.write(KEY, [b"secret"])
    get = http.get(_tamper(blob_store.presign_get(KEY, file_name="a.apk", expires_in=60).url))
    assert get.status_code == 403


def test_an_expired_signed_url_is_refused(blob_store: BlobStore, http: httpx.Client) -> None:
    put = http.put(blob_store.presign_put(KEY, max_size=10, expires_in=0).url, content=b"x")
    assert put.status_code == 403
    blob_store.write(KEY, [b"secret"])
    get = http.get(blob_store.presign_get(KEY, file_name="a.apk", expires_in=0).url)
    assert get.status_code == 403


def test_a_download_url_cannot_upload(blob_store: BlobStore, http: httpx.Client) -> None:
    blob_store.write(KEY, [b"original"])
    url = blob_store.presign_get(KEY, file_name="a.apk", expires_in=60).url

    assert http.put(url, content=b"replaced").status_code == 403

    with blob_store.open_read(KEY) as fh:
        assert fh.read() == b"original"


# --- multipart ------------------------------------------------------------------------------------


def _put_parts(
    store: BlobStore, http: httpx.Client, upload_id: str, parts: list[bytes]
) -> list[str]:
    etags = []
    part_size = max(map(len, parts))  # the upload's part size: every part but the last fills it
    for number, data in enumerate(parts, start=1):
        url = store.presign_part(KEY, upload_id, number, max_size=part_size, expires_in=60).url
        response = http.put(url, content=data)
        assert response.status_code == 200, response.text
        etags.append(response.headers["etag"])
    return etags


def test_multipart_through_signed_part_urls_assembles_the_exact_bytes(
    blob_store: BlobStore, http: httpx.Client
) -> None:
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(1000)]
    upload_id = blob_store.create_multipart(KEY)

    etags = _put_parts(blob_store, http, upload_id, parts)

    listed = blob_store.list_parts(KEY, upload_id)
    assert [p.number for p in listed] == [1, 2, 3]
    assert [p.size for p in listed] == [len(p) for p in parts]
    assert [p.etag for p in listed] == etags
    assert blob_store.stat(KEY) is None  # nothing visible before completion
    info = blob_store.complete_multipart(KEY, upload_id, listed)
    assert info.key == KEY and info.size == sum(map(len, parts))
    stat = blob_store.stat(KEY)
    assert stat is not None and stat.size == info.size
    with blob_store.open_read(KEY) as fh:
        assert hashlib.sha256(fh.read()).digest() == hashlib.sha256(b"".join(parts)).digest()


def test_a_part_sent_again_is_listed_once(blob_store: BlobStore, http: httpx.Client) -> None:
    """A client retrying a part (same bytes) must not make the part list ambiguous."""
    parts = [os.urandom(5 * MIB), b"tail"]
    upload_id = blob_store.create_multipart(KEY)
    _put_parts(blob_store, http, upload_id, parts)

    [etag, _] = _put_parts(blob_store, http, upload_id, parts)

    listed = blob_store.list_parts(KEY, upload_id)
    assert [(p.number, p.size) for p in listed] == [(1, 5 * MIB), (2, 4)]
    assert listed[0].etag == etag
    assert blob_store.complete_multipart(KEY, upload_id, listed).size == 5 * MIB + 4
    with blob_store.open_read(KEY) as fh:
        assert fh.read() == b"".join(parts)


def test_abort_removes_the_parts_and_the_upload(blob_store: BlobStore, http: httpx.Client) -> None:
    upload_id = blob_store.create_multipart(KEY)
    _put_parts(blob_store, http, upload_id, [b"a" * 1000, b"b" * 10])
    late_url = blob_store.presign_part(KEY, upload_id, 3, max_size=10, expires_in=60).url

    blob_store.abort_multipart(KEY, upload_id)

    try:
        assert blob_store.list_parts(KEY, upload_id) == []
    except errors.UploadNotFound:
        pass
    assert http.put(late_url, content=b"c").status_code in (404, 410)  # S3: NoSuchUpload
    blob_store.abort_multipart(KEY, upload_id)  # twice is fine (the expiry sweep may race)
    assert blob_store.stat(KEY) is None


def test_a_tampered_part_url_is_refused(blob_store: BlobStore, http: httpx.Client) -> None:
    upload_id = blob_store.create_multipart(KEY)
    url = blob_store.presign_part(KEY, upload_id, 1, max_size=10, expires_in=60).url

    assert http.put(_tamper(url), content=b"x").status_code == 403

    assert blob_store.list_parts(KEY, upload_id) == []
    blob_store.abort_multipart(KEY, upload_id)


def test_a_2_gib_upload_gets_205_distinct_part_urls(blob_store: BlobStore) -> None:
    """A 2 GiB upload in 10 MiB parts is 205 URLs, made while the client waits (the time it
    takes is measured in bench/, not here)."""
    upload_id = blob_store.create_multipart(KEY)
    urls = [
        blob_store.presign_part(KEY, upload_id, n, max_size=10 * MIB, expires_in=3600).url
        for n in range(1, 206)
    ]

    assert len(set(urls)) == 205
    blob_store.abort_multipart(KEY, upload_id)


def test_a_short_part_before_the_last_is_refused_at_completion(
    blob_store: BlobStore, http: httpx.Client
) -> None:
    """Every part but the last fills the part size (S3's rule too: 5 MiB at least)."""
    upload_id = blob_store.create_multipart(KEY)
    part_size = 5 * MIB
    for number, data in enumerate([os.urandom(5 * MIB - 1), os.urandom(100)], start=1):
        url = blob_store.presign_part(KEY, upload_id, number, max_size=part_size, expires_in=60).url
        assert http.put(url, content=data).status_code == 200

    with pytest.raises(errors.AppyardError):
        blob_store.complete_multipart(KEY, upload_id, blob_store.list_parts(KEY, upload_id))
    assert blob_store.stat(KEY) is None
    blob_store.abort_multipart(KEY, upload_id)


# --- write / read / delete ------------------------------------------------------------------------


def test_write_streams_chunks_and_hashes_them_with_bounded_memory(blob_store: BlobStore) -> None:
    data = os.urandom(13 * MIB + 123)
    tracemalloc.start()
    try:
        info = blob_store.write(KEY, _pieces(data, 700 * 1024))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert info.key == KEY and info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert peak < 9 * MIB  # about one 5 MiB part plus one chunk, never the whole 13 MiB
    stat = blob_store.stat(KEY)
    assert stat is not None and stat.size == len(data)
    with blob_store.open_read(KEY) as fh:
        assert b"".join(iter(lambda: fh.read(MIB), b"")) == data


def test_open_read_streams_without_holding_the_object(blob_store: BlobStore) -> None:
    data = os.urandom(12 * MIB)
    blob_store.write(KEY, _pieces(data, MIB))
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        with blob_store.open_read(KEY) as fh:
            while chunk := fh.read(256 * 1024):
                digest.update(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert peak < 4 * MIB


def test_write_of_nothing_makes_an_empty_object(blob_store: BlobStore) -> None:
    info = blob_store.write(KEY, [])
    assert (info.size, info.sha256) == (0, hashlib.sha256(b"").hexdigest())
    with blob_store.open_read(KEY) as fh:
        assert fh.read() == b""


def test_write_replaces_and_delete_removes(blob_store: BlobStore) -> None:
    blob_store.write(KEY, [b"one"])
    blob_store.write(KEY, [b"two", b"!"])
    with blob_store.open_read(KEY) as fh:
        assert fh.read() == b"two!"

    blob_store.delete(KEY)

    assert blob_store.stat(KEY) is None
    blob_store.delete(KEY)  # deleting what is gone is fine


def test_a_write_that_fails_midway_leaves_no_object(blob_store: BlobStore) -> None:
    def chunks() -> Iterator[bytes]:
        yield os.urandom(6 * MIB)  # past one S3 part: a multipart upload is under way
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError, match="source went away"):
        blob_store.write(KEY, chunks())

    assert blob_store.stat(KEY) is None


def test_adopt_stores_a_file_and_removes_it(blob_store: BlobStore, tmp_path: Path) -> None:
    path = tmp_path / "signed.apk"
    path.write_bytes(b"signed output")

    info = blob_store.adopt(KEY, path)

    assert info.size == len(b"signed output")
    assert not path.exists()
    with blob_store.open_read(KEY) as fh:
        assert fh.read() == b"signed output"


def test_fetch_puts_the_object_at_a_path_with_its_sha256(
    blob_store: BlobStore, tmp_path: Path
) -> None:
    data = os.urandom(3 * MIB + 5)
    blob_store.write(KEY, _pieces(data, MIB))
    dest = tmp_path / "input.apk"

    info = blob_store.fetch(KEY, dest)

    assert dest.read_bytes() == data
    assert (info.size, info.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    # the job's copy goes with its work directory; the object stays
    dest.unlink()
    with blob_store.open_read(KEY) as fh:
        assert fh.read() == data


def test_fetch_of_a_missing_object_is_blob_not_found(blob_store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(errors.BlobNotFound):
        blob_store.fetch(KEY, tmp_path / "input.apk")


# --- keys -----------------------------------------------------------------------------------------


def test_keys_of_one_prefix_are_not_readable_through_another(
    make_blob_store: MakeBlobStore, http: httpx.Client
) -> None:
    mine, other = make_blob_store("tenant-a"), make_blob_store("tenant-b")
    mine.write(KEY, [b"private"])

    assert other.stat(KEY) is None
    with pytest.raises(errors.BlobNotFound), other.open_read(KEY):
        pass
    url = other.presign_get(KEY, file_name="a.apk", expires_in=60).url
    assert http.get(url).status_code == 404
    assert mine.stat(KEY) is not None


@pytest.mark.parametrize(
    "key", ["../t_2/x.apk", "t_1/../../t_2/x.apk", "/t_1/x.apk", "t_1//x.apk", "t_1/./x.apk", ""]
)
def test_keys_that_could_escape_their_prefix_are_refused(blob_store: BlobStore, key: str) -> None:
    with pytest.raises(errors.BadRequest):
        blob_store.presign_put(key, max_size=10, expires_in=60)
    with pytest.raises(errors.BadRequest):
        blob_store.write(key, [b"x"])
    with pytest.raises(errors.BadRequest):
        blob_store.stat(key)
