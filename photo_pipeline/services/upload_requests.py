"""The server's side of a browser's upload: what the HTTP API hands out and checks.

The flow is the CLI's (services/uploads.py), split across requests because the client does the
PUT itself: the declared files are checked against the same limits before anything exists; the
rows are registered (`pending`) before any URL is signed; each URL is signed for the public
endpoint with the size and the Content-Type bound in; and "complete" is believed only once a
HEAD finds the object with the declared size (the old client said 100 % for files that never
arrived). Cleanup is `uploads.cleanup_photo`, the CLI's own.

The client may choose the photo ids. Then a request whose answer was lost (a connection cut off
after the rows were written) can be repeated without creating a second row, and the client can
clean up rows whose ids it never heard back from the server.
"""

from __future__ import annotations

import logging
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import (
    CleanupRefused,
    DuplicatePhoto,
    NewPhoto,
    PhotoNotFound,
    PhotoRecord,
    PhotoRepository,
)
from photo_pipeline.services.removal import photo_gone
from photo_pipeline.services.uploads import (
    UnsupportedUpload,
    UploadPolicy,
    UploadRejected,
    check_original_size,
    clean_album_title,
    cleanup_photo,
)
from photo_pipeline.storage import (
    ObjectNotFound,
    ObjectStore,
    PresignedUpload,
    StorageError,
    keys,
)

log = logging.getLogger(__name__)

# The photo table's filename column holds 512 characters; a name is bounded well below it.
MAX_FILENAME_CHARACTERS = 255
ACCEPTED_CONTENT_TYPES = frozenset(keys.content_type_for_extension(ext) for ext in keys.supported_extensions())


class UploadConflict(Exception):
    """A photo id the client chose is taken by a different upload (another album, size or file),
    or its upload is past `pending`: nothing was created."""


class ArrivalRefused(Exception):
    """The client says the upload is complete, but the bucket disagrees: no object, or one of
    another size. The row stays `pending`; the client cleans it up (or uploads again)."""


@dataclass(frozen=True)
class DeclaredFile:
    """A file as the client describes it before uploading it."""

    name: str
    size: int
    content_type: str | None = None
    photo_id: uuid.UUID | None = None


@dataclass(frozen=True)
class AcceptedFile:
    filename: str
    extension: str
    content_type: str  # what the PUT must carry: signed into the URL
    size: int


@dataclass(frozen=True)
class IssuedUpload:
    photo_id: uuid.UUID
    key: str
    filename: str
    presigned: PresignedUpload


def display_filename(name: str) -> str:
    """The file name as a browser may send it (`C:\\fakepath\\x.jpg`), reduced to its last part,
    without control characters, bounded."""
    last = name.replace("\\", "/").rsplit("/", 1)[-1]
    printable = "".join(c for c in last if unicodedata.category(c)[0] != "C").strip()
    return printable[:MAX_FILENAME_CHARACTERS]


def _bare_content_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_declared_file(declared: DeclaredFile, policy: UploadPolicy) -> AcceptedFile:
    """The file the client declared, or UploadRejected saying why not (UploadTooLarge: over
    PHOTO_MAX_ORIGINAL_MB; UnsupportedUpload: not an image type we process). The pixels cannot
    be checked before the bytes exist: processing checks them, as it checks every original."""
    filename = display_filename(declared.name)
    if not filename:
        raise UploadRejected(f"{declared.name!r}: no file name")
    check_original_size(declared.size, policy, filename)
    stem, dot, extension = filename.rpartition(".")
    if not dot or not stem or not keys.is_supported_extension(extension):
        raise UnsupportedUpload(
            f"{filename}: not an image type we accept (the name must end in one of "
            f"{', '.join('.' + e for e in keys.supported_extensions())})"
        )
    declared_type = _bare_content_type(declared.content_type)
    # Browsers leave the type empty for formats they do not know (HEIC on most systems).
    if declared_type and declared_type not in ACCEPTED_CONTENT_TYPES:
        raise UnsupportedUpload(f"{filename}: {declared_type} is not an image type we accept")
    extension = keys.normalise_extension(extension)
    return AcceptedFile(filename, extension, keys.content_type_for_extension(extension), declared.size)


def check_declared_files(files: Sequence[DeclaredFile], policy: UploadPolicy, max_files: int) -> list[AcceptedFile]:
    """Every file checked before any row is written: one refusal refuses the request."""
    if not files:
        raise UploadRejected("no files declared")
    if len(files) > max_files:
        raise UploadRejected(f"{len(files)} files in one request; at most {max_files} (PHOTO_API_MAX_FILES)")
    ids = [f.photo_id for f in files if f.photo_id is not None]
    if len(ids) != len(set(ids)):
        raise UploadRejected("the same photo_id is declared twice")
    return [check_declared_file(f, policy) for f in files]


