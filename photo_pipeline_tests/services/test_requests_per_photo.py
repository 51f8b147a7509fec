"""What a photo costs the bucket (issue 21), counted by botocore's own events on a real client
against S3 over HTTP (moto's server): one GET and no HEAD for the original, and one PUT per
distinct file: a size whose bytes are the preview's or the thumbnail's is not uploaded again, its
`renditions` row names that key."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from photo_pipeline.cli import samples
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.rendering.render import RenderOptions
from photo_pipeline.services.processing import PhotoProcessor, ProcessingLimits
from photo_pipeline.storage import S3ObjectStore, keys
from photo_pipeline_tests.services.test_removal import repository, store, upload  # noqa: F401 - fixtures

# As the defaults are shaped: the sizes include the preview's and the thumbnail's long sides.
OPTIONS = RenderOptions(preview_long_side=320, thumb_long_side=80, sizes=(80, 160, 320))


def test_a_photo_costs_one_get_no_head_and_one_put_per_distinct_file(repository: PhotoRepository, store: S3ObjectStore) -> None:  # noqa: F811
    album = uuid.uuid4()
    photos = [upload(repository, store, album, samples.photo_jpeg(640, 480, seed=i)) for i in range(3)]
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    store.client.meta.events.register("before-call.s3", count)
    try:
        report = PhotoProcessor(repository, store, OPTIONS, ProcessingLimits(workers=2, io_threads=2)).process_album(album, "count")
    finally:
        store.client.meta.events.unregister("before-call.s3", count)

    assert report.rendered == 3
    # Per photo: GET the original; PUT thumbnail, preview and 160 (80 and 320 are shared).
    assert calls == Counter({"GetObject": 3, "PutObject": 3 * 3}), calls
    for photo in photos:
        row = repository.get(photo)
        assert row is not None
        named = {f.size: f.key for f in repository.rendition_files(photo) if f.format == "JPEG"}
        assert named[320] == row.preview_key and named[80] == row.thumb_key
        assert named[160] == keys.sized_key(album, photo, 160, "JPEG") and store.exists(named[160])
        assert not store.exists(keys.sized_key(album, photo, 320, "JPEG")), "the preview's bytes are stored once"
