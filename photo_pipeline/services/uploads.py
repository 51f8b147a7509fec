"""The client's side of an upload, as the browser did it, and its cleanup.

Row first (pending), then a presigned PUT straight into the bucket, then proof that the object
really landed: the old client reported 100 % for files that never arrived, so a 2xx alone is not
believed — a HEAD must find the object with the right size. Only after retries does it give up,
and then it cleans up after itself.
"""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast
from urllib.parse import urlsplit

import requests
from PIL import Image, UnidentifiedImageError
from requests.adapters import HTTPAdapter
from sqlalchemy.exc import SQLAlchemyError
from urllib3.util.retry import Retry

from photo_pipeline.photos.albums import AlbumRecord
from photo_pipeline.photos.errors import describe_database_error
from photo_pipeline.photos.models import MAX_ALBUM_TITLE_CHARS
from photo_pipeline.photos.repository import (
    CleanupRefused,
    NewPhoto,
    PhotoNotFound,
    PhotoRecord,
    PhotoRepository,
)
from photo_pipeline.redaction import redact, s3_error_summary, url_for_display
from photo_pipeline.rendering import render as _rendering  # noqa: F401  (registers the HEIF opener)
from photo_pipeline.rendering.render import RenderError, RenderOptions, estimate_memory
from photo_pipeline.settings import Settings
from photo_pipeline.storage import (
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    PresignedUpload,
    StorageError,
    UploadTargetExists,
    keys,
)

MIB = 1024 * 1024

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int], None]


class UploadRejected(ValueError):
    """The file is not something we accept (empty, not an image); nothing was created."""


class InvalidAlbumTitle(ValueError):
    """The album title cannot be stored and shown as given; nothing was changed."""


class UploadTooLarge(UploadRejected):
    """More bytes than PHOTO_MAX_ORIGINAL_MB (the API answers 413)."""


class UnsupportedUpload(UploadRejected):
    """Not an image type we accept (the API answers 415)."""


class UploadFailed(RuntimeError):
    """The upload did not land after retries. Its message says what the cleanup achieved: the row
    and object removed, or what is left and what will remove it."""


@dataclass(frozen=True)
class UploadResult:
    photo_id: uuid.UUID
    album_id: uuid.UUID
    key: str
    size: int
    attempts: int
    seconds: float


@dataclass(frozen=True)
class UploadPolicy:
    expires_in: int = 900
    attempts: int = 3
    backoff_seconds: float = 0.5
    timeout_seconds: float = 60.0
    # The processing limits, applied before a row exists, so the uploader hears it at once rather
    # than from a failed row later (defaults as in settings.py).
    max_original_bytes: int = 200 * MIB  # PHOTO_MAX_ORIGINAL_MB
    max_pixels: int = 120_000_000  # PHOTO_MAX_PIXELS
    memory_budget_bytes: int = 1536 * MIB  # PHOTO_MEMORY_BUDGET_MB
    preview_long_side: int = 1600  # PHOTO_PREVIEW_SIZE: JPEGs decode at a draft size fitting it

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadPolicy:
        return cls(
            expires_in=settings.presign_expires_seconds,
            max_original_bytes=settings.max_original_bytes,
            max_pixels=settings.render.max_pixels,
            memory_budget_bytes=settings.memory_budget_bytes,
            preview_long_side=settings.render.preview_long_side,
        )


def clean_album_title(title: str) -> str:
    """The title as stored: trimmed; InvalidAlbumTitle when empty, too long, or carrying
    characters that would forge lines or reorder text where it is shown (terminal, UI, logs)."""
    cleaned = title.strip()
    if not cleaned:
        raise InvalidAlbumTitle("the album title is empty")
    if len(cleaned) > MAX_ALBUM_TITLE_CHARS:
        raise InvalidAlbumTitle(f"the album title has {len(cleaned)} characters; at most {MAX_ALBUM_TITLE_CHARS} are kept")
    # The same characters the photo table refuses in object keys (controls, bidi overrides,
    # undecodable bytes), for the same reasons.
    reason = keys.unholdable_reason(cleaned)
    if reason is not None:
        raise InvalidAlbumTitle(f"the album title {reason}")
    return cleaned


def title_album(repository: PhotoRepository, album_id: uuid.UUID, title: str) -> AlbumRecord:
    """Give the album a title (or a new one), as the uploader names it: shown beside the album's
    id by `photo-pipeline status` and in the renditions' metadata."""
    return repository.set_album_title(album_id, clean_album_title(title))


