"""iOS signing keys: a sealed provisioning profile and its public facts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sealed_profile", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("profile_name", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("profile_uuid", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("profile_team_id", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("profile_app_id", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("profile_expires_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_column("profile_expires_at")
        batch_op.drop_column("profile_app_id")
        batch_op.drop_column("profile_team_id")
        batch_op.drop_column("profile_uuid")
        batch_op.drop_column("profile_name")
        batch_op.drop_column("sealed_profile")
