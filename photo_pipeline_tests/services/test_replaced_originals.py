"""An original replaced after completion is noticed: the row records the ETag and size it was
rendered from, reconciliation renders a photo again when the object under its key changed, and
presigned PUTs ask the bucket to refuse a second PUT to the same key (If-None-Match: *).

PostgreSQL + S3 over HTTP (moto, which honours If-None-Match on PUT as S3 and MinIO do).
"""

from __future__ import annotations

import io
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from PIL import Image

from photo_pipeline.cli import samples
from photo_pipeline.photos.database import create_engine_for, migrate
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.reconcile.apply import Reconciler
from photo_pipeline.reconcile.plan import ActionKind, ReconcilePolicy
from photo_pipeline.rendering.render import RenderOptions
from photo_pipeline.services.processing import PhotoProcessor, ProcessingLimits
from photo_pipeline.storage import (
    LocalObjectStore,
    S3ObjectStore,
    UploadTargetExists,
    keys,
    make_s3_client,
)
from photo_pipeline_tests.conftest import S3Server

POLICY = ReconcilePolicy(orphan_grace_seconds=0, max_change_fraction=0.5, min_changes=10)


@pytest.fixture
def store(s3_env: S3Server, s3_bucket: str) -> S3ObjectStore:
    return S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)


@pytest.fixture
def repository(postgres_url: str) -> PhotoRepository:
    migrate(postgres_url)
    return PhotoRepository(create_engine_for(postgres_url))


def processor(repository: PhotoRepository, store: S3ObjectStore) -> PhotoProcessor:
    options = RenderOptions(preview_long_side=320, thumb_long_side=80)
    return PhotoProcessor(repository, store, options, ProcessingLimits(workers=2))


def upload(repository: PhotoRepository, store: S3ObjectStore, album: uuid.UUID, data: bytes) -> uuid.UUID:
    photo_id = uuid.uuid4()
    key = keys.raw_key(album, photo_id, "jpg")
    repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key))
    store.put(key, data, "image/jpeg")
    return photo_id


def mean_colour(data: bytes) -> tuple[int, ...]:
    with Image.open(io.BytesIO(data)) as image:
        return tuple(image.convert("RGB").resize((1, 1)).getpixel((0, 0)))


def test_a_replaced_original_is_rendered_again_once(repository: PhotoRepository, store: S3ObjectStore) -> None:
    album = uuid.uuid4()
    photos = [upload(repository, store, album, samples.photo_jpeg(640, 480, seed=i)) for i in range(3)]
    processor(repository, store).process_album(album, "first-run")
    before = repository.get(photos[0])
    assert before is not None and before.status is PhotoStatus.COMPLETED
    head = store.head(before.original_key)
    assert before.original_etag == head.etag and before.original_bytes == head.size, "the row records what it rendered"
    old_preview = store.get(before.preview_key or "")

    # Anyone with write access puts new bytes over the completed original (a different picture).
    replacement = Image.new("RGB", (640, 480), (200, 20, 20))
    buffer = io.BytesIO()
    replacement.save(buffer, "JPEG", quality=90)
    store.put(before.original_key, buffer.getvalue(), "image/jpeg")

    reconciler = Reconciler(repository, store, POLICY)
    plan = reconciler.plan()
    [rerender] = plan.of_kind(ActionKind.RERENDER)
    assert rerender.photo_id == photos[0] and "original replaced" in rerender.detail
    report = reconciler.apply(plan, processor=processor(repository, store), worker="reconcile")
    assert report.applied["rerender"] == 1

    after = repository.get(photos[0])
    assert after is not None and after.status is PhotoStatus.COMPLETED
    assert after.original_etag == store.head(after.original_key).etag != before.original_etag
    new_preview = store.get(after.preview_key or "")
    assert new_preview != old_preview
    assert mean_colour(new_preview)[0] > 150, "the preview shows the new picture"
    # Rendered once: the next reconciliation finds nothing to do.
    assert reconciler.plan().of_kind(ActionKind.RERENDER) == []


def test_untouched_originals_and_rows_without_a_recorded_etag_plan_nothing(
    repository: PhotoRepository, store: S3ObjectStore
) -> None:
    album = uuid.uuid4()
    photo = upload(repository, store, album, samples.photo_jpeg(320, 240))
    processor(repository, store).process_album(album, "run")
    # A row rendered before the ETag was recorded (revision 0004) cannot tell: it is left alone.
    legacy = upload(repository, store, album, samples.photo_jpeg(320, 240, seed=3))
    [claim] = repository.claim_photos([legacy], "legacy")
    assert repository.complete(
        claim, thumb_key="processed/thumbs/x.jpg", preview_key="processed/previews/x.jpg",
        width=1, height=1, original_bytes=1, thumb_bytes=1, preview_bytes=1,
    )
    row = repository.get(legacy)
    assert row is not None and row.original_etag is None
    store.put(row.original_key, samples.photo_jpeg(320, 240, seed=4), "image/jpeg")
    plan = Reconciler(repository, store, POLICY).plan()
    assert {a.photo_id for a in plan.of_kind(ActionKind.RERENDER) if "original replaced" in a.detail} == set()
    assert photo not in {a.photo_id for a in plan.of_kind(ActionKind.RERENDER)}


def test_presigned_puts_sign_if_none_match(store: S3ObjectStore) -> None:
    upload_ = store.presign_put("raw/a/b.jpg", "image/jpeg", 60, content_length=10)
    assert upload_.headers["If-None-Match"] == "*"
    signed = parse_qs(urlsplit(upload_.url).query)["X-Amz-SignedHeaders"][0].split(";")
    assert "if-none-match" in signed, "S3 and MinIO then refuse a second PUT to the same key (412)"


def test_a_replayed_presigned_put_is_refused_by_the_bucket(store: S3ObjectStore) -> None:
    body = samples.photo_jpeg(64, 48)
    upload_ = store.presign_put("raw/a/replayed.jpg", "image/jpeg", 60, content_length=len(body))
    first = requests.put(upload_.url, data=body, headers=upload_.headers, timeout=10)
    assert first.status_code == 200
    second = requests.put(upload_.url, data=samples.photo_jpeg(64, 48, seed=9)[: len(body)], headers=upload_.headers, timeout=10)
    assert second.status_code == 412


def test_the_local_store_refuses_a_replayed_presigned_put(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = LocalObjectStore(tmp_path / "objects")
    body = samples.photo_jpeg(64, 48)
    upload_ = store.presign_put("raw/a/replayed.jpg", "image/jpeg", 60, content_length=len(body))
    store.accept_presigned_put(upload_.url, body, upload_.headers)
    with pytest.raises(UploadTargetExists, match="already exists"):
        store.accept_presigned_put(upload_.url, body, upload_.headers)
    assert store.get("raw/a/replayed.jpg") == body
