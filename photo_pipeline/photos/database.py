"""Engines and migrations: how we connect to the photo table's database and bring it up to date."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from photo_pipeline.photos.errors import describe_database_error

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
PHOTOS_TABLE = "photos"


class DatabaseNotReady(RuntimeError):
    """The photo table's database cannot be used as it is: unreachable, without the table, or at
    another schema revision. Only `photo-pipeline init-db` (and the demo) create or migrate."""


def _tune_sqlite(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def tune(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers (sensors, status) run beside the one writer; the busy timeout makes a
        # second writer wait for the lock instead of failing with "database is locked".
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return tune


def _statement_timeout(milliseconds: int) -> Callable[[Any, Any], None]:
    def set_timeout(dbapi_connection: Any, _record: Any) -> None:
        # Outside a transaction, so a rollback cannot undo it (SQLAlchemy's recipe for session settings).
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(f"SET statement_timeout = {int(milliseconds)}")
        finally:
            dbapi_connection.autocommit = autocommit

    return set_timeout


def connections_per_process(io_threads: int) -> int:
    """The most connections one process opens to the photo table: what a run can use at once,
    the fetch and store threads (PHOTO_IO_THREADS each), the claim heartbeat and the claim loop.
    Render threads touch the table only to record a failure and wait for a free connection then.
    A hard limit, so PostgreSQL's max_connections can be sized as processes x this (see the
    guide's "Scaling out")."""
    return 2 * io_threads + 2


# The default PHOTO_IO_THREADS (4): what CLI commands and the API hold at most.
DEFAULT_MAX_CONNECTIONS = connections_per_process(4)
# How long a thread waits for a free connection before the pool gives up (TimeoutError).
POOL_TIMEOUT_SECONDS = 30


def create_engine_for(url: str, *, max_connections: int = DEFAULT_MAX_CONNECTIONS, timeout_seconds: float | None = None) -> Engine:
    """An engine on the photo table's database. `timeout_seconds` bounds what a caller someone
    waits on may wait (a health probe): for a free connection, to connect, for each statement
    (PostgreSQL's statement_timeout) and for SQLite's lock; without it, the pipeline's patient defaults."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        busy_seconds = timeout_seconds if timeout_seconds is not None else 30
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_seconds})
        event.listen(engine, "connect", _tune_sqlite(int(busy_seconds * 1000)))
        return engine
    if timeout_seconds is None:
        # No overflow: max_connections is a limit, not a hint; a thread beyond it waits its turn.
        return create_engine(
            url, pool_pre_ping=True, pool_size=max_connections, max_overflow=0, pool_timeout=POOL_TIMEOUT_SECONDS
        )
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=max_connections,
        max_overflow=0,
        pool_timeout=timeout_seconds,
        # libpq counts whole seconds and treats less than 2 as 2.
        connect_args={"connect_timeout": max(2, math.ceil(timeout_seconds))},
    )
    event.listen(engine, "connect", _statement_timeout(int(timeout_seconds * 1000)))
    return engine


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on '%' in URL-encoded passwords.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str) -> None:
    """Upgrade the database to the newest schema (idempotent)."""
    engine = create_engine_for(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = create_engine_for(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:  # only if the package was shipped without its migrations
        raise RuntimeError(f"no Alembic revisions found in {MIGRATIONS_DIR}")
    return head


def displayed_url(url: str) -> str:
    """The URL with its password masked, fit for messages."""
    return make_url(url).render_as_string(hide_password=True)


def schema_problem(url: str) -> str | None:
    """Why this database cannot hold the photo table as the code expects, or None (also None when
    it cannot be reached at all: that may pass, and a retry is the right answer to it).

    A step that failed on such a database would fail the same way on every retry, so it should
    fail at once and wait for the operator to fix the cause.
    """
    engine = create_engine_for(url)
    try:
        with engine.connect() as connection:
            has_table = inspect(connection).has_table(PHOTOS_TABLE)
            revision = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()
    shown = displayed_url(url)
    if not has_table:
        return (
            f"the database {shown} has no {PHOTOS_TABLE} table: PHOTO_DATABASE_URL names the "
            "wrong database, or `photo-pipeline init-db` has not been run on it"
        )
    head = head_revision()
    if revision != head:
        return f"the database {shown} is at schema revision {revision}, this code needs {head}: run `photo-pipeline init-db`"
    return None


def require_schema(url: str) -> None:
    """Raise DatabaseNotReady unless the database is reachable and at the current schema. Never
    creates anything: pointing a command at the wrong database must not plant a schema there."""
    engine = create_engine_for(url)
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        failure = describe_database_error(exc)
        raise DatabaseNotReady(f"cannot connect to the database {displayed_url(url)}: {failure.summary} ({failure.detail})") from exc
    finally:
        engine.dispose()
    problem = schema_problem(url)
    if problem is not None:
        raise DatabaseNotReady(problem)


# Chunk size for IN (...) lists and multi-row inserts: far below SQLite's variable limit.
CHUNK = 500


def in_chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
