"""S3-compatible blob store (AWS S3, MinIO, SeaweedFS, ...): the scale-out storage backend.

Configured by one URL, ``APPYARD_STORAGE_URL``::

    s3://<bucket>[/<prefix>]?endpoint=http://host:8333&region=us-east-1
        [&access_key=<id>&secret_key=<secret>]      credentials (else the AWS chain, below)
        [&public_endpoint=https://s3.example.com]   host that clients reach (signed URLs)
        [&addressing=path|virtual]                  default path (SeaweedFS, MinIO)

* ``endpoint`` is where appyard talks to the store; leave it out for AWS S3. ``region``
  defaults to ``us-east-1``. Signatures are always AWS Signature Version 4.
* Credentials: ``access_key`` and ``secret_key`` together, or neither, in which case boto3's
  standard chain is used (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``,
  ``AWS_PROFILE`` and ``~/.aws/credentials``, container and instance roles). No credentials at
  all fails at construction (startup) with one sentence. Query values are percent-decoded
  without turning ``+`` into a space, so AWS secrets containing ``+`` or ``/`` may be given as
  they are or percent-encoded. The URL holds a secret: it is never logged (``repr`` hides it).
* ``public_endpoint``: signed URLs are signed for, and point at, this host when appyard
  reaches the store at an internal address that clients cannot use. Default: ``endpoint``.
* Every key is stored under ``<prefix>/``; keys are validated as in the local store (no empty,
  ``.`` or ``..`` segments), so no key of one prefix can name an object under another.

Signed URLs go straight to the store; artifact bytes never pass through appyard.

**Limits of presigned PUT.** An S3 presigned PUT cannot bound the body size (only a presigned
POST policy can), so :meth:`S3BlobStore.presign_put`'s ``max_size`` is not enforced by the
store, and a presigned URL stays usable (it can overwrite the object) until it expires. The
true size is visible through :meth:`S3BlobStore.stat`; core must refuse an object larger than
the upload allows when it notices the upload. Presigned UploadPart URLs likewise take any
size; core checks the listed part sizes before completing.

Library errors are translated at this edge by :func:`map_errors`: a missing object becomes
``BlobNotFound``, an unknown multipart upload ``UploadNotFound``, a part list the store
refuses ``InvalidParts``. Anything else (bad credentials, a missing bucket, the store being
down) is left as the botocore error: an operator's problem, a 500 with a request id.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, unquote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from appyard import errors
from appyard.core.models import Part
from appyard.core.ports import (
    ArrivalListener,
    BlobInfo,
    SignedRequest,
    StoreLocation,
    copy_hashed,
)

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3: every part but the last
DEFAULT_PART_SIZE = 8 * MIB
READ_BUFFER = 1 * MIB

_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._()+ \-]*(/[A-Za-z0-9_][A-Za-z0-9._()+ \-]*)*$")
_PARAMS = {"endpoint", "region", "access_key", "secret_key", "public_endpoint", "addressing"}
_CONTENT_TYPES = {"apk": "application/vnd.android.package-archive"}

# Store error code -> core error; ``head_object`` has no body, so its 404 code is "404".
_ERRORS: dict[str, tuple[type[errors.AppyardError], str]] = {
    "NoSuchKey": (errors.BlobNotFound, "The object does not exist."),
    "404": (errors.BlobNotFound, "The object does not exist."),
    "NotFound": (errors.BlobNotFound, "The object does not exist."),
    "NoSuchUpload": (
        errors.UploadNotFound,
        "The multipart upload does not exist, or was already completed or aborted.",
    ),
    "InvalidPart": (errors.InvalidParts, "A listed part was not uploaded or its ETag differs."),
    "InvalidPartOrder": (errors.InvalidParts, "Parts must be listed in increasing order."),
    "EntityTooSmall": (errors.InvalidParts, "Every part but the last must be at least 5 MiB."),
}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def map_errors() -> Iterator[None]:
    """Translate the store's own errors into core errors (like httpx's ``map_exceptions``)."""
    try:
        yield
    except ClientError as exc:
        mapped = _ERRORS.get(error_code(exc))
        if mapped is None:
            raise
        kind, message = mapped
        raise kind(message) from exc


def _query(text: str) -> dict[str, str]:
    """Query parameters, percent-decoded but keeping ``+`` (AWS secrets contain it)."""
    params: dict[str, str] = {}
    for item in filter(None, text.split("&")):
        name, _, value = item.partition("=")
        name = unquote(name)
        if name not in _PARAMS:
            raise ValueError(
                f"Unknown S3 storage URL parameter {name!r}; "
                f"expected some of {', '.join(sorted(_PARAMS))}."
            )
        params[name] = unquote(value)
    return params


def _content_disposition(file_name: str) -> str:
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    ascii_name = (
        "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in base)
        or "download"
    )
    header = f'attachment; filename="{ascii_name}"'
    if ascii_name != base:
        header += f"; filename*=UTF-8''{quote(base, safe='')}"
    return header


class S3BlobStore:
    """A :class:`appyard.core.ports.BlobStore` over one bucket and prefix of an S3 store.

    One boto3 client (thread-safe) is made here and kept, so presigning N part URLs is local
    CPU work only (no request to the store, no client set-up per URL).
    """

    reports_arrivals = False  # presigned PUTs reach the store directly: core sweeps

    def __init__(
        self,
        url: str,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        list_page_size: int = 1000,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError("The S3 storage URL must look like s3://bucket/prefix?endpoint=...")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes.")
        params = _query(parts.query)
        self.bucket = parts.netloc
        self.prefix = unquote(parts.path).strip("/")
        if self.prefix and (not _KEY.match(self.prefix) or ".." in self.prefix.split("/")):
            raise ValueError(f"Invalid S3 key prefix {self.prefix!r}.")
        self.endpoint = params.get("endpoint") or None
        self.public_endpoint = params.get("public_endpoint") or self.endpoint
        self.region = params.get("region") or "us-east-1"
        addressing = params.get("addressing", "path")
        if addressing not in ("path", "virtual"):
            raise ValueError("addressing must be 'path' or 'virtual'.")
        access_key, secret_key = params.get("access_key"), params.get("secret_key")
        if bool(access_key) != bool(secret_key):
            raise ValueError(
                "Give both access_key and secret_key in the S3 storage URL, "
                "or neither (to use the AWS credential chain)."
            )
        self.part_size = part_size
        self.list_page_size = list_page_size
        self.location = StoreLocation(id="s3", name=f"S3 bucket {self.bucket}", region=self.region)

        session = boto3.session.Session(
            aws_access_key_id=access_key or None,
            aws_secret_access_key=secret_key or None,
            region_name=self.region,
        )
        if session.get_credentials() is None:
            raise ValueError(
                "S3 storage has no credentials: put access_key and secret_key in "
                "APPYARD_STORAGE_URL, or provide them through the AWS environment variables, "
                "profile or instance role."
            )
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing},
            retries={"mode": "standard", "max_attempts": 4},
            connect_timeout=10,
            read_timeout=120,
            max_pool_connections=32,
            tcp_keepalive=True,
            # Newer botocore adds CRC checksums (aws-chunked bodies) by default; not every
            # S3-compatible store accepts them.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: Any = session.client("s3", endpoint_url=self.endpoint, config=config)
        self._presigner: Any = (
            self._client
            if self.public_endpoint == self.endpoint
            else session.client("s3", endpoint_url=self.public_endpoint, config=config)
        )

    def __repr__(self) -> str:
        return (
            f"S3BlobStore(bucket={self.bucket!r}, prefix={self.prefix!r}, "
            f"endpoint={self.endpoint!r})"
        )

    # -- keys --------------------------------------------------------------------------------
    def object_name(self, key: str) -> str:
        """The store's name for ``key``: validated, under this store's prefix."""
        name = f"{self.prefix}/{key}" if self.prefix else key
        if not _KEY.match(key) or ".." in key.split("/") or len(name) > 1024:
            raise errors.BadRequest(f"Invalid object key {key!r}.")
        return name

    def check(self) -> None:
        """Fail with one sentence if the bucket cannot be reached (for startup checks)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            raise RuntimeError(
                f"S3 bucket {self.bucket!r} at {self.endpoint or 'AWS'} is not usable: "
                f"{error_code(exc) or exc}."
            ) from exc

    # -- signed URLs -------------------------------------------------------------------------
    def _presign(self, operation: str, params: dict[str, Any], expires_in: int) -> str:
        url = self._presigner.generate_presigned_url(
            operation, Params={"Bucket": self.bucket, **params}, ExpiresIn=expires_in
        )
        return str(url)

    def listen(self, listener: ArrivalListener) -> None:
        """S3 does not call back; arrivals are found by core's sweep."""

    def remove_leftovers(self) -> int:
        """Nothing is written locally; abandoned multipart uploads end with their upload."""
        return 0

    def presign_put(
        self, key: str, *, max_size: int, expires_in: int, content_type: str | None = None
    ) -> SignedRequest:
        """A presigned PUT (with a signed Content-Type when given). ``max_size`` cannot be
        enforced by S3: core checks the object's size when it arrives."""
        params: dict[str, Any] = {"Key": self.object_name(key)}
        headers = {}
        if content_type:
            params["ContentType"] = content_type
            headers["Content-Type"] = content_type
        url = self._presign("put_object", params, expires_in)
        return SignedRequest(method="PUT", url=url, headers=headers)

    def presign_part(
        self, key: str, upload_id: str, part_number: int, *, max_size: int, expires_in: int
    ) -> SignedRequest:
        params = {"Key": self.object_name(key), "UploadId": upload_id, "PartNumber": part_number}
        return SignedRequest(method="PUT", url=self._presign("upload_part", params, expires_in))

    def presign_get(self, key: str, *, file_name: str, expires_in: int) -> SignedRequest:
        extension = file_name.rsplit(".", 1)[-1].lower()
        params = {
            "Key": self.object_name(key),
            "ResponseContentDisposition": _content_disposition(file_name),
            "ResponseContentType": _CONTENT_TYPES.get(extension, "application/octet-stream"),
        }
        return SignedRequest(method="GET", url=self._presign("get_object", params, expires_in))

    # -- multipart ---------------------------------------------------------------------------
    def create_multipart(self, key: str) -> str:
        with map_errors():
            response = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=self.object_name(key)
            )
        return str(response["UploadId"])

    def list_parts(self, key: str, upload_id: str) -> list[Part]:
        """Every uploaded part, in order, one per number, as the store reports it (all pages).

        A part sent again replaces the earlier one on AWS S3 and MinIO. SeaweedFS keeps and lists
        both (and completes with the one whose ETag is named); only the newer is kept here, by
        ``LastModified`` (whole seconds, so a part re-sent with different bytes within the same
        second is ambiguous; a retry of the same bytes has the same ETag either way).
        """
        name = self.object_name(key)
        paginator = self._client.get_paginator("list_parts")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Key=name,
            UploadId=upload_id,
            PaginationConfig={"PageSize": self.list_page_size},
        )
        newest: dict[int, tuple[Any, Part]] = {}
        with map_errors():
            for page in pages:
                for item in page.get("Parts", []):
                    part = Part(
                        number=int(item["PartNumber"]),
                        size=int(item["Size"]),
                        etag=str(item["ETag"]),
                    )
                    modified = item.get("LastModified")
                    seen = newest.get(part.number)
                    if seen is None or (modified is not None and modified > seen[0]):
                        newest[part.number] = (modified, part)
        return [newest[number][1] for number in sorted(newest)]

    def complete_multipart(self, key: str, upload_id: str, parts: list[Part]) -> BlobInfo:
        """Assemble ``parts`` (numbers and the ETags the store returned for them)."""
        name = self.object_name(key)
        listed = [{"PartNumber": p.number, "ETag": p.etag} for p in parts]
        with map_errors():
            response = self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=name,
                UploadId=upload_id,
                MultipartUpload={"Parts": listed},
            )
            head = self._client.head_object(Bucket=self.bucket, Key=name)
        return BlobInfo(
            key=key, size=int(head["ContentLength"]), etag=str(response.get("ETag") or head["ETag"])
        )

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Remove the upload and its parts; an upload that is already gone is fine."""
        try:
            with map_errors():
                self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.object_name(key), UploadId=upload_id
                )
        except errors.UploadNotFound:
            pass

    # -- objects -----------------------------------------------------------------------------
    def stat(self, key: str) -> BlobInfo | None:
        """The object's real size and ETag, or None when there is no object."""
        try:
            with map_errors():
                head = self._client.head_object(Bucket=self.bucket, Key=self.object_name(key))
        except errors.BlobNotFound:
            return None
        return BlobInfo(key=key, size=int(head["ContentLength"]), etag=str(head["ETag"]))

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        """The object as a buffered stream over the GET response; never read whole."""
        with map_errors():
            response = self._client.get_object(Bucket=self.bucket, Key=self.object_name(key))
        with io.BufferedReader(_BodyReader(response["Body"]), buffer_size=READ_BUFFER) as fh:
            yield fh

    def write(self, key: str, chunks: Iterable[bytes]) -> BlobInfo:
        """Stream ``chunks`` to the object, hashing as they go, holding at most ~one part.

        Small objects are one PUT; larger ones a multipart upload of ``part_size`` parts
        (aborted if anything fails), so the object appears whole or not at all.
        """
        name = self.object_name(key)
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray()
        upload_id: str | None = None
        done: list[dict[str, Any]] = []

        def send_part(data: bytearray) -> None:
            nonlocal upload_id
            if upload_id is None:
                upload_id = self.create_multipart(key)
            with map_errors():
                response = self._client.upload_part(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    PartNumber=len(done) + 1,
                    Body=data,
                )
            done.append({"PartNumber": len(done) + 1, "ETag": response["ETag"]})

        try:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                buffer += chunk
                if len(buffer) >= self.part_size:  # parts need not be equal, only >= 5 MiB
                    send_part(buffer)
                    buffer = bytearray()
            if upload_id is None:
                with map_errors():
                    response = self._client.put_object(Bucket=self.bucket, Key=name, Body=buffer)
                etag = str(response["ETag"])
            else:
                if buffer:
                    send_part(buffer)
                with map_errors():
                    response = self._client.complete_multipart_upload(
                        Bucket=self.bucket,
                        Key=name,
                        UploadId=upload_id,
                        MultipartUpload={"Parts": done},
                    )
                etag = str(response["ETag"])
        except BaseException:
            if upload_id is not None:
                with suppress(Exception):
                    self.abort_multipart(key, upload_id)
            raise
        return BlobInfo(key=key, size=size, etag=etag, sha256=digest.hexdigest())

    def fetch(self, key: str, dest: Path) -> BlobInfo:
        """Download the object to ``dest``, hashing it as it comes."""
        with self.open_read(key) as src, open(dest, "xb") as out:
            size, sha = copy_hashed(src, out)
        return BlobInfo(key=key, size=size, etag="", sha256=sha)

    def adopt(self, key: str, path: Path) -> BlobInfo:
        """Upload the finished file at ``path`` (streamed, as :meth:`write`), then remove it."""
        with open(path, "rb") as fh:
            info = self.write(key, iter(lambda: fh.read(READ_BUFFER), b""))
        path.unlink(missing_ok=True)
        return info

    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is fine."""
        with map_errors():
            self._client.delete_object(Bucket=self.bucket, Key=self.object_name(key))


class _BodyReader(io.RawIOBase):
    """A raw stream over botocore's ``StreamingBody`` (which checks the length at the end)."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data: bytes = self._body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
