"""Capture facts, checksums, duplicates and ThumbHash placeholders on the real flow: `process_album`
(and `rerender_albums`, the back-fill) on a real Dagster instance, the photo table on PostgreSQL,
the bucket on S3 over HTTP (moto's server); what `status --json`, the asset metadata and the API's
album view show of them."""

from __future__ import annotations

import hashlib
import io
import json
import uuid

import pytest
from click.testing import CliRunner
from dagster import DagsterInstance
from PIL import Image
from sqlalchemy import update

from photo_pipeline.cli import samples
from photo_pipeline.cli.commands import main
from photo_pipeline.definitions import defs
from photo_pipeline.photos.models import Photo, PhotoStatus
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.rendering.thumbhash import aspect_ratio
from photo_pipeline.services.albums import album_view
from photo_pipeline.storage import S3ObjectStore
from photo_pipeline_tests.defs.test_renditions import (  # noqa: F401 - fixtures
    latest_metadata,
    materialize_from_ui,
    pipeline_env,
    store,
    upload,
)
from photo_pipeline_tests.rendering.test_capture import camera_jpeg


def test_process_album_records_facts_marks_duplicates_and_the_rerender_back_fills_them(
    instance: DagsterInstance, pipeline_env: None, photo_db: str, store: S3ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    dated = camera_jpeg(900, 600)  # taken 2024-05-01T10:00:00+02:00, upright 600x900, GPS in the file
    plain = samples.photo_jpeg(640, 480, seed=7)  # no capture time
    older = camera_jpeg(900, 600, taken="2023:12:24 18:30:00", offset=None)
    first = upload(repository, store, album, dated, "dated.jpg")
    copy = upload(repository, store, album, dated, "dated (1).jpg")
    undated = upload(repository, store, album, plain, "plain.jpg")
    eve = upload(repository, store, album, older, "eve.jpg")

    assert materialize_from_ui(instance, album).success

    rows = repository.get_many([first, copy, undated, eve])
    assert all(r.status is PhotoStatus.COMPLETED for r in rows.values())
    assert rows[first].original_sha256 == hashlib.sha256(dated).hexdigest()
    assert rows[undated].original_sha256 == hashlib.sha256(plain).hexdigest()
    # The two copies came in one run: whichever the run reached first is rendered, the other is
    # its duplicate (same checksum, same album) and is not rendered again.
    if rows[first].duplicate_of is not None:
        first, copy = copy, first
    # Whole, and stored once: the first copy's keys and placeholder (issue 18 item 10).
    assert rows[copy].duplicate_of == first
    assert (rows[copy].thumb_key, rows[copy].preview_key, rows[copy].thumbhash) == (rows[first].thumb_key, rows[first].preview_key, rows[first].thumbhash)
    assert rows[first].duplicate_of is None and rows[first].thumb_key
    assert (rows[first].taken_at, rows[first].camera_make, rows[first].camera_model) == ("2024-05-01T10:00:00+02:00", "Canon", "EOS R6")
    assert (rows[first].width, rows[first].height) == (600, 900)
    assert rows[first].gps_latitude is None, "GPS is stored only when PHOTO_STORE_GPS asks for it"
    assert rows[undated].taken_at is None
    assert rows[first].thumbhash and aspect_ratio(rows[first].thumbhash) < 1  # a portrait's placeholder
    with Image.open(io.BytesIO(store.get(rows[first].preview_key or ""))) as preview:
        assert not preview.getexif(), "renditions carry no EXIF (no GPS, no camera)"

    metadata = latest_metadata(instance, "thumbnails", album)
    assert metadata["photos_rendered"] == 3 and metadata["photos_duplicate"] == 1
    assert metadata["album_duplicates"] == 1
    assert f"duplicate of photo {first}" in metadata["outcomes"]

    monkeypatch.setenv("PHOTO_DATABASE_URL", photo_db)
    status = CliRunner().invoke(main, ["status", "--album", str(album), "--json"], catch_exceptions=False)
    assert status.exit_code == 0, status.output
    payload = json.loads(status.output)
    assert payload["albums"][str(album)]["duplicates"] == 1
    photos = payload["photos"]
    # Capture order: Christmas Eve 2023, then May 2024, then the photos without a capture time.
    assert [p["id"] for p in photos[:2]] == [str(eve), str(first)]
    assert {p["id"] for p in photos[2:]} == {str(copy), str(undated)}
    by_id = {p["id"]: p for p in photos}
    assert by_id[str(copy)]["duplicate_of"] == str(first)
    assert by_id[str(first)]["thumbhash"] == rows[first].thumbhash and by_id[str(first)]["camera_model"] == "EOS R6"
    assert "gps" not in by_id[str(first)]

    view = album_view(repository, store, album, limit=10, after=None, url_seconds=60)
    placeholders = {item.photo.id: item.thumbhash for item in view.photos}
    assert placeholders[first] == rows[first].thumbhash and placeholders[copy] == rows[first].thumbhash, "a duplicate paints its first copy's"

    # Rows from before migration 0007 have none of it; the re-render job fills them in, and with
    # PHOTO_STORE_GPS the position too.
    with repository.engine.begin() as conn:
        conn.execute(
            update(Photo)
            .where(Photo.album_id == album)
            .values(original_sha256=None, duplicate_of=None, taken_at=None, camera_make=None, camera_model=None, thumbhash=None)
        )
    monkeypatch.setenv("PHOTO_STORE_GPS", "true")
    again = defs().resolve_job_def("rerender_albums").execute_in_process(instance=instance, partition_key=str(album))
    assert again.success
    back = repository.get_many([first, copy, undated, eve])
    # Again one of the two copies is the duplicate of the other (whichever the run reached later).
    if back[first].duplicate_of is not None:
        first, copy = copy, first
    assert back[copy].duplicate_of == first and back[copy].thumbhash == back[first].thumbhash
    assert back[first].original_sha256 == back[copy].original_sha256 == hashlib.sha256(dated).hexdigest()
    assert back[first].thumbhash and back[undated].thumbhash and back[undated].original_sha256
    assert back[first].taken_at == "2024-05-01T10:00:00+02:00" and back[eve].taken_at == "2023-12-24T18:30:00"
    assert (back[first].gps_latitude, back[first].gps_longitude) == (-33.86, 151.21)
