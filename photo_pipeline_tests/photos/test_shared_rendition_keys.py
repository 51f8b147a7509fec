"""Migration 0011 on PostgreSQL and SQLite: `renditions` keyed by (photo_id, key), so a duplicate's
rows may name its first copy's keys; the rows there before are kept, and a downgrade keeps one
row per key."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Uuid, bindparam, text
from sqlalchemy.exc import IntegrityError

from photo_pipeline.photos.database import create_engine_for
from photo_pipeline_tests.photos.test_repository import alembic

INSERT = text(
    "INSERT INTO renditions (key, photo_id, size, format, width, height, bytes) VALUES (:key, :photo, 800, 'JPEG', 800, 600, 5)"
).bindparams(bindparam("photo", type_=Uuid()))


def test_migration_0011_lets_several_photos_name_one_key_and_keeps_the_rows(database_url: str) -> None:
    alembic(database_url, "upgrade", "0010")
    engine = create_engine_for(database_url)
    first, copy = sorted([uuid.uuid4(), uuid.uuid4()])
    key = f"processed/800/a/{first}.jpg"
    with engine.begin() as conn:
        conn.execute(INSERT, {"key": key, "photo": first})
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(INSERT, {"key": key, "photo": copy})  # before: one row per key

    alembic(database_url, "upgrade", "0011")
    with engine.begin() as conn:
        conn.execute(INSERT, {"key": key, "photo": copy})  # a duplicate names its first copy's key
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(INSERT, {"key": key, "photo": copy})  # but once per photo
    with engine.connect() as conn:
        rows = sorted(conn.execute(text("SELECT photo_id, key FROM renditions")).all())
    assert [(uuid.UUID(str(p)), k) for p, k in rows] == [(first, key), (copy, key)]

    alembic(database_url, "downgrade", "0010")
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT photo_id, key FROM renditions")).all()
    assert [(uuid.UUID(str(p)), k) for p, k in kept] == [(first, key)], "one row per key again, the first photo's"
    alembic(database_url, "upgrade", "head")
    engine.dispose()
