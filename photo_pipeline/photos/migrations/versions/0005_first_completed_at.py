"""when a photo was first completed (upload-to-completed latency ignores re-renders)

Revision ID: 0005_first_completed_at
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from photo_pipeline.photos.models import UTCDateTime

# A descriptive id rather than "0005": another branch may add its own revision after 0004, and two
# files both claiming "0005" could not even be loaded; two heads are re-chained with one line.
revision = "0005_first_completed_at"
down_revision = "0004"
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
