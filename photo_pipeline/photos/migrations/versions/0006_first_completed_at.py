"""when a photo was first completed (upload-to-completed latency ignores re-renders)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from photo_pipeline.photos.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("photos", sa.Column("first_completed_at", UTCDateTime(), nullable=True))
    # The best the table knows: a row re-rendered before this revision counts its latest completion
    # as its first. Only rows completed within the last hour could move the latency figure, once.
    op.execute("UPDATE photos SET first_completed_at = completed_at WHERE completed_at IS NOT NULL")
    op.create_index("ix_photos_first_completed_at", "photos", ["first_completed_at"])


def downgrade() -> None:
    op.drop_index("ix_photos_first_completed_at", "photos")
    op.drop_column("photos", "first_completed_at")
