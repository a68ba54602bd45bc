"""Hostile IPAs: each ends as InvalidArtifact with a reason a person can act on, quickly and
within bounded memory."""

from __future__ import annotations

import plistlib
import struct
import zipfile
from pathlib import Path

import pytest

from appyard.errors import ArtifactTooLarge, InvalidArtifact
from appyard.inspect.cgbi import PngError, normalize_png
from appyard.inspect.ipa import inspect_ipa
from appyard.inspect.plist import MAX_PLIST_BYTES, load_plist
from tests.inspect.conftest import bounded
from tests.inspect.test_ipa_factory import (
    gradient_rgba,
    info_plist,
    make_cgbi_png,
    make_ipa,
    make_profile,
    sign_cms,
)


def refused(path: Path) -> InvalidArtifact:
    with bounded(), pytest.raises(InvalidArtifact) as err:
        inspect_ipa(path)
    return err.value


# --- a small binary plist writer, so the tests can write what plistlib would not ---------------


def bplist(objects: list[bytes], top: int = 0, *, trailer: bytes | None = None) -> bytes:
    """A binary plist of pre-encoded objects (refs are one byte, offsets four)."""
    body = bytearray(b"bplist00")
    offsets = []
    for obj in objects:
        offsets.append(len(body))
        body += obj
    table = len(body)
    for off in offsets:
        body += struct.pack(">I", off)
    body += trailer or struct.pack(">6xBBQQQ", 4, 1, len(objects), top, table)
    return bytes(body)


def b_array(*refs: int) -> bytes:
    assert len(refs) < 15
    return bytes([0xA0 | len(refs), *refs])


def b_dict(*pairs: tuple[int, int]) -> bytes:
    assert len(pairs) < 15
    return bytes([0xD0 | len(pairs), *(k for k, _ in pairs), *(v for _, v in pairs)])


def b_str(text: str) -> bytes:
    raw = text.encode("ascii")
    assert len(raw) < 15
    return bytes([0x50 | len(raw)]) + raw


def b_int(value: int) -> bytes:
    return b"\x10" + bytes([value])


# --- not an IPA at all -------------------------------------------------------------------------


def test_text_is_not_an_ipa(tmp_path: Path) -> None:
    path = tmp_path / "not-an-ipa.ipa"
    path.write_bytes(b"this is text.\n")
    err = refused(path)
    assert err.details["reason"] == "not_a_zip"
    assert "not a readable zip" in err.message


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_a_truncated_ipa_is_refused(tmp_path: Path, keep: float) -> None:
    whole = make_ipa(tmp_path / "whole.ipa", profile=make_profile()).read_bytes()
    path = tmp_path / "cut.ipa"
    path.write_bytes(whole[: int(len(whole) * keep)])
    err = refused(path)
    assert err.details["reason"] == "not_a_zip"


def test_a_corrupted_info_plist_entry_is_refused(tmp_path: Path) -> None:
    data = bytearray(make_ipa(tmp_path / "a.ipa", compression=zipfile.ZIP_STORED).read_bytes())
    pos = data.find(b"bplist00")
    data[pos + 20] ^= 0xFF  # the CRC no longer matches
    path = tmp_path / "b.ipa"
    path.write_bytes(bytes(data))
    err = refused(path)
    assert "Info.plist" in err.message


def test_a_zip_bomb_info_plist_is_refused(tmp_path: Path) -> None:
    # under the Info.plist size limit, but 3 MB out of a few KB: the ratio bound stops it
    info = plistlib.dumps(info_plist(Padding="A" * (3 * 1024 * 1024)), fmt=plistlib.FMT_XML)
    path = make_ipa(tmp_path / "bomb.ipa", info_bytes=info)
    assert path.stat().st_size < 64 * 1024
    err = refused(path)
    assert isinstance(err, ArtifactTooLarge)
    assert err.details["reason"] == "compression_ratio"


def test_a_huge_info_plist_is_refused(tmp_path: Path) -> None:
    info = plistlib.dumps(info_plist(Padding="A" * MAX_PLIST_BYTES), fmt=plistlib.FMT_XML)
    path = make_ipa(tmp_path / "huge.ipa", info_bytes=info, compression=zipfile.ZIP_STORED)
    err = refused(path)
    assert isinstance(err, ArtifactTooLarge)
    assert err.details["reason"] == "entry_too_large"
    assert "Info.plist" in err.message


# --- plists that are not what they claim -------------------------------------------------------


def test_deeply_nested_xml_plist_is_refused(tmp_path: Path) -> None:
    depth = 200_000
    xml = (
        b'<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict>'
        b"<key>CFBundleIdentifier</key><string>com.example.app</string><key>Deep</key>"
        + b"<array>" * depth
        + b"</array>" * depth
        + b"</dict></plist>"
    )
    path = make_ipa(tmp_path / "deep.ipa", info_bytes=xml, compression=zipfile.ZIP_STORED)
    err = refused(path)
    assert err.details["reason"] == "plist_too_deep"
    assert "nested more than" in err.message


def test_deeply_nested_binary_plist_is_refused(tmp_path: Path) -> None:
    depth = 5000
    # object i is an array holding object i+1; refs need two bytes here
    objects = [bytes([0xA1]) + struct.pack(">H", i + 1) for i in range(depth)] + [b"\x10\x01"]
    body = bytearray(b"bplist00")
    offsets = []
    for obj in objects:
        offsets.append(len(body))
        body += obj
    table = len(body)
    body += b"".join(struct.pack(">I", o) for o in offsets)
    body += struct.pack(">6xBBQQQ", 4, 2, len(objects), 0, table)
    err = refused(make_ipa(tmp_path / "deep.ipa", info_bytes=bytes(body)))
    assert err.details["reason"] == "plist_too_deep"


