"""Verify the code signatures of an IPA: the inverse of :mod:`appyard.signing.ios.resign`.

For every Mach-O in every bundle (each slice of a fat file on its own):

* the embedded signature's CodeDirectories (slot 0 and alternates): every code page's hash
  up to ``codeLimit``, which must be where the signature starts;
* the special slots: Info.plist and CodeResources (for a bundle's main executable),
  requirements, entitlements and DER entitlements blobs;
* the CMS signature over the first CodeDirectory, its signer certificate and its CDHashes
  attributes (an ad-hoc signature, as the linker writes, has no CMS and is reported so);

for every bundle, ``_CodeSignature/CodeResources`` against its files (changed, added and
missing files by name); and the signing certificate against each ``embedded.mobileprovision``
(listed among its DeveloperCertificates, its app id covering the bundle id).

Each finding is one sentence naming the file (``Payload/A.app/A (arm64): code page 3
changed``) in :attr:`IpaSignatureReport.problems`; ``intact`` is True when there are none.
Mach-O files are spooled to a temporary file (random access); everything else is hashed as
it streams, so memory stays bounded whatever the IPA's size.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from appyard.errors import InvalidArtifact
from appyard.signing.ios import blobs
from appyard.signing.ios.blobs import CodeDirectory
from appyard.signing.ios.bundle import (
    MAX_SYMLINK_BYTES,
    Bundle,
    IpaIndex,
    index_ipa,
    is_symlink,
    iter_data,
    read_small,
)
from appyard.signing.ios.cms import check_cms
from appyard.signing.ios.errors import BadMachO
from appyard.signing.ios.macho import is_macho, parse_slice, read_layout
from appyard.signing.ios.mobileprovision import (
    MAX_PROFILE_BYTES,
    CertificateInfo,
    ProvisioningProfile,
    bundle_id_matches,
    describe_certificate,
    parse_mobileprovision,
)
from appyard.signing.ios.plist import load_plist
from appyard.signing.ios.resources import ResourceFile, check_code_resources

MAX_CODE_RESOURCES_BYTES = 16 * 1024 * 1024
MAX_CODE_RESOURCES_VALUES = 2_000_000
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class SliceSignature:
    """One architecture's signature."""

    arch: str
    identifier: str | None
    team_id: str | None
    hash_types: tuple[str, ...]  # of the CodeDirectories, slot 0 first
    cdhash: str | None  # hex, of the first CodeDirectory
    adhoc: bool
    signer: CertificateInfo | None
    designated_requirement: str | None
    entitlements: dict[str, Any] | None = field(hash=False)
    der_entitlements: bool = False
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class BundleSignature:
    path: str  # the bundle's folder in the zip
    bundle_id: str
    kind: str  # app, appex, framework, xpc
    executable: str | None
    slices: tuple[SliceSignature, ...]
    profile: ProvisioningProfile | None = field(hash=False, repr=False)


@dataclass(frozen=True)
class IpaSignatureReport:
    intact: bool
    problems: tuple[str, ...]
    bundles: tuple[BundleSignature, ...]  # deepest first; the app is last
    machos: tuple[str, ...]  # every Mach-O file checked

    @property
    def app(self) -> BundleSignature:
        return self.bundles[-1]


@dataclass
class FileFacts:
    """A file's hashes; a Mach-O's spooled copy; a symlink's target."""

    sha1: bytes
    sha256: bytes
    symlink: str | None = None
    macho: Path | None = None


def hash_entries(fh: BinaryIO, index: IpaIndex, spool: Path) -> dict[str, FileFacts]:
    """SHA-1 and SHA-256 of every file; Mach-O files are also spooled to ``spool``."""
    facts: dict[str, FileFacts] = {}
    for n, entry in enumerate(index.files()):
        if index.owner(entry.name) is None:
            continue
        if is_symlink(entry):
            target = read_small(fh, index.layout, entry, MAX_SYMLINK_BYTES)
            facts[entry.name] = FileFacts(b"", b"", symlink=target.decode("utf-8", "replace"))
            continue
        sha1 = hashlib.sha1(usedforsecurity=False)
        sha256 = hashlib.sha256()
        out: BinaryIO | None = None
        path = None
        first = True
        try:
            for chunk in iter_data(fh, index.layout, entry):
                if first:
                    first = False
                    if is_macho(chunk[:8]):
                        path = spool / f"{n}.macho"
                        out = open(path, "wb")
                sha1.update(chunk)
                sha256.update(chunk)
                if out is not None:
                    out.write(chunk)
        finally:
            if out is not None:
                out.close()
        facts[entry.name] = FileFacts(sha1.digest(), sha256.digest(), macho=path)
    return facts


