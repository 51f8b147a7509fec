"""create the photos table

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from photo_pipeline.photos.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "photos",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("album_id", sa.Uuid(), nullable=False),
        sa.Column("original_key", sa.String(1024), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("thumb_key", sa.String(1024)),
        sa.Column("preview_key", sa.String(1024)),
        sa.Column("error", sa.Text()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(255)),
        sa.Column("claimed_at", UTCDateTime()),
        sa.Column("width", sa.Integer()),
        sa.Column("height", sa.Integer()),
        sa.Column("original_bytes", sa.BigInteger()),
        sa.Column("thumb_bytes", sa.BigInteger()),
        sa.Column("preview_bytes", sa.BigInteger()),
        sa.Column("filename", sa.String(512)),
        sa.Column("content_type", sa.String(128)),
        sa.Column("completed_at", UTCDateTime()),
        sa.Column("missing_since", UTCDateTime()),
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'completed', 'failed', 'missing')", name="ck_photos_status"
        ),
        sa.UniqueConstraint("original_key", name="uq_photos_original_key"),
    )
    op.create_index("ix_photos_album_status", "photos", ["album_id", "status"])
    op.create_index("ix_photos_status_updated", "photos", ["status", "updated_at"])
    op.create_index("ix_photos_status_claimed", "photos", ["status", "claimed_at"])


def downgrade() -> None:
    op.drop_table("photos")
