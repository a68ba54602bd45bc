"""String pools decode as Android does: aapt2 writes a character outside the Basic Multilingual
Plane (an emoji in an app's label) as a UTF-16 surrogate pair, each half encoded in UTF-8 on
its own ("modified UTF-8"); ``aapt dump badging`` prints the character, so must appyard."""

from __future__ import annotations

import struct

import pytest

from appyard.inspect.android_resources import StringPool, modified_utf8, read_chunk


def cesu8(text: str) -> bytes:
    """``text`` as aapt2 writes it: characters above U+FFFF as two encoded surrogates."""
    halves = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    out = b""
    for ch in text:
        if ord(ch) > 0xFFFF:
            code = ord(ch) - 0x10000
            pair = chr(0xD800 + (code >> 10)) + chr(0xDC00 + (code & 0x3FF))
            out += pair.encode("utf-8", "surrogatepass")
        else:
            out += ch.encode("utf-8")
    assert halves == text
    return out


def utf8_pool(raw_strings: list[tuple[int, bytes]]) -> bytes:
    """A UTF-8 ResStringPool chunk of (UTF-16 length, encoded bytes) entries."""
    body, offsets = b"", []
    for units, encoded in raw_strings:
        offsets.append(len(body))
        body += bytes([units]) + bytes([len(encoded)]) + encoded + b"\x00"
    while len(body) % 4:
        body += b"\x00"
    header = 28
    start = header + 4 * len(raw_strings)
    size = start + len(body)
    return (
        struct.pack("<HHIIIIII", 0x0001, header, size, len(raw_strings), 0, 0x100, start, 0)
        + b"".join(struct.pack("<I", o) for o in offsets)
        + body
    )


@pytest.mark.parametrize("label", ["Rocket \U0001f680", "\U0001f44d\U0001f3fd ok", "plain", "é"])
def test_labels_outside_the_bmp_decode_to_their_characters(label: str) -> None:
    encoded = cesu8(label)
    units = len(label.encode("utf-16-le")) // 2
    data = utf8_pool([(units, encoded)])
    pool = StringPool(data, read_chunk(data, 0, len(data), 8, "test"))
    assert pool.get(0) == label
    assert "\ufffd" not in (pool.get(0) or "")


def test_standard_utf8_and_broken_bytes_still_decode() -> None:
    assert modified_utf8("\U0001f680".encode()) == "\U0001f680"  # 4-byte UTF-8 too
    assert modified_utf8(b"bad \xff byte") == "bad \ufffd byte"
    lone = "\ud83d".encode("utf-8", "surrogatepass")  # half a pair: replaced, never raised
    assert modified_utf8(b"x" + lone) == "x\ufffd"
