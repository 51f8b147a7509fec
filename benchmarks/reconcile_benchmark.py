"""Reconciliation at scale: seconds and peak memory to plan (and apply) over N objects and N rows.

PostgreSQL (a throw-away database on the local server) + the local folder store, or S3 over HTTP
(`--store s3`: moto's server in its own process, the objects written straight into its backend
because 100,000 PUTs over HTTP take minutes here; the reconciliation itself lists over HTTP). Runs
10,000 and 100,000 side by side so the ratio shows how time and memory grow. Prints figures;
asserts nothing.

    PYTHONPATH=. .venv/bin/python benchmarks/reconcile_benchmark.py [--sizes 10000 100000] [--store folder|s3]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench_support import create_database, drop_database  # noqa: E402 (the script's own folder)

from photo_pipeline.photos.database import migrate
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.reconcile.apply import Reconciler
from photo_pipeline.reconcile.plan import ReconcilePolicy
from photo_pipeline.storage import (
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    make_s3_client,
)
from photo_pipeline_tests.scale import seed_completed_library

PER_ALBUM = 1000


@contextmanager
def s3_store_holding(folder_store: LocalObjectStore) -> Iterator[ObjectStore]:
    """An S3 bucket (moto over HTTP, own process) holding the same keys as the folder store."""
    from sensor_tick_benchmark import seeded_moto_process

    keys = [info.key for info in folder_store.iter_objects("")]
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    with seeded_moto_process(bucket, keys) as (endpoint, _seconds):
        yield S3ObjectStore(make_s3_client(endpoint_url=endpoint), bucket)


def measure(total: int, store_kind: str) -> dict[str, float]:
    name, url = create_database()
    try:
        migrate(url)
        repository = PhotoRepository.from_url(url)
        with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
            folder_store = LocalObjectStore(Path(folder))
            started = time.perf_counter()
            seed_completed_library(repository, folder_store.root, total // PER_ALBUM, PER_ALBUM)
            seeded = time.perf_counter() - started
            # A few real differences so apply has work: 1% of originals gone.
            for row in repository.photos_in_album(repository.albums()[0], limit=total // 100):
                folder_store.delete(row.original_key)
            store: ObjectStore = folder_store if store_kind == "folder" else stack.enter_context(s3_store_holding(folder_store))
            reconciler = Reconciler(repository, store, ReconcilePolicy(max_change_fraction=0.5), page_size=1000)
            tracemalloc.start()
            started = time.perf_counter()
            plan = reconciler.plan()
            planned = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            started = time.perf_counter()
            report = reconciler.apply(plan, force=True)  # the deletions sit in one album: past its limit
            applied = time.perf_counter() - started
        repository.engine.dispose()
    finally:
        drop_database(name)
    return {
        "seed_s": seeded,
        "plan_s": planned,
        "apply_s": applied,
        "peak_mib": peak / 2**20,
        "changes": float(sum(report.applied.values())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--store", choices=("folder", "s3"), default="folder")
    args = parser.parse_args()
    if args.store == "s3":
        from sensor_tick_benchmark import CREDENTIALS

        os.environ.update(CREDENTIALS)
    results = {}
    for total in args.sizes:
        results[total] = figures = measure(total, args.store)
        print(
            f"{total:>7} objects + rows ({args.store}): plan {figures['plan_s']:.2f}s, apply {figures['apply_s']:.2f}s "
            f"({figures['changes']:.0f} changes), peak traced memory while planning {figures['peak_mib']:.1f} MiB "
            f"(seeding took {figures['seed_s']:.1f}s)"
        )
    if len(args.sizes) >= 2:
        small, large = args.sizes[0], args.sizes[-1]
        print(
            f"x{large // small} data: plan time x{results[large]['plan_s'] / results[small]['plan_s']:.1f}, "
            f"peak memory x{results[large]['peak_mib'] / results[small]['peak_mib']:.2f}"
        )
    print(f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
