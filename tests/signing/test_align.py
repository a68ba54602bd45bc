"""Streaming zipalign: 4-byte data alignment, 16 KiB for uncompressed .so, nothing else moves.

Ground truth is Debian's ``zipalign -c -p 4`` (it checks 4 KiB pages; 16 KiB is checked here by
reading local headers with :mod:`zipfile`, independently of appyard's own reader).
"""

from __future__ import annotations

import io
import os
import random
import shutil
import struct
import subprocess
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import pytest

from appyard.errors import InvalidArtifact
from appyard.signing.align import ALIGNMENT_EXTRA_ID, align_apk, check_alignment
from appyard.signing.zipmeta import MalformedZip, NotAZip
from tests.conftest import FIXTURES, need

GENERATED_APKS = [
    "fixture-unsigned.apk",
    "fixture-v1-only.apk",
    "fixture-release-v1v2v3.apk",
    "fixture-debug-signed.apk",
    "fixture-debuggable.apk",
    "fixture-release-vc2.apk",
    "fixture-otherkey-vc2.apk",
    "fixture-native-libs.apk",
]


def zipalign_check(path: Path) -> subprocess.CompletedProcess[str]:
    need(shutil.which("zipalign") is not None, "zipalign is not installed")
    return subprocess.run(["zipalign", "-c", "-p", "4", str(path)], capture_output=True, text=True)


def data_offsets(path: Path) -> dict[str, tuple[int, int, bytes]]:
    """name -> (data offset, compress type, local extra), read with zipfile + local headers."""
    out = {}
    with zipfile.ZipFile(path) as zf, path.open("rb") as fh:
        for info in zf.infolist():
            fh.seek(info.header_offset)
            header = fh.read(30)
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            fh.seek(info.header_offset + 30 + name_len)
            extra = fh.read(extra_len)
            out[info.filename] = (
                info.header_offset + 30 + name_len + extra_len,
                info.compress_type,
                extra,
            )
    return out


def assert_aligned(path: Path) -> None:
    for name, (offset, method, _extra) in data_offsets(path).items():
        if method == zipfile.ZIP_STORED:
            required = 16384 if name.endswith(".so") else 4
            assert offset % required == 0, f"{name} data at {offset} is not {required}-aligned"


def assert_same_content(a: Path, b: Path) -> None:
    with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
        assert [i.filename for i in za.infolist()] == [i.filename for i in zb.infolist()]
        assert zb.testzip() is None
        for ia, ib in zip(za.infolist(), zb.infolist(), strict=True):
            assert (ia.compress_type, ia.CRC, ia.compress_size, ia.file_size) == (
                ib.compress_type,
                ib.CRC,
                ib.compress_size,
                ib.file_size,
            )
            assert za.read(ia) == zb.read(ib)


def misaligned_apk(path: Path, *, seed: int = 1) -> Path:
    """Stored entries (one .so) deliberately off alignment, a deflated one, a directory."""
    rng = random.Random(seed)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("AndroidManifest.xml", rng.randbytes(333), zipfile.ZIP_DEFLATED)
        zf.writestr("a.bin", rng.randbytes(1001), zipfile.ZIP_STORED)
        zf.writestr("lib/arm64-v8a/libx.so", rng.randbytes(5000), zipfile.ZIP_STORED)
        zf.writestr("res/", b"")
        zf.writestr("res/raw/b.txt", b"hello " * 100, zipfile.ZIP_DEFLATED)
        zf.writestr("lib/armeabi-v7a/liby.so", rng.randbytes(70_001), zipfile.ZIP_STORED)
        zf.writestr("c.bin", rng.randbytes(77), zipfile.ZIP_STORED)
    return path


# --- alignment ------------------------------------------------------------------------------------


def test_stored_entries_land_on_4_bytes_and_shared_objects_on_16_kib(tmp_path: Path) -> None:
    src = misaligned_apk(tmp_path / "in.apk")
    assert check_alignment(src)  # the input really is misaligned
    assert zipalign_check(src).returncode != 0

    align_apk(src, tmp_path / "out.apk")

    assert_aligned(tmp_path / "out.apk")
    assert check_alignment(tmp_path / "out.apk") == []
    assert zipalign_check(tmp_path / "out.apk").returncode == 0
    assert_same_content(src, tmp_path / "out.apk")