def check_original_size(size: int, policy: UploadPolicy, what: str) -> None:
    """The size rule every upload meets before a row exists (the CLI's files, the API's declared
    ones): not empty, not over PHOTO_MAX_ORIGINAL_MB."""
    if size > policy.max_original_bytes:
        raise UploadTooLarge(
            f"{what}: {size / MIB:,.1f} MiB is over the maximum original size of "
            f"{policy.max_original_bytes / MIB:,.0f} MiB (PHOTO_MAX_ORIGINAL_MB)"
        )
    if size <= 0:
        raise UploadRejected(f"{what}: the file is empty")


def check_upload_limits(path: Path, policy: UploadPolicy) -> int:
    """The file's size, or UploadRejected when processing would refuse it: more bytes than
    PHOTO_MAX_ORIGINAL_MB, more pixels than PHOTO_MAX_PIXELS, or a decode that alone needs more
    than the run's memory budget. Reads the header only."""
    if not path.is_file():
        raise UploadRejected(f"{path}: no such file")
    size = path.stat().st_size
    check_original_size(size, policy, str(path))
    options = RenderOptions(preview_long_side=policy.preview_long_side, max_pixels=policy.max_pixels)
    try:
        with path.open("rb") as header:
            estimate = estimate_memory(header, options)
    except RenderError as exc:
        limit = " (PHOTO_MAX_PIXELS)" if "above the limit" in str(exc) else ""
        raise UploadRejected(f"{path}: {exc}{limit}") from exc
    if estimate.working_bytes > policy.memory_budget_bytes:
        raise UploadRejected(
            f"{path}: {estimate.describe()}, more than the whole memory budget of a run, "
            f"{policy.memory_budget_bytes / MIB:,.0f} MiB (PHOTO_MEMORY_BUDGET_MB)"
        )
    return size


