"""Files written chunk by chunk, never held in memory: :class:`SpoolFile` (request bodies:
signed PUTs, parts, form posts) and :class:`HashedFile`, which also takes their SHA-256.

Request bodies are not hashed as they arrive: the job that inspects a build hashes its input
as it reads it, so a hash here was a second pass over every byte on the request's critical
path (on the two-core reference machine it took a core's worth of CPU while the upload ran).
``HashedFile`` is for the server's own objects: a thread of the file's own hashes
(``hashlib`` releases the GIL on large buffers) while the caller writes; its backlog is
bounded (``BACKLOG`` bytes), so memory stays flat whatever the size.

Pieces of ``DIRECT`` bytes or more go to the kernel as they are; smaller ones are gathered
first. Gathering everything into 1 MiB blocks, as this module did, cost more than it saved:
each new 1 MiB buffer is fresh memory from the kernel, and on memory the machine had touched
before, 64 KiB and 1 MiB writes cost the same 0.2 s of CPU per GiB (bench/README.md, "Upload
path", 2026-12-05 second session; the 2.6x measured earlier was the cost of fresh pages).
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import re
import secrets
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from appyard import errors

BACKLOG = 4 * 1024 * 1024
DIRECT = 64 * 1024


class _Hasher:
    """SHA-256 of a stream of chunks, computed on its own thread in order."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._room = threading.Condition()
        self._backlog = 0
        self._thread = threading.Thread(target=self._run, name="appyard-sha256", daemon=True)
        self._thread.start()

    def update(self, chunk: bytes) -> None:
        with self._room:
            self._room.wait_for(lambda: self._backlog < BACKLOG)
            self._backlog += len(chunk)
        self._chunks.put(chunk)

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self._digest.update(chunk)
            with self._room:
                self._backlog -= len(chunk)
                self._room.notify()

    def finish(self) -> str:
        """Wait for the chunks handed over; the hex digest. Idempotent."""
        if self._thread.is_alive():
            self._chunks.put(None)
            self._thread.join()
        return self._digest.hexdigest()


FULL = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def disk_errors() -> Iterator[None]:
    """A full disk (or quota) becomes :class:`~appyard.errors.StorageFull`: a clear 507 for
    the client, not a crash; the caller removes what it had written."""
    try:
        yield
    except OSError as exc:
        if exc.errno in FULL:
            raise errors.StorageFull(
                "The server's storage is full (no space left on its disk); nothing was kept. "
                "Try again once space is freed."
            ) from None
        raise


class SpoolFile:
    """Appends to ``path`` (created; with ``exclusive`` it must not exist yet); holds at most
    ``DIRECT`` bytes in memory.

    With ``at``, writes a range of an existing (or new) file from that offset instead, leaving
    the rest of the file alone (local multipart parts land in place, see
    ``appyard.backends.storage.local``).

    A chunk of ``DIRECT`` bytes or more is written at once (after what is pending), before
    :meth:`write` returns, and is not kept: a caller may reuse its buffer.
    """

    def __init__(self, path: Path, *, exclusive: bool = True, at: int | None = None) -> None:
        self.path = path
        if at is None:
            flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
        else:
            flags = os.O_WRONLY | os.O_CREAT
        self._fd = os.open(path, flags, 0o600)
        self._at = at
        self._pending = bytearray()
        self._written = 0
        self.size = 0  # bytes taken (written, or waiting in the block)

    def write(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        if len(chunk) >= DIRECT:
            self.flush()
            self._write(chunk)
            return
        self._pending += chunk
        if len(self._pending) >= DIRECT:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._write(self._pending)
            self._pending = bytearray()

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        with disk_errors():
            while view:
                if self._at is None:
                    done = os.write(self._fd, view)
                else:
                    done = os.pwrite(self._fd, view, self._at + self._written)
                view = view[done:]
                self._written += done

    def close(self) -> None:
        """Write what is pending and close the file; idempotent."""
        if self._fd >= 0:
            try:
                self.flush()
            finally:
                os.close(self._fd)
                self._fd = -1

    def discard(self) -> None:
        """Close and remove the file, whatever happened."""
        self._pending = bytearray()
        self.close()
        self.path.unlink(missing_ok=True)


class HashedFile(SpoolFile):
    """A :class:`SpoolFile` whose bytes are hashed (SHA-256) on a thread of its own as they
    are written; the hash covers only the bytes written here. Chunks are handed to the hash
    thread as they are, so a caller must not reuse a chunk's buffer."""

    def __init__(self, path: Path, *, exclusive: bool = True, at: int | None = None) -> None:
        super().__init__(path, exclusive=exclusive, at=at)
        self._hasher = _Hasher()

    def write(self, chunk: bytes | memoryview) -> None:
        self._hasher.update(bytes(chunk) if isinstance(chunk, memoryview) else chunk)
        super().write(chunk)

    def hexdigest(self) -> str:
        return self._hasher.finish()

    def close(self) -> None:
        """Write what is pending, close the file and stop the hash thread; idempotent."""
        self._hasher.finish()
        super().close()


# --- temporary files that outlive a killed process ---------------------------------------------

_OWNED = re.compile(r"-p(\d+)-")


def owned_name(prefix: str, suffix: str = "") -> str:
    """A temporary file name that says which process made it: ``<prefix>-p<pid>-<random>``,
    so that what a killed process left behind can be told from what a live one is writing."""
    return f"{prefix}-p{os.getpid()}-{secrets.token_hex(8)}{suffix}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def orphaned(path: Path) -> bool:
    """Whether ``path`` was made (by :func:`owned_name`) by a process that is gone."""
    found = _OWNED.search(path.name)
    return found is not None and not pid_alive(int(found[1]))


def remove_orphans(folder: Path) -> int:
    """Remove the files and folders directly in ``folder`` whose process is gone; how many."""
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        if orphaned(path):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed += 1
    return removed
