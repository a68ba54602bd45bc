"""Streaming multipart/form-data: file parts go straight to disk (hashed as they arrive),
never into memory; small text fields are kept, bounded. Used by every dialect whose uploads
are form posts (store CI, distribution)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from starlette.requests import Request
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.targets import BaseTarget, ValueTarget

from appyard.core import errors

MAX_FIELD = 64 * 1024


class FormTooLarge(errors.UploadTooLarge):
    """The upload is larger than allowed."""


class _FileTarget(BaseTarget):  # type: ignore[misc]
    def __init__(self, path: Path, limit: int) -> None:
        super().__init__()
        self.path = path
        self.limit = limit
        self.size = 0
        self.digest = hashlib.sha256()
        self._fh: BinaryIO | None = None

    def on_start(self) -> None:
        self._fh = open(self.path, "wb")

    def on_data_received(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise FormTooLarge(f"The file is larger than the {self.limit} bytes allowed.")
        self.digest.update(chunk)
        assert self._fh is not None
        self._fh.write(chunk)

    def on_finish(self) -> None:
        if self._fh is not None:
            self._fh.close()

    def close(self) -> None:
        if self._fh is not None and not self._fh.closed:
            self._fh.close()


class _BoundedValue(ValueTarget):  # type: ignore[misc]
    def on_data_received(self, chunk: bytes) -> None:
        if sum(map(len, self._values)) + len(chunk) > MAX_FIELD:
            raise errors.InvalidField("A form field is too long.")
        super().on_data_received(chunk)


@dataclass
class SpooledFile:
    path: Path
    size: int
    sha256: str
    filename: str


@dataclass
class Form:
    files: dict[str, SpooledFile] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        for spooled in self.files.values():
            spooled.path.unlink(missing_ok=True)


async def stream_form(
    request: Request,
    *,
    spool_dir: Path,
    file_fields: tuple[str, ...],
    text_fields: tuple[str, ...] = (),
    max_size: int,
) -> Form:
    """Parse the request body as it arrives. Parts not named are ignored (not stored)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise errors.InvalidField("Send the upload as multipart/form-data.")
    try:
        parser = StreamingFormDataParser(headers=dict(request.headers))
    except Exception:  # the library raises bare exceptions for bad headers
        raise errors.InvalidField("The multipart/form-data boundary is missing.") from None
    targets: dict[str, _FileTarget] = {}
    values: dict[str, ValueTarget] = {}
    for name in file_fields:
        targets[name] = _FileTarget(spool_dir / f"form-{secrets.token_hex(8)}", max_size)
        parser.register(name, targets[name])
    for name in text_fields:
        values[name] = _BoundedValue()
        parser.register(name, values[name])
    try:
        async for chunk in request.stream():
            try:
                parser.data_received(chunk)
            except errors.AppyardError:
                raise
            except Exception as exc:  # malformed multipart body
                raise errors.InvalidField(f"Malformed multipart/form-data body ({exc}).") from None
    except BaseException:
        for target in targets.values():
            target.close()
            target.path.unlink(missing_ok=True)
        raise
    form = Form()
    for name, target in targets.items():
        target.close()
        if target._started:
            form.files[name] = SpooledFile(
                path=target.path,
                size=target.size,
                sha256=target.digest.hexdigest(),
                filename=target.multipart_filename or "",
            )
        else:
            target.path.unlink(missing_ok=True)
    for name, value in values.items():
        if value.value:
            form.fields[name] = value.value.decode("utf-8", "replace")
    return form
