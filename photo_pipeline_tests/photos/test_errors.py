"""Database errors described in one line, from errors real servers raise: PostgreSQL refusing a
write, a port nobody listens on, an unknown database or user, a schema never migrated, a statement
timeout; SQLite without its table."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import SQLAlchemyError

from photo_pipeline.photos.database import create_engine_for
from photo_pipeline.photos.errors import describe_database_error
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.storage import keys


def raised(url: str, action: Callable[[PhotoRepository], object], **engine: float) -> SQLAlchemyError:
    repository = PhotoRepository(create_engine_for(url, **engine))  # type: ignore[arg-type]
    try:
        with pytest.raises(SQLAlchemyError) as caught:
            action(repository)
    finally:
        repository.engine.dispose()
    return caught.value


def a_photo() -> NewPhoto:
    album, photo = uuid.uuid4(), uuid.uuid4()
    return NewPhoto(id=photo, album_id=album, original_key=keys.raw_key(album, photo, "jpg"))


def look_up(repository: PhotoRepository) -> object:
    return repository.get(uuid.uuid4())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_write_names_the_table_and_never_the_statement(select_only_url: str) -> None:
    error = raised(select_only_url, lambda repository: repository.register_pending(a_photo()))
    assert "[SQL:" in str(error) and "sqlalche.me" in str(error), "what SQLAlchemy would have printed"
    failure = describe_database_error(error)
    assert failure.summary.startswith("the database user cannot write to photos: permission denied")
    assert failure.detail == "permission denied for table photos"
    assert "[SQL:" not in failure.for_operator() and "INSERT INTO" not in failure.for_operator()


def test_connection_failures_say_which(postgres_url: str) -> None:
    server = make_url(postgres_url)
    refused = raised(str(server.set(port=free_port()).render_as_string(hide_password=False)), look_up)
    assert describe_database_error(refused).summary.startswith("cannot connect to the database: connection refused")
    unknown_database = raised(server.set(database=f"no_such_{uuid.uuid4().hex[:8]}").render_as_string(hide_password=False), look_up)
    assert describe_database_error(unknown_database).summary.startswith("the database named in PHOTO_DATABASE_URL does not exist")
    unknown_user = raised(server.set(username=f"nobody_{uuid.uuid4().hex[:8]}").render_as_string(hide_password=False), look_up)
    assert describe_database_error(unknown_user).summary == "the database refused the user or password of PHOTO_DATABASE_URL"


def test_a_schema_never_migrated_says_run_init_db(postgres_url: str, tmp_path: Path) -> None:
    for url in (postgres_url, f"sqlite:///{tmp_path / 'empty.db'}"):
        summary = describe_database_error(raised(url, look_up)).summary
        assert "schema is not migrated" in summary and "photos" in summary and summary.endswith("run `photo-pipeline init-db`"), summary


def test_a_bounded_engine_gives_up_on_a_slow_statement(postgres_url: str) -> None:
    def sleep(repository: PhotoRepository) -> object:
        with repository.engine.connect() as connection:
            return connection.execute(text("SELECT pg_sleep(5)"))

    error = raised(postgres_url, sleep, timeout_seconds=0.5)
    assert describe_database_error(error).summary == "the database did not answer within the statement timeout"


def test_an_error_of_another_kind_names_its_class_and_the_operator_sees_the_drivers_line(postgres_url: str) -> None:
    def divide(repository: PhotoRepository) -> object:
        with repository.engine.connect() as connection:
            return connection.execute(text("SELECT 1 / 0"))

    failure = describe_database_error(raised(postgres_url, divide))
    assert not failure.known and failure.summary == "the database failed (DivisionByZero)"
    assert failure.for_operator() == "the database failed (DivisionByZero): division by zero"
