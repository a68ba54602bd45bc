"""Re-signing IPAs: outputs verify with appyard's verifier, are read back by independent
parsers (LIEF for the Mach-O files, a few lines of struct here for the signature blobs,
asn1crypto and cryptography for the CMS), keep every other file byte for byte, and every
refusal comes before anything is written."""

from __future__ import annotations

import hashlib
import importlib.util
import plistlib
import struct
import tracemalloc
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from appyard.signing.ios.errors import (
    BundleIdNotCovered,
    EncryptedBinary,
    NoRoomForSignature,
    ProfileCertificateMismatch,
    ProfileExpired,
    ProfileMissing,
)
from appyard.signing.ios.resign import resign_ipa
from appyard.signing.ios.verify import verify_ipa
from appyard.signing.keystore import CertificateExpired
from tests.conftest import need, shared_path
from tests.signing.ios_kit import (
    TEAM,
    BuiltIpa,
    Identity,
    add_encryption_info,
    build_ipa,
    build_macho,
    fill_header,
    make_identity,
    make_profile,
    rezip,
    tools_present,
    zip_entries,
)

NOW = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.fixture(scope="module")
def identity() -> Identity:
    return make_identity()


@pytest.fixture
def built(tmp_path: Path) -> BuiltIpa:
    need(tools_present(), "llvm-mc, ld64.lld-14 and llvm-lipo-14 (apt: llvm lld-14)")
    return build_ipa(tmp_path / "in.ipa")


def resign(src: Path, dst: Path, identity: Identity, *profiles: bytes, **kw: Any) -> Any:
    return resign_ipa(src, dst, identity.material, profiles=list(profiles), now=NOW, **kw)


# --- an independent reading of the signature -----------------------------------------------------


def superblob(data: bytes) -> dict[int, bytes]:
    magic, length, count = struct.unpack_from(">III", data)
    assert magic == 0xFADE0CC0 and length <= len(data)
    out = {}
    for i in range(count):
        slot, offset = struct.unpack_from(">II", data, 12 + 8 * i)
        size = struct.unpack_from(">I", data, offset + 4)[0]
        out[slot] = data[offset : offset + size]
    return out


def code_directory(cd: bytes) -> dict[str, Any]:
    (magic, length, version, flags, hash_off, ident_off, n_special, n_code, limit, hsize, htype,
     _platform, page_log2, _spare) = struct.unpack_from(">IIIIIIIIIBBBBI", cd)  # fmt: skip
    assert magic == 0xFADE0C02 and length == len(cd)
    (team_off,) = struct.unpack_from(">I", cd, 48)
    return {
        "version": version,
        "flags": flags,
        "identifier": cd[ident_off : cd.index(b"\0", ident_off)].decode(),
        "team": cd[team_off : cd.index(b"\0", team_off)].decode() if team_off else None,
        "hash": {1: "sha1", 2: "sha256"}[htype],
        "size": hsize,
        "limit": limit,
        "page": 1 << page_log2,
        "code": [cd[hash_off + i * hsize : hash_off + (i + 1) * hsize] for i in range(n_code)],
        "special": {
            s: cd[hash_off - s * hsize : hash_off - (s - 1) * hsize]
            for s in range(1, n_special + 1)
        },
        "exec_seg": struct.unpack_from(">QQQ", cd, 64),
    }


def lief_slices(data: bytes, tmp: Path) -> list[tuple[Any, bytes]]:
    """(LIEF binary, the slice's bytes) for every architecture, read with LIEF."""
    need(importlib.util.find_spec("lief") is not None, "LIEF (pip install -e '.[dev]')")
    import lief

    path = tmp / "macho.bin"
    path.write_bytes(data)
    fat = lief.MachO.parse(str(path))
    out = []
    for i in range(fat.size):
        binary = fat.at(i)
        start = binary.fat_offset
        out.append((binary, data[start : start + binary.original_size]))
    return out