def issue_uploads(
    repository: PhotoRepository,
    store: ObjectStore,
    album_id: uuid.UUID,
    files: Sequence[DeclaredFile],
    policy: UploadPolicy,
    *,
    max_files: int,
    title: str | None = None,
) -> list[IssuedUpload]:
    """Rows first (pending), then one presigned PUT per file, bound to its size and type; with
    `title`, the album is given that title too (as `photo-pipeline upload --title` does).

    UploadRejected (InvalidAlbumTitle for the title) before anything is written; UploadConflict
    when a chosen id is taken by something else. If a row or a URL cannot be made, the rows this
    call created are cleaned up again and the error propagates: a client never holds half an answer.
    """
    accepted = check_declared_files(files, policy, max_files)
    cleaned_title = clean_album_title(title) if title is not None else None
    created: list[uuid.UUID] = []
    try:
        rows = [_register(repository, album_id, declared, file, created) for declared, file in zip(files, accepted, strict=True)]
        if cleaned_title is not None:
            repository.set_album_title(album_id, cleaned_title)
        return [
            IssuedUpload(
                photo_id=row.id,
                key=row.original_key,
                filename=file.filename,
                presigned=store.presign_put(row.original_key, file.content_type, policy.expires_in, content_length=file.size),
            )
            for row, file in zip(rows, accepted, strict=True)
        ]
    except BaseException:
        _undo(repository, store, created)
        raise


def _register(
    repository: PhotoRepository, album_id: uuid.UUID, declared: DeclaredFile, file: AcceptedFile, created: list[uuid.UUID]
) -> PhotoRecord:
    photo_id = declared.photo_id or uuid.uuid4()
    photo = NewPhoto(
        id=photo_id,
        album_id=album_id,
        original_key=keys.raw_key(album_id, photo_id, file.extension),
        filename=file.filename,
        content_type=file.content_type,
        original_bytes=file.size,
    )
    try:
        row = repository.register_pending(photo)
    except DuplicatePhoto:
        # The same request again (its answer was lost): the row it made is handed out again.
        return _same_upload(repository, photo)
    created.append(photo_id)
    return row


def _same_upload(repository: PhotoRepository, photo: NewPhoto) -> PhotoRecord:
    existing = repository.get(photo.id)
    if existing is None:
        # The id is free but the key is not: only a row under another id can hold our key, and
        # keys carry their photo's id, so this is a race with a concurrent cleanup. Say so.
        raise UploadConflict(f"photo {photo.id}: its key is taken; choose another photo_id")
    same = (
        existing.album_id == photo.album_id
        and existing.original_key == photo.original_key
        and existing.original_bytes == photo.original_bytes
        and existing.filename == photo.filename
    )
    if not same:
        raise UploadConflict(f"photo {photo.id} already exists for another upload; choose another photo_id")
    if existing.status is not PhotoStatus.PENDING:
        raise UploadConflict(f"photo {photo.id} is {existing.status.value}: its upload is over")
    return existing


def _undo(repository: PhotoRepository, store: ObjectStore, created: list[uuid.UUID]) -> None:
    """Remove the rows this request created, after it failed half-way. Best effort, logged:
    the error that made us undo is the one the client must hear."""
    for photo_id in created:
        try:
            cleanup_photo(repository, store, photo_id)
        except (PhotoNotFound, CleanupRefused, StorageError) as exc:
            log.warning("could not undo the row of photo %s after a failed upload request: %s", photo_id, exc)
        except SQLAlchemyError:
            log.exception("could not undo the row of photo %s after a failed upload request", photo_id)


def verify_arrival(repository: PhotoRepository, store: ObjectStore, photo_id: uuid.UUID) -> PhotoRecord:
    """The row of a photo whose client says its upload is complete, once the bucket agrees.

    PhotoNotFound for an unknown id, PhotoErased for an erased one. A photo already past `pending`
    is returned as it is (a repeated "complete" is harmless). For a pending one, a HEAD must find
    its object with the declared size, else ArrivalRefused; StorageError when the bucket cannot be
    asked.
    """
    row = repository.get(photo_id)
    if row is None:
        raise photo_gone(repository, photo_id)
    if row.status is not PhotoStatus.PENDING:
        return row
    try:
        info = store.head(row.original_key)
    except ObjectNotFound:
        raise ArrivalRefused(
            f"photo {photo_id}: the bucket has no object {row.original_key}; the upload did not arrive"
        ) from None
    if row.original_bytes is not None and info.size != row.original_bytes:
        raise ArrivalRefused(
            f"photo {photo_id}: {row.original_key} holds {info.size} bytes, {row.original_bytes} were declared"
        )
    return row
