"""Albums as the operator sees them: title, photos per status, rendition bytes and the latest
failures, read from the photo table as it is now.

This is what the renditions' materialization metadata and `photo-pipeline status` say about an
album, whatever the last run did (a run that found nothing to do must not make an album look
empty). No Dagster here.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from photo_pipeline.photos.albums import AlbumFigures
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.services.reruns import FAILED_EXAMPLES, AlbumFailures, FailedPhoto


@dataclass(frozen=True)
class AlbumState:
    album_id: uuid.UUID
    title: str | None
    counts: Mapping[PhotoStatus, int]
    # Bytes of the completed photos' renditions in the bucket.
    thumb_bytes: int
    preview_bytes: int
    failures: AlbumFailures

    @property
    def photos(self) -> int:
        return sum(self.counts.values())

    @property
    def pending(self) -> int:
        return self.counts[PhotoStatus.PENDING]

    @property
    def processing(self) -> int:
        return self.counts[PhotoStatus.PROCESSING]

    @property
    def completed(self) -> int:
        return self.counts[PhotoStatus.COMPLETED]

    @property
    def failed(self) -> int:
        return self.counts[PhotoStatus.FAILED]

    @property
    def missing(self) -> int:
        return self.counts[PhotoStatus.MISSING]

    @property
    def label(self) -> str:
        """The title with the id (ids are what the UI's partitions and the commands take)."""
        return f"{self.title} ({self.album_id})" if self.title else str(self.album_id)


def album_states(
    repository: PhotoRepository,
    album_ids: Collection[uuid.UUID] | None = None,
    *,
    failed_examples: int = FAILED_EXAMPLES,
) -> dict[uuid.UUID, AlbumState]:
    """The state of these albums (every album with photos when None), from a few grouped reads:
    figures per album and status, the titles, and the latest failures of albums that have any.
    An album asked for by id that has no photo is there with zero figures."""
    figures = repository.album_figures(album_ids)
    if album_ids is not None:
        figures = {album_id: figures.get(album_id) or AlbumFigures(album_id) for album_id in album_ids}
    titles = repository.album_titles(list(figures))
    failing = [album_id for album_id, f in figures.items() if f.counts[PhotoStatus.FAILED]]
    latest = repository.failed_in_albums(failing, failed_examples) if failing and failed_examples > 0 else {}
    return {
        album_id: AlbumState(
            album_id=album_id,
            title=titles.get(album_id),
            counts=f.counts,
            thumb_bytes=f.thumb_bytes,
            preview_bytes=f.preview_bytes,
            failures=AlbumFailures(
                album_id=album_id,
                failed=f.counts[PhotoStatus.FAILED],
                examples=[FailedPhoto.of(record) for record in latest.get(album_id, [])],
            ),
        )
        for album_id, f in figures.items()
    }


def album_state(repository: PhotoRepository, album_id: uuid.UUID, *, failed_examples: int = FAILED_EXAMPLES) -> AlbumState:
    return album_states(repository, [album_id], failed_examples=failed_examples)[album_id]


def display_filenames(repository: PhotoRepository, photo_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The file names of these photos (as uploaded), for tables that list photos by id."""
    return {photo_id: record.display_filename for photo_id, record in repository.get_many(photo_ids).items()}