def check_with_lief(data: bytes, tmp: Path, *, identifier: str) -> list[dict[str, Any]]:
    """Every slice: LC_CODE_SIGNATURE at the end of __LINKEDIT, and page hashes recomputed
    here over the bytes LIEF delimits."""
    cds = []
    for binary, raw in lief_slices(data, tmp):
        sig = binary.code_signature
        linkedit = binary.get_segment("__LINKEDIT")
        assert sig.data_offset + sig.data_size == linkedit.file_offset + linkedit.file_size
        assert sig.data_offset + sig.data_size == len(raw)
        assert linkedit.virtual_size >= linkedit.file_size
        blobs = superblob(bytes(sig.content))
        for slot in [s for s in blobs if s == 0 or 0x1000 <= s < 0x1005]:
            cd = code_directory(blobs[slot])
            assert cd["identifier"] == identifier and cd["team"] == TEAM
            assert cd["limit"] == sig.data_offset
            limit = cd["limit"]
            pages = [raw[i : min(i + cd["page"], limit)] for i in range(0, limit, cd["page"])]
            assert cd["code"] == [hashlib.new(cd["hash"], p).digest() for p in pages]
            assert cd["special"][2] == hashlib.new(cd["hash"], blobs[2]).digest()
            cd["blobs"] = blobs
            cd["raw"] = blobs[slot]
            cd["cpu_subtype"] = binary.header.cpu_subtype
            cds.append(cd)
    return cds


def check_cms(cms_blob: bytes, cds: list[bytes], identity: Identity) -> None:
    """The CMS read with asn1crypto, its signature checked with cryptography."""
    magic, length = struct.unpack_from(">II", cms_blob)
    assert magic == 0xFADE0B01 and length == len(cms_blob)
    info = asn1_cms.ContentInfo.load(cms_blob[8:])
    signed = info["content"]
    assert signed["encap_content_info"]["content"].native is None  # detached
    certs = [c.chosen.dump() for c in signed["certificates"]]
    assert certs[0] == identity.der
    (signer,) = signed["signer_infos"]
    attrs = {a["type"].dotted: a["values"] for a in signer["signed_attrs"]}
    digest = attrs["1.2.840.113549.1.9.4"][0].native
    assert digest == hashlib.sha256(cds[0]).digest()
    cdhashes = plistlib.loads(asn1_core.load(attrs["1.2.840.113635.100.9.1"][0].dump()).native)
    names = ["sha1" if len(cds) == 2 and i == 0 else "sha256" for i in range(len(cds))]
    assert cdhashes["cdhashes"] == [
        hashlib.new(n, cd).digest()[:20] for n, cd in zip(names, cds, strict=True)
    ]
    v2 = [asn1_core.load(v.dump()) for v in attrs["1.2.840.113635.100.9.2"]]
    got = {(seq[0].dotted, seq[1].native) for seq in v2}
    oids = {"sha1": "1.3.14.3.2.26", "sha256": "2.16.840.1.101.3.4.2.1"}
    assert got == {(oids[n], hashlib.new(n, cd).digest()) for n, cd in zip(names, cds, strict=True)}
    signed_attrs = signer["signed_attrs"].dump()
    to_verify = b"\x31" + signed_attrs[1:]
    key = identity.material.certificate.public_key()
    signature = signer["signature"].native
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, to_verify, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(signature, to_verify, ec.ECDSA(hashes.SHA256()))


# --- the proof ---------------------------------------------------------------------------------


def test_resigned_ipa_verifies_and_keeps_every_other_file(
    built: BuiltIpa, identity: Identity, tmp_path: Path
) -> None:
    out = tmp_path / "out.ipa"
    result = resign(built.path, out, identity, make_profile(identity))
    report = verify_ipa(out)
    assert report.intact, report.problems
    app = built.app
    assert [b.path for b in report.bundles] == [
        f"{app}Frameworks/Kit.framework/",
        f"{app}PlugIns/Share.appex/",
        f"{app}Watch/Watch.app/",
        app,
    ]
    assert set(result.signed_files) == set(built.machos)
    signature_parts = set(built.machos) | {
        f"{b.path}{n}"
        for b in report.bundles
        for n in ("_CodeSignature/CodeResources", "embedded.mobileprovision")
    }
    assert set(result.rewritten) <= signature_parts
    before, after = zip_entries(built.path), zip_entries(out)
    for name, data in before.items():
        if name not in signature_parts:
            assert after[name] == data, name
    # untouched entries are copied raw: the same compressed bytes, CRC and mode
    with zipfile.ZipFile(built.path) as a, zipfile.ZipFile(out) as b:
        old = {i.filename: i for i in a.infolist()}
        for info in b.infolist():
            if info.filename in old and info.filename not in result.rewritten:
                o = old[info.filename]
                assert (info.CRC, info.compress_size, info.external_attr) == (
                    o.CRC, o.compress_size, o.external_attr,
                )  # fmt: skip
            if info.filename in built.machos:
                assert info.external_attr >> 16 == 0o100755  # still executable
    for bundle in report.bundles:
        for sl in bundle.slices:
            assert sl.team_id == TEAM and sl.signer is not None
            assert sl.signer.sha256 == identity.material.certificate_sha256


