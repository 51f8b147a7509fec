"""One album as a site's page shows it: counts per status, and its photos a page at a time with
short-lived URLs of the renditions of the completed ones (`GET /api/albums/{id}`)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import PhotoRecord, PhotoRepository
from photo_pipeline.storage import ObjectStore, PresignedDownload


@dataclass(frozen=True)
class PhotoView:
    photo: PhotoRecord
    # Bearer credentials until they expire: handed to the client, never logged.
    thumbnail: PresignedDownload | None
    preview: PresignedDownload | None


@dataclass(frozen=True)
class AlbumView:
    album_id: uuid.UUID
    counts: Mapping[PhotoStatus, int]
    photos: list[PhotoView]
    # The cursor of the next page (the last photo's id), None on the last page.
    next_after: uuid.UUID | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def album_view(
    repository: PhotoRepository,
    store: ObjectStore,
    album_id: uuid.UUID,
    *,
    limit: int,
    after: uuid.UUID | None,
    url_seconds: int,
    only: Collection[uuid.UUID] | None = None,
) -> AlbumView:
    """Counts of the whole album; `limit` photos after the photo `after`, or (with `only`) just
    those of the named photos that are in the album. StorageError when the renditions' URLs
    cannot be signed."""
    if only is not None:
        found = [row for row in repository.get_many(only).values() if row.album_id == album_id]
        page, more = sorted(found, key=lambda row: (row.created_at, str(row.id)))[:limit], False
    else:
        # One more than asked says whether another page follows without a count query.
        rows = repository.album_page(album_id, limit + 1, after)
        page, more = rows[:limit], len(rows) > limit
    return AlbumView(
        album_id=album_id,
        counts=repository.status_counts(album_id),
        photos=[_view(store, row, url_seconds) for row in page],
        next_after=page[-1].id if more and page else None,
    )


def _view(store: ObjectStore, row: PhotoRecord, url_seconds: int) -> PhotoView:
    if row.status is not PhotoStatus.COMPLETED:
        return PhotoView(row, None, None)
    thumbnail = store.presign_get(row.thumb_key, url_seconds) if row.thumb_key else None
    preview = store.presign_get(row.preview_key, url_seconds) if row.preview_key else None
    return PhotoView(row, thumbnail, preview)
