"""A large, consistent photo library written directly (files and one executemany INSERT of
completed rows), for the scale test and the reconciliation benchmark: the upload flow would take
minutes for 100,000, and so would adopting them album by album (each adopt checks tombstones and
erase records first, and every row is then updated once more to `completed`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from photo_pipeline.photos.models import Photo, PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.storage import keys

ROWS_PER_STATEMENT = 10_000


def seed_completed_library(repository: PhotoRepository, root: Path, albums: int, per_album: int) -> None:
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for _ in range(albums):
        album = uuid.uuid4()
        folder = root / "raw" / str(album)
        folder.mkdir(parents=True)
        for _ in range(per_album):
            photo_id = uuid.uuid4()
            (folder / f"{photo_id}.jpg").write_bytes(b"x")
            photo = NewPhoto(id=photo_id, album_id=album, original_key=keys.raw_key(album, photo_id, "jpg"))
            # The row adopt would create, already completed.
            rows.append({**PhotoRepository._new_row(photo, now), "status": PhotoStatus.COMPLETED.value})
    with repository.engine.begin() as conn:
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            conn.execute(insert(Photo), rows[start : start + ROWS_PER_STATEMENT])
