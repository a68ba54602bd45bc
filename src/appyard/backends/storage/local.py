"""Local-disk blob store: a production backend for the embedded shape.

Objects live under ``root/objects/<key>``; multipart parts under ``root/multipart/<id>/``.
Keys are validated and every resolved path is kept under the root. Writes go to a temporary
file in the same directory and are published with an atomic link, so nothing half-written is
ever visible under its key. A signed PUT's bytes are stored, not hashed: the build's job
hashes its input as it reads it (as it must on S3, which reports no SHA-256), so hashing here
too was a second pass over every upload on the request's critical path; ETags are opaque
tokens, new for every write, as S3 clients expect. ``write`` (the server's own objects) still
returns the SHA-256.

Signed URLs point at this server itself (``<public_url>/_blob/<token>``, served by
``local_http.py``; at ``<download_url>/_blob/<token>`` when ``appyard serve`` runs the blob
listener of ``local_listener.py``, which receives and sends the bytes off the API's event
loop); a token is an HMAC-SHA256-signed, expiring
description of one operation (put one object up to N bytes, put one part, get one object).

A signed PUT is good for one upload: :meth:`LocalBlobStore.presign_put` opens a slot for the
key (``root/slots/``), publishing the object closes it, and so does :meth:`delete` (a cancelled
upload, a deleted build or key): a PUT without its slot is refused before a byte is read.
The store reports each object a signed PUT published to its listener (core's arrivals).

Multipart parts land in place in one data file (completing moves no bytes) when a part is
sent for the first time; a part sent again is written beside it and copied over only when
``complete`` names its ETag, so a part upload that breaks off never damages a stored part,
and no part writes past its own slot.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from appyard import errors
from appyard.core.models import Part
from appyard.core.ports import (
    ArrivalListener,
    BlobInfo,
    SignedRequest,
    StoreLocation,
    copy_hashed,
)
from appyard.core.spool import (
    HashedFile,
    SpoolFile,
    orphaned,
    owned_name,
    pid_alive,
    remove_orphans,
)

_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._()+ \-]*(/[A-Za-z0-9_][A-Za-z0-9._()+ \-]*)*$")
_UPLOAD_ID = re.compile(r"^[a-f0-9]{32}$")
CHUNK = 1024 * 1024
log = logging.getLogger("appyard.blob")


@dataclass(frozen=True)
class Grant:
    """A verified signed-URL token."""

    op: str  # "put" | "part" | "get"
    key: str
    max_size: int = 0
    upload_id: str = ""
    part_number: int = 0
    file_name: str = ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def etag_of(sha256_hex: str) -> str:
    return f'"{sha256_hex[:32]}"'


def new_etag() -> str:
    """The ETag of one write of unhashed bytes: opaque, and new each time."""
    return f'"{secrets.token_hex(16)}"'


class LocalBlobStore:
    reports_arrivals = True
    location = StoreLocation(id="local", name="appyard local storage")

    def __init__(
        self, root: Path, *, public_url: str, secret: bytes, download_url: str = ""
    ) -> None:
        self.root = root.resolve()
        self.objects = self.root / "objects"
        self.multipart = self.root / "multipart"
        self.slots = self.root / "slots"
        self.tmp = self.root / "tmp"  # files being written, published by a link into objects/
        for folder in (self.objects, self.multipart, self.slots, self.tmp):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._listeners: list[ArrivalListener] = []
        # signed PUTs and GETs: the blob listener's address when `appyard serve` runs one
        self.transfer_url = (download_url or public_url).rstrip("/")
        self._secret = hashlib.sha256(b"appyard-local-blob-url\0" + secret).digest()

    # -- paths -------------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key.split("/") or len(key) > 1024:
            raise errors.BadRequest(f"Invalid object key {key!r}.")
        path = (self.objects / key).resolve()
        if not path.is_relative_to(self.objects):
            raise errors.BadRequest(f"Invalid object key {key!r}.")
        return path

    def _slot(self, key: str) -> Path:
        return self.slots / hashlib.sha256(key.encode()).hexdigest()

    def has_slot(self, key: str) -> bool:
        """Whether a signed PUT may still publish ``key``."""
        return self._slot(key).exists()

    # -- arrivals ----------------------------------------------------------------------------
    def listen(self, listener: ArrivalListener) -> None:
        self._listeners.append(listener)

    def report(self, key: str, info: BlobInfo) -> None:
        """An object a signed PUT published: tell the listeners (core's arrivals). A listener
        that fails is logged; the object stays, and the upload sweep finds it."""
        for listener in self._listeners:
            try:
                listener(key, info)
            except Exception:
                log.exception("blob.report_failed")

    def _part_dir(self, upload_id: str) -> Path:
        if not _UPLOAD_ID.match(upload_id):
            raise errors.UploadNotFound("Unknown multipart upload.")
        return self.multipart / upload_id

    # -- signed URLs -------------------------------------------------------------------------
    def _sign(self, payload: dict[str, Any], expires_in: int) -> str:
        payload = {**payload, "x": int(time.time()) + expires_in}
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        mac = _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())
        return f"{self.transfer_url}/_blob/{body}.{mac}"

    def verify(self, token: str, *, now: float | None = None) -> Grant:
        """The grant a token carries; SignedUrlInvalid when tampered with or expired."""
        body, _, mac = token.partition(".")
        try:
            good = hmac.compare_digest(
                _unb64(mac), hmac.new(self._secret, body.encode(), hashlib.sha256).digest()
            )
            payload = json.loads(_unb64(body)) if good else None
        except (ValueError, TypeError):
            payload = None
        if not isinstance(payload, dict):
            raise errors.SignedUrlInvalid("The signed URL is invalid.")
        if int(payload.get("x", 0)) < (time.time() if now is None else now):
            raise errors.SignedUrlInvalid("The signed URL has expired.")
        return Grant(
            op=str(payload["o"]),
            key=str(payload["k"]),
            max_size=int(payload.get("m", 0)),
            upload_id=str(payload.get("u", "")),
            part_number=int(payload.get("n", 0)),
            file_name=str(payload.get("f", "")),
        )

    def download(self, token: str) -> tuple[Grant, Path]:
        """The grant and file a signed download URL names: ``SignedUrlInvalid`` when the token
        is tampered with, expired or not for downloads, ``BlobNotFound`` when the object is
        gone. Both HTTP faces of the store (``local_http``, ``local_listener``) serve this."""
        grant = self.verify(token)
        if grant.op != "get":
            raise errors.SignedUrlInvalid("This signed URL is not for downloads.")
        path = self.path(grant.key)
        if not path.is_file():
            raise errors.BlobNotFound("The object does not exist.")
        return grant, path

    def upload(
        self, token: str, *, declared: int | None = None
    ) -> tuple[Grant, StreamingWrite | PartWrite]:
        """The grant a signed upload URL (a PUT or a part) carries and the writer for its body,
        before a byte of the body is read: ``SignedUrlInvalid`` when the token is tampered
        with, expired or not for uploads, ``UploadTooLarge`` when the ``declared`` length is
        over the grant's size, and what :meth:`writer` / :meth:`part_writer` refuse. Both
        HTTP faces of the store serve this; they call :meth:`published` after the commit."""
        grant = self.verify(token)
        if grant.op not in ("put", "part"):
            raise errors.SignedUrlInvalid("This signed URL is not for uploads.")
        if declared is not None and declared > grant.max_size:
            raise errors.UploadTooLarge(
                f"The body is larger than the {grant.max_size} bytes allowed."
            )
        if grant.op == "put":
            return grant, self.writer(grant.key, limit=grant.max_size)
        return grant, self.part_writer(grant.upload_id, grant.part_number, part_size=grant.max_size)

    def published(self, grant: Grant, info: BlobInfo) -> None:
        """An upload's writer committed: an object (not a part) is reported to the listeners."""
        if grant.op == "put":
            log.info("blob.stored bytes=%d", info.size)
            self.report(grant.key, info)

    def presign_put(
        self, key: str, *, max_size: int, expires_in: int, content_type: str | None = None
    ) -> SignedRequest:
        self.path(key)
        self._slot(key).touch(mode=0o600)
        url = self._sign({"o": "put", "k": key, "m": max_size}, expires_in)
        headers = {"Content-Type": content_type} if content_type else {}
        return SignedRequest(method="PUT", url=url, headers=headers)

    def presign_part(
        self, key: str, upload_id: str, part_number: int, *, max_size: int, expires_in: int
    ) -> SignedRequest:
        self._part_dir(upload_id)
        payload = {"o": "part", "k": key, "u": upload_id, "n": part_number, "m": max_size}
        return SignedRequest(method="PUT", url=self._sign(payload, expires_in))

    def presign_get(self, key: str, *, file_name: str, expires_in: int) -> SignedRequest:
        self.path(key)
        url = self._sign({"o": "get", "k": key, "f": file_name}, expires_in)
        return SignedRequest(method="GET", url=url)

    # -- writing -----------------------------------------------------------------------------
    def write(self, key: str, chunks: Iterable[bytes]) -> BlobInfo:
        final = self.path(key)
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        out = HashedFile(self.tmp / owned_name("write"))
        try:
            for chunk in chunks:
                out.write(chunk)
            sha = out.hexdigest()
            out.close()
            os.replace(out.path, final)
        finally:
            out.discard()  # only removes the temporary file when something failed
        return BlobInfo(key=key, size=out.size, etag=etag_of(sha), sha256=sha)

    def fetch(self, key: str, dest: Path) -> BlobInfo:
        """A hard link to the object at ``dest`` (another filesystem: a copy), hashed."""
        final = self.path(key)
        try:
            os.link(final, dest)
        except FileNotFoundError:
            raise errors.BlobNotFound(f"No object {key!r}.") from None
        except OSError:  # another filesystem
            with self.open_read(key) as src, open(dest, "xb") as out:
                size, sha = copy_hashed(src, out)
        else:
            with open(dest, "rb") as fh:
                size, sha = copy_hashed(fh)
        return BlobInfo(key=key, size=size, etag=etag_of(sha), sha256=sha)

    def adopt(self, key: str, path: Path) -> BlobInfo:
        """Move a finished file into the store (same filesystem: a rename, no copy)."""
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        size = path.stat().st_size
        try:
            os.link(path, final)
        except FileExistsError:
            raise errors.Conflict(f"An object already exists at {key!r}.") from None
        except OSError:  # another filesystem: copy, then publish atomically
            with open(path, "rb") as fh:
                self.write(key, iter(lambda: fh.read(CHUNK), b""))
        path.unlink(missing_ok=True)
        return BlobInfo(key=key, size=size, etag=f'"{final.stat().st_ino:x}-{size:x}"')

    def writer(self, key: str, *, limit: int) -> StreamingWrite:
        """An incremental writer for a signed PUT's body (see local_http), refusing more than
        ``limit`` bytes; publish with commit(). ``UploadGone`` when the PUT's slot is closed
        (already used, or its upload cancelled), ``Conflict`` when the object exists."""
        final = self.path(key)
        if final.exists():
            raise errors.Conflict("An object was already uploaded to this URL.")
        if not self.has_slot(key):
            raise errors.UploadGone(
                "This upload URL was already used, or its upload was cancelled."
            )
        return StreamingWrite(final, self.tmp, limit=limit, slot=self._slot(key))

    def part_writer(self, upload_id: str, part_number: int, *, part_size: int) -> PartWrite:
        """Part ``part_number`` of a multipart upload whose parts are ``part_size`` bytes (the
        last may be shorter)."""
        folder = self._part_dir(upload_id)
        if not folder.is_dir():
            raise errors.UploadGone(
                "The multipart upload was completed or aborted, or never existed."
            )
        return PartWrite(folder, part_number, part_size)

    # -- multipart ---------------------------------------------------------------------------
    def create_multipart(self, key: str) -> str:
        """Parts are written in place into one file (``<upload>/data``, at ``(n-1) * part
        size``), so completing an upload moves no bytes: a truncate and a link."""
        self.path(key)
        upload_id = secrets.token_hex(16)
        folder = self._part_dir(upload_id)
        folder.mkdir()
        (folder / PartWrite.DATA).touch(mode=0o600)
        return upload_id

    def list_parts(self, key: str, upload_id: str) -> list[Part]:
        folder = self._part_dir(upload_id)
        if not folder.is_dir():
            return []
        metas = sorted(map(_PartMeta.read, folder.glob("*.json")), key=lambda m: m.n)
        return [Part(number=m.n, size=m.size, etag=m.etag) for m in metas]

    def complete_multipart(self, key: str, upload_id: str, parts: list[Part]) -> BlobInfo:
        folder = self._part_dir(upload_id)
        metas = {m.n: m for m in map(_PartMeta.read, folder.glob("*.json"))}
        offset = 0
        chosen = []
        for part in parts:
            meta = metas.get(part.number)
            if meta is None or meta.etag != part.etag or meta.offset != offset:
                raise errors.InvalidParts(
                    f"Part {part.number} is missing, changed, or not where the parts before it "
                    "end (every part but the last must be the full part size)."
                )
            chosen.append(meta)
            offset += meta.size
        data = folder / PartWrite.DATA
        for meta in chosen:  # parts sent again were kept beside the data file: copy them over
            if meta.file:
                _copy_into(folder / meta.file, data, meta.offset)
        os.truncate(data, offset)
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(data, final)
        except FileExistsError:
            raise errors.Conflict(f"An object already exists at {key!r}.") from None
        shutil.rmtree(folder, ignore_errors=True)
        return BlobInfo(key=key, size=offset, etag=f'"{upload_id}-{len(parts)}"')

    def abort_multipart(self, key: str, upload_id: str) -> None:
        shutil.rmtree(self._part_dir(upload_id), ignore_errors=True)

    # -- reading -----------------------------------------------------------------------------
    def stat(self, key: str) -> BlobInfo | None:
        try:
            st = self.path(key).stat()
        except FileNotFoundError:
            return None
        return BlobInfo(key=key, size=st.st_size, etag=f'"{st.st_ino:x}-{st.st_size:x}"')

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        try:
            fh = open(self.path(key), "rb")
        except FileNotFoundError:
            raise errors.BlobNotFound(f"No object {key!r}.") from None
        with fh:
            yield fh

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
        self._slot(key).unlink(missing_ok=True)

    def remove_leftovers(self) -> int:
        """Remove what writers that were killed left behind: their temporary files, the
        "writing" markers and unfinished copies of multipart parts. Files of live writers
        (in this process or another) are left alone. Returns how many went."""
        removed = remove_orphans(self.tmp)
        for folder in self.multipart.iterdir() if self.multipart.is_dir() else ():
            named = {_PartMeta.read(m).file for m in folder.glob("*.json")}
            for path in folder.iterdir():
                if path.suffix == ".part" and path.name not in named and orphaned(path):
                    path.unlink(missing_ok=True)
                    removed += 1
                elif path.suffix == ".writing":
                    pid = path.read_text().strip()
                    if pid.isdigit() and not pid_alive(int(pid)):
                        path.unlink(missing_ok=True)
                        removed += 1
        return removed

    def check(self) -> None:
        """Fail, in one sentence, when the object and part directories are gone or cannot
        be written (a volume unmounted, or owned by another user)."""
        for folder in (self.objects, self.multipart):
            if not folder.is_dir():
                raise RuntimeError(f"The blob directory {folder} does not exist.")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise RuntimeError(f"The blob directory {folder} is not writable by this user.")


def _copy_into(source: Path, target: Path, offset: int) -> None:
    with open(source, "rb") as src:
        fd = os.open(target, os.O_WRONLY)
        try:
            at = offset
            while chunk := src.read(CHUNK):
                view = memoryview(chunk)
                while view:
                    done = os.pwrite(fd, view, at)
                    view, at = view[done:], at + done
        finally:
            os.close(fd)


class _Feed:
    """A request body fed in pieces to a :class:`SpoolFile`, never past ``limit`` bytes."""

    file: SpoolFile
    limit: int

    @property
    def size(self) -> int:
        return self.file.size

    def feed(self, chunk: bytes | memoryview) -> None:
        if self.file.size + len(chunk) > self.limit:
            raise errors.UploadTooLarge(f"The body is larger than the {self.limit} bytes allowed.")
        self.file.write(chunk)


class StreamingWrite(_Feed):
    """Bytes fed in pieces, published atomically by :meth:`commit`, which closes the signed
    PUT's slot."""

    def __init__(self, final: Path, tmp: Path, *, limit: int, slot: Path | None = None) -> None:
        self.final = final
        self.limit = limit
        self.slot = slot
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.file = SpoolFile(tmp / owned_name("put"))

    def commit(self) -> BlobInfo:
        """Publish; Conflict if the object already exists."""
        self.file.close()
        tmp = self.file.path
        try:
            os.link(tmp, self.final)  # fails if the key already holds an object
        except FileExistsError:
            raise errors.Conflict("An object was already uploaded to this URL.") from None
        finally:
            tmp.unlink(missing_ok=True)
        if self.slot is not None:
            self.slot.unlink(missing_ok=True)
        return BlobInfo(key=self.final.name, size=self.size, etag=new_etag())

    def discard(self) -> None:
        self.file.discard()


@dataclass(frozen=True)
class _PartMeta:
    n: int
    size: int
    etag: str
    offset: int
    file: str = ""  # a part sent again lives in this file beside the data file

    @classmethod
    def read(cls, path: Path) -> _PartMeta:
        data = json.loads(path.read_text())
        return cls(
            int(data["n"]),
            int(data["size"]),
            str(data["etag"]),
            int(data["offset"]),
            str(data.get("file", "")),
        )


class PartWrite(_Feed):
    """One multipart part. The first upload of a part writes in place into the upload's data
    file (one writer at a time, held by a ``.writing`` marker); a part sent again, or while
    another upload of it runs, is written to a file of its own, so the stored part stays as
    it was until the new one is whole. :meth:`commit` records size, ETag and place beside it.
    Until then the part does not exist: a broken part upload leaves nothing any part list
    names."""

    DATA = "data"

    def __init__(self, folder: Path, number: int, part_size: int) -> None:
        self.folder = folder
        self.number = number
        self.limit = part_size
        self.offset = (number - 1) * part_size
        self.meta_path = folder / f"{number:05d}.json"
        self.marker = folder / f"{number:05d}.writing"
        self.in_place = False
        if not self.meta_path.exists():
            try:
                fd = os.open(self.marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.write(fd, str(os.getpid()).encode())  # a killed writer's marker is found
                os.close(fd)
                self.in_place = True
            except FileExistsError:
                pass
        if self.in_place:
            self.side = ""
            self.file = SpoolFile(folder / self.DATA, at=self.offset)
        else:
            self.side = owned_name(f"{number:05d}", ".part")
            self.file = SpoolFile(folder / self.side)

    def commit(self) -> BlobInfo:
        self.file.close()
        etag = new_etag()
        earlier = _PartMeta.read(self.meta_path) if self.meta_path.exists() else None
        meta = {
            "n": self.number,
            "size": self.size,
            "etag": etag,
            "offset": self.offset,
            "file": self.side,
        }
        tmp = self.folder / f".{self.number:05d}-{secrets.token_hex(4)}.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self.meta_path)
        if self.in_place:
            self.marker.unlink(missing_ok=True)
        if earlier is not None and earlier.file and earlier.file != self.side:
            (self.folder / earlier.file).unlink(missing_ok=True)
        return BlobInfo(key=f"{self.number:05d}", size=self.size, etag=etag)

    def discard(self) -> None:
        self.file.close()
        if self.in_place:
            self.marker.unlink(missing_ok=True)
        elif self.side:
            (self.folder / self.side).unlink(missing_ok=True)
