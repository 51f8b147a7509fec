"""The photo repository against real databases: every test runs on PostgreSQL and on SQLite
(the `database_url` fixture), after the real Alembic migrations. Concurrent claims are tested with
threads and with spawned processes on PostgreSQL, and with threads on a shared SQLite file."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Uuid, bindparam, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, StatementError

from photo_pipeline.photos.albums import AlbumFigures, FailedPhotoCounts
from photo_pipeline.photos.claims import ClaimedPhoto
from photo_pipeline.photos.database import (
    alembic_config,
    create_engine_for,
    current_revision,
    head_revision,
    migrate,
)
from photo_pipeline.photos.models import Base, PhotoStatus, UTCDateTime
from photo_pipeline.photos.reconcile_queries import ReconciliationQueries
from photo_pipeline.photos.repository import (
    CleanupRefused,
    DuplicatePhoto,
    NewPhoto,
    PhotoNotFound,
    PhotoRecord,
    PhotoRepository,
    utc_now,
)
from photo_pipeline.storage import keys

CONCURRENT_PHOTOS = 200
CLAIM_LIMIT = 7


class Clock:
    """A clock the test moves by hand, so timestamps can be asserted exactly."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 1) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def repository(database_url: str, clock: Clock) -> Iterator[PhotoRepository]:
    migrate(database_url)
    repo = PhotoRepository(create_engine_for(database_url), clock=clock)
    yield repo
    repo.engine.dispose()


def new_photo(album: uuid.UUID, **extra: object) -> NewPhoto:
    photo_id = uuid.uuid4()
    return NewPhoto(id=photo_id, album_id=album, original_key=keys.raw_key(album, photo_id, "jpg"), **extra)  # type: ignore[arg-type]


def register(repository: PhotoRepository, album: uuid.UUID, count: int, clock: Clock | None = None) -> list[uuid.UUID]:
    """Register `count` pending photos, one clock second apart when a clock is given."""
    ids = []
    for _ in range(count):
        ids.append(repository.register_pending(new_photo(album)).id)
        if clock is not None:
            clock.advance()
    return ids


def complete(repository: PhotoRepository, claim: ClaimedPhoto, tag: str = "x") -> bool:
    return repository.complete(
        claim,
        thumb_key=f"processed/thumbs/{tag}.jpg",
        preview_key=f"processed/previews/{tag}.jpg",
        width=4000,
        height=3000,
        original_bytes=5_000_000,
        thumb_bytes=20_000,
        preview_bytes=300_000,
    )


def row(repository: PhotoRepository, photo_id: uuid.UUID) -> PhotoRecord:
    record = repository.get(photo_id)
    assert record is not None, f"photo {photo_id} is gone"
    return record


# -- schema -------------------------------------------------------------------------------------


