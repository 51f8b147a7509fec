"""The photo table's connection pool is a limit (issue 11): a process never opens more connections
to PostgreSQL than `connections_per_process` says, so max_connections can be sized from it."""

from __future__ import annotations

import threading

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.photos.database import (
    DEFAULT_MAX_CONNECTIONS,
    connections_per_process,
    create_engine_for,
)
from photo_pipeline.settings import Settings
from photo_pipeline_tests.conftest import PG_ADMIN_DSN


def server_connections(database: str) -> int:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)).fetchone()
    return int(row[0]) if row else 0


def test_a_thread_beyond_the_limit_waits_for_a_connection_instead_of_opening_one(postgres_url: str) -> None:
    database = make_url(postgres_url).database or ""
    engine = create_engine_for(postgres_url, max_connections=3)
    held = [engine.connect() for _ in range(3)]
    for connection in held:
        connection.execute(text("SELECT 1"))
    got_fourth = threading.Event()

    def fourth() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            got_fourth.set()

    waiter = threading.Thread(target=fourth, daemon=True)
    waiter.start()
    try:
        waiter.join(timeout=1.0)
        assert not got_fourth.is_set(), "a fourth connection was handed out beyond the limit of 3"
        assert server_connections(database) == 3
        held.pop().close()  # back to the pool: the waiting thread gets this one
        waiter.join(timeout=10)
        assert got_fourth.is_set(), "the waiting thread got the connection given back"
        assert server_connections(database) == 3
    finally:
        for connection in held:
            connection.close()
        engine.dispose()


def test_the_limit_is_what_a_run_uses_at_once() -> None:
    # fetch + store threads, the claim heartbeat and the claim loop
    assert connections_per_process(4) == 10 == DEFAULT_MAX_CONNECTIONS
    assert connections_per_process(8) == 18


def test_runs_and_sensors_get_a_pool_sized_from_photo_io_threads(postgres_url: str) -> None:
    resource = PhotoPipelineResource(database_url=postgres_url)
    pool = resource.repository().engine.pool
    assert pool.size() == connections_per_process(Settings.from_env().io_threads)  # type: ignore[attr-defined]
