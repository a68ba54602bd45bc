"""The ports a running appyard hands to its API, portal and pipeline (built by runtime.py)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from appyard.core.controls import ProtectionOptions
from appyard.core.crypto import SecretBox
from appyard.core.ports import BlobStore, Clock, JobQueue, SystemClock, UnitOfWorkFactory
from appyard.core.uploads import UploadPolicy


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

    def sealer(self) -> SecretBox:
        if self.box is None:
            raise RuntimeError("This appyard was started without a master key.")
        return self.box
