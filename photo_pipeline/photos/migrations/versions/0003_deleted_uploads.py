"""tombstones of cleaned-up uploads

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from photo_pipeline.photos.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    key_type = sa.String(1024, collation="C") if op.get_bind().dialect.name == "postgresql" else sa.String(1024)
    op.create_table(
        "deleted_uploads",
        sa.Column("original_key", key_type, primary_key=True),
        sa.Column("photo_id", sa.Uuid(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_deleted_uploads_deleted_at", "deleted_uploads", ["deleted_at"])


def downgrade() -> None:
    op.drop_table("deleted_uploads")
