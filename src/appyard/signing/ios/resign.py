"""Re-sign an IPA with a PKCS#12 identity and provisioning profiles, without Apple's tools.

``resign_ipa(src, dst, material, profiles=[...], bundle_id=None)`` works in three phases:

1. **Read and refuse.** The central directory and every bundle's Info.plist are read; every
   file is hashed as it streams and every Mach-O is spooled to a temporary file. Each app
   and extension gets its profile (the first given profile whose app id covers its bundle
   id, else its own ``embedded.mobileprovision`` when that lists the certificate); each
   Mach-O slice is checked for FairPlay encryption and for room for a signature. Any refusal
   (:mod:`appyard.signing.ios.errors`, or ``CertificateExpired``) happens here, before
   anything is written.
2. **Sign, innermost first.** For each bundle, deepest first: its Info.plist (bundle id
   changed on request), its ``embedded.mobileprovision``, its other Mach-O files (dylibs),
   its ``_CodeSignature/CodeResources`` over every file (nested bundles already signed), then
   its main executable, whose signature seals Info.plist and CodeResources.
3. **Write.** The output zip is written beside ``dst`` and renamed into place: entries that are
   not part of a signature are copied raw (the same compressed bytes), the rest are written
   deflated, in the input's order; new entries (a CodeResources or profile that was absent)
   follow.

Memory holds the central directory, two hashes per file and the small plists; binaries are
on disk. Signatures are SHA-256 CodeDirectories, with a SHA-1 one first when a slice's minimum
OS predates SHA-256 code signatures (iOS/tvOS 11, watchOS 4, macOS 10.11.4).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import plistlib
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from appyard.errors import InvalidArtifact
from appyard.signing.align import OffsetWriter, copy_entry, finish_archive, replacing
from appyard.signing.ios import blobs, macho
from appyard.signing.ios.bundle import Bundle, IpaIndex, index_ipa, read_small
from appyard.signing.ios.cms import sign_code_directories
from appyard.signing.ios.entitlements import entitlements_for
from appyard.signing.ios.errors import (
    BadMachO,
    BundleIdNotCovered,
    EncryptedBinary,
    ProfileCertificateMismatch,
    ProfileExpired,
    ProfileMissing,
    ProfileRefused,
)
from appyard.signing.ios.mobileprovision import (
    MAX_PROFILE_BYTES,
    ProvisioningProfile,
    bundle_id_matches,
    parse_mobileprovision,
)
from appyard.signing.ios.plist import MAX_PLIST_BYTES, load_plist
from appyard.signing.ios.resources import build_code_resources
from appyard.signing.ios.verify import FileFacts, bundle_files, hash_entries
from appyard.signing.ios.zipout import write_stream_entry
from appyard.signing.keystore import CertificateExpired, SigningMaterial
from appyard.signing.zipmeta import LOCAL_HEADER_SIZE, CentralDirectoryEntry

log = logging.getLogger("appyard.signing.ios")

SHA256_SINCE = {
    macho.PLATFORM_IOS: (11, 0, 0),
    macho.PLATFORM_TVOS: (11, 0, 0),
    macho.PLATFORM_WATCHOS: (4, 0, 0),
    macho.PLATFORM_MACOS: (10, 11, 4),
}
_SIGNABLE = (macho.MH_EXECUTE, macho.MH_DYLIB, macho.MH_BUNDLE)
_CMS_SLACK = 512  # an ECDSA signature's length varies by a few bytes; certificates do not


@dataclass(frozen=True)
class SignedBundle:
    path: str
    bundle_id: str
    profile: str | None  # the profile's name
    entitlements: dict[str, Any] | None = field(hash=False)
    dropped_entitlements: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResignResult:
    bundle_id: str
    team_id: str | None
    certificate_subject: str
    bundles: tuple[SignedBundle, ...]  # deepest first; the app is last
    signed_files: tuple[str, ...]  # Mach-O files given a new signature
    rewritten: tuple[str, ...]  # every entry whose bytes changed or were added


# --- identity --------------------------------------------------------------------------------


def team_of(material: SigningMaterial) -> str | None:
    units = material.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    value = units[0].value if units else None
    return value if isinstance(value, str) and value else None


def designated_requirement_for(material: SigningMaterial, identifier: str) -> bytes:
    cert = material.certificate
    orgs = cert.issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    apple = any(o.value == "Apple Inc." for o in orgs)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = cns[0].value if cns and isinstance(cns[0].value, str) else None
    root = material.cert_chain[-1].public_bytes(serialization.Encoding.DER)
    return blobs.requirements_blob(
        blobs.designated_requirement(
            identifier,
            apple_issued=apple,
            leaf_cn=cn,
            root_sha1=hashlib.sha1(root, usedforsecurity=False).digest(),
        )
    )


# --- profiles ----------------------------------------------------------------------------------


def _describe(material: SigningMaterial) -> str:
    return f"{material.certificate.subject.rfc4514_string()}, SHA-256 {material.certificate_sha256}"


def _refusal(
    profile: ProvisioningProfile, material: SigningMaterial, now: datetime
) -> ProfileRefused | None:
    label = (
        f"The provisioning profile {profile.name!r}" if profile.name else "The provisioning profile"
    )
    if profile.expiration_date is None or profile.expiration_date < now:
        when = profile.expiration_date.date().isoformat() if profile.expiration_date else "?"
        return ProfileExpired(f"{label} expired on {when}.", profile=profile.name)
    if not any(c.sha256 == material.certificate_sha256 for c in profile.developer_certificates):
        return ProfileCertificateMismatch(
            f"{label} does not list the signing certificate ({_describe(material)}).",
            profile=profile.name,
            cert_sha256=material.certificate_sha256,
        )
    return None


def _covers(profile: ProvisioningProfile, bundle_id: str) -> bool:
    return profile.bundle_id_pattern is not None and bundle_id_matches(
        profile.bundle_id_pattern, bundle_id
    )


def choose_profile(
    bundle: Bundle,
    final_id: str,
    given: Sequence[tuple[bytes, ProvisioningProfile]],
    embedded: tuple[bytes, ProvisioningProfile] | None,
    material: SigningMaterial,
    now: datetime,
    app_embedded: tuple[bytes, ProvisioningProfile] | None = None,
) -> tuple[bytes, ProvisioningProfile]:
    """The profile for ``bundle`` (an app or extension whose bundle id becomes ``final_id``):
    the first given profile that covers it, else its own embedded profile, else (for an
    inner bundle) the app's embedded profile, when that covers it and lists the certificate."""
    covering = [(d, p) for d, p in given if _covers(p, final_id)]
    for data, profile in covering:
        refusal = _refusal(profile, material, now)
        if refusal is None:
            return data, profile
    for candidate in (embedded, app_embedded):
        if candidate is not None and _covers(candidate[1], final_id):
            if _refusal(candidate[1], material, now) is None:
                return candidate
    embedded = embedded or app_embedded
    if covering:
        refusal = _refusal(covering[0][1], material, now)
        assert refusal is not None
        raise refusal
    where = bundle.path.rstrip("/")
    if given:
        names = ", ".join(
            f"{p.name!r} ({p.application_identifier})" if p.name else str(p.application_identifier)
            for _d, p in given
        )
        raise BundleIdNotCovered(
            f"No provisioning profile covers the bundle id {final_id} of {where}: "
            f"{names} {'does' if len(given) == 1 else 'do'} not.",
            bundle_id=final_id,
            bundle=where,
        )
    if embedded is None:
        raise ProfileMissing(
            f"The signing key has no provisioning profile and {where} has no "
            "embedded.mobileprovision; attach a profile for "
            f"{final_id} to the key (appyard admin add-signing-key --profile).",
            bundle_id=final_id,
        )
    refusal = _refusal(embedded[1], material, now)
    if isinstance(refusal, ProfileExpired):
        raise refusal
    if refusal is None:  # it lists the certificate but does not cover the new bundle id
        raise BundleIdNotCovered(
            f"The embedded provisioning profile {embedded[1].name!r} of {where} "
            f"({embedded[1].application_identifier}) does not cover the bundle id {final_id}.",
            bundle_id=final_id,
            bundle=where,
        )
    raise ProfileMissing(
        f"The signing key has no provisioning profile, and the embedded.mobileprovision of "
        f"{where} ({embedded[1].name!r}, team {embedded[1].team_id}) does not list its "
        f"certificate ({_describe(material)}); attach a profile for {final_id} that lists it.",
        bundle_id=final_id,
        profile=embedded[1].name,
    )


