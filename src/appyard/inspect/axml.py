"""Android binary XML (the compiled ``AndroidManifest.xml`` and ``res/**/*.xml`` of an APK).

:func:`parse_axml` turns the bytes into a small tree of :class:`XmlElement`; the AAB reader
(:mod:`appyard.inspect.proto`) builds the same tree from aapt2's protocol-buffer XML, so the
manifest reader (:mod:`appyard.inspect.android_manifest`) serves both.

The parser follows Android's own (``ResXMLTree::setTo`` / ``ResXMLParser::nextNode`` in
``libandroidfw``) where hostile files exploit differences between Android and analysis tools:

* the file header's chunk *type* is not checked (Android does not either; a wrong one is
  reported in :attr:`XmlDocument.warnings`), its sizes are;
* the last string pool and resource map before the first node are used, unknown chunks are
  skipped, every chunk is validated like ``validate_chunk`` (header >= minimum, header <=
  size, 4-byte aligned, inside the document);
* an element's attributes must fit in its chunk; attributes are identified by the resource
  id the resource map gives their name (as Android does), not by their name string;
* only the first root element counts; unmatched end tags are ignored.

Bounds: the caller bounds the input size; at most ``MAX_NODES`` elements and ``MAX_DEPTH``
nesting; strings are decoded lazily and at most ``MAX_STRING_CHARS`` long. Errors are
:class:`~appyard.inspect.android_resources.MalformedResource`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from appyard.inspect.android_resources import (
    CHUNK_HEADER,
    RES_STRING_POOL_TYPE,
    TYPE_REFERENCE,
    TYPE_STRING,
    Chunk,
    MalformedResource,
    ResValue,
    StringPool,
    read_chunk,
)

ANDROID_NS = "http://schemas.android.com/apk/res/android"

RES_XML_TYPE = 0x0003
RES_XML_FIRST_CHUNK_TYPE = 0x0100
RES_XML_START_NAMESPACE_TYPE = 0x0100
RES_XML_END_NAMESPACE_TYPE = 0x0101
RES_XML_START_ELEMENT_TYPE = 0x0102
RES_XML_END_ELEMENT_TYPE = 0x0103
RES_XML_CDATA_TYPE = 0x0104
RES_XML_LAST_CHUNK_TYPE = 0x017F
RES_XML_RESOURCE_MAP_TYPE = 0x0180

MAX_NODES = 200_000
MAX_DEPTH = 256

_NODE_HEADER = 16  # ResXMLTree_node: chunk header, lineNumber, comment
_ATTR_EXT = struct.Struct("<IIHHHHHH")
_ATTRIBUTE = struct.Struct("<IIIHBBI")
_MIN_EXT = {
    RES_XML_START_NAMESPACE_TYPE: 8,
    RES_XML_END_NAMESPACE_TYPE: 8,
    RES_XML_START_ELEMENT_TYPE: _ATTR_EXT.size,
    RES_XML_END_ELEMENT_TYPE: 8,
    RES_XML_CDATA_TYPE: 12,
}
_NO_INDEX = 0xFFFFFFFF


@dataclass(slots=True)
class XmlAttribute:
    namespace: str | None
    name: str
    resource_id: int  # 0 when the name has no resource id
    raw: str | None  # the attribute's raw string, when it has one
    value: ResValue

    @property
    def text(self) -> str | None:
        """The value as Android's TypedArray reads a string attribute (typed value first)."""
        if self.value.type == TYPE_STRING and self.value.string is not None:
            return self.value.string
        if self.raw is not None:
            return self.raw
        return self.value.coerce_to_string()

    @property
    def raw_text(self) -> str | None:
        """The value as ``XmlPullParser.getAttributeValue`` reads it (raw string first)."""
        return self.raw if self.raw is not None else self.value.coerce_to_string()


@dataclass(slots=True)
class XmlElement:
    name: str
    namespace: str | None = None
    attributes: list[XmlAttribute] = field(default_factory=list)
    children: list[XmlElement] = field(default_factory=list)

    def attr(self, resource_id: int) -> XmlAttribute | None:
        """The attribute whose name maps to ``resource_id`` (how Android finds android:*)."""
        for attribute in self.attributes:
            if attribute.resource_id == resource_id:
                return attribute
        return None

    def attr_named(self, name: str, namespace: str | None = None) -> XmlAttribute | None:
        """An attribute without a resource id, by namespace and name (``package``...)."""
        for attribute in self.attributes:
            if attribute.name == name and attribute.namespace == namespace:
                return attribute
        return None

    def find(self, name: str) -> Iterator[XmlElement]:
        return (child for child in self.children if child.name == name)


@dataclass(slots=True)
class XmlDocument:
    root: XmlElement
    warnings: list[str] = field(default_factory=list)


def looks_like_text_xml(data: bytes) -> bool:
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<")


