"""Mutated IPAs: inspect_ipa returns facts or raises InvalidArtifact, nothing else, quickly.

Two mutation levels: bytes of the whole zip (most mutations hit a CRC or a header), and bytes
of one member (Info.plist, the profile, the icon) re-zipped with a correct CRC, so the plist,
CMS and PNG parsers themselves see the damage.
"""

from __future__ import annotations

import tempfile
import time
import zipfile
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appyard.errors import InvalidArtifact
from appyard.inspect.ipa import IpaFacts, inspect_ipa
from tests.conftest import SHARED
from tests.inspect.test_ipa_factory import (
    gradient_rgba,
    info_plist,
    make_cgbi_png,
    make_ipa,
    make_profile,
)

PER_EXAMPLE_SECONDS = 2.0
MEMBERS = ("Info.plist", "embedded.mobileprovision", "AppIcon60x60@2x.png")


@cache
def seeds() -> tuple[bytes, ...]:
    """Small IPAs: built here, plus the third-party fixtures when ../shared is present."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for binary in (True, False):
            path = make_ipa(
                Path(tmp) / f"seed{binary}.ipa",
                info=info_plist(),
                binary_plist=binary,
                profile=make_profile(get_task_allow=binary, devices=("d1",)),
                icons={"AppIcon60x60@2x.png": make_cgbi_png(6, 6, gradient_rgba(6, 6))},
                compression=zipfile.ZIP_STORED if binary else zipfile.ZIP_DEFLATED,
            )
            out.append(path.read_bytes())
    third = SHARED / "fixtures" / "thirdparty"
    for name in ("very-capable-app.ipa", "com.fake.IpaApp_1000000000001.ipa"):
        if (third / name).exists():
            out.append((third / name).read_bytes())
    return tuple(out)


def check(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.ipa"
        path.write_bytes(data)
        start = time.monotonic()
        try:
            facts = inspect_ipa(path)
        except InvalidArtifact as exc:
            assert exc.message
            assert exc.details.get("reason")
        else:
            assert isinstance(facts, IpaFacts)
            assert facts.bundle_id
        assert time.monotonic() - start < PER_EXAMPLE_SECONDS


mutation = st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255))


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        if buf:
            buf[pos % len(buf)] = value
    if cut is not None and buf:
        del buf[cut % len(buf) :]
    return bytes(buf)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0),
    edits=st.lists(mutation, max_size=8),
    cut=st.none() | st.integers(min_value=0),
)
def test_mutated_zip_bytes_give_facts_or_invalid_artifact(
    seed: int, edits: list[tuple[int, int]], cut: int | None
) -> None:
    pool = seeds()
    check(mutate(pool[seed % len(pool)], edits, cut))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0),
    member=st.sampled_from(MEMBERS),
    edits=st.lists(mutation, min_size=1, max_size=6),
    cut=st.none() | st.integers(min_value=0),
    insert=st.binary(max_size=16),
)
def test_mutated_members_give_facts_or_invalid_artifact(
    seed: int, member: str, edits: list[tuple[int, int]], cut: int | None, insert: bytes
) -> None:
    pool = seeds()
    source = pool[seed % len(pool)]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src.ipa"
        src.write_bytes(source)
        out = Path(tmp) / "out.ipa"
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
            for info in zin.infolist():
                data = zin.read(info)
                if info.filename.endswith("/" + member):
                    data = mutate(data, edits, cut)
                    if insert:
                        pos = edits[0][0] % (len(data) + 1)
                        data = data[:pos] + insert + data[pos:]
                zout.writestr(info, data)
        check(out.read_bytes())
