"""Hostile APKs: mutated bytes give facts or InvalidArtifact, never another exception, and
quickly. Three levels, cheapest first:

* the parsers alone (binary XML, resources.arsc) on mutated entry bytes: facts or
  MalformedResource;
* APKs re-zipped with a mutated AndroidManifest.xml or resources.arsc (correct CRCs, so the
  parsers see the damage, not the zip reader);
* mutated bytes of the whole APK, signatures included.

Plus targeted inputs for the bounds: string pool counts past the chunk, chunk sizes of zero
or past the end, deep nesting, huge attribute counts.
"""

from __future__ import annotations

import struct
import tempfile
import time
import zipfile
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appyard.errors import InvalidArtifact
from appyard.inspect.android_manifest import read_manifest
from appyard.inspect.android_resources import (
    AAPT_CONFIG,
    MalformedResource,
    ResValue,
    StringPool,
    read_chunk,
)
from appyard.inspect.apk import ApkFacts, inspect_apk
from appyard.inspect.arsc import ArscTable
from appyard.inspect.axml import MAX_DEPTH, parse_axml
from tests.conftest import SHARED
from tests.inspect.conftest import E, load_fixture, make_axml, manifest

PER_EXAMPLE_SECONDS = 2.0
THIRDPARTY = SHARED / "fixtures" / "thirdparty"
SEED_NAMES = ("fixture-release-v1v2v3.apk", "fixture-native-libs.apk")
THIRDPARTY_SEEDS = ("org.sajeg.fallingblocks_3.apk", "debuggable-resource.apk", "urzip.apk")


@cache
def seeds() -> tuple[bytes, ...]:
    out = [load_fixture(name).path.read_bytes() for name in SEED_NAMES]
    out += [(THIRDPARTY / n).read_bytes() for n in THIRDPARTY_SEEDS if (THIRDPARTY / n).exists()]
    return tuple(out)


@cache
def members(name: str) -> tuple[bytes, ...]:
    out = []
    for seed in seeds():
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "seed.apk"
            path.write_bytes(seed)
            with zipfile.ZipFile(path) as zf:
                out.append(zf.read(name))
    return tuple(out)


Edit = tuple[str, int, int, bytes]
edit = st.tuples(
    st.sampled_from(["set8", "set32", "insert", "delete"]),
    st.integers(min_value=0),
    st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x10000]),
    st.binary(min_size=1, max_size=12),
)
edits = st.lists(edit, min_size=1, max_size=5)
cut = st.none() | st.integers(min_value=0)


def mutate(data: bytes, changes: list[Edit], cut_at: int | None) -> bytes:
    buf = bytearray(data)
    for kind, pos, value, blob in changes:
        if not buf:
            break
        at = pos % len(buf)
        if kind == "set8":
            buf[at] = value & 0xFF
        elif kind == "set32":
            at -= at % 4
            buf[at : at + 4] = struct.pack("<I", value)
        elif kind == "insert":
            buf[at:at] = blob
        else:
            del buf[at : at + len(blob)]
    if cut_at is not None and buf:
        del buf[cut_at % len(buf) :]
    return bytes(buf)


