"""An IPA's bundles as the signer and the verifier see them.

The app is ``Payload/<Name>.app/`` (a folder around ``Payload/`` is accepted, as
:mod:`appyard.inspect.ipa` does). Nested bundles are folders inside it named ``*.app``
(watch apps), ``*.appex`` (extensions), ``*.framework`` or ``*.xpc`` with an ``Info.plist``.
Every file belongs to its deepest bundle; a bundle's *main executable* is its Info.plist's
``CFBundleExecutable``. Inner bundles come before outer ones in :attr:`IpaIndex.bundles`
(deepest first), the order they must be signed and checked in.

Entries are read with the APK signer's zip reader (:mod:`appyard.signing.zipmeta`): the
central directory once, then each entry's data streamed, bounded by its declared size.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from appyard.errors import InvalidArtifact
from appyard.signing.align import ZipLayout, read_layout
from appyard.signing.ios.plist import MAX_PLIST_BYTES, get_str, load_plist
from appyard.signing.zipmeta import (
    CentralDirectoryEntry,
    iter_uncompressed_data,
    read_uncompressed,
)

_APP = re.compile(r"^(?P<prefix>(?:[^/]+/)*?)Payload/(?P<app>[^/]+\.app)/Info\.plist$")
_NESTED = re.compile(r"^(?P<bundle>.+\.(?:app|appex|framework|xpc))/Info\.plist$")
S_IFMT, S_IFLNK = 0o170000, 0o120000
MAX_SYMLINK_BYTES = 4096


@dataclass
class Bundle:
    """One bundle; ``path`` is its folder in the zip, ending in ``/``."""

    path: str
    info: dict[str, Any] = field(repr=False)
    info_format: str
    parent: Bundle | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return self.path.rstrip("/").rsplit(".", 1)[-1]

    @property
    def bundle_id(self) -> str:
        return get_str(self.info, "CFBundleIdentifier") or ""

    @property
    def executable(self) -> str | None:
        name = get_str(self.info, "CFBundleExecutable")
        return f"{self.path}{name}" if name and "/" not in name else None

    @property
    def info_plist(self) -> str:
        return f"{self.path}Info.plist"

    @property
    def code_resources(self) -> str:
        return f"{self.path}_CodeSignature/CodeResources"

    @property
    def profile(self) -> str:
        return f"{self.path}embedded.mobileprovision"

    @property
    def takes_entitlements(self) -> bool:
        """Apps and extensions carry entitlements; frameworks and XPC helpers do not."""
        return self.kind in ("app", "appex")

    @property
    def depth(self) -> int:
        return self.path.count("/")

    def relative(self, name: str) -> str:
        return name[len(self.path) :]


@dataclass
class IpaIndex:
    layout: ZipLayout
    app: Bundle
    bundles: list[Bundle]  # deepest first; the app is last
    entries: dict[str, CentralDirectoryEntry]

    def owner(self, name: str) -> Bundle | None:
        """The deepest bundle that holds the entry ``name``."""
        for bundle in self.bundles:
            if name.startswith(bundle.path):
                return bundle
        return None

    def files(self) -> Iterator[CentralDirectoryEntry]:
        for entry in self.layout.entries:
            if not entry.is_directory:
                yield entry


def is_symlink(entry: CentralDirectoryEntry) -> bool:
    return (entry.version_made_by >> 8) == 3 and ((entry.external_attrs >> 16) & S_IFMT) == S_IFLNK


def _safe(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return not (name.startswith(("/", "\\")) or ".." in parts or "\x00" in name)


def read_small(fh: BinaryIO, layout: ZipLayout, entry: CentralDirectoryEntry, limit: int) -> bytes:
    return read_uncompressed(fh, entry, layout.sections.cd_offset, limit=limit)


def iter_data(fh: BinaryIO, layout: ZipLayout, entry: CentralDirectoryEntry) -> Iterator[bytes]:
    """The entry's bytes, streamed (bounded by the decompression ratio, as every inflated
    entry is: :func:`appyard.signing.zipmeta.check_ratio`)."""
    yield from iter_uncompressed_data(fh, entry, layout.sections.cd_offset)


def index_ipa(fh: BinaryIO) -> IpaIndex:
    """Read the central directory and every bundle's Info.plist."""
    layout = read_layout(fh)
    entries = {e.name: e for e in layout.entries}
    for name in entries:
        if not _safe(name):
            raise InvalidArtifact(
                f"The IPA contains an entry with an unsafe path: {name!r}.",
                reason="unsafe_entry_name",
            )
    apps = sorted(
        (m.group("prefix").count("/"), f"{m.group('prefix')}Payload/{m.group('app')}/")
        for name in entries
        if not name.startswith("__MACOSX/") and (m := _APP.match(name))
    )
    if not apps:
        raise InvalidArtifact("The IPA has no Payload/<Name>.app/Info.plist.", reason="no_app")
    if len(apps) > 1 and apps[0][0] == apps[1][0]:
        raise InvalidArtifact(
            "The IPA holds several app bundles side by side.", reason="several_apps"
        )
    app_dir = apps[0][1]
    found: list[Bundle] = []
    for name, entry in entries.items():
        if not name.startswith(app_dir):
            continue
        inner = name == f"{app_dir}Info.plist" or _NESTED.match(name[len(app_dir) :])
        if not inner:
            continue
        path = name[: -len("Info.plist")]
        info, fmt = load_plist(read_small(fh, layout, entry, MAX_PLIST_BYTES), what=name)
        found.append(Bundle(path=path, info=info, info_format=fmt))
    found.sort(key=lambda b: (-b.depth, b.path))
    for bundle in found:
        outer = [b for b in found if b is not bundle and bundle.path.startswith(b.path)]
        bundle.parent = max(outer, key=lambda b: b.depth, default=None)
    app = next(b for b in found if b.path == app_dir)
    if not app.bundle_id:
        raise InvalidArtifact(f"{app.info_plist} has no CFBundleIdentifier.", reason="no_bundle_id")
    return IpaIndex(layout=layout, app=app, bundles=found, entries=entries)
