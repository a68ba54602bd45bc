"""The ports a running appyard hands to its API, portal and pipeline (built by runtime.py)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from appyard.core import outbox
from appyard.core.controls import ProtectionOptions
from appyard.core.crypto import SecretBox
from appyard.core.policy import UploadPolicy
from appyard.core.ports import (
    BlobStore,
    Clock,
    JobQueue,
    SystemClock,
    UnitOfWork,
    UnitOfWorkFactory,
)

log = logging.getLogger("appyard.core")


@dataclass(frozen=True)
class Services:
    uow: UnitOfWorkFactory
    store: BlobStore
    queue: JobQueue
    policy: UploadPolicy
    lease_seconds: int = 60
    clock: Clock = field(default_factory=SystemClock)
    box: SecretBox | None = None  # seals secrets at rest (signing keys)
    # Where request bodies are streamed before core takes them (same disk as local blobs).
    spool_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    # Server-wide settings of the protection transforms (strip patterns, external protector).
    protection: ProtectionOptions = field(default_factory=ProtectionOptions)
    # Where people reach this server (APPYARD_PUBLIC_URL, else the serve address): the base of
    # the links core hands out (install pages).
    public_url: str = "http://127.0.0.1:8080"

    def sealer(self) -> SecretBox:
        if self.box is None:
            raise RuntimeError("This appyard was started without a master key.")
        return self.box

    @contextmanager
    def transaction(self) -> Iterator[UnitOfWork]:
        """One unit of work that commits when the block ends without an error; then what it
        wrote to the outbox (wake-ups, events) is delivered."""
        with self.uow() as uow:
            yield uow
            uow.commit()
            written = uow.outbox.written
        if written:
            self.relay()

    def relay(self) -> int:
        """Deliver the outbox now. A failure is logged, not raised: the cause is committed,
        and the workers' periodic relay delivers it later."""
        try:
            return outbox.relay(self.uow, self.clock, self.queue)
        except Exception:
            log.exception("outbox.relay_failed")
            return 0