def test_migrations_reach_head_and_match_the_model(database_url: str) -> None:
    assert current_revision(database_url) is None
    migrate(database_url)
    migrate(database_url)  # idempotent
    assert current_revision(database_url) == head_revision()
    engine = create_engine_for(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def alembic(url: str, direction: str, revision: str) -> None:
    """Alembic upgrade/downgrade to `revision`, on one connection as `migrate` runs it."""
    engine = create_engine_for(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            getattr(command, direction)(config, revision)
    finally:
        engine.dispose()


def insert_photo_with_sql(engine: Engine, album: uuid.UUID, photo: uuid.UUID, status: str, attempts: int) -> None:
    """A photo row written with plain SQL, for tests of older revisions: the model is the newest
    schema and would name columns a revision does not have yet."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO photos (id, album_id, original_key, status, attempts, created_at, updated_at) "
                "VALUES (:id, :album, :key, :status, :attempts, :now, :now)"
            ).bindparams(bindparam("id", type_=Uuid()), bindparam("album", type_=Uuid()), bindparam("now", type_=UTCDateTime())),
            {"id": photo, "album": album, "key": f"raw/{album}/{photo}.jpg", "status": status, "attempts": attempts, "now": utc_now()},
        )


def test_migration_0005_adds_album_titles_beside_existing_photos(database_url: str) -> None:
    # Rows are written and read with plain SQL at older revisions: the model is the newest schema.
    alembic(database_url, "upgrade", "0004")
    engine = create_engine_for(database_url)
    album, photo = uuid.uuid4(), uuid.uuid4()
    insert_photo_with_sql(engine, album, photo, "pending", 0)
    assert "albums" not in inspect(engine).get_table_names()

    alembic(database_url, "upgrade", "0005")
    assert current_revision(database_url) == "0005"
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO albums (id, title, created_at) VALUES (:id, 'Holiday', :now)").bindparams(
                bindparam("id", type_=Uuid()), bindparam("now", type_=UTCDateTime())
            ),
            {"id": album, "now": utc_now()},
        )
        assert conn.execute(text("SELECT title FROM albums")).scalar_one() == "Holiday"

    alembic(database_url, "downgrade", "0004")
    assert "albums" not in inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM photos")).scalar_one() == "pending", "the photos are untouched"
    engine.dispose()

    migrate(database_url)  # and to the newest revision, where the repository reads titles
    repository = PhotoRepository(create_engine_for(database_url))
    assert repository.set_album_title(album, "Holiday").title == "Holiday"
    assert repository.album_titles([album]) == {album: "Holiday"}
    assert row(repository, photo).album_id == album
    repository.engine.dispose()


# -- single photos ------------------------------------------------------------------------------


def test_register_pending_and_get(repository: PhotoRepository, clock: Clock) -> None:
    album = uuid.uuid4()
    photo = new_photo(album, filename="IMG_0001.JPG", content_type="image/jpeg", original_bytes=1234)
    record = repository.register_pending(photo)
    assert record.status is PhotoStatus.PENDING
    assert (record.id, record.album_id, record.original_key) == (photo.id, album, photo.original_key)
    assert (record.filename, record.content_type, record.original_bytes) == ("IMG_0001.JPG", "image/jpeg", 1234)
    assert record.attempts == 0 and record.error is None and record.claimed_by is None
    assert record.created_at == record.updated_at == clock.now
    assert repository.get(photo.id) == record
    assert repository.get(uuid.uuid4()) is None
    other = repository.register_pending(new_photo(album))
    assert repository.get_many([photo.id, other.id, uuid.uuid4()]) == {photo.id: record, other.id: other}


def test_register_pending_refuses_a_duplicate_id_or_key(repository: PhotoRepository) -> None:
    album = uuid.uuid4()
    photo = repository.register_pending(new_photo(album))
    same_id = NewPhoto(id=photo.id, album_id=album, original_key="raw/elsewhere.jpg")
    same_key = NewPhoto(id=uuid.uuid4(), album_id=album, original_key=photo.original_key)
    for duplicate in (same_id, same_key):
        with pytest.raises(DuplicatePhoto, match="already registered") as raised:
            repository.register_pending(duplicate)
        assert isinstance(raised.value, IntegrityError)  # callers catching IntegrityError still do
    assert repository.status_counts()[PhotoStatus.PENDING] == 1


def test_datetimes_are_stored_and_returned_as_aware_utc(database_url: str) -> None:
    migrate(database_url)
    plus_two = datetime(2026, 11, 28, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    repository = PhotoRepository.from_url(database_url)
    try:
        stored = PhotoRepository(repository.engine, clock=lambda: plus_two).register_pending(new_photo(uuid.uuid4()))
        again = row(repository, stored.id)
        assert again.created_at == plus_two and again.created_at.utcoffset() == timedelta(0)
        naive = PhotoRepository(repository.engine, clock=lambda: datetime(2026, 11, 28, 12, 0))
        with pytest.raises(StatementError, match="naive datetime"):
            naive.register_pending(new_photo(uuid.uuid4()))
    finally:
        repository.engine.dispose()


# -- claims -------------------------------------------------------------------------------------


def test_claim_moves_pending_to_processing(repository: PhotoRepository, clock: Clock) -> None:
    album = uuid.uuid4()
    ids = register(repository, album, 3, clock)
    claims = repository.claim_batch(album, "run-1", 10)
    assert [c.id for c in claims] == ids
    assert {c.attempts for c in claims} == {1}
    [token] = {c.claim for c in claims}  # one token per call ...
    assert token.startswith("run-1/")
    for claim in claims:
        record = row(repository, claim.id)
        assert record.status is PhotoStatus.PROCESSING
        assert (record.claimed_by, record.claimed_at, record.updated_at) == (token, clock.now, clock.now)
        assert (claim.album_id, claim.original_key, claim.created_at) == (album, record.original_key, record.created_at)
    repository.release(claims[0])
    [again] = repository.claim_batch(album, "run-1", 10)
    assert again.claim != token and again.attempts == 2  # ... and a fresh one for the next


def test_claim_respects_album_limit_order_and_exclude(repository: PhotoRepository, clock: Clock) -> None:
    album, other = uuid.uuid4(), uuid.uuid4()
    ids = register(repository, album, 5, clock)
    register(repository, other, 2, clock)
    assert [c.id for c in repository.claim_batch(album, "run", 2)] == ids[:2]  # oldest first
    assert [c.id for c in repository.claim_batch(album, "run", 2, exclude=[ids[2]])] == ids[3:5]
    assert [c.id for c in repository.claim_batch(album, "run", 10)] == [ids[2]]
    assert repository.claim_batch(album, "run", 10) == []
    assert repository.claim_batch(other, "run", 0) == []
    assert repository.status_counts(other)[PhotoStatus.PENDING] == 2
    assert repository.status_counts(album)[PhotoStatus.PROCESSING] == 5


def test_claim_photos_by_id_and_for_rerender(repository: PhotoRepository) -> None:
    album = uuid.uuid4()
    pending, done, failed = register(repository, album, 3)
    first = {c.id: c for c in repository.claim_photos([done, failed], "run-1")}
    complete(repository, first[done])
    repository.fail(first[failed], "bad")
    # By default only pending photos are claimed; the others are left out, not errors.
    claimed = repository.claim_photos([pending, done, failed, uuid.uuid4()], "run-2")
    assert [c.id for c in claimed] == [pending]
    # A re-render is the explicit completed -> processing.
    [rerender] = repository.claim_photos([done, failed], "run-3", from_statuses=(PhotoStatus.COMPLETED,))
    assert rerender.id == done and rerender.attempts == 2
    assert row(repository, done).status is PhotoStatus.PROCESSING
    assert row(repository, failed).status is PhotoStatus.FAILED


def test_complete_fail_release(repository: PhotoRepository, clock: Clock) -> None:
    album = uuid.uuid4()
    a, b, c = register(repository, album, 3)
    claims = {claim.id: claim for claim in repository.claim_batch(album, "run", 3)}
    clock.advance(5)
    assert complete(repository, claims[a], "a")
    done = row(repository, a)
    assert done.status is PhotoStatus.COMPLETED
    assert (done.thumb_key, done.preview_key) == ("processed/thumbs/a.jpg", "processed/previews/a.jpg")
    assert (done.width, done.height, done.original_bytes, done.thumb_bytes, done.preview_bytes) == (
        4000, 3000, 5_000_000, 20_000, 300_000,
    )
    assert done.completed_at == done.updated_at == clock.now
    assert (done.claimed_by, done.claimed_at, done.error) == (None, None, None)

    assert repository.fail(claims[b], "cannot decode: truncated file")
    failed = row(repository, b)
    assert (failed.status, failed.error, failed.claimed_by) == (PhotoStatus.FAILED, "cannot decode: truncated file", None)

    assert repository.release(claims[c], "original not found yet")
    released = row(repository, c)
    assert (released.status, released.error, released.claimed_by, released.claimed_at) == (
        PhotoStatus.PENDING, "original not found yet", None, None,
    )
    assert released.attempts == 1  # kept: the attempt happened
    # Finished photos cannot be finished again with the old claim.
    assert not repository.fail(claims[a], "again")
    assert not complete(repository, claims[b])


@pytest.mark.parametrize("late_write", ["complete", "fail", "release"])
def test_a_late_writer_whose_claim_was_taken_over_changes_nothing(
    repository: PhotoRepository, clock: Clock, late_write: str
) -> None:
    album = uuid.uuid4()
    [photo] = register(repository, album, 1)
    [stale] = repository.claim_batch(album, "run-1", 1)
    # The claim expires: the photo is released and another run claims it.
    assert repository.release(stale, "claim expired")
    clock.advance(60)
    [current] = repository.claim_batch(album, "run-2", 1)
    assert current.id == photo and current.attempts == 2
    before = row(repository, photo)

    writes: dict[str, Callable[[], bool]] = {
        "complete": lambda: complete(repository, stale),
        "fail": lambda: repository.fail(stale, "late failure"),
        "release": lambda: repository.release(stale, "late release"),
    }
    clock.advance(60)
    assert writes[late_write]() is False
    assert row(repository, photo) == before
    assert complete(repository, current)  # the owner's write still lands


def test_expired_claims(repository: PhotoRepository, clock: Clock) -> None:
    album = uuid.uuid4()
    register(repository, album, 3)
    old = repository.claim_batch(album, "run-1", 2)
    clock.advance(600)
    [fresh] = repository.claim_batch(album, "run-2", 1)
    expired = repository.expired_claims(clock.now - timedelta(seconds=300))
    assert {r.id for r in expired} == {c.id for c in old}
    assert all(r.status is PhotoStatus.PROCESSING for r in expired)
    assert len(repository.expired_claims(clock.now + timedelta(seconds=1), limit=2)) == 2
    assert fresh.id not in {r.id for r in expired}


def test_renew_claims_only_renews_claims_still_held_under_their_tokens(repository: PhotoRepository, clock: Clock) -> None:
    album = uuid.uuid4()
    held, finished, taken_over = register(repository, album, 3)
    claims = {c.id: c for c in repository.claim_batch(album, "run-1", 3)}
    complete(repository, claims[finished])
    assert repository.release(claims[taken_over], "expired")
    [other] = repository.claim_photos([taken_over], "run-2")
    clock.advance(90)

    assert repository.renew_claims(list(claims.values())) == {held}
    assert row(repository, held).claimed_at == clock.now
    assert row(repository, taken_over).claimed_by == other.claim, "another run's claim is not touched"
    assert row(repository, taken_over).claimed_at == clock.now - timedelta(seconds=90)
    assert row(repository, finished).status is PhotoStatus.COMPLETED and row(repository, finished).claimed_at is None


def test_claim_batch_takes_back_expired_claims_but_never_live_ones(repository: PhotoRepository, clock: Clock) -> None:
    album = uuid.uuid4()
    crashed, renewed, fresh = register(repository, album, 3, clock)
    claims = {c.id: c for c in repository.claim_photos([crashed, renewed], "killed-run")}
    clock.advance(100)
    repository.renew_claims([claims[renewed]])  # this one's run is alive and renewing
    [newer] = repository.claim_photos([fresh], "slow-run")
    clock.advance(30)  # crashed: claimed 130 s ago; renewed: 30 s ago; fresh: 30 s ago

    assert repository.claim_batch(album, "next-run", 10) == [], "without a lease, processing rows are not claimable"
    taken = repository.claim_batch(album, "next-run", 10, lease_seconds=120)
    assert [c.id for c in taken] == [crashed]
    assert taken[0].attempts == 2, "the take-over counts as an attempt"
    assert row(repository, crashed).claimed_by == taken[0].claim
    assert row(repository, renewed).claimed_by == claims[renewed].claim
    assert row(repository, fresh).claimed_by == newer.claim
    # The killed run's late write is fenced off.
    assert not complete(repository, claims[crashed])


def test_an_expired_claim_past_max_attempts_ends_failed_not_reclaimed(repository: PhotoRepository, clock: Clock) -> None:
    album = uuid.uuid4()
    [photo] = register(repository, album, 1)
    for attempt in range(1, 4):
        [claim] = repository.claim_batch(album, f"run-{attempt}", 1, lease_seconds=60, max_attempts=3)
        assert claim.attempts == attempt
        clock.advance(61)  # every run dies without giving the photo back
    assert repository.claim_batch(album, "run-4", 1, lease_seconds=60, max_attempts=3) == []
    assert repository.fail_exhausted_claims(album, lease_seconds=60, max_attempts=3) == [photo]
    failed = row(repository, photo)
    assert failed.status is PhotoStatus.FAILED and failed.claimed_by is None
    assert failed.error and "gave up after 3 attempts" in failed.error
    assert repository.fail_exhausted_claims(album, lease_seconds=60, max_attempts=3) == []


def test_expired_claim_tokens_group_by_album_and_token(repository: PhotoRepository, clock: Clock) -> None:
    album_a, album_b = uuid.uuid4(), uuid.uuid4()
    register(repository, album_a, 4)
    register(repository, album_b, 1)
    first = repository.claim_batch(album_a, "run-1", 2)
    second = repository.claim_batch(album_a, "run-1", 2)
    [other] = repository.claim_batch(album_b, "run-2", 1)
    clock.advance(200)
    repository.renew_claims([other])
    found = repository.expired_claim_tokens(clock.now - timedelta(seconds=120))
    assert found == {album_a: sorted({first[0].claim, second[0].claim})}


def test_release_held_gives_back_what_a_run_still_holds(repository: PhotoRepository) -> None:
    album = uuid.uuid4()
    register(repository, album, 3)
    claims = repository.claim_batch(album, "run-1", 3)
    complete(repository, claims[0])
    given_back = repository.release_held({claims[0].claim}, "left unfinished")
    assert sorted(given_back) == sorted(c.id for c in claims[1:])
    assert all(row(repository, c.id).status is PhotoStatus.PENDING for c in claims[1:])
    assert repository.release_held({claims[0].claim}, "again") == []
    assert repository.release_held(set(), "nothing") == []


# -- operator actions ---------------------------------------------------------------------------


def test_delete_for_cleanup_rules(repository: PhotoRepository) -> None:
    album = uuid.uuid4()
    pending, failing, processing, completing, missing = register(repository, album, 5)
    claims = {c.id: c for c in repository.claim_photos([failing, processing, completing], "run")}
    repository.fail(claims[failing], "bad")
    complete(repository, claims[completing])
    ReconciliationQueries(repository).flag_missing([missing])
    assert row(repository, missing).status is PhotoStatus.MISSING

    assert repository.delete_for_cleanup(pending).status is PhotoStatus.PENDING
    assert repository.delete_for_cleanup(failing).status is PhotoStatus.FAILED
    assert repository.delete_for_cleanup(missing).status is PhotoStatus.MISSING
    with pytest.raises(CleanupRefused, match="processing"):
        repository.delete_for_cleanup(processing)
    with pytest.raises(CleanupRefused, match="completed"):
        repository.delete_for_cleanup(completing)
    with pytest.raises(PhotoNotFound):
        repository.delete_for_cleanup(pending)  # already deleted
    with pytest.raises(PhotoNotFound):
        repository.delete_for_cleanup(uuid.uuid4())
    assert repository.get_many([pending, failing, missing]) == {}
    assert row(repository, processing).status is PhotoStatus.PROCESSING
    assert row(repository, completing).status is PhotoStatus.COMPLETED


def test_requeue_failed(repository: PhotoRepository, clock: Clock) -> None:
    album, other = uuid.uuid4(), uuid.uuid4()
    ids = register(repository, album, 4)
    other_ids = register(repository, other, 2)
    claims = {c.id: c for c in repository.claim_photos([*ids, *other_ids], "run")}
    for photo_id in [*ids[:3], *other_ids]:
        repository.fail(claims[photo_id], "bad")
    ReconciliationQueries(repository).flag_missing([ids[3]])  # processing: not flagged
    complete(repository, claims[ids[3]])
    ReconciliationQueries(repository).flag_missing([ids[3]])
    clock.advance(30)

    by_id = [r.record for r in repository.requeue_failed(photo_ids=[ids[0], ids[3]])]
    assert [r.id for r in by_id] == [ids[0]]  # missing only with include_missing
    assert by_id[0].status is PhotoStatus.PENDING and by_id[0].error is None
    assert by_id[0].attempts == 1 and by_id[0].updated_at == clock.now
    assert {r.record.id for r in repository.requeue_failed(album_id=album)} == set(ids[1:3])
    assert [r.record.id for r in repository.requeue_failed(album_id=album, include_missing=True)] == [ids[3]]
    assert row(repository, ids[3]).missing_since is None
    assert repository.requeue_failed(photo_ids=[]) == []
    assert repository.status_counts(other)[PhotoStatus.FAILED] == 2
    assert {r.record.id for r in repository.requeue_failed()} == set(other_ids)
    assert repository.status_counts()[PhotoStatus.PENDING] == 6


# -- bulk reads -----------------------------------------------------------------------------------


def test_status_counts(repository: PhotoRepository) -> None:
    assert repository.status_counts() == {status: 0 for status in PhotoStatus}
    assert repository.status_counts_by_album() == {}
    first, second = uuid.uuid4(), uuid.uuid4()
    register(repository, first, 3)
    register(repository, second, 2)
    [claim] = repository.claim_batch(second, "run", 1)
    repository.fail(claim, "bad")
    repository.claim_batch(first, "run", 1)

    counts = repository.status_counts()
    assert set(counts) == set(PhotoStatus)
    assert counts == {
        PhotoStatus.PENDING: 3,
        PhotoStatus.PROCESSING: 1,
        PhotoStatus.COMPLETED: 0,
        PhotoStatus.FAILED: 1,
        PhotoStatus.MISSING: 0,
        PhotoStatus.TRASHED: 0,
    }
    assert repository.status_counts(second)[PhotoStatus.FAILED] == 1
    assert repository.status_counts(uuid.uuid4()) == {status: 0 for status in PhotoStatus}
    by_album = repository.status_counts_by_album()
    assert set(by_album) == {first, second}
    assert by_album[first] == {**{s: 0 for s in PhotoStatus}, PhotoStatus.PENDING: 2, PhotoStatus.PROCESSING: 1}
    assert by_album[second] == {**{s: 0 for s in PhotoStatus}, PhotoStatus.PENDING: 1, PhotoStatus.FAILED: 1}


def test_album_titles(repository: PhotoRepository, clock: Clock) -> None:
    album, untitled = uuid.uuid4(), uuid.uuid4()
    assert repository.album(album) is None
    first = repository.set_album_title(album, "Holiday")
    clock.advance(60)
    renamed = repository.set_album_title(album, "Holiday 2026 — Crète")
    assert renamed.title == "Holiday 2026 — Crète"
    assert renamed.created_at == first.created_at == datetime(2026, 11, 28, 12, 0, tzinfo=UTC), "a new title keeps the album's created_at"
    assert repository.album(album) == renamed
    assert repository.album_titles([album, untitled]) == {album: "Holiday 2026 — Crète"}
    assert repository.album_titles([]) == {}


def test_album_figures_failures_and_latest_thumbnail(repository: PhotoRepository, clock: Clock) -> None:
    album, other = uuid.uuid4(), uuid.uuid4()
    ids = [repository.register_pending(new_photo(album, filename=f"IMG_{i}.JPG")).id for i in range(5)]
    [pending_elsewhere] = register(repository, other, 1)
    claims = {c.id: c for c in repository.claim_photos(ids[:4], "run")}
    complete(repository, claims[ids[0]], "first")
    clock.advance()
    complete(repository, claims[ids[1]], "second")
    repository.fail(claims[ids[2]], "cannot render: truncated")
    clock.advance()
    repository.fail(claims[ids[3]], "cannot render: not an image")

    figures = repository.album_figures()
    assert figures[album] == AlbumFigures(
        album,
        {**{s: 0 for s in PhotoStatus}, PhotoStatus.COMPLETED: 2, PhotoStatus.FAILED: 2, PhotoStatus.PENDING: 1},
        thumb_bytes=2 * 20_000,
        preview_bytes=2 * 300_000,
    )
    assert repository.album_figures([other]) == {other: AlbumFigures(other, {**{s: 0 for s in PhotoStatus}, PhotoStatus.PENDING: 1})}
    assert repository.album_figures([uuid.uuid4()]) == {}, "an album without photos has no figures"

    assert repository.failed_photo_counts(limit=10) == FailedPhotoCounts(albums=1, photos=2, most_failed=[(album, 2)])
    latest = repository.failed_in_albums([album, other], per_album=1)
    assert list(latest) == [album]
    [newest] = latest[album]
    assert (newest.id, newest.display_filename, newest.error) == (ids[3], "IMG_3.JPG", "cannot render: not an image")
    assert [r.id for r in repository.failed_in_albums([album], per_album=5)[album]] == [ids[3], ids[2]]

    assert repository.latest_thumbnail_key(album) == "processed/thumbs/second.jpg"
    assert repository.latest_thumbnail_key(other) is None
    # A row without a recorded file name shows its key's last segment.
    assert row(repository, pending_elsewhere).display_filename == f"{pending_elsewhere}.jpg"


def test_pending_albums_and_pending_in_album(repository: PhotoRepository, clock: Clock) -> None:
    oldest, middle, newest, done = (uuid.uuid4() for _ in range(4))
    start = clock.now
    register(repository, oldest, 2, clock)
    register(repository, middle, 3, clock)
    register(repository, done, 1, clock)
    register(repository, newest, 1, clock)
    [claim] = repository.claim_batch(done, "run", 1)
    complete(repository, claim)
    [claim] = repository.claim_batch(middle, "run", 1)
    clock.advance(100)
    repository.release(claim, "not found yet")  # pending again, touched last

    pending = repository.pending_albums()
    assert [(p.album_id, p.pending) for p in pending] == [(oldest, 2), (middle, 3), (newest, 1)]
    assert pending[0].oldest_created_at == start and pending[0].newest_updated_at == start + timedelta(seconds=1)
    assert pending[1].newest_updated_at == clock.now
    assert [p.album_id for p in repository.pending_albums(limit=2)] == [oldest, middle]
    # Albums whose oldest pending photo is older than the bound; their figures stay whole.
    bounded = repository.pending_albums(older_than=start + timedelta(seconds=3))
    assert [(p.album_id, p.pending) for p in bounded] == [(oldest, 2), (middle, 3)]

    in_middle = repository.pending_in_album(middle, 10)
    assert len(in_middle) == 3 and {r.status for r in in_middle} == {PhotoStatus.PENDING}
    assert in_middle[0].id == claim.id  # most recently changed first
    assert len(repository.pending_in_album(middle, 2)) == 2
    assert repository.pending_in_album(done, 10) == []
    assert set(repository.albums()) == {oldest, middle, newest, done}


def test_find_by_original_keys_in_bulk(repository: PhotoRepository) -> None:
    album = uuid.uuid4()
    photos = [new_photo(album) for _ in range(2500)]
    assert len(repository.adopt(photos)) == 2500
    unknown = [f"raw/{album}/{uuid.uuid4()}.jpg" for _ in range(2500)]
    asked = [p.original_key for p in photos] + unknown  # 5000 keys: far past SQLite's old 999
    found = repository.find_by_original_keys(asked)
    assert set(found) == {p.original_key for p in photos}
    assert all(found[p.original_key].id == p.id for p in photos)
    assert repository.find_by_original_keys([]) == {}
    assert len(repository.get_many([p.id for p in photos])) == 2500


def test_adopt_is_idempotent(repository: PhotoRepository, clock: Clock) -> None:
    album = uuid.uuid4()
    registered = repository.register_pending(new_photo(album))
    photos = [new_photo(album, filename=f"{i}.jpg", original_bytes=i) for i in range(5)]
    assert sorted(repository.adopt(photos)) == sorted(p.id for p in photos)
    adopted = row(repository, photos[3].id)
    assert (adopted.status, adopted.filename, adopted.original_bytes, adopted.created_at) == (
        PhotoStatus.PENDING, "3.jpg", 3, clock.now,
    )
    assert repository.adopt(photos) == [], "a second run creates nothing"

    same_key = NewPhoto(id=uuid.uuid4(), album_id=album, original_key=registered.original_key)
    same_id = NewPhoto(id=registered.id, album_id=album, original_key=f"raw/{album}/renamed.jpg")
    fresh = new_photo(album)
    assert repository.adopt([same_key, same_id, fresh, fresh]) == [fresh.id]
    assert row(repository, registered.id) == registered
    assert repository.get(same_key.id) is None
    assert repository.adopt([]) == []
    assert repository.status_counts(album)[PhotoStatus.PENDING] == 7


# -- concurrency ----------------------------------------------------------------------------------


def claim_until_empty(repository: PhotoRepository, album: uuid.UUID, worker: str) -> list[uuid.UUID]:
    """What a worker does: claim batches of the album until there are none left, finishing each."""
    claimed: list[uuid.UUID] = []
    while claims := repository.claim_batch(album, worker, CLAIM_LIMIT):
        for claim in claims:
            assert complete(repository, claim), f"{worker} lost its claim on {claim.id}"
        claimed.extend(c.id for c in claims)
    return claimed


def run_claiming_threads(repositories: list[PhotoRepository], album: uuid.UUID) -> list[uuid.UUID]:
    """Start all workers at once (a barrier) and collect their claims and errors."""
    barrier = threading.Barrier(len(repositories))
    results: list[list[uuid.UUID]] = [[] for _ in repositories]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = claim_until_empty(repositories[index], album, f"thread-{index}")
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(repositories))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    return [photo for result in results for photo in result]


def assert_claimed_exactly_once(claimed: list[uuid.UUID], expected: list[uuid.UUID]) -> None:
    doubles = [photo for photo, times in Counter(claimed).items() if times > 1]
    assert doubles == [], f"claimed more than once: {doubles}"
    assert set(claimed) == set(expected) and len(claimed) == len(expected)


def seed_album(url: str) -> tuple[uuid.UUID, list[uuid.UUID]]:
    migrate(url)
    repository = PhotoRepository.from_url(url)
    album = uuid.uuid4()
    try:
        photos = [new_photo(album) for _ in range(CONCURRENT_PHOTOS)]
        assert len(repository.adopt(photos)) == CONCURRENT_PHOTOS
    finally:
        repository.engine.dispose()
    return album, [p.id for p in photos]


def test_threads_on_postgres_claim_every_photo_exactly_once(postgres_url: str) -> None:
    album, ids = seed_album(postgres_url)
    shared = PhotoRepository.from_url(postgres_url)  # one pooled engine, a connection per thread
    try:
        claimed = run_claiming_threads([shared] * 8, album)
        assert_claimed_exactly_once(claimed, ids)
        assert shared.status_counts(album)[PhotoStatus.COMPLETED] == CONCURRENT_PHOTOS
    finally:
        shared.engine.dispose()


def _claim_in_process(url: str, album: str, worker: str, start: object, results: object) -> None:
    # Runs in a spawned process: its own interpreter, engine and connections.
    repository = PhotoRepository.from_url(url)
    try:
        start.wait(timeout=60)  # type: ignore[attr-defined]
        claimed = claim_until_empty(repository, uuid.UUID(album), worker)
        results.put((worker, [str(photo) for photo in claimed]))  # type: ignore[attr-defined]
    except Exception as exc:
        results.put((worker, f"error: {exc!r}"))  # type: ignore[attr-defined]
        raise
    finally:
        repository.engine.dispose()


def test_processes_on_postgres_claim_every_photo_exactly_once(postgres_url: str) -> None:
    album, ids = seed_album(postgres_url)
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(4), context.Queue()
    processes = [
        context.Process(target=_claim_in_process, args=(postgres_url, str(album), f"proc-{i}", start, results))
        for i in range(4)
    ]
    for process in processes:
        process.start()
    try:
        reports = dict(results.get(timeout=120) for _ in processes)
    finally:
        for process in processes:
            process.join(timeout=60)
    failures = {worker: report for worker, report in reports.items() if isinstance(report, str)}
    assert failures == {}
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    claimed = [uuid.UUID(photo) for report in reports.values() for photo in report]
    assert_claimed_exactly_once(claimed, ids)


def test_threads_on_one_sqlite_file_claim_every_photo_exactly_once(sqlite_url: str) -> None:
    album, ids = seed_album(sqlite_url)
    # An engine per thread: separate connections contend for the file's write lock, which the
    # busy timeout turns into waiting rather than "database is locked".
    repositories = [PhotoRepository.from_url(sqlite_url) for _ in range(6)]
    try:
        claimed = run_claiming_threads(repositories, album)
        assert_claimed_exactly_once(claimed, ids)
        assert repositories[0].status_counts(album)[PhotoStatus.COMPLETED] == CONCURRENT_PHOTOS
    finally:
        for repository in repositories:
            repository.engine.dispose()