def bundle_files(
    index: IpaIndex, bundle: Bundle, facts: dict[str, FileFacts]
) -> list[ResourceFile]:
    """The files CodeResources covers: all under the bundle except its own
    ``_CodeSignature/`` folder and main executable."""
    out: list[ResourceFile] = []
    own = f"{bundle.path}_CodeSignature/"
    for name, fact in facts.items():
        if not name.startswith(bundle.path) or name.startswith(own) or name == bundle.executable:
            continue
        out.append(ResourceFile(bundle.relative(name), fact.sha1, fact.sha256, fact.symlink))
    return out


def _slot_hash(cd: CodeDirectory, data: bytes) -> bytes:
    return cd.digest(data)


def check_macho(
    path: Path,
    *,
    what: str,
    info_plist: bytes | None,
    code_resources: bytes | None,
) -> list[SliceSignature]:
    """Check the embedded signature of every slice of the Mach-O at ``path``."""
    out: list[SliceSignature] = []
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        layout = read_layout(fh, size, what=what)
        for ref in layout.slices:
            out.append(_check_slice(fh, ref.offset, ref.size, what, info_plist, code_resources))
    return out


def _check_slice(
    fh: BinaryIO,
    offset: int,
    size: int,
    what: str,
    info_plist: bytes | None,
    code_resources: bytes | None,
) -> SliceSignature:
    sl = parse_slice(fh, offset, size, what=what)
    label = f"{what} ({sl.arch})"
    problems: list[str] = []

    def result(**kw: Any) -> SliceSignature:
        base: dict[str, Any] = {
            "arch": sl.arch,
            "identifier": None,
            "team_id": None,
            "hash_types": (),
            "cdhash": None,
            "adhoc": False,
            "signer": None,
            "designated_requirement": None,
            "entitlements": None,
        }
        base.update(kw)
        return SliceSignature(problems=tuple(problems), **base)

    if sl.code_signature is None:
        problems.append(f"{label}: not signed (no LC_CODE_SIGNATURE)")
        return result()
    _cmd, dataoff, datasize = sl.code_signature
    if datasize > blobs.MAX_SIGNATURE_BYTES:
        problems.append(f"{label}: the code signature is larger than appyard reads")
        return result()
    fh.seek(offset + dataoff)
    try:
        entries = blobs.parse_superblob(fh.read(datasize), what=label)
    except BadMachO as exc:
        problems.append(exc.message)
        return result()
    by_slot = dict(entries)
    cds: list[CodeDirectory] = []
    for slot, data in entries:
        if slot == blobs.CSSLOT_CODEDIRECTORY or (
            blobs.CSSLOT_ALTERNATE_CODEDIRECTORIES
            <= slot
            < blobs.CSSLOT_ALTERNATE_CODEDIRECTORIES + 5
        ):
            try:
                cds.append(blobs.parse_code_directory(data, what=label))
            except BadMachO as exc:
                problems.append(exc.message)
    if not cds:
        problems.append(f"{label}: the signature has no CodeDirectory")
        return result()
    if blobs.CSSLOT_CODEDIRECTORY not in by_slot:
        problems.append(f"{label}: the signature has no primary CodeDirectory (slot 0)")
    # code pages, once per hash algorithm
    for cd in cds:
        if cd.code_limit != dataoff:
            problems.append(
                f"{label}: the CodeDirectory covers {cd.code_limit} bytes but the signature "
                f"starts at {dataoff}"
            )
            continue
        page = cd.page_size or cd.code_limit
        expected_pages = (cd.code_limit + page - 1) // page if page else 0
        if len(cd.code_hashes) != expected_pages:
            problems.append(
                f"{label}: the CodeDirectory has {len(cd.code_hashes)} page hashes for "
                f"{expected_pages} pages"
            )
            continue
        fh.seek(offset)
        changed: list[int] = []
        for i, stored in enumerate(cd.code_hashes):
            data = fh.read(min(page, cd.code_limit - i * page))
            if cd.digest(data) != stored:
                changed.append(i)
        if changed:
            shown = ", ".join(str(i) for i in changed[:5]) + (" ..." if len(changed) > 5 else "")
            problems.append(
                f"{label}: code page{'s' if len(changed) > 1 else ''} {shown} changed "
                f"({cd.hash_name} page hashes)"
            )
    # special slots
    sources: dict[int, bytes | None] = {
        blobs.CSSLOT_INFOSLOT: info_plist,
        blobs.CSSLOT_RESOURCEDIR: code_resources,
        blobs.CSSLOT_REQUIREMENTS: by_slot.get(blobs.CSSLOT_REQUIREMENTS),
        blobs.CSSLOT_ENTITLEMENTS: by_slot.get(blobs.CSSLOT_ENTITLEMENTS),
        blobs.CSSLOT_DER_ENTITLEMENTS: by_slot.get(blobs.CSSLOT_DER_ENTITLEMENTS),
    }
    for cd in cds:
        for slot, stored in cd.special_hashes.items():
            zero = stored == b"\x00" * len(stored)
            source = sources.get(slot)
            name = blobs.SLOT_NAMES.get(slot, f"slot -{slot}")
            if source is None:
                if not zero and slot in sources:
                    problems.append(f"{label}: {name} is sealed by the signature but missing")
                continue
            if _slot_hash(cd, source) != stored:
                problems.append(f"{label}: {name} changed (special slot -{slot}, {cd.hash_name})")
        for slot in (blobs.CSSLOT_INFOSLOT, blobs.CSSLOT_RESOURCEDIR):
            if sources[slot] is not None and slot not in cd.special_hashes:
                problems.append(f"{label}: the signature does not seal {blobs.SLOT_NAMES[slot]}")
    primary = cds[0]
    adhoc = bool(primary.flags & blobs.CS_ADHOC)
    signer = None
    cms_blob = by_slot.get(blobs.CSSLOT_SIGNATURESLOT)
    if cms_blob is not None and len(cms_blob) > 8:
        check = check_cms(cms_blob[8:], cds)
        problems.extend(f"{label}: {p}" for p in check.problems)
        if check.signer_der is not None:
            try:
                signer = describe_certificate(check.signer_der, what=label)
            except InvalidArtifact as exc:
                problems.append(exc.message)
    elif not adhoc:
        problems.append(f"{label}: the signature has no CMS signature and is not ad-hoc")
    entitlements = None
    raw_ent = by_slot.get(blobs.CSSLOT_ENTITLEMENTS)
    if raw_ent is not None:
        try:
            entitlements = load_plist(raw_ent[8:], what=f"{label}: the entitlements blob")[0]
        except InvalidArtifact as exc:
            problems.append(exc.message)
    raw_der = by_slot.get(blobs.CSSLOT_DER_ENTITLEMENTS)
    if raw_der is not None:
        try:
            der_value = blobs.parse_entitlements_der(raw_der[8:])
            if entitlements is not None and der_value != entitlements:
                problems.append(f"{label}: the DER and XML entitlements differ")
        except (ValueError, UnicodeDecodeError) as exc:
            problems.append(f"{label}: the DER entitlements cannot be read ({exc})")
    requirement = None
    raw_req = by_slot.get(blobs.CSSLOT_REQUIREMENTS)
    if raw_req is not None:
        requirement = blobs.requirement_text(raw_req).get(blobs.KIND_DESIGNATED)
    return result(
        identifier=primary.identifier,
        team_id=primary.team_id,
        hash_types=tuple(cd.hash_name for cd in cds),
        cdhash=primary.cdhash.hex(),
        adhoc=adhoc,
        signer=signer,
        designated_requirement=requirement,
        entitlements=entitlements,
        der_entitlements=raw_der is not None,
    )


