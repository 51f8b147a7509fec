"""object keys in byte order, indexes for reconciliation's ordered scans

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

KEY_COLUMNS = ("original_key", "thumb_key", "preview_key")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # "C" collation: byte order, the order S3 lists keys in (SQLite's BINARY already is).
        for column in KEY_COLUMNS:
            op.alter_column(
                "photos", column, type_=sa.String(1024, collation="C"), existing_type=sa.String(1024), postgresql_using=f'{column} COLLATE "C"'
            )
    op.create_index("ix_photos_thumb_key", "photos", ["thumb_key"])
    op.create_index("ix_photos_preview_key", "photos", ["preview_key"])


def downgrade() -> None:
    op.drop_index("ix_photos_preview_key", "photos")
    op.drop_index("ix_photos_thumb_key", "photos")
    if op.get_bind().dialect.name == "postgresql":
        for column in KEY_COLUMNS:
            op.alter_column("photos", column, type_=sa.String(1024), existing_type=sa.String(1024, collation="C"))
