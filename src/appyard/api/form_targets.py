"""The parser's targets for :mod:`appyard.api.forms`, in a module of their own: importing
streaming-form-data imports smart_open (for targets appyard does not use), which imports boto3
when it is installed. Only a server that receives a form pays for the parser, at the first
form; and boto3 is hidden from that import unless something loaded it already (the S3 store
does), so smart_open records its S3 support as missing instead of loading boto3: 4.7 MB for
the parser instead of 12.4 in a running server."""

from __future__ import annotations

import sys
from pathlib import Path

from appyard import errors
from appyard.core.spool import SpoolFile

_HIDDEN = [name for name in ("boto3", "botocore") if name not in sys.modules]
for _name in _HIDDEN:
    sys.modules[_name] = None  # type: ignore[assignment]  # `import boto3` raises ImportError
try:
    from streaming_form_data import StreamingFormDataParser
    from streaming_form_data.parser import parse_content_boundary
    from streaming_form_data.targets import BaseTarget, ValueTarget
finally:
    for _name in _HIDDEN:
        sys.modules.pop(_name, None)

MAX_FIELD = 64 * 1024

__all__ = [
    "BoundedValue",
    "FileTarget",
    "StreamingFormDataParser",
    "ValueTarget",
    "parse_content_boundary",
]


class FormTooLarge(errors.UploadTooLarge):
    """The upload is larger than allowed."""


class FileTarget(BaseTarget):  # type: ignore[misc]
    """Writes each piece of the file part as the parser hands it over."""

    def __init__(self, name: str, path: Path, limit: int) -> None:
        super().__init__()
        self.name = name
        self.path = path
        self.limit = limit
        self.size = 0
        self.file: SpoolFile | None = None

    def on_start(self) -> None:
        if self.file is not None:
            raise errors.InvalidField(f"The form carries the file part {self.name!r} twice.")
        self.file = SpoolFile(self.path)

    def on_data_received(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise FormTooLarge(f"The file is larger than the {self.limit} bytes allowed.")
        assert self.file is not None
        self.file.write(chunk)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    def discard(self) -> None:
        if self.file is not None:
            self.file.discard()
        self.path.unlink(missing_ok=True)


class BoundedValue(ValueTarget):  # type: ignore[misc]
    def on_data_received(self, chunk: bytes) -> None:
        if sum(map(len, self._values)) + len(chunk) > MAX_FIELD:
            raise errors.InvalidField("A form field is too long.")
        super().on_data_received(chunk)
