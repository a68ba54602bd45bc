"""Hostile artifacts through every ingest dialect: each ends as a clear 4xx at the door or as a
failed build with a reason, never a 500 and never a completed build, within a memory bound
this test asserts (Python allocations from the first byte sent to the worker going idle) and a
generous time limit that only catches hangs (speed belongs in ``bench/``).

The artifacts are made here, from the same writers as the inspection tests: truncated, empty,
garbage manifests, a string pool claiming 2^31 strings, ``../`` and absolute entry names,
manifest, resource-table and bundle bombs, 150,000 entries, billion laughs and deep XML, a
cyclic binary plist, a 200 MB Info.plist, an IPA without ``Payload/``."""

from __future__ import annotations

import base64
import io
import plistlib
import struct
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from appyard.app import create_app
from appyard.core import apps, identity
from appyard.core.models import BuildStatus, TokenKind
from appyard.runtime import Runtime
from appyard.worker import Worker
from tests.conftest import FIXTURES, SCALE_OUT, TenantKey
from tests.inspect.conftest import E, make_axml, manifest
from tests.inspect.test_ipa_factory import info_plist, make_ipa
from tests.inspect.test_ipa_hostile import b_array, b_dict, b_str, bplist

pytestmark = pytest.mark.skipif(SCALE_OUT, reason="in-process, on the embedded default")

RELEASE_APK = FIXTURES / "fixture-release-v1v2v3.apk"
HANG_SECONDS = 60  # catches hangs only
MEMORY = 8 * 1024 * 1024  # Python allocations beyond the body the test client holds
MEMORY_MANY_ENTRIES = 16 * 1024 * 1024  # 150,000 entries: refused from the end record
BOMB = 64 * 1024 * 1024


# --- the artifacts --------------------------------------------------------------------------------


def zip_of(
    path: Path, entries: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED
) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            zf.writestr(info, data)
    return path


def good_manifest() -> bytes:
    return make_axml(manifest(E("application")))


def string_count_2_31() -> bytes:
    data = bytearray(good_manifest())
    pool = data.index(struct.pack("<HH", 0x0001, 28))
    struct.pack_into("<I", data, pool + 8, 1 << 31)  # stringCount
    return bytes(data)


def huge_info_plist(path: Path, size: int = 200 * 1024 * 1024) -> Path:
    """An IPA whose Info.plist inflates to ``size`` bytes, written without holding it."""
    head = (
        b'<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict>'
        b"<key>CFBundleIdentifier</key><string>com.example.app</string>"
        b"<key>Padding</key><string>"
    )
    tail = b"</string></dict></plist>"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Payload/", b"")
        with zf.open("Payload/Example.app/Info.plist", "w", force_zip64=True) as fh:
            fh.write(head)
            block = b"A" * (1024 * 1024)
            for _ in range((size - len(head) - len(tail)) // len(block)):
                fh.write(block)
            fh.write(tail)
    return path


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE plist [<!ENTITY a "aaaaaaaaaa">'
    + b"".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'.encode() for i in range(9)
    )
    + b']><plist version="1.0"><dict><key>CFBundleIdentifier</key><string>&j;</string>'
    b"</dict></plist>"
)
DEEP_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict>'
    b"<key>CFBundleIdentifier</key><string>com.example.app</string><key>Deep</key>"
    + b"<array>" * 100_000
    + b"</array>" * 100_000
    + b"</dict></plist>"
)


