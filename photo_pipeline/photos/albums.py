"""Album queries: titles (the optional `albums` table) and per-album figures of the photo table.

An album is defined by its photos (`photos.album_id`); the `albums` table only adds a title given
at upload. `PhotoRepository` mixes these queries in, as it does the claim queries, so callers
hold one repository; they are here so that what "an album" means in the table has one home.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from photo_pipeline.photos.database import in_chunks
from photo_pipeline.photos.models import Album, Photo, PhotoStatus


@dataclass(frozen=True)
class AlbumRecord:
    id: uuid.UUID
    title: str | None  # None: no title was given (the row was made when the album was trashed)
    created_at: datetime
    trashed_at: datetime | None = None  # set while the album is in the trash


def no_photos() -> dict[PhotoStatus, int]:
    return {status: 0 for status in PhotoStatus}


@dataclass(frozen=True)
class AlbumFigures:
    """An album's photos per status, and the bytes its completed photos' renditions hold."""

    album_id: uuid.UUID
    counts: dict[PhotoStatus, int] = field(default_factory=no_photos)
    thumb_bytes: int = 0
    preview_bytes: int = 0


@dataclass(frozen=True)
class FailedPhotoCounts:
    """Albums with failed photos: how many in all, and the ones with the most failures."""

    albums: int
    photos: int
    # (album id, failed photos), the most failed first, bounded by the query's limit.
    most_failed: list[tuple[uuid.UUID, int]]


class AlbumQueries:
    """Album titles and per-album figures (mixed into `PhotoRepository`)."""

    engine: Engine
    _clock: Callable[[], datetime]
    refuse_removed_album: Callable[[Connection, uuid.UUID, str], None]  # TrashQueries'

    # -- titles -------------------------------------------------------------------------------

    def set_album_title(self, album_id: uuid.UUID, title: str) -> AlbumRecord:
        """Give the album a title, or a new one (the album's row keeps its created_at). The
        caller validates the title (services/uploads.py); the column bounds its length.
        AlbumErased / AlbumInTrash for an album erased or in the trash."""
        insert_for = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        statement = insert_for(Album).values(id=album_id, title=title, created_at=self._clock())
        statement = statement.on_conflict_do_update(index_elements=[Album.id], set_={"title": title})
        with self.engine.begin() as conn:
            self.refuse_removed_album(conn, album_id, "it cannot be given a title")
            row = conn.execute(statement.returning(Album.id, Album.title, Album.created_at, Album.trashed_at)).one()
        return AlbumRecord(*row)

    def album(self, album_id: uuid.UUID) -> AlbumRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(Album.id, Album.title, Album.created_at, Album.trashed_at).where(Album.id == album_id)
            ).one_or_none()
        return AlbumRecord(*row) if row is not None else None

    def album_titles(self, album_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
        """Titles of those of these albums that have one."""
        titles: dict[uuid.UUID, str] = {}
        with self.engine.connect() as conn:
            for chunk in in_chunks(list(album_ids)):
                query = select(Album.id, Album.title).where(Album.id.in_(chunk), Album.title.is_not(None))
                for album_id, title in conn.execute(query):
                    titles[album_id] = title
        return titles

    # -- figures ------------------------------------------------------------------------------

    def album_figures(self, album_ids: Collection[uuid.UUID] | None = None) -> dict[uuid.UUID, AlbumFigures]:
        """Photos per status and rendition bytes of completed photos, per album, in one grouped
        query (on `ix_photos_album_status`); every album of the table when `album_ids` is None.
        Albums without a photo are absent."""
        completed = Photo.status == PhotoStatus.COMPLETED.value
        query = select(
            Photo.album_id,
            Photo.status,
            func.count(),
            func.coalesce(func.sum(case((completed, Photo.thumb_bytes), else_=0)), 0),
            func.coalesce(func.sum(case((completed, Photo.preview_bytes), else_=0)), 0),
        ).group_by(Photo.album_id, Photo.status)
        chunks: list[list[uuid.UUID] | None] = [list(c) for c in in_chunks(list(album_ids))] if album_ids is not None else [None]
        counts: dict[uuid.UUID, dict[PhotoStatus, int]] = {}
        thumb_bytes: dict[uuid.UUID, int] = {}
        preview_bytes: dict[uuid.UUID, int] = {}
        with self.engine.connect() as conn:
            for chunk in chunks:
                chunk_query = query if chunk is None else query.where(Photo.album_id.in_(chunk))
                for album_id, status, count, thumbs, previews in conn.execute(chunk_query):
                    counts.setdefault(album_id, no_photos())[PhotoStatus(status)] = count
                    thumb_bytes[album_id] = thumb_bytes.get(album_id, 0) + int(thumbs)
                    preview_bytes[album_id] = preview_bytes.get(album_id, 0) + int(previews)
        return {
            album_id: AlbumFigures(album_id, album_counts, thumb_bytes[album_id], preview_bytes[album_id])
            for album_id, album_counts in counts.items()
        }

    def failed_photo_counts(self, limit: int) -> FailedPhotoCounts:
        """Which albums have failed photos, the most failed first (up to `limit` of them), and
        how many albums and photos that is in all."""
        failed = Photo.status == PhotoStatus.FAILED.value
        per_album = func.count()
        most_failed = (
            select(Photo.album_id, per_album)
            .where(failed)
            .group_by(Photo.album_id)
            .order_by(per_album.desc(), Photo.album_id)
            .limit(limit)
        )
        totals = select(func.count(func.distinct(Photo.album_id)), func.count()).where(failed)
        with self.engine.connect() as conn:
            albums, photos = conn.execute(totals).one()
            listed = [(album_id, count) for album_id, count in conn.execute(most_failed)]
        return FailedPhotoCounts(albums=albums, photos=photos, most_failed=listed)

    def latest_thumbnail_key(self, album_id: uuid.UUID) -> str | None:
        """The thumbnail of the album's most recently completed photo (a sample for the UI)."""
        query = (
            select(Photo.thumb_key)
            .where(Photo.album_id == album_id, Photo.status == PhotoStatus.COMPLETED.value, Photo.thumb_key.is_not(None))
            .order_by(Photo.updated_at.desc(), Photo.id)
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()
