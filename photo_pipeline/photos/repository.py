"""The photo repository: every read and write of the photo table, in bulk where it matters.

The state machine's guards live in the statements themselves (conditional UPDATE/DELETE ...
RETURNING), so concurrent workers cannot slip between a check and a write:
- claims flip `pending -> processing` in one statement (`FOR UPDATE SKIP LOCKED` on PostgreSQL;
  SQLite has one writer at a time), each claim carrying a fresh token in `claimed_by`;
- complete / fail / release only touch a row still `processing` under the caller's token, so a
  late writer whose claim expired and was taken over changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Select,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, IntegrityError

from photo_pipeline.failures import FailureKind, failure_kind
from photo_pipeline.photos.albums import AlbumQueries
from photo_pipeline.photos.claims import ClaimQueries
from photo_pipeline.photos.database import create_engine_for, in_chunks
from photo_pipeline.photos.models import SHOWN_ROWS, DeletedUpload, Photo, PhotoStatus, RenditionFile
from photo_pipeline.photos.ordering import ORDER_BY, AlbumOrder, Position, ranges_after
from photo_pipeline.photos.trash import TrashQueries

CLEANABLE = (PhotoStatus.PENDING, PhotoStatus.FAILED, PhotoStatus.MISSING)


def utc_now() -> datetime:
    return datetime.now(UTC)


class PhotoNotFound(LookupError):
    pass


class CleanupRefused(Exception):
    """Cleanup only deletes pending, failed or missing photos; never one being processed."""


class DuplicatePhoto(IntegrityError):
    """register_pending got an id or original_key that is already registered. A subclass of
    IntegrityError, so callers catching that keep working; its message says what clashed."""

    def __str__(self) -> str:
        return f"photo already registered (same id or original_key): {super().__str__()}"


def _is_unique_violation(orig: BaseException) -> bool:
    # psycopg exposes the SQLSTATE; sqlite3 (Python 3.11+) the extended result code's name.
    if getattr(orig, "sqlstate", None) == "23505":
        return True
    return getattr(orig, "sqlite_errorname", "") in ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE")


@dataclass(frozen=True)
class PhotoRecord:
    id: uuid.UUID
    album_id: uuid.UUID
    original_key: str
    status: PhotoStatus
    thumb_key: str | None
    preview_key: str | None
    error: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    claimed_by: str | None
    claimed_at: datetime | None
    width: int | None
    height: int | None
    original_bytes: int | None
    thumb_bytes: int | None
    preview_bytes: int | None
    filename: str | None
    content_type: str | None
    completed_at: datetime | None
    missing_since: datetime | None
    original_etag: str | None = None
    first_completed_at: datetime | None = None
    original_sha256: str | None = None
    duplicate_of: uuid.UUID | None = None
    taken_at: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    gps_latitude: float | None = None
    gps_longitude: float | None = None
    thumbhash: str | None = None
    trashed_at: datetime | None = None
    trashed_from: PhotoStatus | None = None
    trashed_with_album: bool | None = None
    # Of a failed photo: whose fault it was (failures.py); None when not recorded.
    failure_kind: FailureKind | None = None

    @property
    def display_filename(self) -> str:
        """The name the uploader gave the file; for a row without one (adopted before names were
        recorded), the last segment of its key. For display: escape it where markup is parsed."""
        return self.filename or self.original_key.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class RequeuedPhoto:
    """A photo an operator's re-run put back to pending (`record`, as it is now), and the failure
    it had until then, which the row no longer holds."""

    record: PhotoRecord
    failed_with: str | None
    failure_kind: FailureKind | None




@dataclass(frozen=True)
class AlbumPending:
    album_id: uuid.UUID
    pending: int
    oldest_created_at: datetime
    newest_updated_at: datetime


@dataclass(frozen=True)
class NewPhoto:
    id: uuid.UUID
    album_id: uuid.UUID
    original_key: str
    filename: str | None = None
    content_type: str | None = None
    original_bytes: int | None = None


def isolate_refused_rows(
    rows: Sequence[NewPhoto],
    write: Callable[[Sequence[NewPhoto]], list[uuid.UUID]],
    refused: Callable[[NewPhoto, IntegrityError | DataError], None],
) -> list[uuid.UUID]:
    """`write` the rows in one batch; if the database refuses the batch for its content (a
    constraint, a value it cannot store), split it in halves down to the single rows it refuses,
    which go to `refused`, so one bad row costs a few statements and loses no other row. Other
    errors (a lost connection) propagate at once rather than once per row."""
    if not rows:
        return []
    try:
        return write(rows)
    except (IntegrityError, DataError) as exc:
        if len(rows) == 1:
            refused(rows[0], exc)
            return []
    half = len(rows) // 2
    return isolate_refused_rows(rows[:half], write, refused) + isolate_refused_rows(rows[half:], write, refused)


class PhotoRepository(ClaimQueries, AlbumQueries, TrashQueries):
    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utc_now) -> None:
        self.engine = engine
        self._clock = clock

    @classmethod
    def from_url(cls, url: str) -> PhotoRepository:
        return cls(create_engine_for(url))

    # -- single photos ---------------------------------------------------------------------

    def register_pending(self, photo: NewPhoto) -> PhotoRecord:
        """The upload flow's first step: the row exists before any URL is handed out. Refused
        (PhotoErased, AlbumErased, AlbumInTrash) for an erased photo id or an album erased or in
        the trash; DuplicatePhoto for an id or key taken."""
        now = self._clock()
        try:
            with self.engine.begin() as conn:
                self.refuse_removed(conn, photo.id, photo.album_id)
                row = conn.execute(
                    insert(Photo).values(**self._new_row(photo, now)).returning(*Photo.__table__.columns)
                ).one()
        except IntegrityError as exc:
            if exc.orig is None or not _is_unique_violation(exc.orig):
                raise
            raise DuplicatePhoto(exc.statement, exc.params, exc.orig) from exc
        return self._record(row)

    def get(self, photo_id: uuid.UUID) -> PhotoRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*Photo.__table__.columns).where(Photo.id == photo_id)).one_or_none()
        return self._record(row) if row is not None else None

    def get_many(self, photo_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, PhotoRecord]:
        found: dict[uuid.UUID, PhotoRecord] = {}
        with self.engine.connect() as conn:
            for chunk in in_chunks(list(photo_ids)):
                for row in conn.execute(select(*Photo.__table__.columns).where(Photo.id.in_(chunk))):
                    record = self._record(row)
                    found[record.id] = record
        return found

    def photos_in_album(self, album_id: uuid.UUID, limit: int | None = None) -> list[PhotoRecord]:
        query = select(*Photo.__table__.columns).where(Photo.album_id == album_id).order_by(Photo.created_at, Photo.id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [self._record(row) for row in conn.execute(query)]

    def photos_in_capture_order(self, album_id: uuid.UUID, limit: int) -> list[PhotoRecord]:
        """Up to `limit` of the album's photos in the order they were taken (EXIF local time;
        photos without one last, in upload order)."""
        return self.album_page(album_id, limit, order=AlbumOrder.TAKEN)

    def duplicate_counts_by_album(self, album_ids: Collection[uuid.UUID] | None = None) -> dict[uuid.UUID, int]:
        """Photos marked as duplicates, per album (albums without any are absent); the trash's not."""
        query = (
            select(Photo.album_id, func.count())
            .where(Photo.duplicate_of.is_not(None), Photo.status != PhotoStatus.TRASHED.value)
            .group_by(Photo.album_id)
        )
        if album_ids is not None:
            query = query.where(Photo.album_id.in_(list(album_ids)))
        with self.engine.connect() as conn:
            return {album_id: count for album_id, count in conn.execute(query)}

    def album_page(
        self, album_id: uuid.UUID, limit: int, after: uuid.UUID | None = None, order: AlbumOrder = AlbumOrder.UPLOAD
    ) -> list[PhotoRecord]:
        """Up to `limit` of the album's photos in `order`, after the photo `after` (keyset
        pagination: pages stay cheap deep into a large album); photos in the trash are not shown.
        A cursor that is not a photo of the album yields nothing."""
        rows: list[PhotoRecord] = []
        with self.engine.connect() as conn:
            position = self._position(conn, album_id, after) if after is not None else None
            if after is not None and position is None:
                return []
            for rest in ranges_after(order, position):
                if len(rows) >= limit:
                    break
                query = self._in_album(album_id, order).where(rest).limit(limit - len(rows))
                rows.extend(self._record(row) for row in conn.execute(query))
        return rows

    def album_photos_among(
        self, album_id: uuid.UUID, photo_ids: Collection[uuid.UUID], limit: int, order: AlbumOrder = AlbumOrder.UPLOAD
    ) -> list[PhotoRecord]:
        """Those of these photos that are in the album, the first `limit` in `order`. One IN list,
        not chunks, so that the database alone orders them (text compares in its collation): the
        caller bounds the ids (the API by PHOTO_API_MAX_FILES, at most 10,000, below both
        databases' limits on parameters)."""
        query = self._in_album(album_id, order).where(Photo.id.in_(list(photo_ids))).limit(limit)
        with self.engine.connect() as conn:
            return [self._record(row) for row in conn.execute(query)]

    @staticmethod
    def _in_album(album_id: uuid.UUID, order: AlbumOrder) -> Select[Any]:
        """The album's photos as a page shows them: in `order`, the trash's left out."""
        return select(*Photo.__table__.columns).where(Photo.album_id == album_id, SHOWN_ROWS).order_by(*ORDER_BY[order])

    @staticmethod
    def _position(conn: Connection, album_id: uuid.UUID, photo_id: uuid.UUID) -> Position | None:
        row = conn.execute(
            select(Photo.created_at, Photo.taken_at).where(Photo.id == photo_id, Photo.album_id == album_id)
        ).one_or_none()
        return Position(photo_id, row.created_at, row.taken_at) if row is not None else None

    # -- operator actions ----------------------------------------------------------------------

    def requeue_failed(
        self,
        *,
        album_id: uuid.UUID | None = None,
        photo_ids: Collection[uuid.UUID] | None = None,
        include_missing: bool = False,
    ) -> list[RequeuedPhoto]:
        """An operator's re-run: failed (and optionally missing) photos back to pending, each with
        the failure it had (read under a row lock in the same transaction: the row forgets it)."""
        statuses = [PhotoStatus.FAILED.value] + ([PhotoStatus.MISSING.value] if include_missing else [])
        conditions = [Photo.status.in_(statuses)]
        if album_id is not None:
            conditions.append(Photo.album_id == album_id)
        now = self._clock()
        requeued: list[RequeuedPhoto] = []
        with self.engine.begin() as conn:
            id_chunks: list[Sequence[uuid.UUID] | None] = list(in_chunks(list(photo_ids))) if photo_ids is not None else [None]
            for chunk in id_chunks:
                where = conditions if chunk is None else [*conditions, Photo.id.in_(chunk)]
                failures = {
                    row.id: (row.error, failure_kind(row.failure_kind))
                    for row in conn.execute(select(Photo.id, Photo.error, Photo.failure_kind).where(*where).with_for_update())
                }
                statement = (
                    update(Photo)
                    .where(*where)
                    .values(status=PhotoStatus.PENDING.value, error=None, failure_kind=None, missing_since=None, updated_at=now)
                    .returning(*Photo.__table__.columns)
                )
                for row in conn.execute(statement).all():
                    error, kind = failures.get(row.id, (None, None))
                    requeued.append(RequeuedPhoto(self._record(row), failed_with=error, failure_kind=kind))
        return requeued

    def delete_for_cleanup(self, photo_id: uuid.UUID) -> PhotoRecord:
        """Delete a pending, failed or missing photo's row, in one conditional statement."""
        with self.engine.begin() as conn:
            row = conn.execute(
                delete(Photo)
                .where(Photo.id == photo_id, Photo.status.in_([s.value for s in CLEANABLE]))
                .returning(*Photo.__table__.columns)
            ).one_or_none()
            if row is not None:
                record = self._record(row)
                self._leave_tombstone(conn, record)
                # A failed re-render may have left sized files: their rows go, the files are
                # orphans reconciliation removes.
                conn.execute(delete(RenditionFile).where(RenditionFile.photo_id == photo_id))
                return record
            status = conn.execute(select(Photo.status).where(Photo.id == photo_id)).scalar_one_or_none()
        if status is None:
            raise PhotoNotFound(f"no photo {photo_id}")
        raise CleanupRefused(
            f"photo {photo_id} is {status}; only pending, failed or missing photos can be cleaned up"
        )

    def _leave_tombstone(self, conn: Any, record: PhotoRecord) -> None:
        insert_for = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        conn.execute(
            insert_for(DeletedUpload)
            .values(original_key=record.original_key, photo_id=record.id, deleted_at=self._clock())
            .on_conflict_do_nothing()
        )

    def tombstoned(self, keys: Collection[str]) -> set[str]:
        """Which of these keys belong to uploads the client cleaned up."""
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in in_chunks(list(keys)):
                found.update(conn.execute(select(DeletedUpload.original_key).where(DeletedUpload.original_key.in_(chunk))).scalars())
        return found

    def tombstones_since(self, since: datetime) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(DeletedUpload.original_key).where(DeletedUpload.deleted_at >= since)).scalars())

    def purge_tombstones(self, before: datetime) -> int:
        with self.engine.begin() as conn:
            return conn.execute(delete(DeletedUpload).where(DeletedUpload.deleted_at < before)).rowcount

    # -- bulk reads for sensors and status -----------------------------------------------------

    def status_counts(self, album_id: uuid.UUID | None = None) -> dict[PhotoStatus, int]:
        query = select(Photo.status, func.count()).group_by(Photo.status)
        if album_id is not None:
            query = query.where(Photo.album_id == album_id)
        counts = {s: 0 for s in PhotoStatus}
        with self.engine.connect() as conn:
            for status, count in conn.execute(query):
                counts[PhotoStatus(status)] = count
        return counts

    def status_counts_by_album(self) -> dict[uuid.UUID, dict[PhotoStatus, int]]:
        query = select(Photo.album_id, Photo.status, func.count()).group_by(Photo.album_id, Photo.status)
        by_album: dict[uuid.UUID, dict[PhotoStatus, int]] = {}
        with self.engine.connect() as conn:
            for album_id, status, count in conn.execute(query):
                by_album.setdefault(album_id, {s: 0 for s in PhotoStatus})[PhotoStatus(status)] = count
        return by_album

    def pending_albums(self, limit: int = 1000, *, older_than: datetime | None = None) -> list[AlbumPending]:
        """Albums with pending photos, the one waiting longest first. With `older_than`, only
        albums whose oldest pending photo was created before it; the figures still cover all of
        the album's pending photos (HAVING, not WHERE)."""
        oldest = func.min(Photo.created_at)
        query = (
            select(Photo.album_id, func.count(), oldest, func.max(Photo.updated_at))
            .where(Photo.status == PhotoStatus.PENDING.value)
            .group_by(Photo.album_id)
            .order_by(oldest, Photo.album_id)
            .limit(limit)
        )
        if older_than is not None:
            query = query.having(oldest < older_than)
        with self.engine.connect() as conn:
            return [AlbumPending(a, n, o, u) for a, n, o, u in conn.execute(query)]

    def pending_in_album(self, album_id: uuid.UUID, limit: int) -> list[PhotoRecord]:
        """The album's pending photos, most recently changed first (the likeliest to have just
        arrived)."""
        query = (
            select(*Photo.__table__.columns)
            .where(Photo.album_id == album_id, Photo.status == PhotoStatus.PENDING.value)
            .order_by(Photo.updated_at.desc(), Photo.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [self._record(row) for row in conn.execute(query)]

    def pending_in_albums(self, album_ids: Collection[uuid.UUID], per_album: int) -> dict[uuid.UUID, list[PhotoRecord]]:
        """`pending_in_album` for many albums in one query (a sensor tick looks at up to hundreds
        of albums: one round trip each would cost seconds)."""
        return self._latest_in_albums(album_ids, PhotoStatus.PENDING, per_album)

    def failed_in_albums(self, album_ids: Collection[uuid.UUID], per_album: int) -> dict[uuid.UUID, list[PhotoRecord]]:
        """Each album's most recently failed photos (up to `per_album`), in one query: what the
        operator is shown, with file names and errors, beside the album's failed count."""
        return self._latest_in_albums(album_ids, PhotoStatus.FAILED, per_album)

    def _latest_in_albums(
        self, album_ids: Collection[uuid.UUID], status: PhotoStatus, per_album: int
    ) -> dict[uuid.UUID, list[PhotoRecord]]:
        """Per album, its photos in `status`, most recently changed first, up to `per_album`."""
        if not album_ids:
            return {}
        rank = (
            func.row_number()
            .over(partition_by=Photo.album_id, order_by=(Photo.updated_at.desc(), Photo.id))
            .label("rank")
        )
        found: dict[uuid.UUID, list[PhotoRecord]] = {}
        with self.engine.connect() as conn:
            for chunk in in_chunks(list(album_ids)):
                ranked = (
                    select(*Photo.__table__.columns, rank)
                    .where(Photo.album_id.in_(chunk), Photo.status == status.value)
                    .subquery()
                )
                columns = [ranked.c[c.name] for c in Photo.__table__.columns]
                query = select(*columns).where(ranked.c.rank <= per_album).order_by(ranked.c.album_id, ranked.c.rank)
                for row in conn.execute(query):
                    record = self._record(row)
                    found.setdefault(record.album_id, []).append(record)
        return found

    def find_by_original_keys(self, keys: Collection[str]) -> dict[str, PhotoRecord]:
        found: dict[str, PhotoRecord] = {}
        with self.engine.connect() as conn:
            for chunk in in_chunks(list(keys)):
                for row in conn.execute(select(*Photo.__table__.columns).where(Photo.original_key.in_(chunk))):
                    record = self._record(row)
                    found[record.original_key] = record
        return found

    def adopt(self, photos: Sequence[NewPhoto]) -> list[uuid.UUID]:
        """Create pending rows for orphan objects; rows that exist (same id or same key) are left
        alone, so running this twice creates nothing the second time. Objects of uploads the
        client cleaned up (tombstoned) and objects of erased photos or albums (by the id the row
        would get, the id or album its key carries, or mints) are never adopted: reconciliation
        plans their removal instead, and this guard is what keeps the raw sensor from adopting
        them. An object of an album in the trash gets its row in the trash, with the album."""
        if not photos:
            return []
        refused = self.tombstoned([p.original_key for p in photos])
        erased = self.erased_among([p.id for p in photos], [p.album_id for p in photos])
        refused |= self.erased_objects([p.original_key for p in photos], [])
        photos = [
            p for p in photos if p.original_key not in refused and p.id not in erased.photos and p.album_id not in erased.albums
        ]
        if not photos:
            return []
        in_trash = self.albums_in_trash([p.album_id for p in photos])
        now = self._clock()
        dialect = self.engine.dialect.name
        insert_for = postgresql.insert if dialect == "postgresql" else sqlite.insert
        created: list[uuid.UUID] = []
        with self.engine.begin() as conn:
            for chunk in in_chunks(list(photos)):
                statement = (
                    insert_for(Photo)
                    .values([self._new_row(p, now, in_trash=p.album_id in in_trash) for p in chunk])
                    .on_conflict_do_nothing()
                    .returning(Photo.id)
                )
                created.extend(conn.execute(statement).scalars())
        return created

    def albums(self) -> list[uuid.UUID]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(Photo.album_id).distinct().order_by(Photo.album_id)).scalars())

    def expired_claims(self, older_than: datetime, limit: int = 1000) -> list[PhotoRecord]:
        query = (
            select(*Photo.__table__.columns)
            .where(Photo.status == PhotoStatus.PROCESSING.value, Photo.claimed_at < older_than)
            .order_by(Photo.claimed_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [self._record(row) for row in conn.execute(query)]

    def expired_claim_tokens(self, older_than: datetime, limit: int = 1000) -> dict[uuid.UUID, list[str]]:
        """Album -> the claim tokens of its expired claims (processing, claimed before
        `older_than`), from one grouped query: what the sensor needs to request a run per album,
        keyed by the tokens so that repeated ticks ask for the same run."""
        query = (
            select(Photo.album_id, Photo.claimed_by)
            .where(Photo.status == PhotoStatus.PROCESSING.value, Photo.claimed_at < older_than)
            .group_by(Photo.album_id, Photo.claimed_by)
            .order_by(Photo.album_id, Photo.claimed_by)
            .limit(limit)
        )
        albums: dict[uuid.UUID, list[str]] = {}
        with self.engine.connect() as conn:
            for album_id, token in conn.execute(query):
                albums.setdefault(album_id, []).append(token or "")
        return albums

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _new_row(photo: NewPhoto, now: datetime, *, in_trash: bool = False) -> dict[str, Any]:
        trash = {"status": PhotoStatus.TRASHED.value, "trashed_from": PhotoStatus.PENDING.value, "trashed_at": now, "trashed_with_album": True}
        return {
            "id": photo.id,
            "album_id": photo.album_id,
            "original_key": photo.original_key,
            "status": PhotoStatus.PENDING.value,
            "attempts": 0,
            "filename": photo.filename,
            "content_type": photo.content_type,
            "original_bytes": photo.original_bytes,
            "created_at": now,
            "updated_at": now,
            **(trash if in_trash else {}),
        }

    @staticmethod
    def _record(row: Any) -> PhotoRecord:
        return PhotoRepository._record_from(dict(row._mapping))

    @staticmethod
    def _record_from(values: dict[str, Any]) -> PhotoRecord:
        values["status"] = PhotoStatus(values["status"])
        if values.get("trashed_from") is not None:
            values["trashed_from"] = PhotoStatus(values["trashed_from"])
        values["failure_kind"] = failure_kind(values.get("failure_kind"))
        return PhotoRecord(**values)


# -- reconciliation: streamed reads in the bucket's key order, batched guarded writes ------------