def make_artifact(name: str, folder: Path) -> Path:
    base = RELEASE_APK.read_bytes()
    path = folder / name
    if name == "empty.apk":
        path.write_bytes(b"")
    elif name == "truncated.apk":
        path.write_bytes(base[: len(base) // 2])
    elif name == "text.apk":
        path.write_bytes(b"this is not a zip archive\n" * 100)
    elif name == "garbage-manifest.apk":
        zip_of(path, [("AndroidManifest.xml", bytes(range(256)) * 40), ("classes.dex", b"dex")])
    elif name == "string-count.apk":
        zip_of(path, [("AndroidManifest.xml", string_count_2_31()), ("classes.dex", b"dex")])
    elif name == "dotdot.apk":
        zip_of(path, [("AndroidManifest.xml", good_manifest()), ("../../evil.so", b"x")])
    elif name == "absolute.apk":
        zip_of(path, [("AndroidManifest.xml", good_manifest()), ("/etc/cron.d/evil", b"x")])
    elif name == "manifest-bomb.apk":
        zip_of(path, [("AndroidManifest.xml", b"\0" * BOMB)])
    elif name == "resources-bomb.apk":
        zip_of(path, [("AndroidManifest.xml", good_manifest()), ("resources.arsc", b"\0" * BOMB)])
    elif name == "bundle-bomb.aab":
        zip_of(
            path,
            [
                ("BundleConfig.pb", b""),
                ("base/manifest/AndroidManifest.xml", b"\0" * BOMB),
                ("base/dex/classes.dex", b"dex"),
            ],
        )
    elif name == "many-entries.apk":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr("AndroidManifest.xml", good_manifest())
            for i in range(150_000):
                zf.writestr(f"res/raw/f{i}", b"")
    elif name == "billion-laughs.ipa":
        make_ipa(path, info_bytes=BILLION_LAUGHS)
    elif name == "deep-xml.ipa":
        make_ipa(path, info_bytes=DEEP_XML)
    elif name == "cyclic.ipa":
        make_ipa(path, info_bytes=bplist([b_dict((1, 2)), b_str("CFBundleId"), b_array(2)]))
    elif name == "huge-plist.ipa":
        huge_info_plist(path)
    elif name == "no-payload.ipa":
        zip_of(path, [("Example.app/Info.plist", plistlib.dumps(info_plist()))])
    else:
        raise AssertionError(name)
    return path


ARTIFACTS = [
    "empty.apk",
    "truncated.apk",
    "text.apk",
    "garbage-manifest.apk",
    "string-count.apk",
    "dotdot.apk",
    "absolute.apk",
    "manifest-bomb.apk",
    "resources-bomb.apk",
    "bundle-bomb.aab",
    "many-entries.apk",
    "billion-laughs.ipa",
    "deep-xml.ipa",
    "cyclic.ipa",
    "huge-plist.ipa",
    "no-payload.ipa",
]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    return {name: make_artifact(name, folder) for name in ARTIFACTS}


# --- the dialects' doors --------------------------------------------------------------------------


@dataclass
class Door:
    """One way in: sends ``data`` named ``name``; the refusal at the door, or None when the
    upload was taken (and a build is left to the worker)."""

    name: str
    send: Callable[[TestClient, Runtime, TenantKey, str, bytes], Any]


def _raw_token(runtime: Runtime, tenant: TenantKey, kind: TokenKind) -> str:
    svc = runtime.services
    with svc.transaction() as uow:
        app_id = None
        if kind is TokenKind.APP:
            app_id = apps.named(
                uow, svc.clock, tenant_id=tenant.tenant_id, slug="hostile", create=True
            ).id
        return identity.create_token(
            uow, svc.clock, tenant_id=tenant.tenant_id, kind=kind, app_id=app_id
        ).raw


def _platform(name: str) -> str:
    return "ios" if name.endswith(".ipa") else "android"


def _refused(r: Any) -> Any:
    """The door's answer: None when the upload was taken, else the response."""
    return None if r.status_code < 300 else r


def automation(
    client: TestClient, runtime: Runtime, tenant: TenantKey, name: str, data: bytes
) -> Any:
    auth = {"Authorization": f"Bearer {tenant.key}"}
    body = {"file_name": name, "platform": _platform(name), "version": "production"}
    r = client.post("/automate/upload", json=body, headers=auth)
    if r.status_code != 200:
        return r
    return _refused(client.put(r.json()["upload_url"], content=data))


def management(
    client: TestClient, runtime: Runtime, tenant: TenantKey, name: str, data: bytes
) -> Any:
    raw = _raw_token(runtime, tenant, TokenKind.MANAGEMENT)
    headers = {
        "Authorization": f"Bearer {base64.b64encode(raw.encode()).decode()}",
        "tenant": tenant.tenant_id,
    }
    body = {
        "file_name": name,
        "platform": _platform(name),
        "version": "production",
        "file_size": len(data),
    }
    r = client.post("/frontend/upload_application_build", json=body, headers=headers)
    if r.status_code != 200:
        return r
    return _refused(
        client.put(
            r.json()["url"], content=data, headers={"Content-Type": "application/octet-stream"}
        )
    )


def store_ci(
    client: TestClient, runtime: Runtime, tenant: TenantKey, name: str, data: bytes
) -> Any:
    raw = _raw_token(runtime, tenant, TokenKind.CI)
    files = {"apk": (name, io.BytesIO(data), "application/vnd.android.package-archive")}
    r = client.post(
        "/portal/api/uploads/ci", headers={"Authorization": f"Bearer {raw}"}, files=files
    )
    return _refused(r)


def distribution(
    client: TestClient, runtime: Runtime, tenant: TenantKey, name: str, data: bytes
) -> Any:
    raw = _raw_token(runtime, tenant, TokenKind.APP)
    files = {"build": (name, io.BytesIO(data), "application/octet-stream")}
    r = client.post(
        "/v1/integrations/builds", headers={"Authorization": f"Bearer {raw}"}, files=files
    )
    return _refused(r)


def upload_context(
    client: TestClient, runtime: Runtime, tenant: TenantKey, name: str, data: bytes
) -> Any:
    auth = {"Authorization": f"Bearer {_raw_token(runtime, tenant, TokenKind.CONTEXT)}"}
    r = client.post("/api/v1/projects/hostile/build-uploads", headers=auth)
    if r.status_code != 200:
        return r
    body = {"contextId": r.json()["id"], "buildType": "APK", "buildFileName": name}
    r = client.post("/api/v1/projects/hostile/builds", json=body, headers=auth)
    if r.status_code != 200:
        return r
    spec = r.json()["uploadSpec"]
    headers = {**spec["headers"], "Content-Length": str(len(data))}
    return _refused(client.request(spec["method"], spec["url"], headers=headers, content=data))


DOORS = [
    Door("automation", automation),
    Door("management", management),
    Door("store_ci", store_ci),
    Door("distribution", distribution),
    Door("upload_context", upload_context),
]


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime, start_worker=False)) as c:
        yield c


