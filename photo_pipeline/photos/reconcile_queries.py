"""The photo table as reconciliation reads and repairs it: rows streamed in the bucket's key
order (byte order on every dialect), and guarded bulk updates that only touch rows still in the
state the plan saw.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    delete,
    func,
    or_,
    select,
    update,
)

from photo_pipeline.failures import FailureKind
from photo_pipeline.photos.database import in_chunks
from photo_pipeline.photos.models import Photo, PhotoStatus, RenditionFile
from photo_pipeline.photos.repository import PhotoRecord, PhotoRepository
from photo_pipeline.storage.keys import PREVIEWS_PREFIX, THUMBS_PREFIX

SHARED_PREFIXES = (THUMBS_PREFIX, PREVIEWS_PREFIX)


@dataclass(frozen=True)
class Canonical:
    """What the table says of the photo a duplicate points to: all the planner needs to tell
    whether the duplicate still shows its own bytes."""

    id: uuid.UUID
    album_id: uuid.UUID
    status: PhotoStatus
    original_sha256: str | None
    duplicate_of: uuid.UUID | None


@dataclass(frozen=True)
class DuplicateLink:
    """A completed duplicate and its canonical photo's row (None: no row has that id any more)."""

    photo: PhotoRecord
    canonical: Canonical | None


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
        """Keyset pagination: pages of `page_size` rows, so memory does not grow with the table.
        On (key, id): a duplicate's row names its first copy's thumbnail and preview keys."""
        ordered = _byte_ordered(column, self.engine.dialect.name)
        last: tuple[str, uuid.UUID] | None = None
        while True:
            query = select(*Photo.__table__.columns).where(column.is_not(None)).order_by(ordered, Photo.id).limit(self._page_size)
            if where is not None:
                query = query.where(where)
            if last is not None:
                query = query.where(or_(ordered > last[0], and_(ordered == last[0], Photo.id > last[1])))
            with self.engine.connect() as conn:
                rows = [PhotoRepository._record(row) for row in conn.execute(query)]
            for record in rows:
                yield getattr(record, column.key), record
            if len(rows) < self._page_size:
                return
            last = (getattr(rows[-1], column.key), rows[-1].id)

    def rows_by_original_key(self, prefix: str | None = None) -> Iterator[PhotoRecord]:
        """Rows in original-key order; with `prefix`, only those whose key starts with it (one
        album's slice, to compare with the listing of the same prefix)."""
        return (record for _, record in self._iter_ordered(Photo.original_key, where=self._starts_with(Photo.original_key, prefix)))

    def rows_by_thumb_key(self, prefix: str | None = None) -> Iterator[tuple[str, PhotoRecord]]:
        return self._iter_ordered(Photo.thumb_key, where=self._starts_with(Photo.thumb_key, prefix))

    def rows_by_preview_key(self, prefix: str | None = None) -> Iterator[tuple[str, PhotoRecord]]:
        return self._iter_ordered(Photo.preview_key, where=self._starts_with(Photo.preview_key, prefix))

    def rows_by_sized_key(self, prefix: str | None = None) -> Iterator[tuple[str, PhotoRecord]]:
        """(key, photo) of every responsive size recorded in `renditions`, in key order, with
        `prefix` those under it; a file whose photo row is gone is not listed (its object is an
        orphan to the plan)."""
        ordered = _byte_ordered(RenditionFile.key, self.engine.dialect.name)
        # Keyset paging on (key, photo): a key may be named by several rows (a duplicate's).
        last: tuple[str, uuid.UUID] | None = None
        while True:
            query = (
                select(RenditionFile.key, *Photo.__table__.columns)
                .join(Photo, Photo.id == RenditionFile.photo_id)
                .order_by(ordered, RenditionFile.photo_id)
                .limit(self._page_size)
            )
            where = self._starts_with(RenditionFile.key, prefix)
            if where is not None:
                query = query.where(where)
            else:
                # A size whose bytes are the preview's or the thumbnail's names that key (stored
                # once): compared with the previews' and thumbnails' listings, not the sizes'.
                query = query.where(*(~self._starts_with(RenditionFile.key, shared) for shared in SHARED_PREFIXES))
            if last is not None:
                query = query.where(or_(ordered > last[0], and_(ordered == last[0], RenditionFile.photo_id > last[1])))
            with self.engine.connect() as conn:
                rows = list(conn.execute(query))
            for row in rows:
                values = dict(row._mapping)
                yield values.pop("key"), PhotoRepository._record_from(values)
            if len(rows) < self._page_size:
                return
            last = (rows[-1].key, rows[-1].id)

    def duplicate_links(self, prefix: str | None = None) -> Iterator[DuplicateLink]:
        """Every completed duplicate with the row it points to, in one LEFT JOIN of the table to
        itself, keyset-paged on the duplicate's id (this stream is not merged with a listing, so
        any stable order will do). With `prefix`, the duplicates whose original key starts with
        it (one album's slice, the rows `rows_by_original_key(prefix)` reads); their canonical
        photos are joined wherever they are."""
        photos = Photo.__table__
        canonical = photos.alias("canonical")
        last: uuid.UUID | None = None
        while True:
            query = (
                select(
                    *photos.columns,
                    canonical.c.id.label("canonical_id"),
                    canonical.c.album_id.label("canonical_album_id"),
                    canonical.c.status.label("canonical_status"),
                    canonical.c.original_sha256.label("canonical_sha256"),
                    canonical.c.duplicate_of.label("canonical_duplicate_of"),
                )
                .select_from(photos.outerjoin(canonical, canonical.c.id == photos.c.duplicate_of))
                .where(photos.c.status == PhotoStatus.COMPLETED.value, photos.c.duplicate_of.is_not(None))
                .order_by(photos.c.id)
                .limit(self._page_size)
            )
            where = self._starts_with(Photo.original_key, prefix)
            if where is not None:
                query = query.where(where)
            if last is not None:
                query = query.where(photos.c.id > last)
            with self.engine.connect() as conn:
                links = [_duplicate_link(dict(row._mapping)) for row in conn.execute(query)]
            yield from links
            if len(links) < self._page_size:
                return
            last = links[-1].photo.id

    def _starts_with(self, column: Any, prefix: str | None) -> Any:
        """Keys starting with `prefix`, as a byte-ordered range rather than LIKE: SQLite's LIKE
        ignores case, and the listing it is compared with does not."""
        if prefix is None:
            return None
        if not prefix:
            raise ValueError("an empty prefix selects everything: pass None")
        ordered = _byte_ordered(column, self.engine.dialect.name)
        successor = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return and_(ordered >= prefix, ordered < successor)

    def _update_guarded(self, ids: Sequence[uuid.UUID], statuses: Collection[PhotoStatus], **values: Any) -> int:
        changed = 0
        now = self._clock()
        with self.engine.begin() as conn:
            for chunk in in_chunks(list(ids)):
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
            for chunk in in_chunks(list(ids)):
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
            for chunk in in_chunks(list(ids)):
                back += conn.execute(
                    update(Photo)
                    .where(Photo.id.in_(chunk), Photo.status != PhotoStatus.MISSING.value, Photo.missing_since.is_not(None))
                    .values(missing_since=None)
                ).rowcount
        return back

    def purge_missing(self, ids: Sequence[uuid.UUID], missing_before: datetime) -> int:
        purged = 0
        with self.engine.begin() as conn:
            for chunk in in_chunks(list(ids)):
                purged += conn.execute(
                    delete(Photo).where(
                        Photo.id.in_(chunk),
                        Photo.status == PhotoStatus.MISSING.value,
                        Photo.missing_since < missing_before,
                    )
                ).rowcount
                # Their sized files' rows go too (the files are orphans the next plan removes).
                conn.execute(delete(RenditionFile).where(RenditionFile.photo_id.in_(chunk), ~RenditionFile.photo_id.in_(select(Photo.id))))
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
            # Attempts used up by runs that stopped: the server's doing, a re-run may succeed.
            values.update(status=PhotoStatus.FAILED.value, error=fail_reason, failure_kind=FailureKind.INTERRUPTED)
        changed = 0
        with self.engine.begin() as conn:
            for photo_id, claimed_by in claims:
                changed += conn.execute(
                    update(Photo)
                    .where(Photo.id == photo_id, Photo.status == PhotoStatus.PROCESSING.value, Photo.claimed_by == claimed_by)
                    .values(**values)
                ).rowcount
        return changed


def _duplicate_link(values: dict[str, Any]) -> DuplicateLink:
    canonical_id = values.pop("canonical_id")
    canonical_values = {name: values.pop(f"canonical_{name}") for name in ("album_id", "status", "sha256", "duplicate_of")}
    photo = PhotoRepository._record_from(values)
    if canonical_id is None:
        return DuplicateLink(photo, None)
    canonical = Canonical(
        id=canonical_id,
        album_id=canonical_values["album_id"],
        status=PhotoStatus(canonical_values["status"]),
        original_sha256=canonical_values["sha256"],
        duplicate_of=canonical_values["duplicate_of"],
    )
    return DuplicateLink(photo, canonical)
