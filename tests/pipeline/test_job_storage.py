"""How a build job takes its input from the store and puts its output back: on local disk the
input is a hard link and the output is moved in (no copies), and the hash the build records
is the hash of what a client downloads."""

from __future__ import annotations

import hashlib
from pathlib import Path

from appyard.core import builds
from appyard.core.models import BuildStatus
from appyard.runtime import Runtime
from appyard.worker import Worker
from tests.conftest import TenantKey, add_signing_key, upload_build
from tests.pipeline.conftest import process, set_controls
from tests.pipeline.test_transforms import OTHER_KEY, assert_signed_by, release_signed

TRANSFORMS = ("protect.strip_debug", "protect.integrity", "protect.external", "protect.zipalign")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored(runtime: Runtime, key: str) -> bytes:
    with runtime.services.store.open_read(key) as fh:
        return fh.read()


def test_a_signed_output_is_stored_with_the_size_and_hash_the_build_records(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    key_id = add_signing_key(runtime, tenant.tenant_id, key=OTHER_KEY)
    artifact = release_signed(tmp_path, {})
    uploaded = artifact.read_bytes()

    done = process(runtime, tenant, artifact, tmp_path, signing_key_id=key_id)

    assert done.build.status is BuildStatus.COMPLETED, done.build.error_message
    assert done.output is not None
    output = done.output.read_bytes()
    assert (done.build.output_size, done.build.output_sha256) == (len(output), sha256(output))
    assert_signed_by(done.output, OTHER_KEY)
    # the input the job linked stays as it was uploaded, and its hash is the upload's
    assert stored(runtime, done.build.source_key) == uploaded
    assert done.build.sha256 == sha256(uploaded)


def test_an_output_no_transform_changed_is_the_upload_under_a_key_of_its_own(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    set_controls(runtime, tenant, disable=TRANSFORMS)
    artifact = release_signed(tmp_path, {})
    uploaded = artifact.read_bytes()

    done = process(runtime, tenant, artifact, tmp_path)

    assert done.build.status is BuildStatus.COMPLETED, done.build.error_message
    assert done.build.output_key not in (None, done.build.source_key)
    assert done.build.output_sha256 == sha256(uploaded)
    runtime.services.store.delete(done.build.source_key)  # retention removes inputs first
    assert done.build.output_key is not None
    assert stored(runtime, done.build.output_key) == uploaded


def test_a_job_run_again_replaces_what_an_interrupted_attempt_stored(
    runtime: Runtime, tenant: TenantKey, tmp_path: Path
) -> None:
    set_controls(runtime, tenant, disable=TRANSFORMS)
    artifact = release_signed(tmp_path, {})
    build = upload_build(runtime, tenant, artifact)
    # a worker killed after storing the output and before recording it left this behind
    runtime.services.store.write(builds.output_key(build), [b"half of an earlier attempt"])

    assert Worker(runtime.services).run_once("test-worker")

    with runtime.services.uow() as uow:
        done = uow.builds.get(build.id)
    assert done is not None and done.status is BuildStatus.COMPLETED, done
    assert done.output_key is not None
    assert stored(runtime, done.output_key) == artifact.read_bytes()
