"""IPA inspection: ``inspect_ipa(path) -> IpaFacts``.

An IPA is a zip whose ``Payload/`` folder holds one ``<Name>.app`` bundle. From it appyard
reads ``Info.plist`` (XML or binary), the primary app icon (converted from Apple's CgBI PNG
form), ``embedded.mobileprovision`` (see :mod:`appyard.inspect.mobileprovision`), whether
the bundle carries a code signature (``_CodeSignature/CodeResources``), and the CPU
architectures named by the main executable's Mach-O header.

Layout: a standard IPA has ``Payload/<Name>.app/Info.plist`` at the top of the zip. Some
tools zip a folder around it (``MyApp/Payload/<Name>.app/``); appyard accepts that,
reports ``standard_layout=False`` and the ``app_dir`` it used. The outermost app wins: a
watch app or extension nested inside the main app (``.../Watch/<Watch>.app``) is listed in
``nested_bundles``, never taken for the app. ``__MACOSX/`` resource-fork folders are ignored.

Bounds (with :mod:`appyard.inspect.archive`'s): Info.plist at most
``plist.MAX_PLIST_BYTES``, the profile at most ``mobileprovision.MAX_PROFILE_BYTES``, each
icon at most ``cgbi.MAX_PNG_BYTES`` and ``cgbi.MAX_PIXELS`` pixels, at most
``MAX_ICON_CANDIDATES`` icon files looked at, and only the first chunk of the executable.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from appyard.errors import InvalidArtifact
from appyard.inspect.archive import SafeZip
from appyard.inspect.cgbi import MAX_PNG_BYTES, PngError, normalize_png, png_header
from appyard.inspect.facts import Identity
from appyard.inspect.mobileprovision import (
    MAX_PROFILE_BYTES,
    CertificateInfo,
    ProvisioningProfile,
    SigningType,
    parse_mobileprovision,
)
from appyard.inspect.plist import (
    MAX_PLIST_BYTES,
    PlistFormat,
    get_str,
    get_str_list,
    load_plist,
)

MAX_ICON_CANDIDATES = 32
MAX_SIGNING_PROBLEMS = 50

_APP_INFO = re.compile(r"^(?P<prefix>(?:[^/]+/)*?)Payload/(?P<app>[^/]+\.app)/Info\.plist$")
_NESTED_INFO = re.compile(r"^(?P<bundle>.+\.(?:app|appex|xpc))/Info\.plist$")
_ICON_SUFFIX = re.compile(r"^(?:@(?P<scale>[1-9])x)?(?:~(?:ipad|iphone))?\.png$", re.IGNORECASE)

DEVICE_FAMILIES = {1: "iphone", 2: "ipad", 3: "tv", 4: "watch", 6: "mac", 7: "vision"}

_CPU_ARM = 12
_CPU_ARM64 = 0x0100000C
_CPU_ARM64_32 = 0x0200000C
_CPU_X86 = 7
_CPU_X86_64 = 0x01000007
_ARM_SUBTYPES = {9: "armv7", 11: "armv7s", 12: "armv7k", 6: "armv6"}


@dataclass(frozen=True)
class Icon:
    path: str  # entry name in the zip
    width: int
    height: int
    png: bytes = field(repr=False)  # a standard PNG (converted when the file was CgBI)
    converted_from_cgbi: bool


@dataclass(frozen=True)
class IpaSigningFacts:
    """The code signature as :func:`appyard.signing.ios.verify.verify_ipa` reads it."""

    intact: bool  # every page, slot, resource, CMS and profile check passed
    problems: tuple[str, ...]  # the first MAX_SIGNING_PROBLEMS, each naming its file
    team_id: str | None  # of the main executable's CodeDirectory
    identifier: str | None
    certificate: CertificateInfo | None  # the CMS signer of the main executable
    adhoc: bool
    hash_types: tuple[str, ...]  # of its CodeDirectories, slot 0 first
    designated_requirement: str | None
    profile_type: SigningType | None  # of the app's embedded.mobileprovision
    certificate_in_profile: bool | None  # the signer is among its DeveloperCertificates
    signed_bundles: tuple[str, ...]  # every bundle checked, innermost first
    entitlements: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class IpaFacts:
    identity: Identity
    app_dir: str  # "Payload/Name.app/", or where a non-standard IPA keeps it
    standard_layout: bool  # the app is at Payload/<Name>.app/ at the top of the zip
    info_plist_format: PlistFormat
    bundle_id: str
    short_version: str | None  # CFBundleShortVersionString
    build_version: str | None  # CFBundleVersion
    display_name: str | None  # CFBundleDisplayName, else CFBundleName
    bundle_name: str | None  # CFBundleName
    minimum_os: str | None  # MinimumOSVersion (LSMinimumSystemVersion for macOS bundles)
    device_family: tuple[int, ...]  # UIDeviceFamily: 1 iPhone, 2 iPad, ...
    supported_platforms: tuple[str, ...]  # CFBundleSupportedPlatforms
    platform_name: str | None  # DTPlatformName ("iphoneos", "iphonesimulator")
    sdk_name: str | None  # DTSDKName
    executable: str | None  # CFBundleExecutable
    executable_present: bool
    executable_arches: tuple[str, ...]  # from the Mach-O header: "arm64", "armv7", ...
    icon_names: tuple[str, ...]  # icon base names declared in Info.plist
    icon: Icon | None  # the primary app icon, largest declared PNG
    icon_problem: str | None  # why there is no icon, when one was declared
    code_signature_present: bool  # <app>/_CodeSignature/CodeResources exists
    provisioning_profile: ProvisioningProfile | None  # embedded.mobileprovision
    nested_bundles: tuple[str, ...]  # apps/extensions inside the app, relative to app_dir
    info_plist: dict[str, Any] = field(hash=False, repr=False)
    signature: IpaSigningFacts | None = field(default=None, hash=False)  # None: not verified

    @property
    def device_family_names(self) -> tuple[str, ...]:
        return tuple(DEVICE_FAMILIES.get(f, str(f)) for f in self.device_family)


def _find_app(zf: SafeZip) -> tuple[str, str]:
    """(app_dir, prefix) of the outermost app bundle."""
    found: list[tuple[int, str, str]] = []
    for name in zf.names():
        if name.startswith("__MACOSX/"):
            continue
        m = _APP_INFO.match(name)
        if m:
            prefix = m.group("prefix")
            found.append((prefix.count("/"), prefix, f"{prefix}Payload/{m.group('app')}/"))
    if not found:
        raise InvalidArtifact(
            "The IPA has no Payload/<Name>.app/Info.plist; an IPA is a zip whose Payload "
            "folder holds one .app bundle with its Info.plist.",
            reason="no_app",
        )
    found.sort()
    depth = found[0][0]
    outermost = [f for f in found if f[0] == depth]
    if len(outermost) > 1:
        apps = ", ".join(f[2] for f in outermost[:5])
        raise InvalidArtifact(
            f"The IPA holds {len(outermost)} app bundles side by side ({apps}); "
            "an IPA holds exactly one.",
            reason="several_apps",
        )
    _depth, prefix, app_dir = outermost[0]
    return app_dir, prefix


def _first_chunk(zf: SafeZip, name: str) -> bytes:
    """The first decompressed bytes of an entry (its header), without reading it all."""
    info = zf.info(name)
    if info is None:
        return b""
    chunks: Iterator[bytes] = zf.iter_chunks(name, limit=max(info.file_size, 1))
    try:
        return next(chunks, b"")
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _macho_arches(head: bytes) -> tuple[str, ...]:
    def name(cputype: int, subtype: int) -> str:
        subtype &= 0x00FFFFFF
        if cputype == _CPU_ARM64:
            return "arm64e" if subtype == 2 else "arm64"
        if cputype == _CPU_ARM64_32:
            return "arm64_32"
        if cputype == _CPU_ARM:
            return _ARM_SUBTYPES.get(subtype, "arm")
        if cputype == _CPU_X86_64:
            return "x86_64"
        if cputype == _CPU_X86:
            return "i386"
        return f"cpu{cputype:#x}"

    if len(head) < 8:
        return ()
    magic = head[:4]
    if magic in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe"):
        cputype, subtype = struct.unpack("<iI", head[4:12]) if len(head) >= 12 else (0, 0)
        return (name(cputype & 0xFFFFFFFF, subtype),)
    if magic in (b"\xfe\xed\xfa\xcf", b"\xfe\xed\xfa\xce"):
        cputype, subtype = struct.unpack(">iI", head[4:12]) if len(head) >= 12 else (0, 0)
        return (name(cputype & 0xFFFFFFFF, subtype),)
    if magic in (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf"):
        (count,) = struct.unpack(">I", head[4:8])
        size = 20 if magic[3] == 0xBE else 32
        if count == 0 or count > 32 or len(head) < 8 + count * size:
            return ()
        arches = []
        for i in range(count):
            cputype, subtype = struct.unpack(">II", head[8 + i * size : 16 + i * size])
            arches.append(name(cputype, subtype))
        return tuple(arches)
    return ()


def _icon_names(info: dict[str, Any]) -> tuple[str, ...]:
    names: list[str] = []

    def add_from(icons: object) -> None:
        if isinstance(icons, dict):
            primary = icons.get("CFBundlePrimaryIcon")
            if isinstance(primary, dict):
                names.extend(get_str_list(primary, "CFBundleIconFiles"))
                single = get_str(primary, "CFBundleIconFile")
                if single:
                    names.append(single)

    add_from(info.get("CFBundleIcons"))
    add_from(info.get("CFBundleIcons~ipad"))
    names.extend(get_str_list(info, "CFBundleIconFiles"))
    legacy = get_str(info, "CFBundleIconFile")
    if legacy:
        names.append(legacy)
    unique: list[str] = []
    for n in names:
        base = n[:-4] if n.lower().endswith(".png") else n
        if base and base not in unique:
            unique.append(base)
    return tuple(unique)


def _icon_candidates(zf: SafeZip, app_dir: str, bases: tuple[str, ...]) -> list[str]:
    """Entries at the top of the app dir that are one of the declared icons."""
    out = []
    for name in zf.names():
        if not name.startswith(app_dir):
            continue
        rel = name[len(app_dir) :]
        if "/" in rel:
            continue
        for base in bases:
            if rel.startswith(base) and _ICON_SUFFIX.match(rel[len(base) :]):
                out.append(name)
                break
    return out


def _read_icon(zf: SafeZip, app_dir: str, bases: tuple[str, ...]) -> tuple[Icon | None, str | None]:
    if not bases:
        return None, None
    candidates = _icon_candidates(zf, app_dir, bases)
    if not candidates:
        return None, (
            "Info.plist names icons (" + ", ".join(bases[:5]) + ") but none is a PNG file in "
            "the bundle (an icon kept only in Assets.car is not extracted)."
        )
    ranked: list[tuple[int, str]] = []
    problems: list[str] = []
    for name in sorted(candidates)[:MAX_ICON_CANDIDATES]:
        try:
            header = png_header(_first_chunk(zf, name))
        except PngError as exc:
            problems.append(f"{name}: {exc}")
            continue
        except InvalidArtifact as exc:
            problems.append(f"{name}: {exc.message}")
            continue
        ranked.append((header.width * header.height, name))
    ranked.sort(key=lambda r: (-r[0], r[1]))
    for _area, name in ranked[:3]:
        try:
            png, header = normalize_png(zf.read(name, limit=MAX_PNG_BYTES))
        except PngError as exc:
            problems.append(f"{name}: {exc}")
            continue
        except InvalidArtifact as exc:
            problems.append(f"{name}: {exc.message}")
            continue
        return Icon(name, header.width, header.height, png, header.cgbi), None
    return None, "; ".join(problems[:3]) or "no readable icon"


def _nested_bundles(zf: SafeZip, app_dir: str) -> tuple[str, ...]:
    bundles = set()
    for name in zf.names():
        if not name.startswith(app_dir) or name == f"{app_dir}Info.plist":
            continue
        m = _NESTED_INFO.match(name[len(app_dir) :])
        if m:
            bundles.add(m.group("bundle"))
    return tuple(sorted(bundles))


def signing_facts(path: str | Path) -> IpaSigningFacts:
    """Verify every code signature in the IPA (:mod:`appyard.signing.ios.verify`)."""
    from appyard.signing.ios.verify import verify_ipa

    try:
        report = verify_ipa(path)
    except InvalidArtifact as exc:
        return IpaSigningFacts(
            intact=False,
            problems=(f"The signatures cannot be checked: {exc.message}",),
            team_id=None,
            identifier=None,
            certificate=None,
            adhoc=False,
            hash_types=(),
            designated_requirement=None,
            profile_type=None,
            certificate_in_profile=None,
            signed_bundles=(),
            entitlements={},
        )
    app = report.app
    main = app.slices[0] if app.slices else None
    signer = main.signer if main else None
    profile = app.profile
    listed = (
        signer.sha256 in {c.sha256 for c in profile.developer_certificates}
        if profile is not None and signer is not None
        else None
    )
    return IpaSigningFacts(
        intact=report.intact,
        problems=report.problems[:MAX_SIGNING_PROBLEMS],
        team_id=main.team_id if main else None,
        identifier=main.identifier if main else None,
        certificate=signer,
        adhoc=main.adhoc if main else False,
        hash_types=main.hash_types if main else (),
        designated_requirement=main.designated_requirement if main else None,
        profile_type=profile.signing_type if profile else None,
        certificate_in_profile=listed,
        signed_bundles=tuple(b.path for b in report.bundles),
        entitlements=(main.entitlements or {}) if main else {},
    )


def inspect_ipa(path: str | Path, *, verify_signatures: bool = True) -> IpaFacts:
    """Read the facts of an IPA file; raise :class:`InvalidArtifact` for a broken one.
    ``verify_signatures`` (reads every byte) adds :attr:`IpaFacts.signature`."""
    facts = _inspect_ipa(path)
    if not verify_signatures:
        return facts
    return replace(facts, signature=signing_facts(path))


def _inspect_ipa(path: str | Path) -> IpaFacts:
    with SafeZip(path, kind="IPA") as zf:
        app_dir, prefix = _find_app(zf)
        plist_name = f"{app_dir}Info.plist"
        info, fmt = load_plist(zf.read(plist_name, limit=MAX_PLIST_BYTES), what=plist_name)
        bundle_id = get_str(info, "CFBundleIdentifier")
        if not bundle_id:
            raise InvalidArtifact(
                f"{plist_name} has no CFBundleIdentifier; it is not an app's Info.plist.",
                reason="no_bundle_id",
            )
        short_version = get_str(info, "CFBundleShortVersionString")
        build_version = get_str(info, "CFBundleVersion")
        bundle_name = get_str(info, "CFBundleName")

        executable = get_str(info, "CFBundleExecutable")
        exe_entry = f"{app_dir}{executable}" if executable else None
        exe_present = exe_entry is not None and exe_entry in zf
        arches = _macho_arches(_first_chunk(zf, exe_entry)) if exe_entry and exe_present else ()

        icon_names = _icon_names(info)
        icon, icon_problem = _read_icon(zf, app_dir, icon_names)

        profile_name = f"{app_dir}embedded.mobileprovision"
        profile = None
        if profile_name in zf:
            profile = parse_mobileprovision(
                zf.read(profile_name, limit=MAX_PROFILE_BYTES), what=profile_name
            )

        families = info.get("UIDeviceFamily")
        if isinstance(families, int) and not isinstance(families, bool):
            families = [families]
        device_family = (
            tuple(f for f in families if isinstance(f, int) and not isinstance(f, bool))
            if isinstance(families, list)
            else ()
        )
        return IpaFacts(
            identity=Identity(
                platform="ios",
                kind="ipa",
                identifier=bundle_id,
                version_code=build_version,
                version_name=short_version,
            ),
            app_dir=app_dir,
            standard_layout=prefix == "",
            info_plist_format=fmt,
            bundle_id=bundle_id,
            short_version=short_version,
            build_version=build_version,
            display_name=get_str(info, "CFBundleDisplayName") or bundle_name,
            bundle_name=bundle_name,
            minimum_os=get_str(info, "MinimumOSVersion") or get_str(info, "LSMinimumSystemVersion"),
            device_family=device_family,
            supported_platforms=get_str_list(info, "CFBundleSupportedPlatforms"),
            platform_name=get_str(info, "DTPlatformName"),
            sdk_name=get_str(info, "DTSDKName"),
            executable=executable,
            executable_present=exe_present,
            executable_arches=arches,
            icon_names=icon_names,
            icon=icon,
            icon_problem=icon_problem,
            code_signature_present=f"{app_dir}_CodeSignature/CodeResources" in zf,
            provisioning_profile=profile,
            nested_bundles=_nested_bundles(zf, app_dir),
            info_plist=info,
        )
