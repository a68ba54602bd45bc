"""Android resources, shared by the APK (binary) and AAB (protocol buffer) readers.

This module holds what both formats have in common:

* :class:`ResValue`, a typed value (Android's ``Res_value``): a reference, a string, an
  integer, a boolean...;
* :class:`Config`, a resource configuration (Android's ``ResTable_config``) with Android's own
  ``match`` and ``isBetterThan`` rules (ported from ``libandroidfw/ResourceTypes.cpp``), so
  that a label or an icon resolves to the value ``aapt`` (and a device) would pick;
* :class:`ResourceTable`, the lookups the manifest reader needs (``values(res_id)``), with
  reference resolution, implemented by :mod:`appyard.inspect.arsc` (``resources.arsc``) and
  :mod:`appyard.inspect.proto` (``resources.pb``);
* :class:`StringPool`, the binary string pool shared by binary XML and ``resources.arsc``.

Every parser here raises :class:`MalformedResource` (a ``ValueError``) on hostile or broken
input; :mod:`appyard.inspect.apk` and :mod:`appyard.inspect.aab` turn it into
:class:`appyard.errors.InvalidArtifact` naming the entry.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

# Res_value data types (ResourceTypes.h)
TYPE_NULL = 0x00
TYPE_REFERENCE = 0x01
TYPE_ATTRIBUTE = 0x02
TYPE_STRING = 0x03
TYPE_FLOAT = 0x04
TYPE_DIMENSION = 0x05
TYPE_FRACTION = 0x06
TYPE_DYNAMIC_REFERENCE = 0x07
TYPE_DYNAMIC_ATTRIBUTE = 0x08
TYPE_INT_DEC = 0x10
TYPE_INT_HEX = 0x11
TYPE_INT_BOOLEAN = 0x12
TYPE_FIRST_INT = 0x10
TYPE_LAST_INT = 0x1F

DENSITY_MEDIUM = 160
DENSITY_ANY = 0xFFFE
DENSITY_NONE = 0xFFFF

MAX_REFERENCE_HOPS = 16
MAX_STRING_CHARS = 1 << 20  # one string longer than this is refused


class MalformedResource(ValueError):
    """Broken or hostile binary resource data; the message says what is wrong."""


# --- values -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResValue:
    """A typed resource value. ``string`` is set for TYPE_STRING values (None if unreadable)."""

    type: int
    data: int
    string: str | None = None

    @property
    def is_reference(self) -> bool:
        return self.type in (TYPE_REFERENCE, TYPE_DYNAMIC_REFERENCE) and self.data != 0

    @property
    def is_int(self) -> bool:
        return TYPE_FIRST_INT <= self.type <= TYPE_LAST_INT

    def as_int(self) -> int | None:
        """The value as a signed 32-bit integer (integers and booleans), else None."""
        if not self.is_int:
            return None
        return self.data - (1 << 32) if self.data & 0x80000000 else self.data

    def as_bool(self) -> bool | None:
        if self.is_int:
            return self.data != 0
        if self.type == TYPE_STRING and self.string is not None:
            text = self.string.strip().lower()
            if text in ("true", "false"):
                return text == "true"
        return None

    def coerce_to_string(self) -> str | None:
        """Android's ``TypedValue.coerceToString`` for the types a manifest carries."""
        if self.type == TYPE_STRING:
            return self.string
        if self.type == TYPE_INT_BOOLEAN:
            return "true" if self.data else "false"
        if self.type == TYPE_INT_HEX:
            return f"0x{self.data:08x}"
        if self.is_int:
            return str(self.as_int())
        if self.type == TYPE_FLOAT:
            return repr(struct.unpack("<f", struct.pack("<I", self.data))[0])
        if self.type in (TYPE_REFERENCE, TYPE_DYNAMIC_REFERENCE):
            return f"@0x{self.data:08x}"
        if self.type in (TYPE_ATTRIBUTE, TYPE_DYNAMIC_ATTRIBUTE):
            return f"?0x{self.data:08x}"
        return None


def bool_value(value: bool) -> ResValue:
    return ResValue(TYPE_INT_BOOLEAN, 0xFFFFFFFF if value else 0)