# --- Mach-O signing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeSpec:
    """What one Mach-O's new signature says."""

    identifier: str
    team_id: str | None
    requirements: bytes
    entitlements: dict[str, Any] | None
    info_plist: bytes | None
    code_resources: bytes | None


def hash_types_for(sl: macho.MachOSlice) -> tuple[int, ...]:
    since = SHA256_SINCE.get(sl.platform or 0)
    if sl.min_os is not None and since is not None and sl.min_os >= since:
        return (blobs.CS_HASHTYPE_SHA256,)
    return (blobs.CS_HASHTYPE_SHA1, blobs.CS_HASHTYPE_SHA256)


def _exec_seg_flags(sl: macho.MachOSlice, entitlements: dict[str, Any] | None) -> int:
    flags = blobs.CS_EXECSEG_MAIN_BINARY if sl.filetype == macho.MH_EXECUTE else 0
    for key, bit in blobs.EXECSEG_ENTITLEMENTS.items():
        if entitlements and entitlements.get(key) is True:
            flags |= bit
    return flags


def _page_hashes(fh: BinaryIO, code_limit: int, types: Sequence[int]) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {t: [] for t in types}
    fh.seek(0)
    done = 0
    while done < code_limit:
        block = fh.read(min(blobs.PAGE_SIZE * 256, code_limit - done))
        if not block:
            raise BadMachO("A Mach-O slice ended before its code limit.")
        for at in range(0, len(block), blobs.PAGE_SIZE):
            page = block[at : at + blobs.PAGE_SIZE]
            for t in types:
                name, size = blobs.HASH_TYPES[t]
                out[t].append(hashlib.new(name, page).digest()[:size])
        done += len(block)
    return out


