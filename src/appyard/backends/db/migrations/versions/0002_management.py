"""management API: deleted builds kept in history, per-application signing files, key file names

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("app_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("file_name", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_column("file_name")
        batch_op.drop_column("app_id")
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_column("deleted")