# --- configurations ---------------------------------------------------------------------------

MASK_SCREENSIZE = 0x0F
SCREENSIZE_NORMAL = 0x02
MASK_SCREENLONG = 0x30
MASK_LAYOUTDIR = 0xC0
MASK_UI_MODE_TYPE = 0x0F
MASK_UI_MODE_NIGHT = 0x30
MASK_KEYSHIDDEN = 0x03
KEYSHIDDEN_NO = 1
KEYSHIDDEN_SOFT = 3
MASK_NAVHIDDEN = 0x0C
ORIENTATION_PORT = 1

_CONFIG_FIELDS = struct.Struct("<HH2s2sBBHBBBxHHHHBBHHH4s8s")


def _unpack_code(raw: bytes, base: str) -> str:
    """ResTable_config::unpackLanguageOrRegion: 2 ASCII chars or a packed 3-letter code."""
    if len(raw) != 2 or raw == b"\x00\x00":
        return ""
    if raw[0] & 0x80:
        first = raw[1] & 0x1F
        second = ((raw[1] & 0xE0) >> 5) + ((raw[0] & 0x03) << 3)
        third = (raw[0] & 0x7C) >> 2
        return "".join(chr(ord(base) + c) for c in (first, second, third))
    return raw.rstrip(b"\x00").decode("latin-1")