class _Slot:
    """The blobs of one signature, before the code pages are hashed."""

    def __init__(self, spec: CodeSpec) -> None:
        self.requirements = spec.requirements
        self.ent_xml = (
            blobs.blob(
                blobs.CSMAGIC_EMBEDDED_ENTITLEMENTS, blobs.entitlements_xml(spec.entitlements)
            )
            if spec.entitlements is not None
            else None
        )
        self.ent_der = (
            blobs.blob(
                blobs.CSMAGIC_EMBEDDED_DER_ENTITLEMENTS, blobs.entitlements_der(spec.entitlements)
            )
            if spec.entitlements is not None
            else None
        )

    def specials(self, spec: CodeSpec, hash_type: int) -> dict[int, bytes]:
        name, size = blobs.HASH_TYPES[hash_type]

        def h(data: bytes) -> bytes:
            return hashlib.new(name, data).digest()[:size]

        out = {blobs.CSSLOT_REQUIREMENTS: h(self.requirements)}
        if spec.info_plist is not None:
            out[blobs.CSSLOT_INFOSLOT] = h(spec.info_plist)
        if spec.code_resources is not None:
            out[blobs.CSSLOT_RESOURCEDIR] = h(spec.code_resources)
        if self.ent_xml is not None:
            out[blobs.CSSLOT_ENTITLEMENTS] = h(self.ent_xml)
        if self.ent_der is not None:
            out[blobs.CSSLOT_DER_ENTITLEMENTS] = h(self.ent_der)
        return out

    def others(self) -> list[tuple[int, bytes]]:
        out = [(blobs.CSSLOT_REQUIREMENTS, self.requirements)]
        if self.ent_xml is not None:
            out.append((blobs.CSSLOT_ENTITLEMENTS, self.ent_xml))
        if self.ent_der is not None:
            out.append((blobs.CSSLOT_DER_ENTITLEMENTS, self.ent_der))
        return out


def _code_directories(
    sl: macho.MachOSlice,
    spec: CodeSpec,
    slot: _Slot,
    code_limit: int,
    pages: dict[int, list[bytes]],
) -> list[blobs.CodeDirectory]:
    text = sl.segment("__TEXT")
    return [
        blobs.build_code_directory(
            identifier=spec.identifier,
            team_id=spec.team_id,
            hash_type=t,
            special_hashes=slot.specials(spec, t),
            code_hashes=hashes,
            code_limit=code_limit,
            exec_seg_base=text.fileoff if text else 0,
            exec_seg_limit=text.filesize if text else 0,
            exec_seg_flags=_exec_seg_flags(sl, spec.entitlements),
        )
        for t, hashes in pages.items()
    ]


