"""The one Settings class. Every field mirrors an ``APPYARD_*`` environment variable.

Built once by the CLI (or by tests, directly) and passed down; nothing else reads
``os.environ``. Defaults are the embedded shape: SQLite in ``data_dir``, blobs in
``data_dir/blobs``, the job queue inside the server process.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

GIB = 1024 * 1024 * 1024
MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APPYARD_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("./appyard-data")
    # Backends, chosen by URL. Empty means the embedded default under data_dir.
    database_url: str = ""
    storage_url: str = ""
    queue_url: str = "embedded:"
    # Where clients reach this server; signed URLs of the local storage backend point here.
    public_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    # `appyard serve` answers the local store's signed downloads with sendfile(2) on a port of
    # its own: unset means port + 1, 0 means none (the API port serves them, through ASGI).
    download_port: int | None = Field(default=None, ge=0, le=65535)
    # Client connections the API port holds open at once (Granian's `backpressure`, a permit
    # per connection for as long as the client keeps it alive); past it, a new client waits
    # unanswered until one closes. Granian's default in one process was 128: 128 keep-alive
    # pollers shut everyone else out (bench/README.md, "Load").
    max_connections: int = Field(default=2048, ge=16, le=65536)
    # Base of signed download URLs (local storage); empty: the download listener's address
    # when `appyard serve` runs one and public_url is unset, else public_url.
    download_url: str = ""
    # X-Accel-Redirect mode (local storage behind nginx): appyard checks a signed download
    # URL and answers with this internal location prefix + the object's key, nginx sends the
    # file (e.g. "/_protected/"); no sendfile listener then. Empty: appyard sends downloads.
    download_accel_redirect: str = ""
    # Secret for signing URLs; read from (or created in) data_dir/secret.key when unset.
    secret_key: SecretStr | None = None
    # Master key for secrets at rest (base64 of 32 bytes); unset: data_dir/master.key (0600).
    master_key: SecretStr | None = None
    # Earlier master keys, comma separated, still accepted for reading during a rotation.
    previous_master_keys: SecretStr | None = None
    # Whether `appyard serve` also processes jobs; unset means "yes with the embedded queue".
    run_worker: bool | None = None
    worker_concurrency: int = Field(default=2, ge=1, le=64)
    job_lease_seconds: int = Field(default=60, ge=5)
    # A job that runs longer than this fails with a message (a hostile or huge artifact
    # cannot hold a worker for hours).
    job_timeout_seconds: float = Field(default=3600.0, gt=0)
    # How often each worker expires stale uploads and notices objects that reached the store.
    upload_sweep_seconds: float = Field(default=30.0, gt=0)
    # Upload rules (protection-automation-api.txt).
    signed_url_ttl: int = Field(default=3600, ge=1)
    max_upload_size: int = 2 * GIB
    multipart_threshold: int = 100 * MIB
    multipart_chunk_size: int = 10 * MIB
    upload_expiry_seconds: int = Field(default=3600, ge=1)
    log_level: str = "INFO"
    # text: one line per event for people (the default); json: one JSON object per line.
    log_format: Literal["text", "json"] = "text"
    # /metrics (Prometheus text format) on the API port and the worker's health port: open
    # by default; with a token it needs `Authorization: Bearer <token>`.
    metrics_token: SecretStr | None = None
    # `appyard worker` answers /healthz, /readyz and /metrics on this port (0: none).
    worker_health_port: int = Field(default=0, ge=0, le=65535)
    # How often a worker schedules the retention job of each tenant with rules (seconds).
    retention_interval_seconds: float = Field(default=3600.0, gt=0)
    # Protection transforms (docs/protection.md). Strip patterns: comma separated fnmatch
    # patterns for protect.strip_debug; empty means appyard's default list.
    strip_patterns: str = ""
    # External protector (protect.external): an argv template with {input} and {output},
    # split like a shell would but never run by one; empty means no external protector.
    protector_command: str = ""
    protector_timeout_seconds: float = Field(default=600.0, gt=0)
    # Email (notifications): smtp://user:pass@host:port, smtps://..., or ?starttls=true; unset:
    # no mail is sent and notifications are recorded as skipped.
    smtp_url: SecretStr | None = None
    mail_from: str = "appyard <appyard@localhost>"
    # Webhook endpoints on loopback, private or link-local addresses are refused unless true.
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, le=120)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.environment == "production" and not self.public_url:
            raise ValueError(
                "APPYARD_PUBLIC_URL must be set in production: signed URLs point at it."
            )
        if self.queue_url != "embedded:" and not self.queue_url.startswith(
            ("redis://", "rediss://")
        ):
            raise ValueError("APPYARD_QUEUE_URL must be 'embedded:' or a redis:// URL.")
        scheme = urlsplit(self.storage_url).scheme if self.storage_url else "file"
        if scheme not in ("file", "s3"):
            raise ValueError("APPYARD_STORAGE_URL must be a file:// or s3:// URL.")
        if self.smtp_url is not None and urlsplit(self.smtp_url.get_secret_value()).scheme not in (
            "smtp",
            "smtps",
        ):
            raise ValueError("APPYARD_SMTP_URL must be an smtp:// or smtps:// URL.")
        if self.download_accel_redirect and not (
            self.download_accel_redirect.startswith("/")
            and self.download_accel_redirect.endswith("/")
            and "?" not in self.download_accel_redirect
        ):
            raise ValueError(
                "APPYARD_DOWNLOAD_ACCEL_REDIRECT must be a location prefix such as /_protected/ "
                "(starting and ending with a slash)."
            )
        for variable, module, extra in self._clients_needed():
            if importlib.util.find_spec(module) is None:
                raise ValueError(
                    f"{variable} needs the {module} client, which is not installed: "
                    f"pip install 'appyard[{extra}]'."
                )
        if self.protector_command and not all(
            p in self.protector_command for p in ("{input}", "{output}")
        ):
            raise ValueError(
                "APPYARD_PROTECTOR_COMMAND must contain both {input} and {output} placeholders."
            )
        return self

    def _clients_needed(self) -> list[tuple[str, str, str]]:
        """(variable, module, extra) for each scale-out client the configured URLs need."""
        needed = []
        if self.database_url.startswith("postgresql"):
            needed.append(("APPYARD_DATABASE_URL", "psycopg", "postgres"))
        if self.storage_url.startswith("s3:"):
            needed.append(("APPYARD_STORAGE_URL", "boto3", "s3"))
        if not self.embedded_queue:
            needed.append(("APPYARD_QUEUE_URL", "redis", "redis"))
        return needed

    # -- derived values ----------------------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'appyard.db').resolve()}"

    @property
    def effective_storage_url(self) -> str:
        return self.storage_url or (self.data_dir / "blobs").resolve().as_uri()

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def effective_download_port(self) -> int:
        """The download listener's port, 0 for none (S3 storage serves its own downloads;
        in X-Accel-Redirect mode nginx sends them)."""
        if urlsplit(self.effective_storage_url).scheme != "file" or self.download_accel_redirect:
            return 0
        if self.download_port is None:
            return self.port + 1 if 0 < self.port < 65535 else 0
        return self.download_port

    @property
    def metrics_dir(self) -> Path:
        """Where this machine's processes keep their metrics (prometheus-client's multiprocess
        mode); one folder per host, since containers may share the data volume."""
        return self.data_dir / "metrics" / socket.gethostname().replace("/", "_")

    @property
    def embedded_queue(self) -> bool:
        return self.queue_url == "embedded:"

    @property
    def serve_runs_worker(self) -> bool:
        return self.embedded_queue if self.run_worker is None else self.run_worker

    @property
    def strip_pattern_list(self) -> tuple[str, ...] | None:
        """The configured strip patterns, or None for appyard's default list."""
        found = tuple(p.strip() for p in self.strip_patterns.split(",") if p.strip())
        return found or None

    def master_keys(self) -> tuple[bytes, ...]:
        """The current master key first, then keys still accepted for reading."""
        if self.master_key is not None:
            current = base64.b64decode(self.master_key.get_secret_value())
            older = [
                base64.b64decode(k)
                for k in (
                    self.previous_master_keys.get_secret_value()
                    if self.previous_master_keys
                    else ""
                ).split(",")
                if k.strip()
            ]
            return (current, *older)
        path = self.data_dir / "master.key"
        _create_secret_file(path, lambda: base64.b64encode(secrets.token_bytes(32)).decode())
        keys = [base64.b64decode(path.read_text().strip())]
        pending = self.data_dir / "master.key.next"  # a rotation under way: seal with it
        if pending.exists():
            keys.insert(0, base64.b64decode(pending.read_text().strip()))
        return tuple(keys)

    def secret(self) -> bytes:
        """The URL-signing secret: from settings, else ``data_dir/secret.key`` (made 0600)."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.data_dir / "secret.key"
        _create_secret_file(path, lambda: secrets.token_urlsafe(48))
        return path.read_text().strip().encode()


def _create_secret_file(path: Path, make: Callable[[], str]) -> None:
    """Create ``path`` (mode 0600) with a fresh secret unless it exists; race-free."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(make())
    try:
        os.link(tmp, path)  # atomic: a concurrent creator's file wins, never a torn one
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