def _ascii(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("latin-1")


@dataclass(frozen=True, slots=True)
class Config:
    """A resource configuration; zero/empty fields mean "any" (ResTable_config)."""

    mcc: int = 0
    mnc: int = 0
    language: str = ""
    country: str = ""
    orientation: int = 0
    touchscreen: int = 0
    density: int = 0
    keyboard: int = 0
    navigation: int = 0
    input_flags: int = 0
    screen_width: int = 0
    screen_height: int = 0
    sdk_version: int = 0
    minor_version: int = 0
    screen_layout: int = 0
    ui_mode: int = 0
    smallest_screen_width_dp: int = 0
    screen_width_dp: int = 0
    screen_height_dp: int = 0
    locale_script: str = ""
    locale_variant: str = ""

    @staticmethod
    def from_bytes(raw: bytes) -> Config:
        """Parse a ResTable_config; fields past its declared size are "any"."""
        if len(raw) < 4:
            raise MalformedResource("resource configuration is truncated")
        (size,) = struct.unpack_from("<I", raw)
        if size < 4 or size > len(raw):
            raise MalformedResource(f"resource configuration declares {size} bytes")
        body = raw[4:size].ljust(_CONFIG_FIELDS.size, b"\x00")[: _CONFIG_FIELDS.size]
        f = _CONFIG_FIELDS.unpack(body)
        return Config(
            mcc=f[0],
            mnc=f[1],
            language=_unpack_code(f[2], "a"),
            country=_unpack_code(f[3], "0"),
            orientation=f[4],
            touchscreen=f[5],
            density=f[6],
            keyboard=f[7],
            navigation=f[8],
            input_flags=f[9],
            screen_width=f[10],
            screen_height=f[11],
            sdk_version=f[12],
            minor_version=f[13],
            screen_layout=f[14],
            ui_mode=f[15],
            smallest_screen_width_dp=f[16],
            screen_width_dp=f[17],
            screen_height_dp=f[18],
            locale_script=_ascii(f[19]),
            locale_variant=_ascii(f[20]),
        )

    # -- locale ------------------------------------------------------------------------------
    @property
    def locale(self) -> str:
        """BCP-47 style, as ``aapt`` prints it (``en``, ``en-GB``, ``sr-Latn``, ``es-419``)."""
        if not self.language and not self.country:
            return ""
        parts = [p for p in (self.language, self.locale_script, self.country) if p]
        if self.locale_variant:
            parts.append(self.locale_variant)
        return "-".join(parts)

    def with_locale(self, locale: str) -> Config:
        """ResTable_config::setBcp47Locale."""
        language = country = script = variant = ""
        for part in locale.split("-") if locale else []:
            if len(part) in (2, 3):
                if language:
                    country = part
                else:
                    language = part
            elif len(part) == 4:
                script = part[:1].upper() + part[1:].lower()
            elif 5 <= len(part) <= 8:
                variant = part.lower()
        return replace(
            self,
            language=language,
            country=country,
            locale_script=script,
            locale_variant=variant,
        )

    @property
    def qualifiers(self) -> str:
        """A short human description (``mdpi``, ``fr``, ``anydpi-v26``)."""
        parts = []
        if self.locale:
            parts.append(self.locale)
        if self.density:
            parts.append(density_name(self.density))
        if self.sdk_version:
            parts.append(f"v{self.sdk_version}")
        return "-".join(parts) or "default"

    # -- ResTable_config::match ---------------------------------------------------------------
    def match(self, settings: Config) -> bool:
        if self.mcc and self.mcc != settings.mcc:
            return False
        if self.mnc and self.mnc != settings.mnc:
            return False
        if self.language and self.language != settings.language:
            return False
        if self.country and self.country != settings.country:
            return False
        layout_dir = self.screen_layout & MASK_LAYOUTDIR
        if layout_dir and layout_dir != settings.screen_layout & MASK_LAYOUTDIR:
            return False
        size = self.screen_layout & MASK_SCREENSIZE
        if size and size > settings.screen_layout & MASK_SCREENSIZE:
            return False
        long_ = self.screen_layout & MASK_SCREENLONG
        if long_ and long_ != settings.screen_layout & MASK_SCREENLONG:
            return False
        ui_type = self.ui_mode & MASK_UI_MODE_TYPE
        if ui_type and ui_type != settings.ui_mode & MASK_UI_MODE_TYPE:
            return False
        night = self.ui_mode & MASK_UI_MODE_NIGHT
        if night and night != settings.ui_mode & MASK_UI_MODE_NIGHT:
            return False
        if (
            self.smallest_screen_width_dp
            and self.smallest_screen_width_dp > settings.smallest_screen_width_dp
        ):
            return False
        if self.screen_width_dp and self.screen_width_dp > settings.screen_width_dp:
            return False
        if self.screen_height_dp and self.screen_height_dp > settings.screen_height_dp:
            return False
        if self.orientation and self.orientation != settings.orientation:
            return False
        if self.touchscreen and self.touchscreen != settings.touchscreen:
            return False
        keys = self.input_flags & MASK_KEYSHIDDEN
        set_keys = settings.input_flags & MASK_KEYSHIDDEN
        if keys and keys != set_keys and (keys != KEYSHIDDEN_NO or set_keys != KEYSHIDDEN_SOFT):
            return False
        nav = self.input_flags & MASK_NAVHIDDEN
        if nav and nav != settings.input_flags & MASK_NAVHIDDEN:
            return False
        if self.keyboard and self.keyboard != settings.keyboard:
            return False
        if self.navigation and self.navigation != settings.navigation:
            return False
        if self.screen_width and self.screen_width > settings.screen_width:
            return False
        if self.screen_height and self.screen_height > settings.screen_height:
            return False
        if self.sdk_version and self.sdk_version > settings.sdk_version:
            return False
        return not (self.minor_version and self.minor_version != settings.minor_version)

    # -- ResTable_config::isBetterThan (with a requested configuration) -----------------------
    def is_better_than(self, o: Config, req: Config) -> bool:
        if self.mcc != o.mcc and req.mcc:
            return bool(self.mcc)
        if self.mnc != o.mnc and req.mnc:
            return bool(self.mnc)
        if self.language != o.language and req.language:
            return bool(self.language)
        if self.country != o.country and req.country:
            return bool(self.country)
        if self.locale_script != o.locale_script and req.locale_script:
            return bool(self.locale_script)
        if self.locale_variant != o.locale_variant and req.locale_variant:
            return bool(self.locale_variant)
        if (self.screen_layout ^ o.screen_layout) & MASK_LAYOUTDIR and (
            req.screen_layout & MASK_LAYOUTDIR
        ):
            return (self.screen_layout & MASK_LAYOUTDIR) > (o.screen_layout & MASK_LAYOUTDIR)
        if self.smallest_screen_width_dp != o.smallest_screen_width_dp:
            return self.smallest_screen_width_dp > o.smallest_screen_width_dp
        if self.screen_width_dp or o.screen_width_dp or self.screen_height_dp or o.screen_height_dp:
            mine = other = 0
            if req.screen_width_dp:
                mine += req.screen_width_dp - self.screen_width_dp
                other += req.screen_width_dp - o.screen_width_dp
            if req.screen_height_dp:
                mine += req.screen_height_dp - self.screen_height_dp
                other += req.screen_height_dp - o.screen_height_dp
            if mine != other:
                return mine < other
        if (self.screen_layout ^ o.screen_layout) & MASK_SCREENSIZE and (
            req.screen_layout & MASK_SCREENSIZE
        ):
            my_sl = self.screen_layout & MASK_SCREENSIZE
            o_sl = o.screen_layout & MASK_SCREENSIZE
            fixed_my, fixed_o = my_sl, o_sl
            if req.screen_layout & MASK_SCREENSIZE >= SCREENSIZE_NORMAL:
                fixed_my = fixed_my or SCREENSIZE_NORMAL
                fixed_o = fixed_o or SCREENSIZE_NORMAL
            if fixed_my == fixed_o:
                return my_sl != 0
            return fixed_my > fixed_o
        if (self.screen_layout ^ o.screen_layout) & MASK_SCREENLONG and (
            req.screen_layout & MASK_SCREENLONG
        ):
            return bool(self.screen_layout & MASK_SCREENLONG)
        if self.orientation != o.orientation and req.orientation:
            return bool(self.orientation)
        if (self.ui_mode ^ o.ui_mode) & MASK_UI_MODE_TYPE and req.ui_mode & MASK_UI_MODE_TYPE:
            return bool(self.ui_mode & MASK_UI_MODE_TYPE)
        if (self.ui_mode ^ o.ui_mode) & MASK_UI_MODE_NIGHT and req.ui_mode & MASK_UI_MODE_NIGHT:
            return bool(self.ui_mode & MASK_UI_MODE_NIGHT)
        if self.density != o.density:
            return _density_better(self.density, o.density, req.density)
        if self.touchscreen != o.touchscreen and req.touchscreen:
            return bool(self.touchscreen)
        keys, o_keys = self.input_flags & MASK_KEYSHIDDEN, o.input_flags & MASK_KEYSHIDDEN
        req_keys = req.input_flags & MASK_KEYSHIDDEN
        if keys != o_keys and req_keys:
            if not keys:
                return False
            if not o_keys:
                return True
            if req_keys == keys:
                return True
            if req_keys == o_keys:
                return False
        nav, o_nav = self.input_flags & MASK_NAVHIDDEN, o.input_flags & MASK_NAVHIDDEN
        if nav != o_nav and req.input_flags & MASK_NAVHIDDEN:
            if not nav:
                return False
            if not o_nav:
                return True
        if self.keyboard != o.keyboard and req.keyboard:
            return bool(self.keyboard)
        if self.navigation != o.navigation and req.navigation:
            return bool(self.navigation)
        if self.screen_width or o.screen_width or self.screen_height or o.screen_height:
            mine = other = 0
            if req.screen_width:
                mine += req.screen_width - self.screen_width
                other += req.screen_width - o.screen_width
            if req.screen_height:
                mine += req.screen_height - self.screen_height
                other += req.screen_height - o.screen_height
            if mine != other:
                return mine < other
        if self.sdk_version != o.sdk_version and req.sdk_version:
            return self.sdk_version > o.sdk_version
        if self.minor_version != o.minor_version and req.minor_version:
            return bool(self.minor_version)
        return False


def _density_better(mine: int, other: int, requested: int) -> bool:
    this_d = mine or DENSITY_MEDIUM
    other_d = other or DENSITY_MEDIUM
    if this_d == DENSITY_ANY:
        return True
    if other_d == DENSITY_ANY:
        return False
    req = requested if requested not in (0, DENSITY_ANY) else DENSITY_MEDIUM
    high, low, i_am_bigger = this_d, other_d, True
    if low > high:
        high, low, i_am_bigger = low, high, False
    if req >= high:
        return i_am_bigger
    if low >= req:
        return not i_am_bigger
    if ((2 * low) - req) * high > req * req:
        return not i_am_bigger
    return i_am_bigger


_DENSITY_NAMES = {
    120: "ldpi",
    160: "mdpi",
    213: "tvdpi",
    240: "hdpi",
    320: "xhdpi",
    480: "xxhdpi",
    640: "xxxhdpi",
    DENSITY_ANY: "anydpi",
    DENSITY_NONE: "nodpi",
}

# The device `aapt dump badging` pretends to be: en-US, portrait, mdpi, normal screen of
# 320x480 dp, SDK 10000 (frameworks/base/tools/aapt/Command.cpp, doDump).
AAPT_CONFIG = Config(
    language="en",
    country="US",
    orientation=ORIENTATION_PORT,
    density=DENSITY_MEDIUM,
    sdk_version=10000,
    screen_width_dp=320,
    screen_height_dp=480,
    smallest_screen_width_dp=320,
    screen_layout=SCREENSIZE_NORMAL,
)


def best_value(candidates: Iterable[tuple[Config, ResValue]], requested: Config) -> ResValue | None:
    """The value a device with ``requested`` configuration gets (first best wins ties)."""
    best: tuple[Config, ResValue] | None = None
    for config, value in candidates:
        if not config.match(requested):
            continue
        if best is None or config.is_better_than(best[0], requested):
            best = (config, value)
    return best[1] if best else None


# --- resource tables --------------------------------------------------------------------------


class ResourceTable:
    """Lookups over a resource table; subclasses implement :meth:`_values` and :meth:`configs`."""

    def __init__(self) -> None:
        self._memo: dict[int, list[tuple[Config, ResValue]]] = {}

    def values(self, res_id: int) -> list[tuple[Config, ResValue]]:
        """Every (configuration, simple value) defined for ``res_id`` (bags are skipped)."""
        found = self._memo.get(res_id)
        if found is None:
            found = self._memo[res_id] = self._values(res_id)
        return found

    def _values(self, res_id: int) -> list[tuple[Config, ResValue]]:
        raise NotImplementedError

    def configs(self) -> Iterator[Config]:
        """Every configuration any type chunk declares (duplicates allowed)."""
        raise NotImplementedError

    def name(self, res_id: int) -> str | None:
        """``@type/name`` for display, when the table knows it."""
        return None

    # -- derived ------------------------------------------------------------------------------
    def locales(self) -> list[str]:
        """ResTable::getLocales: distinct locales of all configurations, sorted, "" first."""
        return sorted({c.locale for c in self.configs()})

    def densities(self) -> list[int]:
        """The densities `aapt dump badging` lists icons for (0 counts as 160)."""
        return sorted({c.density or DENSITY_MEDIUM for c in self.configs()})

    def resolve(self, value: ResValue, requested: Config) -> ResValue | None:
        """Follow references (bounded) to a non-reference value; None when unresolvable."""
        seen = 0
        while value.is_reference:
            seen += 1
            if seen > MAX_REFERENCE_HOPS:
                return None
            found = best_value(self.values(value.data), requested)
            if found is None:
                return None
            value = found
        return value


# --- binary chunks and string pools -----------------------------------------------------------

CHUNK_HEADER = struct.Struct("<HHI")
RES_STRING_POOL_TYPE = 0x0001
_POOL_HEADER = struct.Struct("<IIIII")
_UTF8_FLAG = 0x100


@dataclass(frozen=True, slots=True)
class Chunk:
    type: int
    header_size: int
    size: int
    offset: int  # of the chunk in the buffer

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def body(self) -> int:
        return self.offset + self.header_size


def read_chunk(data: bytes, offset: int, end: int, min_header: int, what: str) -> Chunk:
    """Android's ``validate_chunk``: header >= min, header <= size, 4-aligned, inside ``end``."""
    if offset < 0 or offset + CHUNK_HEADER.size > end:
        raise MalformedResource(f"{what} chunk header at {offset} is past the end")
    ctype, header_size, size = CHUNK_HEADER.unpack_from(data, offset)
    if header_size < min_header:
        raise MalformedResource(f"{what} chunk at {offset} has a header of {header_size} bytes")
    if header_size > size:
        raise MalformedResource(f"{what} chunk at {offset} has a header larger than the chunk")
    if (header_size | size) & 3:
        raise MalformedResource(f"{what} chunk at {offset} is not 4-byte aligned")
    if size > end - offset:
        raise MalformedResource(f"{what} chunk at {offset} extends past its container")
    return Chunk(ctype, header_size, size, offset)


def iter_chunks(data: bytes, start: int, end: int, what: str) -> Iterator[Chunk]:
    """The chunks between ``start`` and ``end``; each at least 8 bytes, so this terminates."""
    offset = start
    while offset + CHUNK_HEADER.size <= end:
        chunk = read_chunk(data, offset, end, CHUNK_HEADER.size, what)
        yield chunk
        offset = chunk.end


class StringPool:
    """A ResStringPool chunk; strings are decoded on first use and cached."""

    def __init__(self, data: bytes, chunk: Chunk) -> None:
        if chunk.header_size < CHUNK_HEADER.size + _POOL_HEADER.size:
            raise MalformedResource("string pool header is too small")
        count, style_count, flags, strings_start, styles_start = _POOL_HEADER.unpack_from(
            data, chunk.offset + CHUNK_HEADER.size
        )
        self._data = data
        self._utf8 = bool(flags & _UTF8_FLAG)
        self.count = count
        if count > (chunk.size - chunk.header_size) // 4:
            raise MalformedResource(
                f"string pool declares {count} strings but its chunk has room for "
                f"{(chunk.size - chunk.header_size) // 4}"
            )
        self._index = chunk.body
        if count:
            if strings_start >= chunk.size - 2 or strings_start < chunk.header_size + 4 * count:
                raise MalformedResource("string pool data starts outside its chunk")
            pool_end = chunk.size
            if style_count:
                if styles_start >= chunk.size - 2 or styles_start <= strings_start:
                    raise MalformedResource("string pool styles overlap its strings")
                pool_end = styles_start
            self._start = chunk.offset + strings_start
            self._end = chunk.offset + pool_end
        else:
            self._start = self._end = chunk.body
        self._cache: dict[int, str | None] = {}

    def get(self, index: int) -> str | None:
        """String ``index``, or None when the index or the string is invalid."""
        if index < 0 or index >= self.count:
            return None
        if index in self._cache:
            return self._cache[index]
        (rel,) = struct.unpack_from("<I", self._data, self._index + 4 * index)
        value = self._decode(self._start + rel) if rel < self._end - self._start else None
        self._cache[index] = value
        return value

    def _decode(self, pos: int) -> str | None:
        data, end = self._data, self._end
        if self._utf8:
            # UTF-16 length (skipped), then UTF-8 byte length, each 1 or 2 bytes
            for _ in range(2):
                if pos >= end:
                    return None
                first = data[pos]
                if first & 0x80:
                    if pos + 1 >= end:
                        return None
                    length = ((first & 0x7F) << 8) | data[pos + 1]
                    pos += 2
                else:
                    length = first
                    pos += 1
            if length > MAX_STRING_CHARS or pos + length > end:
                return None
            return modified_utf8(bytes(data[pos : pos + length]))
        if pos + 2 > end:
            return None
        (length,) = struct.unpack_from("<H", data, pos)
        pos += 2
        if length & 0x8000:
            if pos + 2 > end:
                return None
            (low,) = struct.unpack_from("<H", data, pos)
            length = ((length & 0x7FFF) << 16) | low
            pos += 2
        if length > MAX_STRING_CHARS or pos + 2 * length > end:
            return None
        return data[pos : pos + 2 * length].decode("utf-16-le", errors="replace")


def modified_utf8(raw: bytes) -> str:
    """A UTF-8 string of a string pool, decoded as Android does: aapt2 writes a character
    outside the Basic Multilingual Plane (an emoji) as its UTF-16 surrogate pair, each half
    encoded in UTF-8 on its own (CESU-8, "modified UTF-8"); the pair is one character."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        halves = raw.decode("utf-8", errors="surrogatepass")
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace")
    return halves.encode("utf-16-le", errors="surrogatepass").decode("utf-16-le", errors="replace")


def density_name(density: int) -> str:
    return _DENSITY_NAMES.get(density, f"{density}dpi")