def _check_profile(
    bundle: Bundle, data: bytes, slices: list[SliceSignature], problems: list[str]
) -> ProvisioningProfile | None:
    try:
        profile = parse_mobileprovision(data, what=bundle.profile)
    except InvalidArtifact as exc:
        problems.append(f"{bundle.profile}: {exc.message}")
        return None
    listed = {c.sha256 for c in profile.developer_certificates}
    for sl in slices:
        if sl.signer is not None and sl.signer.sha256 not in listed:
            problems.append(
                f"{bundle.profile} does not list the signing certificate of "
                f"{bundle.executable} ({sl.arch}: {sl.signer.subject})"
            )
            break
    pattern = profile.bundle_id_pattern
    if pattern is not None and not bundle_id_matches(pattern, bundle.bundle_id):
        problems.append(
            f"{bundle.profile} ({profile.application_identifier}) does not cover the bundle "
            f"id {bundle.bundle_id}"
        )
    return profile


def verify_ipa(
    path: str | os.PathLike[str],
    *,
    workdir: str | os.PathLike[str] | None = None,
    on_file: Callable[[str], None] | None = None,
) -> IpaSignatureReport:
    """Check every signature in the IPA at ``path``; raises :class:`InvalidArtifact` only
    when the IPA cannot be read at all (a broken signature is a problem in the report)."""
    problems: list[str] = []
    bundles_out: list[BundleSignature] = []
    machos: list[str] = []
    with (
        open(path, "rb") as fh,
        tempfile.TemporaryDirectory(prefix="appyard-ipa-verify-", dir=workdir) as tmp,
    ):
        index = index_ipa(fh)
        facts = hash_entries(fh, index, Path(tmp))
        small: dict[str, bytes] = {}

        def content(name: str, limit: int) -> bytes | None:
            if name not in small:
                entry = index.entries.get(name)
                if entry is None:
                    return None
                small[name] = read_small(fh, index.layout, entry, limit)
            return small[name]

        mains = {b.executable: b for b in index.bundles if b.executable}
        for bundle in index.bundles:
            if bundle.executable is None or bundle.executable not in index.entries:
                problems.append(f"{bundle.path}: the main executable is missing")
        slices_of: dict[str, list[SliceSignature]] = {}
        for name, fact in facts.items():
            if fact.macho is None:
                continue
            if on_file is not None:
                on_file(name)
            machos.append(name)
            owner = mains.get(name)
            try:
                slices = check_macho(
                    fact.macho,
                    what=name,
                    info_plist=content(owner.info_plist, 4 * 1024 * 1024) if owner else None,
                    code_resources=(
                        content(owner.code_resources, MAX_CODE_RESOURCES_BYTES) if owner else None
                    ),
                )
            except BadMachO as exc:
                problems.append(exc.message)
                slices = []
            slices_of[name] = slices
            for sl in slices:
                problems.extend(sl.problems)
            fact.macho.unlink()
        for bundle in index.bundles:
            raw = content(bundle.code_resources, MAX_CODE_RESOURCES_BYTES)
            if raw is None:
                problems.append(f"{bundle.path}: _CodeSignature/CodeResources is missing")
            else:
                try:
                    document = load_plist(
                        raw,
                        what=bundle.code_resources,
                        max_bytes=MAX_CODE_RESOURCES_BYTES,
                        max_nodes=MAX_CODE_RESOURCES_VALUES,
                    )[0]
                except InvalidArtifact as exc:
                    problems.append(exc.message)
                else:
                    found = check_code_resources(document, bundle_files(index, bundle, facts))
                    problems.extend(f"{bundle.path}: {p}" for p in found)
            slices = slices_of.get(bundle.executable or "", [])
            profile = None
            data = content(bundle.profile, MAX_PROFILE_BYTES)
            if data is not None:
                profile = _check_profile(bundle, data, slices, problems)
            bundles_out.append(
                BundleSignature(
                    path=bundle.path,
                    bundle_id=bundle.bundle_id,
                    kind=bundle.kind,
                    executable=bundle.executable,
                    slices=tuple(slices),
                    profile=profile,
                )
            )
    return IpaSignatureReport(
        intact=not problems,
        problems=tuple(problems),
        bundles=tuple(bundles_out),
        machos=tuple(machos),
    )