def test_lief_and_asn1crypto_read_the_new_signatures(
    built: BuiltIpa, identity: Identity, tmp_path: Path
) -> None:
    out = tmp_path / "out.ipa"
    resign(built.path, out, identity, make_profile(identity))
    files = zip_entries(out)
    app = built.app
    expect = {
        f"{app}Demo": ("com.example.demo", 2),
        f"{app}Frameworks/Kit.framework/Kit": ("com.example.demo.Kit", 2),
        f"{app}Frameworks/libswiftDemo.dylib": ("libswiftDemo.dylib", 1),  # the old identifier
        f"{app}PlugIns/Share.appex/Share": ("com.example.demo.share", 1),
        f"{app}Watch/Watch.app/Watch": ("com.example.demo.watchkitapp", 1),
    }
    for name, (identifier, slices) in expect.items():
        cds = check_with_lief(files[name], tmp_path, identifier=identifier)
        assert len(cds) == slices, name
        for cd in cds:
            blobs = cd["blobs"]
            check_cms(blobs[0x10000], [blobs[0]], identity)
            main = name in (
                f"{app}Demo",
                f"{app}PlugIns/Share.appex/Share",
                f"{app}Watch/Watch.app/Watch",
            )
            bundle = name.rsplit("/", 1)[0] + "/"
            if name.endswith(("Demo", "Kit", "Share", "Watch")):
                info = files[f"{bundle}Info.plist"]
                assert cd["special"][1] == hashlib.sha256(info).digest()
                resources = files[f"{bundle}_CodeSignature/CodeResources"]
                assert cd["special"][3] == hashlib.sha256(resources).digest()
            if main:
                ent = plistlib.loads(blobs[5][8:])
                assert ent["application-identifier"] == f"{TEAM}.{identifier}"
                assert cd["special"][5] == hashlib.sha256(blobs[5]).digest()
                assert cd["special"][7] == hashlib.sha256(blobs[7]).digest()
                assert blobs[7][8:10] == b"\x70\x81" or blobs[7][8] == 0x70
            else:
                assert 5 not in blobs and 7 not in blobs
            flags = cd["exec_seg"][2]
            assert flags & 1 == (1 if main or name == f"{app}Demo" else 0)
    subtypes = [
        cd["cpu_subtype"]
        for cd in check_with_lief(files[f"{app}Demo"], tmp_path, identifier="com.example.demo")
    ]
    assert subtypes == [0, 0x80000002]  # arm64 and arm64e slices


def test_code_resources_lists_every_file_as_codesign_does(
    built: BuiltIpa, identity: Identity, tmp_path: Path
) -> None:
    out = tmp_path / "out.ipa"
    resign(built.path, out, identity, make_profile(identity))
    files = zip_entries(out)
    app = built.app
    document = plistlib.loads(files[f"{app}_CodeSignature/CodeResources"])
    capable = shared_path("fixtures", "thirdparty", "very-capable-app.ipa")
    apple = plistlib.loads(
        zip_entries(capable)["Payload/very-capable-app.app/_CodeSignature/CodeResources"]
    )
    assert document["rules"] == apple["rules"] and document["rules2"] == apple["rules2"]
    files2 = document["files2"]
    assert "Info.plist" not in files2 and "PkgInfo" not in files2 and "Demo" not in files2
    assert "Info.plist" in document["files"]
    assert files2["en.lproj/Localizable.strings"]["optional"] is True
    for rel in (
        "Frameworks/Kit.framework/Kit",
        "Frameworks/Kit.framework/_CodeSignature/CodeResources",
        "PlugIns/Share.appex/Share",
        "embedded.mobileprovision",
        "assets/file000.json",
    ):
        data = files[app + rel]
        assert files2[rel] == {
            "hash": hashlib.sha1(data).digest(),
            "hash2": hashlib.sha256(data).digest(),
        }, rel
    assert not any(k.startswith("_CodeSignature/") for k in files2)


