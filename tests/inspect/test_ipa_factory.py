"""Small IPAs built in the tests themselves, so the iOS parser is tested without ../shared.

``make_ipa`` writes a zip with ``Payload/<Name>.app/Info.plist`` (XML or binary), optional
icons, executable, ``_CodeSignature/CodeResources`` and an ``embedded.mobileprovision`` that
``make_profile`` creates as a real CMS SignedData (cryptography's PKCS#7 builder) over a
plist, signed by a self-made certificate. ``make_cgbi_png`` writes Apple's CgBI PNG form
(premultiplied BGRA, raw deflate, CgBI chunk) with every scanline filter type; ``decode_png``
is an independent reader of standard PNGs used to check the conversion.

The module also tests its own output against independent tools where they are present.
"""

from __future__ import annotations

import plistlib
import shutil
import struct
import subprocess
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MACHO_ARM64 = struct.pack("<IiII", 0xFEEDFACF, 0x0100000C, 0, 2) + b"\x00" * 64


@dataclass(frozen=True)
class Signer:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


_SIGNERS: dict[tuple[str, str], Signer] = {}


def make_signer(
    cn: str = "iPhone Developer: Appyard Test (ABCDE12345)",
    *,
    ec_key: bool = False,
    not_after: datetime = NOW + timedelta(days=365),
) -> Signer:
    """A self-signed certificate and its key (cached per name: RSA keys are slow)."""
    cache_key = (cn, f"{ec_key}{not_after.isoformat()}")
    if cache_key in _SIGNERS:
        return _SIGNERS[cache_key]
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        ec.generate_private_key(ec.SECP256R1())
        if ec_key
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "ABCDE12345"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Appyard Test Team"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x1234)
        .not_valid_before(not_after - timedelta(days=730))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    signer = Signer(cert, key)
    _SIGNERS[cache_key] = signer
    return signer


def profile_plist(
    *,
    app_id: str = "ABCDE12345.com.example.app",
    team: str = "ABCDE12345",
    get_task_allow: bool = False,
    devices: tuple[str, ...] = (),
    all_devices: bool = False,
    created: datetime = NOW - timedelta(days=10),
    expires: datetime = NOW + timedelta(days=355),
    developer_certs: tuple[bytes, ...] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    entitlements: dict[str, Any] = {
        "application-identifier": app_id,
        "com.apple.developer.team-identifier": team,
        "keychain-access-groups": [f"{team}.*"],
    }
    if get_task_allow:
        entitlements["get-task-allow"] = True
    plist: dict[str, Any] = {
        "AppIDName": "Example App",
        "ApplicationIdentifierPrefix": [team],
        "CreationDate": created.replace(tzinfo=None),
        "ExpirationDate": expires.replace(tzinfo=None),
        "Entitlements": entitlements,
        "Name": "Example App Profile",
        "Platform": ["iOS"],
        "TeamIdentifier": [team],
        "TeamName": "Appyard Test Team",
        "TimeToLive": 365,
        "UUID": "0b4a7c2e-1d2f-4a3b-9c8d-7e6f5a4b3c2d",
        "Version": 1,
        "DeveloperCertificates": list(
            developer_certs if developer_certs is not None else (make_signer().der,)
        ),
    }
    if devices:
        plist["ProvisionedDevices"] = list(devices)
    if all_devices:
        plist["ProvisionsAllDevices"] = True
    plist.update(extra)
    return plist


def sign_cms(content: bytes, signer: Signer | None = None, *, detached: bool = False) -> bytes:
    """A DER CMS SignedData over ``content`` (attached unless ``detached``)."""
    signer = signer or make_signer()
    options = [pkcs7.PKCS7Options.DetachedSignature] if detached else []
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(content)
        .add_signer(signer.cert, signer.key, hashes.SHA256())
        .sign(serialization.Encoding.DER, options)
    )


def make_profile(signer: Signer | None = None, **kwargs: Any) -> bytes:
    """An embedded.mobileprovision: CMS SignedData over an XML profile plist."""
    return sign_cms(plistlib.dumps(profile_plist(**kwargs), fmt=plistlib.FMT_XML), signer)


