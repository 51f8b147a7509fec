"""The trash and the erase record in the photo table (issue 17), on PostgreSQL and on SQLite after
the real migrations: trash keeps the row whole and remembers what it was, restore brings exactly
that back (a claim in flight is void), erase leaves nothing but ids and a time, and nothing
registers or adopts an erased photo or album again."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from photo_pipeline.photos.claims import PhotoFacts, StoredRendition
from photo_pipeline.photos.database import create_engine_for, migrate
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRecord, PhotoRepository
from photo_pipeline.photos.trash import AlbumErased, AlbumInTrash, AlbumNotFound, PhotoErased
from photo_pipeline.storage import keys
from photo_pipeline_tests.photos.test_repository import (  # noqa: F401 - clock, repository: fixtures
    Clock,
    alembic,
    clock,
    insert_photo_with_sql,
    new_photo,
    register,
    repository,
    row,
)


def completed(repository: PhotoRepository, album: uuid.UUID, *, sha256: str | None = None, sized: int = 2) -> uuid.UUID:
    """A photo rendered with a thumbnail, a preview and `sized` responsive files."""
    [photo_id] = register(repository, album, 1)
    [claim] = repository.claim_photos([photo_id], "run")
    files = [
        StoredRendition(key=keys.sized_key(album, photo_id, size, "JPEG"), size=size, format="JPEG", width=size, height=size, bytes=10)
        for size in (400, 800)[:sized]
    ]
    assert repository.complete(
        claim,
        thumb_key=keys.thumb_key(album, photo_id, "JPEG"),
        preview_key=keys.preview_key(album, photo_id, "JPEG"),
        width=4000,
        height=3000,
        original_bytes=5_000,
        thumb_bytes=200,
        preview_bytes=3_000,
        original_etag='"etag"',
        facts=PhotoFacts(original_sha256=sha256 or uuid.uuid4().hex),
        files=files,
    )
    return photo_id


def duplicate_of(repository: PhotoRepository, album: uuid.UUID, canonical: uuid.UUID) -> uuid.UUID:
    [photo_id] = register(repository, album, 1)
    [claim] = repository.claim_photos([photo_id], "run")
    sha = row(repository, canonical).original_sha256
    assert sha is not None
    assert repository.complete_duplicate(claim, duplicate_of=canonical, original_sha256=sha, original_bytes=5_000)
    return photo_id


TRASH_COLUMNS = {"trashed_at", "trashed_from", "trashed_with_album", "updated_at"}


def without_trash(record: PhotoRecord | None) -> dict[str, object]:
    """The whole row but the trash's own columns and updated_at: what restore must bring back."""
    assert record is not None, "the photo has no row"
    return {k: v for k, v in dataclasses.asdict(record).items() if k not in TRASH_COLUMNS}


# -- trash and restore ---------------------------------------------------------------------------


def test_trash_keeps_the_row_and_restore_brings_back_exactly_it(repository: PhotoRepository, clock: Clock) -> None:
    album = uuid.uuid4()
    photo = completed(repository, album)
    before, files = row(repository, photo), repository.rendition_files(photo)
    clock.advance(60)

    outcome = repository.trash_photos([photo])

    assert [(r.id, r.album_id, r.status_before) for r in outcome.rows] == [(photo, album, PhotoStatus.COMPLETED)]
    trashed = row(repository, photo)
    assert trashed.status is PhotoStatus.TRASHED and trashed.trashed_from is PhotoStatus.COMPLETED
    assert trashed.trashed_at == clock.now and trashed.trashed_with_album is False
    assert (trashed.thumb_key, trashed.preview_key, trashed.original_key) == (before.thumb_key, before.preview_key, before.original_key)
    assert repository.rendition_files(photo) == files, "its renditions stay recorded: their files are kept"
    # Trashed twice: the first trash time stands.
    clock.advance(60)
    assert repository.trash_photos([photo]).rows == []
    assert row(repository, photo).trashed_at == clock.now - timedelta(seconds=60)

    [restored] = repository.restore_photos([photo])
    assert (restored.id, restored.status) == (photo, PhotoStatus.COMPLETED)
    after = row(repository, photo)
    assert without_trash(after) == without_trash(before)
    assert (after.trashed_at, after.trashed_from, after.trashed_with_album) == (None, None, None)
    assert repository.rendition_files(photo) == files
    assert repository.restore_photos([photo]) == [], "a photo not in the trash is left alone"


