"""What the API reads and writes, as pydantic models: they validate requests, shape responses and
make the OpenAPI description (`/openapi.json`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    # A misspelt field is an error, not a silently ignored wish.
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeclaredFileIn(_Strict):
    name: str = Field(min_length=1, max_length=1024, description="the file's name; its extension says its type")
    size: int = Field(ge=0, le=2**53, description="bytes the PUT will carry (signed into the URL)")
    content_type: str | None = Field(
        default=None, max_length=255, description="the browser's `File.type`; may be empty for types it does not know"
    )
    photo_id: uuid.UUID | None = Field(
        default=None,
        description="an id the client chose (UUID): the same request may then be repeated after a lost answer, "
        "and the client can clean up a row whose id it never heard back",
    )


class UploadsIn(_Strict):
    files: list[DeclaredFileIn] = Field(description="the files to upload; checked all together before any row is written")
    title: str | None = Field(
        default=None,
        max_length=1024,
        description="the album's title (set, or replaced, with the rows; checked before any is written): "
        "shown beside the album's id by `photo-pipeline status` and in the Dagster UI",
    )


class UploadOut(_Strict):
    photo_id: uuid.UUID
    key: str = Field(description="the original's object key")
    filename: str
    url: str = Field(description="presigned PUT URL, a credential until `expires_at`: do not log it")
    method: Literal["PUT"]
    headers: dict[str, str] = Field(description="headers the PUT must carry (Content-Length is set by browsers themselves)")
    expires_at: datetime


class UploadsOut(_Strict):
    uploads: list[UploadOut]


class _FailureOut(_Strict):
    """What a failed photo's failure means for whoever shows it (photo_pipeline/failures.py)."""

    failure_kind: str | None = Field(
        default=None,
        description="of a failed photo: `damaged`, `unsupported` or `too_large` (the file's fault), `interrupted` or "
        "`unexpected` (the server's); null otherwise, or when the failure predates its recording",
    )
    retryable: bool | None = Field(
        default=None,
        description="of a failed photo: whether an operator's re-run of the same original can succeed (true only for the "
        "server's failures; a damaged file fails again the same way); null otherwise, or when not recorded",
    )
    hint: str | None = Field(
        default=None, description="of a failed photo: what to do about it, in a site user's words (the uploader page shows it)"
    )


class CompleteOut(_FailureOut):
    photo_id: uuid.UUID
    album_id: uuid.UUID
    status: str = Field(description="pending, processing, completed, failed or missing")
    error: str | None
    processing: str = Field(description="what became of the album's run request")
    run_id: str | None = Field(description="the Dagster run submitted now, if any")


class DeletedOut(_Strict):
    photo_id: uuid.UUID
    album_id: uuid.UUID | None = None
    outcome: Literal["cleaned_up", "trashed", "already_trashed", "erased"] = Field(
        default="cleaned_up",
        description="cleaned_up: a pending or failed upload, row and object deleted (tombstoned); trashed: in the "
        "trash, files kept, restorable until `trashed_at` + PHOTO_TRASH_RETENTION_DAYS; already_trashed: nothing "
        "changed; erased: row, original and every rendition deleted, an id-only erase record kept",
    )
    status: str = Field(description="the status the photo had when it was deleted")
    removed_keys: list[str] = Field(description="the object keys deleted (none for a trash: its files are kept)")
    trashed_at: datetime | None = Field(default=None, description="when the photo went to the trash (trashed, already_trashed)")
    note: str | None = Field(default=None, description="what is left behind and what removes it")
    processing: str | None = Field(
        default=None, description="completed duplicates of the photo went back to pending: what became of their album's run request"
    )


class RestoredOut(_Strict):
    photo_id: uuid.UUID
    album_id: uuid.UUID
    status: str = Field(description="the status it is back in: the one it had (a photo trashed while processing: pending)")
    processing: str | None = Field(default=None, description="back in pending: what became of its album's run request")


class AlbumDeletedOut(_Strict):
    album_id: uuid.UUID
    outcome: Literal["trashed", "already_trashed", "erased"]
    photos: int = Field(description="photos trashed (or erased) by this request")
    trashed_at: datetime | None = Field(default=None, description="when the album went to the trash")
    removed_objects: int = Field(default=0, description="objects deleted by an erase")
    removed_keys: list[str] = Field(default_factory=list, description="the first 1,000 of them")
    note: str | None = Field(default=None, description="what is left behind and what removes it")
    partition: str | None = Field(default=None, description="erased: what became of the album's Dagster partition")


