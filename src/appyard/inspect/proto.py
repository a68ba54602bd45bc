"""aapt2's protocol-buffer formats, as found in an Android App Bundle (AAB).

A bundle keeps each module's manifest as a serialized ``aapt.pb.XmlNode``
(``<module>/manifest/AndroidManifest.xml``), its compiled XML resources the same way, and its
resource table as ``aapt.pb.ResourceTable`` (``<module>/resources.pb``); the messages are
defined in ``frameworks/base/tools/aapt2/Resources.proto`` and ``Configuration.proto``.

No generated code: :func:`fields` walks the protobuf wire format (varint, 64-bit,
length-delimited, 32-bit; groups are refused) over a ``memoryview`` without copying, and the
readers below pick the few fields they need and skip everything else.

* :func:`parse_proto_xml` returns the same :class:`~appyard.inspect.axml.XmlElement` tree as
  the binary XML parser (attributes keep their resource id and compiled value);
* :class:`ProtoResourceTable` indexes packages, types and entries on load and decodes an
  entry's values (and each distinct configuration once) only when asked.

Bounds: the caller bounds the input size; every length is checked against its enclosing
message; varints are at most 10 bytes; XML nesting at most ``axml.MAX_DEPTH`` and
``axml.MAX_NODES`` elements. Errors are
:class:`~appyard.inspect.android_resources.MalformedResource`.
"""

from __future__ import annotations

from collections.abc import Iterator

from appyard.inspect.android_resources import (
    TYPE_ATTRIBUTE,
    TYPE_DIMENSION,
    TYPE_FLOAT,
    TYPE_FRACTION,
    TYPE_INT_BOOLEAN,
    TYPE_INT_DEC,
    TYPE_INT_HEX,
    TYPE_NULL,
    TYPE_REFERENCE,
    TYPE_STRING,
    Config,
    MalformedResource,
    ResourceTable,
    ResValue,
)
from appyard.inspect.axml import MAX_DEPTH, MAX_NODES, XmlAttribute, XmlElement

VARINT, I64, LEN, I32 = 0, 1, 2, 5

