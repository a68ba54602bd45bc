"""Helpers for the Android inspection tests (test_apk*.py, test_aab*.py).

* Fixtures: the generated APKs/AAB in tests/fixtures (always present, ground truth in
  tests/fixtures/expected-generated.json) and the third-party ones in
  ../shared/fixtures/thirdparty (skipped when absent, required when CI=true).
* :func:`badging` runs ``aapt``/``aapt2 dump badging`` live and re-shapes its output like
  expected.json does.
* :func:`make_axml` writes binary XML (UTF-16 string pool, resource map, namespace and
  element chunks) so tests can build manifests the fixtures do not cover; :func:`make_apk`
  zips one.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import struct
import subprocess
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from tests.conftest import FIXTURES, SHARED, need
from tests.conftest import rewrite_zip as rewrite_zip  # re-exported for the inspect tests

GENERATED_EXPECTED = FIXTURES / "expected-generated.json"
SHARED_FIXTURES = SHARED / "fixtures"
SHARED_EXPECTED = SHARED_FIXTURES / "expected.json"
ABSENT = "<thirdparty fixtures absent>"
ANDROID_NS = "http://schemas.android.com/apk/res/android"


@dataclass(frozen=True)
class AndroidFixture:
    name: str
    path: Path
    expected: dict[str, Any]


@cache
def _generated() -> dict[str, Any]:
    return dict(json.loads(GENERATED_EXPECTED.read_text()))


@cache
def _thirdparty() -> dict[str, Any]:
    if not SHARED_EXPECTED.exists():
        return {}
    entries = json.loads(SHARED_EXPECTED.read_text())
    return {k: v for k, v in entries.items() if v["path"].startswith("thirdparty/")}


def fixture_names(kind: str) -> list[str]:
    """Names for parametrize: every generated fixture, then every third-party one."""
    generated = sorted(k for k, v in _generated().items() if v["kind"] == kind)
    thirdparty = sorted(k for k, v in _thirdparty().items() if v["kind"] == kind)
    return generated + (thirdparty or [ABSENT])


def load_fixture(name: str) -> AndroidFixture:
    if name in _generated():
        return AndroidFixture(name, FIXTURES / name, _generated()[name])
    need(name != ABSENT and name in _thirdparty(), f"{SHARED_EXPECTED} is absent")
    entry = _thirdparty()[name]
    path = SHARED_FIXTURES / entry["path"]
    need(path.exists(), f"{path} is absent")
    return AndroidFixture(name, path, entry)


def thirdparty(name: str) -> Path:
    """A third-party fixture by file name (skip locally when ../shared is absent)."""
    return load_fixture(name).path


def dedup(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --- live reference tools ---------------------------------------------------------------------

QUOTED = re.compile(r"(\S+?)='((?:[^'\\]|\\.)*)'")


def tool(name: str) -> str | None:
    return shutil.which(name)


def badging(tool_path: str, apk: Path) -> dict[str, Any]:
    """``aapt dump badging`` re-shaped like gen-expected.py does (ok False on failure)."""
    run = subprocess.run(
        [tool_path, "dump", "badging", str(apk)], capture_output=True, text=True, timeout=60
    )
    out: dict[str, Any] = {
        "ok": run.returncode == 0 and "package:" in run.stdout,
        "package_attrs": {},
        "sdkVersion": None,
        "targetSdkVersion": None,
        "maxSdkVersion": None,
        "application_label": None,
        "application_labels": {},
        "application_icon": None,
        "application_icons": {},
        "native_code": [],
        "debuggable": False,
        "uses_permissions": [],
        "launchable_activity": None,
    }
    for line in run.stdout.splitlines():
        if line.startswith("package:"):
            out["package_attrs"] = dict(QUOTED.findall(line))
        elif m := re.match(r"^(sdkVersion|targetSdkVersion|maxSdkVersion):'(.*)'$", line):
            out[m.group(1)] = m.group(2)
        elif m := re.match(r"^application-label:'(.*)'$", line):
            out["application_label"] = m.group(1)
        elif m := re.match(r"^application-label-([^:]+):'(.*)'$", line):
            out["application_labels"][m.group(1)] = m.group(2)
        elif m := re.match(r"^application-icon-(\d+):'(.*)'$", line):
            out["application_icons"][m.group(1)] = m.group(2)
        elif line.startswith("application:"):
            out["application_icon"] = dict(QUOTED.findall(line)).get("icon")
        elif line.startswith("native-code:"):
            out["native_code"] = re.findall(r"'([^']*)'", line)
        elif line.strip() == "application-debuggable":
            out["debuggable"] = True
        elif line.startswith("uses-permission:"):
            attrs = dict(QUOTED.findall(line))
            if "name" in attrs:
                out["uses_permissions"].append(attrs["name"])
        elif line.startswith("launchable-activity:") and out["launchable_activity"] is None:
            out["launchable_activity"] = dict(QUOTED.findall(line)).get("name")
    attrs = out["package_attrs"]
    out["package"] = attrs.get("name")
    out["versionCode"] = attrs.get("versionCode")
    out["versionName"] = attrs.get("versionName")
    return out


# --- a small binary XML writer ----------------------------------------------------------------

Value = str | bool | int | tuple[str, int]  # ("@", res_id) is a reference


@dataclass
class E:
    """An element to write: ``E("activity", {"name": ".Main"}, [E("intent-filter", ...)])``.

    Attribute keys are android attribute names (looked up in :data:`ATTR_IDS`) or
    ``"plain:<name>"`` for attributes without namespace and resource id (``package``).
    """

    tag: str
    attrs: dict[str, Value] = field(default_factory=dict)
    children: list[E] = field(default_factory=list)


ATTR_IDS = {
    "label": 0x01010001,
    "icon": 0x01010002,
    "name": 0x01010003,
    "permission": 0x01010006,
    "readPermission": 0x01010007,
    "writePermission": 0x01010008,
    "enabled": 0x0101000E,
    "debuggable": 0x0101000F,
    "exported": 0x01010010,
    "authorities": 0x01010018,
    "drawable": 0x01010199,
    "targetActivity": 0x01010202,
    "minSdkVersion": 0x0101020C,
    "versionCode": 0x0101021B,
    "versionName": 0x0101021C,
    "targetSdkVersion": 0x01010270,
    "maxSdkVersion": 0x01010271,
    "testOnly": 0x01010272,
    "allowBackup": 0x01010280,
    "extractNativeLibs": 0x010104EA,
    "usesCleartextTraffic": 0x010104EC,
    "networkSecurityConfig": 0x01010527,
    "compileSdkVersion": 0x01010572,
    "versionCodeMajor": 0x01010576,
}


def _utf16_pool(strings: list[str]) -> bytes:
    offsets = []
    body = b""
    for text in strings:
        offsets.append(len(body))
        encoded = text.encode("utf-16-le")
        body += struct.pack("<H", len(text)) + encoded + b"\x00\x00"
    while len(body) % 4:
        body += b"\x00"
    header_size = 28
    strings_start = header_size + 4 * len(strings)
    size = strings_start + len(body)
    return (
        struct.pack("<HHIIIIII", 0x0001, header_size, size, len(strings), 0, 0, strings_start, 0)
        + b"".join(struct.pack("<I", o) for o in offsets)
        + body
    )


def make_axml(root: E, *, unmapped: frozenset[str] = frozenset()) -> bytes:
    """Binary XML for ``root``; attributes named in ``unmapped`` get no resource id."""
    mapped: list[str] = []
    others: list[str] = []

    def collect(element: E) -> None:
        for key, value in element.attrs.items():
            if key.startswith("plain:"):
                others.append(key[6:])
            elif key in unmapped:
                others.append(key)
            elif key not in mapped:
                mapped.append(key)
            if isinstance(value, str):
                others.append(value)
        others.append(element.tag)
        for child in element.children:
            collect(child)

    collect(root)
    strings = list(mapped)
    for text in ["android", ANDROID_NS, *others]:
        if text not in strings:
            strings.append(text)
    index = {s: i for i, s in enumerate(strings)}
    chunks = [_utf16_pool(strings)]
    ids = [ATTR_IDS[name] for name in mapped]
    chunks.append(
        struct.pack("<HHI", 0x0180, 8, 8 + 4 * len(ids)) + struct.pack(f"<{len(ids)}I", *ids)
    )
    ns = struct.pack("<II", index["android"], index[ANDROID_NS])
    chunks.append(struct.pack("<HHIII", 0x0100, 16, 24, 1, 0xFFFFFFFF) + ns)

    def write(element: E) -> None:
        attrs = b""
        for key, value in element.attrs.items():
            plain = key.startswith("plain:")
            name = key[6:] if plain else key
            namespace = 0xFFFFFFFF if plain else index[ANDROID_NS]
            raw = 0xFFFFFFFF
            if isinstance(value, bool):
                dtype, data = 0x12, 0xFFFFFFFF if value else 0
            elif isinstance(value, int):
                dtype, data = 0x10, value & 0xFFFFFFFF
            elif isinstance(value, tuple):
                dtype, data = 0x01, value[1]
            else:
                dtype, data = 0x03, index[value]
                raw = index[value]
            attrs += struct.pack("<IIIHBBI", namespace, index[name], raw, 8, 0, dtype, data)
        count = len(element.attrs)
        ext = struct.pack("<IIHHHHHH", 0xFFFFFFFF, index[element.tag], 20, 20, count, 0, 0, 0)
        size = 16 + len(ext) + len(attrs)
        chunks.append(struct.pack("<HHIII", 0x0102, 16, size, 1, 0xFFFFFFFF) + ext + attrs)
        for child in element.children:
            write(child)
        end = struct.pack("<II", 0xFFFFFFFF, index[element.tag])
        chunks.append(struct.pack("<HHIII", 0x0103, 16, 24, 1, 0xFFFFFFFF) + end)

    write(root)
    chunks.append(struct.pack("<HHIII", 0x0101, 16, 24, 1, 0xFFFFFFFF) + ns)
    body = b"".join(chunks)
    return struct.pack("<HHI", 0x0003, 8, 8 + len(body)) + body


def manifest(*children: E, package: str = "org.example.app", **attrs: Value) -> E:
    """<manifest package=... versionCode=1 versionName="1.0"> with ``children``."""
    base: dict[str, Value] = {"plain:package": package, "versionCode": 1, "versionName": "1.0"}
    base.update(attrs)
    return E("manifest", base, list(children))


def make_apk(path: Path, files: dict[str, bytes]) -> Path:
    """A zip with ``files`` (deflated), e.g. {"AndroidManifest.xml": make_axml(...)}."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    path.write_bytes(buffer.getvalue())
    return path


# Hostile inputs end within these bounds (docs/inspection-android.md, docs/inspection-ios.md).
TIME_LIMIT = 3.0  # seconds, generous for slow CI machines; most cases take milliseconds
MEMORY_LIMIT = 96 * 1024 * 1024


@contextmanager
def bounded() -> Iterator[None]:
    """Assert that the block ends within TIME_LIMIT and MEMORY_LIMIT of Python allocations."""
    tracemalloc.start()
    start = time.monotonic()
    try:
        yield
    finally:
        elapsed = time.monotonic() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < TIME_LIMIT, f"took {elapsed:.1f}s"
    assert peak < MEMORY_LIMIT, f"peak {peak / 1e6:.0f} MB"
