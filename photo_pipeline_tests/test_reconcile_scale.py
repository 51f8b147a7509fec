"""Reconciliation of 100,000 objects and rows stays within a memory bound (timings live in
benchmarks/reconcile_benchmark.py, not here)."""

from __future__ import annotations

import tracemalloc
import uuid
from pathlib import Path

from sqlalchemy import update

from photo_pipeline import keys
from photo_pipeline.database import migrate
from photo_pipeline.models import Photo, PhotoStatus
from photo_pipeline.object_store import LocalObjectStore
from photo_pipeline.reconciler import Reconciler
from photo_pipeline.reconciliation import ReconcilePolicy
from photo_pipeline.repository import NewPhoto, PhotoRepository

ALBUMS, PER_ALBUM = 100, 1000
MEMORY_BOUND = 64 * 1024 * 1024


def seed(repository: PhotoRepository, root: Path) -> None:
    """100 albums of 1,000 completed photos whose originals are all present, written directly
    (files and multi-row inserts) because the upload flow would take minutes."""
    for _ in range(ALBUMS):
        album = uuid.uuid4()
        folder = root / "raw" / str(album)
        folder.mkdir(parents=True)
        photos = []
        for _ in range(PER_ALBUM):
            photo_id = uuid.uuid4()
            (folder / f"{photo_id}.jpg").write_bytes(b"x")
            photos.append(NewPhoto(id=photo_id, album_id=album, original_key=keys.raw_key(album, photo_id, "jpg")))
        repository.adopt(photos)
    with repository.engine.begin() as conn:
        conn.execute(update(Photo).values(status=PhotoStatus.COMPLETED.value))


def test_planning_100k_objects_and_rows_stays_within_memory(postgres_url: str, tmp_path: Path) -> None:
    migrate(postgres_url)
    repository = PhotoRepository.from_url(postgres_url)
    store = LocalObjectStore(tmp_path / "objects")
    seed(repository, store.root)
    # One object whose row is gone and one row whose object is gone: found among 100,000.
    extra = keys.raw_key(uuid.uuid4(), uuid.uuid4(), "jpg")
    store.put(extra, b"x", "image/jpeg")
    lost = repository.photos_in_album(repository.albums()[0], limit=1)[0]
    store.delete(lost.original_key)

    reconciler = Reconciler(repository, store, ReconcilePolicy(orphan_grace_seconds=-1), page_size=1000)
    tracemalloc.start()
    plan = reconciler.plan()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert plan.rows_seen == ALBUMS * PER_ALBUM
    assert plan.raw_objects_seen == ALBUMS * PER_ALBUM  # one deleted, one added
    assert plan.counts()["adopt"] == 1 and plan.counts()["seen_gone"] == 1
    assert plan.safe
    assert peak < MEMORY_BOUND, f"planning peaked at {peak / 2**20:.1f} MiB"
