"""Going out: app tokens and token expiry, custom build platforms, build timings, job retries
with backoff, members to notify, webhook endpoints, and the logs of mail and webhook deliveries

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 14:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
# Platform columns widen for the custom build platforms ("xbox-series").
PLATFORMS = (
    ("apps", True),
    ("builds", False),
    ("control_settings", False),
    ("signing_keys", False),
)


def upgrade() -> None:
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("app_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("expires_at", TS, nullable=True))
    for table, nullable in PLATFORMS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                "platform",
                existing_type=sa.String(length=10),
                type_=sa.String(length=20),
                existing_nullable=nullable,
            )
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("started_at", TS, nullable=True))
        batch_op.add_column(sa.Column("finished_at", TS, nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run_after", TS, nullable=True))
        batch_op.add_column(
            sa.Column("max_attempts", sa.Integer(), nullable=False, server_default="3")
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("max_attempts", existing_type=sa.Integer(), server_default=None)
    op.create_table(
        "members",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("app_id", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_members_tenant_id_tenants"),
        sa.PrimaryKeyConstraint("id", name="pk_members"),
        sa.UniqueConstraint(
            "tenant_id", "email", "role", "app_id", name="uq_members_tenant_id_email_role_app_id"
        ),
    )
    op.create_index("ix_members_tenant_id", "members", ["tenant_id"])
    op.create_table(
        "mail_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("build_id", sa.String(length=20), nullable=False),
        sa.Column("topic", sa.String(length=60), nullable=False),
        sa.Column("recipient", sa.String(length=255), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_mail_deliveries_tenant_id_tenants"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_mail_deliveries"),
    )
    op.create_index("ix_mail_deliveries_build_id", "mail_deliveries", ["build_id"])
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("sealed_secret", sa.LargeBinary(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_webhooks_tenant_id_tenants"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_webhooks"),
    )
    op.create_index("ix_webhooks_tenant_id", "webhooks", ["tenant_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("webhook_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(length=60), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_webhook_deliveries_tenant_id_tenants"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
    )
    op.create_index("ix_webhook_deliveries_webhook_id", "webhook_deliveries", ["webhook_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_webhook_id", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhooks_tenant_id", table_name="webhooks")
    op.drop_table("webhooks")
    op.drop_index("ix_mail_deliveries_build_id", table_name="mail_deliveries")
    op.drop_table("mail_deliveries")
    op.drop_index("ix_members_tenant_id", table_name="members")
    op.drop_table("members")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("max_attempts")
        batch_op.drop_column("run_after")
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_column("finished_at")
        batch_op.drop_column("started_at")
    for table, nullable in PLATFORMS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                "platform",
                existing_type=sa.String(length=20),
                type_=sa.String(length=10),
                existing_nullable=nullable,
            )
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
        batch_op.drop_column("app_id")
