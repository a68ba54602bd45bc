"""One arrival model and an outbox: uploads with a purpose, build numbers, app slugs, job
payloads, the outbox of wake-ups and events, per-tenant sequences

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 10:00:00.000000
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _backfill_slugs(conn: sa.Connection) -> None:
    """Existing apps get their identifier as slug (``<identifier>-<platform>`` when the same
    identifier exists on both platforms)."""
    rows = conn.execute(sa.text("SELECT id, tenant_id, platform, identifier FROM apps")).all()
    taken: set[tuple[str, str]] = set()
    for app_id, tenant_id, platform, identifier in sorted(rows, key=lambda r: (r[2], r[0])):
        slug = identifier[:100]
        if (tenant_id, slug) in taken:
            slug = f"{identifier[:90]}-{platform}"
        taken.add((tenant_id, slug))
        conn.execute(
            sa.text("UPDATE apps SET slug = :slug WHERE id = :id"), {"slug": slug, "id": app_id}
        )


def _pending_key_uploads(conn: sa.Connection) -> None:
    """A signing key still waiting for its file gets the upload row that now tracks it."""
    rows = conn.execute(
        sa.text(
            "SELECT id, tenant_id, upload_key, file_name, created_at FROM signing_keys "
            "WHERE state = 'pending' AND upload_key IS NOT NULL"
        )
    ).all()
    for key_id, tenant_id, upload_key, file_name, created_at in rows:
        conn.execute(
            sa.text(
                "INSERT INTO uploads (id, tenant_id, subject_id, purpose, key, file_name, "
                "multipart, state, created_at, expires_at, max_size) VALUES (:id, :tenant, "
                ":subject, 'signing_key', :key, :name, :multipart, 'pending', :created, "
                ":expires, :max)"
            ),
            {
                "id": f"up_{key_id[3:]}",
                "tenant": tenant_id,
                "subject": key_id,
                "key": upload_key,
                "name": file_name or "keystore",
                "multipart": False,
                "created": created_at,
                "expires": datetime.now(UTC) + timedelta(hours=1),
                "max": 10 * 1024 * 1024,
            },
        )


def upgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("slug", sa.String(length=100), nullable=True))
        batch_op.alter_column("platform", existing_type=sa.String(length=10), nullable=True)
        batch_op.alter_column("identifier", existing_type=sa.String(length=255), nullable=True)
    _backfill_slugs(conn)
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.alter_column("slug", existing_type=sa.String(length=100), nullable=False)
        batch_op.create_unique_constraint("uq_apps_tenant_id_slug", ["tenant_id", "slug"])

    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_constraint("uq_builds_tenant_id_start_time", type_="unique")
        batch_op.alter_column("start_time", new_column_name="number", existing_type=sa.BigInteger())
        batch_op.add_column(
            sa.Column("source", sa.String(length=40), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("meta", sa.JSON(), nullable=True))
    conn.execute(sa.text("UPDATE builds SET meta = '{}'"))
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.alter_column("meta", existing_type=sa.JSON(), nullable=False)
        batch_op.alter_column("source", existing_type=sa.String(length=40), server_default=None)
        batch_op.create_unique_constraint("uq_builds_tenant_id_number", ["tenant_id", "number"])

    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_constraint("fk_uploads_build_id_builds", type_="foreignkey")
        batch_op.drop_index("ix_uploads_build_id")
        batch_op.alter_column(
            "build_id",
            new_column_name="subject_id",
            existing_type=sa.String(length=20),
            type_=sa.String(length=40),
            existing_nullable=False,
        )
        batch_op.add_column(
            sa.Column("purpose", sa.String(length=20), nullable=False, server_default="build")
        )
        batch_op.add_column(sa.Column("max_size", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.alter_column("purpose", existing_type=sa.String(length=20), server_default=None)
        batch_op.create_index("ix_uploads_subject_id", ["subject_id"], unique=False)
    _pending_key_uploads(conn)

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("build_id", existing_type=sa.String(length=20), nullable=True)
        batch_op.add_column(sa.Column("payload", sa.JSON(), nullable=True))
    conn.execute(sa.text("UPDATE jobs SET payload = '{}'"))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("payload", existing_type=sa.JSON(), nullable=False)

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("topic", sa.String(length=60), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=True),
        sa.Column("subject_id", sa.String(length=60), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("dispatched_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index("ix_outbox_dispatched_at_id", "outbox", ["dispatched_at", "id"])
    op.create_table(
        "sequences",
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_sequences_tenant_id_tenants"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "name", name="pk_sequences"),
    )


def downgrade() -> None:
    op.drop_table("sequences")
    op.drop_index("ix_outbox_dispatched_at_id", table_name="outbox")
    op.drop_table("outbox")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("payload")
    op.execute("DELETE FROM uploads WHERE purpose <> 'build'")
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_index("ix_uploads_subject_id")
        batch_op.drop_column("reason")
        batch_op.drop_column("sha256")
        batch_op.drop_column("max_size")
        batch_op.drop_column("purpose")
        batch_op.alter_column("subject_id", new_column_name="build_id", type_=sa.String(length=20))
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.create_index("ix_uploads_build_id", ["build_id"], unique=False)
        batch_op.create_foreign_key("fk_uploads_build_id_builds", "builds", ["build_id"], ["id"])
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_constraint("uq_builds_tenant_id_number", type_="unique")
        batch_op.drop_column("meta")
        batch_op.drop_column("source")
        batch_op.alter_column("number", new_column_name="start_time")
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            "uq_builds_tenant_id_start_time", ["tenant_id", "start_time"]
        )
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.drop_constraint("uq_apps_tenant_id_slug", type_="unique")
        batch_op.drop_column("slug")
