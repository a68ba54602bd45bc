"""Run one build through the real pipeline: a tenant, a managed key, the tenant's controls,
the artifact in the local blob store, a Worker that claims and processes the job."""

from __future__ import annotations

import dataclasses
import zipfile
from dataclasses import dataclass
from pathlib import Path

from appyard.core import controls
from appyard.core.controls import ProtectionOptions
from appyard.core.models import Build, ConfigVersion, Platform
from appyard.core.ports import chunked
from appyard.runtime import Runtime
from appyard.worker import Worker
from tests.conftest import TenantKey, upload_build


@dataclass
class Processed:
    build: Build
    output: Path | None  # the downloaded output, None when the job failed


def set_controls(
    runtime: Runtime,
    tenant: TenantKey,
    *,
    version: str = "production",
    enable: tuple[str, ...] = (),
    disable: tuple[str, ...] = (),
) -> None:
    svc = runtime.services
    with svc.uow() as uow:
        controls.set_controls(
            uow,
            tenant_id=tenant.tenant_id,
            platform=Platform.ANDROID,
            version=ConfigVersion(version),
            enable=list(enable),
            disable=list(disable),
        )
        uow.commit()


def process(
    runtime: Runtime,
    tenant: TenantKey,
    artifact: Path,
    tmp: Path,
    *,
    version: str = "production",
    signing_key_id: str | None = None,
    options: ProtectionOptions | None = None,
) -> Processed:
    """Upload ``artifact`` as a new build, process it, and fetch its output."""
    svc = runtime.services
    if options is not None:
        svc = dataclasses.replace(svc, protection=options)
    made = upload_build(
        runtime,
        tenant,
        artifact,
        file_name=f"app.{artifact.suffix.lstrip('.')}",
        version=version,
        signing_key_id=signing_key_id,
        services=svc,
    )

    assert Worker(svc).run_once("test-worker")

    with svc.uow() as uow:
        build = uow.builds.get(made.id)
    assert build is not None
    if build.output_key is None:
        return Processed(build, None)
    out = tmp / f"output-{build.id}{artifact.suffix}"
    with svc.store.open_read(build.output_key) as src, open(out, "wb") as dst:
        for chunk in chunked(src):
            dst.write(chunk)
    return Processed(build, out)


def with_entries(src: Path, dst: Path, extra: dict[str, bytes]) -> Path:
    """A copy of the fixture ``src`` with ``extra`` entries added (deflated)."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for info in a.infolist():
            b.writestr(info, a.read(info), compress_type=info.compress_type)
        for name, data in extra.items():
            b.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
    return dst


def entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}
