"""Tampered APKs: appyard's verify_apk and a live ``apksigner verify`` must agree on each.

Every case copies a fixture, damages it one way (one byte of an entry's data, of the central
directory, of the APK Signing Block; the v2/v3 block stripped; a META-INF file removed; ...)
and runs both verifiers with the same ``--min-sdk-version``/``--max-sdk-version``. The
verdict must be equal and, when both verify, so must the schemes used and the signer
certificates. apksigner runs in a thread pool (one JVM per APK is the slow part).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from appyard.signing.verify import V2_BLOCK_ID, verify_apk
from appyard.signing.zipmeta import (
    EOCD_MIN_SIZE,
    find_signing_block,
    find_zip_sections,
    local_data_range,
    read_central_directory,
)
from tests.signing.test_verify import fixture_path

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
APKSIGNER = shutil.which("apksigner")
FAST_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"  # short-lived JVMs start faster


@dataclass(frozen=True)
class Verdict:
    verified: bool
    schemes: tuple[str, ...]
    signers: tuple[str, ...]


def apksigner_verdict(path: Path, min_sdk: int | None, max_sdk: int | None) -> Verdict:
    assert APKSIGNER is not None
    args = [APKSIGNER, "verify", "--verbose", "--print-certs"]
    if min_sdk is not None:
        args += ["--min-sdk-version", str(min_sdk)]
    if max_sdk is not None:
        args += ["--max-sdk-version", str(max_sdk)]
    proc = subprocess.run(
        [*args, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "JAVA_TOOL_OPTIONS": FAST_JVM},
    )
    out = proc.stdout
    verified = proc.returncode == 0 and out.startswith("Verifies")
    schemes = tuple(
        sorted(
            f"v{m.group(1)}"
            for m in re.finditer(r"^Verified using v(\d) scheme .*: true$", out, re.M)
            if m.group(1) in "123"
        )
    )
    signers = tuple(re.findall(r"^Signer #\d+ certificate SHA-256 digest: ([0-9a-f]+)$", out, re.M))
    return Verdict(verified, schemes if verified else (), signers if verified else ())


def appyard_verdict(path: Path, min_sdk: int | None, max_sdk: int | None) -> Verdict:
    result = verify_apk(path, min_sdk=min_sdk, max_sdk=max_sdk)
    schemes = tuple(sorted(s for s in ("v1", "v2", "v3") if result.schemes[s]))
    return Verdict(result.verified, schemes, tuple(s.sha256 for s in result.signers))


# --- ways to damage an APK ---------------------------------------------------------------------


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))


def flip_entry_data(name_suffix: str) -> Callable[[Path], None]:
    def tamper(path: Path) -> None:
        with path.open("rb") as fh:
            sections = find_zip_sections(fh)
            entries = read_central_directory(fh, sections)
            entry = next(e for e in entries if e.name.endswith(name_suffix))
            offset, size = local_data_range(fh, entry, sections.cd_offset)
        _flip(path, offset + size // 2)

    return tamper


def flip_central_directory(field_offset: int) -> Callable[[Path], None]:
    """Flip a byte of the first central directory record (12: mod time, 46: name)."""

    def tamper(path: Path) -> None:
        with path.open("rb") as fh:
            sections = find_zip_sections(fh)
        _flip(path, sections.cd_offset + field_offset)

    return tamper


def flip_signing_block(where: str) -> Callable[[Path], None]:
    def tamper(path: Path) -> None:
        with path.open("rb") as fh:
            sections = find_zip_sections(fh)
            block = find_signing_block(fh, sections)
        assert block is not None, "fixture has no APK Signing Block"
        first_value = block.offset + 8 + 12  # after block size, first pair's size and id
        value = block.pairs[0].value
        (signed_len,) = struct.unpack_from("<I", value, 8)
        v3_extra = 8 if block.pairs[0].block_id != V2_BLOCK_ID else 0
        signature_start = 12 + signed_len + v3_extra + 16
        offsets = {
            "signed-data": first_value + 40,  # inside the first signer's digests/certificate
            "signature": first_value + signature_start + 10,
            "pair-size": block.offset + 8 + 3,
            "magic": sections.cd_offset - 1,
        }
        _flip(path, offsets[where])

    return tamper


def strip_signing_block(path: Path) -> None:
    data = path.read_bytes()
    with path.open("rb") as fh:
        sections = find_zip_sections(fh)
        block = find_signing_block(fh, sections)
    assert block is not None
    eocd = bytearray(sections.eocd)
    struct.pack_into("<I", eocd, 16, block.offset)
    path.write_bytes(data[: block.offset] + data[sections.cd_offset : sections.eocd_offset] + eocd)


def remove_entry(name: str) -> Callable[[Path], None]:
    """Drop ``name``'s central directory record (its data stays where it was)."""

    def tamper(path: Path) -> None:
        data = path.read_bytes()
        with path.open("rb") as fh:
            sections = find_zip_sections(fh)
            entries = read_central_directory(fh, sections)
        cd = data[sections.cd_offset : sections.eocd_offset]
        victim = next(e for e in entries if e.name == name)
        new_cd = cd[: victim.record_offset] + cd[victim.record_offset + victim.record_size :]
        eocd = bytearray(sections.eocd)
        count = sections.cd_record_count - 1
        struct.pack_into("<HHI", eocd, 8, count, count, len(new_cd))
        path.write_bytes(data[: sections.cd_offset] + new_cd + eocd)

    return tamper


def add_eocd_comment(path: Path) -> None:
    data = bytearray(path.read_bytes())
    with path.open("rb") as fh:
        sections = find_zip_sections(fh)
    struct.pack_into("<H", data, sections.eocd_offset + EOCD_MIN_SIZE - 2, 7)
    path.write_bytes(bytes(data) + b"comment")


