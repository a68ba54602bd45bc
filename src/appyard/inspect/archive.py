"""A bounded, hostile-input-safe view of a zip archive (APK, AAB, IPA).

Every artifact is treated as an attack. :class:`SafeZip` opens a file with :mod:`zipfile`
but never lets its exceptions escape (they become :class:`InvalidArtifact` with a reason a
person can act on), refuses entry names that are absolute or climb out with ``..``, refuses
duplicate names, and bounds every decompression: by an absolute byte budget per entry and
by a ratio of decompressed to compressed size (zip bombs).

Bounds (documented in docs/inspection-android.md):

* at most ``MAX_ENTRIES`` entries and ``MAX_CENTRAL_DIRECTORY_BYTES`` of central directory,
  checked from the end-of-central-directory record before :mod:`zipfile` builds its index
  (so memory for the index is bounded whatever the size of the file);
* :meth:`SafeZip.read` returns at most ``limit`` bytes (default ``DEFAULT_READ_LIMIT``) and
  refuses an entry whose declared or actual size is larger, or whose actual decompression
  ratio exceeds ``MAX_RATIO`` once past ``RATIO_GRACE`` bytes;
* :meth:`SafeZip.iter_chunks` streams an entry in ``CHUNK`` sized pieces with the same
  ratio bound and an overall ``limit``.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO

from appyard.errors import ArtifactTooLarge, InvalidArtifact
from appyard.signing.zipmeta import check_ratio

MAX_ENTRIES = 200_000
MAX_CENTRAL_DIRECTORY_BYTES = 16 * 1024 * 1024
DEFAULT_READ_LIMIT = 64 * 1024 * 1024
CHUNK = 256 * 1024


def _bad_name(name: str) -> bool:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return True
    parts = name.replace("\\", "/").split("/")
    return any(p == ".." for p in parts) or "\x00" in name


_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"


def _directory_size(fh: BinaryIO) -> tuple[int, int] | None:
    """(entries, central directory bytes) as the end records declare them, or None when no
    end record is found (zipfile then says why the file is not a zip)."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    tail_start = max(0, size - (_EOCD_SIZE + 0xFFFF))
    fh.seek(tail_start)
    tail = fh.read()
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < _EOCD_SIZE:
        return None
    entries, cd_size = struct.unpack_from("<HI", tail, at + 10)
    if entries != 0xFFFF and cd_size != 0xFFFFFFFF:
        return int(entries), int(cd_size)
    locator = tail_start + at - 20
    if locator < 0:
        return int(entries), int(cd_size)
    fh.seek(locator)
    loc = fh.read(20)
    if len(loc) < 20 or loc[:4] != _ZIP64_LOCATOR:
        return int(entries), int(cd_size)
    (record_at,) = struct.unpack_from("<Q", loc, 8)
    fh.seek(min(record_at, size))
    record = fh.read(56)
    if len(record) < 56 or record[:4] != _ZIP64_EOCD:
        return int(entries), int(cd_size)
    entries64, cd_size64 = struct.unpack_from("<QQ", record, 32)
    return int(entries64), int(cd_size64)


