"""A file written chunk by chunk and hashed with SHA-256 as it grows, never held in memory.

Hashing and writing happen inline, in the caller's thread, chunk by chunk. Handing chunks to
I/O threads (one hashing, one writing, overlapping the next receive) was measured on the
two-core reference machine and was slower in every run, per chunk or in 4 MiB batches: the
hand-offs cost more CPU than the overlap saved (bench/README.md, "upload path").
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class HashedFile:
    """Appends to ``path`` (created; with ``exclusive`` it must not exist yet).

    With ``at``, writes a range of an existing (or new) file from that offset instead, leaving
    the rest of the file alone (local multipart parts land in place, see
    ``appyard.backends.storage.local``); the hash covers only the bytes written here.
    """

    def __init__(self, path: Path, *, exclusive: bool = True, at: int | None = None) -> None:
        self.path = path
        if at is None:
            flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
        else:
            flags = os.O_WRONLY | os.O_CREAT
        self._fd = os.open(path, flags, 0o600)
        self._at = at
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        view = memoryview(chunk)
        while view:
            if self._at is None:
                done = os.write(self._fd, view)
            else:
                done = os.pwrite(self._fd, view, self._at + self.size)
            view = view[done:]
            self.size += done

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def close(self) -> None:
        """Close the file; idempotent."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        """Close and remove the file, whatever happened."""
        self.close()
        self.path.unlink(missing_ok=True)