@pytest.mark.parametrize("status", [PhotoStatus.PENDING, PhotoStatus.FAILED, PhotoStatus.MISSING])
def test_every_status_goes_to_the_trash_and_comes_back(repository: PhotoRepository, status: PhotoStatus) -> None:
    album = uuid.uuid4()
    [photo] = register(repository, album, 1)
    if status is PhotoStatus.FAILED:
        [claim] = repository.claim_photos([photo], "run")
        repository.fail(claim, "cannot render")
    elif status is PhotoStatus.MISSING:
        from photo_pipeline.photos.reconcile_queries import ReconciliationQueries

        ReconciliationQueries(repository).flag_missing([photo])
    before = row(repository, photo)
    assert before.status is status
    repository.trash_photos([photo])
    assert row(repository, photo).trashed_from is status
    repository.restore_photos([photo])
    assert without_trash(row(repository, photo)) == without_trash(before)


def test_a_run_cannot_finish_a_photo_trashed_under_it_and_restore_voids_its_claim(repository: PhotoRepository) -> None:
    album = uuid.uuid4()
    register(repository, album, 3)
    completing, failing, releasing = repository.claim_batch(album, "run", 3)
    repository.trash_photos([completing.id, failing.id, releasing.id])

    assert not repository.complete(
        completing, thumb_key="t", preview_key="p", width=1, height=1, original_bytes=1, thumb_bytes=1, preview_bytes=1
    )
    assert not repository.fail(failing, "late")
    assert not repository.release(releasing, "late")
    assert repository.renew_claims([completing, failing, releasing]) == set()
    assert repository.release_held({completing.claim}, "left over") == []
    for claim in (completing, failing, releasing):
        trashed = row(repository, claim.id)
        assert trashed.status is PhotoStatus.TRASHED and trashed.trashed_from is PhotoStatus.PROCESSING

    restored = repository.restore_photos([completing.id, failing.id, releasing.id])
    assert {r.status for r in restored} == {PhotoStatus.PENDING}
    for claim in (completing, failing, releasing):
        back = row(repository, claim.id)
        assert back.status is PhotoStatus.PENDING and back.claimed_by is None and back.claimed_at is None
    # The void claim's late completion still changes nothing; a new claim renders it.
    assert not repository.complete(
        completing, thumb_key="t", preview_key="p", width=1, height=1, original_bytes=1, thumb_bytes=1, preview_bytes=1
    )
    assert {c.id for c in repository.claim_batch(album, "next-run", 3)} == {completing.id, failing.id, releasing.id}


def test_the_table_refuses_a_trash_state_that_says_nothing(repository: PhotoRepository) -> None:
    [photo] = register(repository, uuid.uuid4(), 1)
    with pytest.raises(IntegrityError), repository.engine.begin() as conn:
        conn.execute(text("UPDATE photos SET status = 'trashed'"))
    with pytest.raises(IntegrityError), repository.engine.begin() as conn:
        conn.execute(text("UPDATE photos SET trashed_from = 'pending'"))
    assert row(repository, photo).status is PhotoStatus.PENDING


def test_album_trash_takes_every_photo_and_its_restore_only_those(repository: PhotoRepository, clock: Clock) -> None:
    album, other = uuid.uuid4(), uuid.uuid4()
    done = completed(repository, album)
    [pending, earlier] = register(repository, album, 2)
    [elsewhere] = register(repository, other, 1)
    repository.trash_photos([earlier])  # on its own, before the album
    clock.advance(60)

    outcome = repository.trash_album(album)

    assert {(r.id, r.status_before) for r in outcome.rows} == {(done, PhotoStatus.COMPLETED), (pending, PhotoStatus.PENDING)}
    assert row(repository, done).trashed_with_album and row(repository, pending).trashed_with_album
    assert row(repository, earlier).trashed_with_album is False
    assert row(repository, elsewhere).status is PhotoStatus.PENDING
    record = repository.album(album)
    assert record is not None and record.trashed_at == clock.now and record.title is None
    assert repository.album_titles([album]) == {}, "the row made for the trash is no title"

    # A photo of a trashed album is restored with its album, not on its own.
    assert repository.restore_photos([done]) == []
    with pytest.raises(AlbumInTrash, match="restore the album first"):
        repository.register_pending(new_photo(album))
    with pytest.raises(AlbumInTrash):
        repository.set_album_title(album, "Holiday")

    restored = repository.restore_album(album)
    assert restored is not None and {(r.id, r.status) for r in restored} == {(done, PhotoStatus.COMPLETED), (pending, PhotoStatus.PENDING)}
    assert row(repository, earlier).status is PhotoStatus.TRASHED, "trashed on its own: stays in the trash"
    assert repository.album(album) is None, "the untitled row only held the trash time"
    assert repository.restore_album(album) is None
    [back] = repository.restore_photos([earlier])
    assert back.status is PhotoStatus.PENDING


