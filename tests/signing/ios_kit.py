"""Test material for the iOS signer, made by the tests themselves.

* :func:`make_identity`: a self-made CA and a signing certificate issued by it (its OU is the
  team id, as in Apple's certificates), as a PKCS#12 file and as ``SigningMaterial``. Only a
  certificate Apple issued installs on a device; these prove the format, not trust.
* :func:`make_profile`: a provisioning profile, i.e. a CMS SignedData (cryptography's PKCS#7
  builder) around a plist, signed by a self-made "profile signing" certificate.
* :func:`build_ipa`: real arm64 (and arm64e, fat) Mach-O files assembled by ``llvm-mc`` and
  linked by Debian's ``ld64.lld-14`` (ad-hoc signed by the linker, ``-adhoc_codesign``), fat
  files by ``llvm-lipo-14``, laid out as an app with a framework, a plain dylib, an app
  extension and a watch app, zipped as an IPA.

``scripts/make-test-ipas`` runs :func:`build_ipa` from the command line.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import struct
import subprocess
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appyard.signing.keystore import SigningMaterial, load_keystore_bytes

TEAM = "ABCDE12345"
PASSWORD = "ios-test-password"
VALID_FROM = datetime(2020, 1, 1, tzinfo=UTC)
VALID_UNTIL = datetime(2040, 1, 1, tzinfo=UTC)
LLVM_MC = "llvm-mc"
LD64 = "ld64.lld-14"
LIPO = "llvm-lipo-14"
TOOLS = (LLVM_MC, LD64, LIPO)


def tools_present() -> bool:
    return all(shutil.which(t) for t in TOOLS)


# --- keys and profiles -------------------------------------------------------------------------


def _name(cn: str, ou: str | None = None, o: str = "appyard tests") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs += [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, o),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
    ]
    return x509.Name(attrs)


def _new_key(kind: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True)
class Authority:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)
    cert: x509.Certificate


def make_authority(cn: str = "appyard test CA", kind: str = "rsa") -> Authority:
    key = _new_key(kind)
    name = _name(cn)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(VALID_FROM)
        .not_valid_after(VALID_UNTIL)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Authority(key, cert)


@dataclass(frozen=True)
class Identity:
    p12: bytes = field(repr=False)
    password: str
    team: str
    material: SigningMaterial = field(repr=False)
    ca: Authority = field(repr=False)

    @property
    def der(self) -> bytes:
        return self.material.certificate.public_bytes(serialization.Encoding.DER)


def make_identity(
    *,
    team: str = TEAM,
    cn: str | None = None,
    kind: str = "rsa",
    ca: Authority | None = None,
    not_after: datetime = VALID_UNTIL,
) -> Identity:
    authority = ca or make_authority()
    key = _new_key(kind)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn or f"iPhone Distribution: appyard tests ({team})", ou=team))
        .issuer_name(authority.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(VALID_FROM)
        .not_valid_after(not_after)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=True)
        .sign(authority.key, hashes.SHA256())
    )
    p12 = pkcs12.serialize_key_and_certificates(
        b"signer",
        key,
        cert,
        [authority.cert],
        serialization.BestAvailableEncryption(PASSWORD.encode()),
    )
    material = load_keystore_bytes(
        p12, password=PASSWORD, pkcs12_only=True, now=VALID_FROM + timedelta(days=1)
    )
    return Identity(p12, PASSWORD, team, material, authority)


_PROFILE_SIGNER: Authority | None = None


def profile_signer() -> Authority:
    global _PROFILE_SIGNER
    if _PROFILE_SIGNER is None:
        _PROFILE_SIGNER = make_authority("appyard test Provisioning Profile Signing")
    return _PROFILE_SIGNER


def make_profile(
    *certificates: Identity | bytes,
    app_id: str = f"{TEAM}.com.example.*",
    team: str = TEAM,
    name: str = "appyard test profile",
    expires: datetime = VALID_UNTIL,
    entitlements: dict[str, Any] | None = None,
    get_task_allow: bool = False,
    devices: Iterable[str] = (),
) -> bytes:
    ders = [c.der if isinstance(c, Identity) else c for c in certificates]
    ent: dict[str, Any] = {
        "application-identifier": app_id,
        "com.apple.developer.team-identifier": team,
        "keychain-access-groups": [f"{team}.*"],
        "get-task-allow": get_task_allow,
    }
    ent.update(entitlements or {})
    document: dict[str, Any] = {
        "AppIDName": "appyard test",
        "ApplicationIdentifierPrefix": [team],
        "CreationDate": VALID_FROM.replace(tzinfo=None),
        "Platform": ["iOS"],
        "DeveloperCertificates": ders,
        "Entitlements": ent,
        "ExpirationDate": expires.astimezone(UTC).replace(tzinfo=None),
        "Name": name,
        "TeamIdentifier": [team],
        "TeamName": "appyard tests",
        "TimeToLive": 365,
        "UUID": "0F9C5E3A-6B0D-4C36-9D7E-5E6F4B1A2C3D",
        "Version": 1,
    }
    if devices:
        document["ProvisionedDevices"] = list(devices)
    content = plistlib.dumps(document)
    signer = profile_signer()
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(content)
        .add_signer(signer.cert, signer.key, hashes.SHA256())  # type: ignore[arg-type]
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )


# --- Mach-O files ------------------------------------------------------------------------------

_ASM = """
.section __TEXT,__text,regular,pure_instructions
.globl {symbol}
.p2align 2
{symbol}:
  mov w0, #{value}
  ret
