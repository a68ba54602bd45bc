"""The committed Android test artifacts (tests/fixtures/) come from the repository's own
sources: scripts/make-test-artifacts remakes them from tests/artifacts-src/ with Debian's
Android tools, byte for byte for the RSA-signed APKs (with the committed keys), and from
scratch with keys it generates."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from appyard.inspect import inspect_file
from tests.conftest import FIXTURES, ROOT, need

SCRIPT = ROOT / "scripts" / "make-test-artifacts"
REPRODUCIBLE = [
    "fixture-unsigned.apk",
    "fixture-v1-only.apk",
    "fixture-release-v1v2v3.apk",
    "fixture-debug-signed.apk",
    "fixture-debuggable.apk",
    "fixture-release-vc2.apk",
    "fixture-native-libs.apk",
]
RANDOMIZED = ["fixture-otherkey-vc2.apk", "fixture-bundle.aab"]  # ECDSA, jarsigner's time


def tools() -> None:
    for tool in ("aapt2", "apksigner", "zipalign", "keytool", "jarsigner", "zip", "llvm-mc"):
        need(shutil.which(tool) is not None, f"{tool} is needed by make-test-artifacts")
    need(
        shutil.which("ld.lld") is not None or shutil.which("ld.lld-14") is not None,
        "ld.lld (lld or lld-14) is needed by make-test-artifacts",
    )
    for path in (
        "/usr/share/android-framework-res/framework-res.apk",
        "/usr/share/java/smali.jar",
    ):
        need(Path(path).exists(), f"{path} is needed (android-framework-res, libsmali-java)")


def make(out: Path) -> None:
    r = subprocess.run([str(SCRIPT), str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


# aapt2's protobuf output names the source files by their path in the build's temporary
# folder, so these two differ by that path from run to run
PATH_BEARING = {"base/resources.pb", "base/manifest/AndroidManifest.xml"}


def contents(path: Path) -> dict[str, bytes]:
    """A zip's entries but its signature files (and the path-bearing protobufs)."""
    with zipfile.ZipFile(path) as zf:
        return {
            n: zf.read(n)
            for n in zf.namelist()
            if not n.startswith("META-INF/") and n not in PATH_BEARING
        }


@pytest.mark.slow
def test_the_committed_artifacts_are_remade_from_the_sources(tmp_path: Path) -> None:
    tools()
    out = tmp_path / "out"
    shutil.copytree(FIXTURES / "keys", out / "keys")
    make(out)
    for name in REPRODUCIBLE:
        assert (out / name).read_bytes() == (FIXTURES / name).read_bytes(), name
    for name in RANDOMIZED:
        assert contents(out / name) == contents(FIXTURES / name), name
        assert inspect_file(out / name).identity == inspect_file(FIXTURES / name).identity


@pytest.mark.slow
def test_from_scratch_with_keys_it_generates(tmp_path: Path) -> None:
    tools()
    make(tmp_path)
    assert {p.name for p in (tmp_path / "keys").iterdir()} >= {
        "release.p12", "other.p12", "debug.keystore", "release.pem",
    }  # fmt: skip
    for name in [*REPRODUCIBLE, *RANDOMIZED]:
        assert inspect_file(tmp_path / name).identity == inspect_file(FIXTURES / name).identity
    for name in ("fixture-release-v1v2v3.apk", "fixture-otherkey-vc2.apk"):
        verify = subprocess.run(["apksigner", "verify", str(tmp_path / name)], capture_output=True)
        assert verify.returncode == 0, verify.stderr
    # a new release key: same app, another signer than the committed one
    assert (tmp_path / "keys" / "release.pem").read_bytes() != (
        FIXTURES / "keys" / "release.pem"
    ).read_bytes()
