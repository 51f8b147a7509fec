"""The photo table, as a typed SQLAlchemy 2 model. Schema changes go through Alembic
(photo_pipeline/migrations); a test checks that the migrations and this model agree."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class PhotoStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    MISSING = "missing"
    # In the trash: hidden everywhere, files kept, restorable to the status in `trashed_from`
    # until empty_trash erases it (docs/operations.md, "Trash and erase").
    TRASHED = "trashed"


# The statuses a photo is shown in: every one but the trash's (counts, totals, pages, figures).
SHOWN_STATUSES = tuple(status for status in PhotoStatus if status is not PhotoStatus.TRASHED)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend: SQLite stores no zone and hands back naive values."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


STATUS_VALUES = ", ".join(f"'{s.value}'" for s in PhotoStatus)
TRASH_COLUMNS_CHECK = (
    "(status = 'trashed' AND trashed_at IS NOT NULL AND trashed_from IS NOT NULL AND trashed_from <> 'trashed' "
    "AND trashed_with_album IS NOT NULL) "
    "OR (status <> 'trashed' AND trashed_at IS NULL AND trashed_from IS NULL AND trashed_with_album IS NULL)"
)

# The rows a page shows, as SQL with the value inline: an index whose WHERE is this serves a query
# that says the same (a bound parameter in its place would not prove it to PostgreSQL's planner).
SHOWN_ROWS = text("status <> 'trashed'")

# Object keys compare as bytes in PostgreSQL too ("C" collation), the order S3 lists them in, so
# reconciliation can walk table and bucket side by side along an index.
ObjectKey = String(1024).with_variant(String(1024, collation="C"), "postgresql")


class Photo(Base):
    __tablename__ = "photos"
    __table_args__ = (
        CheckConstraint(f"status IN ({STATUS_VALUES})", name="ck_photos_status"),
        # A trashed row always says since when and from what (restore and empty_trash need both).
        CheckConstraint(TRASH_COLUMNS_CHECK, name="ck_photos_trash"),
        UniqueConstraint("original_key", name="uq_photos_original_key"),
        Index("ix_photos_album_status", "album_id", "status"),
        Index("ix_photos_status_updated", "status", "updated_at"),
        Index("ix_photos_status_claimed", "status", "claimed_at"),
        Index("ix_photos_thumb_key", "thumb_key"),
        Index("ix_photos_preview_key", "preview_key"),
        Index("ix_photos_first_completed_at", "first_completed_at"),
        Index("ix_photos_album_sha256", "album_id", "original_sha256"),
        # The album's capture order (photos/ordering.py) as PostgreSQL's btree keeps it, NULLs last:
        # a page of it is one index range, with no sort of the album. Partial (migration 0009): the
        # trash is in no page, so a page never wades through trashed rows.
        Index("ix_photos_album_capture_order", "album_id", "taken_at", "created_at", "id", postgresql_where=SHOWN_ROWS, sqlite_where=SHOWN_ROWS),
        # And its upload order (the API's default pages, `album_page`).
        Index("ix_photos_album_upload_order", "album_id", "created_at", "id", postgresql_where=SHOWN_ROWS, sqlite_where=SHOWN_ROWS),
        # empty_trash: the trashed rows past the retention, oldest first, one index range.
        Index("ix_photos_status_trashed_at", "status", "trashed_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    album_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    original_key: Mapped[str] = mapped_column(ObjectKey, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=PhotoStatus.PENDING.value)
    thumb_key: Mapped[str | None] = mapped_column(ObjectKey)
    preview_key: Mapped[str | None] = mapped_column(ObjectKey)
    error: Mapped[str | None] = mapped_column(Text)
    # Of a failed photo: whose fault it was, and so whether a re-run can help (failures.py).
    failure_kind: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The rendition's facts: the original's size after orientation, and the bytes of each file.
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    original_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # The ETag of the original the renditions were made from (with original_bytes, its size then):
    # an original replaced after completion shows up as a different ETag or size in a listing.
    original_etag: Mapped[str | None] = mapped_column(String(128))
    thumb_bytes: Mapped[int | None] = mapped_column(BigInteger)
    preview_bytes: Mapped[int | None] = mapped_column(BigInteger)
    filename: Mapped[str | None] = mapped_column(String(512))
    content_type: Mapped[str | None] = mapped_column(String(128))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set by the first completion only (re-renders move completed_at, never this): health's
    # upload-to-completed latency is measured to it.
    first_completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    missing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # SHA-256 (hex) of the original as it was streamed for rendering (no second read).
    original_sha256: Mapped[str | None] = mapped_column(String(64))
    # Set on a photo whose original has the same checksum as an earlier photo of the album: it is
    # completed without renditions of its own (thumb_key and preview_key stay empty).
    duplicate_of: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # Capture facts from EXIF (rendering/capture.py): local time of capture in ISO 8601, with its
    # offset when the file has one; camera make and model; GPS only with PHOTO_STORE_GPS.
    taken_at: Mapped[str | None] = mapped_column(String(32))
    camera_make: Mapped[str | None] = mapped_column(String(128))
    camera_model: Mapped[str | None] = mapped_column(String(128))
    gps_latitude: Mapped[float | None] = mapped_column(Float)
    gps_longitude: Mapped[float | None] = mapped_column(Float)
    # ThumbHash of the thumbnail (rendering/thumbhash.py), base64: the page's placeholder.
    thumbhash: Mapped[str | None] = mapped_column(String(64))
    # The trash (migration 0009): when the row was trashed (the repository's clock: the retention
    # is measured on it, never on an object's LastModified), the status restore brings back, and
    # whether the album's deletion trashed it (an album restore brings back only those).
    trashed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    trashed_from: Mapped[str | None] = mapped_column(String(16))
    trashed_with_album: Mapped[bool | None] = mapped_column(Boolean)


class RenditionFile(Base):
    """One responsive size of a photo in one format (`processed/{size}/...`): what exists, as the
    photo's last completion wrote it. Replaced whole at each completion; reconciliation compares
    these keys with the bucket. A key may be named by several rows: a size whose bytes are the
    preview's or the thumbnail's names that key, and a duplicate's rows name its first copy's
    keys (migration 0011)."""

    __tablename__ = "renditions"
    __table_args__ = (PrimaryKeyConstraint("photo_id", "key"), Index("ix_renditions_key", "key"))

    key: Mapped[str] = mapped_column(ObjectKey, nullable=False)
    photo_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    # The configured size it is filed under (its folder, a long side); `width` and `height` are what
    # the file has (never upscaled).
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    format: Mapped[str] = mapped_column(String(8), nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)


class DeletedUpload(Base):
    """A tombstone left by the client's cleanup: a presigned PUT may still land after its row was
    deleted, and such a late object must be removed, not adopted as a new photo."""

    __tablename__ = "deleted_uploads"

    original_key: Mapped[str] = mapped_column(ObjectKey, primary_key=True)
    photo_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    deleted_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)


# albums.title: long enough for any real album name, short enough for a table cell.
MAX_ALBUM_TITLE_CHARS = 200


class Album(Base):
    """An album's title, when one was given (at upload), and its trash time while the album is in
    the trash. Optional: the photo table alone defines which albums exist (photos.album_id); an
    album without a row here (or without a title) is shown by its id. Trashing an album without
    a row creates one, title empty."""

    __tablename__ = "albums"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    title: Mapped[str | None] = mapped_column(String(MAX_ALBUM_TITLE_CHARS))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    trashed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ErasedPhoto(Base):
    """The erase record of a photo: ids and the time, no key, file name or title (personal data
    goes with the photo). Kept forever: the id alone recognises any late object (a canonical key
    carries it; `keys.identify_raw_key` mints it for any other key, as adoption does), so nothing
    brings the photo back."""

    __tablename__ = "erased_photos"

    photo_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    album_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class ErasedAlbum(Base):
    """The erase record of an album (ids and the time only, kept forever): no upload, sensor or
    reconciliation brings a photo into it again."""

    __tablename__ = "erased_albums"

    album_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
