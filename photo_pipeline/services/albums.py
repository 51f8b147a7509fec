"""Albums as the photo table has them now, whatever the last run did (a run that found nothing to
do must not make an album look empty). No Dagster here.

- `AlbumState` / `album_state(s)`: what the operator sees — title, photos per status, rendition
  bytes, the latest failures — in the renditions' materialization metadata and `photo-pipeline status`;
- `AlbumView` / `album_view`: what a site's page sees (`GET /api/albums/{id}`) — counts per status and
  its photos a page at a time in upload or capture order, with short-lived URLs of the completed
  ones' renditions (thumbnail, preview and every responsive size, for a srcset).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from photo_pipeline.photos.albums import AlbumFigures
from photo_pipeline.photos.claims import StoredRendition
from photo_pipeline.photos.models import SHOWN_STATUSES, PhotoStatus
from photo_pipeline.photos.ordering import AlbumOrder
from photo_pipeline.photos.repository import PhotoRecord, PhotoRepository
from photo_pipeline.photos.trash import AlbumErased
from photo_pipeline.rendering.render import OUTPUT_FORMATS
from photo_pipeline.services.reruns import FAILED_EXAMPLES, AlbumFailures, FailedPhoto
from photo_pipeline.storage import ObjectStore, PresignedDownload


@dataclass(frozen=True)
class AlbumState:
    album_id: uuid.UUID
    title: str | None
    counts: Mapping[PhotoStatus, int]
    # Bytes of the completed photos' renditions in the bucket.
    thumb_bytes: int
    preview_bytes: int
    failures: AlbumFailures
    # Completed photos whose original has the checksum of an earlier one (not rendered again).
    duplicates: int = 0

    @property
    def photos(self) -> int:
        """Every photo shown: those in the trash are counted apart (`trashed`)."""
        return sum(self.counts[status] for status in SHOWN_STATUSES)

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
    def trashed(self) -> int:
        return self.counts[PhotoStatus.TRASHED]

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
    duplicates = repository.duplicate_counts_by_album(list(figures)) if figures else {}
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
            duplicates=duplicates.get(album_id, 0),
        )
        for album_id, f in figures.items()
    }


def album_state(repository: PhotoRepository, album_id: uuid.UUID, *, failed_examples: int = FAILED_EXAMPLES) -> AlbumState:
    return album_states(repository, [album_id], failed_examples=failed_examples)[album_id]


def display_filenames(repository: PhotoRepository, photo_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The file names of these photos (as uploaded), for tables that list photos by id."""
    return {photo_id: record.display_filename for photo_id, record in repository.get_many(photo_ids).items()}


# -- the API's view of an album


@dataclass(frozen=True)
class SizedView:
    """One responsive size of a photo in one format, with a URL to fetch it."""

    file: StoredRendition
    # A bearer credential until it expires: handed to the client, never logged.
    download: PresignedDownload

    @property
    def content_type(self) -> str:
        return rendition_content_type(self.file.format)


def rendition_content_type(fmt: str) -> str:
    """What the bucket serves a rendition of this format as: the type the renderer stored it with."""
    # A format the table knows and this code does not (a newer release's) is still served: as bytes.
    return OUTPUT_FORMATS.get(fmt.upper(), "application/octet-stream")


@dataclass(frozen=True)
class PhotoView:
    photo: PhotoRecord
    # Bearer credentials until they expire: handed to the client, never logged.
    thumbnail: PresignedDownload | None
    preview: PresignedDownload | None
    # The responsive sizes, largest first; empty unless completed (a duplicate's are its first copy's).
    sizes: tuple[SizedView, ...] = ()

    @property
    def thumbhash(self) -> str | None:
        """The placeholder a page paints until the thumbnail loads (base64 ThumbHash)."""
        return self.photo.thumbhash

    @property
    def taken_at(self) -> str | None:
        return self.photo.taken_at

    @property
    def duplicate_of(self) -> uuid.UUID | None:
        return self.photo.duplicate_of

    @property
    def urls_expire_at(self) -> datetime | None:
        """When the first of the photo's URLs expires (they are signed one after the other)."""
        downloads = [d for d in (self.thumbnail, self.preview) if d is not None] + [s.download for s in self.sizes]
        return min((d.expires_at for d in downloads), default=None)


@dataclass(frozen=True)
class AlbumView:
    album_id: uuid.UUID
    counts: Mapping[PhotoStatus, int]
    photos: list[PhotoView]
    # The cursor of the next page (the last photo's id), None on the last page.
    next_after: uuid.UUID | None
    # Set while the album is in the trash (its photos are not listed then).
    trashed_at: datetime | None = None

    @property
    def total(self) -> int:
        """The album's photos, the trash's not (they are in `counts` as `trashed`)."""
        return sum(self.counts[status] for status in SHOWN_STATUSES)


def album_view(
    repository: PhotoRepository,
    store: ObjectStore,
    album_id: uuid.UUID,
    *,
    limit: int,
    after: uuid.UUID | None,
    url_seconds: int,
    only: Collection[uuid.UUID] | None = None,
    order: AlbumOrder = AlbumOrder.UPLOAD,
) -> AlbumView:
    """Counts of the whole album; `limit` photos in `order` after the photo `after`, or (with
    `only`) just those of the named photos that are in the album, in `order` too. An album in the
    trash lists no photo and says since when; AlbumErased for an erased album. StorageError
    when the renditions' URLs cannot be signed."""
    record = repository.album(album_id)
    if record is None:
        erased_at = repository.erased_at(album_id=album_id)
        if erased_at is not None:
            raise AlbumErased(album_id, erased_at)
    if record is not None and record.trashed_at is not None:
        return AlbumView(album_id, repository.status_counts(album_id), [], None, record.trashed_at)
    if only is not None:
        page, more = repository.album_photos_among(album_id, only, limit, order), False
    else:
        # One more than asked says whether another page follows without a count query.
        rows = repository.album_page(album_id, limit + 1, after, order)
        page, more = rows[:limit], len(rows) > limit
    sized = _sized_files(repository, page)
    return AlbumView(
        album_id=album_id,
        counts=repository.status_counts(album_id),
        photos=[_view(store, row, url_seconds, sized.get(row.id, [])) for row in page],
        next_after=page[-1].id if more and page else None,
    )


def _sized_files(repository: PhotoRepository, page: list[PhotoRecord]) -> dict[uuid.UUID, list[StoredRendition]]:
    """The responsive sizes of the page's completed photos, read together (not a query a photo)."""
    # Only completed photos get URLs, as for their thumbnails; a duplicate's rows name its first
    # copy's files.
    completed = [row.id for row in page if row.status is PhotoStatus.COMPLETED]
    return repository.rendition_files_of(completed) if completed else {}


def _view(store: ObjectStore, row: PhotoRecord, url_seconds: int, files: list[StoredRendition]) -> PhotoView:
    if row.status is not PhotoStatus.COMPLETED:
        return PhotoView(row, None, None)
    thumbnail = store.presign_get(row.thumb_key, url_seconds) if row.thumb_key else None
    preview = store.presign_get(row.preview_key, url_seconds) if row.preview_key else None
    sizes = tuple(SizedView(file, store.presign_get(file.key, url_seconds)) for file in files)
    return PhotoView(row, thumbnail, preview, sizes)
