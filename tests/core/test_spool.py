"""HashedFile: the bytes on disk and their SHA-256, with the hash computed on its own thread;
SpoolFile: the bytes on disk, pieces written as they come."""

from __future__ import annotations

import hashlib
import os
import threading
import tracemalloc
from pathlib import Path

import pytest

from appyard.core.spool import HashedFile, SpoolFile

MIB = 1024 * 1024


def test_the_file_and_its_digest_match_what_was_written(tmp_path: Path) -> None:
    chunks = [os.urandom(n) for n in (1, 4095, MIB, 3 * MIB + 7, 0, 12345)]
    out = HashedFile(tmp_path / "f")
    for chunk in chunks:
        out.write(chunk)
    digest = out.hexdigest()
    out.close()

    data = b"".join(chunks)
    assert (tmp_path / "f").read_bytes() == data
    assert digest == hashlib.sha256(data).hexdigest() and out.size == len(data)


def test_an_existing_file_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        HashedFile(tmp_path / "f")
    assert (tmp_path / "f").read_bytes() == b"keep"


def test_ranges_land_at_their_offsets_and_hash_only_themselves(tmp_path: Path) -> None:
    second, first = HashedFile(tmp_path / "data", at=4), HashedFile(tmp_path / "data", at=0)
    second.write(b"5678")
    first.write(b"1234")
    assert (first.hexdigest(), second.hexdigest()) == (
        hashlib.sha256(b"1234").hexdigest(),
        hashlib.sha256(b"5678").hexdigest(),
    )
    first.close()
    second.close()
    assert (tmp_path / "data").read_bytes() == b"12345678"


def test_memory_stays_bounded_and_no_thread_is_left_behind(tmp_path: Path) -> None:
    """Fresh zero buffers are made ten times faster than they are hashed, and writes to
    /dev/null cost nothing: without the backlog bound all 96 MiB would wait in the queue."""
    before = threading.active_count()
    tracemalloc.start()
    try:
        out = HashedFile(Path(os.devnull), at=0)
        for _ in range(96):
            out.write(bytes(MIB))
        digest = out.hexdigest()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    out.close()
    assert digest == hashlib.sha256(bytes(96 * MIB)).hexdigest()
    assert peak < 8 * MIB, peak  # the 4 MiB backlog, the buffer in hand, and change
    assert threading.active_count() == before


def test_a_spool_file_writes_large_pieces_at_once_so_their_buffer_can_be_reused(
    tmp_path: Path,
) -> None:
    """What the blob listener does: small bytes first (those that came with the request
    head), then one buffer refilled for every block. Each block must be on disk, in order,
    when ``write`` returns, and never copied into memory whole."""
    head, blocks = os.urandom(100), [os.urandom(MIB) for _ in range(4)]
    buffer = bytearray(MIB)
    view = memoryview(buffer)
    tracemalloc.start()
    try:
        out = SpoolFile(tmp_path / "f")
        out.write(head)
        for block in blocks:
            view[:] = block  # refilled in place, as recv_into does
            out.write(view)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    out.close()

    assert (tmp_path / "f").read_bytes() == head + b"".join(blocks)
    assert out.size == 100 + 4 * MIB
    assert peak < MIB // 2, peak  # the small pending bytes, not a copy of a block
