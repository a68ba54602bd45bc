"""Hostile bundles: mutated bytes give facts or InvalidArtifact, never another exception.

Levels as for APKs (test_apk_hostile.py): the protocol-buffer parsers alone, bundles re-zipped
with one mutated member (manifest, resources.pb, BundleConfig.pb, a signature file), and
mutated bytes of the whole bundle with JAR verification. The third-party bundle is trimmed to
its manifests, tables and signature files so every example stays small.
"""

from __future__ import annotations

import tempfile
import time
import zipfile
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appyard.errors import InvalidArtifact
from appyard.inspect.aab import AabFacts, inspect_aab
from appyard.inspect.android_manifest import read_manifest
from appyard.inspect.android_resources import AAPT_CONFIG, MalformedResource, ResValue
from appyard.inspect.axml import MAX_DEPTH
from appyard.inspect.proto import ProtoResourceTable, fields, parse_proto_xml
from tests.conftest import SHARED
from tests.inspect.conftest import load_fixture
from tests.inspect.test_apk_hostile import Edit, cut, edits, mutate

PER_EXAMPLE_SECONDS = 3.0
THIRDPARTY_BUNDLE = SHARED / "fixtures" / "thirdparty" / "install-time-permanent-modules.aab"
KEEP = ("manifest/AndroidManifest.xml", "resources.pb", "BundleConfig.pb", "META-INF/")
MEMBERS = (
    "base/manifest/AndroidManifest.xml",
    "base/resources.pb",
    "BundleConfig.pb",
    "META-INF/MANIFEST.MF",
)


@cache
def seeds() -> tuple[bytes, ...]:
    out = [load_fixture("fixture-bundle.aab").path.read_bytes()]
    if THIRDPARTY_BUNDLE.exists():
        with tempfile.TemporaryDirectory() as tmp:
            trimmed = Path(tmp) / "trimmed.aab"
            with zipfile.ZipFile(THIRDPARTY_BUNDLE) as zin, zipfile.ZipFile(trimmed, "w") as zout:
                for info in zin.infolist():
                    if any(k in info.filename for k in KEEP):
                        zout.writestr(info, zin.read(info))
            out.append(trimmed.read_bytes())
    return tuple(out)


@cache
def member(name: str) -> tuple[bytes, ...]:
    out = []
    for seed in seeds():
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "seed.aab"
            path.write_bytes(seed)
            with zipfile.ZipFile(path) as zf:
                out.append(zf.read(name))
    return tuple(out)


def check_aab(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.aab"
        path.write_bytes(data)
        start = time.monotonic()
        try:
            facts = inspect_aab(path)
        except InvalidArtifact as exc:
            assert exc.message
        else:
            assert isinstance(facts, AabFacts)
            assert facts.identity.identifier
        assert time.monotonic() - start < PER_EXAMPLE_SECONDS


FAST = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOW = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FAST
@given(seed=st.integers(min_value=0), changes=edits, cut_at=cut)
def test_mutated_proto_manifest_parses_or_is_malformed(
    seed: int, changes: list[Edit], cut_at: int | None
) -> None:
    pool = member("base/manifest/AndroidManifest.xml")
    try:
        read_manifest(parse_proto_xml(mutate(pool[seed % len(pool)], changes, cut_at)), None)
    except MalformedResource as exc:
        assert str(exc)


@SLOW
@given(seed=st.integers(min_value=0), changes=edits, cut_at=cut)
def test_mutated_proto_resource_table_parses_or_is_malformed(
    seed: int, changes: list[Edit], cut_at: int | None
) -> None:
    pool = member("base/resources.pb")
    try:
        table = ProtoResourceTable(mutate(pool[seed % len(pool)], changes, cut_at))
        table.locales()
        table.densities()
        for res_id in (0x7F0A0000, 0x7F0B0000, 0x7F0C0000, 0x7F0D0000, 0x7F100000):
            table.resolve(ResValue(0x01, res_id), AAPT_CONFIG)
            table.name(res_id)
    except MalformedResource as exc:
        assert str(exc)


@SLOW
@given(
    seed=st.integers(min_value=0),
    name=st.sampled_from(MEMBERS),
    changes=edits,
    cut_at=cut,
)
def test_bundles_with_a_mutated_member_give_facts_or_invalid_artifact(
    seed: int, name: str, changes: list[Edit], cut_at: int | None
) -> None:
    source = seeds()[seed % len(seeds())]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src.aab"
        src.write_bytes(source)
        out = Path(tmp) / "out.aab"
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
            for info in zin.infolist():
                data = zin.read(info)
                if info.filename == name:
                    data = mutate(data, changes, cut_at)
                zout.writestr(info, data)
        check_aab(out.read_bytes())


@SLOW
@given(seed=st.integers(min_value=0), changes=edits, cut_at=cut)
def test_mutated_bundle_bytes_give_facts_or_invalid_artifact(
    seed: int, changes: list[Edit], cut_at: int | None
) -> None:
    pool = seeds()
    check_aab(mutate(pool[seed % len(pool)], changes, cut_at))


# --- targeted bounds --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
        (b"\x08\xff", "runs past the end"),
        (b"\x12\x10abc", "runs past the end"),
        (b"\x0b", "wire type 3"),
        (b"\x00\x01", "field number 0"),
        (b"\x0d\x01\x02", "runs past the end"),
    ],
)
def test_malformed_protobuf_wire_data_is_malformed(data: bytes, message: str) -> None:
    with pytest.raises(MalformedResource, match=message):
        list(fields(memoryview(data)))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _element(name: bytes, children: list[bytes]) -> bytes:
    """An XmlElement (name = 3, child XmlNode = 5 whose element = 1)."""
    return _field(3, name) + b"".join(_field(5, _field(1, c)) for c in children)


def test_proto_xml_nested_deeper_than_the_bound_is_malformed() -> None:
    element = _element(b"leaf", [])
    for _ in range(MAX_DEPTH + 5):
        element = _element(b"deep", [element])
    with pytest.raises(MalformedResource, match="nest deeper"):
        parse_proto_xml(_field(1, element))
