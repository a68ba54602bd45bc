"""PNG icons from an iOS bundle, turned from Apple's CgBI form into a normal PNG.

Xcode's ``pngcrush -iphone`` step rewrites every PNG in an app bundle into "CgBI" form, which
only Apple's decoders read: a ``CgBI`` chunk before ``IHDR``, ``IDAT`` holding a *raw* deflate
stream (no zlib header or Adler-32), and pixels stored as premultiplied BGRA instead of
straight RGBA. :func:`normalize_png` undoes all three and writes a standard PNG with
:mod:`zlib`; a PNG that is already standard is checked and returned unchanged.

Bounds: at most ``MAX_PNG_BYTES`` of input, at most ``MAX_PIXELS`` pixels, at most
``MAX_CHUNKS`` chunks; the deflate stream is inflated with ``max_length`` set to the exact
size the header announces, so a small icon cannot expand into a large buffer. Anything
malformed or unsupported raises :class:`PngError` with a reason a person can read; the IPA
inspector records it and carries on without an icon (a broken icon is not a broken app).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PNG_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 512 * 512
MAX_CHUNKS = 4096

# Adam7 passes: (x start, y start, x step, y step)
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


class PngError(Exception):
    """The icon is not a PNG appyard can read."""


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    color_type: int
    interlace: int
    cgbi: bool  # Apple's CgBI form (premultiplied BGRA, raw deflate)


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if len(data) > MAX_PNG_BYTES:
        raise PngError(f"the icon is {len(data)} bytes; at most {MAX_PNG_BYTES} are read")
    if not data.startswith(PNG_SIGNATURE):
        raise PngError("the icon is not a PNG file (no PNG signature)")
    chunks: list[tuple[bytes, bytes]] = []
    pos = len(PNG_SIGNATURE)
    while pos < len(data):
        if len(chunks) >= MAX_CHUNKS:
            raise PngError(f"the icon has more than {MAX_CHUNKS} chunks")
        if pos + 12 > len(data):
            raise PngError("the icon is truncated inside a chunk header")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        end = pos + 8 + length
        if end + 4 > len(data):
            raise PngError(f"the icon's {ctype!r} chunk runs past the end of the file")
        chunks.append((ctype, data[pos + 8 : end]))
        pos = end + 4  # the CRC is not checked: CgBI writers do not always keep it right
        if ctype == b"IEND":
            break
    return chunks


def _header(chunks: list[tuple[bytes, bytes]]) -> PngHeader:
    cgbi = bool(chunks) and chunks[0][0] == b"CgBI"
    ihdr = [body for ctype, body in chunks if ctype == b"IHDR"]
    if len(ihdr) != 1 or len(ihdr[0]) != 13:
        raise PngError("the icon has no valid IHDR chunk")
    width, height, bit_depth, color_type, _comp, _filter, interlace = struct.unpack(
        ">IIBBBBB", ihdr[0]
    )
    if width == 0 or height == 0:
        raise PngError("the icon has zero width or height")
    if width * height > MAX_PIXELS:
        raise PngError(f"the icon is {width}x{height}; at most {MAX_PIXELS} pixels are read")
    if interlace not in (0, 1):
        raise PngError(f"the icon uses unknown interlace method {interlace}")
    return PngHeader(width, height, bit_depth, color_type, interlace, cgbi)


def png_header(data: bytes) -> PngHeader:
    """Width, height and form of a (standard or CgBI) PNG."""
    return _header(_chunks(data))


def _passes(header: PngHeader) -> list[tuple[int, int]]:
    """(width, height) in pixels of each sub-image stored in IDAT."""
    if header.interlace == 0:
        return [(header.width, header.height)]
    sizes = []
    for xs, ys, xstep, ystep in _ADAM7:
        w = (header.width - xs + xstep - 1) // xstep if header.width > xs else 0
        h = (header.height - ys + ystep - 1) // ystep if header.height > ys else 0
        if w and h:
            sizes.append((w, h))
    return sizes


def _add_bytes(a: bytes | bytearray, b: bytes | bytearray) -> bytes:
    """Bytewise (a + b) mod 256 of two equal-length strings, all bytes at once (SWAR)."""
    n = len(a)
    x, y = int.from_bytes(a, "big"), int.from_bytes(b, "big")
    low7 = int.from_bytes(b"\x7f" * n, "big")
    high = int.from_bytes(b"\x80" * n, "big")
    return (((x & low7) + (y & low7)) ^ ((x ^ y) & high)).to_bytes(n, "big")


def _unfilter(data: bytes, pos: int, width_bytes: int, rows: int, bpp: int) -> bytearray:
    """Undo the PNG scanline filters of one (sub-)image starting at ``pos``."""
    out = bytearray()
    prev = bytearray(width_bytes)
    for _ in range(rows):
        ftype = data[pos]
        line = bytearray(data[pos + 1 : pos + 1 + width_bytes])
        pos += 1 + width_bytes
        if ftype == 1:
            for i in range(bpp, width_bytes):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:
            line = bytearray(_add_bytes(line, prev))
        elif ftype == 3:
            for i in range(bpp):
                line[i] = (line[i] + (prev[i] >> 1)) & 0xFF
            for i in range(bpp, width_bytes):
                line[i] = (line[i] + ((line[i - bpp] + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(bpp):
                line[i] = (line[i] + prev[i]) & 0xFF
            for i in range(bpp, width_bytes):
                a = line[i - bpp]
                b = prev[i]
                c = prev[i - bpp]
                pa = b - c if b > c else c - b  # |p - a| with p = a + b - c
                pb = a - c if a > c else c - a  # |p - b|
                pc = a + b - c - c
                pc = pc if pc >= 0 else -pc  # |p - c|
                if pa <= pb and pa <= pc:
                    pred = a
                elif pb <= pc:
                    pred = b
                else:
                    pred = c
                line[i] = (line[i] + pred) & 0xFF
        elif ftype != 0:
            raise PngError(f"the icon uses unknown scanline filter {ftype}")
        out += line
        prev = line
    return out


def _unpremultiply_table(alpha: int) -> bytes:
    half = alpha // 2
    return bytes(min(255, (c * 255 + half) // alpha) for c in range(256))


# _UNPREMULTIPLY[a] maps a premultiplied channel value to the straight one (a = 1..254)
_UNPREMULTIPLY = [b""] + [_unpremultiply_table(a) for a in range(1, 255)]


def _bgra_premultiplied_to_rgba(pixels: bytearray) -> bytearray:
    out = bytearray(pixels)
    out[0::4] = pixels[2::4]
    out[2::4] = pixels[0::4]
    tables = _UNPREMULTIPLY
    for index, alpha in enumerate(pixels[3::4]):
        if alpha == 255:
            continue
        base = index * 4
        if alpha == 0:
            out[base : base + 3] = b"\x00\x00\x00"
        else:
            out[base : base + 3] = out[base : base + 3].translate(tables[alpha])
    return out


def _bgr_to_rgb(pixels: bytearray) -> bytearray:
    out = bytearray(pixels)
    out[0::3] = pixels[2::3]
    out[2::3] = pixels[0::3]
    return out


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body))
        + ctype
        + body
        + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)
    )


def _convert_cgbi(chunks: list[tuple[bytes, bytes]], header: PngHeader) -> bytes:
    if header.bit_depth != 8 or header.color_type not in (2, 6):
        raise PngError(
            f"the CgBI icon has bit depth {header.bit_depth} and color type "
            f"{header.color_type}; only 8-bit RGB and RGBA are supported"
        )
    bpp = 4 if header.color_type == 6 else 3
    passes = _passes(header)
    expected = sum(h * (1 + w * bpp) for w, h in passes)
    compressed = b"".join(body for ctype, body in chunks if ctype == b"IDAT")
    if not compressed:
        raise PngError("the icon has no image data (IDAT)")
    inflater = zlib.decompressobj(-15)
    try:
        raw = inflater.decompress(compressed, expected + 1)
    except zlib.error as exc:
        raise PngError(f"the icon's image data is not a deflate stream ({exc})") from None
    if len(raw) != expected:
        raise PngError(
            f"the icon's image data holds {len(raw)}{'+' if len(raw) > expected else ''} "
            f"bytes; its header announces {expected}"
        )
    out_raw = bytearray()
    pos = 0
    for w, h in passes:
        width_bytes = w * bpp
        pixels = _unfilter(raw, pos, width_bytes, h, bpp)
        pos += h * (1 + width_bytes)
        pixels = _bgra_premultiplied_to_rgba(pixels) if bpp == 4 else _bgr_to_rgb(pixels)
        for row in range(h):
            out_raw += b"\x00"
            out_raw += pixels[row * width_bytes : (row + 1) * width_bytes]
    ihdr = struct.pack(
        ">IIBBBBB", header.width, header.height, 8, header.color_type, 0, 0, header.interlace
    )
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(bytes(out_raw), 6))
        + _chunk(b"IEND", b"")
    )


def normalize_png(data: bytes) -> tuple[bytes, PngHeader]:
    """A standard PNG for ``data`` (converted when it is CgBI) and the original's header.

    Ancillary chunks of a CgBI file (colour profile, text) are dropped; a standard PNG is
    returned byte for byte.
    """
    chunks = _chunks(data)
    header = _header(chunks)
    if not header.cgbi:
        if not any(ctype == b"IDAT" for ctype, _ in chunks):
            raise PngError("the icon has no image data (IDAT)")
        return data, header
    return _convert_cgbi(chunks, header), header
