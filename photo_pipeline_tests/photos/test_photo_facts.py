"""Capture facts, checksums, duplicates and placeholders in the photo table, on PostgreSQL and
SQLite (the `database_url` fixture), after the real Alembic migrations (0007 adds them)."""

from __future__ import annotations

import uuid

from sqlalchemy import inspect, text

from photo_pipeline.photos.claims import PhotoFacts
from photo_pipeline.photos.database import create_engine_for
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.reconcile_queries import Canonical, ReconciliationQueries
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.storage import keys
from photo_pipeline_tests.photos.test_repository import (  # noqa: F401 - fixtures
    Clock,
    alembic,
    clock,
    insert_photo_with_sql,
    register,
    repository,
    row,
)

SHA = "ab" * 32


def test_migration_0007_adds_empty_facts_to_existing_rows_and_goes_back(database_url: str) -> None:
    alembic(database_url, "upgrade", "0006")
    engine = create_engine_for(database_url)
    album, photo = uuid.uuid4(), uuid.uuid4()
    insert_photo_with_sql(engine, album, photo, "completed", 1)
    alembic(database_url, "upgrade", "0007")
    columns = {c["name"] for c in inspect(engine).get_columns("photos")}
    assert {"original_sha256", "duplicate_of", "taken_at", "camera_make", "camera_model", "thumbhash"} <= columns
    # Empty until the re-render job fills them from the original. (Read with plain SQL: the model
    # is the newest schema, with columns revision 0007 does not have.)
    with engine.connect() as conn:
        existing = conn.execute(text("SELECT original_sha256, taken_at, thumbhash, duplicate_of FROM photos")).one()
    assert tuple(existing) == (None, None, None, None)
    alembic(database_url, "downgrade", "0006")
    assert "thumbhash" not in {c["name"] for c in inspect(engine).get_columns("photos")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM photos")).scalar_one() == "completed"
    engine.dispose()


def complete_with(repository: PhotoRepository, claim, taken_at: str | None, sha: str = SHA) -> bool:  # type: ignore[no-untyped-def]
    return repository.complete(
        claim,
        thumb_key=f"processed/thumbs/{claim.id}.jpg",
        preview_key=f"processed/previews/{claim.id}.jpg",
        width=3000,
        height=4000,
        original_bytes=10,
        thumb_bytes=1,
        preview_bytes=2,
        facts=PhotoFacts(original_sha256=sha, taken_at=taken_at, camera_make="Canon", camera_model="EOS R6", thumbhash="XwcOFZhw"),
    )


def test_facts_duplicates_and_capture_order(repository: PhotoRepository, clock: Clock) -> None:
    album, other_album = uuid.uuid4(), uuid.uuid4()
    first, copy, later, undated = register(repository, album, 4, clock)
    [elsewhere] = register(repository, other_album, 1, clock)
    claims = {c.id: c for c in repository.claim_batch(album, "run", 4)}
    [elsewhere_claim] = repository.claim_batch(other_album, "run", 1)

    assert repository.first_with_checksum(album, SHA, other_than=first) is None
    assert complete_with(repository, claims[first], "2024-05-01T10:00:00+02:00")
    assert complete_with(repository, claims[later], "2023-01-01T08:00:00")
    assert complete_with(repository, claims[undated], None, sha="cd" * 32)
    done = row(repository, first)
    assert (done.original_sha256, done.taken_at, done.camera_make, done.thumbhash) == (SHA, "2024-05-01T10:00:00+02:00", "Canon", "XwcOFZhw")
    assert done.gps_latitude is None

    # The earliest completed photo with the checksum, in this album only.
    assert repository.first_with_checksum(album, SHA, other_than=copy) == first
    assert repository.first_with_checksum(other_album, SHA, other_than=elsewhere) is None
    assert repository.complete_duplicate(claims[copy], duplicate_of=first, original_sha256=SHA, original_bytes=10)
    duplicate = row(repository, copy)
    assert duplicate.status is PhotoStatus.COMPLETED and duplicate.duplicate_of == first
    # Whole for a reader of the table: the first copy's keys, sizes and placeholder (issue 18 item 10).
    shared = ("thumb_key", "preview_key", "thumb_bytes", "preview_bytes", "thumbhash")
    assert [getattr(duplicate, name) for name in shared] == [getattr(done, name) for name in shared]
    assert duplicate.thumb_key is not None
    # A duplicate is never what a later copy is a duplicate of.
    assert repository.first_with_checksum(album, SHA, other_than=elsewhere) == first
    assert complete_with(repository, elsewhere_claim, None)
    assert repository.duplicate_counts_by_album() == {album: 1}
    assert repository.duplicate_counts_by_album([other_album]) == {}

    ordered = [p.id for p in repository.photos_in_capture_order(album, 10)]
    # By capture time (local clock), then the photos without one in upload order.
    assert ordered == [later, first, copy, undated]


def test_duplicate_links_pair_each_completed_duplicate_with_its_row_page_by_page(repository: PhotoRepository, clock: Clock) -> None:
    album, other_album = uuid.uuid4(), uuid.uuid4()
    first, copy, again, orphaned, pending = register(repository, album, 5, clock)
    [elsewhere] = register(repository, other_album, 1, clock)
    claims = {c.id: c for c in repository.claim_photos([first, copy, again, orphaned, elsewhere], "run")}
    assert complete_with(repository, claims[first], None)
    for duplicate in (copy, again, elsewhere):
        assert repository.complete_duplicate(claims[duplicate], duplicate_of=first, original_sha256=SHA, original_bytes=10)
    gone = uuid.uuid4()  # a photo whose row was purged since
    assert repository.complete_duplicate(claims[orphaned], duplicate_of=gone, original_sha256=SHA, original_bytes=10)

    queries = ReconciliationQueries(repository, page_size=2)  # three pages for four duplicates
    links = {link.photo.id: link.canonical for link in queries.duplicate_links()}
    standing = Canonical(first, album, PhotoStatus.COMPLETED, SHA, None)
    assert links == {copy: standing, again: standing, elsewhere: standing, orphaned: None}
    assert pending not in links, "only completed duplicates"
    scoped = {link.photo.id for link in queries.duplicate_links(keys.album_prefixes(other_album).raw)}
    assert scoped == {elsewhere}, "an album's slice, its canonical photo joined wherever it is"

    # A duplicate rendered again and completed on its own is a duplicate no more.
    [claim] = repository.claim_for_rerender([(copy, row(repository, copy).completed_at)], "reconcile")
    assert copy not in {link.photo.id for link in queries.duplicate_links()}, "being rendered: not completed"
    assert complete_with(repository, claim, None)
    assert row(repository, copy).duplicate_of is None
    assert {link.photo.id for link in queries.duplicate_links()} == {again, elsewhere, orphaned}
