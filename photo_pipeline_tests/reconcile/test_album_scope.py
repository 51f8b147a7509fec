"""Reconciliation of one album (the API's `check`): the album's slice of the bucket and the
rows whose keys lie in it, on both databases, with the safety limit weighed on the album alone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from photo_pipeline.cli import samples
from photo_pipeline.photos.database import migrate
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.reconcile.apply import Reconciler, SafetyLimitExceeded
from photo_pipeline.reconcile.plan import ActionKind, ReconcilePolicy
from photo_pipeline.services.album_check import check_album
from photo_pipeline.settings import Settings
from photo_pipeline.storage import LocalObjectStore, keys

POLICY = ReconcilePolicy(missing_grace_seconds=60, orphan_grace_seconds=0, min_changes=2, max_change_fraction=0.2)
JPEG = samples.photo_jpeg(64, 48)
LONG_AGO = datetime.now(UTC) - timedelta(days=1)


def register(repository: PhotoRepository, album: uuid.UUID) -> str:
    photo = uuid.uuid4()
    key = keys.raw_key(album, photo, "jpg")
    repository.register_pending(NewPhoto(id=photo, album_id=album, original_key=key))
    return key


def test_an_album_plan_sees_its_own_slice_only(database_url: str, tmp_path: Path) -> None:
    migrate(database_url)
    repository = PhotoRepository(PhotoRepository.from_url(database_url).engine, clock=lambda: LONG_AGO)
    store = LocalObjectStore(tmp_path / "objects")
    album, neighbour = uuid.uuid4(), uuid.uuid4()
    # The album: one upload that arrived, one that never did, one orphan object.
    arrived = register(repository, album)
    store.put(arrived, JPEG, "image/jpeg")
    never = register(repository, album)
    orphan = keys.raw_key(album, uuid.uuid4(), "jpg")
    store.put(orphan, JPEG, "image/jpeg")
    # The neighbour is in a sorry state that is none of this album's business.
    for _ in range(5):
        register(repository, neighbour)
    store.put(keys.raw_key(neighbour, uuid.uuid4(), "jpg"), JPEG, "image/jpeg")

    reconciler = Reconciler(repository, store, POLICY)
    plan = reconciler.plan(album)
    found = {(a.kind, a.key) for a in plan.actions}
    assert found == {(ActionKind.REQUEUE, arrived), (ActionKind.FLAG_MISSING, never), (ActionKind.ADOPT, orphan)}
    assert (plan.rows_seen, plan.raw_objects_seen) == (2, 2) and plan.safe

    whole = reconciler.plan()
    assert whole.rows_seen == 7 and not whole.safe, "the whole table's plan includes the neighbour's five"
    with pytest.raises(SafetyLimitExceeded):
        reconciler.apply(reconciler.plan(neighbour))


def test_an_applied_album_check_changes_only_its_album_and_renders_nothing(database_url: str, tmp_path: Path) -> None:
    migrate(database_url)
    repository = PhotoRepository(PhotoRepository.from_url(database_url).engine, clock=lambda: LONG_AGO)
    store = LocalObjectStore(tmp_path / "objects")
    album, neighbour = uuid.uuid4(), uuid.uuid4()
    orphan = keys.raw_key(album, uuid.uuid4(), "jpg")
    store.put(orphan, JPEG, "image/jpeg")
    store.put(keys.raw_key(neighbour, uuid.uuid4(), "jpg"), JPEG, "image/jpeg")
    settings = Settings(home=tmp_path, database_url=database_url, orphan_grace_seconds=0)

    dry = check_album(repository, store, settings, album, apply=False)
    assert dry.report is None and [a.kind for a in dry.plan.actions] == [ActionKind.ADOPT]
    assert repository.status_counts(album) == repository.status_counts(uuid.uuid4()), "a dry run changes nothing"
    applied = check_album(repository, store, settings, album, apply=True)
    assert applied.report is not None and applied.report.applied["adopt"] == 1 and applied.report.albums_to_render == {album}
    assert sum(repository.status_counts(album).values()) == 1
    assert sum(repository.status_counts(neighbour).values()) == 0, "the neighbour's orphan waits for its own check"
