"""Claims: how photos are taken for processing, and how a claim ends.

A claim is a lease. It flips `pending -> processing` in one statement (`FOR UPDATE SKIP LOCKED` on
PostgreSQL; SQLite has one writer at a time) and carries a fresh token in `claimed_by`; its run
renews it while it works; complete / fail / release only touch a row still `processing` under the
caller's token, so a late writer whose claim expired and was taken over changes nothing.
`PhotoRepository` mixes these queries in; they are here so that the claim query has one home.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    delete,
    insert,
    Select,
    and_,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

from photo_pipeline.failures import FailureKind
from photo_pipeline.photos.database import in_chunks
from photo_pipeline.photos.models import Photo, PhotoStatus, RenditionFile

# claimed_by is String(255); the token appends "/" and 12 hex digits to the worker's name.
MAX_WORKER_NAME = 255 - 13


@dataclass(frozen=True)
class ClaimedPhoto:
    id: uuid.UUID
    album_id: uuid.UUID
    original_key: str
    created_at: datetime
    attempts: int
    claim: str


@dataclass(frozen=True)
class PhotoFacts:
    """What rendering learnt about a photo besides its renditions, written with its completion
    (photos' columns of the same names)."""

    original_sha256: str | None = None
    taken_at: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    gps_latitude: float | None = None
    gps_longitude: float | None = None
    thumbhash: str | None = None

    def columns(self) -> dict[str, Any]:
        return {
            "original_sha256": self.original_sha256,
            "taken_at": self.taken_at,
            "camera_make": self.camera_make,
            "camera_model": self.camera_model,
            "gps_latitude": self.gps_latitude,
            "gps_longitude": self.gps_longitude,
            "thumbhash": self.thumbhash,
        }


# The columns of a completed row without renditions of its own (a duplicate): emptied together.
NO_RENDITIONS: dict[str, Any] = {"thumb_key": None, "preview_key": None, "thumb_bytes": None, "preview_bytes": None, "thumbhash": None}
# What a duplicate shares with the photo it duplicates (the same bytes: the same renditions).
SHARED_COLUMNS = tuple(NO_RENDITIONS)


@dataclass(frozen=True)
class StoredRendition:
    """A responsive size written to the bucket (a row of `renditions`)."""

    key: str
    size: int  # the configured size (a long side) it is filed under
    format: str
    width: int
    height: int
    bytes: int

    def row(self, photo_id: uuid.UUID) -> dict[str, Any]:
        return {"photo_id": photo_id, "key": self.key, "size": self.size, "format": self.format,
                "width": self.width, "height": self.height, "bytes": self.bytes}


@dataclass(frozen=True)
class Completion:
    """What `complete` writes for one photo: its keys, sizes, facts and responsive sizes."""

    claim: ClaimedPhoto
    thumb_key: str
    preview_key: str
    width: int
    height: int
    original_bytes: int | None
    thumb_bytes: int
    preview_bytes: int
    original_etag: str | None = None
    note: str | None = None
    facts: PhotoFacts = PhotoFacts()  # noqa: RUF009 - frozen
    files: Sequence[StoredRendition] = ()

    def columns(self, now: datetime) -> dict[str, Any]:
        return {
            **self.facts.columns(),
            "duplicate_of": None,
            "status": PhotoStatus.COMPLETED.value,
            "thumb_key": self.thumb_key,
            "preview_key": self.preview_key,
            "width": self.width,
            "height": self.height,
            "original_bytes": self.original_bytes,
            "thumb_bytes": self.thumb_bytes,
            "preview_bytes": self.preview_bytes,
            "original_etag": self.original_etag,
            "error": self.note,
            **completion_times(now),
        }


def completion_times(now: datetime) -> dict[str, Any]:
    """The completion's time, and the first completion's kept when the photo was completed before."""
    return {
        "completed_at": now,
        # literal() with the column's type: the bound value goes through UTCDateTime (naive UTC on SQLite).
        "first_completed_at": func.coalesce(Photo.first_completed_at, literal(now, Photo.first_completed_at.type)),
    }


class ClaimQueries:
    """The claim and outcome statements of the photo table (mixed into `PhotoRepository`)."""

    engine: Engine
    _clock: Callable[[], datetime]


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
            for chunk in in_chunks(list(photo_ids)):
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

    def _finish(
        self, claim: ClaimedPhoto, now: datetime, *, files: Sequence[StoredRendition] | None = None, **values: Any
    ) -> bool:
        """Write the outcome only while the caller still holds the claim (fencing). With `files`,
        the photo's rows in `renditions` are replaced by these, in the same transaction."""
        with self.engine.begin() as conn:
            return self._finish_in(conn, claim, now, files=files, **values)

    def _finish_in(
        self, conn: Connection, claim: ClaimedPhoto, now: datetime, *, files: Sequence[StoredRendition] | None = None, **values: Any
    ) -> bool:
        statement = (
            update(Photo)
            .where(
                Photo.id == claim.id,
                Photo.status == PhotoStatus.PROCESSING.value,
                Photo.claimed_by == claim.claim,
            )
            # A failure's kind goes with its error: every other outcome clears it.
            .values(updated_at=now, claimed_by=None, claimed_at=None, **{"failure_kind": None, **values})
        )
        if conn.execute(statement).rowcount != 1:
            return False
        if files is not None:
            conn.execute(delete(RenditionFile).where(RenditionFile.photo_id == claim.id))
            if files:
                conn.execute(insert(RenditionFile), [file.row(claim.id) for file in files])
        return True

    def rendition_files(self, photo_id: uuid.UUID) -> list[StoredRendition]:
        """The photo's responsive sizes as its last completion recorded them, largest first."""
        return self.rendition_files_of([photo_id]).get(photo_id, [])

    def rendition_files_of(self, photo_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, list[StoredRendition]]:
        """The responsive sizes of these photos, each photo's largest first; a photo without any
        is absent. One query per CHUNK ids (an album page's worth in one or two), not one a photo."""
        found: dict[uuid.UUID, list[StoredRendition]] = {}
        with self.engine.connect() as conn:
            for chunk in in_chunks(list(photo_ids)):
                query = (
                    select(RenditionFile)
                    .where(RenditionFile.photo_id.in_(chunk))
                    .order_by(RenditionFile.width.desc(), RenditionFile.format, RenditionFile.key)
                )
                # Sorted across the chunk: appending keeps each photo's own list largest first.
                for r in conn.execute(query):
                    found.setdefault(r.photo_id, []).append(
                        StoredRendition(key=r.key, size=r.size, format=r.format, width=r.width, height=r.height, bytes=r.bytes)
                    )
        return found

    def rendition_sizes(self) -> list[int]:
        """Every size some rendition is filed under (reconciliation lists those folders)."""
        with self.engine.connect() as conn:
            return sorted(conn.execute(select(RenditionFile.size).distinct()).scalars())

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
        facts: PhotoFacts = PhotoFacts(),
        files: Sequence[StoredRendition] = (),
    ) -> bool:
        """Mark the photo completed; `note` (kept in `error`) flags a rendition that was made
        but looks damaged, such as a truncated JPEG padded with grey."""
        completion = Completion(
            claim,
            thumb_key=thumb_key,
            preview_key=preview_key,
            width=width,
            height=height,
            original_bytes=original_bytes,
            thumb_bytes=thumb_bytes,
            preview_bytes=preview_bytes,
            original_etag=original_etag,
            note=note,
            facts=facts,
        )
        now = self._clock()
        return self._finish(claim, now, files=files, **completion.columns(now))

    def complete_many(self, completions: Sequence[Completion]) -> list[bool]:
        """Several `complete` calls in one transaction (one BEGIN/COMMIT, one DELETE and one INSERT
        of `renditions` rows for them all): each row still fenced by its own claim's token, so
        the result says, per photo, whether it was written. All or none are written when the
        database fails."""
        now = self._clock()
        with self.engine.begin() as conn:
            written = [self._finish_in(conn, c.claim, now, **c.columns(now)) for c in completions]
            done = [c for c, ok in zip(completions, written, strict=True) if ok]
            for chunk in in_chunks([c.claim.id for c in done]):
                conn.execute(delete(RenditionFile).where(RenditionFile.photo_id.in_(chunk)))
            rows = [file.row(c.claim.id) for c in done for file in c.files]
            if rows:
                conn.execute(insert(RenditionFile), rows)
        return written

    def complete_duplicate(
        self,
        claim: ClaimedPhoto,
        *,
        duplicate_of: uuid.UUID,
        original_sha256: str,
        original_bytes: int | None,
        original_etag: str | None = None,
    ) -> bool:
        """Mark the photo completed as a duplicate of `duplicate_of` (same checksum, same album),
        whole for a reader of the table: it gets that photo's keys, sizes, ThumbHash and
        `renditions` rows (naming the same keys: nothing is stored twice), read in the same
        transaction. A photo pointed to that is not completed (gone meanwhile) leaves the keys
        empty; reconciliation renders such a duplicate on its own (`stale_duplicate_reason`)."""
        now = self._clock()
        with self.engine.begin() as conn:
            shared = conn.execute(
                select(*(getattr(Photo, column) for column in SHARED_COLUMNS)).where(
                    Photo.id == duplicate_of, Photo.status == PhotoStatus.COMPLETED.value, Photo.duplicate_of.is_(None)
                )
            ).first()
            files: list[StoredRendition] = []
            if shared is not None:
                files = [
                    StoredRendition(key=r.key, size=r.size, format=r.format, width=r.width, height=r.height, bytes=r.bytes)
                    for r in conn.execute(select(RenditionFile).where(RenditionFile.photo_id == duplicate_of))
                ]
            return self._finish_in(
                conn,
                claim,
                now,
                files=files,
                status=PhotoStatus.COMPLETED.value,
                duplicate_of=duplicate_of,
                original_sha256=original_sha256,
                original_bytes=original_bytes,
                original_etag=original_etag,
                **(dict(shared._mapping) if shared is not None else NO_RENDITIONS),
                error=None,
                **completion_times(now),
            )

    def completed_checksums(self, album_id: uuid.UUID) -> set[str]:
        """The SHA-256 of every completed photo of the album that is not itself a duplicate: a run
        reads them once, and asks `first_with_checksum` only for a photo whose checksum is here."""
        query = select(Photo.original_sha256).where(
            Photo.album_id == album_id,
            Photo.original_sha256.is_not(None),
            Photo.duplicate_of.is_(None),
            Photo.status == PhotoStatus.COMPLETED.value,
        )
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def first_with_checksum(self, album_id: uuid.UUID, sha256: str, *, other_than: uuid.UUID) -> uuid.UUID | None:
        """The album's earliest completed photo (not itself a duplicate) with this checksum."""
        query = (
            select(Photo.id)
            .where(
                Photo.album_id == album_id,
                Photo.original_sha256 == sha256,
                Photo.duplicate_of.is_(None),
                Photo.status == PhotoStatus.COMPLETED.value,
                Photo.id != other_than,
            )
            .order_by(Photo.created_at, Photo.id)
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def fail(self, claim: ClaimedPhoto, error: str, kind: FailureKind | None = None) -> bool:
        """Mark the photo failed with the reason, and its kind: whether a re-run can help."""
        return self._finish(claim, self._clock(), status=PhotoStatus.FAILED.value, error=error, failure_kind=kind)

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
                for chunk in in_chunks(ids):
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
                failure_kind=FailureKind.INTERRUPTED,
                claimed_by=None,
                claimed_at=None,
                updated_at=now,
            )
            .returning(Photo.id)
        )
        with self.engine.begin() as conn:
            return list(conn.execute(statement).scalars())
