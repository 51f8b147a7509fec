"""Issue 17 on the real flow: photos rendered by `process_album` runs on a real Dagster instance
(the production dagster.yaml on PostgreSQL), the photo table on PostgreSQL, the bucket on S3 over
HTTP (moto's server), `reconcile_storage` applying, both sensors ticking on that instance.

- a trashed photo survives reconciliation and the sensors with its files, and comes back exactly;
- an erased photo leaves no key with its id, and a replayed presigned PUT of its original is
  removed by reconciliation, never adopted by a sensor;
- a photo erased while its run renders it keeps no rendition;
- an album of 100 photos is trashed and restored whole;
- duplicates whose first copy is trashed or erased stay whole.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Collection
from typing import Any

import pytest
import requests
from dagster import AssetKey, DagsterInstance, materialize

from photo_pipeline.cli import samples
from photo_pipeline.definitions import defs
from photo_pipeline.defs.reconcile.jobs import reconcile_config
from photo_pipeline.defs.renditions.assets import album_renditions, albums_partitions
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.defs.sensors.pending_photo_sensor import pending_photo_sensor
from photo_pipeline.defs.sensors.raw_object_sensor import raw_object_sensor
from photo_pipeline.instance.partitions import remove_album_partitions
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository, utc_now
from photo_pipeline.services import removal
from photo_pipeline.services.albums import album_view
from photo_pipeline.storage import ObjectStore, S3ObjectStore, keys
from photo_pipeline_tests.defs.test_reconcile_job import latest_metadata as reconciliation_metadata
from photo_pipeline_tests.defs.test_reconcile_job import by_kind, rows
from photo_pipeline_tests.defs.test_renditions import (  # noqa: F401 - fixtures
    latest_metadata,
    materialize_from_ui,
    pipeline_env,
    store,
    tick,
    upload,
)
from photo_pipeline_tests.photos.test_trash import without_trash
from photo_pipeline_tests.services.test_removal import EraseDuringStore

PICTURE = samples.photo_jpeg(320, 240, seed=21)


@pytest.fixture
def flow_env(pipeline_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconciliation with no grace: whatever it would do to a young object or row it does now."""
    monkeypatch.setenv("PHOTO_ORPHAN_GRACE_SECONDS", "0")
    monkeypatch.setenv("PHOTO_MISSING_GRACE_SECONDS", "0")
    monkeypatch.setenv("PHOTO_RENDITION_SIZES", "160")


def own(index: int, data: bytes = PICTURE) -> bytes:
    """The picture with bytes of its own after its end (decoders ignore them): not a duplicate."""
    return data + index.to_bytes(4, "big")


def reconcile(instance: DagsterInstance) -> dict[str, Any]:
    """A `reconcile_storage` run that applies; the counts of what it applied."""
    result = defs().resolve_job_def("reconcile_storage").execute_in_process(instance=instance, run_config=reconcile_config(dry_run=False))
    assert result.success
    return {kind: row["applied"] for kind, row in by_kind(reconciliation_metadata(instance)["actions_by_kind"]).items()}


def sensor_requests(instance: DagsterInstance, resource: PhotoPipelineResource) -> list[str | None]:
    """One tick of each sensor from a fresh cursor (a full sweep of raw/): the albums they ask runs for."""
    requested = []
    for sensor in (raw_object_sensor, pending_photo_sensor):
        requested += [r.partition_key for r in tick(sensor, instance, None, resource).run_requests or []]
    return requested


def keys_with(store: ObjectStore, *ids: uuid.UUID) -> list[str]:
    """Every key anywhere in the bucket that contains one of these ids."""
    return sorted(o.key for o in store.iter_objects("") if any(str(i) in o.key for i in ids))


def wait_until_listed_before_now(store: ObjectStore, key: str) -> None:
    """S3 keeps LastModified to the second: wait until the object is older than the clock, so a
    zero grace period counts it (a bounded poll, not a fixed sleep)."""
    deadline = time.monotonic() + 5
    while store.head(key).last_modified >= utc_now() and time.monotonic() < deadline:
        time.sleep(0.05)


# -- trash -----------------------------------------------------------------------------------------


