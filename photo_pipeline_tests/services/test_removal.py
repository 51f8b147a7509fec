"""Trash, restore and erase (services/removal.py) on real parts: the photo table on PostgreSQL, the
bucket on S3 over HTTP (moto's server) with photos rendered by the real processor (thumbnail,
preview, responsive sizes in two formats); the folder store where the listing differs."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from photo_pipeline.cli import samples
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoNotFound, PhotoRepository
from photo_pipeline.photos.trash import AlbumErased, AlbumInTrash, AlbumNotFound, PhotoErased
from photo_pipeline.rendering.render import RenderOptions
from photo_pipeline.services import removal
from photo_pipeline.services.processing import Outcome, PhotoProcessor, ProcessingLimits
from photo_pipeline.services.removal import Removal, RestoreRefused
from photo_pipeline.storage import LocalObjectStore, ObjectStore, S3ObjectStore, keys, make_s3_client
from photo_pipeline_tests.conftest import S3Server
from photo_pipeline_tests.photos.test_trash import without_trash

SMALL = RenderOptions(preview_long_side=96, thumb_long_side=48, sizes=(64, 80), extra_formats=("WEBP",), watermark=None)


@pytest.fixture
def repository(photo_db: str) -> Iterator[PhotoRepository]:
    repo = PhotoRepository.from_url(photo_db)
    yield repo
    repo.engine.dispose()


@pytest.fixture
def store(s3_env: S3Server, s3_bucket: str) -> S3ObjectStore:
    return S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)


def upload(repository: PhotoRepository, store: ObjectStore, album: uuid.UUID, data: bytes | None = None) -> uuid.UUID:
    photo_id = uuid.uuid4()
    key = keys.raw_key(album, photo_id, "jpg")
    repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key, filename=f"{photo_id}.jpg"))
    # Each photo its own bytes (trailing bytes after the JPEG's end are ignored): copies of one
    # original would be completed as duplicates.
    store.put(key, (data or samples.photo_jpeg(120, 90)) + photo_id.bytes, "image/jpeg")
    return photo_id


def render(repository: PhotoRepository, store: ObjectStore, album: uuid.UUID) -> None:
    report = PhotoProcessor(repository, store, SMALL, ProcessingLimits(workers=1, io_threads=1)).process_album(album, "test-run")
    assert report.failed == 0 and not report.unfinished


def keys_with(store: ObjectStore, photo_id: uuid.UUID) -> list[str]:
    """Every key anywhere in the bucket that contains the photo's id."""
    return sorted(o.key for o in store.iter_objects("") if str(photo_id) in o.key)


# -- photos --------------------------------------------------------------------------------------


def test_a_completed_photo_is_trashed_with_its_files_kept_and_restored_exactly(repository: PhotoRepository, store: S3ObjectStore) -> None:
    album = uuid.uuid4()
    photo = upload(repository, store, album)
    render(repository, store, album)
    before, files, objects = repository.get(photo), repository.rendition_files(photo), keys_with(store, photo)
    assert len(objects) == 1 + 2 + 4, "original, thumbnail, preview, two sizes in two formats"

    removed = removal.delete_photo(repository, store, photo)

    assert (removed.outcome, removed.status, removed.removed_keys) == (Removal.TRASHED, PhotoStatus.COMPLETED, ())
    assert removed.trashed_at is not None
    assert keys_with(store, photo) == objects, "the trash keeps the files"
    again = removal.delete_photo(repository, store, photo)
    assert (again.outcome, again.trashed_at) == (Removal.ALREADY_TRASHED, removed.trashed_at)

    restored = removal.restore_photo(repository, photo)

    assert restored.status is PhotoStatus.COMPLETED and restored.albums_to_render == frozenset()
    assert without_trash(repository.get(photo)) == without_trash(before)
    assert repository.rendition_files(photo) == files
    with pytest.raises(RestoreRefused, match="not in the trash"):
        removal.restore_photo(repository, photo)


def test_deleting_a_pending_or_failed_upload_is_still_its_cleanup(repository: PhotoRepository, store: S3ObjectStore) -> None:
    album = uuid.uuid4()
    pending = upload(repository, store, album)
    key = keys.raw_key(album, pending, "jpg")

    removed = removal.delete_photo(repository, store, pending)

    assert (removed.outcome, removed.status, removed.removed_keys) == (Removal.CLEANED_UP, PhotoStatus.PENDING, (key,))
    assert repository.get(pending) is None and repository.tombstoned([key]) == {key}
    assert not store.exists(key)
    with pytest.raises(PhotoNotFound):
        removal.delete_photo(repository, store, pending)


