"""Android App Bundle inspection: ``inspect_aab(path) -> AabFacts``.

A bundle is a zip of modules: ``base/`` and any number of feature or asset-pack modules,
each a top-level folder with ``manifest/AndroidManifest.xml`` (aapt2's protocol-buffer XML,
:mod:`.proto`), and usually ``resources.pb``, ``dex/``, ``res/``, ``lib/<abi>/``,
``assets/``. ``BundleConfig.pb`` names the bundletool that built it. Bundles are signed
with a JAR signature only (jarsigner), checked by :mod:`.android_jar`.

appyard reads each module's manifest, the base module's ``resources.pb`` (labels and icon),
each other module's ``resources.pb`` only when its manifest refers to resources, the icon
files, ``BundleConfig.pb`` and the signature files; with ``verify_signatures=True`` (the
default) it also streams every signed entry once to check its digest.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from appyard.errors import InvalidArtifact
from appyard.inspect.android_jar import (
    JarSignature,
    jar_signers,
    signature_blocks,
    verify_jar,
)
from appyard.inspect.android_manifest import (
    Icon,
    IconFiles,
    Manifest,
    choose_icon,
    read_manifest,
    read_module_delivery,
)
from appyard.inspect.android_resources import MalformedResource
from appyard.inspect.archive import SafeZip
from appyard.inspect.axml import XmlElement
from appyard.inspect.facts import Identity
from appyard.inspect.proto import ProtoResourceTable, bundletool_version, parse_proto_xml

BASE = "base"
MANIFEST = "manifest/AndroidManifest.xml"
RESOURCES = "resources.pb"
BUNDLE_CONFIG = "BundleConfig.pb"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_RESOURCES_BYTES = 64 * 1024 * 1024
MAX_BUNDLE_CONFIG_BYTES = 1024 * 1024
MAX_MODULES = 256

_MODULE_MANIFEST = re.compile(r"^([^/]+)/manifest/AndroidManifest\.xml$")


@dataclass(frozen=True)
class BundleModule:
    name: str  # the top-level folder
    manifest: Manifest  # this module's manifest, resolved with this module's resources.pb
    module_type: str | None  # dist:type ("asset-pack"); None for feature modules and base
    delivery: str | None  # "install-time", "on-demand", "fast-follow"; None if not declared
    entries: int  # zip entries in the folder
    has_dex: bool
    native_abis: tuple[str, ...]


@dataclass(frozen=True)
class AabFacts:
    identity: Identity
    manifest: Manifest  # the base module's
    icon: Icon | None  # from the base module (path relative to base/)
    modules: tuple[BundleModule, ...]  # base first, then by name
    native_abis: tuple[str, ...]  # <module>/lib/<abi>/ over all modules, sorted
    bundletool_version: str | None  # from BundleConfig.pb
    jar_signature: JarSignature | None  # None: no META-INF/*.RSA|EC|DSA (unsigned)
    entries: int
    warnings: tuple[str, ...]

    @property
    def jar_signed(self) -> bool:
        return self.jar_signature is not None


class _ModuleFiles(IconFiles):
    def __init__(self, zf: SafeZip, module: str) -> None:
        self.zf = zf
        self.prefix = module + "/"

    def read(self, path: str, limit: int) -> bytes | None:
        name = self.prefix + path
        info = self.zf.info(name)
        if info is None or info.file_size > limit:
            return None
        return self.zf.read(name, limit=limit)

    def parse_xml(self, data: bytes) -> XmlElement:
        return parse_proto_xml(data)


def inspect_aab(path: str | os.PathLike[str], *, verify_signatures: bool = True) -> AabFacts:
    """Read the facts of the bundle at ``path``; raise InvalidArtifact when it is not one."""
    with SafeZip(path, kind="AAB") as zf:
        names = zf.names()
        module_names = sorted({m.group(1) for n in names if (m := _MODULE_MANIFEST.match(n))})
        if BASE not in module_names:
            raise InvalidArtifact(
                "The AAB has no base/manifest/AndroidManifest.xml; "
                "it is not an Android App Bundle.",
                reason="no_manifest",
            )
        if len(module_names) > MAX_MODULES:
            raise InvalidArtifact(
                f"The AAB has {len(module_names)} modules; at most {MAX_MODULES} are accepted.",
                reason="too_many_modules",
            )
        module_names.remove(BASE)
        module_names.insert(0, BASE)
        warnings: list[str] = []
        modules = []
        icon: Icon | None = None
        layout = _layout(names)
        for module in module_names:
            built, module_icon, module_warnings = _module(zf, module, layout[module])
            modules.append(built)
            if module == BASE:
                icon = module_icon
            warnings += [f"{module}: {w}" for w in module_warnings]
        bundletool = None
        if BUNDLE_CONFIG in zf:
            try:
                bundletool = bundletool_version(
                    zf.read(BUNDLE_CONFIG, limit=MAX_BUNDLE_CONFIG_BYTES)
                )
            except MalformedResource as exc:
                warnings.append(f"BundleConfig.pb cannot be read ({exc})")
        signature: JarSignature | None = None
        if signature_blocks(zf):
            if verify_signatures:
                signature = verify_jar(zf)
            else:
                signature = JarSignature(jar_signers(zf), None, (), ())
        entries = len(names)
    base = modules[0]
    return AabFacts(
        identity=Identity(
            platform="android",
            kind="aab",
            identifier=base.manifest.package,
            version_code=None
            if base.manifest.version_code is None
            else str(base.manifest.long_version_code),
            version_name=base.manifest.version_name,
        ),
        manifest=base.manifest,
        icon=icon,
        modules=tuple(modules),
        native_abis=tuple(sorted({abi for m in modules for abi in m.native_abis})),
        bundletool_version=bundletool,
        jar_signature=signature,
        entries=entries,
        warnings=tuple(warnings),
    )


@dataclass
class _Layout:
    entries: int = 0
    has_dex: bool = False
    abis: set[str] = field(default_factory=set)


def _layout(names: list[str]) -> dict[str, _Layout]:
    """Per top-level folder: entry count, dex presence, lib/<abi>/ folders (one pass)."""
    out: dict[str, _Layout] = {}
    for name in names:
        parts = name.split("/", 4)
        if len(parts) < 2:
            continue
        layout = out.setdefault(parts[0], _Layout())
        layout.entries += 1
        if parts[1] == "dex":
            layout.has_dex = True
        elif parts[1] == "lib" and len(parts) > 3 and parts[2] and parts[3]:
            layout.abis.add(parts[2])
    return out


def _refers_to_resources(root: XmlElement) -> bool:
    stack = [root]
    while stack:
        element = stack.pop()
        if any(a.value.is_reference for a in element.attributes):
            return True
        stack.extend(element.children)
    return False


def _module(
    zf: SafeZip, module: str, layout: _Layout
) -> tuple[BundleModule, Icon | None, list[str]]:
    prefix = module + "/"
    manifest_name = prefix + MANIFEST
    try:
        root = parse_proto_xml(zf.read(manifest_name, limit=MAX_MANIFEST_BYTES))
    except MalformedResource as exc:
        raise InvalidArtifact(
            f"{manifest_name} is not a valid protocol-buffer manifest: {exc}.",
            reason="bad_manifest",
        ) from None
    table = None
    if prefix + RESOURCES in zf and (module == BASE or _refers_to_resources(root)):
        try:
            table = ProtoResourceTable(zf.read(prefix + RESOURCES, limit=MAX_RESOURCES_BYTES))
        except MalformedResource as exc:
            raise InvalidArtifact(
                f"{prefix}{RESOURCES} is not a valid resource table: {exc}.",
                reason="bad_resources",
            ) from None
    try:
        manifest = read_manifest(root, table)
        icon, icon_warnings = choose_icon(root, table, _ModuleFiles(zf, module))
        delivery = read_module_delivery(root)
    except MalformedResource as exc:
        raise InvalidArtifact(
            f"{manifest_name} or its resources are not valid: {exc}.", reason="bad_manifest"
        ) from None
    built = BundleModule(
        name=module,
        manifest=manifest,
        module_type=delivery.type if delivery else None,
        delivery=delivery.delivery if delivery else None,
        entries=layout.entries,
        has_dex=layout.has_dex,
        native_abis=tuple(sorted(layout.abis)),
    )
    return built, icon, [*manifest.warnings, *icon_warnings]