def test_minimum_os_chooses_the_code_directories(identity: Identity, tmp_path: Path) -> None:
    need(tools_present(), "llvm-mc, ld64.lld-14 and llvm-lipo-14 (apt: llvm lld-14)")
    for min_os, expected in (("10.0", ("sha1", "sha256")), ("11.0", ("sha256",))):
        ipa = build_ipa(tmp_path / f"{min_os}.ipa", min_os=min_os, fat=False, framework=False,
                        dylib=False, extension=False, watch=False)  # fmt: skip
        out = tmp_path / f"{min_os}-out.ipa"
        resign(ipa.path, out, identity, make_profile(identity))
        report = verify_ipa(out)
        assert report.intact, report.problems
        assert report.app.slices[0].hash_types == expected
        if len(expected) == 2:
            blobs = superblob(
                bytes(
                    lief_slices(zip_entries(out)[f"{ipa.app}Demo"], tmp_path)[0][
                        0
                    ].code_signature.content
                )
            )
            check_cms(blobs[0x10000], [blobs[0], blobs[0x1000]], identity)


def test_an_ec_key_signs(built: BuiltIpa, tmp_path: Path) -> None:
    ec_identity = make_identity(kind="ec")
    out = tmp_path / "out.ipa"
    resign(built.path, out, ec_identity, make_profile(ec_identity))
    report = verify_ipa(out)
    assert report.intact, report.problems
    blobs = superblob(
        bytes(
            lief_slices(zip_entries(out)[f"{built.app}Demo"], tmp_path)[0][0].code_signature.content
        )
    )
    check_cms(blobs[0x10000], [blobs[0]], ec_identity)


def test_the_apple_signed_fixture_is_resigned_keeping_what_the_profile_permits(
    identity: Identity, tmp_path: Path
) -> None:
    capable = shared_path("fixtures", "thirdparty", "very-capable-app.ipa")
    profile = make_profile(
        identity,
        app_id=f"{TEAM}.org.fastlane.*",
        entitlements={
            "aps-environment": "production",
            "com.apple.developer.associated-domains": "*",
            "com.apple.security.application-groups": ["group.*"],
        },
    )
    out = tmp_path / "out.ipa"
    result = resign(capable, out, identity, profile)
    report = verify_ipa(out)
    assert report.intact, report.problems
    (sl,) = report.app.slices
    assert sl.hash_types == ("sha256",)  # its binary targets iOS 11.2
    ent = sl.entitlements
    assert ent is not None and sl.der_entitlements
    before = verify_ipa(capable).app.slices[0].entitlements
    assert before is not None
    assert ent["application-identifier"] == f"{TEAM}.org.fastlane.very-capable-app"
    assert ent["com.apple.developer.team-identifier"] == TEAM
    assert ent["get-task-allow"] is False  # the profile's, not the old signature's
    assert (
        ent["com.apple.developer.associated-domains"]
        == before["com.apple.developer.associated-domains"]
    )
    assert (
        ent["com.apple.security.application-groups"]
        == before["com.apple.security.application-groups"]
    )
    assert ent["keychain-access-groups"] == [
        g.replace("TestFixture.", f"{TEAM}.") for g in before["keychain-access-groups"]
    ]
    assert "aps-environment" not in ent  # the old value "development" is not permitted
    assert "com.apple.developer.healthkit" not in ent
    (app,) = [b for b in result.bundles if b.path.endswith("very-capable-app.app/")]
    assert "com.apple.developer.healthkit" in app.dropped_entitlements
    assert "aps-environment" in app.dropped_entitlements
    old, new = zip_entries(capable), zip_entries(out)
    for name, data in old.items():
        if not name.endswith(("very-capable-app", "CodeResources", "embedded.mobileprovision")):
            assert new[name] == data, name


