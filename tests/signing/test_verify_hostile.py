"""Hostile input: verify_apk returns a failed result or raises InvalidArtifact, nothing else.

Truncations, random byte flips (hypothesis), lying sizes, zip bombs and oversized structures
must never surface as ``struct.error``, ``IndexError``, ``zlib.error`` or a memory blow-up.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appyard.errors import InvalidArtifact
from appyard.signing.model import ApkVerification
from appyard.signing.verify import verify_apk, verify_jar
from appyard.signing.zipmeta import (
    APK_SIG_BLOCK_MAGIC,
    MAX_SIGNING_BLOCK_SIZE,
    MalformedZip,
    NotAZip,
    find_zip_sections,
    iter_uncompressed_data,
    read_central_directory,
)
from tests.signing.test_verify import fixture_path


def _verify_or_invalid(path: Path, **kwargs: int | None) -> ApkVerification | None:
    try:
        return verify_apk(path, **kwargs)
    except InvalidArtifact:
        return None


@pytest.mark.parametrize(
    "content",
    [b"", b"PK", b"hello, not a zip at all", b"PK\x05\x06" + b"\x00" * 17, b"\x00" * 4096],
    ids=["empty", "pk", "text", "short-eocd", "zeros"],
)
def test_non_zip_raises_not_a_zip(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.apk"
    path.write_bytes(content)

    with pytest.raises(NotAZip):
        verify_apk(path)


@pytest.mark.parametrize("base", ["fixture-release-v1v2v3.apk", "fixture-v1-only.apk"])
def test_every_truncation_is_handled(tmp_path: Path, base: str) -> None:
    data = fixture_path(base).read_bytes()
    path = tmp_path / "cut.apk"
    for cut in range(0, len(data), 97):
        path.write_bytes(data[:cut])
        result = _verify_or_invalid(path, min_sdk=21)
        assert result is None or not result.verified, cut


FLIP_BASES = [
    "fixture-release-v1v2v3.apk",
    "golden-aligned-v1v2v3-lineage-out.apk",
    "fixture-v1-only.apk",
    "two-signers.apk",
]


@pytest.mark.parametrize("base", FLIP_BASES)
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_byte_flips_never_crash(tmp_path: Path, base: str, data: st.DataObject) -> None:
    original = fixture_path(base).read_bytes()
    flips = data.draw(
        st.lists(
            st.tuples(st.integers(0, len(original) - 1), st.integers(1, 255)),
            min_size=1,
            max_size=4,
        )
    )
    damaged = bytearray(original)
    for offset, mask in flips:
        damaged[offset] ^= mask
    path = tmp_path / "flipped.apk"
    path.write_bytes(bytes(damaged))

    for kwargs in ({"min_sdk": 21}, {"min_sdk": 24}, {"min_sdk": 21, "max_sdk": 27}):
        result = _verify_or_invalid(path, **kwargs)
        assert result is None or isinstance(result, ApkVerification)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(blob=st.binary(min_size=22, max_size=400))
def test_arbitrary_bytes_ending_in_an_eocd_never_crash(blob: bytes) -> None:
    import tempfile

    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, 46, max(0, len(blob) - 46), 0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.apk"
        path.write_bytes(blob + eocd)
        result = _verify_or_invalid(path)
        assert result is None or not result.verified


def _zip_with(entries: dict[str, bytes], *, compress: bool = True) -> bytes:
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _lie_about_size(data: bytes, name: str, size: int) -> bytes:
    """Set ``name``'s uncompressed size to ``size`` in its local header and CD record."""
    out = bytearray(data)
    raw = name.encode()
    pos = 0
    while (pos := out.find(b"PK\x01\x02", pos)) >= 0:
        name_len = struct.unpack_from("<H", out, pos + 28)[0]
        if bytes(out[pos + 46 : pos + 46 + name_len]) == raw:
            struct.pack_into("<I", out, pos + 24, size)
            (local,) = struct.unpack_from("<I", out, pos + 42)
            struct.pack_into("<I", out, local + 22, size)
        pos += 4
    return bytes(out)


