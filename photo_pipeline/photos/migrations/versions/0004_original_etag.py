"""what a completed photo was rendered from

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows rendered before this revision keep NULL: reconciliation cannot tell whether their
    # original was replaced, and says nothing about them until they are rendered again.
    op.add_column("photos", sa.Column("original_etag", sa.String(128), nullable=True))


def downgrade() -> None:
    op.drop_column("photos", "original_etag")
