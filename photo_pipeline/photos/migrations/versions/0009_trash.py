"""the trash and the erase record: photos and albums can be trashed (hidden, files kept, restorable)
and erased (files and row gone, an id-only record kept forever)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

- photos: status `trashed`, with `trashed_at` (the row's trash time: the retention is measured on
  it), `trashed_from` (the status restore brings back) and `trashed_with_album`; a check keeps the
  three set exactly on trashed rows; an index on (status, trashed_at) for empty_trash; the album
  pages' order indexes (0008) made partial, without the trash;
- albums: `trashed_at`, and `title` may be empty (an album trashed without a title gets a row);
- erased_photos (photo_id, album_id, erased_at) and erased_albums (album_id, erased_at): ids and
  times only, no key, file name or title.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from photo_pipeline.photos.models import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Written out, not imported from the model: a migration stays what it was when the model moves on.
STATUSES_BEFORE = "'pending', 'processing', 'completed', 'failed', 'missing'"
STATUSES_AFTER = STATUSES_BEFORE + ", 'trashed'"
TRASH_COLUMNS_CHECK = (
    "(status = 'trashed' AND trashed_at IS NOT NULL AND trashed_from IS NOT NULL AND trashed_from <> 'trashed' "
    "AND trashed_with_album IS NOT NULL) "
    "OR (status <> 'trashed' AND trashed_at IS NULL AND trashed_from IS NULL AND trashed_with_album IS NULL)"
)

SHOWN_ROWS = sa.text("status <> 'trashed'")
ORDER_INDEXES = {
    "ix_photos_album_capture_order": ["album_id", "taken_at", "created_at", "id"],
    "ix_photos_album_upload_order": ["album_id", "created_at", "id"],
}


def upgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.add_column(sa.Column("trashed_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("trashed_from", sa.String(16), nullable=True))
        batch.add_column(sa.Column("trashed_with_album", sa.Boolean(), nullable=True))
        batch.drop_constraint("ck_photos_status", type_="check")
        batch.create_check_constraint("ck_photos_status", f"status IN ({STATUSES_AFTER})")
        batch.create_check_constraint("ck_photos_trash", TRASH_COLUMNS_CHECK)
    op.create_index("ix_photos_status_trashed_at", "photos", ["status", "trashed_at"])
    # The album pages' two orders, without the trash: a page never wades through trashed rows.
    for name, columns in ORDER_INDEXES.items():
        op.drop_index(name, "photos")
        op.create_index(name, "photos", columns, postgresql_where=SHOWN_ROWS, sqlite_where=SHOWN_ROWS)
    with op.batch_alter_table("albums") as batch:
        batch.add_column(sa.Column("trashed_at", UTCDateTime(), nullable=True))
        batch.alter_column("title", existing_type=sa.String(200), nullable=True)
    op.create_table(
        "erased_photos",
        sa.Column("photo_id", sa.Uuid(), primary_key=True),
        sa.Column("album_id", sa.Uuid(), nullable=False),
        sa.Column("erased_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "erased_albums",
        sa.Column("album_id", sa.Uuid(), primary_key=True),
        sa.Column("erased_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    # Going back loses the trash: trashed photos return to the status they had (a processing one to
    # pending, its claim void), trashed albums keep their title rows, the erase record is dropped.
    op.drop_table("erased_albums")
    op.drop_table("erased_photos")
    op.execute(
        "UPDATE photos SET status = CASE trashed_from WHEN 'processing' THEN 'pending' ELSE trashed_from END, "
        "claimed_by = NULL, claimed_at = NULL, trashed_at = NULL, trashed_from = NULL, trashed_with_album = NULL "
        "WHERE status = 'trashed'"
    )
    op.execute("DELETE FROM albums WHERE title IS NULL")
    with op.batch_alter_table("albums") as batch:
        batch.alter_column("title", existing_type=sa.String(200), nullable=False)
        batch.drop_column("trashed_at")
    for name, columns in ORDER_INDEXES.items():
        op.drop_index(name, "photos")
        op.create_index(name, "photos", columns)
    op.drop_index("ix_photos_status_trashed_at", "photos")
    with op.batch_alter_table("photos") as batch:
        batch.drop_constraint("ck_photos_trash", type_="check")
        batch.drop_constraint("ck_photos_status", type_="check")
        batch.create_check_constraint("ck_photos_status", f"status IN ({STATUSES_BEFORE})")
        batch.drop_column("trashed_with_album")
        batch.drop_column("trashed_from")
        batch.drop_column("trashed_at")