def test_erase_removes_every_object_carrying_the_id_and_answers_with_them(repository: PhotoRepository, store: S3ObjectStore) -> None:
    album = uuid.uuid4()
    photo, neighbour = upload(repository, store, album), upload(repository, store, album)
    render(repository, store, album)
    record = repository.get(photo)
    assert record is not None
    # What the table does not know: the original again under another extension, a size folder
    # dropped from the settings, a format no longer made.
    strays = [
        keys.raw_key(album, photo, "png"),
        keys.sized_key(album, photo, 1200, "JPEG"),
        keys.sized_key(album, photo, 64, "AVIF"),
    ]
    for key in strays:
        store.put(key, b"x", "application/octet-stream")
    everything = keys_with(store, photo)
    neighbours = keys_with(store, neighbour)

    removed = removal.delete_photo(repository, store, photo, erase=True)

    assert (removed.outcome, removed.status, removed.note) == (Removal.ERASED, PhotoStatus.COMPLETED, None)
    assert sorted(removed.removed_keys) == everything and set(strays) <= set(removed.removed_keys)
    assert keys_with(store, photo) == [], "no key anywhere in the bucket contains its id"
    assert keys_with(store, neighbour) == neighbours, "another photo's files are untouched"
    assert repository.get(photo) is None and repository.erased_at(photo_id=photo) is not None
    for refused in (lambda: removal.restore_photo(repository, photo), lambda: removal.delete_photo(repository, store, photo)):
        with pytest.raises(PhotoErased, match="was erased"):
            refused()
    with pytest.raises(PhotoNotFound):
        removal.restore_photo(repository, uuid.uuid4())


def test_erase_takes_a_pending_upload_too(repository: PhotoRepository, store: S3ObjectStore) -> None:
    album = uuid.uuid4()
    pending = upload(repository, store, album)
    removed = removal.delete_photo(repository, store, pending, erase=True)
    assert (removed.outcome, removed.status) == (Removal.ERASED, PhotoStatus.PENDING)
    assert keys_with(store, pending) == [] and repository.erased_at(photo_id=pending) is not None


def test_erase_never_deletes_a_file_that_carries_a_standing_photos_id(repository: PhotoRepository, store: S3ObjectStore) -> None:
    """A duplicate's row may carry its canonical photo's keys (DESIGN: "its row carries their
    keys"): erasing the duplicate leaves them."""
    album = uuid.uuid4()
    canonical = upload(repository, store, album)
    render(repository, store, album)
    shown = repository.get(canonical)
    assert shown is not None and shown.thumb_key and shown.preview_key
    copy = upload(repository, store, album)
    [claim] = repository.claim_photos([copy], "copy-run")
    assert repository.complete(
        claim, thumb_key=shown.thumb_key, preview_key=shown.preview_key, width=1, height=1, original_bytes=1, thumb_bytes=1, preview_bytes=1
    )
    before = keys_with(store, canonical)

    removed = removal.delete_photo(repository, store, copy, erase=True)

    assert removed.removed_keys == (keys.raw_key(album, copy, "jpg"),)
    assert keys_with(store, canonical) == before


def test_restore_waits_for_the_album_and_refuses_what_is_not_in_the_trash(repository: PhotoRepository, store: S3ObjectStore) -> None:
    album = uuid.uuid4()
    photo = upload(repository, store, album)
    render(repository, store, album)
    removal.delete_album(repository, store, album)
    with pytest.raises(AlbumInTrash, match="restore the album first"):
        removal.restore_photo(repository, photo)
    back = removal.restore_album(repository, album)
    assert back.restored == {PhotoStatus.COMPLETED: 1} and back.albums_to_render == frozenset()
    with pytest.raises(RestoreRefused, match=f"album {album} is not in the trash"):
        removal.restore_album(repository, album)
    with pytest.raises(AlbumNotFound):
        removal.restore_album(repository, uuid.uuid4())
    with pytest.raises(AlbumNotFound):
        removal.delete_album(repository, store, uuid.uuid4())


# -- albums --------------------------------------------------------------------------------------