def test_bundle_id_change_follows_into_inner_bundles(
    built: BuiltIpa, identity: Identity, tmp_path: Path
) -> None:
    out = tmp_path / "out.ipa"
    profile = make_profile(identity, app_id=f"{TEAM}.com.acme.*")
    resign(built.path, out, identity, profile, bundle_id="com.acme.renamed")
    report = verify_ipa(out)
    assert report.intact, report.problems
    ids = {b.path.removeprefix(built.app): b.bundle_id for b in report.bundles}
    assert ids == {
        "": "com.acme.renamed",
        "Frameworks/Kit.framework/": "com.acme.renamed.Kit",
        "PlugIns/Share.appex/": "com.acme.renamed.share",
        "Watch/Watch.app/": "com.acme.renamed.watchkitapp",
    }
    watch = plistlib.loads(zip_entries(out)[f"{built.app}Watch/Watch.app/Info.plist"])
    assert watch["WKCompanionAppBundleIdentifier"] == "com.acme.renamed"
    assert report.app.slices[0].identifier == "com.acme.renamed"


def test_an_unsigned_binary_gets_a_code_signature_command(
    identity: Identity, tmp_path: Path
) -> None:
    need(tools_present(), "llvm-mc, ld64.lld-14 and llvm-lipo-14 (apt: llvm lld-14)")
    ipa = build_ipa(tmp_path / "in.ipa", fat=False, adhoc=False)
    out = tmp_path / "out.ipa"
    resign(ipa.path, out, identity, make_profile(identity))
    report = verify_ipa(out)
    assert report.intact, report.problems


def test_signing_twice_and_in_place(built: BuiltIpa, identity: Identity, tmp_path: Path) -> None:
    resign(built.path, built.path, identity, make_profile(identity))
    other = make_identity()
    resign(built.path, built.path, other, make_profile(other))
    report = verify_ipa(built.path)
    assert report.intact, report.problems
    assert report.app.slices[0].signer is not None
    assert report.app.slices[0].signer.sha256 == other.material.certificate_sha256


def test_the_embedded_profile_is_used_when_it_lists_the_certificate(
    identity: Identity, tmp_path: Path
) -> None:
    need(tools_present(), "llvm-mc, ld64.lld-14 and llvm-lipo-14 (apt: llvm lld-14)")
    ipa = build_ipa(tmp_path / "in.ipa", profile=make_profile(identity, name="Embedded"))
    out = tmp_path / "out.ipa"
    result = resign(ipa.path, out, identity)  # no profile given
    assert verify_ipa(out).intact
    assert {b.profile for b in result.bundles if b.profile} == {"Embedded"}


# --- refusals, before anything is written ------------------------------------------------------


def refused(
    built: BuiltIpa, tmp_path: Path, identity: Identity, *profiles: bytes, **kw: Any
) -> Any:
    out = tmp_path / "refused.ipa"
    with pytest.raises(Exception) as caught:
        resign(built.path, out, identity, *profiles, **kw)
    assert not out.exists() and not list(tmp_path.glob(".refused.ipa.*"))
    return caught.value


def test_a_profile_without_the_certificate_is_refused(
    built: BuiltIpa, identity: Identity, tmp_path: Path
) -> None:
    error = refused(built, tmp_path, identity, make_profile(make_identity()))
    assert isinstance(error, ProfileCertificateMismatch)
    assert error.code == "ipa_signing.profile_certificate_mismatch"
    assert "does not list the signing certificate" in error.message
    assert identity.material.certificate_sha256 in error.message


def test_an_expired_profile_is_refused(built: BuiltIpa, identity: Identity, tmp_path: Path) -> None:
    profile = make_profile(identity, expires=datetime(2025, 1, 1, tzinfo=UTC), name="Old")
    error = refused(built, tmp_path, identity, profile)
    assert isinstance(error, ProfileExpired) and error.code == "ipa_signing.profile_expired"
    assert error.message == "The provisioning profile 'Old' expired on 2025-01-01."