def parse_axml(data: bytes) -> XmlDocument:
    """Parse binary XML; raise MalformedResource when Android would refuse it."""
    if looks_like_text_xml(data):
        raise MalformedResource("it is plain-text XML, not compiled binary XML")
    if len(data) < CHUNK_HEADER.size:
        raise MalformedResource("it is shorter than a binary XML header")
    doc_type, header_size, size = CHUNK_HEADER.unpack_from(data, 0)
    if header_size < CHUNK_HEADER.size or header_size > size or size > len(data):
        if doc_type != RES_XML_TYPE:
            raise MalformedResource(f"it is not binary XML (it starts with {data[:4].hex(' ')})")
        raise MalformedResource(
            f"its header declares {size} bytes (header {header_size}) but it has {len(data)}"
        )
    warnings = []
    if doc_type != RES_XML_TYPE:
        warnings.append(f"binary XML header type is 0x{doc_type:04x}, not 0x0003")

    pool: StringPool | None = None
    res_ids: tuple[int, ...] = ()
    offset = header_size
    first_node: Chunk | None = None
    while offset + CHUNK_HEADER.size <= size:
        chunk = read_chunk(data, offset, size, CHUNK_HEADER.size, "binary XML")
        if chunk.type == RES_STRING_POOL_TYPE:
            pool = StringPool(data, chunk)
        elif chunk.type == RES_XML_RESOURCE_MAP_TYPE:
            count = (chunk.size - chunk.header_size) // 4
            res_ids = struct.unpack_from(f"<{count}I", data, chunk.body)
        elif RES_XML_FIRST_CHUNK_TYPE <= chunk.type <= RES_XML_LAST_CHUNK_TYPE:
            first_node = chunk
            break
        offset = chunk.end
    if first_node is None:
        raise MalformedResource("it has no XML element")
    if pool is None:
        raise MalformedResource("it has no string pool before its first element")
    root = _parse_nodes(data, first_node.offset, size, pool, res_ids)
    return XmlDocument(root=root, warnings=warnings)


def _parse_nodes(
    data: bytes, offset: int, end: int, pool: StringPool, res_ids: tuple[int, ...]
) -> XmlElement:
    root: XmlElement | None = None
    stack: list[XmlElement] = []
    nodes = 0
    while offset < end:
        node = read_chunk(data, offset, end, _NODE_HEADER, "XML node")
        offset = node.end
        min_ext = _MIN_EXT.get(node.type)
        if min_ext is None:
            continue  # unknown node types are skipped, as Android does
        if node.size - node.header_size < min_ext:
            raise MalformedResource(f"XML node at {node.offset} is too small for its type")
        if node.type == RES_XML_START_ELEMENT_TYPE:
            nodes += 1
            if nodes > MAX_NODES:
                raise MalformedResource(f"it has more than {MAX_NODES} elements")
            element = _element(data, node, pool, res_ids)
            if stack:
                if len(stack) >= MAX_DEPTH:
                    raise MalformedResource(f"its elements nest deeper than {MAX_DEPTH}")
                stack[-1].children.append(element)
                stack.append(element)
            elif root is None:
                root = element
                stack.append(element)
            # a second root element is ignored (Android stops after the first)
        elif node.type == RES_XML_END_ELEMENT_TYPE and stack:
            stack.pop()
            if not stack:
                break
    if root is None:
        raise MalformedResource("it has no XML element")
    return root


def _element(data: bytes, node: Chunk, pool: StringPool, res_ids: tuple[int, ...]) -> XmlElement:
    ext = node.body
    ns, name, attr_start, attr_size, attr_count, _, _, _ = _ATTR_EXT.unpack_from(data, ext)
    if attr_count and attr_size < _ATTRIBUTE.size:
        raise MalformedResource(f"XML element at {node.offset} has {attr_size}-byte attributes")
    if attr_start + attr_size * attr_count > node.size - node.header_size:
        raise MalformedResource(f"XML element at {node.offset} has attributes past its end")
    element = XmlElement(
        name=pool.get(name) or "",
        namespace=None if ns == _NO_INDEX else pool.get(ns),
    )
    pos = ext + attr_start
    for _ in range(attr_count):
        a_ns, a_name, raw, _, _, dtype, value = _ATTRIBUTE.unpack_from(data, pos)
        pos += attr_size
        string = pool.get(value) if dtype == TYPE_STRING else None
        element.attributes.append(
            XmlAttribute(
                namespace=None if a_ns == _NO_INDEX else pool.get(a_ns),
                name=pool.get(a_name) or "",
                resource_id=res_ids[a_name] if a_name < len(res_ids) else 0,
                raw=None if raw == _NO_INDEX else pool.get(raw),
                value=ResValue(dtype, value, string),
            )
        )
    return element


def reference_value(res_id: int) -> ResValue:
    return ResValue(TYPE_REFERENCE, res_id)
