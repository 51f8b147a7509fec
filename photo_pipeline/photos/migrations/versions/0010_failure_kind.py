"""why a photo failed: `failure_kind` beside `error` (photo_pipeline/failures.py)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

The kind is what says whether an operator's re-run can help (the API's `retryable` and `hint`).
Rows that failed before it was recorded get it from their error's wording, as earlier versions
wrote it; a reason worded otherwise (a photo failed by hand) stays NULL: "not recorded".
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# (LIKE pattern of earlier versions' error texts, kind), first match wins.
EARLIER_REASONS = (
    ("cannot render %: not an image Pillow can read%", "unsupported"),
    ("cannot render %: image is % megapixels, above %", "too_large"),
    ("cannot render %: image is too large to decode safely%", "too_large"),
    ("cannot render %: too large to render within the run's memory budget%", "too_large"),
    ("original % over the maximum original size%", "too_large"),
    ("cannot render %", "damaged"),
    ("unexpected error while rendering%", "unexpected"),
    ("gave up after % attempts%", "interrupted"),
)


def upgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.add_column(sa.Column("failure_kind", sa.String(16), nullable=True))
    photos = sa.table("photos", sa.column("status", sa.String), sa.column("error", sa.Text), sa.column("failure_kind", sa.String))
    for pattern, kind in EARLIER_REASONS:
        op.execute(
            photos.update()
            .where(photos.c.status == "failed", photos.c.failure_kind.is_(None), photos.c.error.like(pattern))
            .values(failure_kind=kind)
        )


def downgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("failure_kind")