def inspect_upload(path: Path) -> tuple[str, str]:
    """Extension and content type of an acceptable image file, or UploadRejected saying why."""
    if not path.is_file():
        raise UploadRejected(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise UploadRejected(f"{path}: the file is empty")
    try:
        with Image.open(path) as image:
            detected = (image.format or "").upper()
    except Image.DecompressionBombError as exc:
        raise UploadRejected(f"{path}: refused, the image is too large to decode safely ({exc})") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise UploadRejected(f"{path}: not an image we can read ({exc})") from exc
    ext = {"JPEG": "jpg", "MPO": "jpg", "HEIF": "heic", "TIFF": "tif"}.get(detected, detected.lower())
    if not keys.is_supported_extension(ext):
        raise UploadRejected(f"{path}: {detected or 'unknown'} images are not accepted")
    return keys.normalise_extension(ext), keys.content_type_for_extension(ext)


class _ProgressReader(io.RawIOBase):
    """A seekable file wrapper that reports bytes read, so requests streams it with a
    Content-Length (S3 refuses chunked PUTs) and urllib3 can rewind it for a retry."""

    def __init__(self, stream: BinaryIO, size: int, on_progress: ProgressCallback | None) -> None:
        self._stream = stream
        self._size = size
        self._on_progress = on_progress

    def __len__(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        if chunk and self._on_progress is not None:
            self._on_progress(len(chunk))
        return chunk

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        position = self._stream.seek(offset, whence)
        if position == 0 and self._on_progress is not None:
            self._on_progress(-1)  # restart: the caller resets its bar
        return position

    def tell(self) -> int:
        return self._stream.tell()


def _http_session(policy: UploadPolicy) -> requests.Session:
    retry = Retry(
        total=policy.attempts,
        connect=policy.attempts,
        read=policy.attempts,
        status=policy.attempts,
        backoff_factor=policy.backoff_seconds,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=frozenset({"PUT"}),
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _put_presigned(
    store: ObjectStore,
    upload: PresignedUpload,
    body: _ProgressReader,
    session: requests.Session,
    policy: UploadPolicy,
) -> None:
    if urlsplit(upload.url).scheme == "file":
        if not isinstance(store, LocalObjectStore):
            raise UploadFailed("a file:// upload URL was issued by a store that cannot receive it")
        try:
            store.accept_presigned_put(upload.url, cast(BinaryIO, body), upload.headers)
        except UploadTargetExists:
            pass  # as a 412 below: our earlier attempt landed; the HEAD that follows checks it
        return
    target = url_for_display(upload.url)
    try:
        response = session.request(upload.method, upload.url, data=body, headers=upload.headers, timeout=policy.timeout_seconds)
    except requests.RequestException as exc:
        # requests quotes the whole URL, signature included: only the redacted text travels on
        # (`from None`, or the traceback would print the original message).
        raise UploadFailed(f"PUT {target} failed: {redact(str(exc))}") from None
    if response.status_code == 412:
        # If-None-Match refused a repeated PUT (our own retry after a lost answer): the object is
        # there already; the HEAD that follows checks it is ours, by its size.
        return
    if response.status_code not in (200, 201, 204):
        raise UploadFailed(f"PUT {target}: the bucket answered HTTP {response.status_code}: {s3_error_summary(response.text)}")


def _verify_landed(store: ObjectStore, key: str, size: int) -> None:
    try:
        info = store.head(key)
    except ObjectNotFound:
        raise UploadFailed(f"the upload was acknowledged but {key} is not in the bucket") from None
    if info.size != size:
        raise UploadFailed(f"{key} landed with {info.size} bytes instead of {size}")


def upload_photo(
    repository: PhotoRepository,
    store: ObjectStore,
    album_id: uuid.UUID,
    path: Path,
    *,
    policy: UploadPolicy = UploadPolicy(),
    on_progress: ProgressCallback | None = None,
    photo_id: uuid.UUID | None = None,
) -> UploadResult:
    """Check the limits, register, presign, PUT, verify; clean up and raise UploadFailed if it
    never lands. UploadRejected (nothing created) for a file processing would refuse."""
    size = check_upload_limits(path, policy)
    ext, content_type = inspect_upload(path)
    photo_id = photo_id or uuid.uuid4()
    key = keys.raw_key(album_id, photo_id, ext)
    started = time.perf_counter()
    repository.register_pending(
        NewPhoto(
            id=photo_id,
            album_id=album_id,
            original_key=key,
            filename=path.name,
            content_type=content_type,
            original_bytes=size,
        )
    )
    session = _http_session(policy)
    last_error: Exception | None = None
    for attempt in range(1, policy.attempts + 1):
        try:
            # The size is signed in: the bucket refuses a body of any other length.
            presigned = store.presign_put(key, content_type, policy.expires_in, content_length=size)
            with path.open("rb") as stream:
                _put_presigned(store, presigned, _ProgressReader(stream, size, on_progress), session, policy)
            _verify_landed(store, key, size)
            return UploadResult(photo_id, album_id, key, size, attempt, time.perf_counter() - started)
        except (UploadFailed, StorageError) as exc:
            last_error = exc
            log.warning("upload of %s as photo %s, attempt %d/%d failed: %s", path, photo_id, attempt, policy.attempts, exc)
            if on_progress is not None:
                on_progress(-1)
            if attempt < policy.attempts:
                time.sleep(policy.backoff_seconds * 2 ** (attempt - 1))
    cleanup = _cleanup_after_failed_upload(repository, store, photo_id)
    raise UploadFailed(f"{path}: upload failed after {policy.attempts} attempts: {last_error}; {cleanup}") from last_error


def _cleanup_after_failed_upload(repository: PhotoRepository, store: ObjectStore, photo_id: uuid.UUID) -> str:
    """Clean up, and say truthfully how far it got: the caller prints this."""
    try:
        result = cleanup_photo(repository, store, photo_id)
    except (CleanupRefused, PhotoNotFound) as exc:
        log.exception("cleanup after the failed upload of photo %s was refused", photo_id)
        return f"the row was NOT cleaned up ({exc})"
    except StorageError as exc:
        log.exception("cleanup after the failed upload of photo %s could not remove its objects", photo_id)
        return (
            f"the row was removed but its object could not be deleted ({exc}); the upload is tombstoned, "
            "so reconciliation removes the object once the bucket answers"
        )
    except SQLAlchemyError as exc:
        log.exception("cleanup after the failed upload of photo %s could not reach the database", photo_id)
        return f"nothing was cleaned up: {describe_database_error(exc).summary}; reconciliation flags the row missing later"
    return f"row and object cleaned up ({len(result.deleted_keys)} key(s) removed)"


class CleanupIncomplete(StorageError):
    """The row was deleted (and tombstoned) but its objects could not be: reconciliation removes
    them once the bucket answers."""

    def __init__(self, photo: PhotoRecord, cause: StorageError) -> None:
        super().__init__(f"photo {photo.id}: the row was deleted but its objects could not be ({cause})")
        self.photo = photo


@dataclass(frozen=True)
class CleanupResult:
    photo: PhotoRecord
    deleted_keys: tuple[str, ...]


def cleanup_photo(repository: PhotoRepository, store: ObjectStore, photo_id: uuid.UUID) -> CleanupResult:
    """The client's cleanup: delete a pending or failed photo's row and objects, nothing else.

    The row goes first, in one conditional statement, so a photo being processed is never
    deleted from under its worker; CleanupRefused and PhotoNotFound say why not.
    """
    photo = repository.delete_for_cleanup(photo_id)
    doomed = tuple(k for k in (photo.original_key, photo.thumb_key, photo.preview_key) if k)
    try:
        store.delete_many(doomed)
    except StorageError as exc:
        raise CleanupIncomplete(photo, exc) from exc
    return CleanupResult(photo=photo, deleted_keys=doomed)