def _assemble(cds: Sequence[blobs.CodeDirectory], slot: _Slot, cms: bytes) -> bytes:
    entries: list[tuple[int, bytes]] = [(blobs.CSSLOT_CODEDIRECTORY, cds[0].raw)]
    entries += slot.others()
    entries += [
        (blobs.CSSLOT_ALTERNATE_CODEDIRECTORIES + i, cd.raw) for i, cd in enumerate(cds[1:])
    ]
    entries.append((blobs.CSSLOT_SIGNATURESLOT, blobs.blob(blobs.CSMAGIC_BLOBWRAPPER, cms)))
    return blobs.build_superblob(entries)


def _reserve(
    sl: macho.MachOSlice,
    spec: CodeSpec,
    slot: _Slot,
    code_limit: int,
    material: SigningMaterial,
    when: datetime,
) -> int:
    """The signature's size, known before the pages are hashed (dummy page hashes)."""
    n_pages = math.ceil(code_limit / blobs.PAGE_SIZE)
    pages = {t: [b"\x00" * blobs.HASH_TYPES[t][1]] * n_pages for t in hash_types_for(sl)}
    cds = _code_directories(sl, spec, slot, code_limit, pages)
    size = len(_assemble(cds, slot, sign_code_directories(material, cds, signing_time=when)))
    size += _CMS_SLACK
    return size + (-size) % macho.SIGNATURE_ALIGNMENT


def sign_slice(
    path: Path,
    spec: CodeSpec,
    material: SigningMaterial,
    when: datetime,
    *,
    what: str,
) -> None:
    """Re-sign the thin Mach-O at ``path`` in place."""
    with open(path, "r+b") as fh:
        size = os.fstat(fh.fileno()).st_size
        sl = macho.parse_slice(fh, 0, size, what=what)
        header = macho.read_header(fh, 0, sl, what=what)
        slot = _Slot(spec)
        code_limit = macho.code_limit_of(sl, what=what)
        reserved = _reserve(sl, spec, slot, code_limit, material, when)
        plan = macho.plan_signature(sl, header, reserved, what=what)
        macho.apply_plan(fh, plan)
        pages = _page_hashes(fh, plan.code_limit, hash_types_for(sl))
        cds = _code_directories(sl, spec, slot, plan.code_limit, pages)
        signature = _assemble(cds, slot, sign_code_directories(material, cds, signing_time=when))
        if len(signature) > reserved:
            raise BadMachO(f"{what}: the signature outgrew the room reserved for it.")
        fh.seek(plan.code_limit)
        fh.write(signature + b"\x00" * (reserved - len(signature)))
        fh.truncate(plan.code_limit + reserved)


def sign_macho(
    path: Path,
    spec: CodeSpec,
    material: SigningMaterial,
    when: datetime,
    *,
    what: str,
    workdir: Path,
) -> None:
    """Re-sign the thin or fat Mach-O at ``path`` in place (each slice on its own)."""
    with open(path, "rb") as fh:
        layout = macho.read_layout(fh, os.fstat(fh.fileno()).st_size, what=what)
        if layout.fat_magic is None:
            fh.close()
            sign_slice(path, spec, material, when, what=what)
            return
        parts: list[tuple[macho.SliceRef, Path]] = []
        for i, ref in enumerate(layout.slices):
            part = workdir / f"{path.name}.slice{i}"
            with open(part, "wb") as out:
                macho.copy_range(fh, ref.offset, ref.size, out)
            parts.append((ref, part))
    for ref, part in parts:
        sign_slice(part, spec, material, when, what=f"{what} slice {ref.arch}")
    assembled = workdir / f"{path.name}.fat"
    with open(assembled, "wb") as out:
        macho.write_fat(out, layout.fat_magic, parts)
    os.replace(assembled, path)
    for _ref, part in parts:
        part.unlink()


