"""The parser's targets for :mod:`appyard.api.forms`, in a module of their own: importing
streaming-form-data imports smart_open (its optional targets), which imports boto3 when it is
installed, about 26 MB of resident memory. Only a server that receives a form pays for it, at
the first form."""

from __future__ import annotations

from pathlib import Path

from streaming_form_data import StreamingFormDataParser
from streaming_form_data.parser import parse_content_boundary
from streaming_form_data.targets import BaseTarget, ValueTarget

from appyard import errors
from appyard.core.spool import SpoolFile

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
