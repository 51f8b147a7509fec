"""The object store's interface: the `ObjectStore` protocol, its errors and the rules both stores share.

`S3ObjectStore` (s3.py) speaks to any S3-compatible bucket through boto3; `LocalObjectStore`
(local.py) keeps the embedded mode's objects in a folder. Both raise the same exceptions, and the difference between
them matters most there: `ObjectNotFound` means "this key is definitely not in an existing bucket"
and nothing else, because callers (reconciliation, cleanup) act on it by flagging or deleting rows.
A missing bucket, a denied request or an unreachable endpoint is a `StorageError`, never a
"file missing".
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime  # timezone-aware UTC
    etag: str | None = None
    content_type: str | None = None  # may be None in listings


@dataclass(frozen=True)
class PresignedUpload:
    url: str
    method: str  # "PUT"
    headers: dict[str, str]  # headers the client MUST send (the Content-Type is signed)
    expires_at: datetime


@dataclass(frozen=True)
class PresignedDownload:
    url: str  # a bearer credential until expires_at: never logged or shown (see redaction.py)
    expires_at: datetime


class StorageError(Exception):
    """The store could not answer: misconfigured, denied, unreachable. Never a plain "not found"."""


class ObjectNotFound(StorageError):
    """Definitely no such key in a bucket/folder that does exist."""

    def __init__(self, key: str, message: str | None = None) -> None:
        super().__init__(message or f"no object {key!r}")
        self.key = key


class StorageUnavailable(StorageError):
    """Transient: connection errors, timeouts, 5xx or throttling left after botocore's retries."""


class StorageTimeout(StorageUnavailable):
    """The bucket gave no answer within the client's timeout, on every attempt; the message names
    the bucket, the operation and the seconds waited."""


class StorageAccessDenied(StorageError):
    """The credentials (or the folder's permissions) do not allow the operation: a grant is
    missing, and retrying will not help."""


class PresignedUploadRejected(StorageError):
    """The local store refused a presigned PUT (bad signature, expired, wrong key or type)."""


class UploadTargetExists(PresignedUploadRejected):
    """A presigned PUT to a key that already holds an object (If-None-Match: *)."""


class ObjectTooLarge(StorageError):
    """The object is larger than the caller accepts to read. A fact about the object, not the store:
    retrying will not help."""

    def __init__(self, key: str, size: int | None, max_bytes: int) -> None:
        shown = f"{size:,} bytes" if size is not None else "more bytes"
        super().__init__(f"object {key!r} has {shown}, over the limit of {max_bytes:,} bytes")
        self.key = key
        self.size = size
        self.max_bytes = max_bytes


# Originals smaller than this are spooled in memory; larger ones go to a temporary file on disk.
COPY_CHUNK = 1024 * 1024
SPOOL_MEMORY_BYTES = 8 * 1024 * 1024


@runtime_checkable
class ObjectStore(Protocol):
    def describe(self) -> str: ...
    def check(self) -> None: ...
    def put(self, key: str, data: bytes, content_type: str) -> None: ...
    def get(self, key: str) -> bytes: ...
    def head(self, key: str) -> ObjectInfo: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def delete_many(self, keys: Iterable[str]) -> None: ...
    def list_page(self, prefix: str, *, start_after: str | None = None, limit: int = 1000) -> list[ObjectInfo]: ...
    def list_folders(self, prefix: str) -> list[str]: ...
    def iter_objects(
        self, prefix: str, *, start_after: str | None = None, page_size: int = 1000
    ) -> Iterator[ObjectInfo]: ...
    def presign_put(
        self, key: str, content_type: str, expires_in: int, *, content_length: int | None = None
    ) -> PresignedUpload: ...
    def download(
        self, key: str, out: BinaryIO, max_bytes: int, *, on_headers: Callable[[ObjectInfo], None] | None = None
    ) -> int:
        """Stream the object into `out` (at most max_bytes; ObjectTooLarge before reading a byte of
        the body when its declared size is over, while reading when the body is longer than
        declared). `on_headers` gets the object's size, ETag and date from the GET's own response
        before the body is read (no HEAD needed); an exception it raises ends the download."""
        ...
    def presign_get(self, key: str, expires_in: int) -> PresignedDownload: ...


def spooled_download(store: ObjectStore, key: str, max_bytes: int) -> tempfile.SpooledTemporaryFile[bytes]:
    """The object streamed into a spooled temporary file (in memory up to SPOOL_MEMORY_BYTES, on
    disk beyond), rewound; ObjectTooLarge past `max_bytes` even when an earlier HEAD said less.
    The caller closes it (it is a context manager)."""
    spool: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(
        max_size=SPOOL_MEMORY_BYTES, prefix="original-"
    )
    try:
        store.download(key, spool, max_bytes)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def copy_bounded(chunks: Iterable[bytes], out: BinaryIO, key: str, max_bytes: int) -> int:
    """Copy chunks to out, refusing (ObjectTooLarge) as soon as more than max_bytes arrived."""
    written = 0
    for chunk in chunks:
        written += len(chunk)
        if written > max_bytes:
            raise ObjectTooLarge(key, None, max_bytes)
        out.write(chunk)
    return written


# ---------------------------------------------------------------------------------------------
# Shared helpers


def iter_pages(
    store: ObjectStore, prefix: str, start_after: str | None, page_size: int
) -> Iterator[ObjectInfo]:
    """All objects under prefix, one page in memory at a time; a short page is the last one."""
    check_limit(page_size)
    position = start_after
    while True:
        page = store.list_page(prefix, start_after=position, limit=page_size)
        yield from page
        if len(page) < page_size:
            return
        position = page[-1].key


def check_folder_prefix(prefix: str) -> None:
    if not prefix.endswith("/"):
        raise ValueError(f"a folder listing takes a prefix ending in '/', got {prefix!r}")


def check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"page size must be at least 1, got {limit}")


def check_presign_args(content_type: str, expires_in: int) -> None:
    if not content_type:
        raise ValueError("a presigned upload needs a Content-Type")
    # SigV4 presigned URLs live at most 7 days; keep both stores to the same rule.
    if not 1 <= expires_in <= 7 * 24 * 3600:
        raise ValueError(f"expires_in must be between 1 s and 7 days, got {expires_in}")


def check_expiry(expires_in: int) -> None:
    # SigV4 presigned URLs live at most 7 days; keep both stores to the same rule.
    if not 1 <= expires_in <= 7 * 24 * 3600:
        raise ValueError(f"expires_in must be between 1 s and 7 days, got {expires_in}")


def check_content_length(content_length: int | None) -> None:
    if content_length is not None and content_length < 0:
        raise ValueError(f"content_length must not be negative, got {content_length}")


def chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def failures_message(operation: str, where: str, failures: list[str], total: int) -> str:
    shown = ", ".join(failures[:20])
    more = f" and {len(failures) - 20} more" if len(failures) > 20 else ""
    return f"{operation} in {where}: {len(failures)} of {total} keys failed: {shown}{more}"


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def without_userinfo(url: str | None) -> str:
    """An endpoint URL fit for messages: user:password@ (if anyone put it there) is dropped."""
    if not url:
        return "default AWS endpoint"
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