def precheck_macho(path: Path, *, what: str) -> list[macho.MachOSlice]:
    """The slices of a spooled Mach-O, refusing encrypted ones and ones without room."""
    out: list[macho.MachOSlice] = []
    with open(path, "rb") as fh:
        layout = macho.read_layout(fh, os.fstat(fh.fileno()).st_size, what=what)
        for ref in layout.slices:
            sl = macho.parse_slice(fh, ref.offset, ref.size, what=what)
            if sl.encrypted:
                raise EncryptedBinary(
                    f"{what} ({sl.arch}) is encrypted (LC_ENCRYPTION_INFO cryptid "
                    f"{max(sl.encryption_ids)}: an App Store FairPlay binary); only a build "
                    "from Xcode or a decrypted binary can be re-signed.",
                    file=what,
                )
            if sl.filetype in _SIGNABLE:
                header = macho.read_header(fh, ref.offset, sl, what=what)
                pages = math.ceil(macho.code_limit_of(sl, what=what) / blobs.PAGE_SIZE)
                estimate = pages * (20 + 32) + 64 * 1024  # both CodeDirectories, blobs, CMS
                macho.plan_signature(sl, header, estimate, what=what)
            out.append(sl)
    return out


def _old_signature(path: Path, *, what: str) -> tuple[str | None, dict[str, Any] | None]:
    """(identifier, entitlements) of the first slice's existing signature, if readable."""
    with open(path, "rb") as fh:
        layout = macho.read_layout(fh, os.fstat(fh.fileno()).st_size, what=what)
        ref = layout.slices[0]
        sl = macho.parse_slice(fh, ref.offset, ref.size, what=what)
        if sl.code_signature is None or sl.code_signature[2] > blobs.MAX_SIGNATURE_BYTES:
            return None, None
        fh.seek(ref.offset + sl.code_signature[1])
        raw = fh.read(sl.code_signature[2])
    try:
        entries = dict(blobs.parse_superblob(raw, what=what))
        identifier = (
            blobs.parse_code_directory(entries[0], what=what).identifier if 0 in entries else None
        )
    except BadMachO:
        return None, None
    ent = entries.get(blobs.CSSLOT_ENTITLEMENTS)
    entitlements = None
    if ent is not None:
        try:
            entitlements = load_plist(ent[8:], what=f"the entitlements of {what}")[0]
        except InvalidArtifact:
            entitlements = None
    return identifier, entitlements


# --- the IPA -----------------------------------------------------------------------------------


def _renamed(old: str, old_main: str, new_main: str) -> str:
    if old == old_main or old.startswith(old_main + "."):
        return new_main + old[len(old_main) :]
    return old


def _new_info_plist(bundle: Bundle, raw: bytes, old_main: str, new_main: str) -> bytes | None:
    info = dict(bundle.info)
    changed = False

    def swap(container: dict[str, Any], key: str) -> None:
        nonlocal changed
        value = container.get(key)
        if isinstance(value, str):
            new = _renamed(value, old_main, new_main)
            if new != value:
                container[key] = new
                changed = True

    swap(info, "CFBundleIdentifier")
    swap(info, "WKCompanionAppBundleIdentifier")
    extension = info.get("NSExtension")
    if isinstance(extension, dict):
        extension = dict(extension)
        attributes = extension.get("NSExtensionAttributes")
        if isinstance(attributes, dict):
            attributes = dict(attributes)
            swap(attributes, "WKAppBundleIdentifier")
            extension["NSExtensionAttributes"] = attributes
        info["NSExtension"] = extension
    if not changed:
        return None
    fmt = plistlib.FMT_BINARY if bundle.info_format == "binary" else plistlib.FMT_XML
    return plistlib.dumps(info, fmt=fmt, sort_keys=False)


def _hashes(data: bytes) -> FileFacts:
    return FileFacts(
        hashlib.sha1(data, usedforsecurity=False).digest(), hashlib.sha256(data).digest()
    )


def _file_hashes(path: Path) -> FileFacts:
    sha1 = hashlib.sha1(usedforsecurity=False)
    sha256 = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            sha1.update(chunk)
            sha256.update(chunk)
    return FileFacts(sha1.digest(), sha256.digest(), macho=path)


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        yield from iter(lambda: fh.read(1024 * 1024), b"")