def test_an_expired_certificate_is_refused(built: BuiltIpa, tmp_path: Path) -> None:
    short = make_identity(not_after=datetime(2025, 6, 1, tzinfo=UTC))
    error = refused(built, tmp_path, short, make_profile(short))
    assert isinstance(error, CertificateExpired)
    assert (
        error.code == "signing_key.certificate_expired" and "expired on 2025-06-01" in error.message
    )


def test_a_bundle_id_the_profile_does_not_cover_is_refused(
    built: BuiltIpa, identity: Identity, tmp_path: Path
) -> None:
    profile = make_profile(identity, app_id=f"{TEAM}.com.example.demo", name="Explicit")
    error = refused(built, tmp_path, identity, profile)  # the extensions have other ids
    assert isinstance(error, BundleIdNotCovered)
    assert error.code == "ipa_signing.bundle_id_not_covered"
    assert "com.example.demo.share" in error.message or "watchkitapp" in error.message
    error = refused(built, tmp_path, identity, make_profile(identity), bundle_id="org.other.app")
    assert isinstance(error, BundleIdNotCovered) and "org.other.app" in error.message


def test_an_encrypted_binary_is_refused(
    built: BuiltIpa, identity: Identity, tmp_path: Path
) -> None:
    need(tools_present(), "llvm-mc, ld64.lld-14 and llvm-lipo-14 (apt: llvm lld-14)")
    exe = build_macho(tmp_path / "Share", value=3)
    add_encryption_info(exe)
    name = f"{built.app}PlugIns/Share.appex/Share"
    rezip(built.path, tmp_path / "enc.ipa", change={name: exe.read_bytes()})
    built.path = tmp_path / "enc.ipa"
    error = refused(built, tmp_path, identity, make_profile(identity))
    assert isinstance(error, EncryptedBinary) and error.code == "ipa_signing.encrypted_binary"
    assert name in error.message and "FairPlay" in error.message


def test_a_binary_without_room_for_a_signature_is_refused(
    built: BuiltIpa, identity: Identity, tmp_path: Path
) -> None:
    exe = build_macho(tmp_path / "Watch", value=4, adhoc=False)
    fill_header(exe)
    name = f"{built.app}Watch/Watch.app/Watch"
    rezip(built.path, tmp_path / "full.ipa", change={name: exe.read_bytes()})
    built.path = tmp_path / "full.ipa"
    error = refused(built, tmp_path, identity, make_profile(identity))
    assert isinstance(error, NoRoomForSignature) and error.code == "ipa_signing.no_signature_room"
    assert name in error.message and "LC_CODE_SIGNATURE" in error.message


def test_without_any_profile_the_missing_one_is_named(identity: Identity, tmp_path: Path) -> None:
    need(tools_present(), "llvm-mc, ld64.lld-14 and llvm-lipo-14 (apt: llvm lld-14)")
    other = make_identity(team="ZZZZZ99999")
    ipa = build_ipa(
        tmp_path / "in.ipa", profile=make_profile(other, name="Their profile", team="ZZZZZ99999")
    )
    error = refused(ipa, tmp_path, identity)
    assert isinstance(error, ProfileMissing) and error.code == "ipa_signing.profile_missing"
    assert "'Their profile'" in error.message and "does not list its certificate" in error.message
    bare = build_ipa(tmp_path / "bare.ipa")
    error = refused(bare, tmp_path, identity)
    assert isinstance(error, ProfileMissing) and "has no embedded.mobileprovision" in error.message


# --- bounded memory ------------------------------------------------------------------------------


def test_memory_does_not_grow_with_the_ipa(identity: Identity, tmp_path: Path) -> None:
    need(tools_present(), "llvm-mc, ld64.lld-14 and llvm-lipo-14 (apt: llvm lld-14)")
    ipa = build_ipa(tmp_path / "big.ipa", big_resource=48 * 1024 * 1024, resources=300)
    profile = make_profile(identity)
    out = tmp_path / "out.ipa"
    tracemalloc.start()
    try:
        resign(ipa.path, out, identity, profile)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * 1024 * 1024, peak  # the 48 MB resource never sits in memory
    assert verify_ipa(out).intact
    assert serialization  # (imported for the CMS checks)
