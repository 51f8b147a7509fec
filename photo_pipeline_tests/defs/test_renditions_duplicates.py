"""Duplicates whose canonical photo goes away or changes, on the real flow: `process_album` on a
real Dagster instance, the photo table on PostgreSQL, the bucket on S3 over HTTP (moto's server);
reconciliation (`Reconciler`, and the `reconcile_storage` job) renders such a duplicate again
through the normal duplicate check, so it ends pointing at a photo with its bytes that stands, or
rendered on its own; the album's check reports it and leaves the render to reconciliation."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection

import pytest
from dagster import DagsterInstance

from photo_pipeline.cli import samples
from photo_pipeline.definitions import defs
from photo_pipeline.defs.reconcile.jobs import reconcile_config
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import PhotoRecord, PhotoRepository
from photo_pipeline.reconcile.apply import Reconciler
from photo_pipeline.reconcile.plan import ActionKind, ReconcilePolicy, ReconciliationPlan
from photo_pipeline.rendering.render import render_options_from_settings
from photo_pipeline.services.album_check import check_album
from photo_pipeline.services.albums import album_view
from photo_pipeline.services.processing import PhotoProcessor
from photo_pipeline.settings import Settings
from photo_pipeline.storage import S3ObjectStore
from photo_pipeline_tests.defs.test_reconcile_job import latest_metadata as reconciliation_metadata
from photo_pipeline_tests.defs.test_reconcile_job import rows
from photo_pipeline_tests.defs.test_renditions import (  # noqa: F401 - fixtures
    materialize_from_ui,
    pipeline_env,
    store,
    upload,
)

# No grace: a gone original is seen at the first plan and flagged missing at the next.
POLICY = ReconcilePolicy(missing_grace_seconds=0, orphan_grace_seconds=0, min_changes=100)
PICTURE = samples.photo_jpeg(640, 480, seed=11)


def processor(repository: PhotoRepository, store: S3ObjectStore) -> PhotoProcessor:
    return PhotoProcessor(repository, store, render_options_from_settings(Settings.from_env().render))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rerenders(plan: ReconciliationPlan) -> dict[uuid.UUID, str]:
    return {a.photo_id: a.detail for a in plan.of_kind(ActionKind.RERENDER) if a.photo_id}


def canonical_and_copies(repository: PhotoRepository, ids: Collection[uuid.UUID]) -> tuple[PhotoRecord, list[PhotoRecord]]:
    """The one photo among `ids` rendered on its own, and the others: every one completed, with
    the same checksum, a duplicate of that photo, whole with that photo's renditions (its keys,
    sizes, hash and `renditions` rows: nothing stored twice)."""
    found = repository.get_many(ids)
    assert len(found) == len(ids) and all(r.status is PhotoStatus.COMPLETED for r in found.values()), found
    [canonical] = [r for r in found.values() if r.duplicate_of is None]
    copies = [r for r in found.values() if r.duplicate_of is not None]
    assert {r.original_sha256 for r in found.values()} == {canonical.original_sha256}
    shared = ("thumb_key", "preview_key", "thumb_bytes", "preview_bytes", "thumbhash")
    for copy in copies:
        assert copy.duplicate_of == canonical.id
        assert [getattr(copy, name) for name in shared] == [getattr(canonical, name) for name in shared]
        assert repository.rendition_files(copy.id) == repository.rendition_files(canonical.id)
    return canonical, copies


def assert_rendered_on_its_own(repository: PhotoRepository, store: S3ObjectStore, photo: uuid.UUID, data: bytes) -> None:
    row = repository.get(photo)
    assert row is not None and row.status is PhotoStatus.COMPLETED
    assert row.duplicate_of is None and row.original_sha256 == sha256(data)
    assert row.thumb_key and row.preview_key
    assert store.exists(row.thumb_key) and store.exists(row.preview_key)
    files = repository.rendition_files(photo)
    assert files and all(store.exists(f.key) for f in files)


def test_a_duplicate_of_a_photo_whose_original_is_lost_is_rendered_on_its_own(
    instance: DagsterInstance, pipeline_env: None, photo_db: str, store: S3ObjectStore
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    ids = [upload(repository, store, album, PICTURE, name) for name in ("a.jpg", "a (1).jpg")]
    assert materialize_from_ui(instance, album).success
    canonical, [copy] = canonical_and_copies(repository, ids)

    store.delete(canonical.original_key)
    reconciler = Reconciler(repository, store, POLICY)
    # A first sighting is not evidence yet: the copy still points at it.
    plan = reconciler.plan()
    assert [(a.kind, a.photo_id) for a in plan.actions] == [(ActionKind.SEEN_GONE, canonical.id)]
    reconciler.apply(plan)

    # Flagged missing, and the copy is planned in the same pass (applied without a processor here,
    # so its re-render waits for a later plan).
    plan = reconciler.plan()
    assert [a.photo_id for a in plan.of_kind(ActionKind.FLAG_MISSING)] == [canonical.id]
    assert rerenders(plan) == {
        copy.id: f"duplicate of photo {canonical.id}, which is flagged missing by this plan (its original is gone)"
    }
    reconciler.apply(plan)
    assert repository.get(canonical.id).status is PhotoStatus.MISSING  # type: ignore[union-attr]
    assert repository.get(copy.id).duplicate_of == canonical.id  # type: ignore[union-attr]

    # From the table alone now, in the whole plan and in the album's check, which reports it and
    # leaves the render to reconcile_storage.
    missing = f"duplicate of photo {canonical.id}, which is missing (its original is gone from the bucket)"
    assert rerenders(reconciler.plan()) == {copy.id: missing}
    check = check_album(repository, store, Settings.from_env(), album, apply=True)
    assert [(a.kind, a.photo_id, a.detail) for a in check.plan.actions] == [(ActionKind.RERENDER, copy.id, missing)]
    assert check.deferred == {ActionKind.RERENDER.value: 1}
    assert repository.get(copy.id).duplicate_of == canonical.id, "an album check renders nothing"  # type: ignore[union-attr]

    # The client cleans the missing photo up (allowed for missing photos): its row is gone.
    repository.delete_for_cleanup(canonical.id)
    plan = reconciler.plan()
    assert rerenders(plan) == {copy.id: f"duplicate of photo {canonical.id}, which was deleted (purged or cleaned up)"}
    report = reconciler.apply(plan, processor=processor(repository, store))
    assert report.ok and report.applied["rerender"] == 1

    assert_rendered_on_its_own(repository, store, copy.id, PICTURE)
    [view] = album_view(repository, store, album, limit=10, after=None, url_seconds=60).photos
    assert view.photo.id == copy.id and view.duplicate_of is None and view.thumbnail and view.preview and view.sizes
    assert rerenders(reconciler.plan()) == {}, "settled: not rendered again"


def test_a_duplicate_of_a_photo_whose_original_was_replaced_is_rendered_on_its_own(
    instance: DagsterInstance, pipeline_env: None, photo_db: str, store: S3ObjectStore
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    ids = [upload(repository, store, album, PICTURE, name) for name in ("b.jpg", "b (1).jpg")]
    assert materialize_from_ui(instance, album).success
    canonical, [copy] = canonical_and_copies(repository, ids)

    # Someone with write access puts another picture over the canonical photo's original.
    replacement = samples.photo_jpeg(640, 480, seed=12)
    store.put(canonical.original_key, replacement, "image/jpeg")
    reconciler = Reconciler(repository, store, POLICY)
    plan = reconciler.plan()
    planned = rerenders(plan)
    assert planned[canonical.id].startswith("original replaced since it was rendered")
    assert planned[copy.id] == f"duplicate of photo {canonical.id}, which has a replaced original, rendered again by this plan"

    # The re-render limit cuts the copy off this time: the canonical photo shows other bytes now.
    reconciler.apply(plan, processor=processor(repository, store), rerender_limit=1)
    changed = repository.get(canonical.id)
    assert changed is not None and changed.original_sha256 == sha256(replacement) and changed.duplicate_of is None
    assert repository.get(copy.id).duplicate_of == canonical.id  # type: ignore[union-attr]

    # The next plan sees it from the table alone.
    plan = reconciler.plan()
    assert rerenders(plan) == {copy.id: f"duplicate of photo {canonical.id}, which changed (its original has other bytes now)"}
    reconciler.apply(plan, processor=processor(repository, store))

    assert_rendered_on_its_own(repository, store, copy.id, PICTURE)
    assert_rendered_on_its_own(repository, store, canonical.id, replacement)
    assert rerenders(reconciler.plan()) == {}


def test_three_copies_whose_canonical_is_lost_end_with_one_rendered_and_one_duplicate_of_it(
    instance: DagsterInstance, pipeline_env: None, photo_db: str, store: S3ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the `reconcile_storage` job (its own steps: rows spilled to scratch files, planned,
    applied with the run's processor)."""
    monkeypatch.setenv("PHOTO_MISSING_GRACE_SECONDS", "0")
    monkeypatch.setenv("PHOTO_ORPHAN_GRACE_SECONDS", "0")
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    ids = [upload(repository, store, album, PICTURE, name) for name in ("c.jpg", "c (1).jpg", "c (2).jpg")]
    other = upload(repository, store, album, samples.photo_jpeg(640, 480, seed=13), "d.jpg")
    assert materialize_from_ui(instance, album).success
    canonical, copies = canonical_and_copies(repository, ids)
    assert len(copies) == 2

    store.delete(canonical.original_key)
    job = defs().resolve_job_def("reconcile_storage")
    assert job.execute_in_process(instance=instance, run_config=reconcile_config(dry_run=False)).success  # seen gone
    canonical_and_copies(repository, ids)  # unchanged so far
    assert job.execute_in_process(instance=instance, run_config=reconcile_config(dry_run=False)).success

    metadata = reconciliation_metadata(instance)
    assert metadata["rerender_needed"].value == 2
    rerenders = sorted(r["action"] for r in rows(metadata["first_actions"]) if r["action"].startswith("rerender: "))
    flagged = f"rerender: duplicate of photo {canonical.id}, which is flagged missing by this plan (its original is gone): "
    assert rerenders == sorted(flagged + copy.original_key for copy in copies)

    assert repository.get(canonical.id).status is PhotoStatus.MISSING  # type: ignore[union-attr]
    survivor, [duplicate] = canonical_and_copies(repository, [copy.id for copy in copies])
    assert_rendered_on_its_own(repository, store, survivor.id, PICTURE)
    assert duplicate.duplicate_of == survivor.id
    assert repository.get(other).duplicate_of is None  # type: ignore[union-attr]

    assert job.execute_in_process(instance=instance, run_config=reconcile_config(dry_run=True)).success
    assert reconciliation_metadata(instance)["rerender_needed"].value == 0