def test_a_trashed_photo_stays_trashed_through_reconciliation_and_the_sensors_and_is_restored_exactly(
    instance: DagsterInstance, flow_env: None, photo_db: str, store: S3ObjectStore
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    photos = [upload(repository, store, album, own(i), f"{i}.jpg") for i in range(3)]
    assert materialize_from_ui(instance, album).success
    trashed = photos[0]
    before, files, objects = repository.get(trashed), repository.rendition_files(trashed), keys_with(store, trashed)
    assert before is not None and before.status is PhotoStatus.COMPLETED and len(objects) == 4

    assert removal.delete_photo(repository, store, trashed).outcome is removal.Removal.TRASHED

    applied = reconcile(instance)
    assert {kind: n for kind, n in applied.items() if n} == {}, "reconciliation leaves it (and all else) alone"
    assert sensor_requests(instance, PhotoPipelineResource()) == [], "no sensor asks for its run"
    assert materialize_from_ui(instance, album).success  # a render of the album leaves it too
    figures = latest_metadata(instance, "thumbnails", album)
    assert (figures["album_photos"], figures["album_completed"], figures["album_trashed"]) == (2, 2, 1), "counted apart"
    still = repository.get(trashed)
    assert still is not None and still.status is PhotoStatus.TRASHED
    assert {**without_trash(still), "status": PhotoStatus.COMPLETED} == without_trash(before), "untouched in the trash"
    assert keys_with(store, trashed) == objects, "its files stay until the trash is emptied"
    view = album_view(repository, store, album, limit=10, after=None, url_seconds=60)
    assert trashed not in [p.photo.id for p in view.photos] and view.counts[PhotoStatus.TRASHED] == 1 and view.total == 2

    assert removal.restore_photo(repository, trashed).status is PhotoStatus.COMPLETED

    assert without_trash(repository.get(trashed)) == without_trash(before), "the same row"
    assert repository.rendition_files(trashed) == files and keys_with(store, trashed) == objects
    assert {kind: n for kind, n in reconcile(instance).items() if n} == {}


def test_an_album_of_100_photos_is_trashed_and_restored_whole(
    instance: DagsterInstance, flow_env: None, photo_db: str, store: S3ObjectStore
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    small = samples.photo_jpeg(96, 64, seed=5)
    photos = [upload(repository, store, album, own(i, small), f"{i:03}.jpg") for i in range(100)]
    assert materialize_from_ui(instance, album).success
    before = repository.get_many(photos)
    assert all(r.status is PhotoStatus.COMPLETED for r in before.values())
    objects = keys_with(store, album)

    trashed = removal.delete_album(repository, store, album)

    assert (trashed.outcome, trashed.photos) == (removal.Removal.TRASHED, 100)
    view = album_view(repository, store, album, limit=200, after=None, url_seconds=60)
    assert view.photos == [] and view.trashed_at is not None and view.counts[PhotoStatus.TRASHED] == 100
    assert {kind: n for kind, n in reconcile(instance).items() if n} == {}
    assert sensor_requests(instance, PhotoPipelineResource()) == []
    assert keys_with(store, album) == objects

    restored = removal.restore_album(repository, album)

    assert restored.restored == {PhotoStatus.COMPLETED: 100}
    after = repository.get_many(photos)
    assert {p: without_trash(after[p]) for p in photos} == {p: without_trash(before[p]) for p in photos}
    assert len(album_view(repository, store, album, limit=200, after=None, url_seconds=60).photos) == 100
    assert repository.album(album) is None, "no title row was made for good"


# -- erase -----------------------------------------------------------------------------------------


def presigned_upload(repository: PhotoRepository, store: S3ObjectStore, album: uuid.UUID, data: bytes) -> tuple[uuid.UUID, Any]:
    """The browser's upload: the row, a presigned PUT (size and If-None-Match signed in), the PUT."""
    photo_id = uuid.uuid4()
    key = keys.raw_key(album, photo_id, "jpg")
    repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key, original_bytes=len(data)))
    grant = store.presign_put(key, "image/jpeg", 900, content_length=len(data))
    assert requests.put(grant.url, data=data, headers=grant.headers, timeout=30).status_code == 200
    return photo_id, grant


