"""An album's photos in upload and in capture order, a page at a time (photos/ordering.py), on
PostgreSQL and SQLite (the `database_url` fixture) after the real Alembic migrations: every page
size walks the whole album once, across ties and across the boundary between the photos with a
capture time and those without; on PostgreSQL a page is read off the capture-order index."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, inspect, text, update

from photo_pipeline.photos.database import create_engine_for, migrate
from photo_pipeline.photos.models import Photo
from photo_pipeline.photos.ordering import AlbumOrder
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.storage import keys
from photo_pipeline_tests.photos.test_repository import (  # noqa: F401 - fixtures
    alembic,
    clock,
    insert_photo_with_sql,
    repository,
)

# (name, taken_at, first byte of the id), registered in this order, two photos at each instant
# (created_at ties in pairs); the id's first byte decides within a pair, against registration
# order where it matters. Capture times tie too, and one carries an offset: as text it sorts after
# the same local time without one.
ALBUM = (
    ("a", "2024-05-01T10:00:00", 0x50),
    ("b", None, 0x40),
    ("c", "2024-05-01T10:00:00", 0x30),
    ("d", "2024-05-01T10:00:00", 0x20),
    ("e", "2023-12-31T23:59:59", 0x10),
    ("f", None, 0x90),
    ("g", "2024-05-01T10:00:00+02:00", 0x80),
    ("h", None, 0x70),
    ("i", "2024-05-01T09:59:59", 0x60),
    ("j", None, 0x05),
    ("k", "2024-05-01T10:00:00", 0x01),
    ("l", None, 0x02),
    ("n", None, 0x04),
    ("o", None, 0x03),
)
# Written out by hand from the table above, not computed by a copy of the order under test.
EXPECTED = {
    AlbumOrder.UPLOAD: "b a d c e f h g j i k l o n".split(),
    AlbumOrder.TAKEN: "e i a d c k g b f h j l o n".split(),
}
FIRST_INSTANT = datetime(2026, 1, 1, tzinfo=UTC)
CAPTURE_INDEX = "ix_photos_album_capture_order"
UPLOAD_INDEX = "ix_photos_album_upload_order"


def photo_id(first_byte: int) -> uuid.UUID:
    return uuid.UUID(f"{first_byte:02x}" + uuid.uuid4().hex[2:])


def seed_album(repository: PhotoRepository, album: uuid.UUID) -> dict[str, uuid.UUID]:
    """Registers ALBUM's photos in `album` (file names `<name>.jpg`), then gives them their
    created_at and taken_at with plain SQL: capture facts without rendering anything."""
    ids = {name: photo_id(first_byte) for name, _taken_at, first_byte in ALBUM}
    for name, photo in ids.items():
        repository.register_pending(
            NewPhoto(id=photo, album_id=album, original_key=keys.raw_key(album, photo, "jpg"), filename=f"{name}.jpg")
        )
    with repository.engine.begin() as conn:
        for index, (name, taken_at, _first_byte) in enumerate(ALBUM):
            created_at = FIRST_INSTANT + timedelta(seconds=index // 2)
            conn.execute(update(Photo).where(Photo.id == ids[name]).values(created_at=created_at, taken_at=taken_at))
    return ids


def seed_stranger(repository: PhotoRepository) -> uuid.UUID:
    """A photo of another album, taken before and uploaded with the first of ALBUM's."""
    album, photo = uuid.uuid4(), uuid.uuid4()
    repository.register_pending(NewPhoto(id=photo, album_id=album, original_key=keys.raw_key(album, photo, "jpg")))
    with repository.engine.begin() as conn:
        conn.execute(update(Photo).where(Photo.id == photo).values(created_at=FIRST_INSTANT, taken_at="2000-01-01T00:00:00"))
    return photo


def walk(repository: PhotoRepository, album: uuid.UUID, order: AlbumOrder, limit: int) -> list[list[uuid.UUID]]:
    """The album's pages, each resumed after the previous page's last photo, until one is empty."""
    pages: list[list[uuid.UUID]] = []
    after = None
    for _ in range(len(ALBUM) + 2):  # bounded: a cursor that never advanced would loop forever
        page = [record.id for record in repository.album_page(album, limit, after, order)]
        assert len(page) <= limit
        if not page:
            return pages
        pages.append(page)
        after = page[-1]
    raise AssertionError(f"no end after {len(pages)} pages of {limit}: {pages}")