@pytest.mark.parametrize("name", GENERATED_APKS)
def test_every_generated_fixture_aligns_and_keeps_its_content(name: str, tmp_path: Path) -> None:
    src = FIXTURES / name

    align_apk(src, tmp_path / name)

    assert zipalign_check(tmp_path / name).returncode == 0
    assert_aligned(tmp_path / name)
    assert_same_content(src, tmp_path / name)


def test_padding_is_one_alignment_record_and_other_extras_survive(tmp_path: Path) -> None:
    src = tmp_path / "in.apk"
    timestamp = struct.pack("<HHBI", 0x5455, 5, 1, 1_700_000_000)
    with zipfile.ZipFile(src, "w") as zf:
        info = zipfile.ZipInfo("x.bin")
        info.extra = timestamp
        zf.writestr(info, b"z" * 10, zipfile.ZIP_STORED)

    align_apk(src, tmp_path / "out.apk")

    _offset, _method, extra = data_offsets(tmp_path / "out.apk")["x.bin"]
    assert extra.startswith(timestamp)
    header_id, size, alignment = struct.unpack_from("<HHH", extra, len(timestamp))
    assert (header_id, alignment) == (ALIGNMENT_EXTRA_ID, 4)
    assert len(extra) == len(timestamp) + 4 + size
    assert set(extra[len(timestamp) + 6 :]) <= {0}


def test_aligning_twice_changes_nothing_and_padding_does_not_pile_up(tmp_path: Path) -> None:
    align_apk(misaligned_apk(tmp_path / "in.apk"), tmp_path / "once.apk")
    align_apk(tmp_path / "once.apk", tmp_path / "twice.apk")

    assert (tmp_path / "once.apk").read_bytes() == (tmp_path / "twice.apk").read_bytes()


def test_zipaligns_own_zero_padding_is_replaced(tmp_path: Path) -> None:
    need(shutil.which("zipalign") is not None, "zipalign is not installed")
    src = misaligned_apk(tmp_path / "in.apk")
    subprocess.run(["zipalign", "-f", "-p", "4", str(src), str(tmp_path / "za.apk")], check=True)

    align_apk(tmp_path / "za.apk", tmp_path / "out.apk")

    for name, (_offset, method, extra) in data_offsets(tmp_path / "out.apk").items():
        if method == zipfile.ZIP_STORED:
            assert struct.unpack_from("<H", extra)[0] == ALIGNMENT_EXTRA_ID, name
    assert_aligned(tmp_path / "out.apk")


def test_entries_with_data_descriptors_are_copied_whole(tmp_path: Path) -> None:
    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.buffer = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: bytes) -> int:  # type: ignore[override]
            self.buffer += b
            return len(b)

    sink = Unseekable()
    with zipfile.ZipFile(sink, "w") as zf:  # not seekable: zipfile writes data descriptors
        zf.writestr("AndroidManifest.xml", b"m" * 300, zipfile.ZIP_DEFLATED)
        zf.writestr("raw.bin", os.urandom(999), zipfile.ZIP_STORED)
    src = tmp_path / "dd.apk"
    src.write_bytes(bytes(sink.buffer))
    assert zipfile.ZipFile(src).infolist()[0].flag_bits & 0x8

    align_apk(src, tmp_path / "out.apk")

    assert_same_content(src, tmp_path / "out.apk")
    assert zipalign_check(tmp_path / "out.apk").returncode == 0