def resign_ipa(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    material: SigningMaterial,
    *,
    profiles: Sequence[bytes] = (),
    bundle_id: str | None = None,
    now: datetime | None = None,
    workdir: str | os.PathLike[str] | None = None,
) -> ResignResult:
    """Re-sign ``src`` into ``dst`` (which may be the same path); see the module docstring.

    ``profiles``: provisioning profiles (``.mobileprovision`` bytes), the app's first; when
    none covers a bundle, its own embedded profile is used if it lists the certificate.
    ``bundle_id``: the app's new bundle id (inner bundle ids that start with the old one
    follow). ``now``: when certificates and profiles must be valid (default: now).
    """
    at = now or datetime.now(UTC)
    cert = material.certificate
    if cert.not_valid_after_utc < at:
        raise CertificateExpired(
            f"The signing certificate {cert.subject.rfc4514_string()} expired on "
            f"{cert.not_valid_after_utc.date().isoformat()}.",
            subject=cert.subject.rfc4514_string(),
        )
    given: list[tuple[bytes, ProvisioningProfile]] = []
    for data in profiles:
        try:
            given.append((data, parse_mobileprovision(data, what="the provisioning profile")))
        except InvalidArtifact as exc:
            raise ProfileRefused(exc.message[:1].upper() + exc.message[1:]) from None
    if bundle_id is not None and not _valid_bundle_id(bundle_id):
        raise ProfileRefused(f"{bundle_id!r} is not a valid bundle id.", bundle_id=bundle_id)
    team = team_of(material)
    with (
        open(src, "rb") as fh,
        tempfile.TemporaryDirectory(prefix="appyard-ipa-sign-", dir=workdir) as tmp,
    ):
        spool = Path(tmp)
        index = index_ipa(fh)
        old_main = index.app.bundle_id
        new_main = bundle_id or old_main
        # phase 1: read everything, choose profiles, refuse
        chosen: dict[str, tuple[bytes, ProvisioningProfile]] = {}
        infos: dict[str, bytes] = {}
        new_infos: dict[str, bytes] = {}
        embedded_of: dict[str, tuple[bytes, ProvisioningProfile] | None] = {}
        for bundle in [index.app, *index.bundles[:-1]]:  # the app first: its refusal is clearest
            if bundle.executable is None or bundle.executable not in index.entries:
                raise BadMachO(f"{bundle.path} has no main executable (CFBundleExecutable).")
            raw = read_small(fh, index.layout, index.entries[bundle.info_plist], MAX_PLIST_BYTES)
            new_info = _new_info_plist(bundle, raw, old_main, new_main)
            infos[bundle.info_plist] = new_info if new_info is not None else raw
            if new_info is not None:
                new_infos[bundle.info_plist] = new_info
            if not bundle.takes_entitlements:
                continue
            final = _renamed(bundle.bundle_id, old_main, new_main)
            embedded = None
            if bundle.profile in index.entries:
                data = read_small(
                    fh, index.layout, index.entries[bundle.profile], MAX_PROFILE_BYTES
                )
                try:
                    embedded = (data, parse_mobileprovision(data, what=bundle.profile))
                except InvalidArtifact:
                    embedded = None
            embedded_of[bundle.path] = embedded
            app_embedded = embedded_of.get(index.app.path) if bundle is not index.app else None
            chosen[bundle.path] = choose_profile(
                bundle, final, given, embedded, material, at, app_embedded
            )
        facts = hash_entries(fh, index, spool)
        machos = {name: f for name, f in facts.items() if f.macho is not None}
        signable: dict[str, bool] = {}
        for name, fact in machos.items():
            assert fact.macho is not None
            slices = precheck_macho(fact.macho, what=name)
            signable[name] = all(s.filetype in _SIGNABLE for s in slices)
        for bundle in index.bundles:
            if not signable.get(bundle.executable or "", False):
                raise BadMachO(f"{bundle.executable} is not a Mach-O executable appyard can sign.")

        # phase 2: sign, innermost first
        replaced: dict[str, bytes | Path] = {}
        signed: list[str] = []
        results: list[SignedBundle] = []
        for bundle in index.bundles:
            if bundle.info_plist in new_infos:
                replaced[bundle.info_plist] = new_infos[bundle.info_plist]
                facts[bundle.info_plist] = _hashes(new_infos[bundle.info_plist])
            final_id = _renamed(bundle.bundle_id, old_main, new_main)
            entitlements = None
            dropped: tuple[str, ...] = ()
            profile_name = None
            assert bundle.executable is not None
            exe = facts[bundle.executable]
            assert exe.macho is not None
            if bundle.takes_entitlements:
                data, profile = chosen[bundle.path]
                _old_id, old_entitlements = _old_signature(exe.macho, what=bundle.executable)
                derived = entitlements_for(profile, final_id, old_entitlements)
                entitlements, dropped = derived.values, derived.dropped
                profile_name = profile.name
                replaced[bundle.profile] = data
                facts[bundle.profile] = _hashes(data)
            for name, fact in sorted(machos.items()):
                if (
                    name == bundle.executable
                    or index.owner(name) is not bundle
                    or not signable[name]
                ):
                    continue
                assert fact.macho is not None
                old_id, _ent = _old_signature(fact.macho, what=name)
                stem = name.rsplit("/", 1)[-1].split(".", 1)[0]
                spec = CodeSpec(
                    identifier=old_id or stem,
                    team_id=team,
                    requirements=designated_requirement_for(material, old_id or stem),
                    entitlements=None,
                    info_plist=None,
                    code_resources=None,
                )
                sign_macho(fact.macho, spec, material, at, what=name, workdir=spool)
                facts[name] = _file_hashes(fact.macho)
                replaced[name] = fact.macho
                signed.append(name)
            resources = build_code_resources(bundle_files(index, bundle, facts))
            replaced[bundle.code_resources] = resources
            facts[bundle.code_resources] = _hashes(resources)
            spec = CodeSpec(
                identifier=final_id,
                team_id=team,
                requirements=designated_requirement_for(material, final_id),
                entitlements=entitlements,
                info_plist=infos[bundle.info_plist],
                code_resources=resources,
            )
            sign_macho(exe.macho, spec, material, at, what=bundle.executable, workdir=spool)
            facts[bundle.executable] = _file_hashes(exe.macho)
            replaced[bundle.executable] = exe.macho
            signed.append(bundle.executable)
            results.append(SignedBundle(bundle.path, final_id, profile_name, entitlements, dropped))
            if dropped:
                log.info(
                    "ipa_signing.entitlements_dropped bundle=%s keys=%s",
                    bundle.path,
                    ",".join(dropped),
                )

        # phase 3: write
        _write(fh, index, replaced, Path(dst))
    log.info(
        "ipa_signing.signed bundle_id=%s files=%d bundles=%d",
        new_main,
        len(signed),
        len(results),
    )
    return ResignResult(
        bundle_id=new_main,
        team_id=team,
        certificate_subject=cert.subject.rfc4514_string(),
        bundles=tuple(results),
        signed_files=tuple(signed),
        rewritten=tuple(sorted(replaced)),
    )


