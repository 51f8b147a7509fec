"""Reconciliation on PostgreSQL + S3 over HTTP: every case with its grace period, the safety
limit, and dry runs that change nothing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from photo_pipeline.cli import samples
from photo_pipeline.photos.database import create_engine_for, migrate
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.reconcile.apply import Reconciler, SafetyLimitExceeded
from photo_pipeline.reconcile.plan import ActionKind, ReconcilePolicy
from photo_pipeline.rendering.render import RenderOptions
from photo_pipeline.services.processing import PhotoProcessor, ProcessingLimits
from photo_pipeline.storage import S3ObjectStore, StorageError, keys, make_s3_client
from photo_pipeline_tests.conftest import S3Server

POLICY = ReconcilePolicy(
    missing_grace_seconds=900,
    orphan_grace_seconds=300,
    claim_lease_seconds=900,
    missing_retention_seconds=7 * 86400,
    max_attempts=3,
    max_change_fraction=0.5,
    min_changes=10,
)
JPEG = samples.photo_jpeg(64, 48)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class World:
    repository: PhotoRepository
    store: S3ObjectStore
    clock: Clock

    def reconciler(self, policy: ReconcilePolicy = POLICY) -> Reconciler:
        return Reconciler(self.repository, self.store, policy, clock=self.clock, page_size=3)

    def row(self, album: uuid.UUID, *, upload: bool = True, ext: str = "jpg") -> uuid.UUID:
        photo_id = uuid.uuid4()
        key = keys.raw_key(album, photo_id, ext)
        self.repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key))
        if upload:
            self.store.put(key, JPEG, "image/jpeg")
        return photo_id

    def completed(self, album: uuid.UUID) -> uuid.UUID:
        photo_id = self.row(album)
        [claim] = self.repository.claim_photos([photo_id], "seed")
        thumb, preview = keys.thumb_key(album, photo_id, "JPEG"), keys.preview_key(album, photo_id, "JPEG")
        self.store.put(thumb, JPEG, "image/jpeg")
        self.store.put(preview, JPEG, "image/jpeg")
        assert self.repository.complete(
            claim, thumb_key=thumb, preview_key=preview, width=64, height=48, original_bytes=1, thumb_bytes=1, preview_bytes=1
        )
        return photo_id

    def status(self, photo_id: uuid.UUID) -> PhotoStatus | None:
        row = self.repository.get(photo_id)
        return row.status if row else None

    def run(self, *, policy: ReconcilePolicy = POLICY, processor: PhotoProcessor | None = None):  # type: ignore[no-untyped-def]
        reconciler = self.reconciler(policy)
        plan = reconciler.plan()
        return plan, reconciler.apply(plan, processor=processor)

    def snapshot(self) -> tuple[list[tuple], list[tuple]]:  # type: ignore[type-arg]
        rows = sorted(
            (str(r.id), r.status.value, r.original_key, r.updated_at, r.missing_since, r.claimed_by)
            for r in self.repository.get_many([r.id for r in self._all_rows()]).values()
        )
        objects = [(o.key, o.size, o.etag) for o in self.store.iter_objects("")]
        return rows, objects

    def _all_rows(self):  # type: ignore[no-untyped-def]
        return [r for album in self.repository.albums() for r in self.repository.photos_in_album(album)]


@pytest.fixture
def world(postgres_url: str, s3_env: S3Server, s3_bucket: str) -> World:
    migrate(postgres_url)
    clock = Clock()
    repository = PhotoRepository(create_engine_for(postgres_url), clock=clock)
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)
    return World(repository, store, clock)


def padding(world: World, album: uuid.UUID, n: int = 12) -> None:
    """Healthy photos, so a handful of changes stays under the safety limit's share."""
    for _ in range(n):
        world.completed(album)


def test_pending_with_original_is_requeued_and_without_is_flagged_only_after_grace(world: World) -> None:
    album = uuid.uuid4()
    padding(world, album)
    waiting = world.row(album)
    never = world.row(album, upload=False)
    late = world.row(album, upload=False)

    world.clock.advance(600)  # inside the grace period: nothing is flagged
    plan, _ = world.run()
    assert plan.of_kind(ActionKind.FLAG_MISSING) == []
    assert {a.photo_id for a in plan.of_kind(ActionKind.REQUEUE)} == {waiting}

    # The late upload lands; then the grace period passes.
    late_row = world.repository.get(late)
    assert late_row is not None
    world.store.put(late_row.original_key, JPEG, "image/jpeg")
    world.clock.advance(600)
    plan, report = world.run()
    assert {a.photo_id for a in plan.of_kind(ActionKind.FLAG_MISSING)} == {never}
    assert world.status(never) is PhotoStatus.MISSING
    assert world.status(late) is PhotoStatus.PENDING, "an object that appears late is never flagged"
    assert album in report.albums_to_render
    row = world.repository.get(waiting)
    assert row is not None and row.updated_at == world.clock.now, "requeued: touched so the sensor sees it"


