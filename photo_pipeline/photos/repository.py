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
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, IntegrityError

from photo_pipeline.photos.database import create_engine_for
from photo_pipeline.photos.models import DeletedUpload, Photo, PhotoStatus

# Chunk size for IN (...) lists and multi-row inserts: far below SQLite's variable limit.
CHUNK = 500
CLEANABLE = (PhotoStatus.PENDING, PhotoStatus.FAILED, PhotoStatus.MISSING)
# claimed_by is String(255); the token appends "/" and 12 hex digits to the worker's name.
MAX_WORKER_NAME = 255 - 13


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


@dataclass(frozen=True)
class ClaimedPhoto:
    id: uuid.UUID
    album_id: uuid.UUID
    original_key: str
    created_at: datetime
    attempts: int
    claim: str


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


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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


class PhotoRepository:
    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utc_now) -> None:
        self.engine = engine
        self._clock = clock

    @classmethod
    def from_url(cls, url: str) -> PhotoRepository:
        return cls(create_engine_for(url))

    # -- single photos ---------------------------------------------------------------------

    def register_pending(self, photo: NewPhoto) -> PhotoRecord:
        """The upload flow's first step: the row exists before any URL is handed out."""
        now = self._clock()
        try:
            with self.engine.begin() as conn:
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
            for chunk in _chunks(list(photo_ids)):
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

    # -- claims ------------------------------------------------------------------------------

    def claim_batch(
        self,
        album_id: uuid.UUID,
        worker: str,
        limit: int,
        *,
        exclude: Collection[uuid.UUID] = (),
        from_statuses: Collection[PhotoStatus] = (PhotoStatus.PENDING,),
        lease_seconds: int | None = None,
        max_attempts: int | None = None,
    ) -> list[ClaimedPhoto]:
        """Atomically move up to `limit` of the album's pending photos (oldest first) to
        processing under a fresh claim token. A re-render passes `from_statuses` with
        COMPLETED too (the state machine's explicit `completed -> processing`).

        With `lease_seconds`, the album's `processing` rows whose claim is older than the lease
        are taken back too (their run stopped renewing it: crashed or hung), whatever the run
        record says; the take-over counts as an attempt. With `max_attempts`, an expired claim
        that already used up its attempts is left to `fail_exhausted_claims`, never re-claimed."""
        if limit <= 0:
            return []
        token, now = self._claim_token(worker), self._clock()
        expired_before = now - timedelta(seconds=lease_seconds) if lease_seconds is not None else None
        claimable = self._claimable(from_statuses, expired_before, max_attempts)
        candidates = (
            select(Photo.id)
            .where(Photo.album_id == album_id, claimable)
            .order_by(Photo.created_at, Photo.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # rendered on PostgreSQL, ignored by SQLite
        )
        if exclude:
            candidates = candidates.where(Photo.id.not_in(list(exclude)))
        with self.engine.begin() as conn:
            claims = self._claim(conn, candidates, token, now, from_statuses, claimable)
        return sorted(claims, key=lambda c: (c.created_at, c.id))

    @staticmethod
    def _claimable(
        from_statuses: Collection[PhotoStatus], expired_before: datetime | None, max_attempts: int | None
    ) -> ColumnElement[bool]:
        in_status = Photo.status.in_([s.value for s in from_statuses])
        if expired_before is None:
            return in_status
        expired = and_(Photo.status == PhotoStatus.PROCESSING.value, Photo.claimed_at < expired_before)
        if max_attempts is not None:
            expired = and_(expired, Photo.attempts < max_attempts)
        return or_(in_status, expired)

    def claim_photos(
        self,
        photo_ids: Collection[uuid.UUID],
        worker: str,
        *,
        from_statuses: Collection[PhotoStatus] = (PhotoStatus.PENDING,),
    ) -> list[ClaimedPhoto]:
        """Claim these photos if they are in one of `from_statuses` (pending by default; a
        re-render passes COMPLETED). Photos in any other state, or locked by a concurrent claim,
        are left out of the result. One claim token for the whole call."""
        token, now = self._claim_token(worker), self._clock()
        claimed: list[ClaimedPhoto] = []
        with self.engine.begin() as conn:
            for chunk in _chunks(list(photo_ids)):
                candidates = (
                    select(Photo.id)
                    .where(Photo.id.in_(chunk), Photo.status.in_([s.value for s in from_statuses]))
                    .with_for_update(skip_locked=True)
                )
                claimed.extend(self._claim(conn, candidates, token, now, from_statuses))
        return sorted(claimed, key=lambda c: (c.created_at, c.id))

    def claim_for_rerender(
        self, seen: Sequence[tuple[uuid.UUID, datetime | None]], worker: str
    ) -> list[ClaimedPhoto]:
        """`completed -> processing` for photos still completed with the `completed_at` a plan saw
        (photo id, completed_at). A photo rendered again since (by an earlier reconciliation that
        planned the same re-render, or any run) is left out, so a re-render request is idempotent.
        The row lock (FOR UPDATE on PostgreSQL) re-checks the condition on the latest version."""
        token, now = self._claim_token(worker), self._clock()
        completed = (PhotoStatus.COMPLETED,)
        claimed: list[ClaimedPhoto] = []
        with self.engine.begin() as conn:
            for photo_id, completed_at in seen:
                unchanged = Photo.completed_at.is_(None) if completed_at is None else Photo.completed_at == completed_at
                candidates = (
                    select(Photo.id)
                    .where(Photo.id == photo_id, Photo.status == PhotoStatus.COMPLETED.value, unchanged)
                    .with_for_update(skip_locked=True)
                )
                claimed.extend(self._claim(conn, candidates, token, now, completed))
        return sorted(claimed, key=lambda c: (c.created_at, c.id))

    @staticmethod
    def _claim_token(worker: str) -> str:
        # A fresh suffix per call: a run that claims twice holds two claims, and fencing tells a
        # late writer of the first from the owner of the second.
        return f"{worker[:MAX_WORKER_NAME]}/{uuid.uuid4().hex[:12]}"

    def _claim(
        self,
        conn: Connection,
        candidates: Select[Any],
        token: str,
        now: datetime,
        from_statuses: Collection[PhotoStatus],
        claimable: ColumnElement[bool] | None = None,
    ) -> list[ClaimedPhoto]:
        # A CTE, not `id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)`: a plan that rescans such
        # a subquery (e.g. on the inner side of a nested loop) may pick different rows each time
        # and claim more than n. PostgreSQL does not inline a CTE with FOR UPDATE (EXPLAIN shows "CTE
        # picked" on its own), so it runs exactly once. SQLite ignores FOR UPDATE; it has one writer at a
        # time and the single statement takes the write lock before it reads.
        # The outer status test repeats the guard for rows changed since the CTE's snapshot.
        # (`claimable` is that guard when expired claims may be taken back too: a claim renewed
        # since the snapshot is no longer expired and is left alone.)
        picked = candidates.cte("picked")
        guard = claimable if claimable is not None else Photo.status.in_([s.value for s in from_statuses])
        statement = (
            update(Photo)
            .where(Photo.id.in_(select(picked.c.id)), guard)
            .values(
                status=PhotoStatus.PROCESSING.value,
                claimed_by=token,
                claimed_at=now,
                attempts=Photo.attempts + 1,
                updated_at=now,
            )
            .returning(Photo.id, Photo.album_id, Photo.original_key, Photo.created_at, Photo.attempts)
        )
        return [
            ClaimedPhoto(id=r.id, album_id=r.album_id, original_key=r.original_key, created_at=r.created_at, attempts=r.attempts, claim=token)
            for r in conn.execute(statement)
        ]

    def _finish(self, claim: ClaimedPhoto, now: datetime, **values: Any) -> bool:
        """Write the outcome only while the caller still holds the claim (fencing)."""
        statement = (
            update(Photo)
            .where(
                Photo.id == claim.id,
                Photo.status == PhotoStatus.PROCESSING.value,
                Photo.claimed_by == claim.claim,
            )
            .values(updated_at=now, claimed_by=None, claimed_at=None, **values)
        )
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount == 1

    def complete(
        self,
        claim: ClaimedPhoto,
        *,
        thumb_key: str,
        preview_key: str,
        width: int,
        height: int,
        original_bytes: int | None,
        thumb_bytes: int,
        preview_bytes: int,
        original_etag: str | None = None,
        note: str | None = None,
    ) -> bool:
        """Mark the photo completed; `note` (kept in `error`) flags a rendition that was made
        but looks damaged, such as a truncated JPEG padded with grey."""
        now = self._clock()
        return self._finish(
            claim,
            now,
            status=PhotoStatus.COMPLETED.value,
            thumb_key=thumb_key,
            preview_key=preview_key,
            width=width,
            height=height,
            original_bytes=original_bytes,
            thumb_bytes=thumb_bytes,
            preview_bytes=preview_bytes,
            original_etag=original_etag,
            error=note,
            completed_at=now,
        )

    def fail(self, claim: ClaimedPhoto, error: str) -> bool:
        return self._finish(claim, self._clock(), status=PhotoStatus.FAILED.value, error=error)

    def release(self, claim: ClaimedPhoto, reason: str | None = None) -> bool:
        """Back to pending for a later run; attempts are kept."""
        return self._finish(claim, self._clock(), status=PhotoStatus.PENDING.value, error=reason)

    def renew_claims(self, claims: Collection[ClaimedPhoto]) -> set[uuid.UUID]:
        """The heartbeat: push `claimed_at` to now for the claims still held under their tokens
        (status `processing`, same `claimed_by`); one UPDATE per token and chunk. Returns the
        ids renewed; a claim missing from the result was finished or taken over."""
        by_token: dict[str, list[uuid.UUID]] = {}
        for claim in claims:
            by_token.setdefault(claim.claim, []).append(claim.id)
        now = self._clock()
        renewed: set[uuid.UUID] = set()
        with self.engine.begin() as conn:
            for token, ids in by_token.items():
                for chunk in _chunks(ids):
                    statement = (
                        update(Photo)
                        .where(Photo.id.in_(chunk), Photo.status == PhotoStatus.PROCESSING.value, Photo.claimed_by == token)
                        .values(claimed_at=now)
                        .returning(Photo.id)
                    )
                    renewed.update(conn.execute(statement).scalars())
        return renewed

    def release_held(self, tokens: Collection[str], reason: str) -> list[uuid.UUID]:
        """Give back whatever is still `processing` under these claim tokens (a run's leftovers
        after its album loop); returns the ids given back."""
        if not tokens:
            return []
        now = self._clock()
        statement = (
            update(Photo)
            .where(Photo.claimed_by.in_(list(tokens)), Photo.status == PhotoStatus.PROCESSING.value)
            .values(status=PhotoStatus.PENDING.value, error=reason, claimed_by=None, claimed_at=None, updated_at=now)
            .returning(Photo.id)
        )
        with self.engine.begin() as conn:
            return list(conn.execute(statement).scalars())

    def fail_exhausted_claims(self, album_id: uuid.UUID, lease_seconds: int, max_attempts: int) -> list[uuid.UUID]:
        """Expired claims (older than the lease) of photos that used up their attempts end
        `failed` with the reason, instead of being taken back forever."""
        now = self._clock()
        statement = (
            update(Photo)
            .where(
                Photo.album_id == album_id,
                Photo.status == PhotoStatus.PROCESSING.value,
                Photo.claimed_at < now - timedelta(seconds=lease_seconds),
                Photo.attempts >= max_attempts,
            )
            .values(
                status=PhotoStatus.FAILED.value,
                error=f"gave up after {max_attempts} attempts: the last claim expired (its run stopped renewing it)",
                claimed_by=None,
                claimed_at=None,
                updated_at=now,
            )
            .returning(Photo.id)
        )
        with self.engine.begin() as conn:
            return list(conn.execute(statement).scalars())

    # -- operator actions ----------------------------------------------------------------------

    def requeue_failed(
        self,
        *,
        album_id: uuid.UUID | None = None,
        photo_ids: Collection[uuid.UUID] | None = None,
        include_missing: bool = False,
    ) -> list[PhotoRecord]:
        """An operator's re-run: failed (and optionally missing) photos back to pending."""
        statuses = [PhotoStatus.FAILED.value] + ([PhotoStatus.MISSING.value] if include_missing else [])
        statement = update(Photo).where(Photo.status.in_(statuses))
        if album_id is not None:
            statement = statement.where(Photo.album_id == album_id)
        now = self._clock()
        statement = statement.values(status=PhotoStatus.PENDING.value, error=None, missing_since=None, updated_at=now)
        requeued: list[PhotoRecord] = []
        with self.engine.begin() as conn:
            id_chunks: list[Sequence[uuid.UUID] | None] = list(_chunks(list(photo_ids))) if photo_ids is not None else [None]
            for chunk in id_chunks:
                chunk_statement = statement if chunk is None else statement.where(Photo.id.in_(chunk))
                rows = conn.execute(chunk_statement.returning(*Photo.__table__.columns)).all()
                requeued.extend(self._record(row) for row in rows)
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
            for chunk in _chunks(list(keys)):
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
        if not album_ids:
            return {}
        rank = (
            func.row_number()
            .over(partition_by=Photo.album_id, order_by=(Photo.updated_at.desc(), Photo.id))
            .label("rank")
        )
        ranked = (
            select(*Photo.__table__.columns, rank)
            .where(Photo.album_id.in_(list(album_ids)), Photo.status == PhotoStatus.PENDING.value)
            .subquery()
        )
        columns = [ranked.c[c.name] for c in Photo.__table__.columns]
        query = select(*columns).where(ranked.c.rank <= per_album).order_by(ranked.c.album_id, ranked.c.rank)
        found: dict[uuid.UUID, list[PhotoRecord]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                record = self._record(row)
                found.setdefault(record.album_id, []).append(record)
        return found

    def find_by_original_keys(self, keys: Collection[str]) -> dict[str, PhotoRecord]:
        found: dict[str, PhotoRecord] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(keys)):
                for row in conn.execute(select(*Photo.__table__.columns).where(Photo.original_key.in_(chunk))):
                    record = self._record(row)
                    found[record.original_key] = record
        return found

    def adopt(self, photos: Sequence[NewPhoto]) -> list[uuid.UUID]:
        """Create pending rows for orphan objects; rows that exist (same id or same key) are left
        alone, so running this twice creates nothing the second time. Objects of uploads the
        client cleaned up (tombstoned) are never adopted."""
        cancelled = self.tombstoned([p.original_key for p in photos]) if photos else set()
        photos = [p for p in photos if p.original_key not in cancelled]
        if not photos:
            return []
        now = self._clock()
        dialect = self.engine.dialect.name
        insert_for = postgresql.insert if dialect == "postgresql" else sqlite.insert
        created: list[uuid.UUID] = []
        with self.engine.begin() as conn:
            for chunk in _chunks(list(photos)):
                statement = (
                    insert_for(Photo)
                    .values([self._new_row(p, now) for p in chunk])
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
    def _new_row(photo: NewPhoto, now: datetime) -> dict[str, Any]:
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
        }

    @staticmethod
    def _record(row: Any) -> PhotoRecord:
        values = dict(row._mapping)
        values["status"] = PhotoStatus(values["status"])
        return PhotoRecord(**values)


# -- reconciliation: streamed reads in the bucket's key order, batched guarded writes ------------


def _byte_ordered(column: Any, dialect: str) -> Any:
    # S3 lists keys in UTF-8 byte order; the merge join needs the table in the same order.
    return column.collate("C") if dialect == "postgresql" else column.collate("BINARY")


class ReconciliationQueries:
    """The table side of reconciliation, kept apart from the hot-path repository."""

    def __init__(self, repository: PhotoRepository, page_size: int = 2000) -> None:
        self.engine = repository.engine
        self._clock = repository._clock
        self._page_size = page_size

    def _iter_ordered(self, column: Any, *, where: Any = None) -> Iterator[tuple[str, PhotoRecord]]:
        """Keyset pagination: pages of `page_size` rows, so memory does not grow with the table."""
        ordered = _byte_ordered(column, self.engine.dialect.name)
        last: str | None = None
        while True:
            query = select(*Photo.__table__.columns).where(column.is_not(None)).order_by(ordered).limit(self._page_size)
            if where is not None:
                query = query.where(where)
            if last is not None:
                query = query.where(ordered > last)
            with self.engine.connect() as conn:
                rows = [PhotoRepository._record(row) for row in conn.execute(query)]
            for record in rows:
                yield getattr(record, column.key), record
            if len(rows) < self._page_size:
                return
            last = getattr(rows[-1], column.key)

    def rows_by_original_key(self) -> Iterator[PhotoRecord]:
        return (record for _, record in self._iter_ordered(Photo.original_key))

    def rows_by_thumb_key(self) -> Iterator[tuple[str, PhotoRecord]]:
        return self._iter_ordered(Photo.thumb_key)

    def rows_by_preview_key(self) -> Iterator[tuple[str, PhotoRecord]]:
        return self._iter_ordered(Photo.preview_key)

    def _update_guarded(self, ids: Sequence[uuid.UUID], statuses: Collection[PhotoStatus], **values: Any) -> int:
        changed = 0
        now = self._clock()
        with self.engine.begin() as conn:
            for chunk in _chunks(list(ids)):
                statement = (
                    update(Photo)
                    .where(Photo.id.in_(chunk), Photo.status.in_([s.value for s in statuses]))
                    .values(updated_at=now, **values)
                )
                changed += conn.execute(statement).rowcount
        return changed

    def touch_pending(self, ids: Sequence[uuid.UUID]) -> int:
        """Requeue: a fresh updated_at makes the pending sensor look at the album again."""
        return self._update_guarded(ids, [PhotoStatus.PENDING], error=None)

    def mark_seen_gone(self, ids: Sequence[uuid.UUID]) -> int:
        now = self._clock()
        changed = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(list(ids)):
                changed += conn.execute(
                    update(Photo)
                    .where(Photo.id.in_(chunk), Photo.missing_since.is_(None), Photo.status.in_(["completed", "failed"]))
                    .values(missing_since=now)
                ).rowcount
        return changed

    def flag_missing(self, ids: Sequence[uuid.UUID]) -> int:
        now = self._clock()
        return self._update_guarded(
            ids,
            [PhotoStatus.PENDING, PhotoStatus.COMPLETED, PhotoStatus.FAILED],
            status=PhotoStatus.MISSING.value,
            missing_since=func.coalesce(Photo.missing_since, now),
            error="original not found in the bucket past the grace period",
        )

    def restore(self, ids: Sequence[uuid.UUID]) -> int:
        """A missing photo's original is back: pending again. Other rows just forget the sighting."""
        back = self._update_guarded(ids, [PhotoStatus.MISSING], status=PhotoStatus.PENDING.value, missing_since=None, error=None)
        with self.engine.begin() as conn:
            for chunk in _chunks(list(ids)):
                back += conn.execute(
                    update(Photo)
                    .where(Photo.id.in_(chunk), Photo.status != PhotoStatus.MISSING.value, Photo.missing_since.is_not(None))
                    .values(missing_since=None)
                ).rowcount
        return back

    def purge_missing(self, ids: Sequence[uuid.UUID], missing_before: datetime) -> int:
        purged = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(list(ids)):
                purged += conn.execute(
                    delete(Photo).where(
                        Photo.id.in_(chunk),
                        Photo.status == PhotoStatus.MISSING.value,
                        Photo.missing_since < missing_before,
                    )
                ).rowcount
        return purged

    def correct_key(self, photo_id: uuid.UUID, old_key: str, new_key: str) -> bool:
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    update(Photo)
                    .where(Photo.id == photo_id, Photo.original_key == old_key)
                    .values(original_key=new_key, updated_at=self._clock())
                ).rowcount
                == 1
            )

    def end_expired_claims(self, claims: Sequence[tuple[uuid.UUID, str]], *, fail_reason: str | None) -> int:
        """Release (or fail) claims that are still held by the token the plan saw, so a claim
        renewed since then is left alone."""
        now = self._clock()
        values: dict[str, Any] = {"claimed_by": None, "claimed_at": None, "updated_at": now}
        if fail_reason is None:
            values.update(status=PhotoStatus.PENDING.value, error="claim expired; requeued")
        else:
            values.update(status=PhotoStatus.FAILED.value, error=fail_reason)
        changed = 0
        with self.engine.begin() as conn:
            for photo_id, claimed_by in claims:
                changed += conn.execute(
                    update(Photo)
                    .where(Photo.id == photo_id, Photo.status == PhotoStatus.PROCESSING.value, Photo.claimed_by == claimed_by)
                    .values(**values)
                ).rowcount
        return changed
