"""The HTTP side of the local blob store: the signed URLs it hands out are served here.

``PUT /_blob/<token>`` streams a request body to disk (never holding it in memory), refusing
more bytes than the token allows (413, keeping nothing) and PUTs whose slot is closed (410:
the URL was used, or its upload cancelled); a published object is reported to the store's
listener. ``GET /_blob/<token>`` serves an object with a file response (Granian's
``pathsend``; ``local_listener.py`` serves the same PUTs and GETs, off the API's event loop and
with ``sendfile(2)``, on a port of its own). Errors are ``{"error": "..."}``.

Downloads are conditional the same way on both faces (and on nginx's, below): an ``ETag`` in
nginx's format, ``Last-Modified``, ``If-None-Match`` / ``If-Modified-Since`` (304) and
``If-Range`` (the range only when it names this file, else the whole file).

With ``accel_redirect`` (``APPYARD_DOWNLOAD_ACCEL_REDIRECT``, e.g. ``/_protected/``) a GET is
checked here and answered with ``X-Accel-Redirect: <accel_redirect><key>`` and no body: nginx
sends the file from an ``internal`` location that maps that prefix onto the store's
``objects/`` directory (docs/deploy.md), with its own ranges, validators and ``sendfile``.
"""

from __future__ import annotations

import email.utils
import mimetypes
import os
from collections.abc import Mapping
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from appyard import errors
from appyard.backends.storage.local import LocalBlobStore

mimetypes.add_type("application/vnd.android.package-archive", ".apk")
mimetypes.add_type("application/octet-stream", ".aab")
mimetypes.add_type("application/octet-stream", ".ipa")


def media_type(file_name: str) -> str:
    return mimetypes.guess_type(file_name)[0] or "application/octet-stream"


def file_etag(stat: os.stat_result) -> str:
    """nginx's ETag of a file (its mtime and size in hex), so the API route, the sendfile
    listener and nginx in X-Accel-Redirect mode give one object the same validator, and a
    download resumes across a change of mode. Objects are written once under their key."""
    return f'"{int(stat.st_mtime):x}-{stat.st_size:x}"'


def http_date(stat: os.stat_result) -> str:
    return email.utils.formatdate(stat.st_mtime, usegmt=True)


def not_modified(headers: Mapping[str, str], stat: os.stat_result) -> bool:
    """Whether a GET or HEAD is answered 304 (RFC 9110 13.1.2, 13.1.3): ``If-None-Match``
    names the ETag (weak comparison, or ``*``); only when it is absent, ``If-Modified-Since``
    is no earlier than the file's modification time."""
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        tags = [tag.strip() for tag in if_none_match.split(",")]
        return "*" in tags or any(tag.removeprefix("W/") == file_etag(stat) for tag in tags)
    since = headers.get("if-modified-since")
    if since:
        try:
            when = email.utils.parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False  # an invalid date is ignored
        return when.tzinfo is not None and int(stat.st_mtime) <= when.timestamp()
    return False


def range_applies(headers: Mapping[str, str], stat: os.stat_result) -> bool:
    """``If-Range``: the ``Range`` header counts only when ``If-Range`` is absent or is
    exactly this file's (strong) ETag or ``Last-Modified``; otherwise the whole file (200)."""
    if_range = headers.get("if-range")
    return if_range is None or if_range in (file_etag(stat), http_date(stat))


def content_disposition(file_name: str) -> str:
    """What Starlette's ``FileResponse`` sends, so every download path agrees."""
    quoted = quote(file_name)
    if quoted != file_name:
        return f"attachment; filename*=utf-8''{quoted}"
    return f'attachment; filename="{file_name}"'


def accel_location(prefix: str, key: str) -> str:
    """The internal URI nginx serves ``key`` from (percent-encoded; nginx decodes it)."""
    return prefix + quote(key, safe="/")


def blob_status(exc: errors.AppyardError) -> int:
    """The HTTP status of a refused upload or download: a body over the size is 413 here
    (the dialects answer their own limits in their own shapes)."""
    return 413 if isinstance(exc, errors.UploadTooLarge) else exc.status


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def blob_app(store: LocalBlobStore, *, accel_redirect: str = "") -> Starlette:
    """The store's signed URLs; ``accel_redirect``: answer downloads with ``X-Accel-Redirect``
    under this prefix."""

    async def put(request: Request) -> Response:
        declared = request.headers.get("content-length")
        try:
            grant, writer = store.upload(
                request.path_params["token"],
                declared=int(declared) if declared is not None and declared.isdigit() else None,
            )
        except errors.AppyardError as exc:
            return _error(blob_status(exc), exc.message)
        try:
            async for chunk in request.stream():
                writer.feed(chunk)
            info = writer.commit()
        except errors.AppyardError as exc:
            writer.discard()
            return _error(blob_status(exc), exc.message)
        except BaseException:
            writer.discard()
            raise
        await run_in_threadpool(store.published, grant, info)
        return Response(status_code=200, headers={"ETag": info.etag})

    async def get(request: Request) -> Response:
        try:
            grant, path = store.download(request.path_params["token"])
            stat = path.stat()
        except errors.AppyardError as exc:
            return _error(exc.status, exc.message)
        except FileNotFoundError:  # deleted between the check and the stat
            return _error(404, "The object does not exist.")
        if accel_redirect:  # nginx answers validators and ranges itself
            return Response(
                headers={
                    "x-accel-redirect": accel_location(accel_redirect, grant.key),
                    "content-type": media_type(grant.file_name),
                    "content-disposition": content_disposition(grant.file_name),
                }
            )
        if not_modified(request.headers, stat):
            return Response(status_code=304, headers={"etag": file_etag(stat)})
        return FileResponse(
            path,
            filename=grant.file_name,
            media_type=media_type(grant.file_name),
            stat_result=stat,
            headers={"etag": file_etag(stat)},
        )

    async def other(request: Request) -> Response:
        return _error(405, "Method not allowed.", {"Allow": "GET, HEAD, PUT"})

    return Starlette(
        routes=[
            Route("/{token}", put, methods=["PUT"]),
            Route("/{token}", get, methods=["GET", "HEAD"]),
            Route("/{token}", other, methods=["POST", "DELETE", "PATCH", "OPTIONS"]),
        ]
    )
