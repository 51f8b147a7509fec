"""A large, consistent photo library written directly (files and multi-row inserts), for the
scale test and the reconciliation benchmark: the upload flow would take minutes for 100,000."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import update

from photo_pipeline.photos.models import Photo, PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.storage import keys


def seed_completed_library(repository: PhotoRepository, root: Path, albums: int, per_album: int) -> None:
    for _ in range(albums):
        album = uuid.uuid4()
        folder = root / "raw" / str(album)
        folder.mkdir(parents=True)
        photos = []
        for _ in range(per_album):
            photo_id = uuid.uuid4()
            (folder / f"{photo_id}.jpg").write_bytes(b"x")
            photos.append(NewPhoto(id=photo_id, album_id=album, original_key=keys.raw_key(album, photo_id, "jpg")))
        repository.adopt(photos)
    with repository.engine.begin() as conn:
        conn.execute(update(Photo).values(status=PhotoStatus.COMPLETED.value))