@pytest.mark.parametrize("order", list(AlbumOrder))
def test_every_page_size_walks_the_album_once_in_order(repository: PhotoRepository, order: AlbumOrder) -> None:
    album = uuid.uuid4()
    seed_stranger(repository)
    ids = seed_album(repository, album)
    names = {photo: name for name, photo in ids.items()}
    for limit in (*range(1, len(ALBUM) + 2), 200):
        pages = walk(repository, album, order, limit)
        seen = [names.get(photo, "stranger") for page in pages for photo in page]
        assert seen == EXPECTED[order], f"limit {limit}: {[[names.get(p) for p in page] for page in pages]}"
        assert len(pages) == -(-len(ALBUM) // limit), f"limit {limit}: only the last page may be short"


def test_capture_order_is_the_order_status_lists(repository: PhotoRepository) -> None:
    album = uuid.uuid4()
    ids = seed_album(repository, album)
    listed = [record.id for record in repository.photos_in_capture_order(album, 100)]
    assert listed == [ids[name] for name in EXPECTED[AlbumOrder.TAKEN]]
    assert [record.id for record in repository.photos_in_capture_order(album, 3)] == listed[:3]


@pytest.mark.parametrize("order", list(AlbumOrder))
def test_a_cursor_outside_the_album_yields_nothing(repository: PhotoRepository, order: AlbumOrder) -> None:
    album = uuid.uuid4()
    seed_album(repository, album)
    stranger = seed_stranger(repository)
    assert repository.album_page(album, 5, stranger, order) == []
    assert repository.album_page(album, 5, uuid.uuid4(), order) == []


@pytest.mark.parametrize("order", list(AlbumOrder))
def test_named_photos_come_in_the_order_asked_for(repository: PhotoRepository, order: AlbumOrder) -> None:
    album = uuid.uuid4()
    ids = seed_album(repository, album)
    stranger = seed_stranger(repository)
    named = ["g", "b", "e", "d", "n", "o"]
    expected = [name for name in EXPECTED[order] if name in named]
    found = repository.album_photos_among(album, [ids[name] for name in named] + [stranger, uuid.uuid4()], 100, order)
    names = {photo: name for name, photo in ids.items()}
    assert [names[record.id] for record in found] == expected
    assert [names[r.id] for r in repository.album_photos_among(album, [ids[n] for n in named], 2, order)] == expected[:2]
    assert repository.album_photos_among(album, [], 10, order) == []


# -- the index -----------------------------------------------------------------------------------


def statements_of(repository: PhotoRepository) -> list[tuple[str, Any]]:
    """The statements the repository runs from now on, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        seen.append((statement, parameters))

    event.listen(repository.engine, "before_cursor_execute", note)
    return seen


def plans(repository: PhotoRepository, statements: list[tuple[str, Any]]) -> list[str]:
    """PostgreSQL's plans of the page queries (not the cursor's primary-key lookup), with sorting
    and whole-table reads made prohibitively dear: a plan without a Sort exists only if the index
    gives the rows in the page's order, and then the planner takes it, however small the table."""
    pages = [(statement, parameters) for statement, parameters in statements if "ORDER BY" in statement]
    found = []
    with repository.engine.begin() as conn:
        for setting in ("enable_sort", "enable_incremental_sort", "enable_seqscan", "enable_bitmapscan"):
            conn.exec_driver_sql(f"SET LOCAL {setting} = off")
        for statement, parameters in pages:
            found.append("\n".join(conn.exec_driver_sql("EXPLAIN " + statement, parameters).scalars()))
    return found


def test_capture_order_pages_on_postgres_are_read_off_the_index_without_sorting(postgres_url: str) -> None:
    migrate(postgres_url)
    repository = PhotoRepository(create_engine_for(postgres_url))
    album = uuid.uuid4()
    ids = seed_album(repository, album)
    statements = statements_of(repository)
    # The first page, a dated cursor (two ranges: the dated rest, then the undated), an undated one.
    for after in (None, ids["c"], ids["h"]):
        repository.album_page(album, 20, after, AlbumOrder.TAKEN)
    found = plans(repository, list(statements))
    assert len(found) == 4, found
    for plan in found:
        assert CAPTURE_INDEX in plan and "Sort" not in plan, plan
    # The cursor is in the index condition, not a filter applied from the album's first photo on.
    assert all("Filter" not in plan for plan in found), found
    repository.engine.dispose()


def test_upload_order_pages_on_postgres_are_read_off_the_index_without_sorting(postgres_url: str) -> None:
    migrate(postgres_url)
    repository = PhotoRepository(create_engine_for(postgres_url))
    album = uuid.uuid4()
    ids = seed_album(repository, album)
    statements = statements_of(repository)
    for after in (None, ids["c"]):
        repository.album_page(album, 20, after, AlbumOrder.UPLOAD)
    found = plans(repository, list(statements))
    assert len(found) == 2, found
    for plan in found:
        assert UPLOAD_INDEX in plan and "Sort" not in plan and "Filter" not in plan, plan
    repository.engine.dispose()


def test_migration_0008_adds_the_order_indexes_and_goes_back(database_url: str) -> None:
    alembic(database_url, "upgrade", "0007")
    engine = create_engine_for(database_url)
    album, photo = uuid.uuid4(), uuid.uuid4()
    insert_photo_with_sql(engine, album, photo, "completed", 1)

    alembic(database_url, "upgrade", "0008")
    indexes = {index["name"]: index["column_names"] for index in inspect(engine).get_indexes("photos")}
    assert indexes[CAPTURE_INDEX] == ["album_id", "taken_at", "created_at", "id"]
    assert "ix_photos_album_taken_at" not in indexes, "a prefix of the new index: only a cost to writes"
    assert indexes[UPLOAD_INDEX] == ["album_id", "created_at", "id"]
    # The repository reads the newest schema (the model's columns): at the head revision.
    alembic(database_url, "upgrade", "head")
    assert [record.id for record in PhotoRepository(engine).album_page(album, 10, order=AlbumOrder.TAKEN)] == [photo]

    alembic(database_url, "downgrade", "0007")
    indexes = {index["name"]: index["column_names"] for index in inspect(engine).get_indexes("photos")}
    assert indexes["ix_photos_album_taken_at"] == ["album_id", "taken_at"] and CAPTURE_INDEX not in indexes
    assert UPLOAD_INDEX not in indexes
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM photos")).scalar_one() == "completed", "the photos are untouched"
    engine.dispose()