.section __TEXT,__const
.p2align 4
blob: .incbin "{data}"
"""


def _run(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr}")


def build_macho(
    out: Path,
    *,
    kind: str = "execute",
    arch: str = "arm64",
    min_os: str = "14.0",
    value: int = 0,
    const_bytes: int = 9000,
    adhoc: bool = True,
    install_name: str | None = None,
) -> Path:
    """A thin arm64/arm64e Mach-O: an executable (``_main``) or a dylib (``_value``)."""
    work = out.parent / f".{out.name}.build"
    work.mkdir(parents=True, exist_ok=True)
    source = work / "code.s"
    symbol = "_main" if kind == "execute" else f"_value{value}"
    data = work / "const.bin"
    data.write_bytes(os.urandom(const_bytes))  # incompressible, like real code and data
    source.write_text(_ASM.format(symbol=symbol, value=value % 4096, data=data))
    obj = work / "code.o"
    _run(
        LLVM_MC,
        "-triple",
        f"{arch}-apple-ios{min_os}",
        "-filetype=obj",
        str(source),
        "-o",
        str(obj),
    )
    argv = [LD64, "-arch", arch, "-platform_version", "ios", min_os, "17.0", "-o", str(out)]
    if kind == "execute":
        argv += ["-e", "_main"]
    else:
        argv += ["-dylib", "-install_name", install_name or f"@rpath/{out.name}"]
    if adhoc and arch != "arm64e":
        argv.append("-adhoc_codesign")
    else:
        argv.append("-no_adhoc_codesign")
    _run(*argv, str(obj))
    if arch == "arm64e":  # ld64.lld-14 writes the arm64 subtype; mark the slice arm64e
        with open(out, "r+b") as fh:
            fh.seek(8)
            fh.write(struct.pack("<I", 0x80000002))
    shutil.rmtree(work)
    return out


def build_fat(
    out: Path,
    *,
    kind: str = "execute",
    min_os: str = "14.0",
    value: int = 0,
    const_bytes: int = 9000,
) -> Path:
    """A fat Mach-O with an arm64 and an arm64e slice."""
    a = build_macho(
        out.with_suffix(".arm64"), kind=kind, min_os=min_os, value=value, const_bytes=const_bytes
    )
    b = build_macho(
        out.with_suffix(".arm64e"), kind=kind, arch="arm64e", min_os=min_os, value=value + 1
    )
    _run(LIPO, "-create", str(a), str(b), "-output", str(out))
    a.unlink()
    b.unlink()
    return out


def fill_header(path: Path, *, leave: int = 8) -> None:
    """Add a padding load command so only ``leave`` bytes stay free after the load commands
    (too few for an LC_CODE_SIGNATURE when the binary has none)."""
    with open(path, "r+b") as fh:
        head = fh.read(32)
        ncmds, sizeofcmds = struct.unpack_from("<II", head, 16)
        data = fh.read()
    from appyard.signing.ios.macho import parse_slice

    with open(path, "rb") as fh:
        sl = parse_slice(fh, 0, path.stat().st_size, what=path.name)
    size = sl.header_room - leave
    size -= size % 8
    command = struct.pack("<II", 0x7FFFFF00, size) + b"\x00" * (size - 8)
    with open(path, "r+b") as fh:
        fh.seek(16)
        fh.write(struct.pack("<II", ncmds + 1, sizeofcmds + size))
        fh.seek(32 + sizeofcmds)
        fh.write(command)
    assert data


def add_encryption_info(path: Path, *, cryptid: int = 1) -> None:
    """Add an LC_ENCRYPTION_INFO_64 command (FairPlay marks App Store binaries so)."""
    with open(path, "r+b") as fh:
        head = fh.read(32)
        ncmds, sizeofcmds = struct.unpack_from("<II", head, 16)
        fh.seek(32 + sizeofcmds)
        fh.write(struct.pack("<IIIIII", 0x2C, 24, 16384, 16384, cryptid, 0))
        fh.seek(16)
        fh.write(struct.pack("<II", ncmds + 1, sizeofcmds + 24))


# --- IPAs --------------------------------------------------------------------------------------


def info_plist(bundle_id: str, executable: str, package: str = "APPL", **extra: Any) -> bytes:
    document = {
        "CFBundleIdentifier": bundle_id,
        "CFBundleExecutable": executable,
        "CFBundleName": executable,
        "CFBundlePackageType": package,
        "CFBundleShortVersionString": "1.0",
        "CFBundleVersion": "7",
        "MinimumOSVersion": "14.0",
        "CFBundleSupportedPlatforms": ["iPhoneOS"],
        **extra,
    }
    return plistlib.dumps(document)


@dataclass
class BuiltIpa:
    path: Path
    bundle_id: str
    app: str  # "Payload/Demo.app/"
    machos: list[str]
    files: dict[str, bytes] = field(repr=False)  # every non-Mach-O file, by zip name


def build_ipa(
    dest: Path,
    *,
    bundle_id: str = "com.example.demo",
    min_os: str = "14.0",
    fat: bool = True,
    framework: bool = True,
    dylib: bool = True,
    extension: bool = True,
    watch: bool = True,
    profile: bytes | None = None,
    resources: int = 20,
    big_resource: int = 0,
    adhoc: bool = True,
    exe_const_bytes: int = 9000,
) -> BuiltIpa:
    """An IPA built from real Mach-O files (see the module docstring)."""
    work = dest.parent / f".{dest.name}.parts"
    work.mkdir(parents=True, exist_ok=True)
    app = "Payload/Demo.app/"
    entries: dict[str, Path | bytes] = {}
    machos: list[str] = []

    def macho_entry(name: str, path: Path) -> None:
        entries[name] = path
        machos.append(name)

    exe = work / "Demo"
    if fat:
        build_fat(exe, min_os=min_os, const_bytes=exe_const_bytes)
    else:
        build_macho(exe, min_os=min_os, adhoc=adhoc, const_bytes=exe_const_bytes)
    macho_entry(f"{app}Demo", exe)
    entries[f"{app}Info.plist"] = info_plist(bundle_id, "Demo", MinimumOSVersion=min_os)
    entries[f"{app}PkgInfo"] = b"APPL????"
    for i in range(resources):
        entries[f"{app}assets/file{i:03d}.json"] = (f'{{"n": {i}}}' * (i + 1)).encode()
    entries[f"{app}Base.lproj/Main.storyboardc/Info.plist"] = plistlib.dumps({"UIStoryboard": 1})
    entries[f"{app}en.lproj/Localizable.strings"] = b'"hello" = "Hello";\n'
    if big_resource:
        entries[f"{app}assets/big.bin"] = os.urandom(big_resource)
    if profile is not None:
        entries[f"{app}embedded.mobileprovision"] = profile
    if framework:
        fw = f"{app}Frameworks/Kit.framework/"
        path = work / "Kit"
        if fat:
            build_fat(path, kind="dylib", min_os=min_os, value=5)
        else:
            build_macho(path, kind="dylib", min_os=min_os, value=5, adhoc=adhoc)
        macho_entry(f"{fw}Kit", path)
        entries[f"{fw}Info.plist"] = info_plist("com.example.demo.Kit", "Kit", "FMWK")
        entries[f"{fw}kit.bundle/strings.txt"] = b"framework resource\n"
    if dylib:
        macho_entry(
            f"{app}Frameworks/libswiftDemo.dylib",
            build_macho(
                work / "libswiftDemo.dylib", kind="dylib", min_os=min_os, value=9, adhoc=adhoc
            ),
        )
    if extension:
        ext = f"{app}PlugIns/Share.appex/"
        macho_entry(f"{ext}Share", build_macho(work / "Share", min_os=min_os, value=3, adhoc=adhoc))
        entries[f"{ext}Info.plist"] = info_plist(
            f"{bundle_id}.share",
            "Share",
            "XPC!",
            NSExtension={"NSExtensionPointIdentifier": "com.apple.share-services"},
        )
        entries[f"{ext}icon.txt"] = b"extension resource\n"
    if watch:
        wa = f"{app}Watch/Watch.app/"
        macho_entry(f"{wa}Watch", build_macho(work / "Watch", min_os=min_os, value=4, adhoc=adhoc))
        entries[f"{wa}Info.plist"] = info_plist(
            f"{bundle_id}.watchkitapp", "Watch", WKCompanionAppBundleIdentifier=bundle_id
        )
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 5, 1, 12, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = isinstance(content, Path)
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.create_system = 3
            data = content.read_bytes() if isinstance(content, Path) else content
            zf.writestr(info, data)
            if not executable:
                files[name] = data
    shutil.rmtree(work)
    return BuiltIpa(dest, bundle_id, app, machos, files)


def zip_entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}


def rezip(src: Path, dst: Path, *, change: dict[str, bytes | None]) -> Path:
    """A copy of ``src`` with entries replaced, added, or removed (``None``)."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as b:
        for info in a.infolist():
            if info.filename in change:
                data = change[info.filename]
                if data is not None:
                    b.writestr(info, data)
                continue
            b.writestr(info, a.read(info))
        names = set(a.namelist())
        for name, data in change.items():
            if name not in names and data is not None:
                b.writestr(name, data)
    return dst


def main(argv: list[str] | None = None) -> None:
    """``scripts/make-test-ipas OUTDIR``: the test IPAs, an identity and a profile on disk."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--big-mb", type=int, default=0, help="add a random resource this big")
    args = parser.parse_args(argv)
    out: Path = args.outdir
    out.mkdir(parents=True, exist_ok=True)
    identity = make_identity()
    (out / "dist.p12").write_bytes(identity.p12)
    (out / "App.mobileprovision").write_bytes(make_profile(identity))
    build_ipa(out / "demo.ipa", big_resource=args.big_mb * 1024 * 1024)
    build_ipa(out / "demo-ios10.ipa", min_os="10.0")
    build_ipa(
        out / "thin.ipa", fat=False, framework=False, dylib=False, extension=False, watch=False
    )
    print(
        f"wrote {out}: demo.ipa demo-ios10.ipa thin.ipa App.mobileprovision "
        f"dist.p12 (password {PASSWORD})"
    )


if __name__ == "__main__":
    main()
