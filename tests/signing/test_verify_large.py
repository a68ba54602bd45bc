"""A large APK signed by apksigner (v1 + v2 + v3 with verity digests): streamed verification.

The APK is the unsigned fixture plus a stored random asset of ``APPYARD_LARGE_APK_MIB`` MiB
(default 48; multi-level verity trees need more than 512 KiB). Checks: appyard verifies what
apksigner signed (CHUNKED_SHA256 and VERITY_CHUNKED_SHA256 digests), refuses it after one
flipped byte as apksigner does, keeps its memory far below the file size, and is not slower
than ``apksigner verify``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from appyard.signing.verify import verify_apk
from appyard.signing.zipmeta import find_zip_sections, local_data_range, read_central_directory
from tests.signing.test_verify import LOCAL_FIXTURES, SHARED_FIXTURES, fixture_path

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
APKSIGNER = shutil.which("apksigner")
SIZE_MIB = int(os.environ.get("APPYARD_LARGE_APK_MIB", "48"))


def _keys_dir() -> Path:
    for candidate in (LOCAL_FIXTURES / "keys", SHARED_FIXTURES / "generated" / "keys"):
        if (candidate / "release.p12").exists():
            return candidate
    pytest.skip("fixture keys (release.p12) are absent")


def _apksigner_verifies(path: Path, *args: str) -> tuple[bool, float]:
    assert APKSIGNER is not None
    started = time.perf_counter()
    proc = subprocess.run(
        [APKSIGNER, "verify", *args, str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return proc.returncode == 0, time.perf_counter() - started


@pytest.fixture(scope="module")
def large_apk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if APKSIGNER is None:
        if IN_CI:
            pytest.fail("required in CI: apksigner on PATH")
        pytest.skip("apksigner is not on PATH")
    root = tmp_path_factory.mktemp("large")
    unsigned = root / "unsigned.apk"
    with (
        zipfile.ZipFile(fixture_path("fixture-unsigned.apk")) as src,
        zipfile.ZipFile(unsigned, "w") as dst,
    ):
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        blob = zipfile.ZipInfo("assets/blob.bin")
        blob.compress_type = zipfile.ZIP_STORED
        with dst.open(blob, "w") as out:
            for _ in range(SIZE_MIB):
                out.write(os.urandom(1024 * 1024))
    signed = root / "signed.apk"
    keys = _keys_dir()
    subprocess.run(
        [
            APKSIGNER,
            "sign",
            "--ks",
            str(keys / "release.p12"),
            "--ks-pass",
            "pass:fixture-release",
            "--min-sdk-version",
            "21",
            "--verity-enabled",
            "true",
            "--out",
            str(signed),
            str(unsigned),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    yield signed


def test_large_apk_with_verity_digests_verifies_like_apksigner(large_apk: Path) -> None:
    for min_sdk in (21, 24):
        result = verify_apk(large_apk, min_sdk=min_sdk)
        assert result.verified, result.errors
        assert result.v2.verified and result.v3.verified
        assert apksigner_ok(large_apk, "--min-sdk-version", str(min_sdk))


def apksigner_ok(path: Path, *args: str) -> bool:
    return _apksigner_verifies(path, *args)[0]


def test_one_flipped_byte_in_a_large_entry_fails_both(large_apk: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.apk"
    shutil.copyfile(large_apk, damaged)
    with damaged.open("r+b") as fh:
        sections = find_zip_sections(fh)
        entry = next(e for e in read_central_directory(fh, sections) if e.name.endswith("blob.bin"))
        offset, size = local_data_range(fh, entry, sections.cd_offset)
        fh.seek(offset + size - 5000)
        byte = fh.read(1)
        fh.seek(offset + size - 5000)
        fh.write(bytes([byte[0] ^ 0x80]))

    for min_sdk in ("21", "24"):
        assert not verify_apk(damaged, min_sdk=int(min_sdk)).verified
        assert not apksigner_ok(damaged, "--min-sdk-version", min_sdk)


def test_memory_stays_bounded_while_streaming(large_apk: Path) -> None:
    tracemalloc.start()
    try:
        result = verify_apk(large_apk, min_sdk=21)  # v1 entry digests and v2/v3 digests
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.verified
    assert peak < 16 * 1024 * 1024 < large_apk.stat().st_size


def test_not_slower_than_apksigner(large_apk: Path) -> None:
    args = ("--min-sdk-version", "24")
    ok, theirs = min((_apksigner_verifies(large_apk, *args) for _ in range(2)), key=lambda r: r[1])
    ours = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        assert verify_apk(large_apk, min_sdk=24).verified
        ours = min(ours, time.perf_counter() - started)

    assert ok
    assert ours <= theirs * 1.1, f"appyard {ours:.2f}s vs apksigner {theirs:.2f}s"
