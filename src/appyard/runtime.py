"""Builds the running shape from Settings: the only place that picks backends by URL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy import Engine

from appyard.backends.db import migrate
from appyard.backends.db.engine import make_engine
from appyard.backends.db.uow import SqlUnitOfWorkFactory
from appyard.backends.queue.embedded import EmbeddedQueue
from appyard.backends.storage.local import LocalBlobStore
from appyard.backends.webhooks.http import HttpSender
from appyard.core import arrivals
from appyard.core.context import NoMail, Services
from appyard.core.controls import DEFAULT_STRIP_PATTERNS, ProtectionOptions
from appyard.core.crypto import SecretBox
from appyard.core.policy import UploadPolicy
from appyard.core.ports import (
    ArrivalListener,
    BlobInfo,
    BlobStore,
    Clock,
    JobQueue,
    Mailer,
    SystemClock,
)
from appyard.settings import Settings


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    services: Services
    local_store: LocalBlobStore | None


def upload_policy(settings: Settings) -> UploadPolicy:
    return UploadPolicy(
        max_size=settings.max_upload_size,
        multipart_threshold=settings.multipart_threshold,
        chunk_size=settings.multipart_chunk_size,
        url_ttl=settings.signed_url_ttl,
        expiry_seconds=settings.upload_expiry_seconds,
    )


def _store(settings: Settings) -> BlobStore:
    url = urlsplit(settings.effective_storage_url)
    if url.scheme == "file":
        return LocalBlobStore(
            Path(unquote(url.path)),
            public_url=settings.effective_public_url,
            secret=settings.secret(),
            download_url=settings.download_url,
        )
    if url.scheme == "s3":
        from appyard.backends.storage.s3 import S3BlobStore  # boto3 only when configured

        return S3BlobStore(settings.effective_storage_url)
    raise ValueError(f"Unsupported storage URL scheme {url.scheme!r}.")


def _mailer(settings: Settings) -> Mailer:
    if settings.smtp_url is None:
        return NoMail()
    from appyard.backends.mail.smtp import SmtpMailer

    return SmtpMailer(settings.smtp_url.get_secret_value(), sender=settings.mail_from)


def _queue(settings: Settings) -> JobQueue:
    if settings.embedded_queue:
        return EmbeddedQueue()
    if settings.queue_url.startswith(("redis://", "rediss://")):
        from appyard.backends.queue.redis import RedisQueue  # redis only when configured

        return RedisQueue(settings.queue_url)
    raise ValueError(f"Unsupported queue URL {settings.queue_url!r}.")


def _folder(settings: Settings, name: str) -> Path:
    path = (settings.data_dir / name).resolve()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _arrivals(services: Services) -> ArrivalListener:
    """What the store reports as it publishes an object goes to core's one arrival entry."""

    def arrived(key: str, info: BlobInfo) -> None:
        with services.transaction() as uow:
            arrivals.stored(services, uow, key=key, info=info)

    return arrived


def build_runtime(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    store = _store(settings)
    services = Services(
        uow=SqlUnitOfWorkFactory(engine),
        store=store,
        queue=_queue(settings),
        policy=upload_policy(settings),
        lease_seconds=settings.job_lease_seconds,
        job_timeout_seconds=settings.job_timeout_seconds,
        clock=clock or SystemClock(),
        spool_dir=_folder(settings, "spool"),
        work_dir=_folder(settings, "work"),
        box=SecretBox(*settings.master_keys(), reload=settings.master_keys),
        mailer=_mailer(settings),
        sender=HttpSender(
            allow_private=settings.webhook_allow_private,
            timeout=settings.webhook_timeout_seconds,
        ),
        public_url=settings.effective_public_url,
        protection=ProtectionOptions(
            strip_patterns=settings.strip_pattern_list or DEFAULT_STRIP_PATTERNS,
            protector_command=settings.protector_command,
            protector_timeout_seconds=settings.protector_timeout_seconds,
        ),
    )
    store.listen(_arrivals(services))
    return Runtime(
        settings=settings,
        engine=engine,
        services=services,
        local_store=store if isinstance(store, LocalBlobStore) else None,
    )


def upgrade_database(runtime: Runtime, *, apart: bool = False) -> None:
    """Migrate the database to the code's head unless it is there already (then Alembic is not
    even imported); ``apart``: in a child process (``appyard serve``, which runs for long and
    would otherwise keep Alembic in memory)."""
    if migrate.current(runtime.engine) == migrate.head():
        return
    if apart:
        url = runtime.engine.url.render_as_string(hide_password=False)
        migrate.upgrade_apart(url.replace("postgresql+psycopg://", "postgresql://", 1))
    else:
        migrate.upgrade(runtime.engine)


def check_backends(runtime: Runtime) -> None:
    """Fail at startup, in one sentence, when a remote backend cannot be used (the bucket)."""
    runtime.services.store.check()
