"""Writes res/mipmap-mdpi/ic_launcher.png: a 48x48 RGBA launcher icon (a green disc),
with the Python standard library only. Run by scripts/make-test-artifacts."""

import struct
import sys
import zlib

w = h = 48
rows = []
for y in range(h):
    row = bytearray([0])  # filter type: none
    for x in range(w):
        inside = (x - 23.5) ** 2 + (y - 23.5) ** 2 <= 22**2
        row += bytes((0x3D, 0xDC, 0x84, 0xFF)) if inside else bytes((0, 0, 0, 0))
    rows.append(bytes(row))


def chunk(kind: bytes, data: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return struct.pack(">I", len(data)) + kind + data + crc


png = (
    b"\x89PNG\r\n\x1a\n"
    + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
    + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
    + chunk(b"IEND", b"")
)
with open(sys.argv[1], "wb") as out:
    out.write(png)