def test_manifest_zip_bomb_is_refused_without_inflating_it(tmp_path: Path) -> None:
    bomb = b"\x00" * (64 * 1024 * 1024)
    data = _zip_with({"META-INF/MANIFEST.MF": bomb, "a.txt": b"a", "META-INF/A.SF": b"x"})
    path = tmp_path / "bomb.jar"
    path.write_bytes(_lie_about_size(data, "META-INF/MANIFEST.MF", 100))

    tracemalloc.start()
    try:
        result = verify_jar(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert not result.verified
    assert any("overflowed" in e for e in result.errors), result.errors
    assert peak < 8 * 1024 * 1024


def test_inflating_less_than_declared_is_malformed(tmp_path: Path) -> None:
    data = _zip_with({"a.bin": b"abc" * 1000})
    path = tmp_path / "short.zip"
    path.write_bytes(_lie_about_size(data, "a.bin", 5000))

    with path.open("rb") as fh:
        sections = find_zip_sections(fh)
        (entry,) = read_central_directory(fh, sections)
        with pytest.raises(MalformedZip, match="not the declared"):
            b"".join(iter_uncompressed_data(fh, entry, sections.cd_offset))


def test_corrupt_deflate_stream_is_malformed(tmp_path: Path) -> None:
    data = bytearray(_zip_with({"a.bin": bytes(range(256)) * 64}))
    data[40:60] = b"\xff" * 20  # inside the deflate stream of the first entry
    path = tmp_path / "corrupt.zip"
    path.write_bytes(bytes(data))

    with path.open("rb") as fh:
        sections = find_zip_sections(fh)
        (entry,) = read_central_directory(fh, sections)
        with pytest.raises(MalformedZip):
            b"".join(iter_uncompressed_data(fh, entry, sections.cd_offset))


def test_oversized_signing_block_is_refused_not_read(tmp_path: Path) -> None:
    # Entries section of 17 MiB of zeros whose tail claims a 17 MiB APK Signing Block.
    size = MAX_SIGNING_BLOCK_SIZE + 1024 * 1024
    footer = struct.pack("<Q", size - 8) + APK_SIG_BLOCK_MAGIC
    entries = struct.pack("<Q", size - 8) + b"\x00" * (size - 8 - len(footer)) + footer
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0, 0, 0, len(entries), 0)
    path = tmp_path / "huge-block.apk"
    path.write_bytes(entries + eocd)

    result = verify_apk(path, min_sdk=24)

    assert not result.verified
    assert any("at most" in e for e in result.errors), result.errors


def test_central_directory_not_followed_by_eocd_is_a_failed_result(tmp_path: Path) -> None:
    data = bytearray(fixture_path("fixture-release-v1v2v3.apk").read_bytes())
    eocd = data.rfind(b"PK\x05\x06")
    (cd_size,) = struct.unpack_from("<I", data, eocd + 12)
    struct.pack_into("<I", data, eocd + 12, cd_size - 1)
    path = tmp_path / "bad-cd.apk"
    path.write_bytes(bytes(data))

    result = verify_apk(path, min_sdk=21)

    assert not result.verified
    assert "not immediately followed" in result.errors[0]


def test_record_count_larger_than_directory_is_a_failed_result(tmp_path: Path) -> None:
    data = bytearray(fixture_path("fixture-v1-only.apk").read_bytes())
    eocd = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, eocd + 8, 500, 500)
    path = tmp_path / "count.apk"
    path.write_bytes(bytes(data))

    result = verify_apk(path, min_sdk=21)

    assert not result.verified and "truncated" in result.errors[0]


def test_deflate_bomb_inside_an_entry_is_bounded(tmp_path: Path) -> None:
    compressed = zlib.compress(b"\x00" * (32 * 1024 * 1024))
    assert len(compressed) < 64 * 1024
    data = _zip_with({"x.bin": b"\x00" * (32 * 1024 * 1024)})
    path = tmp_path / "x.zip"
    path.write_bytes(_lie_about_size(data, "x.bin", 10))

    with path.open("rb") as fh:
        sections = find_zip_sections(fh)
        (entry,) = read_central_directory(fh, sections)
        with pytest.raises(MalformedZip, match="overflowed"):
            for _ in iter_uncompressed_data(fh, entry, sections.cd_offset):
                pass


def test_the_signer_refuses_an_honestly_declared_bomb_in_bounded_memory(tmp_path: Path) -> None:
    from appyard.signing.keystore import load_keystore
    from appyard.signing.sign import sign_apk
    from appyard.signing.zipmeta import MAX_RATIO
    from tests.conftest import KEYS, RELEASE_KEY

    base = fixture_path("fixture-v1-only.apk")
    bombed = tmp_path / "bombed.apk"
    with zipfile.ZipFile(base) as a, zipfile.ZipFile(bombed, "w") as b:
        for info in a.infolist():
            b.writestr(info, a.read(info))
        b.writestr("assets/zeros.bin", b"\x00" * (32 * 1024 * 1024), zipfile.ZIP_DEFLATED)

    material = load_keystore(KEYS / RELEASE_KEY[0], password=RELEASE_KEY[1], alias=RELEASE_KEY[2])
    tracemalloc.start()
    try:
        with pytest.raises(InvalidArtifact, match=f"more than {MAX_RATIO}x"):
            sign_apk(bombed, tmp_path / "signed.apk", material)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024
    assert not (tmp_path / "signed.apk").exists()
