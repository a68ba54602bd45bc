"""Install links and their downloads (the portal's install pages), and sign-in throttling

Revision ID: 0007
Revises: 0005 (re-chained after 0006 when merged)
Create Date: 2026-12-06 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "install_links",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("build_id", sa.String(length=20), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("sealed_token", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revoked_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["build_id"], ["builds.id"], name="fk_install_links_build_id_builds"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_install_links_tenant_id_tenants"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_install_links"),
        sa.UniqueConstraint("token_hash", name="uq_install_links_token_hash"),
    )
    op.create_index("ix_install_links_build_id", "install_links", ["build_id"])
    op.create_table(
        "install_downloads",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("build_id", sa.String(length=20), nullable=False),
        sa.Column("link_id", sa.String(length=40), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=500), nullable=False),
        sa.Column("file", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["build_id"], ["builds.id"], name="fk_install_downloads_build_id_builds"
        ),
        sa.ForeignKeyConstraint(
            ["link_id"], ["install_links.id"], name="fk_install_downloads_link_id_install_links"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_install_downloads_tenant_id_tenants"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_install_downloads"),
    )
    op.create_index("ix_install_downloads_link_id", "install_downloads", ["link_id"])
    op.create_index("ix_install_downloads_build_id_at", "install_downloads", ["build_id", "at"])
    op.create_table(
        "sign_in_throttle",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_at", TS, nullable=False),
        sa.Column("locked_until", TS, nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_sign_in_throttle"),
    )
    op.create_index("ix_sign_in_throttle_first_at", "sign_in_throttle", ["first_at"])


def downgrade() -> None:
    op.drop_index("ix_sign_in_throttle_first_at", table_name="sign_in_throttle")
    op.drop_table("sign_in_throttle")
    op.drop_index("ix_install_downloads_build_id_at", table_name="install_downloads")
    op.drop_index("ix_install_downloads_link_id", table_name="install_downloads")
    op.drop_table("install_downloads")
    op.drop_index("ix_install_links_build_id", table_name="install_links")
    op.drop_table("install_links")