def info_plist(**overrides: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "CFBundleIdentifier": "com.example.app",
        "CFBundleShortVersionString": "2.3.1",
        "CFBundleVersion": "42",
        "CFBundleName": "Example",
        "CFBundleDisplayName": "Example App",
        "CFBundleExecutable": "Example",
        "CFBundlePackageType": "APPL",
        "CFBundleSupportedPlatforms": ["iPhoneOS"],
        "DTPlatformName": "iphoneos",
        "DTSDKName": "iphoneos17.0",
        "MinimumOSVersion": "15.0",
        "UIDeviceFamily": [1, 2],
        "CFBundleIcons": {
            "CFBundlePrimaryIcon": {
                "CFBundleIconFiles": ["AppIcon60x60"],
                "CFBundleIconName": "AppIcon",
            }
        },
    }
    for key, value in overrides.items():
        if value is None:
            info.pop(key, None)
        else:
            info[key] = value
    return info


def make_ipa(
    path: Path,
    *,
    info: dict[str, Any] | None = None,
    info_bytes: bytes | None = None,
    binary_plist: bool = True,
    app: str = "Example.app",
    prefix: str = "",
    profile: bytes | None = None,
    code_signature: bool = True,
    executable: bytes | None = MACHO_ARM64,
    icons: dict[str, bytes] | None = None,
    extra: dict[str, bytes] | None = None,
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """Write an IPA; ``info_bytes`` replaces the Info.plist bytes verbatim."""
    info = info if info is not None else info_plist()
    app_dir = f"{prefix}Payload/{app}/"
    if info_bytes is None:
        info_bytes = plistlib.dumps(
            info, fmt=plistlib.FMT_BINARY if binary_plist else plistlib.FMT_XML
        )
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr(f"{prefix}Payload/", b"")
        zf.writestr(app_dir, b"")
        zf.writestr(f"{app_dir}Info.plist", info_bytes)
        exe = info.get("CFBundleExecutable")
        if executable is not None and isinstance(exe, str):
            zf.writestr(f"{app_dir}{exe}", executable)
        if code_signature:
            zf.writestr(
                f"{app_dir}_CodeSignature/CodeResources",
                plistlib.dumps({"files": {}, "files2": {}}),
            )
        if profile is not None:
            zf.writestr(f"{app_dir}embedded.mobileprovision", profile)
        for name, data in (icons or {}).items():
            zf.writestr(f"{app_dir}{name}", data)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


# --- PNG: CgBI writer, standard reader -----------------------------------------------------------


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(ctype + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filter_rows(raw: bytes, width_bytes: int, bpp: int, filters: tuple[int, ...]) -> bytes:
    out = bytearray()
    prev = bytes(width_bytes)
    rows = len(raw) // width_bytes
    for r in range(rows):
        line = raw[r * width_bytes : (r + 1) * width_bytes]
        ftype = filters[r % len(filters)]
        enc = bytearray()
        for i, x in enumerate(line):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            pred = (0, a, b, (a + b) >> 1, _paeth(a, b, c))[ftype]
            enc.append((x - pred) & 0xFF)
        out.append(ftype)
        out += enc
        prev = line
    return bytes(out)


def make_png(width: int, height: int, rgba: bytes) -> bytes:
    """A standard 8-bit RGBA PNG."""
    raw = _filter_rows(rgba, width * 4, 4, (0,))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def premultiply_bgra(rgba: bytes) -> bytes:
    out = bytearray()
    for i in range(0, len(rgba), 4):
        r, g, b, a = rgba[i : i + 4]
        out += bytes(((b * a + 127) // 255, (g * a + 127) // 255, (r * a + 127) // 255, a))
    return bytes(out)


ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def _adam7_pass(
    pixels: bytes, width: int, height: int, spec: tuple[int, int, int, int]
) -> tuple[int, bytes]:
    xs, ys, xstep, ystep = spec
    out = bytearray()
    pass_width = len(range(xs, width, xstep))
    for y in range(ys, height, ystep):
        for x in range(xs, width, xstep):
            out += pixels[(y * width + x) * 4 : (y * width + x) * 4 + 4]
    return pass_width, bytes(out)


def make_cgbi_png(
    width: int,
    height: int,
    rgba: bytes,
    *,
    filters: tuple[int, ...] = (0, 1, 2, 3, 4),
    interlace: bool = False,
) -> bytes:
    """Apple's CgBI form of an RGBA image: premultiplied BGRA, raw deflate, CgBI chunk."""
    pixels = premultiply_bgra(rgba)
    if interlace:
        raw = b""
        for spec in ADAM7:
            pass_width, sub = _adam7_pass(pixels, width, height, spec)
            if sub:
                raw += _filter_rows(sub, pass_width * 4, 4, filters)
    else:
        raw = _filter_rows(pixels, width * 4, 4, filters)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    idat = deflater.compress(raw) + deflater.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, int(interlace))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"CgBI", b"\x50\x00\x20\x02")
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat[: len(idat) // 2])
        + _png_chunk(b"IDAT", idat[len(idat) // 2 :])
        + _png_chunk(b"IEND", b"")
    )


def _unfilter_rows(raw: bytes, pos: int, stride: int, rows: int) -> tuple[bytes, int]:
    out = bytearray()
    prev = bytearray(stride)
    for _ in range(rows):
        ftype = raw[pos]
        line = bytearray(raw[pos + 1 : pos + 1 + stride])
        pos += 1 + stride
        for i in range(stride):
            a = line[i - 4] if i >= 4 else 0
            b = prev[i]
            c = prev[i - 4] if i >= 4 else 0
            line[i] = (line[i] + (0, a, b, (a + b) >> 1, _paeth(a, b, c))[ftype]) & 0xFF
        out += line
        prev = line
    return bytes(out), pos


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """An independent reader of standard 8-bit RGBA PNGs, Adam7 included (CRCs checked)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(ctype + body) & 0xFFFFFFFF, ctype
        assert ctype != b"CgBI"
        if ctype == b"IHDR":
            ihdr = body
        elif ctype == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    assert (depth, color) == (8, 6)
    raw = zlib.decompress(idat)  # a zlib stream, header and Adler-32 included
    if not interlace:
        pixels, _ = _unfilter_rows(raw, 0, width * 4, height)
        return width, height, pixels
    out = bytearray(width * height * 4)
    pos = 0
    for xs, ys, xstep, ystep in ADAM7:
        xs_list, ys_list = range(xs, width, xstep), range(ys, height, ystep)
        if not xs_list or not ys_list:
            continue
        sub, pos = _unfilter_rows(raw, pos, len(xs_list) * 4, len(ys_list))
        k = 0
        for y in ys_list:
            for x in xs_list:
                out[(y * width + x) * 4 : (y * width + x) * 4 + 4] = sub[k : k + 4]
                k += 4
    return width, height, bytes(out)


def gradient_rgba(width: int, height: int) -> bytes:
    """An image with opaque, transparent and half-transparent pixels."""
    out = bytearray()
    for y in range(height):
        for x in range(width):
            alpha = 255 if y < height // 2 else (0 if x % 3 == 0 else 40 + (x * 7 + y) % 200)
            out += bytes(((x * 37) % 256, (y * 53) % 256, (x * y) % 256, alpha))
    return bytes(out)


# --- the factory checks itself against independent tools ----------------------------------------


def test_made_profile_verifies_with_openssl(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    profile = tmp_path / "embedded.mobileprovision"
    profile.write_bytes(make_profile())
    out = subprocess.run(
        ["openssl", "smime", "-verify", "-noverify", "-inform", "der", "-in", str(profile)],
        capture_output=True,
        check=True,
    )
    assert plistlib.loads(out.stdout)["TeamIdentifier"] == ["ABCDE12345"]


def test_made_png_is_read_by_the_independent_reader() -> None:
    rgba = gradient_rgba(9, 5)
    assert decode_png(make_png(9, 5, rgba)) == (9, 5, rgba)


def test_made_ipa_is_a_zip_with_the_app_inside(tmp_path: Path) -> None:
    path = make_ipa(tmp_path / "a.ipa", profile=make_profile())
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        assert "Payload/Example.app/embedded.mobileprovision" in zf.namelist()