def test_a_titled_album_keeps_its_title_and_first_trash_time(repository: PhotoRepository, clock: Clock) -> None:
    album = uuid.uuid4()
    repository.set_album_title(album, "Holiday")
    first = clock.now
    repository.trash_album(album)  # an album with a title and no photo yet
    clock.advance(3600)
    repository.trash_album(album)
    record = repository.album(album)
    assert record is not None and (record.title, record.trashed_at) == ("Holiday", first)
    assert repository.restore_album(album) == []
    assert repository.album(album) == dataclasses.replace(record, trashed_at=None)
    with pytest.raises(AlbumNotFound):
        repository.trash_album(uuid.uuid4())


def test_trashing_a_photo_sends_its_completed_duplicates_back_to_pending(repository: PhotoRepository) -> None:
    album = uuid.uuid4()
    canonical = completed(repository, album, sha256="ab" * 32)
    copy = duplicate_of(repository, album, canonical)
    unrelated = completed(repository, album)

    outcome = repository.trash_photos([canonical])

    assert [(d.id, d.album_id) for d in outcome.requeued_duplicates] == [(copy, album)]
    requeued = row(repository, copy)
    assert requeued.status is PhotoStatus.PENDING and requeued.duplicate_of is None
    assert (requeued.thumb_key, requeued.preview_key, requeued.thumbhash) == (None, None, None)
    assert row(repository, unrelated).status is PhotoStatus.COMPLETED


# -- erase -----------------------------------------------------------------------------------------


def test_erase_deletes_row_and_renditions_and_keeps_ids_and_time(repository: PhotoRepository, clock: Clock) -> None:
    album = uuid.uuid4()
    photo = completed(repository, album, sha256="cd" * 32)
    copy = duplicate_of(repository, album, photo)
    record = row(repository, photo)
    files = repository.rendition_files(photo)

    outcome = repository.erase_photos([photo, uuid.uuid4()])

    [erased] = outcome.rows
    assert (erased.id, erased.album_id, erased.status) == (photo, album, PhotoStatus.COMPLETED)
    assert set(erased.recorded_keys) == {record.original_key, record.thumb_key, record.preview_key, *(f.key for f in files)}
    assert repository.get(photo) is None and repository.rendition_files(photo) == []
    assert repository.erased_at(photo_id=photo) == clock.now == outcome.erased_at
    assert [d.id for d in outcome.requeued_duplicates] == [copy] and row(repository, copy).status is PhotoStatus.PENDING
    # What the record holds: ids and the time, nothing else.
    with repository.engine.connect() as conn:
        assert [c["name"] for c in inspect(conn).get_columns("erased_photos")] == ["photo_id", "album_id", "erased_at"]
        assert [c["name"] for c in inspect(conn).get_columns("erased_albums")] == ["album_id", "erased_at"]

    with pytest.raises(PhotoErased, match=f"photo {photo} was erased"):
        repository.register_pending(NewPhoto(id=photo, album_id=album, original_key=record.original_key))
    assert repository.erase_photos([photo]).rows == [], "erased twice: nothing more to do"


def test_erase_of_an_album_takes_every_photo_and_the_title(repository: PhotoRepository, clock: Clock) -> None:
    album, other = uuid.uuid4(), uuid.uuid4()
    repository.set_album_title(album, "Private")
    photos = [completed(repository, album), *register(repository, album, 2)]
    repository.trash_photos(photos[1:2])
    [kept] = register(repository, other, 1)

    outcome = repository.erase_album(album)

    assert {r.id for r in outcome.rows} == set(photos)
    assert repository.get_many(photos) == {} and repository.album(album) is None
    assert repository.erased_at(album_id=album) == clock.now
    assert repository.erased_among(photos + [kept], [album, other]).photos == set(photos)
    assert repository.erased_among([], [album, other]).albums == {album}
    assert row(repository, kept).status is PhotoStatus.PENDING
    with pytest.raises(AlbumErased, match=f"album {album} was erased"):
        repository.register_pending(new_photo(album))
    with pytest.raises(AlbumErased):
        repository.set_album_title(album, "Again")
    assert repository.erase_album(album).rows == [], "an erased album may be erased again: nothing is left"
    with pytest.raises(AlbumNotFound):
        repository.erase_album(uuid.uuid4())