Field = tuple[int, int, "int | memoryview"]


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    for _ in range(10):
        if pos >= end:
            raise MalformedResource("protobuf varint runs past the end of its message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
    raise MalformedResource("protobuf varint is longer than 10 bytes")


def fields(buf: memoryview) -> Iterator[Field]:
    """(field number, wire type, value) of every field of one message."""
    pos, end = 0, len(buf)
    while pos < end:
        byte = buf[pos]
        if byte < 0x80:  # one-byte keys and lengths are the common case: no call
            key = byte
            pos += 1
        else:
            key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise MalformedResource("protobuf field number 0")
        if wire == LEN:
            if pos < end and buf[pos] < 0x80:
                length = buf[pos]
                pos += 1
            else:
                length, pos = _varint(buf, pos, end)
            if length > end - pos:
                raise MalformedResource("protobuf field runs past the end of its message")
            yield number, wire, buf[pos : pos + length]
            pos += length
        elif wire == VARINT:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value
        elif wire == I64:
            if pos + 8 > end:
                raise MalformedResource("protobuf field runs past the end of its message")
            yield number, wire, int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire == I32:
            if pos + 4 > end:
                raise MalformedResource("protobuf field runs past the end of its message")
            yield number, wire, int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        else:
            raise MalformedResource(f"protobuf wire type {wire} is not supported")


def _msg(value: int | memoryview) -> memoryview:
    if not isinstance(value, memoryview):
        raise MalformedResource("protobuf field has the wrong wire type")
    return value


def _int(value: int | memoryview) -> int:
    if isinstance(value, memoryview):
        raise MalformedResource("protobuf field has the wrong wire type")
    return value


def _str(value: int | memoryview) -> str:
    return bytes(_msg(value)).decode("utf-8", errors="replace")


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def message_fields(buf: memoryview) -> dict[int, list[int | memoryview]]:
    """All fields of a small message, by number (repeated fields keep their order)."""
    out: dict[int, list[int | memoryview]] = {}
    for number, _, value in fields(buf):
        out.setdefault(number, []).append(value)
    return out


# --- Item -> ResValue -------------------------------------------------------------------------


def _reference(buf: memoryview) -> ResValue:
    kind = 0
    res_id = 0
    for number, _, value in fields(buf):
        if number == 1:
            kind = _int(value)
        elif number == 2:
            res_id = _int(value) & 0xFFFFFFFF
    return ResValue(TYPE_ATTRIBUTE if kind == 1 else TYPE_REFERENCE, res_id)


def _string_field(buf: memoryview) -> str:
    for number, _, value in fields(buf):
        if number == 1:
            return _str(value)
    return ""


def _primitive(buf: memoryview) -> ResValue:
    for number, _, value in fields(buf):
        if number in (1, 2):  # null / empty
            return ResValue(TYPE_NULL, 1 if number == 2 else 0)
        if number == 3:
            return ResValue(TYPE_FLOAT, _int(value))
        if number in (4, 13):
            return ResValue(TYPE_DIMENSION, _int(value) & 0xFFFFFFFF)
        if number in (5, 14):
            return ResValue(TYPE_FRACTION, _int(value) & 0xFFFFFFFF)
        if number == 6:
            return ResValue(TYPE_INT_DEC, _int(value) & 0xFFFFFFFF)
        if number == 7:
            return ResValue(TYPE_INT_HEX, _int(value) & 0xFFFFFFFF)
        if number == 8:
            return ResValue(TYPE_INT_BOOLEAN, 0xFFFFFFFF if _int(value) else 0)
        if number in (9, 10, 11, 12):
            return ResValue(0x1C + (number - 9), _int(value) & 0xFFFFFFFF)
    return ResValue(TYPE_INT_BOOLEAN, 0)  # a primitive with nothing set is false/0


def item_value(buf: memoryview) -> ResValue | None:
    """aapt.pb.Item as a ResValue (files become their path, as aapt2 prints them)."""
    for number, _, value in fields(buf):
        if number == 1:
            return _reference(_msg(value))
        if number in (2, 3, 4):  # str, raw_str, styled_str: field 1 is the text
            return ResValue(TYPE_STRING, 0, _string_field(_msg(value)))
        if number == 5:  # FileReference: path = 1
            return ResValue(TYPE_STRING, 0, _string_field(_msg(value)))
        if number == 6:  # Id
            return ResValue(TYPE_INT_BOOLEAN, 0)
        if number == 7:
            return _primitive(_msg(value))
    return None


# --- XML --------------------------------------------------------------------------------------


def parse_proto_xml(data: bytes) -> XmlElement:
    """Parse a serialized aapt.pb.XmlNode whose root is an element."""
    root_node = memoryview(data)
    element_buf = None
    for number, _, value in fields(root_node):
        if number == 1:
            element_buf = _msg(value)
    if element_buf is None:
        raise MalformedResource("it has no XML element")
    counter = [0]
    root, pending = _proto_element(element_buf, counter)
    # children are parsed iteratively (depth-first) to bound the depth without recursion
    stack: list[tuple[XmlElement, list[memoryview]]] = [(root, pending)]
    while stack:
        parent, pending = stack[-1]
        if not pending:
            stack.pop()
            continue
        child, grandchildren = _proto_element(pending.pop(), counter)
        parent.children.append(child)
        if len(stack) >= MAX_DEPTH:
            raise MalformedResource(f"its elements nest deeper than {MAX_DEPTH}")
        stack.append((child, grandchildren))
    return root


def _proto_element(buf: memoryview, counter: list[int]) -> tuple[XmlElement, list[memoryview]]:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise MalformedResource(f"it has more than {MAX_NODES} elements")
    element = XmlElement(name="")
    children: list[memoryview] = []
    for number, _, value in fields(buf):
        if number == 2:
            element.namespace = _str(value) or None
        elif number == 3:
            element.name = _str(value)
        elif number == 4:
            element.attributes.append(_proto_attribute(_msg(value)))
        elif number == 5:  # XmlNode child: element = 1, text = 2
            for c_number, _, c_value in fields(_msg(value)):
                if c_number == 1:
                    children.append(_msg(c_value))
    children.reverse()
    return element, children


def _proto_attribute(buf: memoryview) -> XmlAttribute:
    namespace = None
    name = ""
    raw: str | None = None
    res_id = 0
    compiled: ResValue | None = None
    for number, _, value in fields(buf):
        if number == 1:
            namespace = _str(value) or None
        elif number == 2:
            name = _str(value)
        elif number == 3:
            raw = _str(value)
        elif number == 5:
            res_id = _int(value) & 0xFFFFFFFF
        elif number == 6:
            compiled = item_value(_msg(value))
    if compiled is None:
        compiled = ResValue(TYPE_STRING, 0, raw or "")
    return XmlAttribute(namespace=namespace, name=name, resource_id=res_id, raw=raw, value=compiled)


# --- resource table ---------------------------------------------------------------------------

_LAYOUT_DIR = {1: 0x40, 2: 0x80}
_SCREENLONG = {1: 0x20, 2: 0x10}
_NIGHT = {1: 0x20, 2: 0x10}


def proto_config(buf: memoryview) -> Config:
    """aapt.pb.Configuration as a Config (enum values mapped to ResTable_config bits)."""
    f = {number: value for number, _, value in fields(buf)}

    def num(n: int) -> int:
        value = f.get(n, 0)
        return _int(value) & 0xFFFF

    screen_layout = _LAYOUT_DIR.get(num(4), 0) | (num(10) & 0x0F) | _SCREENLONG.get(num(11), 0)
    ui_mode = (num(16) & 0x0F) | _NIGHT.get(num(17), 0)
    input_flags = (num(20) & 0x03) | ((num(22) & 0x03) << 2)
    config = Config(
        mcc=num(1),
        mnc=num(2),
        orientation=num(15),
        touchscreen=num(19),
        density=num(18),
        keyboard=num(21),
        navigation=num(23),
        input_flags=input_flags,
        screen_width=num(5),
        screen_height=num(6),
        sdk_version=num(24),
        screen_layout=screen_layout,
        ui_mode=ui_mode,
        smallest_screen_width_dp=num(9),
        screen_width_dp=num(7),
        screen_height_dp=num(8),
    )
    locale = f.get(3)
    if locale is not None:
        text = _str(locale)
        if text.startswith("b+"):
            text = text[2:].replace("+", "-")
        config = config.with_locale(text.replace("-r", "-"))
    return config


class ProtoResourceTable(ResourceTable):
    """A serialized aapt.pb.ResourceTable, indexed by resource id in one pass on load.

    The index keeps, per entry, its name and its ConfigValue messages as views into the
    input; configurations are decoded once per distinct encoding and values only when looked
    up.
    """

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._entries: dict[int, tuple[str, str, list[tuple[memoryview, memoryview]]]] = {}
        self._config_cache: dict[bytes, Config] = {}
        self._all_configs: list[Config] | None = None
        for number, _, value in fields(memoryview(data)):
            if number == 2:
                self._index_package(_msg(value))

    def _index_package(self, buf: memoryview) -> None:
        package_id = 0
        types: list[memoryview] = []
        for number, _, value in fields(buf):
            if number == 1:
                package_id = _first_int(_msg(value)) & 0xFF
            elif number == 3:
                types.append(_msg(value))
        for type_buf in types:
            type_id = 0
            type_name = ""
            entries: list[memoryview] = []
            for number, _, value in fields(type_buf):
                if number == 1:
                    type_id = _first_int(_msg(value)) & 0xFF
                elif number == 2:
                    type_name = _str(value)
                elif number == 3:
                    entries.append(_msg(value))
            base = (package_id << 24) | (type_id << 16)
            for entry in entries:
                entry_id = 0
                entry_name = ""
                values: list[tuple[memoryview, memoryview]] = []
                for number, _, value in fields(entry):
                    if number == 6:
                        config_value = _msg(value)
                        values.append((_leading_config(config_value), config_value))
                    elif number == 1:
                        entry_id = _first_int(_msg(value)) & 0xFFFF
                    elif number == 2:
                        entry_name = _str(value)
                self._entries[base | entry_id] = (type_name, entry_name, values)

    def _config(self, buf: memoryview) -> Config:
        key = bytes(buf)
        config = self._config_cache.get(key)
        if config is None:
            config = self._config_cache[key] = proto_config(buf)
        return config

    def _values(self, res_id: int) -> list[tuple[Config, ResValue]]:
        found = self._entries.get(res_id)
        if found is None:
            return []
        out = []
        for _, config_value in found[2]:
            config_buf, item = _config_value(config_value)
            if item is None:
                continue  # compound values (styles, arrays...) are not simple values
            value = item_value(item)
            if value is not None:
                out.append((self._config(config_buf), value))
        return out

    def configs(self) -> Iterator[Config]:
        if self._all_configs is None:
            self._all_configs = list(self._collect_configs())
        return iter(self._all_configs)

    def _collect_configs(self) -> Iterator[Config]:
        seen: set[bytes] = set()
        for _, _, values in self._entries.values():
            for config_buf, _ in values:
                key = bytes(config_buf)
                if key not in seen:
                    seen.add(key)
                    yield self._config(config_buf)

    def name(self, res_id: int) -> str | None:
        found = self._entries.get(res_id)
        if found is None or not found[0] or not found[1]:
            return None
        return f"@{found[0]}/{found[1]}"


_EMPTY = memoryview(b"")


def _first_int(buf: memoryview) -> int:
    for number, _, value in fields(buf):
        if number == 1:
            return _int(value)
    return 0


def _leading_config(config_value: memoryview) -> memoryview:
    """ConfigValue.config without walking the message when it comes first (aapt2 order)."""
    if len(config_value) >= 2 and config_value[0] == 0x0A and config_value[1] < 0x80:
        length = config_value[1]
        if 2 + length <= len(config_value):
            return config_value[2 : 2 + length]
    for number, _, value in fields(config_value):
        if number == 1:
            return _msg(value)
    return _EMPTY


def _config_value(buf: memoryview) -> tuple[memoryview, memoryview | None]:
    """ConfigValue: (Configuration bytes, Item bytes or None for compound values)."""
    config = _EMPTY
    item: memoryview | None = None
    for number, _, value in fields(buf):
        if number == 1:
            config = _msg(value)
        elif number == 2:
            for v_number, _, v_value in fields(_msg(value)):
                if v_number == 4:
                    item = _msg(v_value)
    return config, item


def bundletool_version(data: bytes) -> str | None:
    """BundleConfig.pb: ``bundletool { version }`` (field 1, then 2)."""
    for number, _, value in fields(memoryview(data)):
        if number == 1:
            for b_number, _, b_value in fields(_msg(value)):
                if b_number == 2:
                    return _str(b_value)
    return None