def test_a_cyclic_binary_plist_is_refused(tmp_path: Path) -> None:
    # 0: dict {1: 2}, 1: "CFBundleIdentifier", 2: array [2] (contains itself)
    data = bplist([b_dict((1, 2)), b_str("CFBundleId"), b_array(2)])
    err = refused(make_ipa(tmp_path / "cycle.ipa", info_bytes=data))
    assert err.details["reason"] == "bad_plist"
    assert "contains itself" in err.message


def test_an_exponentially_shared_binary_plist_is_refused(tmp_path: Path) -> None:
    # object i = [i+1, i+1, i+1, i+1]: 4**40 leaves when expanded, 42 objects on disk
    levels = 40
    objects = [b_dict((levels + 1, 1))]
    objects += [b_array(i + 2, i + 2, i + 2, i + 2) for i in range(levels - 1)]
    objects += [b_int(1), b_str("Bomb")]
    data = bplist(objects)
    err = refused(make_ipa(tmp_path / "laughs.ipa", info_bytes=data))
    assert err.details["reason"] == "plist_too_large"


@pytest.mark.parametrize(
    "trailer",
    [
        struct.pack(">6xBBQQQ", 4, 1, 2**62, 0, 8),  # absurd object count
        struct.pack(">6xBBQQQ", 4, 1, 3, 7, 8),  # top object out of range
        struct.pack(">6xBBQQQ", 4, 1, 3, 0, 2**60),  # offset table past the end
        struct.pack(">6xBBQQQ", 3, 1, 3, 0, 8),  # odd offset size
        struct.pack(">6xBBQQQ", 0, 0, 3, 0, 8),
    ],
)
def test_a_binary_plist_with_a_lying_trailer_is_refused(tmp_path: Path, trailer: bytes) -> None:
    data = bplist([b_dict((1, 2)), b_str("a"), b_str("b")], trailer=trailer)
    err = refused(make_ipa(tmp_path / "liar.ipa", info_bytes=data))
    assert err.details["reason"] == "bad_plist"
    assert "trailer" in err.message


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"bplist00",
        b"<?xml version='1.0'?><plist><dict><key>a</key>",
        b'<?xml version="1.0"?><!DOCTYPE plist [<!ENTITY a "aaaa">]><plist><string>&a;</string>'
        b"</plist>",
        b"<plist><integer>" + b"9" * 100_000 + b"</integer></plist>",
        b"<plist><date>yesterday</date></plist>",
        b"<plist><data>!!!</data></plist>",
        b"GIF89a",
    ],
    ids=["empty", "magic-only", "unclosed", "entity", "long-int", "bad-date", "bad-data", "gif"],
)
def test_garbage_info_plists_are_refused(tmp_path: Path, data: bytes) -> None:
    err = refused(make_ipa(tmp_path / "g.ipa", info_bytes=data))
    assert err.details["reason"] == "bad_plist"
    assert "Payload/Example.app/Info.plist" in err.message


def test_load_plist_refuses_more_than_its_bound() -> None:
    with pytest.raises(InvalidArtifact, match="at most"):
        load_plist(b"<plist>" + b" " * MAX_PLIST_BYTES + b"</plist>", what="x")


# --- profiles that are not what they claim -----------------------------------------------------


def test_a_huge_profile_is_refused(tmp_path: Path) -> None:
    profile = make_profile(Padding="A" * (3 * 1024 * 1024))
    path = make_ipa(tmp_path / "p.ipa", profile=profile, compression=zipfile.ZIP_STORED)
    err = refused(path)
    assert isinstance(err, ArtifactTooLarge)
    assert "embedded.mobileprovision" in err.message


def test_a_profile_with_a_deep_plist_is_refused(tmp_path: Path) -> None:
    deep = b"<plist>" + b"<array>" * 10_000 + b"</array>" * 10_000 + b"</plist>"
    err = refused(make_ipa(tmp_path / "p.ipa", profile=sign_cms(deep)))
    assert err.details["reason"] == "plist_too_deep"
    assert "the profile inside" in err.message


def test_a_random_der_blob_is_refused(tmp_path: Path) -> None:
    blob = b"\x30\x80" + b"\x30\x80" * 5000 + b"\x00\x00" * 5001  # indefinite-length nesting
    err = refused(make_ipa(tmp_path / "p.ipa", profile=blob))
    assert err.details["reason"] == "bad_profile"


# --- icons -------------------------------------------------------------------------------------


def _cgbi_with_ihdr(width: int, height: int) -> bytes:
    png = make_cgbi_png(2, 2, gradient_rgba(2, 2))
    pos = png.find(b"IHDR") + 4
    return png[:pos] + struct.pack(">II", width, height) + png[pos + 8 :]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"not a png", "no PNG signature"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", "truncated"),
        (_cgbi_with_ihdr(100_000, 100_000), "pixels are read"),
        (_cgbi_with_ihdr(3, 3), "header announces"),  # fewer bytes than the header says
        (_cgbi_with_ihdr(1, 1), "header announces"),  # more bytes than the header says
    ],
    ids=["not-png", "truncated", "huge-dimensions", "short-data", "long-data"],
)
def test_broken_icons_raise_png_error(data: bytes, words: str) -> None:
    with bounded(), pytest.raises(PngError, match=words):
        normalize_png(data)


def test_an_icon_inflating_past_its_header_stops_at_the_announced_size() -> None:
    png = _cgbi_with_ihdr(1, 1)
    with bounded(), pytest.raises(PngError, match=r"\+ bytes"):
        normalize_png(png)
