"""May the database user do what the pipeline does to its tables? Asked of the database, never
assumed: a user that can only SELECT reaches the table, passes every "is it there" check, and then
fails every upload and run with "permission denied".

Two questions, because neither answers both:
- the grants (PostgreSQL's `has_table_privilege`), for every table of the schema the photo table
  lives in, so a table a later migration adds is covered without naming it here;
- real writes: a probe row inserted, updated and deleted in every table of the model, inside a
  transaction that is rolled back. It catches what grants do not show: a read-only standby, a
  read-only SQLite file, `default_transaction_read_only`, row security.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Table, and_, delete, insert, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.types import BigInteger, Float, Integer, String, Uuid

from photo_pipeline.photos.errors import describe_database_error
from photo_pipeline.photos.models import Base, UTCDateTime

# What the pipeline does to each of its tables (uploads insert, runs update, cleanup and
# reconciliation delete; every one of them reads).
REQUIRED_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
# Alembic's bookkeeping: only init-db writes it, and a deployment may keep that to another user.
MIGRATIONS_TABLE = "alembic_version"

_GRANTS = text(
    """
    SELECT c.relname,
           has_table_privilege(c.oid, 'SELECT'), has_table_privilege(c.oid, 'INSERT'),
           has_table_privilege(c.oid, 'UPDATE'), has_table_privilege(c.oid, 'DELETE')
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname <> :migrations
    ORDER BY c.relname
    """
)


@dataclass(frozen=True)
class WritePermission:
    user: str
    schema: str | None
    missing_grants: Mapping[str, tuple[str, ...]]  # table -> privileges the user lacks (PostgreSQL)
    failed_writes: Mapping[str, str]  # table -> the statement that failed and why

    @property
    def ok(self) -> bool:
        return not self.missing_grants and not self.failed_writes


def check_write_permission(engine: Engine) -> WritePermission:
    """The user's grants and a rolled-back write to every table. Raises SQLAlchemyError only when
    the database cannot be asked at all."""
    with engine.connect() as connection:
        user, schema = _who(connection)
        missing = missing_grants(connection)
        failed = failed_writes(connection)
    return WritePermission(user=user, schema=schema, missing_grants=missing, failed_writes=failed)


def _who(connection: Connection) -> tuple[str, str | None]:
    if connection.dialect.name != "postgresql":
        return "the SQLite file's user", None
    user, schema = connection.execute(text("SELECT current_user, current_schema()")).one()
    connection.rollback()
    return str(user), schema


def missing_grants(connection: Connection) -> dict[str, tuple[str, ...]]:
    """Table -> the REQUIRED_PRIVILEGES the current user lacks on it, for every table of the
    current schema. SQLite has no grants: {}."""
    if connection.dialect.name != "postgresql":
        return {}
    missing = {}
    for table, *granted in connection.execute(_GRANTS, {"migrations": MIGRATIONS_TABLE}):
        lacking = tuple(privilege for privilege, has in zip(REQUIRED_PRIVILEGES, granted, strict=True) if not has)
        if lacking:
            missing[str(table)] = lacking
    connection.rollback()
    return missing


def failed_writes(connection: Connection) -> dict[str, str]:
    """Table -> why writing it failed, for every table of the model: a probe row inserted,
    updated and deleted, each table in a savepoint of one transaction that is rolled back."""
    failures: dict[str, str] = {}
    transaction = connection.begin()
    try:
        for table in Base.metadata.sorted_tables:
            failure = _probe(connection, table)
            if failure is not None:
                failures[table.name] = failure
    finally:
        transaction.rollback()
    return failures


def _probe(connection: Connection, table: Table) -> str | None:
    row = _probe_row(table)
    key = and_(*(column == row[column.name] for column in table.primary_key.columns))
    # Set to what it already is: an UPDATE the user may run on any column.
    touched = next((name for name in row if not table.columns[name].primary_key), next(iter(row)))
    statements = (
        ("INSERT", insert(table).values(row)),
        ("UPDATE", update(table).where(key).values({touched: row[touched]})),
        ("DELETE", delete(table).where(key)),
    )
    savepoint = connection.begin_nested()
    try:
        for verb, statement in statements:
            try:
                connection.execute(statement)
            except SQLAlchemyError as exc:
                return f"{verb} failed: {describe_database_error(exc).summary}"
    finally:
        # A failed statement aborts PostgreSQL's transaction up to the savepoint: roll back to it
        # whatever happened, so the next table is probed on a clean slate.
        savepoint.rollback()
    return None


def _probe_row(table: Table) -> dict[str, Any]:
    """A value for every column that needs one, fitting its type and length, unique where a key is."""
    marker = uuid.uuid4()
    row = {}
    for column in table.columns:
        if column.nullable and not column.primary_key:
            continue
        if column.default is not None and not column.primary_key:
            row[column.name] = column.default.arg  # type: ignore[attr-defined]
            continue
        row[column.name] = _probe_value(column, marker)
    return row


def _probe_value(column: Column[Any], marker: uuid.UUID) -> Any:
    kind = column.type
    if isinstance(kind, Uuid):
        return marker
    if isinstance(kind, UTCDateTime):
        return datetime.now(UTC)
    if isinstance(kind, (Integer, BigInteger)):
        return 0
    if isinstance(kind, Float):
        return 0.0
    if isinstance(kind, String):
        value = f"doctor-probe/{marker}"
        return value[: kind.length] if kind.length else value
    raise TypeError(f"no probe value for column {column.table.name}.{column.name} of type {kind!r}: teach _probe_value")