def _signature_names(path: Path) -> list[str]:
    with path.open("rb") as fh:
        sections = find_zip_sections(fh)
        return [e.name for e in read_central_directory(fh, sections)]


def remove_meta_inf(suffix: str) -> Callable[[Path], None]:
    def tamper(path: Path) -> None:
        name = next(
            n for n in _signature_names(path) if n.startswith("META-INF/") and n.endswith(suffix)
        )
        remove_entry(name)(path)

    return tamper


TAMPERS: dict[str, Callable[[Path], None]] = {
    "dex-byte": flip_entry_data("classes.dex"),
    "manifest-xml-byte": flip_entry_data("AndroidManifest.xml"),
    "sf-byte": flip_entry_data(".SF"),
    "cd-mod-time": flip_central_directory(12),
    "cd-name": flip_central_directory(46),
    "block-signed-data": flip_signing_block("signed-data"),
    "block-signature": flip_signing_block("signature"),
    "block-pair-size": flip_signing_block("pair-size"),
    "block-magic": flip_signing_block("magic"),
    "strip-block": strip_signing_block,
    "eocd-comment": add_eocd_comment,
    "remove-manifest-mf": remove_meta_inf("MANIFEST.MF"),
    "remove-sf": remove_meta_inf(".SF"),
    "remove-block-file": lambda p: remove_meta_inf(
        next(s for s in (".RSA", ".EC", ".DSA") if any(n.endswith(s) for n in _signature_names(p)))
    )(p),
}

# fixture -> (tampers that apply, sdk ranges to check)
BASES: dict[str, tuple[tuple[str, ...], tuple[tuple[int | None, int | None], ...]]] = {
    "fixture-release-v1v2v3.apk": (
        tuple(TAMPERS),
        ((21, None), (24, None), (21, 27)),
    ),
    "fixture-otherkey-vc2.apk": (
        ("dex-byte", "sf-byte", "block-signature", "strip-block", "remove-block-file"),
        ((21, None), (24, None)),
    ),
    "fixture-v1-only.apk": (
        (
            "dex-byte",
            "manifest-xml-byte",
            "sf-byte",
            "cd-mod-time",
            "cd-name",
            "eocd-comment",
            "remove-manifest-mf",
            "remove-sf",
            "remove-block-file",
        ),
        ((21, None), (24, None)),
    ),
    "v2-only-with-ecdsa-sha256-p256.apk": (
        ("dex-byte", "cd-mod-time", "block-signed-data", "block-signature", "strip-block"),
        ((24, None),),
    ),
    "golden-aligned-v1v2v3-lineage-out.apk": (
        ("block-signed-data", "block-signature", "strip-block", "eocd-comment"),
        ((23, None), (24, None), (23, 27)),
    ),
    "two-signers.apk": (
        ("block-signature", "strip-block", "remove-block-file"),
        ((23, None), (24, None)),
    ),
}


@dataclass(frozen=True)
class Case:
    base: str
    tamper: str
    min_sdk: int | None
    max_sdk: int | None

    @property
    def id(self) -> str:
        return f"{self.base}-{self.tamper}-{self.min_sdk}-{self.max_sdk}"


def cases() -> Iterator[Case]:
    for base, (tampers, ranges) in BASES.items():
        for tamper in tampers:
            for lo, hi in ranges:
                yield Case(base, tamper, lo, hi)


CASES = list(cases())


def available(base: str) -> bool:
    """A committed generated fixture, or a third-party one of ../shared that is present."""
    try:
        fixture_path(base)
    except (pytest.skip.Exception, pytest.fail.Exception):
        return False
    return True


@pytest.fixture(scope="module")
def tampered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tampered")
    made: dict[str, Path] = {}
    for base, (tampers, _) in BASES.items():
        if not available(base):
            continue
        for tamper in tampers:
            path = root / f"{tamper}--{base}"
            shutil.copyfile(fixture_path(base), path)
            path.chmod(0o644)
            TAMPERS[tamper](path)
            made[f"{base}-{tamper}"] = path
    return made


@pytest.fixture(scope="module")
def apksigner_verdicts(tampered: dict[str, Path]) -> dict[str, Verdict]:
    if APKSIGNER is None:
        if IN_CI:
            pytest.fail("required in CI: apksigner on PATH")
        pytest.skip("apksigner is not on PATH")
    jobs = {
        c.id: (tampered[f"{c.base}-{c.tamper}"], c.min_sdk, c.max_sdk)
        for c in CASES
        if f"{c.base}-{c.tamper}" in tampered
    }
    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 2)) as pool:
        futures = {key: pool.submit(apksigner_verdict, *job) for key, job in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_appyard_and_apksigner_agree_on_tampered_apk(
    case: Case, tampered: dict[str, Path], apksigner_verdicts: dict[str, Verdict]
) -> None:
    if not available(case.base):
        fixture_path(case.base)  # skips (fails in CI) with the reason
    path = tampered[f"{case.base}-{case.tamper}"]

    ours = appyard_verdict(path, case.min_sdk, case.max_sdk)

    assert ours == apksigner_verdicts[case.id], verify_apk(
        path, min_sdk=case.min_sdk, max_sdk=case.max_sdk
    ).errors


def test_untampered_bases_verify(apksigner_verdicts: dict[str, Verdict]) -> None:
    for base, (_, ranges) in BASES.items():
        if not available(base):
            continue
        for lo, hi in ranges:
            assert appyard_verdict(fixture_path(base), lo, hi).verified, (base, lo, hi)
