"""APK Signature Scheme v2/v3 content digests, streamed.

The content digest covers three sections of the APK: the entries (``[0, signing block)``), the
central directory, and the End of Central Directory record with its central directory offset
replaced by the signing block's offset (:func:`appyard.signing.zipmeta.eocd_with_cd_offset`).

Chunked digests (``CHUNKED_SHA256``, ``CHUNKED_SHA512``): every section is cut into 1 MiB chunks
(the last chunk of a section may be shorter; chunks never span sections), each chunk digest is
``H(0xa5 || uint32le(len) || chunk)`` and the content digest is
``H(0x5a || uint32le(chunk count) || chunk digests...)``.

Verity (``VERITY_CHUNKED_SHA256``): the root of a SHA-256 Merkle tree over 4 KiB pages of the
three sections laid end to end (8 zero bytes of salt, zero padding of the last page and of every
level to 4 KiB), followed by ``uint64le(total length)``.

Two ways in: :class:`ContentDigester` is fed bytes as they are produced (the signer writes the
output and digests it in the same pass), :func:`compute_content_digests` reads an existing file.
Both hold one chunk plus one digest per chunk in memory, never the file.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from collections.abc import Iterable
from typing import BinaryIO

from appyard.signing.zipmeta import (
    CHUNK_SIZE,
    MalformedZip,
    ZipSections,
    eocd_with_cd_offset,
    read_exactly,
)

__all__ = [
    "CHUNK_SIZE",
    "VERITY_PAGE_SIZE",
    "ContentDigestAlgorithm",
    "ContentDigester",
    "compute_content_digests",
    "compute_content_digests_of_sections",
]

VERITY_PAGE_SIZE = 4096
_MAX_CHUNKS = 0x7FFFFFFF // 1024  # apksig refuses inputs with more chunks than this


class ContentDigestAlgorithm(enum.Enum):
    """Content digest algorithms of the v2/v3 schemes (ids as apksig numbers them)."""

    CHUNKED_SHA256 = 1
    CHUNKED_SHA512 = 2
    VERITY_CHUNKED_SHA256 = 3

    @property
    def hash_name(self) -> str:
        return "sha512" if self is ContentDigestAlgorithm.CHUNKED_SHA512 else "sha256"


class _Chunked:
    """``H(0x5a || uint32le(count) || H(0xa5 || uint32le(len) || chunk)...)``."""

    def __init__(self, hash_name: str) -> None:
        self._hash_name = hash_name
        self._digests: list[bytes] = []
        self._pending = bytearray()

    def _chunk_digest(self, chunk: bytes | bytearray | memoryview) -> None:
        h = hashlib.new(self._hash_name, b"\xa5" + struct.pack("<I", len(chunk)))
        h.update(chunk)
        self._digests.append(h.digest())
        if len(self._digests) >= _MAX_CHUNKS:
            raise MalformedZip("The APK is too large for APK Signature Scheme v2/v3 digests.")

    def update(self, data: memoryview) -> None:
        pos = 0
        while pos < len(data):
            if not self._pending and len(data) - pos >= CHUNK_SIZE:
                # A whole chunk is available: hash it in place, no copy.
                self._chunk_digest(data[pos : pos + CHUNK_SIZE])
                pos += CHUNK_SIZE
                continue
            take = min(CHUNK_SIZE - len(self._pending), len(data) - pos)
            self._pending += data[pos : pos + take]
            pos += take
            if len(self._pending) == CHUNK_SIZE:
                self._flush_pending()

    def _flush_pending(self) -> None:
        if self._pending:
            self._chunk_digest(self._pending)
            self._pending.clear()

    def end_section(self) -> None:
        self._flush_pending()

    def digest(self) -> bytes:
        self.end_section()
        outer = hashlib.new(self._hash_name, b"\x5a" + struct.pack("<I", len(self._digests)))
        for chunk_digest in self._digests:
            outer.update(chunk_digest)
        return outer.digest()


class _Verity:
    """fs-verity style Merkle tree root over 4 KiB pages, salted with 8 zero bytes."""

    _SALT = b"\x00" * 8

    def __init__(self) -> None:
        self._pending = bytearray()
        self._level0: list[bytes] = []
        self._total = 0

    def update(self, data: memoryview) -> None:
        self._total += len(data)
        pos = 0
        while pos < len(data):
            if not self._pending and len(data) - pos >= VERITY_PAGE_SIZE:
                end = pos + (len(data) - pos) // VERITY_PAGE_SIZE * VERITY_PAGE_SIZE
                for page_start in range(pos, end, VERITY_PAGE_SIZE):
                    h = hashlib.sha256(self._SALT)
                    h.update(data[page_start : page_start + VERITY_PAGE_SIZE])
                    self._level0.append(h.digest())
                pos = end
                continue
            take = min(VERITY_PAGE_SIZE - len(self._pending), len(data) - pos)
            self._pending += data[pos : pos + take]
            pos += take
            if len(self._pending) == VERITY_PAGE_SIZE:
                self._level0.append(hashlib.sha256(self._SALT + self._pending).digest())
                self._pending.clear()

    def end_section(self) -> None:
        """Sections are laid end to end: nothing to do."""

    def digest(self) -> bytes:
        hashes = list(self._level0)
        if self._pending:
            page = bytes(self._pending) + b"\x00" * (VERITY_PAGE_SIZE - len(self._pending))
            hashes.append(hashlib.sha256(self._SALT + page).digest())
        if not hashes:
            hashes.append(hashlib.sha256(self._SALT + b"\x00" * VERITY_PAGE_SIZE).digest())
        level = b"".join(hashes)
        while len(level) > VERITY_PAGE_SIZE:
            padded = level + b"\x00" * (-len(level) % VERITY_PAGE_SIZE)
            level = b"".join(
                hashlib.sha256(self._SALT + padded[i : i + VERITY_PAGE_SIZE]).digest()
                for i in range(0, len(padded), VERITY_PAGE_SIZE)
            )
        root_page = level + b"\x00" * (VERITY_PAGE_SIZE - len(level))
        root = hashlib.sha256(self._SALT + root_page).digest()
        return root + struct.pack("<Q", self._total)


class ContentDigester:
    """Incremental v2/v3 content digests for one or more algorithms at once.

    Feed the entries section, call :meth:`end_section`, feed the central directory, call
    :meth:`end_section`, feed the (offset-patched) EOCD, then call :meth:`digests`::

        digester = ContentDigester([ContentDigestAlgorithm.CHUNKED_SHA256])
        for block in entries: digester.update(block)
        digester.end_section()
        digester.update(central_directory); digester.end_section()
        digester.update(eocd_with_cd_offset(eocd, signing_block_offset))
        digest = digester.digests()[ContentDigestAlgorithm.CHUNKED_SHA256]
    """

    def __init__(self, algorithms: Iterable[ContentDigestAlgorithm]) -> None:
        self._impls: dict[ContentDigestAlgorithm, _Chunked | _Verity] = {}
        for algorithm in algorithms:
            if algorithm is ContentDigestAlgorithm.VERITY_CHUNKED_SHA256:
                self._impls[algorithm] = _Verity()
            else:
                self._impls[algorithm] = _Chunked(algorithm.hash_name)
        self._done = False

    @property
    def algorithms(self) -> frozenset[ContentDigestAlgorithm]:
        return frozenset(self._impls)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes to the current section."""
        if self._done:
            raise RuntimeError("digests() was already called")
        view = memoryview(data)
        for impl in self._impls.values():
            impl.update(view)

    def end_section(self) -> None:
        """Close the current section (its last chunk may be shorter than 1 MiB)."""
        for impl in self._impls.values():
            impl.end_section()

    def digests(self) -> dict[ContentDigestAlgorithm, bytes]:
        """The content digest per algorithm (closes the last section)."""
        self._done = True
        return {algorithm: impl.digest() for algorithm, impl in self._impls.items()}


