"""What the trash costs on PostgreSQL and the folder store: trashing and restoring a large album
(one UPDATE each), an album page beside a trash of the album's size, planning empty_trash on the
whole table, and erasing the album (rows, erase records, then its objects: listed and deleted).
Prints figures; asserts nothing.

    .venv/bin/python benchmarks/trash_benchmark.py [--rows 100000] [--album 10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, update

from bench_support import create_database, drop_database  # noqa: E402 (the script's own folder)
from photo_pipeline.photos.database import in_chunks, migrate
from photo_pipeline.photos.models import Album, Photo, PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository, utc_now
from photo_pipeline.services import removal
from photo_pipeline.storage import LocalObjectStore, keys
from photo_pipeline.trash.plan import EmptyTrashPolicy, plan_empty_trash, trash_cutoff


def seed(repository: PhotoRepository, store: LocalObjectStore, rows: int, album_size: int) -> uuid.UUID:
    """`rows` completed photos, `album_size` of them in one album whose files are in the store
    (original, thumbnail, preview); the others in albums of 1,000, rows only."""
    album = uuid.uuid4()
    photos = [NewPhoto(id=(p := uuid.uuid4()), album_id=album, original_key=keys.raw_key(album, p, "jpg")) for _ in range(album_size)]
    for photo in photos:
        for key in (photo.original_key, keys.thumb_key(album, photo.id, "JPEG"), keys.preview_key(album, photo.id, "JPEG")):
            store.put(key, b"x", "image/jpeg")
    others: list[NewPhoto] = []
    while len(photos) + len(others) < rows:
        other = uuid.uuid4()
        others += [NewPhoto(id=(p := uuid.uuid4()), album_id=other, original_key=keys.raw_key(other, p, "jpg")) for _ in range(1000)]
    for chunk in in_chunks(photos + others[: rows - len(photos)], 5000):
        repository.adopt(chunk)
    with repository.engine.begin() as conn:
        conn.execute(update(Photo).values(status=PhotoStatus.COMPLETED.value))
        for chunk in in_chunks([p.id for p in photos], 5000):
            ids = list(chunk)
            conn.execute(
                update(Photo)
                .where(Photo.id.in_(ids))
                .values(thumb_key=func.replace(Photo.original_key, "raw/", "processed/thumbs/"), preview_key=func.replace(Photo.original_key, "raw/", "processed/previews/"))
            )
    return album


def timed(what: str, action):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = action()
    print(f"  {what}: {time.perf_counter() - started:.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--album", type=int, default=10_000)
    args = parser.parse_args()
    name, url = create_database("photo_trash_bench")
    try:
        migrate(url)
        repository = PhotoRepository.from_url(url)
        with tempfile.TemporaryDirectory() as folder:
            store = LocalObjectStore(Path(folder))
            album = seed(repository, store, args.rows, args.album)
            print(f"{args.rows} rows, an album of {args.album} photos with 3 objects each (PostgreSQL, folder store)")
            trashed = timed("trash the album", lambda: removal.delete_album(repository, store, album))
            timed("restore the album", lambda: removal.restore_album(repository, album))
            half = [r.id for r in repository.photos_in_album(album)[: args.album // 2]]
            timed(f"trash {len(half)} of its photos one call", lambda: repository.trash_photos(half))
            timed("the album's first page (200) after them", lambda: repository.album_page(album, 200))
            repository.restore_photos(half)
            removal.delete_album(repository, store, album)
            with repository.engine.begin() as conn:  # past the retention
                past = utc_now() - timedelta(days=31)
                conn.execute(update(Album).where(Album.id == album).values(trashed_at=past))
            policy = EmptyTrashPolicy()
            now = utc_now()
            plan = timed(
                "plan empty_trash (the whole table)",
                lambda: plan_empty_trash(repository.expired_trash(trash_cutoff(now, policy), listed=policy.listed), now, policy),
            )
            print(f"    plan: {plan.photos_to_erase} photos to erase of {plan.table_rows}; within the limit: {plan.safe}")
            report = timed("empty_trash, forced (erase the album: rows, records, objects)", lambda: removal.empty_trash(repository, store, plan, force=True))
            print(f"    erased {report.photos_erased} photos, removed {report.objects_removed} objects; trashed {trashed.photos} before")
        repository.engine.dispose()
    finally:
        drop_database(name)


if __name__ == "__main__":
    main()
