"""Engines and migrations: how we connect to the photo table's database and bring it up to date."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
PHOTOS_TABLE = "photos"


class DatabaseNotReady(RuntimeError):
    """The photo table's database cannot be used as it is: unreachable, without the table, or at
    another schema revision. Only `photo-pipeline init-db` (and the demo) create or migrate."""


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (sensors, status) run beside the one writer; the busy timeout makes a
    # second writer wait for the lock instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


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


def create_engine_for(url: str, *, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _tune_sqlite)
        return engine
    # No overflow: max_connections is a limit, not a hint; a thread beyond it waits its turn.
    return create_engine(
        url, pool_pre_ping=True, pool_size=max_connections, max_overflow=0, pool_timeout=POOL_TIMEOUT_SECONDS
    )


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
        raise DatabaseNotReady(f"cannot connect to the database {displayed_url(url)}: {_reason(exc)}") from exc
    finally:
        engine.dispose()
    problem = schema_problem(url)
    if problem is not None:
        raise DatabaseNotReady(problem)


def _reason(exc: SQLAlchemyError) -> str:
    # The driver's own message (first line), not SQLAlchemy's wrapper with the statement.
    original = getattr(exc, "orig", None) or exc
    return f"{type(original).__name__}: {str(original).strip().splitlines()[0] if str(original).strip() else ''}"


# Chunk size for IN (...) lists and multi-row inserts: far below SQLite's variable limit.
CHUNK = 500


def in_chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