def _feed_range(
    fh: BinaryIO, digester: ContentDigester, offset: int, size: int, buffer_size: int
) -> None:
    while size > 0:
        take = min(size, buffer_size)
        digester.update(read_exactly(fh, offset, take))
        offset += take
        size -= take


def compute_content_digests_of_sections(
    fh: BinaryIO,
    *,
    entries_end: int,
    cd_offset: int,
    cd_size: int,
    eocd: bytes,
    algorithms: Iterable[ContentDigestAlgorithm],
    buffer_size: int = CHUNK_SIZE,
) -> dict[ContentDigestAlgorithm, bytes]:
    """Content digests of ``fh[0:entries_end]``, ``fh[cd_offset:cd_offset+cd_size]`` and
    ``eocd`` (already patched by the caller), streaming the file ``buffer_size`` bytes at a time.
    """
    digester = ContentDigester(algorithms)
    _feed_range(fh, digester, 0, entries_end, buffer_size)
    digester.end_section()
    _feed_range(fh, digester, cd_offset, cd_size, buffer_size)
    digester.end_section()
    digester.update(eocd)
    digester.end_section()
    return digester.digests()


def compute_content_digests(
    fh: BinaryIO,
    sections: ZipSections,
    signing_block_offset: int,
    algorithms: Iterable[ContentDigestAlgorithm],
) -> dict[ContentDigestAlgorithm, bytes]:
    """Content digests of an APK whose APK Signing Block starts at ``signing_block_offset``.

    This is what a v2/v3 signer's ``digests`` must match. For an APK without a signing block
    (a signer computing the digest of its output before inserting the block) pass
    ``sections.cd_offset``.
    """
    if not 0 <= signing_block_offset <= sections.cd_offset:
        raise MalformedZip("The APK Signing Block offset is outside the entries section.")
    return compute_content_digests_of_sections(
        fh,
        entries_end=signing_block_offset,
        cd_offset=sections.cd_offset,
        cd_size=sections.cd_size,
        eocd=eocd_with_cd_offset(sections.eocd, signing_block_offset),
        algorithms=algorithms,
    )
