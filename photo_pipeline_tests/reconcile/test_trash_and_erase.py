"""Reconciliation and the trash (issue 17): the pure planner leaves trashed rows alone but knows
their keys; the post-step over adoptions turns objects of erased photos or albums into removals
and weighs the safety limit again; on PostgreSQL + S3 over HTTP, a replayed upload of an erased
photo is removed, never adopted, whatever its key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from photo_pipeline.cli import samples
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRecord, PhotoRepository
from photo_pipeline.reconcile.apply import Reconciler
from photo_pipeline.reconcile.plan import (
    ActionKind,
    ReconcilePolicy,
    adopted_keys,
    plan_reconciliation,
    refuse_erased,
)
from photo_pipeline.services import removal
from photo_pipeline.storage import ObjectInfo, S3ObjectStore, keys, make_s3_client
from photo_pipeline_tests.conftest import S3Server

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=90)
POLICY = ReconcilePolicy(missing_grace_seconds=0, orphan_grace_seconds=0, max_change_fraction=0.2, min_changes=2)


def record(album: uuid.UUID, status: PhotoStatus, *, rendered: bool = True, **extra: object) -> PhotoRecord:
    photo = uuid.uuid4()
    values: dict[str, object] = dict(
        id=photo, album_id=album, original_key=keys.raw_key(album, photo, "jpg"), status=status,
        thumb_key=keys.thumb_key(album, photo, "JPEG") if rendered else None,
        preview_key=keys.preview_key(album, photo, "JPEG") if rendered else None,
        error=None, attempts=1, created_at=LONG_AGO, updated_at=LONG_AGO, claimed_by=None, claimed_at=None,
        width=None, height=None, original_bytes=None, thumb_bytes=None, preview_bytes=None, filename=None,
        content_type=None, completed_at=LONG_AGO if rendered else None, missing_since=None,
    )  # fmt: skip
    values.update(extra)
    return PhotoRecord(**values)  # type: ignore[arg-type]


def listed(*object_keys: str) -> list[ObjectInfo]:
    return sorted((ObjectInfo(key=k, size=10, last_modified=LONG_AGO) for k in object_keys), key=lambda o: o.key.encode())


def plan_of(rows: list[PhotoRecord], objects: list[ObjectInfo]):  # type: ignore[no-untyped-def]
    by = lambda attribute: sorted(((getattr(r, attribute), r) for r in rows if getattr(r, attribute)), key=lambda p: p[0].encode())  # noqa: E731
    return plan_reconciliation(
        originals=[o for o in objects if o.key.startswith(keys.RAW_PREFIX)],
        rows_by_original_key=sorted(rows, key=lambda r: r.original_key.encode()),
        thumbnails=[o for o in objects if o.key.startswith(keys.THUMBS_PREFIX)],
        rows_by_thumb_key=by("thumb_key"),
        previews=[o for o in objects if o.key.startswith(keys.PREVIEWS_PREFIX)],
        rows_by_preview_key=by("preview_key"),
        now=NOW,
        policy=POLICY,
    )


# -- the pure plan ---------------------------------------------------------------------------------


def test_trashed_rows_are_left_alone_but_their_keys_are_known() -> None:
    album = uuid.uuid4()
    trashed = [
        # everything in place
        record(album, PhotoStatus.TRASHED, trashed_from=PhotoStatus.COMPLETED, trashed_at=LONG_AGO, trashed_with_album=False),
        # its original gone (would be seen gone), its thumbnail gone (would be rendered again)
        record(album, PhotoStatus.TRASHED, trashed_from=PhotoStatus.COMPLETED, trashed_at=LONG_AGO, trashed_with_album=False),
        # pending when trashed, with its original (would be requeued), once seen gone (would be restored)
        record(album, PhotoStatus.TRASHED, rendered=False, trashed_from=PhotoStatus.PENDING, trashed_at=LONG_AGO, trashed_with_album=True, missing_since=LONG_AGO),
        # processing when trashed, its claim long expired (would be released)
        record(album, PhotoStatus.TRASHED, rendered=False, trashed_from=PhotoStatus.PROCESSING, trashed_at=LONG_AGO, trashed_with_album=False, claimed_by="run/1", claimed_at=LONG_AGO),
    ]  # fmt: skip
    whole, gone, pending, processing = trashed
    # And the one whose original is gone has it under another key carrying its id.
    elsewhere = f"raw/{album}/{gone.id}.png"
    objects = listed(
        whole.original_key, whole.thumb_key or "", whole.preview_key or "",
        elsewhere, gone.preview_key or "", pending.original_key, processing.original_key,
    )  # fmt: skip

    plan = plan_of(trashed, objects)

    assert plan.actions == [], "no requeue, restore, missing, re-render, claim, adoption or stray"
    assert plan.settled_rows == 4 and plan.rows_seen == 4


def test_an_empty_listing_with_only_trashed_rows_is_refused() -> None:
    album = uuid.uuid4()
    row = record(album, PhotoStatus.TRASHED, trashed_from=PhotoStatus.COMPLETED, trashed_at=LONG_AGO, trashed_with_album=False)
    plan = plan_of([row], [])
    assert plan.actions == [] and plan.violations and "lists no originals" in plan.violations[0]


def test_adoptions_of_erased_objects_become_removals_and_the_limit_is_weighed_again() -> None:
    album = uuid.uuid4()
    rows = [record(album, PhotoStatus.COMPLETED) for _ in range(4)]
    orphans = [keys.raw_key(album, uuid.uuid4(), "jpg") for _ in range(3)]
    objects = listed(*(k for r in rows for k in (r.original_key, r.thumb_key or "", r.preview_key or "")), *orphans)
    plan = plan_of(rows, objects)
    assert sorted(adopted_keys(plan)) == sorted(orphans) and plan.safe

    refuse_erased(plan, orphans[:2], POLICY)

    assert sorted(a.key for a in plan.of_kind(ActionKind.DELETE_ERASED)) == sorted(orphans[:2])
    assert [a.key for a in plan.of_kind(ActionKind.ADOPT)] == orphans[2:]
    assert all(a.adopt is None and "erased" in a.detail for a in plan.of_kind(ActionKind.DELETE_ERASED))
    assert plan.destructive == 2 and plan.safe, "2 removals: within min_changes"
    refuse_erased(plan, orphans, POLICY)
    assert plan.destructive == 3 and not plan.safe, "3 of 15 objects is over 2 and 20 %"


# -- on PostgreSQL and S3 ----------------------------------------------------------------------------


@pytest.fixture
def store(s3_env: S3Server, s3_bucket: str) -> S3ObjectStore:
    return S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)


def test_late_objects_of_erased_photos_and_albums_are_removed_never_adopted(photo_db: str, store: S3ObjectStore) -> None:
    repository = PhotoRepository.from_url(photo_db)
    album, gone_album = uuid.uuid4(), uuid.uuid4()
    jpeg = samples.photo_jpeg(64, 48)
    photo = uuid.uuid4()
    canonical_key = keys.raw_key(album, photo, "jpg")
    odd_key = f"raw/{album}/IMG_0001.jpg"  # adopted under an id minted from the key
    identity = keys.identify_raw_key(odd_key)
    assert identity is not None
    repository.register_pending(NewPhoto(id=photo, album_id=album, original_key=canonical_key))
    repository.adopt([NewPhoto(id=identity.photo_id, album_id=album, original_key=odd_key)])
    repository.register_pending(NewPhoto(id=uuid.uuid4(), album_id=gone_album, original_key=f"raw/{gone_album}/x.jpg"))
    kept = keys.raw_key(album, uuid.uuid4(), "jpg")
    removal.delete_photo(repository, store, photo, erase=True)
    removal.delete_photo(repository, store, identity.photo_id, erase=True)
    removal.delete_album(repository, store, gone_album, erase=True)

    # Late or replayed uploads land: the same keys, and a new object in the erased album.
    late = [canonical_key, odd_key, f"raw/{gone_album}/x.jpg", keys.raw_key(gone_album, uuid.uuid4(), "jpg")]
    for key in [*late, kept]:
        store.put(key, jpeg, "image/jpeg")
    reconciler = Reconciler(repository, store, ReconcilePolicy(min_changes=10), clock=lambda: datetime.now(UTC) + timedelta(hours=1))

    plan = reconciler.plan()

    assert sorted(a.key for a in plan.of_kind(ActionKind.DELETE_ERASED)) == sorted(late)
    assert [a.key for a in plan.of_kind(ActionKind.ADOPT)] == [kept]
    report = reconciler.apply(plan)
    assert report.ok and report.applied["delete_erased"] == 4 and report.applied["adopt"] == 1
    assert not any(store.exists(key) for key in late)
    assert repository.find_by_original_keys(late) == {} and kept in repository.find_by_original_keys([kept])