@pytest.mark.parametrize("door", DOORS, ids=[d.name for d in DOORS])
@pytest.mark.parametrize("name", ARTIFACTS)
def test_a_hostile_artifact_is_refused_or_fails_with_a_reason_in_bounded_memory(
    client: TestClient,
    runtime: Runtime,
    tenant: TenantKey,
    artifacts: dict[str, Path],
    door: Door,
    name: str,
) -> None:
    data = artifacts[name].read_bytes()
    svc = runtime.services
    tracemalloc.start()
    started = time.monotonic()
    try:
        refusal = door.send(client, runtime, tenant, name, data)
        while Worker(svc).run_once("hostile"):
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - started

    with svc.uow() as uow:
        made = uow.builds.recent(tenant.tenant_id, 10)
    if refusal is not None:
        assert 400 <= refusal.status_code < 500, refusal.text
        assert refusal.headers["content-type"].startswith("application/json"), refusal.text
        assert all(b.status is not BuildStatus.COMPLETED for b in made)
    else:
        (build,) = made
        assert build.status is BuildStatus.FAILED, (build.status, build.error_message)
        assert build.error_message and "Traceback" not in build.error_message
    bound = MEMORY_MANY_ENTRIES if name == "many-entries.apk" else MEMORY
    # the test client holds the body once (and the form writer a second time for forms)
    assert peak - 2 * len(data) < bound, f"{peak / 1e6:.0f} MB for {len(data) / 1e6:.1f} MB"
    assert elapsed < HANG_SECONDS
