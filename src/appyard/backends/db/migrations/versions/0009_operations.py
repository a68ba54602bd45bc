"""Operations: pinned builds, and retention rules per tenant and app

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-05 03:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "retention_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("app_id", sa.String(length=40), nullable=True),
        sa.Column("keep_last", sa.Integer(), nullable=True),
        sa.Column("keep_days", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_retention_rules_tenant_id_tenants"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_retention_rules"),
        sa.UniqueConstraint("tenant_id", "app_id", name="uq_retention_rules_tenant_id_app_id"),
    )
    op.create_index("ix_retention_rules_tenant_id", "retention_rules", ["tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_retention_rules_tenant_id", table_name="retention_rules")
    op.drop_table("retention_rules")
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_column("pinned")
