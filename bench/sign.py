"""Benchmark: appyard's APK signer against ``apksigner sign`` on a ~100 MB APK.

    .venv/bin/python bench/sign.py [--size-mb 100] [--pairs 3] [--small-mb 10]

Builds a test APK from a fixture plus random assets (half stored, half deflated, a few
uncompressed ``.so``), then signs it v1+v2+v3 with the same RSA 2048 key, alternating
appyard and apksigner ``--pairs`` times. Each signer runs as its own child process (Python
or JVM start-up included on both sides); its peak RSS comes from ``wait4``. Prints the median
wall times, the ratio, appyard's peak RSS for the big APK and for a ``--small-mb`` one (flat
memory means the two are close), and checks every output with ``apksigner verify``.
"""

from __future__ import annotations

# isort: off
import _path  # noqa: F401  (first: see bench/_path.py)

# isort: on

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "generated" / "fixture-unsigned.apk"
KEYSTORE = ROOT / "tests" / "fixtures" / "keys" / "release.p12"
PASSWORD, ALIAS = "fixture-release", "release"

APPYARD_CHILD = """
import sys
from appyard.signing.keystore import load_keystore
from appyard.signing.sign import sign_apk
material = load_keystore(sys.argv[1], password=sys.argv[2], alias=sys.argv[3])
sign_apk(sys.argv[4], sys.argv[5], material)
"""


def build_apk(path: Path, size_mb: int, seed: int = 4) -> None:
    """The fixture's entries, then random assets up to ``size_mb`` (stored, deflated, .so)."""
    rng = random.Random(seed)
    target = size_mb * 1024 * 1024
    with zipfile.ZipFile(FIXTURE) as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            out.writestr(info, src.read(info), compress_type=info.compress_type)
        written = path.stat().st_size if path.exists() else 0
        i = 0
        while written < target:
            kind = i % 5
            size = rng.randint(512 * 1024, 4 * 1024 * 1024)
            if kind in (0, 1):  # stored, incompressible (images, media)
                out.writestr(f"assets/media/blob{i}.bin", rng.randbytes(size), zipfile.ZIP_STORED)
                written += size
            elif kind == 4:  # uncompressed native library
                out.writestr(
                    f"lib/arm64-v8a/libbench{i}.so", rng.randbytes(size), zipfile.ZIP_STORED
                )
                written += size
            else:  # deflated text-like data (~75% of its size after deflate)
                data = rng.randbytes(size * 3 // 4).hex().encode()[:size]
                out.writestr(f"assets/data/text{i}.json", data, zipfile.ZIP_DEFLATED)
                written += len(data) * 6 // 10
            i += 1


def run_child(argv: list[str]) -> tuple[float, int]:
    """Run ``argv``; return (wall seconds, peak RSS in KiB) of that child alone."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        assert proc.stderr is not None
        raise SystemExit(f"{argv[0]} failed: {proc.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss


def appyard(src: Path, dst: Path) -> tuple[float, int]:
    return run_child(
        [sys.executable, "-c", APPYARD_CHILD, str(KEYSTORE), PASSWORD, ALIAS, str(src), str(dst)]
    )


def apksigner(src: Path, dst: Path) -> tuple[float, int]:
    return run_child(
        [
            "apksigner",
            "sign",
            "--ks",
            str(KEYSTORE),
            "--ks-pass",
            f"pass:{PASSWORD}",
            "--ks-key-alias",
            ALIAS,
            "--in",
            str(src),
            "--out",
            str(dst),
        ]
    )


def verify(path: Path) -> None:
    result = subprocess.run(["apksigner", "verify", str(path)], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"apksigner verify failed on {path}: {result.stdout}{result.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--small-mb", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("apksigner") is None:
        raise SystemExit("apksigner is not installed (apt-get install apksigner)")
    with tempfile.TemporaryDirectory(prefix="appyard-bench-") as tmp:
        work = Path(tmp)
        big, small = work / "big.apk", work / "small.apk"
        build_apk(big, args.size_mb)
        build_apk(small, args.small_mb)
        print(
            f"input: {big.stat().st_size / 1e6:.1f} MB, "
            f"{len(zipfile.ZipFile(big).infolist())} entries"
        )
        ours: list[float] = []
        theirs: list[float] = []
        rss: list[int] = []
        for i in range(args.pairs):
            for name in ("appyard", "apksigner") if i % 2 == 0 else ("apksigner", "appyard"):
                out = work / f"{name}-{i}.apk"
                seconds, peak = (appyard if name == "appyard" else apksigner)(big, out)
                verify(out)
                if name == "appyard":
                    ours.append(seconds)
                    rss.append(peak)
                else:
                    theirs.append(seconds)
                print(f"  pair {i + 1} {name:9s} {seconds:6.2f} s  peak RSS {peak / 1024:6.1f} MiB")
                out.unlink()
        _seconds, small_rss = appyard(small, work / "small-signed.apk")
        verify(work / "small-signed.apk")
        ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
        print(f"appyard   median {ours_median:.2f} s")
        print(f"apksigner median {theirs_median:.2f} s")
        print(
            f"ratio appyard/apksigner {ours_median / theirs_median:.2f} "
            f"({'faster' if ours_median <= theirs_median else 'SLOWER'})"
        )
        print(
            f"appyard peak RSS: {max(rss) / 1024:.1f} MiB at {args.size_mb} MB, "
            f"{small_rss / 1024:.1f} MiB at {args.small_mb} MB"
        )


if __name__ == "__main__":
    main()
