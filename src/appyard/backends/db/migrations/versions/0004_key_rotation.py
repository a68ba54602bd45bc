"""Android key rotation on managed signing keys: lineage, original key, rotation min SDK

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 14:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lineage", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("original_key_id", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("rotation_min_sdk", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_column("rotation_min_sdk")
        batch_op.drop_column("original_key_id")
        batch_op.drop_column("lineage")
