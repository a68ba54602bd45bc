"""Streaming multipart/form-data: file parts go straight to disk, never into memory; small
text fields are kept, bounded. File parts are not hashed here: the job that inspects the
build hashes its input as it reads it (``pipeline/process.py``), as it does for every other
way bytes arrive. Used by every dialect whose uploads
are form posts (store CI, distribution)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request

from appyard import errors
from appyard.core.spool import owned_name

if TYPE_CHECKING:
    from appyard.api.form_targets import FileTarget, ValueTarget


@dataclass
class SpooledFile:
    path: Path
    size: int
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
    file_limits: Mapping[str, int] | None = None,
) -> Form:
    """Parse the request body as it arrives. Parts not named are ignored (not stored). A file
    part holds at most ``max_size`` bytes (``file_limits`` may give a part less); a body that
    ends before its closing boundary is refused (a truncated upload is never taken)."""
    from appyard.api.form_targets import (
        BoundedValue,
        FileTarget,
        StreamingFormDataParser,
        parse_content_boundary,
    )

    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise errors.MalformedForm("Send the upload as multipart/form-data.")
    try:
        parser = StreamingFormDataParser(headers=dict(request.headers))
        ender = b"\r\n--" + parse_content_boundary(request.headers) + b"--"
    except Exception:  # the library raises bare exceptions for bad headers
        raise errors.MalformedForm("The multipart/form-data boundary is missing.") from None
    targets: dict[str, FileTarget] = {}
    values: dict[str, ValueTarget] = {}
    limits = file_limits or {}
    for name in file_fields:
        path = spool_dir / owned_name("form")
        targets[name] = FileTarget(name, path, min(max_size, limits.get(name, max_size)))
        parser.register(name, targets[name])
    for name in text_fields:
        values[name] = BoundedValue()
        parser.register(name, values[name])
    tail = b""
    try:
        async for chunk in request.stream():
            tail = (tail + chunk[-len(ender) - 256 :])[-len(ender) - 256 :]
            try:
                parser.data_received(chunk)
            except errors.AppyardError:
                raise
            except Exception as exc:  # malformed multipart body
                raise errors.MalformedForm(f"Malformed multipart/form-data body ({exc}).") from None
        if ender not in tail:
            raise errors.MalformedForm(
                "The multipart/form-data body ended before its closing boundary: the upload "
                "is incomplete."
            )
    except BaseException:
        for target in targets.values():
            target.discard()
        raise
    form = Form()
    for name, target in targets.items():
        if target.file is not None:
            target.close()
            form.files[name] = SpooledFile(
                path=target.path, size=target.size, filename=target.multipart_filename or ""
            )
        else:
            target.discard()
    for name, value in values.items():
        if value.value:
            form.fields[name] = value.value.decode("utf-8", "replace")
    return form