def test_gone_original_of_a_completed_photo_counts_from_first_sighting_and_comes_back(world: World) -> None:
    album = uuid.uuid4()
    padding(world, album)
    photo = world.completed(album)
    row = world.repository.get(photo)
    assert row is not None
    world.store.delete(row.original_key)

    world.run()
    seen = world.repository.get(photo)
    assert seen is not None and seen.status is PhotoStatus.COMPLETED and seen.missing_since == world.clock.now
    world.clock.advance(600)
    world.run()
    assert world.status(photo) is PhotoStatus.COMPLETED, "inside the grace period since first seen gone"
    world.clock.advance(600)
    world.run()
    assert world.status(photo) is PhotoStatus.MISSING

    world.store.put(row.original_key, JPEG, "image/jpeg")
    world.run()
    back = world.repository.get(photo)
    assert back is not None and back.status is PhotoStatus.PENDING and back.missing_since is None


def test_missing_rows_are_purged_only_after_retention(world: World) -> None:
    album = uuid.uuid4()
    padding(world, album)
    photo = world.row(album, upload=False)
    world.clock.advance(1000)
    world.run()
    assert world.status(photo) is PhotoStatus.MISSING
    world.clock.advance(86400)
    world.run()
    assert world.status(photo) is PhotoStatus.MISSING
    world.clock.advance(7 * 86400)
    plan, _ = world.run()
    assert [a.photo_id for a in plan.of_kind(ActionKind.PURGE)] == [photo]
    assert world.repository.get(photo) is None


def test_orphans_are_adopted_after_their_grace_period(world: World) -> None:
    album = uuid.uuid4()
    padding(world, album)
    canonical_id = uuid.uuid4()
    canonical = keys.raw_key(album, canonical_id, "jpg")
    foreign = "raw/camera-roll/IMG_0042.JPG"
    world.store.put(canonical, JPEG, "image/jpeg")
    world.store.put(foreign, JPEG, "image/jpeg")
    # The store stamps objects with the wall clock; on a loaded machine the padding above can
    # take longer than the second of slack between the grace period and the advance below.
    world.clock.now = max(world.clock.now, datetime.now(UTC))

    plan, _ = world.run()
    assert plan.of_kind(ActionKind.ADOPT) == [], "too young: its row may be on its way"
    world.clock.advance(301)
    plan, report = world.run()
    assert {a.key for a in plan.of_kind(ActionKind.ADOPT)} == {canonical, foreign}
    adopted = world.repository.get(canonical_id)
    assert adopted is not None and adopted.status is PhotoStatus.PENDING and adopted.album_id == album
    minted = world.repository.find_by_original_keys([foreign])[foreign]
    assert minted.id != canonical_id
    assert album in report.albums_to_render
    again, _ = world.run()
    assert again.of_kind(ActionKind.ADOPT) == []


def test_original_key_is_corrected_to_the_object_carrying_the_photo_id(world: World) -> None:
    album = uuid.uuid4()
    padding(world, album)
    photo = world.row(album, upload=False, ext="jpg")
    actual = keys.raw_key(album, photo, "png")
    world.store.put(actual, samples.photo_png(64, 48), "image/png")
    world.clock.advance(1000)
    plan, _ = world.run()
    assert [a.photo_id for a in plan.of_kind(ActionKind.CORRECT_KEY)] == [photo]
    assert plan.of_kind(ActionKind.ADOPT) == [] and plan.of_kind(ActionKind.FLAG_MISSING) == []
    row = world.repository.get(photo)
    assert row is not None and row.original_key == actual and row.status is PhotoStatus.PENDING


def test_stray_renditions_are_removed_and_lost_ones_rendered_again(world: World) -> None:
    album = uuid.uuid4()
    padding(world, album)
    photo = world.completed(album)
    stray = keys.thumb_key(album, uuid.uuid4(), "JPEG")
    world.store.put(stray, JPEG, "image/jpeg")
    row = world.repository.get(photo)
    assert row is not None and row.thumb_key
    world.store.delete(row.thumb_key)
    world.clock.now = max(world.clock.now, datetime.now(UTC))  # see test_orphans_are_adopted_...
    world.clock.advance(301)
    processor = PhotoProcessor(world.repository, world.store, RenderOptions(preview_long_side=64, thumb_long_side=32), ProcessingLimits(workers=1))
    plan, report = world.run(processor=processor)
    assert [a.key for a in plan.of_kind(ActionKind.DELETE_RENDITION)] == [stray]
    assert [a.photo_id for a in plan.of_kind(ActionKind.RERENDER)] == [photo]
    assert not world.store.exists(stray)
    assert world.store.exists(row.thumb_key)
    assert report.applied["rerender"] == 1
    assert world.status(photo) is PhotoStatus.COMPLETED


