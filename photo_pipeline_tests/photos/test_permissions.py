"""What the database user may do, asked of real databases: a PostgreSQL role that may only SELECT,
a SQLite file opened read-only, and users that may do everything (whose probe leaves nothing)."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import func, select, text

from photo_pipeline.photos.database import create_engine_for, migrate
from photo_pipeline.photos.models import Base
from photo_pipeline.photos.permissions import REQUIRED_PRIVILEGES, check_write_permission

WRITES = ("INSERT", "UPDATE", "DELETE")


def row_counts(url: str) -> dict[str, int]:
    engine = create_engine_for(url)
    try:
        with engine.connect() as connection:
            return {table.name: connection.execute(select(func.count()).select_from(table)).scalar_one() for table in Base.metadata.sorted_tables}
    finally:
        engine.dispose()


def test_a_select_only_role_lacks_the_writes_on_every_table_and_its_writes_fail(select_only_url: str) -> None:
    engine = create_engine_for(select_only_url)
    try:
        permission = check_write_permission(engine)
    finally:
        engine.dispose()
    tables = {table.name for table in Base.metadata.sorted_tables}
    assert not permission.ok and permission.schema == "public" and permission.user.startswith("photo_reader_")
    assert permission.missing_grants == {table: WRITES for table in tables}
    assert set(permission.failed_writes) == tables
    assert permission.failed_writes["photos"] == (
        "INSERT failed: the database user cannot write to photos: permission denied; `photo-pipeline doctor` lists the missing grants"
    )


def test_grants_are_asked_for_every_table_of_the_schema_even_one_the_model_does_not_name(photo_db: str, select_only_url: str) -> None:
    admin = create_engine_for(photo_db)
    with admin.begin() as connection:
        # A table a later migration adds: the model here does not know it, the grants check does.
        connection.execute(text("CREATE TABLE later_table (id integer PRIMARY KEY)"))
    admin.dispose()
    reader = create_engine_for(select_only_url)
    try:
        permission = check_write_permission(reader)
    finally:
        reader.dispose()
    assert permission.missing_grants["later_table"] == REQUIRED_PRIVILEGES, "not even SELECT was granted on it"
    assert "alembic_version" not in permission.missing_grants, "only init-db writes Alembic's table"


def test_a_user_that_may_write_passes_and_the_probe_leaves_no_row(photo_db: str) -> None:
    before = row_counts(photo_db)
    engine = create_engine_for(photo_db)
    try:
        permission = check_write_permission(engine)
    finally:
        engine.dispose()
    assert permission.ok, permission
    assert row_counts(photo_db) == before


def test_a_granted_role_on_a_read_only_transaction_fails_the_writes_the_grants_allow(photo_db: str, select_only_url: str) -> None:
    role = select_only_url.split("://", 1)[1].split("@", 1)[0]
    with psycopg.connect(photo_db.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))
        # What a hot standby or a read-only default does to every session.
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(sql.Identifier(role)))
    engine = create_engine_for(select_only_url)
    try:
        permission = check_write_permission(engine)
    finally:
        engine.dispose()
    assert permission.missing_grants == {}
    assert permission.failed_writes["photos"].startswith("INSERT failed: the database accepts no writes: it is read-only")


def test_sqlite_read_only_file_fails_the_writes_and_a_writable_one_passes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'photos.db'}"
    migrate(url)
    writable = create_engine_for(url)
    assert check_write_permission(writable).ok
    writable.dispose()
    # Opened read-only (as a file without write permission would be: the tests run as root,
    # which file modes do not stop).
    read_only = create_engine_for(f"sqlite:///file:{tmp_path / 'photos.db'}?mode=ro&uri=true")
    try:
        permission = check_write_permission(read_only)
    finally:
        read_only.dispose()
    assert permission.missing_grants == {}
    assert set(permission.failed_writes) == {table.name for table in Base.metadata.sorted_tables}
    assert "it is read-only" in permission.failed_writes["photos"]
