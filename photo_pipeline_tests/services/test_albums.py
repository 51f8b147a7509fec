"""An album as a page shows it (services/albums.py), on both databases: whole-album counts,
pages in upload order with a keyset cursor, or just the named photos."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from photo_pipeline.photos.database import migrate
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.services.albums import album_view
from photo_pipeline.storage import LocalObjectStore, keys


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        # Two photos share each instant: the id breaks the tie, as the cursor must.
        self.now += timedelta(seconds=0.5)
        return self.now.replace(microsecond=0)


def test_pages_follow_upload_order_and_cover_every_photo_once(database_url: str, tmp_path: Path) -> None:
    migrate(database_url)
    repository = PhotoRepository(PhotoRepository.from_url(database_url).engine, clock=Clock())
    store = LocalObjectStore(tmp_path / "objects")
    album, other = uuid.uuid4(), uuid.uuid4()
    for _ in range(7):
        photo = uuid.uuid4()
        repository.register_pending(NewPhoto(id=photo, album_id=album, original_key=keys.raw_key(album, photo, "jpg")))
    stranger = uuid.uuid4()
    repository.register_pending(NewPhoto(id=stranger, album_id=other, original_key=keys.raw_key(other, stranger, "jpg")))

    seen: list[uuid.UUID] = []
    after = None
    for _page in range(10):  # bounded: 7 photos, 3 a page
        view = album_view(repository, store, album, limit=3, after=after, url_seconds=60)
        assert view.counts[PhotoStatus.PENDING] == 7 and view.total == 7
        assert all(item.thumbnail is None for item in view.photos), "no URLs before completion"
        seen.extend(item.photo.id for item in view.photos)
        after = view.next_after
        if after is None:
            break
    expected = [row.id for row in repository.photos_in_album(album)]
    assert seen == expected and len(set(seen)) == 7

    mine = album_view(repository, store, album, limit=10, after=None, url_seconds=60, only=[expected[4], expected[1], stranger])
    assert [item.photo.id for item in mine.photos] == [expected[1], expected[4]] and mine.next_after is None
    assert album_view(repository, store, album, limit=3, after=stranger, url_seconds=60).photos == [], (
        "a cursor from another album yields nothing"
    )