class SafeZip:
    """Read-only, bounded access to a zip archive on disk."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        kind: str = "archive",
        max_entries: int = MAX_ENTRIES,
        why: str = "",
    ) -> None:
        self.path = Path(path)
        self.kind = kind
        self.max_entries, self._why = max_entries, why
        self._fh: BinaryIO | None = None
        try:
            self._fh = open(self.path, "rb")
            declared = _directory_size(self._fh)
            if declared is not None:
                self._refuse_large_directory(*declared)
            self._zf = zipfile.ZipFile(self._fh)
            infos = self._zf.infolist()
        except (
            zipfile.BadZipFile,
            zipfile.LargeZipFile,
            OSError,
            EOFError,
            ValueError,
            struct.error,
            NotImplementedError,
            UnicodeDecodeError,
        ) as exc:
            self.close()
            raise InvalidArtifact(
                f"The {kind} is not a readable zip archive ({exc}).", reason="not_a_zip"
            ) from None
        if len(infos) > max_entries:
            self._refuse_large_directory(len(infos), 0)
        self._infos: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            if _bad_name(info.filename):
                self.close()
                raise InvalidArtifact(
                    f"The {kind} contains an entry with an unsafe path: {info.filename!r}.",
                    reason="unsafe_entry_name",
                )
            if info.filename in self._infos:
                self.close()
                raise InvalidArtifact(
                    f"The {kind} contains the entry {info.filename!r} twice.",
                    reason="duplicate_entry",
                )
            self._infos[info.filename] = info

    def _refuse_large_directory(self, entries: int, cd_size: int) -> None:
        if entries > self.max_entries:
            self.close()
            raise InvalidArtifact(
                f"The {self.kind} has {entries} entries; at most {self.max_entries} are "
                f"accepted{self._why}.",
                reason="too_many_entries",
            )
        if cd_size > MAX_CENTRAL_DIRECTORY_BYTES:
            self.close()
            raise InvalidArtifact(
                f"The {self.kind}'s central directory is {cd_size} bytes; at most "
                f"{MAX_CENTRAL_DIRECTORY_BYTES} are accepted.",
                reason="directory_too_large",
            )

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> SafeZip:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        zf = getattr(self, "_zf", None)
        if zf is not None:
            zf.close()
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    # -- listing -----------------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self._infos)

    def infos(self) -> list[zipfile.ZipInfo]:
        return list(self._infos.values())

    def info(self, name: str) -> zipfile.ZipInfo | None:
        return self._infos.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._infos

    # -- reading -----------------------------------------------------------------------------
    def _open(self, name: str) -> tuple[zipfile.ZipInfo, IO[bytes]]:
        info = self._infos.get(name)
        if info is None:
            raise InvalidArtifact(f"The {self.kind} has no {name}.", reason="missing_entry")
        try:
            return info, self._zf.open(info)
        except (
            zipfile.BadZipFile,
            NotImplementedError,
            RuntimeError,
            OSError,
            ValueError,
            EOFError,
            zlib.error,
            struct.error,
        ) as exc:
            raise InvalidArtifact(
                f"The {self.kind} entry {name!r} cannot be read ({exc}).", reason="bad_entry"
            ) from None

    def iter_chunks(self, name: str, *, limit: int = DEFAULT_READ_LIMIT) -> Iterator[bytes]:
        """Yield the decompressed bytes of ``name`` in chunks, bounded by ``limit`` and ratio."""
        info, fh = self._open(name)
        if info.file_size > limit:
            fh.close()
            raise ArtifactTooLarge(
                f"The {self.kind} entry {name!r} declares {info.file_size} bytes; "
                f"at most {limit} are read.",
                reason="entry_too_large",
            )
        total = 0
        compressed = max(info.compress_size, 1)
        try:
            check_ratio(f"The {self.kind} entry {name!r}", info.file_size, compressed)  # declared
        except ArtifactTooLarge:
            fh.close()
            raise
        try:
            with fh:
                while True:
                    try:
                        chunk = fh.read(CHUNK)
                    except (
                        zipfile.BadZipFile,
                        zlib.error,
                        EOFError,
                        OSError,
                        ValueError,
                        struct.error,
                        NotImplementedError,
                    ) as exc:
                        raise InvalidArtifact(
                            f"The {self.kind} entry {name!r} is corrupt ({exc}).",
                            reason="corrupt_entry",
                        ) from None
                    if not chunk:
                        return
                    total += len(chunk)
                    if total > limit:
                        raise ArtifactTooLarge(
                            f"The {self.kind} entry {name!r} expands past {limit} bytes.",
                            reason="entry_too_large",
                        )
                    check_ratio(f"The {self.kind} entry {name!r}", total, compressed)
                    yield chunk
        except RuntimeError as exc:  # encrypted entries and similar
            raise InvalidArtifact(
                f"The {self.kind} entry {name!r} cannot be read ({exc}).", reason="bad_entry"
            ) from None

    def read(self, name: str, *, limit: int = DEFAULT_READ_LIMIT) -> bytes:
        """The whole decompressed entry (for small metadata files), bounded by ``limit``."""
        return b"".join(self.iter_chunks(name, limit=limit))

    def data_offset(self, name: str) -> int:
        """Offset in the file of the first byte of ``name``'s (stored) data."""
        info = self._infos[name]
        assert self._fh is not None
        self._fh.seek(info.header_offset)
        header = self._fh.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise InvalidArtifact(
                f"The {self.kind} entry {name!r} has no local header.", reason="bad_entry"
            )
        name_len, extra_len = (int(v) for v in struct.unpack("<HH", header[26:30]))
        return int(info.header_offset) + 30 + name_len + extra_len
