"""capture facts, checksums and duplicates, ThumbHash placeholders, the responsive sizes

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

The new columns are empty on existing rows: re-rendering an album (`process_album` with
`rerender: true`, or a backfill) fills them from the originals.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from photo_pipeline.photos.models import ObjectKey

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

NEW_COLUMNS = (
    ("original_sha256", sa.String(64)),
    ("duplicate_of", sa.Uuid()),
    ("taken_at", sa.String(32)),
    ("camera_make", sa.String(128)),
    ("camera_model", sa.String(128)),
    ("gps_latitude", sa.Float()),
    ("gps_longitude", sa.Float()),
    ("thumbhash", sa.String(64)),
)


def upgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        for name, column_type in NEW_COLUMNS:
            batch.add_column(sa.Column(name, column_type, nullable=True))
    op.create_index("ix_photos_album_sha256", "photos", ["album_id", "original_sha256"])
    op.create_index("ix_photos_album_taken_at", "photos", ["album_id", "taken_at"])
    op.create_table(
        "renditions",
        sa.Column("key", ObjectKey, primary_key=True),
        sa.Column("photo_id", sa.Uuid(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_renditions_photo_id", "renditions", ["photo_id"])


def downgrade() -> None:
    op.drop_index("ix_renditions_photo_id", "renditions")
    op.drop_table("renditions")
    op.drop_index("ix_photos_album_taken_at", "photos")
    op.drop_index("ix_photos_album_sha256", "photos")
    with op.batch_alter_table("photos") as batch:
        for name, _ in reversed(NEW_COLUMNS):
            batch.drop_column(name)
