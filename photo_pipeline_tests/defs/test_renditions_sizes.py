"""The responsive sizes on the real flow: `process_album` on a real Dagster instance, the photo
table on PostgreSQL, the bucket on S3 over HTTP (moto's server); the `renditions` table lists
what exists; a re-render after a settings change produces every configured size and format; and
reconciliation over the same bucket removes the sizes nothing records and re-renders lost ones."""

from __future__ import annotations

import io
import uuid

import pytest
from dagster import DagsterInstance
from PIL import Image

from photo_pipeline.cli import samples
from photo_pipeline.definitions import defs
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.reconcile.apply import Reconciler
from photo_pipeline.reconcile.plan import ActionKind, ReconcilePolicy
from photo_pipeline.rendering.render import render_options_from_settings
from photo_pipeline.services.processing import PhotoProcessor
from photo_pipeline.settings import Settings
from photo_pipeline.storage import S3ObjectStore, keys
from photo_pipeline_tests.defs.test_renditions import (  # noqa: F401 - fixtures
    latest_metadata,
    materialize_from_ui,
    pipeline_env,
    store,
    upload,
)

POLICY = ReconcilePolicy(orphan_grace_seconds=0, min_changes=100, rendition_sizes=(120, 240))


def sized_objects(store: S3ObjectStore, album: uuid.UUID) -> set[str]:
    return {o.key for o in store.iter_objects(keys.PROCESSED_PREFIX) if keys.is_sized_key(o.key) and f"/{album}/" in o.key}


def test_sizes_and_formats_are_rendered_listed_rerendered_and_reconciled(
    instance: DagsterInstance, pipeline_env: None, photo_db: str, store: S3ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTO_RENDITION_SIZES", "120,240,4000")
    monkeypatch.setenv("PHOTO_RENDITION_FORMATS", "webp,avif")
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    photo = upload(repository, store, album, samples.photo_jpeg(640, 480, seed=1, with_gps=True), "a.jpg")

    assert materialize_from_ui(instance, album).success

    files = repository.rendition_files(photo)
    # The preview is 320 px (pipeline_env): the decode is drafted to 320x240, so 4000 gets 320.
    assert [(f.size, f.format, f.width, f.height) for f in files] == [
        (4000, fmt, 320, 240) for fmt in ("AVIF", "JPEG", "WEBP")
    ] + [(240, fmt, 240, 180) for fmt in ("AVIF", "JPEG", "WEBP")] + [(120, fmt, 120, 90) for fmt in ("AVIF", "JPEG", "WEBP")]
    # 4000 gets the preview's own pixels: its JPEG is the preview's bytes, named by the preview's
    # key and not stored twice; every other file is stored under its size.
    preview_key = keys.preview_key(album, photo, "JPEG")
    shared = [f for f in files if f.key == preview_key]
    assert [(f.size, f.format) for f in shared] == [(4000, "JPEG")]
    assert {f.key for f in files} - {preview_key} == sized_objects(store, album)
    assert not store.exists(keys.sized_key(album, photo, 4000, "JPEG")), "the preview's bytes are not uploaded twice"
    for file in files:
        data = store.get(file.key)
        assert len(data) == file.bytes
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == file.format and image.size == (file.width, file.height)
            assert not image.getexif(), f"{file.key} carries EXIF"
    row = repository.get(photo)
    assert row is not None and row.thumb_key == keys.thumb_key(album, photo, "JPEG"), "the thumbnail key is kept"
    metadata = latest_metadata(instance, "thumbnails", album)
    own = [f for f in files if f.key != preview_key]
    assert metadata["sized_files_written"] == 8 and metadata["sized_bytes_written"] == sum(f.bytes for f in own)

    # Settings change: other sizes, JPEG only; the re-render job makes exactly those.
    monkeypatch.setenv("PHOTO_RENDITION_SIZES", "120,240")
    monkeypatch.setenv("PHOTO_RENDITION_FORMATS", "")
    assert defs().resolve_job_def("rerender_albums").execute_in_process(instance=instance, partition_key=str(album)).success
    files = repository.rendition_files(photo)
    assert [(f.size, f.format, f.width) for f in files] == [(240, "JPEG", 240), (120, "JPEG", 120)]
    stale = sized_objects(store, album) - {f.key for f in files}
    assert len(stale) == 6, "the old sizes and formats are still in the bucket (4000 JPEG was the preview's)"

    # Lose one rendition; reconciliation over the whole bucket and over the album sees both.
    lost = files[0].key
    store.delete(lost)
    reconciler = Reconciler(repository, store, POLICY)
    # The album's check lists the configured sizes' folders (and those the table records): the
    # stale WEBP and AVIF files there; the whole-bucket plan lists every size's folder.
    for plan, expected in ((reconciler.plan(album), {k for k in stale if "/4000/" not in k}), (reconciler.plan(), stale)):
        assert {a.key for a in plan.actions if a.kind is ActionKind.DELETE_RENDITION} == expected
        rerenders = [a for a in plan.actions if a.kind is ActionKind.RERENDER]
        assert [(a.photo_id, a.key) for a in rerenders] == [(photo, lost)]
    processor = PhotoProcessor(repository, store, render_options_from_settings(Settings.from_env().render))
    reconciler.apply(reconciler.plan(), processor=processor)
    assert sized_objects(store, album) == {f.key for f in repository.rendition_files(photo)}
    assert lost in sized_objects(store, album), "the lost rendition was rendered again"