def test_claims_expire_on_the_lease_alone_and_renewed_claims_stay(world: World) -> None:
    """No run record is consulted: a run killed with -9 stays STARTED forever, so only the lease
    (renewed by a live run's heartbeat) can tell a dead claim from a slow one."""
    album = uuid.uuid4()
    padding(world, album)
    dead, renewed, exhausted = world.row(album), world.row(album), world.row(album)
    world.repository.claim_photos([dead], "killed-run")
    [live_claim] = world.repository.claim_photos([renewed], "slow-run")
    for _ in range(POLICY.max_attempts):
        [claim] = world.repository.claim_photos([exhausted], "crashing-run")
        if claim.attempts < POLICY.max_attempts:
            world.repository.release(claim, "crashed")
    world.clock.advance(600)
    plan, _ = world.run()
    assert plan.of_kind(ActionKind.RELEASE_CLAIM) == [], "inside the lease"
    assert world.repository.renew_claims([live_claim]) == {renewed}  # the slow run's heartbeat
    world.clock.advance(400)
    world.run()
    released = world.repository.get(dead)
    assert released is not None and released.status is PhotoStatus.PENDING and released.attempts == 1
    assert world.status(renewed) is PhotoStatus.PROCESSING, "renewed 400 s ago: inside its lease"
    failed = world.repository.get(exhausted)
    assert failed is not None and failed.status is PhotoStatus.FAILED and "attempts" in (failed.error or "")


def test_empty_bucket_trips_the_safety_limit_and_changes_nothing(world: World, s3_env: S3Server) -> None:
    album = uuid.uuid4()
    for _ in range(3):
        world.completed(album)
    wrong = World(world.repository, S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_env.new_bucket()), world.clock)
    before = world.snapshot()
    world.clock.advance(10_000)
    reconciler = wrong.reconciler()
    plan = reconciler.plan()
    assert not plan.safe and "no originals" in plan.violations[0]
    with pytest.raises(SafetyLimitExceeded, match="--force"):
        reconciler.apply(plan)
    assert world.snapshot() == before


def test_share_limit_trips_per_album(world: World) -> None:
    album = uuid.uuid4()
    padding(world, album, 12)
    lost = [world.completed(album) for _ in range(14)]
    for photo in lost:
        row = world.repository.get(photo)
        assert row is not None
        world.store.delete(row.original_key)
    plan = world.reconciler().plan()
    assert any(f"album {album}" in v for v in plan.violations)
    with pytest.raises(SafetyLimitExceeded):
        world.reconciler().apply(plan)
    assert all(world.repository.get(p).missing_since is None for p in lost)  # type: ignore[union-attr]
    report = world.reconciler().apply(plan, force=True)
    assert report.applied["seen_gone"] == 14


def test_dry_run_leaves_table_and_bucket_unchanged(world: World) -> None:
    album = uuid.uuid4()
    padding(world, album)
    world.row(album, upload=False)
    world.store.put(keys.raw_key(album, uuid.uuid4(), "jpg"), JPEG, "image/jpeg")
    world.store.put(keys.preview_key(album, uuid.uuid4(), "JPEG"), JPEG, "image/jpeg")
    world.clock.advance(5000)
    before = world.snapshot()
    plan = world.reconciler().plan()
    assert plan.counts()["flag_missing"] == 1 and plan.counts()["adopt"] == 1 and plan.counts()["delete_rendition"] == 1
    assert world.snapshot() == before


def test_listing_errors_abort_without_changes(world: World, s3_env: S3Server) -> None:
    album = uuid.uuid4()
    world.completed(album)
    missing_bucket = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), "no-such-bucket-here")
    before = world.snapshot()
    with pytest.raises(StorageError):
        Reconciler(world.repository, missing_bucket, POLICY, clock=world.clock).plan()
    assert world.snapshot() == before


def test_a_late_upload_after_cleanup_is_removed_not_adopted(world: World) -> None:
    from photo_pipeline.services.uploads import cleanup_photo

    album = uuid.uuid4()
    padding(world, album)
    photo = world.row(album, upload=False)
    row = world.repository.get(photo)
    assert row is not None
    cleanup_photo(world.repository, world.store, photo)
    # The browser's PUT, still holding a valid presigned URL, lands after the cleanup.
    world.store.put(row.original_key, JPEG, "image/jpeg")
    assert world.repository.adopt([NewPhoto(id=photo, album_id=album, original_key=row.original_key)]) == []
    world.clock.advance(1000)
    plan, report = world.run()
    assert [a.key for a in plan.of_kind(ActionKind.DELETE_CANCELLED)] == [row.original_key]
    assert plan.of_kind(ActionKind.ADOPT) == []
    assert not world.store.exists(row.original_key)
    assert world.repository.get(photo) is None
