"""The streamed v2/v3 content digests against a plain in-memory reference implementation."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appyard.signing.digest import (
    CHUNK_SIZE,
    ContentDigestAlgorithm,
    ContentDigester,
    compute_content_digests,
    compute_content_digests_of_sections,
)
from appyard.signing.zipmeta import eocd_with_cd_offset, find_signing_block, find_zip_sections
from tests.signing.test_verify import fixture_path

MiB = CHUNK_SIZE
ALL = list(ContentDigestAlgorithm)


def reference_chunked(sections: list[bytes], hash_name: str) -> bytes:
    digests = []
    for section in sections:
        for start in range(0, len(section), MiB):
            chunk = section[start : start + MiB]
            digests.append(
                hashlib.new(hash_name, b"\xa5" + struct.pack("<I", len(chunk)) + chunk).digest()
            )
    return hashlib.new(
        hash_name, b"\x5a" + struct.pack("<I", len(digests)) + b"".join(digests)
    ).digest()


def reference_verity(sections: list[bytes]) -> bytes:
    data = b"".join(sections)
    salt = b"\x00" * 8

    def pages(blob: bytes) -> list[bytes]:
        blob += b"\x00" * (-len(blob) % 4096)
        return [blob[i : i + 4096] for i in range(0, len(blob), 4096)] or [b"\x00" * 4096]

    level = b"".join(hashlib.sha256(salt + p).digest() for p in pages(data))
    while len(level) > 4096:
        level = b"".join(hashlib.sha256(salt + p).digest() for p in pages(level))
    root = hashlib.sha256(salt + level + b"\x00" * (4096 - len(level))).digest()
    return root + struct.pack("<Q", len(data))


def reference(sections: list[bytes], algorithm: ContentDigestAlgorithm) -> bytes:
    if algorithm is ContentDigestAlgorithm.VERITY_CHUNKED_SHA256:
        return reference_verity(sections)
    return reference_chunked(sections, algorithm.hash_name)


SIZES = [0, 1, 4095, 4096, MiB - 1, MiB, MiB + 1, 2 * MiB + 12345]


@pytest.mark.parametrize("first", SIZES)
def test_digests_match_reference_across_chunk_boundaries(first: int) -> None:
    rng = os.urandom
    sections = [rng(first), rng(3000), rng(22)]
    digester = ContentDigester(ALL)
    for section in sections:
        # Odd feeding sizes exercise the buffering across chunk and page boundaries.
        for start in range(0, len(section), 700_001):
            digester.update(section[start : start + 700_001])
        digester.end_section()

    digests = digester.digests()

    for algorithm in ALL:
        assert digests[algorithm] == reference(sections, algorithm), algorithm


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    sizes=st.lists(st.integers(0, 3 * 4096), min_size=3, max_size=3),
    cuts=st.lists(st.integers(1, 5000), min_size=1, max_size=8),
)
def test_any_feeding_pattern_gives_the_same_digest(sizes: list[int], cuts: list[int]) -> None:
    sections = [bytes([i + 1]) * n for i, n in enumerate(sizes)]
    digester = ContentDigester(ALL)
    for section in sections:
        pos, i = 0, 0
        while pos < len(section):
            step = cuts[i % len(cuts)]
            digester.update(section[pos : pos + step])
            pos += step
            i += 1
        digester.end_section()

    digests = digester.digests()

    for algorithm in ALL:
        assert digests[algorithm] == reference(sections, algorithm)


def test_file_digest_equals_incremental_digest(tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 77)
    path = tmp_path / "blob"
    path.write_bytes(data + b"CD" * 100 + b"E" * 22)
    with path.open("rb") as fh:
        digests = compute_content_digests_of_sections(
            fh,
            entries_end=len(data),
            cd_offset=len(data),
            cd_size=200,
            eocd=b"E" * 22,
            algorithms=ALL,
            buffer_size=123_457,
        )

    for algorithm in ALL:
        assert digests[algorithm] == reference([data, b"CD" * 100, b"E" * 22], algorithm)


def test_eocd_is_digested_with_the_signing_block_offset() -> None:
    path = fixture_path("fixture-release-v1v2v3.apk")
    raw = path.read_bytes()
    with path.open("rb") as fh:
        sections = find_zip_sections(fh)
        block = find_signing_block(fh, sections)
        assert block is not None
        digest = compute_content_digests(
            fh, sections, block.offset, [ContentDigestAlgorithm.CHUNKED_SHA256]
        )[ContentDigestAlgorithm.CHUNKED_SHA256]

    expected = reference_chunked(
        [
            raw[: block.offset],
            raw[sections.cd_offset : sections.eocd_offset],
            eocd_with_cd_offset(sections.eocd, block.offset),
        ],
        "sha256",
    )
    assert digest == expected
    assert struct.unpack_from("<I", eocd_with_cd_offset(sections.eocd, 7), 16) == (7,)


def test_digester_refuses_updates_after_digests() -> None:
    digester = ContentDigester([ContentDigestAlgorithm.CHUNKED_SHA256])
    digester.digests()

    with pytest.raises(RuntimeError):
        digester.update(b"late")
