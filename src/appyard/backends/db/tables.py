"""The schema, as SQLAlchemy Core tables. Alembic migrations (migrations/versions) create it;
a test checks that upgrade-from-empty equals this metadata on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TS = DateTime(timezone=True)

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("plan", String(20), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("concurrent_builds", Integer),
    Column("weekly_builds", Integer),
    Column("automation_keys", Integer),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    Column("name", String(200), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("last_used_at", TS),
    Column("app_id", String(40)),  # 0006: an app token's one app
    Column("expires_at", TS),  # 0006
)

apps = Table(
    "apps",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False),
    Column("platform", String(20)),  # 0005: null until the first build binds it
    Column("identifier", String(255)),  # 0005: null until the first build binds it
    Column("name", String(255), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("slug", String(100), nullable=False),  # 0005
    UniqueConstraint("tenant_id", "platform", "identifier"),
    UniqueConstraint("tenant_id", "slug"),
)

builds = Table(
    "builds",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False),
    Column("number", BigInteger, nullable=False),  # 0005: was start_time
    Column("app_id", String(40), ForeignKey("apps.id")),
    Column("platform", String(20), nullable=False),
    Column("config_version", String(20), nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("source_key", String(1024), nullable=False),
    Column("status", String(20), nullable=False),
    Column("progress", String(40), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("signing_key_id", String(64)),
    Column("identifier", String(255)),
    Column("version_code", String(64)),
    Column("version_name", String(255)),
    Column("size", BigInteger),
    Column("sha256", String(64)),
    Column("output_key", String(1024)),
    Column("output_size", BigInteger),
    Column("output_sha256", String(64)),
    Column("error_message", Text),
    Column("signed", Boolean, nullable=False),
    Column("signing_error_message", Text),
    Column("facts", JSON),
    Column("deleted", Boolean, nullable=False),  # 0002
    Column("source", String(40), nullable=False),  # 0005
    Column("meta", JSON, nullable=False),  # 0005
    Column("started_at", TS),  # 0006
    Column("finished_at", TS),  # 0006
    Column("pinned", Boolean, nullable=False, server_default=false()),  # 0009
    UniqueConstraint("tenant_id", "number"),
    Index(None, "tenant_id", "status"),
    Index(None, "tenant_id", "platform", "config_version", "created_at"),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False),
    Column("subject_id", String(40), nullable=False, index=True),  # 0005: was build_id
    Column("purpose", String(20), nullable=False),  # 0005
    Column("key", String(1024), nullable=False, unique=True),
    Column("file_name", String(255), nullable=False),
    Column("declared_size", BigInteger),
    Column("multipart", Boolean, nullable=False),
    Column("store_upload_id", String(255)),
    Column("total_parts", Integer),
    Column("chunk_size", BigInteger),
    Column("state", String(20), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("size", BigInteger),
    Column("max_size", BigInteger),  # 0005
    Column("sha256", String(64)),  # 0005
    Column("reason", Text),  # 0005
    Index(None, "state", "expires_at"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False),
    Column("build_id", String(20), ForeignKey("builds.id"), index=True),  # 0005: nullable
    Column("kind", String(40), nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("lease_owner", String(100)),
    Column("lease_until", TS),
    Column("payload", JSON, nullable=False),  # 0005
    Column("run_after", TS),  # 0006
    Column("max_attempts", Integer, nullable=False),  # 0006
    Index(None, "state", "created_at"),
)

control_settings = Table(
    "control_settings",
    metadata,
    Column("tenant_id", String(40), ForeignKey("tenants.id"), primary_key=True),
    Column("platform", String(20), primary_key=True),
    Column("config_version", String(20), primary_key=True),
    Column("control_id", String(100), primary_key=True),
    Column("enabled", Boolean, nullable=False),
)

findings = Table(
    "findings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("build_id", String(20), ForeignKey("builds.id"), nullable=False, index=True),
    Column("code", String(100), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("message", Text, nullable=False),
    Column("details", JSON, nullable=False),
)

# --- 0002: the store's release model ------------------------------------------------------------

users = Table(
    "users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("email", String(255), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("role", String(20), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("tenant_id", String(40), ForeignKey("tenants.id")),
    Column("disabled", Boolean, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(40), ForeignKey("users.id"), nullable=False, index=True),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
)

versions = Table(
    "versions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False),
    Column("app_id", String(40), ForeignKey("apps.id"), nullable=False, index=True),
    Column("build_id", String(20), ForeignKey("builds.id"), nullable=False, unique=True),
    Column("version_code", BigInteger, nullable=False),
    Column("version_name", String(255), nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("countries", JSON, nullable=False),
    Column("vehicle_contexts", JSON, nullable=False),
    Column("rollout_percentage", Integer, nullable=False),
    Column("rollout_halted", Boolean, nullable=False),
    Column("rejection_reason", Text),
    Column("signer_sha256", String(64)),
    UniqueConstraint("app_id", "version_code"),
)

validation_runs = Table(
    "validation_runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("version_id", String(40), ForeignKey("versions.id"), nullable=False, index=True),
    Column("build_id", String(20), ForeignKey("builds.id"), nullable=False, index=True),
    Column("status", String(20), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("finished_at", TS),
)

version_events = Table(
    "version_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version_id", String(40), ForeignKey("versions.id"), nullable=False, index=True),
    Column("action", String(40), nullable=False),
    Column("from_status", String(20)),
    Column("to_status", String(20), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("at", TS, nullable=False),
    Column("details", JSON, nullable=False),
)

store_issues = Table(
    "store_issues",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("version_id", String(40), ForeignKey("versions.id"), nullable=False, index=True),
    Column("title", String(500), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("resolved_at", TS),
)

# --- 0003: managed signing keys ----------------------------------------------------------------

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("platform", String(20), nullable=False),
    Column("is_default", Boolean, nullable=False),
    Column("state", String(20), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("sealed_password", LargeBinary, nullable=False),
    Column("alias", String(255)),
    Column("sealed_key_password", LargeBinary),
    Column("sealed_keystore", LargeBinary),
    Column("cert_sha256", String(64)),
    Column("subject", Text),
    Column("not_after", TS),
    Column("key_algorithm", String(10)),
    Column("upload_key", String(1024), unique=True),
    Column("error_message", Text),
    Column("app_id", String(40)),  # 0002
    Column("file_name", String(255)),  # 0002
    Column("sealed_profile", LargeBinary),  # 0003
    Column("profile_name", Text),  # 0003
    Column("profile_uuid", Text),  # 0003
    Column("profile_team_id", Text),  # 0003
    Column("profile_app_id", Text),  # 0003
    Column("profile_expires_at", TS),  # 0003
    Column("lineage", LargeBinary),  # 0004
    Column("original_key_id", Text),  # 0004
    Column("rotation_min_sdk", Integer),  # 0004
)

# --- 0005: the outbox (wake-ups and domain events, delivered after commit), sequences ----------

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(20), nullable=False),  # "wake" | "event"
    Column("topic", String(60), nullable=False),  # job kind woken, or the event's topic
    Column("tenant_id", String(40)),
    Column("subject_id", String(60), nullable=False),
    Column("data", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("dispatched_at", TS),
    Index(None, "dispatched_at", "id"),
)

sequences = Table(
    "sequences",
    metadata,
    Column("tenant_id", String(40), ForeignKey("tenants.id"), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# --- 0006: going out (members to mail, webhook endpoints, delivery logs) --------------------------

members = Table(
    "members",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("email", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("role", String(20), nullable=False),
    Column("groups", JSON, nullable=False),
    Column("language", String(8), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("app_id", String(40)),
    UniqueConstraint("tenant_id", "email", "role", "app_id"),
)

mail_deliveries = Table(
    "mail_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False),
    Column("build_id", String(20), nullable=False, index=True),
    Column("topic", String(60), nullable=False),
    Column("recipient", String(255), nullable=False),
    Column("language", String(8), nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("at", TS, nullable=False),
    Column("error", Text),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("url", String(2048), nullable=False),
    Column("sealed_secret", LargeBinary, nullable=False),
    Column("events", JSON, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", TS, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("webhook_id", String(40), nullable=False, index=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False),
    Column("event_id", Integer, nullable=False),
    Column("topic", String(60), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", TS, nullable=False),
    Column("status_code", Integer),
    Column("latency_ms", Integer),
    Column("error", Text),
)

# --- 0007: install links, their downloads, sign-in throttling -----------------------------------

install_links = Table(
    "install_links",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False),
    Column("build_id", String(20), ForeignKey("builds.id"), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("sealed_token", LargeBinary, nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("revoked_at", TS),
    Column("revoked_by", String(100)),
)

install_downloads = Table(
    "install_downloads",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False),
    Column("build_id", String(20), ForeignKey("builds.id"), nullable=False),
    Column("link_id", String(40), ForeignKey("install_links.id"), nullable=False, index=True),
    Column("at", TS, nullable=False),
    Column("client_address", String(64), nullable=False),
    Column("user_agent", String(500), nullable=False),
    Column("file", String(20), nullable=False),
    Index(None, "build_id", "at"),
)

sign_in_throttle = Table(
    "sign_in_throttle",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("first_at", TS, nullable=False),
    Column("locked_until", TS),
    Index(None, "first_at"),
)

# --- 0009: retention (keep the last N builds and/or those younger than D days) -------------------

retention_rules = Table(
    "retention_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("app_id", String(40)),  # None: the tenant's rule
    Column("keep_last", Integer),
    Column("keep_days", Integer),
    Column("updated_at", TS, nullable=False),
    UniqueConstraint("tenant_id", "app_id"),
)