def test_adopt_never_brings_back_an_erased_photo_or_album(repository: PhotoRepository) -> None:
    album, gone_album = uuid.uuid4(), uuid.uuid4()
    photo = completed(repository, album)
    odd_key = f"raw/{album}/IMG_0001.jpg"  # adopted under an id minted from its key
    identity = keys.identify_raw_key(odd_key)
    assert identity is not None
    assert repository.adopt([NewPhoto(id=identity.photo_id, album_id=album, original_key=odd_key)]) == [identity.photo_id]
    [in_gone] = register(repository, gone_album, 1)
    original = row(repository, photo).original_key
    repository.erase_photos([photo, identity.photo_id])
    repository.erase_album(gone_album)

    late = [
        NewPhoto(id=photo, album_id=album, original_key=original),  # the same object again
        # ... under an id minted from its key (reconciliation's fallback for a taken id)
        NewPhoto(id=uuid.uuid5(keys.ADOPTION_NAMESPACE, f"photo:{original}"), album_id=album, original_key=original),
        NewPhoto(id=identity.photo_id, album_id=album, original_key=odd_key),
        NewPhoto(id=in_gone, album_id=gone_album, original_key=keys.raw_key(gone_album, in_gone, "jpg")),
        NewPhoto(id=uuid.uuid4(), album_id=gone_album, original_key=f"raw/{gone_album}/new.jpg"),
    ]
    assert repository.adopt(late) == []
    assert repository.find_by_original_keys([p.original_key for p in late]) == {}
    fresh = new_photo(album)
    assert repository.adopt([*late, fresh]) == [fresh.id], "the rest of a batch is adopted"


def test_an_object_adopted_into_a_trashed_album_joins_it_in_the_trash(repository: PhotoRepository, clock: Clock) -> None:
    album = uuid.uuid4()
    register(repository, album, 1)
    repository.trash_album(album)
    late = new_photo(album)
    assert repository.adopt([late]) == [late.id]
    adopted = row(repository, late.id)
    assert adopted.status is PhotoStatus.TRASHED and adopted.trashed_from is PhotoStatus.PENDING and adopted.trashed_with_album
    assert {r.id for r in repository.restore_album(album) or []} >= {late.id}
    assert row(repository, late.id).status is PhotoStatus.PENDING


# -- what empty_trash reads ------------------------------------------------------------------------


def test_expired_trash_counts_albums_whole_and_other_photos_per_album(repository: PhotoRepository, clock: Clock) -> None:
    old_album, album, recent_album = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    register(repository, old_album, 3)
    old_photos = register(repository, album, 2)
    [young] = register(repository, album, 1)
    register(repository, recent_album, 1)
    repository.trash_album(old_album)
    repository.trash_photos(old_photos)
    clock.advance(10 * 86400)
    cutoff = clock.now - timedelta(days=1)
    repository.trash_photos([young])
    repository.trash_album(recent_album)

    expired = repository.expired_trash(cutoff, listed=1)

    assert [(a.album_id, a.photos) for a in expired.albums] == [(old_album, 3)]
    assert expired.photos_by_album == {album: 2}
    assert len(expired.first_photos) == 1 and expired.first_photos[0][0] in old_photos
    assert expired.table_rows == 7
    assert repository.albums_trashed_before(cutoff) == [old_album]
    first_page = repository.expired_trashed_photos(cutoff, limit=1)
    rest = repository.expired_trashed_photos(cutoff, limit=10, after=first_page[0][0])
    assert sorted(p for p, _ in first_page + rest) == sorted(old_photos)
    # A photo restored since is not erased.
    repository.restore_photos(old_photos[:1])
    assert [p for p, _ in repository.expired_trashed_photos(cutoff, limit=10)] == old_photos[1:]


# -- the migration ---------------------------------------------------------------------------------


def test_migration_0009_adds_the_trash_and_its_downgrade_restores_what_was_trashed(database_url: str) -> None:
    alembic(database_url, "upgrade", "0008")
    engine = create_engine_for(database_url)
    album, photo = uuid.uuid4(), uuid.uuid4()
    insert_photo_with_sql(engine, album, photo, "completed", 1)
    engine.dispose()

    migrate(database_url)
    repository = PhotoRepository(create_engine_for(database_url))
    assert row(repository, photo).status is PhotoStatus.COMPLETED and row(repository, photo).trashed_at is None
    repository.trash_album(album)
    repository.erase_photos([completed(repository, uuid.uuid4())])
    repository.engine.dispose()
    assert {"erased_photos", "erased_albums"} <= set(inspect(create_engine_for(database_url)).get_table_names())

    alembic(database_url, "downgrade", "0008")
    engine = create_engine_for(database_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM photos WHERE original_key = :k"), {"k": keys.raw_key(album, photo, "jpg")}).scalar_one() == "completed"
        assert conn.execute(text("SELECT count(*) FROM albums")).scalar_one() == 0, "the untitled trash row is gone"
    assert not {"erased_photos", "erased_albums"} & set(inspect(engine).get_table_names())
    engine.dispose()
    migrate(database_url)  # and up again
