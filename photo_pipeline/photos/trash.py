"""The trash and the erase record: how photos and albums are trashed, restored and erased in the
photo table. `PhotoRepository` mixes these queries in, as it does the claim and album queries.

Each transition is one guarded statement, or one transaction, so nothing slips in between:
- trash: `-> trashed` for rows not in the trash yet, remembering the status they had
  (`trashed_from`), when (`trashed_at`, the repository's clock: the retention is measured on it)
  and whether the album's deletion did it (`trashed_with_album`). A `processing` row trashed under
  its run is fenced like a lost claim: complete / fail / release only touch `processing` rows;
- restore: `trashed -> trashed_from` (`processing -> pending`: that claim is void), never while the
  album is in the trash;
- erase: the rows and their `renditions` rows deleted and the erase record written in one
  transaction; the caller deletes the objects after it (services/removal.py);
- a photo trashed or erased takes its completed duplicates back to `pending` (duplicate_of and
  keys cleared) in the same transaction, so the normal flow renders them: the duplicate check
  then finds another standing copy, or renders the photo on its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from photo_pipeline.photos.claims import NO_RENDITIONS
from photo_pipeline.photos.database import in_chunks
from photo_pipeline.photos.models import Album, ErasedAlbum, ErasedPhoto, Photo, PhotoStatus, RenditionFile
from photo_pipeline.storage import keys

TRASHED = PhotoStatus.TRASHED.value


class AlbumNotFound(LookupError):
    """No photo and no title row has this album id."""


class PhotoErased(LookupError):
    """The photo was erased: nothing of it is left, and its id is never registered again."""

    def __init__(self, photo_id: uuid.UUID, erased_at: datetime) -> None:
        super().__init__(f"photo {photo_id} was erased at {erased_at:%Y-%m-%d %H:%M:%S} UTC; nothing of it is left")
        self.photo_id = photo_id
        self.erased_at = erased_at


class AlbumErased(LookupError):
    """The album was erased: no photo is added to it again."""

    def __init__(self, album_id: uuid.UUID, erased_at: datetime) -> None:
        super().__init__(f"album {album_id} was erased at {erased_at:%Y-%m-%d %H:%M:%S} UTC; nothing of it is left")
        self.album_id = album_id
        self.erased_at = erased_at


class AlbumInTrash(Exception):
    """The album is in the trash: uploads into it are refused, and its photos are restored with it."""

    def __init__(self, album_id: uuid.UUID, trashed_at: datetime, doing: str) -> None:
        super().__init__(
            f"album {album_id} is in the trash (since {trashed_at:%Y-%m-%d %H:%M:%S} UTC): {doing}; "
            f"restore the album first (POST /api/albums/{album_id}/restore, or photo-pipeline restore --album {album_id})"
        )
        self.album_id = album_id
        self.trashed_at = trashed_at


@dataclass(frozen=True)
class TrashedRow:
    """A photo this call moved to the trash: its id, album, the status it had and since when."""

    id: uuid.UUID
    album_id: uuid.UUID
    status_before: PhotoStatus
    trashed_at: datetime


@dataclass(frozen=True)
class RestoredRow:
    """A photo this call brought back from the trash, and the status it is back in."""

    id: uuid.UUID
    album_id: uuid.UUID
    status: PhotoStatus


@dataclass(frozen=True)
class RequeuedDuplicate:
    """A completed duplicate of a trashed or erased photo, sent back to `pending`."""

    id: uuid.UUID
    album_id: uuid.UUID


@dataclass(frozen=True)
class TrashOutcome:
    rows: list[TrashedRow] = field(default_factory=list)
    requeued_duplicates: list[RequeuedDuplicate] = field(default_factory=list)


@dataclass(frozen=True)
class ErasedRow:
    """A photo row deleted by an erase, with the keys its `renditions` rows named."""

    id: uuid.UUID
    album_id: uuid.UUID
    status: PhotoStatus
    original_key: str
    thumb_key: str | None
    preview_key: str | None
    rendition_keys: tuple[str, ...] = ()

    @property
    def recorded_keys(self) -> tuple[str, ...]:
        """Every key the table had for the photo."""
        return tuple(k for k in (self.original_key, self.thumb_key, self.preview_key, *self.rendition_keys) if k)


@dataclass(frozen=True)
class EraseOutcome:
    erased_at: datetime
    rows: list[ErasedRow] = field(default_factory=list)
    requeued_duplicates: list[RequeuedDuplicate] = field(default_factory=list)


@dataclass(frozen=True)
class ErasedIds:
    """Which of the ids asked about have an erase record."""

    photos: frozenset[uuid.UUID] = frozenset()
    albums: frozenset[uuid.UUID] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.photos or self.albums)


@dataclass(frozen=True)
class TrashedAlbum:
    album_id: uuid.UUID
    trashed_at: datetime
    photos: int  # every photo of the album (the album's erase erases them all)


@dataclass(frozen=True)
class TrashFigures:
    photos: int  # photos in the trash
    albums: int  # albums in the trash
    # (album, photos in the trash, the oldest one's trash time), the fullest albums first.
    by_album: list[tuple[uuid.UUID, int, datetime]]


@dataclass(frozen=True)
class ExpiredTrash:
    """What the trash holds past a cutoff, as empty_trash plans from it: albums trashed before it
    (erased whole, with all their photos), and per other album the photos trashed before it."""

    cutoff: datetime
    albums: list[TrashedAlbum]
    photos_by_album: dict[uuid.UUID, int]
    # The oldest of those photos (id, album, trashed_at), for the plan's listing.
    first_photos: list[tuple[uuid.UUID, uuid.UUID, datetime]]
    table_rows: int


class TrashQueries:
    """Trash, restore, erase and the erase record (mixed into `PhotoRepository`)."""

    engine: Engine
    _clock: Callable[[], datetime]

    # -- trash ------------------------------------------------------------------------------------

    def trash_photos(self, photo_ids: Collection[uuid.UUID]) -> TrashOutcome:
        """Move these photos to the trash, whatever their status; those in the trash already are
        left as they are (their trash time stands)."""
        now = self._clock()
        with self.engine.begin() as conn:
            rows: list[TrashedRow] = []
            for chunk in in_chunks(list(photo_ids)):
                rows += self._trash(conn, Photo.id.in_(chunk), now, with_album=False)
            requeued = self._requeue_duplicates_of(conn, rows, now)
        return TrashOutcome(rows, requeued)

    def trash_album(self, album_id: uuid.UUID) -> TrashOutcome:
        """Trash the album (its title row, created if it had none) and every photo of it not in the
        trash yet, pending uploads included. AlbumNotFound when neither a photo nor a title row
        has the id. A second call trashes what arrived since and keeps the album's trash time."""
        now = self._clock()
        with self.engine.begin() as conn:
            if not self._album_exists(conn, album_id):
                raise AlbumNotFound(f"no album {album_id}")
            self._mark_album_trashed(conn, album_id, now)
            rows = self._trash(conn, Photo.album_id == album_id, now, with_album=True)
            requeued = self._requeue_duplicates_of(conn, rows, now)
        return TrashOutcome(rows, requeued)

    def _trash(self, conn: Connection, which: Any, now: datetime, *, with_album: bool) -> list[TrashedRow]:
        # SET expressions read the row's old values: trashed_from is the status it had.
        statement = (
            update(Photo)
            .where(which, Photo.status != TRASHED)
            .values(status=TRASHED, trashed_from=Photo.status, trashed_at=now, trashed_with_album=with_album, updated_at=now)
            .returning(Photo.id, Photo.album_id, Photo.trashed_from, Photo.trashed_at)
        )
        return [TrashedRow(r.id, r.album_id, PhotoStatus(r.trashed_from), r.trashed_at) for r in conn.execute(statement)]

    def _mark_album_trashed(self, conn: Connection, album_id: uuid.UUID, now: datetime) -> None:
        insert_for = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        statement = insert_for(Album).values(id=album_id, title=None, created_at=now, trashed_at=now)
        # An album trashed again keeps its first trash time (the retention runs from it).
        statement = statement.on_conflict_do_update(
            index_elements=[Album.id], set_={"trashed_at": func.coalesce(Album.trashed_at, statement.excluded.trashed_at)}
        )
        conn.execute(statement)

    @staticmethod
    def _album_erased(conn: Connection, album_id: uuid.UUID) -> bool:
        return conn.execute(select(ErasedAlbum.album_id).where(ErasedAlbum.album_id == album_id)).first() is not None

    @staticmethod
    def _album_exists(conn: Connection, album_id: uuid.UUID) -> bool:
        photo = conn.execute(select(Photo.id).where(Photo.album_id == album_id).limit(1)).first()
        return photo is not None or conn.execute(select(Album.id).where(Album.id == album_id)).first() is not None

    def _requeue_duplicates_of(
        self, conn: Connection, gone: Iterable[TrashedRow | ErasedRow], now: datetime
    ) -> list[RequeuedDuplicate]:
        """Completed duplicates of these photos back to `pending`, keys and `renditions` rows
        cleared, to be rendered on their own (duplicates live in
        their canonical photo's album: one range of ix_photos_album_status per album)."""
        by_album: dict[uuid.UUID, list[uuid.UUID]] = {}
        for row in gone:
            by_album.setdefault(row.album_id, []).append(row.id)
        requeued: list[RequeuedDuplicate] = []
        for album_id, ids in by_album.items():
            for chunk in in_chunks(ids):
                statement = (
                    update(Photo)
                    .where(
                        Photo.album_id == album_id,
                        Photo.status == PhotoStatus.COMPLETED.value,
                        Photo.duplicate_of.in_(chunk),
                    )
                    .values(
                        status=PhotoStatus.PENDING.value,
                        duplicate_of=None,
                        **NO_RENDITIONS,
                        error=None,
                        updated_at=now,
                    )
                    .returning(Photo.id, Photo.album_id)
                )
                requeued += [RequeuedDuplicate(r.id, r.album_id) for r in conn.execute(statement)]
        # Their `renditions` rows named the gone photo's files: they go with the keys.
        for chunk in in_chunks([r.id for r in requeued]):
            conn.execute(delete(RenditionFile).where(RenditionFile.photo_id.in_(chunk)))
        return requeued

    # -- restore ----------------------------------------------------------------------------------

    def restore_photos(self, photo_ids: Collection[uuid.UUID]) -> list[RestoredRow]:
        """Bring these photos back from the trash to the status they had (`processing` ones to
        `pending`: their claim is void), unless their album is in the trash. Photos not in the
        trash are left alone and absent from the result."""
        now = self._clock()
        restored: list[RestoredRow] = []
        with self.engine.begin() as conn:
            for chunk in in_chunks(list(photo_ids)):
                album_in_trash = Photo.album_id.in_(select(Album.id).where(Album.trashed_at.is_not(None)))
                restored += self._restore(conn, Photo.id.in_(chunk) & ~album_in_trash, now)
        return restored

    def restore_album(self, album_id: uuid.UUID) -> list[RestoredRow] | None:
        """Take the album out of the trash and bring back the photos its deletion trashed (a photo
        trashed on its own before stays in the trash). None when the album is not in the trash."""
        now = self._clock()
        with self.engine.begin() as conn:
            taken_out = conn.execute(
                update(Album).where(Album.id == album_id, Album.trashed_at.is_not(None)).values(trashed_at=None)
            ).rowcount
            if not taken_out:
                return None
            restored = self._restore(conn, (Photo.album_id == album_id) & Photo.trashed_with_album.is_(True), now)
            # A row that only held the trash time (the album had no title) goes again.
            conn.execute(delete(Album).where(Album.id == album_id, Album.title.is_(None)))
        return restored

    def _restore(self, conn: Connection, which: Any, now: datetime) -> list[RestoredRow]:
        back_to = case((Photo.trashed_from == PhotoStatus.PROCESSING.value, PhotoStatus.PENDING.value), else_=Photo.trashed_from)
        statement = (
            update(Photo)
            .where(which, Photo.status == TRASHED)
            .values(
                status=back_to,
                trashed_from=None,
                trashed_at=None,
                trashed_with_album=None,
                # Only a processing row had a claim, and it is void now.
                claimed_by=None,
                claimed_at=None,
                updated_at=now,
            )
            .returning(Photo.id, Photo.album_id, Photo.status)
        )
        return [RestoredRow(r.id, r.album_id, PhotoStatus(r.status)) for r in conn.execute(statement)]

    # -- erase ------------------------------------------------------------------------------------

    def erase_photos(self, photo_ids: Collection[uuid.UUID], *, trashed_before: datetime | None = None) -> EraseOutcome:
        """Delete these photos' rows and `renditions` rows and write their erase record, in one
        transaction, whatever their status (a claim in flight is fenced: its row is gone); with
        `trashed_before`, only those still in the trash since before it (one restored meanwhile
        stays). Ids without a row are left out. The objects are the caller's to delete, after."""
        now = self._clock()
        with self.engine.begin() as conn:
            rows: list[ErasedRow] = []
            for chunk in in_chunks(list(photo_ids)):
                which = Photo.id.in_(chunk)
                if trashed_before is not None:
                    which = which & (Photo.status == TRASHED) & (Photo.trashed_at < trashed_before)
                rows += self._erase(conn, which, now)
            requeued = self._requeue_duplicates_of(conn, rows, now)
        return EraseOutcome(now, rows, requeued)

    def erase_album(self, album_id: uuid.UUID) -> EraseOutcome:
        """Erase every photo of the album and the album itself (its title row goes; an erase
        record of the album is written), in one transaction. AlbumNotFound when neither a photo,
        a title row nor an erase record has the id (erasing an erased album again erases what
        arrived since, if anything)."""
        now = self._clock()
        with self.engine.begin() as conn:
            if not self._album_exists(conn, album_id) and not self._album_erased(conn, album_id):
                raise AlbumNotFound(f"no album {album_id}")
            return self._erase_album(conn, album_id, now)

    def erase_album_trashed_before(self, album_id: uuid.UUID, cutoff: datetime) -> EraseOutcome | None:
        """`erase_album`, only while the album is still in the trash since before `cutoff`; None
        when it is not (restored meanwhile: nothing is erased)."""
        now = self._clock()
        with self.engine.begin() as conn:
            # Deleting the album's row first takes its lock: a restore waits for this transaction,
            # then finds the album gone.
            expired = Album.trashed_at.is_not(None) & (Album.trashed_at < cutoff)
            if not conn.execute(delete(Album).where(Album.id == album_id, expired)).rowcount:
                return None
            return self._erase_album(conn, album_id, now)

    def _erase_album(self, conn: Connection, album_id: uuid.UUID, now: datetime) -> EraseOutcome:
        rows = self._erase(conn, Photo.album_id == album_id, now)
        conn.execute(delete(Album).where(Album.id == album_id))
        conn.execute(self._insert_ignoring_duplicates(ErasedAlbum).values(album_id=album_id, erased_at=now))
        return EraseOutcome(now, rows, [])

    def _erase(self, conn: Connection, which: Any, now: datetime) -> list[ErasedRow]:
        deleted = conn.execute(
            delete(Photo)
            .where(which)
            .returning(Photo.id, Photo.album_id, Photo.status, Photo.original_key, Photo.thumb_key, Photo.preview_key)
        ).all()
        if not deleted:
            return []
        rendition_keys: dict[uuid.UUID, list[str]] = {}
        for chunk in in_chunks([r.id for r in deleted]):
            for key, photo_id in conn.execute(
                delete(RenditionFile).where(RenditionFile.photo_id.in_(chunk)).returning(RenditionFile.key, RenditionFile.photo_id)
            ):
                rendition_keys.setdefault(photo_id, []).append(key)
        records = [{"photo_id": r.id, "album_id": r.album_id, "erased_at": now} for r in deleted]
        for chunk in in_chunks(records):
            conn.execute(self._insert_ignoring_duplicates(ErasedPhoto), list(chunk))
        return [
            ErasedRow(
                id=r.id,
                album_id=r.album_id,
                status=PhotoStatus(r.status),
                original_key=r.original_key,
                thumb_key=r.thumb_key,
                preview_key=r.preview_key,
                rendition_keys=tuple(sorted(rendition_keys.get(r.id, []))),
            )
            for r in deleted
        ]

    def _insert_ignoring_duplicates(self, model: type[ErasedPhoto] | type[ErasedAlbum]) -> Any:
        insert_for = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        return insert_for(model).on_conflict_do_nothing()

    # -- empty_trash's reads ----------------------------------------------------------------------

    def trash_figures(self, limit: int) -> TrashFigures:
        """What the trash holds now: photos, albums, and the `limit` albums with the most photos in
        it (grouped on ix_photos_status_trashed_at's status range)."""
        in_trash = Photo.status == TRASHED
        per_album = func.count()
        with self.engine.connect() as conn:
            photos = conn.execute(select(func.count()).where(in_trash)).scalar_one()
            albums = conn.execute(select(func.count()).select_from(Album).where(Album.trashed_at.is_not(None))).scalar_one()
            listed = conn.execute(
                select(Photo.album_id, per_album, func.min(Photo.trashed_at))
                .where(in_trash)
                .group_by(Photo.album_id)
                .order_by(per_album.desc(), Photo.album_id)
                .limit(limit)
            ).all()
        return TrashFigures(int(photos), int(albums), [(a, int(n), oldest) for a, n, oldest in listed])

    def expired_trash(self, cutoff: datetime, *, listed: int) -> ExpiredTrash:
        """What the trash holds from before `cutoff`, in grouped queries (memory does not grow with
        the trash): the albums trashed before it with their photo counts, and per other album its
        photos trashed before it, with the `listed` oldest of them by id."""
        album_trashed = Album.trashed_at.is_not(None) & (Album.trashed_at < cutoff)
        expired_albums = select(Album.id).where(album_trashed)
        expired_photo = (Photo.status == TRASHED) & (Photo.trashed_at < cutoff) & ~Photo.album_id.in_(expired_albums)
        with self.engine.connect() as conn:
            albums = conn.execute(
                select(Album.id, Album.trashed_at, func.count(Photo.id))
                .select_from(Album)
                .outerjoin(Photo, Photo.album_id == Album.id)
                .where(album_trashed)
                .group_by(Album.id, Album.trashed_at)
                .order_by(Album.trashed_at, Album.id)
            ).all()
            per_album = conn.execute(select(Photo.album_id, func.count()).where(expired_photo).group_by(Photo.album_id)).all()
            first = conn.execute(
                select(Photo.id, Photo.album_id, Photo.trashed_at).where(expired_photo).order_by(Photo.trashed_at, Photo.id).limit(listed)
            ).all()
            table_rows = conn.execute(select(func.count()).select_from(Photo)).scalar_one()
        return ExpiredTrash(
            cutoff=cutoff,
            albums=[TrashedAlbum(a, at, n) for a, at, n in albums],
            photos_by_album={album_id: count for album_id, count in per_album},
            first_photos=[(r.id, r.album_id, r.trashed_at) for r in first],
            table_rows=int(table_rows),
        )

    def expired_trashed_photos(
        self, cutoff: datetime, *, limit: int, after: uuid.UUID | None = None
    ) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """(photo, album) of up to `limit` photos still in the trash since before `cutoff`, in id
        order after `after` (keyset pages for erasing in batches), albums in the trash excluded
        (they are erased whole). A photo restored since is not among them."""
        expired_albums = select(Album.id).where(Album.trashed_at.is_not(None), Album.trashed_at < cutoff)
        query = (
            select(Photo.id, Photo.album_id)
            .where(Photo.status == TRASHED, Photo.trashed_at < cutoff, ~Photo.album_id.in_(expired_albums))
            .order_by(Photo.id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(Photo.id > after)
        with self.engine.connect() as conn:
            return [(r.id, r.album_id) for r in conn.execute(query)]

    def albums_trashed_before(self, cutoff: datetime) -> list[uuid.UUID]:
        """Albums in the trash since before `cutoff` (one restored since is not among them)."""
        query = select(Album.id).where(Album.trashed_at.is_not(None), Album.trashed_at < cutoff).order_by(Album.trashed_at, Album.id)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    # -- lookups ----------------------------------------------------------------------------------

    def refuse_removed(self, conn: Connection, photo_id: uuid.UUID, album_id: uuid.UUID) -> None:
        """The guard of a new row: PhotoErased, AlbumErased or AlbumInTrash (in that order) when the
        photo or its album is gone or in the trash. Run in the inserting transaction."""
        erased = conn.execute(select(ErasedPhoto.erased_at).where(ErasedPhoto.photo_id == photo_id)).scalar_one_or_none()
        if erased is not None:
            raise PhotoErased(photo_id, erased)
        self.refuse_removed_album(conn, album_id, "uploads into it are refused")

    @staticmethod
    def refuse_removed_album(conn: Connection, album_id: uuid.UUID, doing: str) -> None:
        """AlbumErased or AlbumInTrash when the album is erased or in the trash."""
        erased = conn.execute(select(ErasedAlbum.erased_at).where(ErasedAlbum.album_id == album_id)).scalar_one_or_none()
        if erased is not None:
            raise AlbumErased(album_id, erased)
        trashed = conn.execute(select(Album.trashed_at).where(Album.id == album_id)).scalar_one_or_none()
        if trashed is not None:
            raise AlbumInTrash(album_id, trashed, doing)

    def erased_objects(self, original_keys: Collection[str], album_ids: Collection[uuid.UUID]) -> set[str]:
        """Which of these raw keys belong to an erased photo (the id the key carries, or mints, as
        `keys.identify_raw_key` reads it) or lie in an erased album."""
        carried = {key: keys.identify_raw_key(key) for key in original_keys}
        erased = self.erased_among(
            [identity.photo_id for identity in carried.values() if identity is not None],
            {*album_ids, *(identity.album_id for identity in carried.values() if identity is not None)},
        )
        return {
            key
            for key, identity in carried.items()
            if identity is not None and (identity.photo_id in erased.photos or identity.album_id in erased.albums)
        }

    def albums_in_trash(self, album_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        found: set[uuid.UUID] = set()
        with self.engine.connect() as conn:
            for chunk in in_chunks(list(set(album_ids))):
                found.update(conn.execute(select(Album.id).where(Album.id.in_(chunk), Album.trashed_at.is_not(None))).scalars())
        return found

    def erased_among(self, photo_ids: Collection[uuid.UUID] = (), album_ids: Collection[uuid.UUID] = ()) -> ErasedIds:
        """Which of these photos and albums were erased, in chunked lookups of the erase record (it
        grows forever: never loaded whole)."""
        photos: set[uuid.UUID] = set()
        albums: set[uuid.UUID] = set()
        with self.engine.connect() as conn:
            for chunk in in_chunks(list(set(photo_ids))):
                photos.update(conn.execute(select(ErasedPhoto.photo_id).where(ErasedPhoto.photo_id.in_(chunk))).scalars())
            for chunk in in_chunks(list(set(album_ids))):
                albums.update(conn.execute(select(ErasedAlbum.album_id).where(ErasedAlbum.album_id.in_(chunk))).scalars())
        return ErasedIds(frozenset(photos), frozenset(albums))

    def erased_at(self, *, photo_id: uuid.UUID | None = None, album_id: uuid.UUID | None = None) -> datetime | None:
        """When this photo (or album) was erased; None when it never was."""
        if (photo_id is None) == (album_id is None):
            raise ValueError("ask about one photo or one album")
        if photo_id is not None:
            query = select(ErasedPhoto.erased_at).where(ErasedPhoto.photo_id == photo_id)
        else:
            query = select(ErasedAlbum.erased_at).where(ErasedAlbum.album_id == album_id)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()
