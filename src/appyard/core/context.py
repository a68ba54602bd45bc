"""The ports a running appyard hands to its API, portal and pipeline (built by runtime.py)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from appyard.core import outbox, spool
from appyard.core.controls import ProtectionOptions
from appyard.core.crypto import SecretBox
from appyard.core.policy import UploadPolicy
from appyard.core.ports import (
    BlobStore,
    Clock,
    JobQueue,
    Mailer,
    MailMessage,
    SystemClock,
    UnitOfWork,
    UnitOfWorkFactory,
    WebhookSender,
)

log = logging.getLogger("appyard.core")


class NoMail:
    """No mail server configured: nothing is sent (notifications are recorded as skipped)."""

    configured = False

    def send(self, message: MailMessage) -> None:
        raise RuntimeError("no mail server is configured")


@dataclass(frozen=True)
class Services:
    uow: UnitOfWorkFactory
    store: BlobStore
    queue: JobQueue
    policy: UploadPolicy
    lease_seconds: int = 60
    job_timeout_seconds: float = 3600.0
    clock: Clock = field(default_factory=SystemClock)
    box: SecretBox | None = None  # seals secrets at rest (signing keys)
    # Where request bodies are streamed before core takes them (same disk as local blobs),
    # and where jobs keep their working files (under the data directory, not /tmp).
    spool_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    work_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    # Server-wide settings of the protection transforms (strip patterns, external protector).
    protection: ProtectionOptions = field(default_factory=ProtectionOptions)
    # Going out: email, webhook deliveries, and the address people reach this server at.
    mailer: Mailer = field(default_factory=lambda: NoMail())
    sender: WebhookSender | None = None
    public_url: str = "http://127.0.0.1:8080"

    def tidy(self) -> int:
        """Remove what killed processes left behind: spooled request bodies, jobs' working
        folders, the store's temporary files (files of live processes are left alone)."""
        removed = self.store.remove_leftovers()
        for folder in (self.spool_dir, self.work_dir):
            removed += spool.remove_orphans(folder)
        if removed:
            log.info("leftovers.removed count=%d", removed)
        return removed

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
        from appyard.core import consumers  # registers the built-in consumers (once)

        consumers.register()
        try:
            return outbox.relay(self.uow, self.clock, self.queue)
        except Exception:
            log.exception("outbox.relay_failed")
            return 0
