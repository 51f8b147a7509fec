"""the album's capture order as an index: pages of `GET /api/albums/{id}?order=taken` read off it

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

It replaces 0007's index on (album_id, taken_at), a prefix of it: anything that index served, this
one serves, and a photo's write maintains one index instead of two.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_photos_album_capture_order", "photos", ["album_id", "taken_at", "created_at", "id"])
    op.drop_index("ix_photos_album_taken_at", "photos")


def downgrade() -> None:
    op.create_index("ix_photos_album_taken_at", "photos", ["album_id", "taken_at"])
    op.drop_index("ix_photos_album_capture_order", "photos")
