"""Photos per second of the processing service on one album, 1 worker vs N workers, side by side.

Embedded defaults (SQLite + local folder) in a temporary folder; 12-megapixel JPEGs rendered to the
default preview (1600) and thumbnail (400) with the default watermark. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/process_album_benchmark.py [--photos 24] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

from photo_pipeline import keys, samples
from photo_pipeline.database import migrate
from photo_pipeline.object_store import LocalObjectStore
from photo_pipeline.processing import PhotoProcessor, ProcessingLimits
from photo_pipeline.rendering import RenderOptions
from photo_pipeline.repository import NewPhoto, PhotoRepository


def seed_album(repository: PhotoRepository, store: LocalObjectStore, originals: list[bytes]) -> uuid.UUID:
    album = uuid.uuid4()
    for data in originals:
        photo_id = uuid.uuid4()
        key = keys.raw_key(album, photo_id, "jpg")
        repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key))
        store.put(key, data, "image/jpeg")
    return album


def measure(folder: Path, originals: list[bytes], workers: int) -> tuple[float, int]:
    url = f"sqlite:///{folder / 'photos.db'}"
    migrate(url)
    repository = PhotoRepository.from_url(url)
    store = LocalObjectStore(folder / "objects")
    album = seed_album(repository, store, originals)
    processor = PhotoProcessor(repository, store, RenderOptions(), ProcessingLimits(workers=workers, batch_size=32))
    started = time.perf_counter()
    report = processor.process_album(album, worker=f"bench-{workers}")
    return time.perf_counter() - started, report.rendered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    originals = [samples.photo_jpeg(4000, 3000, seed=i) for i in range(args.photos)]
    print(f"{args.photos} photos of 4000x3000 ({sum(map(len, originals)) / 1e6:.1f} MB of JPEG)")
    results = {}
    for workers in (1, args.workers):
        with tempfile.TemporaryDirectory() as folder:
            seconds, rendered = measure(Path(folder), originals, workers)
        results[workers] = rendered / seconds
        print(f"workers={workers}: {rendered} rendered in {seconds:.2f}s = {rendered / seconds:.2f} photos/s")
    print(f"speed-up {args.workers} workers vs 1: {results[args.workers] / results[1]:.2f}x")


if __name__ == "__main__":
    main()
