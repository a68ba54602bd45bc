"""Benchmark: appyard's artifact inspection against the reference tools and androguard.

    .venv/bin/python bench/inspect.py [--reps 5] [--assets-mb 200] [--no-big] [--keep]

One run covers every fixture (tests/fixtures and, when present, ../shared/fixtures/generated
and thirdparty; the same bytes are timed once) and a large synthetic APK: the generated
fixture-unsigned.apk plus ``--assets-mb`` MB of assets in the file (stored media and deflated
text, about half each, so more than that once inflated), aligned
with ``zipalign -p 4`` and signed v1+v2+v3 by ``apksigner sign`` with
tests/fixtures/keys/release.p12. Per file, interleaved A B A B ``--reps`` times:

- facts: ``inspect_apk(verify_signatures=False)`` (AAB: ``inspect_aab``, IPA: ``inspect_ipa``)
  in this process vs ``aapt dump badging`` as a child process (APKs only);
- signatures: ``verify_apk`` at the APK's minSdk vs ``apksigner verify`` (APK), the JAR
  verifier vs ``jarsigner -verify`` (AAB);
- whole: ``inspect_file`` (facts, icon, alignment, verification) vs androguard 4 (``APK()``
  plus label, icon, SDKs, permissions, launcher activity, ABIs, signature schemes and
  certificates; APKs only, androguard does not read bundles or IPAs). androguard parses the
  signature blocks but recomputes no digest, so on a large APK this column compares
  appyard's verification with androguard's reading. androguard is an optional extra:
  ``pip install -e '.[bench]'``; without it the column is empty.

Times are medians in milliseconds; ratios are medians of the per-pair ratios appyard/other
(below 1: appyard is faster). appyard runs in-process, as in a worker; the reference tools
include their process start-up (aapt about 2 ms, the JVM of apksigner and jarsigner several
hundred ms), which is how a user or a CI step runs them. "peak" is tracemalloc's peak of one
``inspect_file`` call. At the end, the peak RSS (VmHWM) of a child process that imports
appyard and inspects one file, for the smallest APK fixture, the largest one and the big APK,
next to the same for androguard: flat for appyard means memory does not grow with the
assets. The verdicts are cross-checked (package with aapt, verified with apksigner) and any
disagreement is printed; last, appyard's and androguard's facts are compared field by field
with expected.json (aapt dump badging, apksigner verify) for every APK aapt can read.
"""

from __future__ import annotations

# isort: off
import _path  # noqa: F401  (first: see bench/_path.py)

# isort: on
import argparse
import contextlib
import hashlib
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import MB, MIB, interleave, paired_ratio, temp_dir, terminate_on_sigterm

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / "tests" / "fixtures"
SHARED = REPO.parent / "shared" / "fixtures"
KEYSTORE = LOCAL / "keys" / "release.p12"
PASSWORD, ALIAS = "fixture-release", "release"
BASE_APK = LOCAL / "fixture-unsigned.apk"
KINDS = (".apk", ".aab", ".ipa")

CHILD = """
import sys, time
kind, path = sys.argv[1], sys.argv[2]
t = time.monotonic()
if kind == "appyard":
    from appyard.inspect import inspect_file
    facts = inspect_file(__import__("pathlib").Path(path))
else:
    from loguru import logger
    logger.remove()
    from androguard.core.apk import APK
    apk = APK(path)
    apk.get_app_name(); apk.get_app_icon(); apk.get_certificates()
    apk.is_signed_v1(); apk.is_signed_v2(); apk.is_signed_v3()
seconds = time.monotonic() - t
# VmHWM, not ru_maxrss: after fork+exec the latter keeps the parent's high-water mark
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]
print(seconds, int(hwm) * 1024)
"""


# -- the files --------------------------------------------------------------------------------
@dataclass
class Artifact:
    name: str
    path: Path
    kind: str
    size: int


def fixtures() -> list[Artifact]:
    """Every fixture once (by content), tests/fixtures first, then ../shared."""
    roots = [LOCAL]
    if SHARED.is_dir():
        roots += [SHARED / "generated", SHARED / "thirdparty"]
    seen: set[str] = set()
    out: list[Artifact] = []
    for root in roots:
        for path in sorted(root.iterdir()):
            if path.suffix not in KINDS or not path.is_file():
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            out.append(Artifact(path.name, path, path.suffix[1:], path.stat().st_size))
    return out