def test_an_erased_photo_leaves_no_key_and_a_replayed_put_is_removed_not_adopted(
    instance: DagsterInstance, flow_env: None, photo_db: str, store: S3ObjectStore
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    album, erased_album = uuid.uuid4(), uuid.uuid4()
    data = own(1)
    photo, grant = presigned_upload(repository, store, album, data)
    kept = upload(repository, store, album, own(2), "kept.jpg")
    gone_photo, gone_grant = presigned_upload(repository, store, erased_album, own(3))
    assert materialize_from_ui(instance, album).success and materialize_from_ui(instance, erased_album).success
    assert len(keys_with(store, photo)) == 4

    erased = removal.delete_photo(repository, store, photo, erase=True)
    album_erased = removal.delete_album(repository, store, erased_album, erase=True)
    assert remove_album_partitions(instance, [erased_album]) == [str(erased_album)], "as the API and the CLI do"

    assert erased.outcome is removal.Removal.ERASED and len(erased.removed_keys) == 4
    assert keys_with(store, photo) == [], "no object key anywhere in the bucket contains its id"
    assert album_erased.photos == 1 and keys_with(store, erased_album) == []

    # The same presigned URLs PUT again (a replay, or a client's late retry): they land.
    for replayed, body in ((grant, data), (gone_grant, own(3))):
        assert requests.put(replayed.url, data=body, headers=replayed.headers, timeout=30).status_code == 200
    late = [keys.raw_key(album, photo, "jpg"), keys.raw_key(erased_album, gone_photo, "jpg")]
    assert all(store.exists(key) for key in late)

    # The sensors never give them a row, nor the erased album its partition back.
    assert sensor_requests(instance, PhotoPipelineResource()) == []
    assert repository.find_by_original_keys(late) == {}
    assert not instance.has_dynamic_partition(albums_partitions.name, str(erased_album))

    # Reconciliation removes them.
    for key in late:
        wait_until_listed_before_now(store, key)
    applied = reconcile(instance)
    assert applied["delete_erased"] == 2 and "adopt" not in applied
    planned = [r["action"] for r in rows(reconciliation_metadata(instance)["first_actions"])]
    # Each row reads "kind: why: key".
    assert sorted(text.rsplit(": ", 1)[1] for text in planned) == sorted(late)
    assert all(text.startswith("delete_erased: ") and "erased" in text.split(": ")[1] for text in planned), planned
    assert not any(store.exists(key) for key in late) and keys_with(store, photo, erased_album) == []
    assert repository.find_by_original_keys(late) == {}
    assert repository.get(kept).status is PhotoStatus.COMPLETED  # type: ignore[union-attr]


class ErasingResource(PhotoPipelineResource):
    """The project's resource, whose store erases `photo_id` on the run's first rendition upload of
    it (services/test_removal.py's EraseDuringStore): a privacy request landing mid-render."""

    photo_id: str

    def store(self) -> ObjectStore:
        return EraseDuringStore(super().store(), self.repository(), uuid.UUID(self.photo_id))  # type: ignore[return-value]


def test_a_photo_erased_while_its_run_renders_keeps_no_rendition(
    instance: DagsterInstance, flow_env: None, photo_db: str, s3_bucket: str, store: S3ObjectStore
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    photo = upload(repository, store, album, own(1), "private.jpg")
    other = upload(repository, store, album, own(2), "other.jpg")
    instance.add_dynamic_partitions(albums_partitions.name, [str(album)])
    resource = ErasingResource(database_url=photo_db, bucket=s3_bucket, photo_id=str(photo))

    result = materialize([album_renditions], partition_key=str(album), instance=instance, resources={"photo_pipeline": resource})

    assert result.success
    assert repository.get(photo) is None and repository.erased_at(photo_id=photo) is not None
    assert keys_with(store, photo) == [], "no rendition of it survives the run"
    assert repository.get(other).status is PhotoStatus.COMPLETED  # type: ignore[union-attr]
    event = instance.get_latest_materialization_event(AssetKey("thumbnails"))
    assert event is not None and event.asset_materialization is not None
    assert "erased while it rendered" in str(event.asset_materialization.metadata["outcomes"].value)


# -- duplicates ------------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rendered_on_its_own(repository: PhotoRepository, store: S3ObjectStore, photo: uuid.UUID) -> bool:
    row = repository.get(photo)
    files = repository.rendition_files(photo)
    return (
        row is not None
        and row.status is PhotoStatus.COMPLETED
        and row.duplicate_of is None
        and bool(row.thumb_key and row.preview_key and files)
        and all(store.exists(k) for k in [row.thumb_key or "", row.preview_key or "", *(f.key for f in files)])
    )


def copies_of(repository: PhotoRepository, ids: Collection[uuid.UUID]) -> tuple[uuid.UUID, list[uuid.UUID]]:
    found = repository.get_many(ids)
    [canonical] = [r.id for r in found.values() if r.duplicate_of is None]
    copies = [r.id for r in found.values() if r.duplicate_of == canonical]
    assert len(copies) == len(ids) - 1
    return canonical, copies


def whole_duplicate_of(repository: PhotoRepository, store: S3ObjectStore, photo: uuid.UUID, first: uuid.UUID) -> bool:
    """A completed duplicate of `first`, whole for a reader of the table: `first`'s keys, sizes,
    hash and `renditions` rows, every key an object in the bucket (issue 18 item 10)."""
    row, canonical = repository.get(photo), repository.get(first)
    assert row is not None and canonical is not None
    files = repository.rendition_files(photo)
    shared = ("thumb_key", "preview_key", "thumb_bytes", "preview_bytes", "thumbhash")
    return (
        row.status is PhotoStatus.COMPLETED
        and row.duplicate_of == first
        and [getattr(row, name) for name in shared] == [getattr(canonical, name) for name in shared]
        and bool(row.thumb_key and row.preview_key and row.thumbhash and files)
        and files == repository.rendition_files(first)
        and all(store.exists(k) for k in [row.thumb_key or "", row.preview_key or "", *(f.key for f in files)])
    )


def three_copies_rendered(
    instance: DagsterInstance, repository: PhotoRepository, store: S3ObjectStore
) -> tuple[uuid.UUID, uuid.UUID, list[uuid.UUID]]:
    """An album of three uploads of the same picture, rendered: (album, first copy, duplicates)."""
    album = uuid.uuid4()
    ids = [upload(repository, store, album, PICTURE, f"copy-{i}.jpg") for i in range(3)]
    assert materialize_from_ui(instance, album).success
    canonical, copies = copies_of(repository, ids)
    return album, canonical, copies


def test_a_duplicate_is_whole_its_urls_serve_its_first_copys_files_and_its_erase_keeps_them(
    instance: DagsterInstance, flow_env: None, photo_db: str, store: S3ObjectStore
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    album, canonical, copies = three_copies_rendered(instance, repository, store)
    assert all(whole_duplicate_of(repository, store, c, canonical) for c in copies)
    # Stored once: only the first copy's id is carried by the album's renditions in the bucket.
    assert [k for k in keys_with(store, *copies) if not k.startswith(keys.RAW_PREFIX)] == [], "not stored twice"

    view = {p.photo.id: p for p in album_view(repository, store, album, limit=10, after=None, url_seconds=60).photos}
    first_bytes = requests.get(view[canonical].preview.url, timeout=10).content  # type: ignore[union-attr]
    for copy in copies:
        shown = view[copy]
        assert shown.thumbnail is not None and shown.preview is not None and shown.thumbhash
        assert [s.file.size for s in shown.sizes] == [s.file.size for s in view[canonical].sizes] != []
        for url in (shown.thumbnail.url, shown.preview.url, *(s.download.url for s in shown.sizes)):
            assert requests.get(url, timeout=10).status_code == 200
        assert requests.get(shown.preview.url, timeout=10).content == first_bytes

    # Erasing a duplicate removes its original only: the files it shares stay with the others.
    removal.erase_photo(repository, store, copies[0])
    assert not store.exists(keys.raw_key(album, copies[0], "jpg"))
    assert whole_duplicate_of(repository, store, copies[1], canonical)
    assert rendered_on_its_own(repository, store, canonical)
    assert {kind: n for kind, n in reconcile(instance).items() if n} == {}, "whole: nothing to repair"

    # Erasing the first copy: the last copy goes back to pending and is rendered on its own.
    removal.erase_photo(repository, store, canonical)
    assert materialize_from_ui(instance, album).success
    assert rendered_on_its_own(repository, store, copies[1])
    assert {kind: n for kind, n in reconcile(instance).items() if n} == {}, "whole: nothing to repair"


@pytest.mark.parametrize("how", ["erase", "trash"])
def test_duplicates_whose_first_copy_is_removed_stay_whole(
    how: str, instance: DagsterInstance, flow_env: None, photo_db: str, store: S3ObjectStore
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    album, canonical, copies = three_copies_rendered(instance, repository, store)

    removed = removal.delete_photo(repository, store, canonical, erase=how == "erase")

    assert removed.albums_to_render == frozenset({album}), "its copies wait for their album's run"
    assert all(repository.get(c).status is PhotoStatus.PENDING for c in copies)  # type: ignore[union-attr]
    assert materialize_from_ui(instance, album).success  # the run the caller requests
    survivor, [duplicate] = copies_of(repository, copies)
    assert rendered_on_its_own(repository, store, survivor)
    assert whole_duplicate_of(repository, store, duplicate, survivor), "re-pointed: the survivor's files"
    assert repository.get(duplicate).duplicate_of == survivor  # type: ignore[union-attr]
    assert repository.get(survivor).original_sha256 == sha256(PICTURE)  # type: ignore[union-attr]
    assert {kind: n for kind, n in reconcile(instance).items() if n} == {}, "whole: nothing left to repair"
    if how == "trash":
        # The first copy comes back as it was; its copies stay rendered as they are now.
        assert removal.restore_photo(repository, canonical).status is PhotoStatus.COMPLETED
        assert rendered_on_its_own(repository, store, canonical) and rendered_on_its_own(repository, store, survivor)
