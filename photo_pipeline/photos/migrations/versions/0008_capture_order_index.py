"""the album's two orders as indexes: pages of `GET /api/albums/{id}` (upload order) and of
`?order=taken` (capture order) read off them

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

It replaces 0007's index on (album_id, taken_at), a prefix of it: anything that index served, this
one serves, and a photo's write maintains one index instead of two. Without the upload-order
index a deep page of a 100,000-photo album was a parallel sequential scan and a sort (135 ms).
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
    op.create_index("ix_photos_album_upload_order", "photos", ["album_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_photos_album_upload_order", "photos")
    op.create_index("ix_photos_album_taken_at", "photos", ["album_id", "taken_at"])
    op.drop_index("ix_photos_album_capture_order", "photos")
