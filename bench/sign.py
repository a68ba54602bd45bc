"""Benchmark: appyard's APK signer against ``apksigner sign`` on a ~100 MB APK, and its IPA
re-signer on a ~100 MB IPA with many files (against ``isign`` where it runs).

    .venv/bin/python bench/sign.py [--what apk|ipa|all] [--size-mb 100] [--pairs 3] [--small-mb 10]

Builds a test APK from a fixture plus random assets (half stored, half deflated, a few
uncompressed ``.so``), then signs it v1+v2+v3 with the same RSA 2048 key, alternating
appyard and apksigner ``--pairs`` times. Each signer runs as its own child process (Python
or JVM start-up included on both sides); its peak RSS comes from ``wait4``. Prints the median
wall times, the ratio, appyard's peak RSS for the big APK and for a ``--small-mb`` one (flat
memory means the two are close), and checks every output with ``apksigner verify``.

The IPA row builds an app with ``tests/signing/ios_kit.py`` (llvm-mc, ld64.lld-14, llvm-lipo-14:
a fat main executable with up to 24 MB of code and data (a quarter of the IPA at most), a
framework, a dylib, an extension, a watch app), adds resource files (half random, half text)
up to ``--size-mb`` (~2,000 at 100 MB), and
re-signs it with a self-made identity and profile, each run in its own process (peak RSS
from ``wait4``); every output must pass appyard's verifier. ``isign`` (the other re-signer on
PyPI) is tried with ``--isign CMD`` (e.g. a Python 2.7 install); the row says why it did not run.
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

IPA_CHILD = """
import sys
from pathlib import Path
from appyard.signing.keystore import load_keystore_bytes
from appyard.signing.ios.resign import resign_ipa
p12 = Path(sys.argv[1]).read_bytes()
material = load_keystore_bytes(p12, password=sys.argv[2], pkcs12_only=True)
resign_ipa(sys.argv[4], sys.argv[5], material, profiles=[Path(sys.argv[3]).read_bytes()])
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
sys.stderr.write(hwm[0])
"""

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
    """Run ``argv``; return (wall seconds, peak RSS in KiB) of that child alone.

    ``ru_maxrss`` keeps the high-water mark a child had before ``exec`` (the benchmark's own
    RSS, when the child was forked from it); a child that prints its ``VmHWM:`` line (the
    peak of its own address space) on stderr is measured by that instead."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{argv[0]} failed: {err}")
    for line in err.splitlines():
        if line.startswith("VmHWM:"):
            return elapsed, int(line.split()[1])
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


def build_ipa_of(path: Path, size_mb: int, seed: int = 7) -> int:
    """A test IPA (see the module docstring) grown to about ``size_mb``; returns its file count."""
    sys.path.insert(0, str(ROOT))
    from tests.signing.ios_kit import build_ipa

    rng = random.Random(seed)
    target = size_mb * 1024 * 1024
    exe_bytes = min(24 * 1024 * 1024, target // 4)
    built = build_ipa(path.with_suffix(".base.ipa"), exe_const_bytes=exe_bytes)
    with zipfile.ZipFile(built.path) as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            out.writestr(info, src.read(info), compress_type=info.compress_type)
        written = path.stat().st_size if path.exists() else 0
        i = 0
        while written < target:
            if i % 2:
                size = rng.randint(16 * 1024, 96 * 1024)
                data = rng.randbytes(size)
                written += size
            else:
                size = rng.randint(4 * 1024, 64 * 1024)
                data = rng.randbytes(size * 3 // 4).hex().encode()[:size]
                written += size * 6 // 10
            out.writestr(f"{built.app}Resources/r{i:05d}.bin", data, zipfile.ZIP_DEFLATED)
            i += 1
        count = len(out.infolist())
    built.path.unlink()
    return count


def ipa_row(args: argparse.Namespace, work: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.signing.ios_kit import PASSWORD as P12_PASSWORD
    from tests.signing.ios_kit import make_identity, make_profile, tools_present

    from appyard.signing.ios.verify import verify_ipa

    if not tools_present():
        raise SystemExit("llvm-mc, ld64.lld-14 and llvm-lipo-14 are needed (apt: llvm lld-14)")
    identity = make_identity()
    p12, profile = work / "dist.p12", work / "App.mobileprovision"
    p12.write_bytes(identity.p12)
    profile.write_bytes(make_profile(identity))
    big, small = work / "big.ipa", work / "small.ipa"
    files = build_ipa_of(big, args.size_mb)
    small_files = build_ipa_of(small, args.small_mb)
    print(f"IPA input: {big.stat().st_size / 1e6:.1f} MB, {files} entries")
    print(f"small IPA: {small.stat().st_size / 1e6:.1f} MB, {small_files} entries")
    times: list[float] = []
    rss: list[int] = []
    for i in range(args.pairs):
        out = work / f"signed-{i}.ipa"
        argv = [sys.executable, "-c", IPA_CHILD, str(p12), P12_PASSWORD, str(profile)]
        seconds, peak = run_child([*argv, str(big), str(out)])
        start = time.perf_counter()
        report = verify_ipa(out)
        verify_seconds = time.perf_counter() - start
        if not report.intact:
            raise SystemExit(f"appyard's output does not verify: {report.problems[:5]}")
        times.append(seconds)
        rss.append(peak)
        print(
            f"  run {i + 1} appyard re-sign {seconds:6.2f} s  peak RSS {peak / 1024:6.1f} MiB"
            f"  (verify {verify_seconds:.2f} s)"
        )
        out.unlink()
    _s, small_rss = run_child(
        [sys.executable, "-c", IPA_CHILD, str(p12), P12_PASSWORD, str(profile), str(small),
         str(work / "small-signed.ipa")]
    )  # fmt: skip
    print(f"appyard IPA median {statistics.median(times):.2f} s")
    print(
        f"appyard IPA peak RSS: {max(rss) / 1024:.1f} MiB at {args.size_mb} MB, "
        f"{small_rss / 1024:.1f} MiB at {args.small_mb} MB"
    )
    if args.isign is None:
        print("isign: not run (pass --isign CMD); it does not run on Python 3 (bench/README.md)")
        return
    cert, key = work / "cert.pem", work / "key.pem"
    from cryptography.hazmat.primitives import serialization

    cert.write_bytes(identity.material.certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        identity.material.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    argv = [*args.isign.split(), "-c", str(cert), "-k", str(key), "-p", str(profile)]
    proc = subprocess.run([*argv, "-o", str(work / "isign.ipa"), str(big)], capture_output=True)
    if proc.returncode:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
        print(f"isign: did not run ({' '.join(tail)})")
        return
    seconds, peak = run_child([*argv, "-o", str(work / "isign2.ipa"), str(big)])
    print(f"isign {seconds:.2f} s  peak RSS {peak / 1024:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=("apk", "ipa", "all"), default="all")
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--small-mb", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--isign", help="command that runs isign (e.g. a Python 2.7 install)")
    args = parser.parse_args()
    if args.what in ("ipa", "all"):
        with tempfile.TemporaryDirectory(prefix="appyard-bench-ipa-") as tmp:
            ipa_row(args, Path(tmp))
    if args.what == "ipa":
        return
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