def _valid_bundle_id(value: str) -> bool:
    return (
        bool(value)
        and len(value) <= 255
        and all(
            part and all(c.isascii() and (c.isalnum() or c == "-") for c in part)
            for part in value.split(".")
        )
    )


def _write(fh: BinaryIO, index: IpaIndex, replaced: dict[str, bytes | Path], dst: Path) -> None:
    layout = index.layout
    order = sorted(range(len(layout.entries)), key=lambda i: layout.entries[i].local_header_offset)
    records: dict[int, bytes] = {}
    with replacing(dst) as raw:
        out = OffsetWriter(raw)
        previous_end = 0
        for i in order:
            entry = layout.entries[i]
            if entry.local_header_offset < previous_end:
                raise InvalidArtifact(
                    f"The entry {entry.name!r} overlaps another entry.",
                    reason="overlapping_entries",
                )
            if entry.name in replaced:
                records[i] = _write_new(out, entry.name, replaced[entry.name], entry)
                previous_end = entry.local_header_offset + LOCAL_HEADER_SIZE
                continue
            records[i], previous_end = copy_entry(
                fh, entry, layout.records[i], out, cd_offset=layout.sections.cd_offset, alignment=1
            )
        ordered = [records[i] for i in range(len(layout.entries))]
        present = {e.name for e in layout.entries}
        for name in sorted(set(replaced) - present):
            ordered.append(_write_new(out, name, replaced[name], None))
        finish_archive(out, ordered, comment=layout.comment)


def _write_new(
    out: OffsetWriter, name: str, content: bytes | Path, template: CentralDirectoryEntry | None
) -> bytes:
    chunks = [content] if isinstance(content, bytes) else _chunks(content)
    return write_stream_entry(out, name, chunks, template=template)
