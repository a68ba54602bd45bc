"""The jobs that work on a build, as stages recorded as the build's ``progress``.

``build.process``: Downloading inputs -> Inspecting (facts, identity, findings; a blocking
finding fails the job) -> Applying protection (the tenant's enabled transforms) -> Packaging
(the output must still be a valid artifact of its kind) -> Signing (managed keys; skipped
when the build has none) -> Uploading output.
``build.inspect``: Downloading inputs -> Inspecting; findings are recorded, none blocks, and
the input is the build's output.
``version.validate``: Downloading inputs -> Inspecting; the store version's validation run
passes unless a finding blocks.

Every stage works in a private temporary directory and writes its results under keys derived
from the build id, so running a stage twice (after a worker died) gives the same result. Each
stage is its own short transaction; the lease is renewed between stages and by a heartbeat
while a stage runs, and a worker that lost its lease stops without writing.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appyard import errors
from appyard.core import apps, builds, controls, detections, jobs, signing_keys, spool, versions
from appyard.core.context import Services
from appyard.core.models import Build, Finding, Job, SigningKey, Stage
from appyard.core.ports import UnitOfWork, copy_hashed
from appyard.inspect import inspect_file, to_jsonable
from appyard.pipeline import transforms
from appyard.signing.ios.resign import resign_ipa
from appyard.signing.keystore import SigningMaterial
from appyard.signing.lineage import Rotation
from appyard.signing.sign import sign_aab, sign_apk

log = logging.getLogger("appyard.pipeline")


class LeaseLost(Exception):
    """Another worker owns the job now; stop without writing anything."""


class _Heartbeat:
    """Renews the job's lease while it works; past the job's wall-clock budget it fails the
    job with a message and stops renewing (the work then stops without writing)."""

    def __init__(
        self,
        services: Services,
        job: Job,
        owner: str,
        also_failed: Callable[[UnitOfWork], None] = lambda uow: None,
    ) -> None:
        self.services, self.job, self.owner = services, job, owner
        self.also_failed = also_failed
        self.lost = False
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"lease-{job.id}")

    def _run(self) -> None:
        budget = self.services.job_timeout_seconds
        interval = max(0.2, min(self.services.lease_seconds / 3, budget / 4))
        while not self._stop.wait(interval):
            if time.monotonic() - self.started > budget:
                self._out_of_time(budget)
                self.lost = True
                return
            if not self.renew():
                self.lost = True
                return

    def _out_of_time(self, budget: float) -> None:
        s = self.services
        with s.transaction() as uow:
            current = uow.jobs.get(self.job.id)
            if current is None or current.lease_owner != self.owner:
                return
            jobs.fail(
                uow,
                s.clock,
                job=current,
                message=f"Processing took longer than the {budget:g} s a job may take; it was "
                "stopped (APPYARD_JOB_TIMEOUT_SECONDS).",
            )
            self.also_failed(uow)
        log.warning("job.timed_out job_id=%s budget=%s", self.job.id, budget)

    def renew(self) -> bool:
        s = self.services
        with s.uow() as uow:
            ok = jobs.renew(
                uow, s.clock, job_id=self.job.id, owner=self.owner, lease_seconds=s.lease_seconds
            )
            uow.commit()
        return ok

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Inspected:
    """What the first two stages leave for the rest."""

    build: Build
    kind: str  # apk, aab, ipa
    source: Path  # the input, in the job's work directory
    facts: Any
    enabled: list[str]
    findings: list[Finding]

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "blocking"]


class BuildJob:
    """A job on one build: lease, stages, failure. Subclasses say what :meth:`work` does."""

    def __init__(self, services: Services, job: Job, owner: str) -> None:
        assert job.build_id is not None, f"job {job.id} of kind {job.kind} names no build"
        self.s = services
        self.job = job
        self.build_id = job.build_id
        self.owner = owner
        self.heartbeat = _Heartbeat(services, job, owner, self.failed)

    @contextmanager
    def stage(self, stage: Stage) -> Iterator[None]:
        if self.heartbeat.lost or not self.heartbeat.renew():
            raise LeaseLost()
        with self.s.uow() as uow:
            jobs.set_progress(uow, self.s.clock, build_id=self.build_id, stage=stage)
            uow.commit()
        log.info(
            "job.stage job_id=%s build_id=%s stage=%r", self.job.id, self.build_id, stage.value
        )
        yield
        if self.heartbeat.lost:
            raise LeaseLost()

    def _build(self) -> Build:
        with self.s.uow() as uow:
            build = uow.builds.get(self.build_id)
        if build is None:
            raise errors.NotFound(f"Build {self.build_id} is gone.")
        return build

    def run(self) -> None:
        with (
            self.heartbeat,
            tempfile.TemporaryDirectory(prefix=f"job-p{os.getpid()}-", dir=self.s.work_dir) as tmp,
        ):
            try:
                with spool.disk_errors():  # a full disk fails the job with a message
                    self.work(Path(tmp))
            except LeaseLost:
                log.warning("job.lease_lost job_id=%s", self.job.id)
            except errors.AppyardError as exc:
                self._fail(exc.message)
            except Exception:
                log.exception("job.crashed job_id=%s build_id=%s", self.job.id, self.build_id)
                self._fail(
                    "Internal error while processing; the server log has the details "
                    f"(search for job_id={self.job.id})."
                )

    def work(self, tmp: Path) -> None:
        raise NotImplementedError

    def current(self, uow: UnitOfWork) -> Job:
        found = uow.jobs.get(self.job.id)
        if found is None or found.lease_owner != self.owner:
            raise LeaseLost()
        return found

    def failed(self, uow: UnitOfWork) -> None:
        """What else ends when the job fails (a subclass's own records)."""

    def _fail(self, message: str) -> None:
        if self.heartbeat.lost:
            return
        with self.s.transaction() as uow:
            try:
                current = self.current(uow)
            except LeaseLost:
                return
            jobs.fail(uow, self.s.clock, job=current, message=message)
            self.failed(uow)
        log.info("job.failed job_id=%s build_id=%s", self.job.id, self.build_id)

    # -- the stages every kind shares -----------------------------------------------------------

    def download_and_inspect(self, tmp: Path) -> Inspected:
        build = self._build()
        kind = build.file_name.rsplit(".", 1)[1]
        source = tmp / f"input.{kind}"
        with self.stage(Stage.DOWNLOADING):  # on local disk: a hard link, hashed
            fetched = self.s.store.fetch(build.source_key, source)
            size, sha256 = fetched.size, fetched.sha256

        with self.stage(Stage.INSPECTING):
            facts = inspect_file(source, kind)
            found = facts.identity
            with self.s.uow() as uow:
                enabled = controls.enabled(
                    uow,
                    tenant_id=build.tenant_id,
                    platform=build.platform,
                    version=build.config_version,
                )
                app = (
                    apps.bind(
                        uow,
                        uow.apps.get(build.app_id) or _gone(build.app_id),
                        platform=build.platform,
                        identifier=found.identifier,
                    )
                    if build.app_id
                    else apps.find_or_create(
                        uow,
                        self.s.clock,
                        tenant_id=build.tenant_id,
                        platform=build.platform,
                        identifier=found.identifier,
                    )
                )
                findings = detections.evaluate(
                    uow, self.s.clock, build=build, facts=facts, enabled=enabled
                )
                jobs.record_findings(uow, build_id=build.id, findings=findings)
                icon = getattr(facts, "icon", None)
                if icon is not None:  # every build's icon, for pages and answers that show it
                    self.s.store.write(builds.icon_key(build), [icon.png])
                build = jobs.update_build(
                    uow,
                    self.s.clock,
                    build_id=build.id,
                    app_id=app.id,
                    size=size,
                    sha256=sha256,
                    identifier=found.identifier,
                    version_code=found.version_code,
                    version_name=found.version_name,
                    facts=to_jsonable(facts),
                )
                uow.commit()
        return Inspected(
            build=build, kind=kind, source=source, facts=facts, enabled=enabled, findings=findings
        )


def _gone(app_id: str | None) -> Any:
    raise apps.AppNotFound(f"The build's app {app_id} was deleted.")


class ProcessBuild(BuildJob):
    """``build.process``: the whole pipeline, ending with a stored, signed output."""

    def __init__(self, services: Services, job: Job, owner: str) -> None:
        super().__init__(services, job, owner)
        self._key: tuple[SigningKey, SigningMaterial] | None = None
        self._rotation: Rotation | None = None

    def work(self, tmp: Path) -> None:
        seen = self.download_and_inspect(tmp)
        build, kind = seen.build, seen.kind
        if seen.blocking:
            raise errors.InvalidArtifact(
                "Blocked by detection controls: "
                + "; ".join(f"{f.code}: {f.message}" for f in seen.blocking)
            )

        with self.stage(Stage.PROTECTING):
            context = transforms.TransformContext(
                workdir=tmp,
                options=self.s.protection,
                signing_material=lambda: self._signing_material(build),
            )
            output = transforms.apply(seen.enabled, kind, seen.source, context)

        with self.stage(Stage.PACKAGING):
            inspect_file(output, kind)  # the output must still be a valid artifact

        with self.stage(Stage.SIGNING):
            signed = False
            if build.signing_key_id is not None:
                output = self._sign(build, kind, output, tmp)
                signed = True

        with self.stage(Stage.UPLOADING):  # on local disk: moved into the store, not copied
            key = builds.output_key(build)
            with open(output, "rb") as fh:
                size, sha256 = copy_hashed(fh)
            self.s.store.delete(key)  # what an earlier, interrupted attempt stored
            self.s.store.adopt(key, output)

        with self.s.transaction() as uow:
            jobs.succeed(
                uow,
                self.s.clock,
                job=self.current(uow),
                output_key=key,
                output_size=size,
                output_sha256=sha256,
                signed=signed,
            )
        log.info("job.completed job_id=%s build_id=%s bytes=%d", self.job.id, build.id, size)

    def _signing_material(self, build: Build) -> SigningMaterial | None:
        """The build's managed key, opened once (the integrity manifest and the signature
        use the same key); failures become signing_error_message."""
        if build.signing_key_id is None:
            return None
        if self._key is None:
            try:
                with self.s.uow() as uow:
                    now = self.s.clock.now()
                    key = signing_keys.material(
                        uow, self.s.sealer(), key_id=build.signing_key_id, now=now
                    )
                    self._rotation = signing_keys.rotation(
                        uow, self.s.sealer(), key=key[0], now=now
                    )
                    self._key = key
            except errors.AppyardError as exc:
                self._signing_failed(build, exc)
                raise
        return self._key[1]

    def _signing_failed(self, build: Build, exc: errors.AppyardError) -> None:
        with self.s.uow() as uow:
            jobs.update_build(
                uow, self.s.clock, build_id=build.id, signing_error_message=exc.message
            )
            uow.commit()

    def _sign(self, build: Build, kind: str, src: Path, tmp: Path) -> Path:
        """Sign with the build's managed key; failures become signing_error_message."""
        material = self._signing_material(build)
        assert material is not None and self._key is not None
        try:
            out = tmp / f"signed.{kind}"
            if kind == "apk":
                sign_apk(src, out, material, rotation=self._rotation)
            elif kind == "aab":
                sign_aab(src, out, material)
            else:  # an IPA: the key's profile, else the IPA's own when it lists the certificate
                with self.s.uow() as uow:
                    profile = signing_keys.open_profile(
                        uow, self.s.sealer(), key_id=self._key[0].id
                    )
                profiles = [profile] if profile else []
                resign_ipa(
                    src, out, material, profiles=profiles, now=self.s.clock.now(), workdir=tmp
                )
        except errors.AppyardError as exc:
            self._signing_failed(build, exc)
            raise
        log.info("job.signed build_id=%s key_id=%s", build.id, self._key[0].id)
        return out


class InspectBuild(BuildJob):
    """``build.inspect``: facts and findings (none blocks); the input is the output."""

    def work(self, tmp: Path) -> None:
        self.input_is_output(self.download_and_inspect(tmp).build)
        log.info("job.inspected job_id=%s build_id=%s", self.job.id, self.build_id)

    def input_is_output(self, build: Build) -> None:
        """The job succeeds with the uploaded file as the build's output (unsigned)."""
        with self.s.transaction() as uow:
            jobs.succeed(
                uow,
                self.s.clock,
                job=self.current(uow),
                output_key=build.source_key,
                output_size=build.size,
                output_sha256=build.sha256,
                signed=False,
            )


class KeepBuild(InspectBuild):
    """``build.keep``: a custom-platform package is distributed as it was uploaded (its
    SHA-256 taken here: uploads are not hashed as they arrive)."""

    def work(self, tmp: Path) -> None:
        build = self._build()
        if build.sha256 is None:
            with self.stage(Stage.DOWNLOADING):
                with self.s.store.open_read(build.source_key) as src:
                    _, sha256 = copy_hashed(src)
            with self.s.transaction() as uow:
                build = jobs.update_build(uow, self.s.clock, build_id=build.id, sha256=sha256)
        self.input_is_output(build)
        log.info("job.kept job_id=%s build_id=%s", self.job.id, self.build_id)


class ValidateVersion(BuildJob):
    """``version.validate``: a store version's validation run."""

    def work(self, tmp: Path) -> None:
        seen = self.download_and_inspect(tmp)
        with self.s.transaction() as uow:
            jobs.succeed(uow, self.s.clock, job=self.current(uow))
            versions.finish_validation(
                uow,
                self.s.clock,
                build_id=self.build_id,
                passed=not seen.blocking,
                signer_sha256=",".join(detections.signers_of(seen.facts)) or None,
            )
        log.info("version.validated build_id=%s passed=%s", self.build_id, not seen.blocking)

    def failed(self, uow: UnitOfWork) -> None:
        versions.fail_validation(uow, self.s.clock, build_id=self.build_id)


def process_build(services: Services, job: Job, owner: str) -> None:
    ProcessBuild(services, job, owner).run()


def inspect_build(services: Services, job: Job, owner: str) -> None:
    InspectBuild(services, job, owner).run()


def keep_build(services: Services, job: Job, owner: str) -> None:
    KeepBuild(services, job, owner).run()


def validate_version(services: Services, job: Job, owner: str) -> None:
    ValidateVersion(services, job, owner).run()
