"""The processing service on real parts: a migrated database (PostgreSQL and SQLite) and a store
(local folder, and S3 over HTTP)."""

from __future__ import annotations

import io
import logging
import uuid
from datetime import timedelta

import pytest
from PIL import Image

from photo_pipeline.cli import samples
from photo_pipeline.photos.database import migrate
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository, utc_now
from photo_pipeline.rendering.render import RenderOptions
from photo_pipeline.services.processing import Outcome, PhotoProcessor, ProcessingLimits
from photo_pipeline.storage import (
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    keys,
    make_s3_client,
)

SMALL = RenderOptions(preview_long_side=640, thumb_long_side=160)


@pytest.fixture
def repository(database_url: str) -> PhotoRepository:
    migrate(database_url)
    return PhotoRepository.from_url(database_url)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path) -> ObjectStore:  # type: ignore[no-untyped-def]
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    bucket = request.getfixturevalue("s3_bucket")
    s3 = request.getfixturevalue("s3_env")
    return S3ObjectStore(make_s3_client(endpoint_url=s3.endpoint_url), bucket)


def add_photo(repository: PhotoRepository, store: ObjectStore, album: uuid.UUID, data: bytes | None, ext: str = "jpg") -> uuid.UUID:
    photo_id = uuid.uuid4()
    key = keys.raw_key(album, photo_id, ext)
    repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key))
    if data is not None:
        store.put(key, data, keys.content_type_for_extension(ext))
    return photo_id


def test_album_is_rendered_and_one_bad_photo_does_not_stop_the_others(
    repository: PhotoRepository, store: ObjectStore, caplog: pytest.LogCaptureFixture
) -> None:
    album = uuid.uuid4()
    good = [add_photo(repository, store, album, samples.photo_jpeg(1200, 800, seed=i)) for i in range(5)]
    rotated = add_photo(repository, store, album, samples.photo_jpeg(900, 600, seed=9, orientation=6))
    corrupt = add_photo(repository, store, album, samples.corrupt_jpeg())
    not_yet = add_photo(repository, store, album, None)
    other_album = add_photo(repository, store, uuid.uuid4(), samples.photo_jpeg(300, 200))

    processor = PhotoProcessor(repository, store, SMALL, ProcessingLimits(batch_size=3, workers=2))
    with caplog.at_level(logging.INFO):
        report = processor.process_album(album, worker="test-run")

    assert report.rendered == 6
    assert report.failed == 1
    assert report.skipped == 1
    rows = repository.get_many([*good, rotated, corrupt, not_yet, other_album])
    for photo_id in [*good, rotated]:
        row = rows[photo_id]
        assert row.status is PhotoStatus.COMPLETED
        assert row.claimed_by is None
        for key in (row.thumb_key, row.preview_key):
            assert key is not None
            with Image.open(io.BytesIO(store.get(key))) as image:
                assert image.format == "JPEG"
                assert max(image.size) <= 640
    rotated_row = rows[rotated]
    assert (rotated_row.width, rotated_row.height) == (600, 900)

    failed = rows[corrupt]
    assert failed.status is PhotoStatus.FAILED
    assert failed.error and "cannot render" in failed.error
    assert store.exists(failed.original_key), "a corrupt upload's original must be kept"

    released = rows[not_yet]
    assert released.status is PhotoStatus.PENDING
    assert released.error and "not in the bucket yet" in released.error
    assert rows[other_album].status is PhotoStatus.PENDING
    assert any("cannot be rendered" in message for message in caplog.messages)


def test_a_run_that_lost_its_claim_changes_nothing(repository: PhotoRepository, store: ObjectStore) -> None:
    album = uuid.uuid4()
    photo = add_photo(repository, store, album, samples.photo_jpeg(400, 300))
    [first] = repository.claim_batch(album, "crashed-run", 1)
    # The lease expired: the claim went back to pending and another run took it.
    assert repository.release(first, "lease expired")
    [second] = repository.claim_batch(album, "new-run", 1)
    processor = PhotoProcessor(repository, store, SMALL, ProcessingLimits(workers=1))
    late = processor.process_claims([first], album)
    assert [o.outcome for o in late.outcomes] == [Outcome.CLAIM_LOST]
    row = repository.get(photo)
    assert row is not None and row.status is PhotoStatus.PROCESSING and row.claimed_by == second.claim


def test_missing_original_past_grace_is_released_with_a_reason(repository: PhotoRepository, store: ObjectStore) -> None:
    album = uuid.uuid4()
    photo = add_photo(repository, store, album, None)
    later = utc_now() + timedelta(hours=2)
    processor = PhotoProcessor(
        repository, store, SMALL, ProcessingLimits(missing_grace_seconds=60), clock=lambda: later
    )
    report = processor.process_album(album, worker="run")
    assert [o.outcome for o in report.outcomes] == [Outcome.RELEASED]
    row = repository.get(photo)
    assert row is not None and row.status is PhotoStatus.PENDING
    assert row.error and "reconciliation" in row.error


def test_per_run_limit_bounds_the_work(repository: PhotoRepository, store: ObjectStore) -> None:
    album = uuid.uuid4()
    for i in range(5):
        add_photo(repository, store, album, samples.photo_jpeg(200, 150, seed=i))
    processor = PhotoProcessor(repository, store, SMALL, ProcessingLimits(batch_size=2, max_photos=3, workers=2))
    assert processor.process_album(album, worker="run").rendered == 3
    assert repository.status_counts(album)[PhotoStatus.PENDING] == 2


def test_each_batch_logs_progress_with_done_total_rate_and_time_left(
    repository: PhotoRepository, store: ObjectStore, caplog: pytest.LogCaptureFixture
) -> None:
    album = uuid.uuid4()
    for i in range(7):
        add_photo(repository, store, album, samples.photo_jpeg(200, 150, seed=i))
    log = logging.getLogger("test.progress")
    processor = PhotoProcessor(repository, store, SMALL, ProcessingLimits(batch_size=3, workers=2), logger=log)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        assert processor.process_album(album, worker="run").rendered == 7

    lines = [r.getMessage() for r in caplog.records if "photos done" in r.getMessage()]
    # One line per batch of three (3 batches), and one when the album is done.
    assert len(lines) == 4, lines
    assert all(line.startswith(f"album {album}: ") for line in lines)
    assert all(" of 7 photos done" in line for line in lines), lines
    assert lines[-1].endswith("7 of 7 photos done (100 %), " + lines[-1].split(", ")[1]) and "photos/s" in lines[-1]
    assert "left" not in lines[-1]
