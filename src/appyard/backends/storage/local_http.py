"""The HTTP side of the local blob store: the signed URLs it hands out are served here.

``PUT /_blob/<token>`` streams a request body to disk (hashing as it goes, never holding it in
memory), refusing more bytes than the token allows (413, keeping nothing) and PUTs whose slot
is closed (410: the URL was used, or its upload cancelled); a published object is reported to
the store's listener. ``GET /_blob/<token>`` serves an object with a file response (Granian's
``pathsend``; ``local_sendfile.py`` serves the same GETs with ``sendfile(2)`` on a port of its
own). Errors are ``{"error": "..."}``.
"""

from __future__ import annotations

import logging
import mimetypes

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from appyard import errors
from appyard.backends.storage.local import LocalBlobStore, PartWrite, StreamingWrite

log = logging.getLogger("appyard.blob")

mimetypes.add_type("application/vnd.android.package-archive", ".apk")
mimetypes.add_type("application/octet-stream", ".aab")
mimetypes.add_type("application/octet-stream", ".ipa")


def media_type(file_name: str) -> str:
    return mimetypes.guess_type(file_name)[0] or "application/octet-stream"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def blob_app(store: LocalBlobStore) -> Starlette:
    async def put(request: Request) -> Response:
        try:
            grant = store.verify(request.path_params["token"])
            if grant.op not in ("put", "part"):
                raise errors.SignedUrlInvalid("This signed URL is not for uploads.")
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > grant.max_size:
                return _error(413, f"The body is larger than the {grant.max_size} bytes allowed.")
            writer: StreamingWrite | PartWrite = (
                store.writer(grant.key, limit=grant.max_size)
                if grant.op == "put"
                else store.part_writer(grant.upload_id, grant.part_number, part_size=grant.max_size)
            )
        except errors.AppyardError as exc:
            return _error(exc.status, exc.message)
        try:
            async for chunk in request.stream():
                writer.feed(chunk)
            info = writer.commit()
        except errors.UploadTooLarge as exc:
            writer.discard()
            return _error(413, exc.message)
        except errors.AppyardError as exc:
            writer.discard()
            return _error(exc.status, exc.message)
        except BaseException:
            writer.discard()
            raise
        if grant.op == "put":
            log.info("blob.stored bytes=%d", info.size)
            await run_in_threadpool(store.report, grant.key, info)
        return Response(status_code=200, headers={"ETag": info.etag})

    async def get(request: Request) -> Response:
        try:
            grant, path = store.download(request.path_params["token"])
        except errors.AppyardError as exc:
            return _error(exc.status, exc.message)
        return FileResponse(path, filename=grant.file_name, media_type=media_type(grant.file_name))

    async def other(request: Request) -> Response:
        return _error(405, "Method not allowed.", {"Allow": "GET, HEAD, PUT"})

    return Starlette(
        routes=[
            Route("/{token}", put, methods=["PUT"]),
            Route("/{token}", get, methods=["GET", "HEAD"]),
            Route("/{token}", other, methods=["POST", "DELETE", "PATCH", "OPTIONS"]),
        ]
    )
