"""The photo repository, the same tests on PostgreSQL and SQLite, plus concurrent claims."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from photo_pipeline import keys
from photo_pipeline.database import (
    create_engine_for,
    current_revision,
    head_revision,
    migrate,
)
from photo_pipeline.models import Base, PhotoStatus
from photo_pipeline.repository import (
    CleanupRefused,
    NewPhoto,
    PhotoNotFound,
    PhotoRepository,
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def repository(database_url: str, clock: Clock) -> PhotoRepository:
    migrate(database_url)
    return PhotoRepository(create_engine_for(database_url), clock=clock)


def new_photo(album: uuid.UUID, ext: str = "jpg") -> NewPhoto:
    photo_id = uuid.uuid4()
    return NewPhoto(id=photo_id, album_id=album, original_key=keys.raw_key(album, photo_id, ext), filename=f"{photo_id}.{ext}")


def register(repository: PhotoRepository, album: uuid.UUID, count: int, clock: Clock | None = None) -> list[uuid.UUID]:
    ids = []
    for _ in range(count):
        ids.append(repository.register_pending(new_photo(album)).id)
        if clock is not None:
            clock.advance(1)
    return ids


def test_migrations_match_the_model_and_are_idempotent(database_url: str) -> None:
    migrate(database_url)
    migrate(database_url)
    assert current_revision(database_url) == head_revision()
    engine = create_engine_for(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == []


def test_register_and_get(repository: PhotoRepository, clock: Clock) -> None:
    album = uuid.uuid4()
    photo = new_photo(album)
    record = repository.register_pending(photo)
    assert record.status is PhotoStatus.PENDING
    assert record.created_at == clock.now and record.created_at.tzinfo is not None
    assert repository.get(photo.id) == record
    assert repository.get(uuid.uuid4()) is None
    with pytest.raises(IntegrityError):
        repository.register_pending(photo)


def test_claim_respects_album_limit_order_and_exclusions(repository: PhotoRepository, clock: Clock) -> None:
    album, other = uuid.uuid4(), uuid.uuid4()
    ids = register(repository, album, 5, clock)
    register(repository, other, 2, clock)
    first = repository.claim_batch(album, "run-1", 2)
    assert [c.id for c in first] == ids[:2]
    assert all(c.attempts == 1 and c.claim.startswith("run-1/") for c in first)
    assert len({c.claim for c in first}) == 1
    skipped = repository.claim_batch(album, "run-1", 2, exclude=[ids[2]])
    assert [c.id for c in skipped] == ids[3:5]
    assert [c.id for c in repository.claim_batch(album, "run-1", 10)] == [ids[2]]
    assert repository.claim_batch(album, "run-1", 10) == []
    assert repository.status_counts(other)[PhotoStatus.PENDING] == 2
    row = repository.get(ids[0])
    assert row is not None and row.status is PhotoStatus.PROCESSING and row.claimed_at == clock.now


def test_complete_fail_release_and_fencing_of_late_writers(repository: PhotoRepository, clock: Clock) -> None:
    album = uuid.uuid4()
    a, b, c = register(repository, album, 3, clock)
    claims = {claim.id: claim for claim in repository.claim_batch(album, "run-1", 3)}
    assert repository.complete(
        claims[a], thumb_key="t", preview_key="p", width=10, height=20, original_bytes=5, thumb_bytes=1, preview_bytes=2
    )
    done = repository.get(a)
    assert done is not None and done.status is PhotoStatus.COMPLETED and done.claimed_by is None
    assert (done.thumb_key, done.preview_key, done.width, done.height) == ("t", "p", 10, 20)
    assert done.completed_at == clock.now
    assert repository.fail(claims[b], "cannot render: truncated")
    failed = repository.get(b)
    assert failed is not None and failed.status is PhotoStatus.FAILED and failed.error == "cannot render: truncated"

    # c's claim expires: it is released, and another run claims it.
    assert repository.release(claims[c], "lease expired")
    released = repository.get(c)
    assert released is not None and released.status is PhotoStatus.PENDING and released.attempts == 1
    [taken] = repository.claim_batch(album, "run-2", 1)
    assert taken.id == c and taken.attempts == 2
    # The first run wakes up late: none of its writes may land.
    assert not repository.complete(
        claims[c], thumb_key="x", preview_key="x", width=1, height=1, original_bytes=1, thumb_bytes=1, preview_bytes=1
    )
    assert not repository.fail(claims[c], "late")
    assert not repository.release(claims[c])
    row = repository.get(c)
    assert row is not None and row.status is PhotoStatus.PROCESSING and row.claimed_by == taken.claim
    # Finished rows cannot be finished twice.
    assert not repository.fail(claims[a], "again")


def test_cleanup_only_for_pending_failed_or_missing(repository: PhotoRepository) -> None:
    album = uuid.uuid4()
    pending, failing, processing, completing = register(repository, album, 4)
    claims = {c.id: c for c in repository.claim_photos([failing, processing, completing], "run")}
    repository.fail(claims[failing], "bad")
    repository.complete(
        claims[completing], thumb_key="t", preview_key="p", width=1, height=1, original_bytes=1, thumb_bytes=1, preview_bytes=1
    )
    assert repository.delete_for_cleanup(pending).id == pending
    assert repository.delete_for_cleanup(failing).status is PhotoStatus.FAILED
    with pytest.raises(CleanupRefused, match="processing"):
        repository.delete_for_cleanup(processing)
    with pytest.raises(CleanupRefused, match="completed"):
        repository.delete_for_cleanup(completing)
    with pytest.raises(PhotoNotFound):
        repository.delete_for_cleanup(pending)
    assert repository.get(processing) is not None and repository.get(completing) is not None


def test_requeue_failed(repository: PhotoRepository) -> None:
    album, other = uuid.uuid4(), uuid.uuid4()
    ids = register(repository, album, 3)
    other_ids = register(repository, other, 1)
    for claim in repository.claim_photos([*ids, *other_ids], "run"):
        repository.fail(claim, "bad")
    assert {r.id for r in repository.requeue_failed(photo_ids=[ids[0]])} == {ids[0]}
    assert {r.id for r in repository.requeue_failed(album_id=album)} == set(ids[1:])
    assert repository.status_counts(album)[PhotoStatus.PENDING] == 3
    row = repository.get(ids[1])
    assert row is not None and row.error is None
    assert repository.status_counts(other)[PhotoStatus.FAILED] == 1


def test_counts_and_pending_albums(repository: PhotoRepository, clock: Clock) -> None:
    older, newer = uuid.uuid4(), uuid.uuid4()
    register(repository, older, 2, clock)
    register(repository, newer, 3, clock)
    [claim] = repository.claim_batch(newer, "run", 1)
    repository.fail(claim, "bad")
    assert repository.status_counts()[PhotoStatus.PENDING] == 4
    by_album = repository.status_counts_by_album()
    assert by_album[newer][PhotoStatus.FAILED] == 1 and by_album[newer][PhotoStatus.PENDING] == 2
    assert by_album[older][PhotoStatus.COMPLETED] == 0
    pending = repository.pending_albums()
    assert [p.album_id for p in pending] == [older, newer]
    assert [p.pending for p in pending] == [2, 2]
    assert pending[1].newest_updated_at == clock.now - timedelta(seconds=1)  # the last registration
    assert len(repository.pending_in_album(newer, 10)) == 2
    assert set(repository.albums()) == {older, newer}


def test_bulk_lookup_and_idempotent_adoption(repository: PhotoRepository) -> None:
    album = uuid.uuid4()
    photos = [new_photo(album) for _ in range(1200)]
    assert len(repository.adopt(photos)) == 1200
    assert repository.adopt(photos) == [], "adopting twice creates nothing"
    clash = NewPhoto(id=uuid.uuid4(), album_id=album, original_key=photos[0].original_key)
    assert repository.adopt([clash]) == [], "an existing key is never adopted again"
    found = repository.find_by_original_keys([p.original_key for p in photos] + ["raw/nothing.jpg"])
    assert len(found) == 1200
    assert len(repository.get_many([p.id for p in photos])) == 1200


def _claim_until_empty(repository: PhotoRepository, album: uuid.UUID, worker: str, out: list[uuid.UUID]) -> None:
    while claims := repository.claim_batch(album, worker, 7):
        out.extend(c.id for c in claims)


def test_threads_claim_every_photo_exactly_once(database_url: str) -> None:
    migrate(database_url)
    repository = PhotoRepository.from_url(database_url)
    album = uuid.uuid4()
    ids = register(repository, album, 200)
    results: list[list[uuid.UUID]] = [[] for _ in range(8)]
    threads = [
        threading.Thread(target=_claim_until_empty, args=(repository, album, f"worker-{i}", results[i])) for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [photo for result in results for photo in result]
    assert Counter(claimed).most_common(1)[0][1] == 1
    assert sorted(claimed) == sorted(ids)


def _process_worker(url: str, album: str, worker: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    repository = PhotoRepository.from_url(url)
    out: list[uuid.UUID] = []
    _claim_until_empty(repository, uuid.UUID(album), worker, out)
    queue.put([str(i) for i in out])


def test_processes_claim_every_photo_exactly_once_on_postgres(postgres_url: str) -> None:
    migrate(postgres_url)
    repository = PhotoRepository.from_url(postgres_url)
    album = uuid.uuid4()
    ids = register(repository, album, 200)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [
        context.Process(target=_process_worker, args=(postgres_url, str(album), f"proc-{i}", queue)) for i in range(4)
    ]
    for p in processes:
        p.start()
    claimed = [uuid.UUID(i) for _ in processes for i in queue.get(timeout=120)]
    for p in processes:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert Counter(claimed).most_common(1)[0][1] == 1
    assert sorted(claimed) == sorted(ids)
