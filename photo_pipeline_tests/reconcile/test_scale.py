"""Reconciliation of 100,000 objects and rows stays within a memory bound (timings live in
benchmarks/reconcile_benchmark.py, not here)."""

from __future__ import annotations

import tracemalloc
import uuid
from pathlib import Path

from photo_pipeline.photos.database import migrate
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.reconcile.apply import Reconciler
from photo_pipeline.reconcile.plan import ReconcilePolicy
from photo_pipeline.storage import LocalObjectStore, keys
from photo_pipeline_tests.scale import seed_completed_library

ALBUMS, PER_ALBUM = 100, 1000
MEMORY_BOUND = 64 * 1024 * 1024


def test_planning_100k_objects_and_rows_stays_within_memory(postgres_url: str, tmp_path: Path) -> None:
    migrate(postgres_url)
    repository = PhotoRepository.from_url(postgres_url)
    store = LocalObjectStore(tmp_path / "objects")
    seed_completed_library(repository, store.root, ALBUMS, PER_ALBUM)
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