class AlbumRestoredOut(_Strict):
    album_id: uuid.UUID
    photos: int = Field(description="photos brought back (those its deletion trashed; photos trashed on their own stay)")
    restored: dict[str, int] = Field(description="photos brought back per status they are back in")
    processing: str | None = Field(default=None, description="photos back in pending: what became of the album's run request")


class RenditionOut(_Strict):
    size: int = Field(
        description="the configured responsive size (a long side) this file is filed under (`processed/<size>/…`): "
        "a name, not its pixels (a portrait's 800 is 600 wide; a photo smaller than a size gets one file at its own "
        "pixels, filed under the smallest size it cannot fill): use `width` and `height`"
    )
    format: str = Field(description="JPEG, WEBP or AVIF")
    content_type: str = Field(description="what `url` serves (image/jpeg, image/webp, image/avif): a `<source type>`")
    width: int = Field(description="the file's real width in pixels: the `w` descriptor of its srcset entry (`<url> <width>w`)")
    height: int = Field(description="the file's real height in pixels (with `width`, the `<img>`'s aspect ratio)")
    bytes: int = Field(description="the file's size")
    url: str = Field(
        description="short-lived presigned GET URL of the file, a credential until the photo's `urls_expire_at`: "
        "do not log it, and fetch the album again rather than keep it"
    )


class PhotoOut(_FailureOut):
    photo_id: uuid.UUID
    filename: str | None
    status: str
    error: str | None
    width: int | None
    height: int | None
    created_at: datetime
    completed_at: datetime | None
    thumbnail_url: str | None = Field(description="short-lived GET URL, completed photos only")
    preview_url: str | None = Field(description="short-lived GET URL, completed photos only")
    urls_expire_at: datetime | None = Field(
        description="when `thumbnail_url`, `preview_url` and the renditions' `url`s stop working; until then they "
        "are credentials: do not log them"
    )
    thumbhash: str | None = Field(default=None, description="ThumbHash (base64) of the thumbnail: the placeholder to paint while it loads")
    taken_at: str | None = Field(default=None, description="EXIF capture time, local, ISO 8601 (with offset when the file has one)")
    duplicate_of: uuid.UUID | None = Field(default=None, description="set when this upload repeats an earlier photo of the album (same SHA-256); it has no renditions of its own")
    renditions: list[RenditionOut] = Field(
        default_factory=list,
        description="the responsive sizes, one entry per file (each size in each configured format), largest first, "
        "for `<img srcset>` and `<picture>`; empty unless the photo is completed with renditions of its own. "
        "Their URLs are credentials until `urls_expire_at`: do not log them",
    )


class AlbumOut(_Strict):
    album_id: uuid.UUID
    counts: dict[str, int] = Field(description="photos per status, the whole album; `trashed`: those in the trash (not in `total`)")
    total: int = Field(description="the album's photos, those in the trash left out")
    trashed_at: datetime | None = Field(
        default=None,
        description="set while the album is in the trash: no photo is listed; POST /api/albums/{album_id}/restore brings it back",
    )
    photos: list[PhotoOut]
    next_after: uuid.UUID | None = Field(description="pass as `after` for the next page; null on the last page")


class CheckIn(_Strict):
    apply: bool = Field(default=False, description="carry the plan out (behind the safety limit); default: a dry run")


class PlannedActionOut(_Strict):
    kind: str
    album_id: str
    photo_id: str | None
    key: str | None
    new_key: str | None
    detail: str


class CheckOut(_Strict):
    album_id: uuid.UUID
    dry_run: bool
    taken_at: datetime
    rows_seen: int
    objects_seen: int
    actions: dict[str, int] = Field(description="planned actions per kind")
    planned: list[PlannedActionOut]
    violations: list[str] = Field(description="why the safety limit refuses the plan; empty when it is safe")
    applied: dict[str, int] | None = None
    deferred: dict[str, int] | None = Field(
        default=None, description="planned repairs left to reconcile_storage (re-renders: never inside a request)"
    )
    errors: dict[str, str] | None = None
    processing: str | None = Field(default=None, description="what became of the album's run request after applying")
    error: str | None = Field(default=None, description="set when the plan was applied only in part (HTTP 503)")


class HealthOut(_Strict):
    status: Literal["ok", "unavailable"]
    database: str
    bucket: str
    error: str | None = None


class ErrorOut(_Strict):
    error: str


class CheckRefusedOut(_Strict):
    error: str
    plan: CheckOut