def test_an_album_is_trashed_with_its_uploads_and_erased_whole(repository: PhotoRepository, store: S3ObjectStore) -> None:
    album, other = uuid.uuid4(), uuid.uuid4()
    rendered = [upload(repository, store, album) for _ in range(3)]
    render(repository, store, album)
    waiting = upload(repository, store, album)  # an upload still pending
    kept = upload(repository, store, other)
    everything = sorted(o.key for o in store.iter_objects("") if str(album) in o.key)
    kept_objects = keys_with(store, kept)

    trashed = removal.delete_album(repository, store, album)

    assert (trashed.outcome, trashed.photos) == (Removal.TRASHED, 4) and trashed.trashed_at is not None
    assert repository.status_counts(album)[PhotoStatus.TRASHED] == 4
    assert removal.delete_album(repository, store, album).outcome is Removal.ALREADY_TRASHED
    with pytest.raises(AlbumInTrash, match="uploads into it are refused"):
        upload(repository, store, album)
    restored = removal.restore_album(repository, album)
    assert restored.restored == {PhotoStatus.COMPLETED: 3, PhotoStatus.PENDING: 1}
    assert restored.albums_to_render == frozenset({album}), "its pending upload wants its run"

    erased = removal.delete_album(repository, store, album, erase=True)

    assert (erased.outcome, erased.photos, erased.erased) == (Removal.ERASED, 4, True)
    assert sorted(erased.removed_keys) == everything and erased.removed_objects == len(everything)
    assert [o.key for o in store.iter_objects("") if str(album) in o.key] == []
    assert repository.get_many([*rendered, waiting]) == {} and keys_with(store, kept) == kept_objects
    with pytest.raises(AlbumErased):
        removal.delete_album(repository, store, album, erase=True)
    with pytest.raises(AlbumErased):
        removal.delete_album(repository, store, album)
    with pytest.raises(AlbumErased):
        removal.restore_album(repository, album)


# -- folders of the sizes, on both stores ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["s3", "local"])
def test_stores_list_the_folders_under_a_prefix(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    store: ObjectStore = request.getfixturevalue("store") if kind == "s3" else LocalObjectStore(tmp_path / "objects")
    album, photo = uuid.uuid4(), uuid.uuid4()
    for key in (keys.thumb_key(album, photo, "JPEG"), keys.sized_key(album, photo, 800, "JPEG"), keys.sized_key(album, photo, 1200, "WEBP"), "processed/loose.jpg"):
        store.put(key, b"x", "image/jpeg")
    folders = store.list_folders(keys.PROCESSED_PREFIX)
    assert folders == ["processed/1200/", "processed/800/", "processed/thumbs/"]
    assert keys.sizes_of_folders(folders) == [800, 1200]
    assert store.list_folders("nothing/") == []
    with pytest.raises(ValueError):
        store.list_folders("processed")


# -- a run whose photo is erased while it renders ---------------------------------------------------


class EraseDuringStore:
    """The real S3 store; the run's first rendition upload of `photo` erases the photo first, from
    the test's side, as a client's privacy request landing mid-render would: the erase's deletes
    run before the run's remaining uploads and before its completion."""

    def __init__(self, inner: ObjectStore, repository: PhotoRepository, photo: uuid.UUID) -> None:
        self.inner, self.repository, self.photo = inner, repository, photo
        self.erased = threading.Event()
        self.removed: tuple[str, ...] = ()

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        if key.startswith(keys.PROCESSED_PREFIX) and str(self.photo) in key and not self.erased.is_set():
            self.erased.set()
            self.removed = removal.delete_photo(self.repository, self.inner, self.photo, erase=True).removed_keys
        self.inner.put(key, data, content_type)


def test_a_photo_erased_while_its_run_renders_keeps_no_rendition(repository: PhotoRepository, store: S3ObjectStore) -> None:
    album = uuid.uuid4()
    photo, other = upload(repository, store, album), upload(repository, store, album)
    held = EraseDuringStore(store, repository, photo)

    report = PhotoProcessor(repository, held, SMALL, ProcessingLimits(workers=1, io_threads=1)).process_album(album, "run")  # type: ignore[arg-type]

    assert held.erased.is_set() and held.removed == (keys.raw_key(album, photo, "jpg"),), "erased before the renditions landed"
    [lost] = [o for o in report.outcomes if o.photo_id == photo]
    assert lost.outcome is Outcome.CLAIM_LOST and "erased while it rendered" in (lost.detail or "")
    assert keys_with(store, photo) == [], "what the run wrote after the erase is removed by the run"
    assert repository.get(photo) is None
    assert repository.get(other).status is PhotoStatus.COMPLETED  # type: ignore[union-attr]
    assert len(keys_with(store, other)) == 7
