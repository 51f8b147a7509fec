"""renditions keyed by (photo_id, key): a key may be named by several photos' rows

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

A completed duplicate carries the renditions it shares with its first copy: its `renditions`
rows name the first copy's keys, so a key is no longer unique to one row. The table is rebuilt
(portable to SQLite and PostgreSQL alike) with the primary key (photo_id, key), which also serves
the lookups by photo, and an index on key for reconciliation's walk in key order.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ObjectKey = sa.String(1024).with_variant(sa.String(1024, collation="C"), "postgresql")
COLUMNS = "key, photo_id, size, format, width, height, bytes"


def _create(name: str, primary_key: tuple[str, ...]) -> None:
    op.create_table(
        name,
        sa.Column("key", ObjectKey, nullable=False),
        sa.Column("photo_id", sa.Uuid(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*primary_key),
    )


def upgrade() -> None:
    _create("renditions_new", ("photo_id", "key"))
    op.execute(f"INSERT INTO renditions_new ({COLUMNS}) SELECT {COLUMNS} FROM renditions")
    op.drop_index("ix_renditions_photo_id", "renditions")
    op.drop_table("renditions")
    op.rename_table("renditions_new", "renditions")
    op.create_index("ix_renditions_key", "renditions", ["key"])


def downgrade() -> None:
    # Back to one row per key: a shared key keeps the row of the photo whose id sorts first.
    _create("renditions_old", ("key",))
    op.execute(
        f"INSERT INTO renditions_old ({COLUMNS}) SELECT {COLUMNS} FROM renditions r "
        "WHERE NOT EXISTS (SELECT 1 FROM renditions o WHERE o.key = r.key AND o.photo_id < r.photo_id)"
    )
    op.drop_index("ix_renditions_key", "renditions")
    op.drop_table("renditions")
    op.rename_table("renditions_old", "renditions")
    op.create_index("ix_renditions_photo_id", "renditions", ["photo_id"])