def test_signing_block_is_dropped_and_a_jar_signature_stays_valid(tmp_path: Path) -> None:
    need(shutil.which("apksigner") is not None, "apksigner is not installed")
    src = FIXTURES / "fixture-v1-only.apk"

    align_apk(src, tmp_path / "out.apk")
    signed = FIXTURES / "fixture-release-v1v2v3.apk"
    align_apk(signed, tmp_path / "unblocked.apk")

    assert b"APK Sig Block 42" not in (tmp_path / "unblocked.apk").read_bytes()
    result = subprocess.run(
        ["apksigner", "verify", str(tmp_path / "out.apk")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_memory_stays_flat_while_aligning_a_large_apk(tmp_path: Path) -> None:
    src = tmp_path / "big.apk"
    chunk = os.urandom(1024 * 1024)
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("AndroidManifest.xml", b"m", zipfile.ZIP_DEFLATED)
        with zf.open(zipfile.ZipInfo("assets/big.bin"), "w") as fh:
            for _ in range(48):
                fh.write(chunk)
    del chunk

    tracemalloc.start()
    try:
        align_apk(src, tmp_path / "out.apk")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 6 * 1024 * 1024, f"peak Python allocation {peak} bytes for a 48 MB APK"
    assert check_alignment(tmp_path / "out.apk") == []


# --- hostile input --------------------------------------------------------------------------------


def _refused(src: Path, dst: Path) -> InvalidArtifact:
    with pytest.raises(InvalidArtifact) as caught:
        align_apk(src, dst)
    assert not dst.exists()
    assert [p.name for p in dst.parent.iterdir() if p.name.endswith(".tmp")] == []
    return caught.value


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04" + b"\x00" * 40])
def test_non_zip_input_is_refused(content: bytes, tmp_path: Path) -> None:
    (tmp_path / "x.apk").write_bytes(content)

    assert isinstance(_refused(tmp_path / "x.apk", tmp_path / "out.apk"), NotAZip)


def test_truncated_apk_is_refused_and_leaves_no_output(tmp_path: Path) -> None:
    data = misaligned_apk(tmp_path / "in.apk").read_bytes()
    eocd = data.rfind(b"PK\x05\x06")
    cd_offset = struct.unpack_from("<I", data, eocd + 16)[0]
    # drop the tail of the entries but keep the central directory: entries point past the data
    (tmp_path / "cut.apk").write_bytes(
        data[: cd_offset - 5000]
        + data[cd_offset : eocd + 16]
        + struct.pack("<I", cd_offset - 5000)
        + data[eocd + 20 :]
    )

    error = _refused(tmp_path / "cut.apk", tmp_path / "out.apk")

    assert isinstance(error, MalformedZip)
    assert "overlaps with Central Directory" in error.message


def test_overlapping_entries_are_refused(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("inner.bin", b"i" * 100, zipfile.ZIP_STORED)
    inner_local = inner.getvalue()[: 30 + len("inner.bin") + 100]
    # outer entry "outer.bin" (stored) whose data *is* the inner entry's local record;
    # then a second central record pointing inside the first entry's data.
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as zf:
        zf.writestr("outer.bin", inner_local, zipfile.ZIP_STORED)
    data = bytearray(outer.getvalue())
    eocd = data.rfind(b"PK\x05\x06")
    (cd_offset,) = struct.unpack_from("<I", data, eocd + 16)
    inner_cd = inner.getvalue()
    inner_record = bytearray(inner_cd[inner_cd.find(b"PK\x01\x02") : inner_cd.rfind(b"PK\x05\x06")])
    struct.pack_into("<I", inner_record, 42, 30 + len("outer.bin"))  # inside outer's data
    cd = data[cd_offset:eocd] + inner_record
    eocd_record = bytearray(data[eocd:])
    struct.pack_into("<HHI", eocd_record, 8, 2, 2, len(cd))
    (tmp_path / "bomb.apk").write_bytes(bytes(data[:cd_offset] + cd + eocd_record))

    error = _refused(tmp_path / "bomb.apk", tmp_path / "out.apk")

    assert error.details["reason"] == "overlapping_entries"


def test_zip64_and_encrypted_entries_are_refused(tmp_path: Path) -> None:
    data = bytearray(misaligned_apk(tmp_path / "in.apk").read_bytes())
    eocd = data.rfind(b"PK\x05\x06")
    # a ZIP64 end-of-central-directory locator right before the end record
    (tmp_path / "z64.apk").write_bytes(data[:eocd] + b"PK\x06\x07" + bytes(16) + data[eocd:])
    encrypted = bytearray(data)
    cd = struct.unpack_from("<I", data, eocd + 16)[0]
    struct.pack_into("<H", encrypted, cd + 8, 1)
    (tmp_path / "enc.apk").write_bytes(encrypted)

    assert _refused(tmp_path / "z64.apk", tmp_path / "o1.apk").details["reason"] == "zip64"
    assert (
        _refused(tmp_path / "enc.apk", tmp_path / "o2.apk").details["reason"] == "encrypted_entry"
    )


def test_duplicate_entry_names_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "dup.apk"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with zipfile.ZipFile(src, "w") as zf:
            zf.writestr("classes.dex", b"one")
            zf.writestr("classes.dex", b"two")

    assert _refused(src, tmp_path / "out.apk").details["reason"] == "duplicate_entry"
