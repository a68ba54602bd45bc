"""APK inspection: ``inspect_apk(path) -> ApkFacts``.

An APK is a zip with a compiled ``AndroidManifest.xml`` (binary XML, :mod:`.axml`) and,
usually, a compiled resource table ``resources.arsc`` (:mod:`.arsc`). appyard reads only
those two entries, the launcher icon (and the adaptive-icon XML leading to it), and the
zip's central directory and local headers (alignment); it never reads ``classes.dex``,
assets or native libraries. Signatures are verified by :mod:`appyard.signing.verify` when
asked (``verify_signatures=True``, the default).

Every malformed input ends as :class:`~appyard.errors.InvalidArtifact` with a reason a
person can act on; see docs/inspection-android.md for the bounds and for where appyard
deliberately differs from ``aapt dump badging``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appyard.errors import InvalidArtifact
from appyard.inspect.android_manifest import (
    Icon,
    IconFiles,
    Manifest,
    choose_icon,
    read_manifest,
)
from appyard.inspect.android_resources import MalformedResource, ResourceTable
from appyard.inspect.archive import SafeZip
from appyard.inspect.arsc import ArscTable
from appyard.inspect.axml import XmlElement, parse_axml
from appyard.inspect.facts import Identity

if TYPE_CHECKING:
    from appyard.signing.model import ApkVerification

MANIFEST = "AndroidManifest.xml"
RESOURCES = "resources.arsc"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_RESOURCES_BYTES = 64 * 1024 * 1024
ALIGNMENT = 4
# An APK is never ZIP64: apksigner refuses ZIP64 archives, so it cannot be signed or verified.
MAX_APK_ENTRIES = 0xFFFF
APK_ENTRIES_WHY = " (more needs ZIP64, which apksigner and the signing schemes do not support)"
SO_PAGE_16K = 16384
SO_PAGE_4K = 4096

_LIB = re.compile(r"^lib/([^/]+)/[^/]")


@dataclass(frozen=True)
class Alignment:
    """Where stored (uncompressed) entries start, as ``zipalign -c -p 4`` checks them."""

    stored_entries: int  # entries stored without compression
    misaligned: tuple[str, ...]  # stored entries whose data offset % 4 != 0
    stored_libraries: int  # stored lib/**/*.so (loaded in place, extractNativeLibs=false)
    libraries_misaligned_4k: tuple[str, ...]  # offset % 4096 != 0 (zipalign -p)
    libraries_misaligned_16k: tuple[str, ...]  # offset % 16384 != 0 (16 KB page devices)

    @property
    def aligned(self) -> bool:
        return not self.misaligned and not self.libraries_misaligned_4k


@dataclass(frozen=True)
class ApkFacts:
    identity: Identity
    manifest: Manifest
    icon: Icon | None
    native_abis: tuple[str, ...]  # lib/<abi>/ folders, sorted
    alignment: Alignment
    signatures: ApkVerification | None  # appyard.signing.verify.verify_apk; None: not run
    entries: int
    bytes_before_zip: int  # > 0: data precedes the first entry (Janus-style file)
    warnings: tuple[str, ...]


class _ApkFiles(IconFiles):
    def __init__(self, zf: SafeZip) -> None:
        self.zf = zf

    def read(self, path: str, limit: int) -> bytes | None:
        info = self.zf.info(path)
        if info is None or info.file_size > limit:
            return None
        return self.zf.read(path, limit=limit)

    def parse_xml(self, data: bytes) -> XmlElement:
        return parse_axml(data).root


def inspect_apk(path: str | os.PathLike[str], *, verify_signatures: bool = True) -> ApkFacts:
    """Read the facts of the APK at ``path``; raise InvalidArtifact when it is not one."""
    with SafeZip(path, kind="APK", max_entries=MAX_APK_ENTRIES, why=APK_ENTRIES_WHY) as zf:
        if MANIFEST not in zf:
            raise InvalidArtifact(
                "The APK has no AndroidManifest.xml; it is not an Android app package.",
                reason="no_manifest",
            )
        manifest_bytes = zf.read(MANIFEST, limit=MAX_MANIFEST_BYTES)
        try:
            document = parse_axml(manifest_bytes)
        except MalformedResource as exc:
            raise InvalidArtifact(
                f"AndroidManifest.xml is not valid binary XML: {exc}.", reason="bad_manifest"
            ) from None
        table = _load_resources(zf)
        try:
            manifest = read_manifest(document.root, table)
            icon, icon_warnings = choose_icon(document.root, table, _ApkFiles(zf))
        except MalformedResource as exc:
            raise InvalidArtifact(
                f"AndroidManifest.xml or resources.arsc is not valid: {exc}.",
                reason="bad_manifest",
            ) from None
        infos = zf.infos()
        abis = sorted({m.group(1) for i in infos if (m := _LIB.match(i.filename))})
        alignment = _alignment(zf)
        before = min((i.header_offset for i in infos), default=0)
    warnings = [*document.warnings, *manifest.warnings, *icon_warnings]
    if before:
        warnings.append(f"{before} bytes precede the first zip entry (Janus-style file)")
    signatures = _verify(path, manifest.effective_min_sdk) if verify_signatures else None
    return ApkFacts(
        identity=Identity(
            platform="android",
            kind="apk",
            identifier=manifest.package,
            version_code=None if manifest.version_code is None else str(manifest.long_version_code),
            version_name=manifest.version_name,
        ),
        manifest=manifest,
        icon=icon,
        native_abis=tuple(abis),
        alignment=alignment,
        signatures=signatures,
        entries=len(infos),
        bytes_before_zip=before,
        warnings=tuple(warnings),
    )


def _load_resources(zf: SafeZip) -> ResourceTable | None:
    if RESOURCES not in zf:
        return None
    data = zf.read(RESOURCES, limit=MAX_RESOURCES_BYTES)
    try:
        return ArscTable(data)
    except MalformedResource as exc:
        raise InvalidArtifact(
            f"resources.arsc is not a valid resource table: {exc}.", reason="bad_resources"
        ) from None


def _alignment(zf: SafeZip) -> Alignment:
    stored = 0
    misaligned: list[str] = []
    libraries = 0
    lib_4k: list[str] = []
    lib_16k: list[str] = []
    for info in zf.infos():
        if info.compress_type != 0 or info.is_dir():
            continue
        stored += 1
        offset = zf.data_offset(info.filename)
        if offset % ALIGNMENT:
            misaligned.append(info.filename)
        if info.filename.startswith("lib/") and info.filename.endswith(".so"):
            libraries += 1
            if offset % SO_PAGE_4K:
                lib_4k.append(info.filename)
            if offset % SO_PAGE_16K:
                lib_16k.append(info.filename)
    return Alignment(stored, tuple(misaligned), libraries, tuple(lib_4k), tuple(lib_16k))


def _verify(path: str | os.PathLike[str], min_sdk: int) -> Any:
    """appyard.signing.verify.verify_apk, when that module is installed."""
    try:
        from appyard.signing.verify import verify_apk
    except ImportError:
        return None
    return verify_apk(path, min_sdk=min_sdk)