def build_big_apk(workdir: Path, assets_mb: int, seed: int = 7) -> Artifact:
    """BASE_APK + ``assets_mb`` MB of assets, zipaligned and signed by apksigner."""
    rng = random.Random(seed)
    raw, aligned, signed = workdir / "big-raw.apk", workdir / "big-aligned.apk", workdir / "big.apk"
    target = assets_mb * MB
    with zipfile.ZipFile(BASE_APK) as src, zipfile.ZipFile(raw, "w") as out:
        for info in src.infolist():
            out.writestr(info, src.read(info), compress_type=info.compress_type)
        written, i = 0, 0  # bytes of assets in the file (compressed size)
        words = [rng.randbytes(rng.randint(3, 9)).hex().encode() for _ in range(512)]
        while written < target:
            size = rng.randint(1 * MIB, 4 * MIB)
            if i % 2 == 0:  # stored, incompressible (media)
                out.writestr(f"assets/media/blob{i}.bin", rng.randbytes(size), zipfile.ZIP_STORED)
            else:  # deflated, compressible (text, data)
                text = b" ".join(rng.choice(words) for _ in range(size // 8))[:size]
                out.writestr(f"assets/data/table{i}.txt", text, zipfile.ZIP_DEFLATED)
            written += out.infolist()[-1].compress_size
            i += 1
    run(["zipalign", "-p", "-f", "4", str(raw), str(aligned)])
    raw.unlink()
    run(
        [
            "apksigner", "sign", "--ks", str(KEYSTORE), "--ks-type", "PKCS12",
            "--ks-pass", f"pass:{PASSWORD}", "--ks-key-alias", ALIAS,
            "--out", str(signed), str(aligned),
        ]
    )  # fmt: skip
    aligned.unlink()
    return Artifact(f"synthetic-{assets_mb}MB-assets.apk", signed, "apk", signed.stat().st_size)


def run(argv: list[str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


# -- what is timed ----------------------------------------------------------------------------
def timed(fn: Callable[[], Any]) -> Callable[[int], float]:
    def once(_: int) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1000

    return once


def tool_call(argv: list[str]) -> Callable[[], subprocess.CompletedProcess[str]]:
    return lambda: subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


def appyard_facts(a: Artifact) -> Callable[[], Any]:
    if a.kind == "apk":
        from appyard.inspect.apk import inspect_apk

        return lambda: inspect_apk(a.path, verify_signatures=False)
    if a.kind == "aab":
        from appyard.inspect.aab import inspect_aab

        return lambda: inspect_aab(a.path, verify_signatures=False)
    from appyard.inspect.ipa import inspect_ipa

    return lambda: inspect_ipa(a.path)


def appyard_verify(a: Artifact, min_sdk: int) -> Callable[[], Any] | None:
    if a.kind == "apk":
        from appyard.signing.verify import verify_apk

        return lambda: verify_apk(a.path, min_sdk=min_sdk)
    if a.kind == "aab":
        from appyard.inspect.android_jar import verify_jar
        from appyard.inspect.archive import SafeZip

        def jar() -> Any:
            with SafeZip(a.path, kind="AAB") as zf:
                return verify_jar(zf)

        return jar
    return None


def androguard_whole(a: Artifact) -> Callable[[], Any] | None:
    if a.kind != "apk":
        return None
    try:
        from androguard.core.apk import APK
        from loguru import logger
    except ImportError:
        return None
    logger.remove()

    def whole() -> Any:
        apk = APK(str(a.path))
        out = (
            apk.get_package(),
            apk.get_androidversion_code(),
            apk.get_app_name(),
            apk.get_app_icon(),
            apk.get_min_sdk_version(),
            apk.get_target_sdk_version(),
            apk.get_permissions(),
            apk.get_main_activity(),
            apk.get_libraries(),
            apk.is_signed_v1(),
            apk.is_signed_v2(),
            apk.is_signed_v3(),
            apk.get_certificates(),
        )
        return out

    return whole


# -- one file ---------------------------------------------------------------------------------
@dataclass
class Row:
    artifact: Artifact
    times: dict[str, tuple[float, float | None, float | None]] = field(default_factory=dict)
    peak: int = 0
    notes: list[str] = field(default_factory=list)


def compare(
    row: Row,
    label: str,
    ours: Callable[[], Any],
    theirs: Callable[[], Any] | None,
    reps: int,
) -> None:
    """Median ms of ours and theirs, and the median of the paired ratios. An artifact that
    appyard refuses (InvalidArtifact) is timed too: refusing is its answer."""
    from appyard.errors import InvalidArtifact

    def ours_or_refusal() -> Any:
        with contextlib.suppress(InvalidArtifact):
            return ours()

    try:
        ours_or_refusal()  # warm: imports, page cache
    except Exception as exc:
        row.notes.append(f"{label}: appyard {type(exc).__name__}: {str(exc)[:80]}")
        return
    if theirs is not None:
        try:
            theirs()
        except Exception as exc:  # androguard on a file it cannot read
            row.notes.append(f"{label}: other side {type(exc).__name__}: {str(exc)[:70]}")
            theirs = None
    if theirs is None:
        ours_ms = [timed(ours_or_refusal)(i) for i in range(reps)]
        row.times[label] = (statistics.median(ours_ms), None, None)
        return
    ours_ms, theirs_ms = interleave(reps, timed(ours_or_refusal), timed(theirs))
    row.times[label] = (
        statistics.median(ours_ms),
        statistics.median(theirs_ms),
        paired_ratio(ours_ms, theirs_ms),
    )


def measure(a: Artifact, reps: int, have: dict[str, bool]) -> Row:
    from appyard.errors import InvalidArtifact
    from appyard.inspect import inspect_file

    row = Row(a)
    try:
        facts = appyard_facts(a)()
    except InvalidArtifact as exc:
        row.notes.append(f"appyard: InvalidArtifact ({exc.details.get('reason')})")
        facts = None
    min_sdk = facts.manifest.effective_min_sdk if facts is not None and a.kind == "apk" else 1

    aapt = tool_call(["aapt", "dump", "badging", str(a.path)]) if have["aapt"] else None
    compare(row, "facts", appyard_facts(a), aapt if a.kind == "apk" else None, reps)
    if a.kind == "apk" and aapt is not None and facts is not None:
        out = aapt().stdout
        if f"package: name='{facts.identity.identifier}'" not in out:
            row.notes.append("facts: aapt does not name the package appyard read (or fails)")

    verify = appyard_verify(a, min_sdk) if facts is not None else None
    if verify is not None:
        if a.kind == "apk" and have["apksigner"]:
            ref = tool_call(["apksigner", "verify", str(a.path)])
        elif a.kind == "aab" and have["jarsigner"]:
            ref = tool_call(["jarsigner", "-verify", str(a.path)])
        else:
            ref = None
        compare(row, "verify", verify, ref, reps)
        if a.kind == "apk" and ref is not None:
            theirs_ok = ref().returncode == 0
            if verify().verified is not theirs_ok:
                row.notes.append(f"verify: appyard {not theirs_ok}, apksigner {theirs_ok}")

    if facts is not None:
        compare(row, "whole", lambda: inspect_file(a.path), androguard_whole(a), reps)
        tracemalloc.start()
        with contextlib.suppress(InvalidArtifact):
            inspect_file(a.path)
        row.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return row


def child_peak(kind: str, path: Path) -> tuple[float, int] | None:
    """(seconds inside the child, peak RSS bytes) of a fresh interpreter inspecting ``path``."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(path)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    seconds, hwm = proc.stdout.split()[-2:]
    return float(seconds), int(hwm)


# -- agreement with the reference tools (expected.json) ---------------------------------------
FIELDS = ("package", "versionCode", "versionName", "sdkVersion", "targetSdkVersion")
FIELDS += ("application_label", "launchable_activity", "signers", "verifies")


def facts_of(reader: str, path: Path) -> dict[str, Any]:
    """The fields of FIELDS as appyard or androguard read them."""
    if reader == "appyard":
        from appyard.inspect.apk import inspect_apk

        f = inspect_apk(path)
        m, sig = f.manifest, f.signatures
        assert sig is not None
        return {
            "package": m.package,
            "versionCode": f.identity.version_code,
            "versionName": m.version_name or "",
            "sdkVersion": None if m.min_sdk is None else str(m.min_sdk),
            "targetSdkVersion": None if m.target_sdk is None else str(m.target_sdk),
            "application_label": m.label,
            "launchable_activity": m.launcher_activity,
            "signers": sorted(c.sha256 for c in sig.signers),
            "verifies": sig.verified,
        }
    from androguard.core.apk import APK

    apk = APK(str(path))
    return {
        "package": apk.get_package(),
        "versionCode": apk.get_androidversion_code(),
        "versionName": apk.get_androidversion_name() or "",
        "sdkVersion": apk.get_min_sdk_version(),
        "targetSdkVersion": apk.get_target_sdk_version(),
        "application_label": apk.get_app_name(),
        "launchable_activity": apk.get_main_activity(),
        "signers": sorted(c.sha256.hex() for c in apk.get_certificates()),
        # androguard parses signatures but checks no digest: "signed" is all it can say
        "verifies": apk.is_signed(),
    }


def agreement(reader: str) -> None:
    """Fields that differ from aapt / apksigner in ../shared/fixtures/expected.json."""
    expected_path = SHARED / "expected.json"
    if not expected_path.exists():
        return
    expected = json.loads(expected_path.read_text())
    differ: dict[str, list[str]] = {k: [] for k in FIELDS}
    checked = 0
    for name, entry in sorted(expected.items()):
        if entry["kind"] != "apk" or not entry["aapt"]["ok"]:
            continue
        want = {k: entry["aapt"][k] for k in FIELDS[:7]}
        want["signers"] = sorted(s["cert_sha256"] for s in entry["apksigner"]["signers"])
        want["verifies"] = entry["apksigner"]["verifies"]
        try:
            got = facts_of(reader, SHARED / entry["path"])
        except Exception as exc:
            print(f"  {reader}: {name}: {type(exc).__name__}: {str(exc)[:60]}")
            continue
        checked += 1
        if not want["verifies"]:
            want["signers"] = got["signers"]  # apksigner names no signer then
        for key in FIELDS:
            if got[key] != want[key]:
                differ[key].append(f"{name} ({str(got[key])[:24]!r} vs {str(want[key])[:24]!r})")
    bad = {k: v for k, v in differ.items() if v}
    print(
        f"  {reader}: {checked} APKs x {len(FIELDS)} fields, {sum(map(len, bad.values()))} differ"
    )
    for key, cases in bad.items():
        print(f"    {key}: " + "; ".join(cases))


# -- output -----------------------------------------------------------------------------------
def fmt_ms(value: float | None) -> str:
    if value is None:
        return "      -"
    return f"{value:7.1f}" if value < 1000 else f"{value:7.0f}"


def fmt_ratio(value: float | None) -> str:
    return "     -" if value is None else f"{value:6.2f}"


def print_row(row: Row) -> None:
    a = row.artifact
    cells = []
    for label in ("facts", "verify", "whole"):
        ours, theirs, ratio = row.times.get(label, (None, None, None))
        cells.append(f"{fmt_ms(ours)} {fmt_ms(theirs)} {fmt_ratio(ratio)}")
    name = a.name if len(a.name) <= 44 else a.name[:41] + "..."
    print(
        f"{name:44s} {a.size / MB:7.2f}  " + "  ".join(cells) + f"  {row.peak / MB:6.1f}",
        flush=True,
    )
    for note in row.notes:
        print(f"    note: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="A B pairs per file and measure")
    parser.add_argument("--assets-mb", type=int, default=200)
    parser.add_argument("--no-big", action="store_true", help="skip the synthetic APK")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic APK's folder")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    have = {t: shutil.which(t) is not None for t in ("aapt", "apksigner", "jarsigner")}
    try:
        from importlib.metadata import version

        import androguard  # noqa: F401

        have["androguard"] = True
        androguard_version = version("androguard")
    except ImportError:
        have["androguard"] = False
        androguard_version = "absent (pip install -e '.[bench]')"
    print(f"python {sys.version.split()[0]}, androguard {androguard_version}")
    print("tools: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in have.items()))

    files = fixtures()
    with terminate_on_sigterm(), temp_dir("appyard-bench-inspect-", keep=args.keep) as work:
        if not args.no_big:
            if not (shutil.which("zipalign") and have["apksigner"]):
                sys.exit("zipalign and apksigner are needed for the synthetic APK (--no-big)")
            start = time.monotonic()
            big = build_big_apk(work, args.assets_mb)
            print(f"built {big.name}: {big.size / MB:.0f} MB in {time.monotonic() - start:.0f} s")
            files.append(big)
        print(f"{len(files)} files, {args.reps} A/B pairs each; times in ms (median)")
        print()
        header = "{:>7s} {:>7s} {:>6s}"
        print(
            f"{'file':44s} {'MB':>7s}  "
            + "  ".join(
                header.format(*cols)
                for cols in (
                    ("facts", "aapt", "ratio"),
                    ("verify", "apksig", "ratio"),
                    ("whole", "andrgd", "ratio"),
                )
            )
            + f"  {'peakMB':>6s}"
        )
        rows: list[Row] = []
        for artifact in files:
            row = measure(artifact, args.reps, have)
            rows.append(row)
            print_row(row)

        print()
        others = (("facts", "aapt"), ("verify", "apksigner/jarsigner"), ("whole", "androguard"))
        for label, other in others:
            ratios = [
                r.times[label][2]
                for r in rows
                if label in r.times and r.times[label][2] is not None
            ]
            if ratios:
                print(
                    f"{label:6s} appyard/{other}: median ratio {statistics.median(ratios):.3f} "
                    f"over {len(ratios)} files (min {min(ratios):.3f}, max {max(ratios):.3f})"
                )
        small = [r for r in rows if r.artifact.kind == "apk" and r.peak]
        if small:
            fixtures_only = [r for r in small if not r.artifact.name.startswith("synthetic")]
            print(
                "appyard tracemalloc peak per inspect_file: fixtures max "
                f"{max(r.peak for r in fixtures_only) / MB:.1f} MB"
                + "".join(
                    f"; {r.artifact.name} {r.peak / MB:.1f} MB"
                    for r in small
                    if r.artifact.name.startswith("synthetic")
                )
            )

        print()
        print("peak RSS of a child process (import + one inspection):")
        apks = [f for f in files if f.kind == "apk" and f.size > 1000]
        smallest = min(apks, key=lambda f: f.size)
        largest_fixture = max(
            (f for f in files if f.kind == "apk" and not f.name.startswith("synthetic")),
            key=lambda f: f.size,
        )
        probes = [smallest, largest_fixture] + [f for f in files if f.name.startswith("synthetic")]
        children: dict[str, Any] = {}
        for artifact in probes:
            for kind in ("appyard", "androguard"):
                if kind == "androguard" and not have["androguard"]:
                    continue
                result = child_peak(kind, artifact.path)
                children[f"{kind}:{artifact.name}"] = result
                if result is None:
                    print(f"  {kind:10s} {artifact.name:44s} failed")
                    continue
                seconds, rss = result
                print(
                    f"  {kind:10s} {artifact.name:44s} {artifact.size / MB:7.1f} MB file: "
                    f"peak RSS {rss / MB:6.1f} MB, {seconds * 1000:7.0f} ms"
                )
        print()
        print("agreement with aapt / apksigner (expected.json), APKs aapt reads:")
        agreement("appyard")
        if have["androguard"]:
            agreement("androguard")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "rows": [
                            {
                                "file": r.artifact.name,
                                "bytes": r.artifact.size,
                                "times_ms": r.times,
                                "tracemalloc_peak": r.peak,
                                "notes": r.notes,
                            }
                            for r in rows
                        ],
                        "children": children,
                    },
                    indent=1,
                )
            )


if __name__ == "__main__":
    main()
