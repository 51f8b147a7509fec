"""What keeps sensor ticks cheap at scale: one query for many albums' pending rows, listing bounded
by time, S3 clients built once per configuration. (The figures at 100,000 rows and objects come
from benchmarks/sensor_tick_benchmark.py; no timing is asserted here.)"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.defs.sensors.album_runs import LIST_PAGE_SIZE
from photo_pipeline.defs.sensors.raw_object_sensor import list_slice
from photo_pipeline.photos.database import create_engine_for, migrate
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository, utc_now
from photo_pipeline.storage import LocalObjectStore, S3ObjectStore, keys
from photo_pipeline_tests.conftest import S3Server


def add_album(repository: PhotoRepository, photos: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    album = uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(photos)]
    repository.adopt([NewPhoto(id=i, album_id=album, original_key=keys.raw_key(album, i, "jpg")) for i in ids])
    return album, ids


def test_pending_rows_of_many_albums_come_newest_first_and_bounded(database_url: str) -> None:
    migrate(database_url)
    clock = [utc_now()]
    # Rows stamped a second apart, so "newest first" has one right answer.
    repository = PhotoRepository(create_engine_for(database_url), clock=lambda: clock[0])
    albums: dict[uuid.UUID, list[uuid.UUID]] = {}
    for photos in (5, 2):
        ids = []
        album_id = uuid.uuid4()
        for _ in range(photos):
            clock[0] += timedelta(seconds=1)
            photo_id = uuid.uuid4()
            repository.adopt([NewPhoto(id=photo_id, album_id=album_id, original_key=keys.raw_key(album_id, photo_id, "jpg"))])
            ids.append(photo_id)
        albums[album_id] = ids
    quiet_album, _ = add_album(repository, 0)
    [first_album, second_album] = albums

    found = repository.pending_in_albums([first_album, second_album, quiet_album], per_album=3)

    assert set(found) == {first_album, second_album}
    assert [r.id for r in found[first_album]] == albums[first_album][::-1][:3]
    assert [r.id for r in found[second_album]] == albums[second_album][::-1]
    assert all(r.status is PhotoStatus.PENDING for rows in found.values() for r in rows)
    # The same answer, album by album, as the query it replaces.
    for album_id in (first_album, second_album):
        assert found[album_id] == repository.pending_in_album(album_id, 3)
    assert repository.pending_in_albums([], per_album=3) == {}


def seed_objects(store: LocalObjectStore, count: int) -> list[str]:
    album = uuid.uuid4()
    written = []
    for _ in range(count):
        key = keys.raw_key(album, uuid.uuid4(), "jpg")
        store.put(key, b"x", "image/jpeg")
        written.append(key)
    return sorted(written)


def test_a_listing_slice_stops_after_a_page_once_its_time_is_spent(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    written = seed_objects(store, LIST_PAGE_SIZE + 10)

    hurried, hurried_end = list_slice(store, None, 5000, budget_seconds=0.0)
    assert [o.key for o in hurried] == written[:LIST_PAGE_SIZE] and hurried_end is False
    # The next tick carries on after the last key: nothing skipped, nothing repeated.
    rest, rest_end = list_slice(store, hurried[-1].key, 5000, budget_seconds=0.0)
    assert [o.key for o in rest] == written[LIST_PAGE_SIZE:] and rest_end is True

    whole, whole_end = list_slice(store, None, 5000)
    assert [o.key for o in whole] == written and whole_end is True


def test_s3_clients_are_built_once_per_configuration(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = s3_env.new_bucket()
    resource = PhotoPipelineResource(bucket=bucket)
    first, second = resource.store(), resource.store()
    assert isinstance(first, S3ObjectStore) and isinstance(second, S3ObjectStore)
    assert first.client is second.client
    first.put("raw/a.jpg", b"x", "image/jpeg")
    assert second.exists("raw/a.jpg")

    # A changed environment (another endpoint, other credentials) gets its own client.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    elsewhere = resource.store()
    assert isinstance(elsewhere, S3ObjectStore) and elsewhere.client is not first.client
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_env.endpoint_url)
    assert resource.store().client is first.client  # type: ignore[attr-defined]