def check_apk(data: bytes, *, verify_signatures: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.apk"
        path.write_bytes(data)
        start = time.monotonic()
        try:
            facts = inspect_apk(path, verify_signatures=verify_signatures)
        except InvalidArtifact as exc:
            assert exc.message
        else:
            assert isinstance(facts, ApkFacts)
            assert facts.identity.identifier
        assert time.monotonic() - start < PER_EXAMPLE_SECONDS


FAST = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOW = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FAST
@given(seed=st.integers(min_value=0), changes=edits, cut_at=cut)
def test_mutated_binary_xml_parses_or_is_malformed(
    seed: int, changes: list[Edit], cut_at: int | None
) -> None:
    pool = members("AndroidManifest.xml")
    data = mutate(pool[seed % len(pool)], changes, cut_at)
    try:
        document = parse_axml(data)
        read_manifest(document.root, None)
    except MalformedResource as exc:
        assert str(exc)


@FAST
@given(seed=st.integers(min_value=0), changes=edits, cut_at=cut)
def test_mutated_resource_table_parses_or_is_malformed(
    seed: int, changes: list[Edit], cut_at: int | None
) -> None:
    pool = members("resources.arsc")
    data = mutate(pool[seed % len(pool)], changes, cut_at)
    try:
        table = ArscTable(data)
        table.locales()
        table.densities()
        for res_id in (0x7F010000, 0x7F020000, 0x7F030000, 0x7F0A0000, 0x7F0B0000):
            table.resolve(ResValue(0x01, res_id), AAPT_CONFIG)
            table.name(res_id)
    except MalformedResource as exc:
        assert str(exc)


@SLOW
@given(
    seed=st.integers(min_value=0),
    member=st.sampled_from(["AndroidManifest.xml", "resources.arsc"]),
    changes=edits,
    cut_at=cut,
)
def test_apks_with_a_mutated_manifest_or_table_give_facts_or_invalid_artifact(
    seed: int, member: str, changes: list[Edit], cut_at: int | None
) -> None:
    source = seeds()[seed % len(seeds())]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src.apk"
        src.write_bytes(source)
        out = Path(tmp) / "out.apk"
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
            for info in zin.infolist():
                data = zin.read(info)
                if info.filename == member:
                    data = mutate(data, changes, cut_at)
                zout.writestr(info, data)
        check_apk(out.read_bytes())


@SLOW
@given(seed=st.integers(min_value=0), changes=edits, cut_at=cut)
def test_mutated_apk_bytes_give_facts_or_invalid_artifact_signatures_included(
    seed: int, changes: list[Edit], cut_at: int | None
) -> None:
    pool = seeds()
    check_apk(mutate(pool[seed % len(pool)], changes, cut_at), verify_signatures=True)


# --- targeted bounds --------------------------------------------------------------------------


def _pool(count: int, strings_start: int, size: int) -> bytes:
    header = struct.pack("<HHIIIIII", 0x0001, 28, size, count, 0, 0, strings_start, 0)
    return header + b"\x00" * (size - len(header))


def test_a_string_pool_declaring_more_strings_than_fit_is_malformed() -> None:
    data = _pool(0x40000000, 28, 64)
    with pytest.raises(MalformedResource, match="declares 1073741824 strings"):
        StringPool(data, read_chunk(data, 0, len(data), 8, "pool"))


def test_string_offsets_past_the_pool_read_as_missing_strings() -> None:
    data = bytearray(_pool(2, 36, 64))
    struct.pack_into("<II", data, 28, 0, 0xFFFFFF00)
    pool = StringPool(bytes(data), read_chunk(bytes(data), 0, len(data), 8, "pool"))
    assert pool.get(0) == ""
    assert pool.get(1) is None
    assert pool.get(2) is None


@pytest.mark.parametrize(
    ("chunk", "message"),
    [
        (struct.pack("<HHI", 1, 8, 0), "header larger than the chunk"),
        (struct.pack("<HHI", 1, 4, 8), "header of 4 bytes"),
        (struct.pack("<HHI", 1, 8, 4096), "past its container"),
        (struct.pack("<HHI", 1, 8, 10) + b"\0\0", "not 4-byte aligned"),
    ],
)
def test_chunks_are_validated_like_android(chunk: bytes, message: str) -> None:
    with pytest.raises(MalformedResource, match=message):
        read_chunk(chunk + b"\0" * 8, 0, len(chunk), 8, "test")


def test_elements_nested_deeper_than_the_bound_are_malformed() -> None:
    root = E("deep")
    node = root
    for _ in range(MAX_DEPTH + 5):
        child = E("deep")
        node.children.append(child)
        node = child
    with pytest.raises(MalformedResource, match="nest deeper"):
        parse_axml(make_axml(root))


def test_an_element_claiming_more_attributes_than_its_chunk_holds_is_malformed() -> None:
    data = bytearray(make_axml(manifest(E("application"))))
    # the first start-element chunk: its attributeCount sits 28 bytes into the chunk
    at = data.index(struct.pack("<HH", 0x0102, 16))
    struct.pack_into("<H", data, at + 28, 0xFFFF)
    with pytest.raises(MalformedResource, match="attributes past its end"):
        parse_axml(bytes(data))


def test_an_apk_of_thousands_of_entries_is_inspected_quickly(tmp_path: Path) -> None:
    files = {f"res/raw/f{i}.bin": b"x" for i in range(5000)}
    files["AndroidManifest.xml"] = make_axml(manifest(E("application")))
    path = tmp_path / "many.apk"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    start = time.monotonic()
    facts = inspect_apk(path, verify_signatures=False)
    assert time.monotonic() - start < 5
    assert facts.entries == 5001
    assert facts.alignment.stored_entries == 5001
