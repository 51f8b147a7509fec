"""The object store: one interface, two implementations.

`S3ObjectStore` speaks to any S3-compatible bucket through boto3; `LocalObjectStore` keeps the
embedded mode's objects in a folder. Both raise the same exceptions, and the difference between
them matters most there: `ObjectNotFound` means "this key is definitely not in an existing bucket"
and nothing else, because callers (reconciliation, cleanup) act on it by flagging or deleting rows.
A missing bucket, a denied request or an unreachable endpoint is a `StorageError`, never a
"file missing".
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import mimetypes
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, runtime_checkable
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError as BotoConnectionError,
    HTTPClientError,
    IncompleteReadError,
)

from photo_pipeline.keys import listing_start_after

if TYPE_CHECKING:
    from photo_pipeline.settings import Settings

# boto3 clients are generated at run time; without the optional stubs package they are `Any`.
S3Client = Any


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


class StorageError(Exception):
    """The store could not answer: misconfigured, denied, unreachable. Never a plain "not found"."""


class ObjectNotFound(StorageError):
    """Definitely no such key in a bucket/folder that does exist."""

    def __init__(self, key: str, message: str | None = None) -> None:
        super().__init__(message or f"no object {key!r}")
        self.key = key


class StorageUnavailable(StorageError):
    """Transient: connection errors, timeouts, 5xx or throttling left after botocore's retries."""


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
    def iter_objects(
        self, prefix: str, *, start_after: str | None = None, page_size: int = 1000
    ) -> Iterator[ObjectInfo]: ...
    def presign_put(
        self, key: str, content_type: str, expires_in: int, *, content_length: int | None = None
    ) -> PresignedUpload: ...
    def download(self, key: str, out: BinaryIO, max_bytes: int) -> int: ...


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


def _copy_bounded(chunks: Iterable[bytes], out: BinaryIO, key: str, max_bytes: int) -> int:
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


def _iter_pages(
    store: ObjectStore, prefix: str, start_after: str | None, page_size: int
) -> Iterator[ObjectInfo]:
    """All objects under prefix, one page in memory at a time; a short page is the last one."""
    _check_limit(page_size)
    position = start_after
    while True:
        page = store.list_page(prefix, start_after=position, limit=page_size)
        yield from page
        if len(page) < page_size:
            return
        position = page[-1].key


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"page size must be at least 1, got {limit}")


def _check_presign_args(content_type: str, expires_in: int) -> None:
    if not content_type:
        raise ValueError("a presigned upload needs a Content-Type")
    # SigV4 presigned URLs live at most 7 days; keep both stores to the same rule.
    if not 1 <= expires_in <= 7 * 24 * 3600:
        raise ValueError(f"expires_in must be between 1 s and 7 days, got {expires_in}")


def _check_content_length(content_length: int | None) -> None:
    if content_length is not None and content_length < 0:
        raise ValueError(f"content_length must not be negative, got {content_length}")


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _failures_message(operation: str, where: str, failures: list[str], total: int) -> str:
    shown = ", ".join(failures[:20])
    more = f" and {len(failures) - 20} more" if len(failures) > 20 else ""
    return f"{operation} in {where}: {len(failures)} of {total} keys failed: {shown}{more}"


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _without_userinfo(url: str | None) -> str:
    """An endpoint URL fit for messages: user:password@ (if anyone put it there) is dropped."""
    if not url:
        return "default AWS endpoint"
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# ---------------------------------------------------------------------------------------------
# S3


def make_s3_client(
    *,
    endpoint_url: str | None = None,
    max_attempts: int = 5,
    connect_timeout: float = 5,
    read_timeout: float = 30,
    addressing_style: str = "path",
) -> S3Client:
    """An S3 client with botocore's standard retries (backoff, throttling, 5xx) and timeouts.

    Credentials, region and (unless given) the endpoint come from boto3's own environment
    variables, so nothing here reads os.environ. A fresh Session per client because sessions are
    not thread-safe while clients are.
    """
    config = s3_client_config(
        max_attempts=max_attempts,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        addressing_style=addressing_style,
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


def s3_client_config(
    *, max_attempts: int = 5, connect_timeout: float = 5, read_timeout: float = 30, addressing_style: str = "path"
) -> Config:
    """botocore configuration shared by every S3 client of the project (and the Dagster resource)."""
    return Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        s3={"addressing_style": addressing_style},
        signature_version="s3v4",
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        # Browsers PUT to presigned URLs without SDK checksum headers, and several MinIO releases
        # reject botocore's newer default checksums: compute them only where S3 requires them.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


# Error codes S3 and compatible servers use for "slow down / try later".
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InternalError",
        "ServiceUnavailable",
        "429",
    }
)
_DENIED_CODES = frozenset({"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"})
# HTTP and connection failures botocore has already retried: connection refused or reset, DNS,
# connect/read timeouts, closed connections, streams that broke mid-body.
_TRANSIENT_EXCEPTIONS = (BotoConnectionError, HTTPClientError, IncompleteReadError)

# How long a successful head_bucket vouches for the bucket when a HEAD 404 needs interpreting.
_BUCKET_CONFIRMATION_SECONDS = 60.0


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


class S3ObjectStore:
    """Objects in an S3 bucket; reads and writes via `client`, presigned URLs via `presign_client`.

    The two clients differ when browsers reach the bucket under another name than this process
    does (a public endpoint in front of an internal MinIO): a SigV4 signature covers the host.
    """

    def __init__(self, client: S3Client, bucket: str, *, presign_client: S3Client | None = None) -> None:
        if not bucket:
            raise ValueError("an S3 object store needs a bucket name")
        self.client = client
        self.bucket = bucket
        self.presign_client = presign_client if presign_client is not None else client
        self._bucket_confirmed_at: float | None = None
        self._lock = threading.Lock()

    # -- description and health ----------------------------------------------------------------

    def describe(self) -> str:
        return f"s3://{self.bucket} (endpoint {_without_userinfo(self.client.meta.endpoint_url)})"

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            raise self._bucket_error("check", None, exc) from exc
        except BotoCoreError as exc:
            raise self._translate("check", None, exc) from exc
        self._remember_bucket_exists()

    # -- objects ---------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, content_type: str) -> None:
        _check_s3_key(key)
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise self._translate("put", key, exc) from exc

    def get(self, key: str) -> bytes:
        _check_s3_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            # Reading the body can still time out or break; it belongs to the same operation.
            return response["Body"].read()
        except ClientError as exc:
            raise self._not_found_or_error("get", key, exc) from exc
        except BotoCoreError as exc:
            raise self._translate("get", key, exc) from exc

    def download(self, key: str, out: BinaryIO, max_bytes: int) -> int:
        """Stream the object into `out` a chunk at a time; never more than max_bytes are read."""
        _check_s3_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"]
            try:
                declared = int(response.get("ContentLength", 0))
                if declared > max_bytes:
                    raise ObjectTooLarge(key, declared, max_bytes)
                return _copy_bounded(body.iter_chunks(_COPY_CHUNK), out, key, max_bytes)
            finally:
                body.close()  # unread bytes are dropped with the connection, not downloaded
        except ClientError as exc:
            raise self._not_found_or_error("get", key, exc) from exc
        except BotoCoreError as exc:
            raise self._translate("get", key, exc) from exc

    def head(self, key: str) -> ObjectInfo:
        _check_s3_key(key)
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            raise self._not_found_or_error("head", key, exc) from exc
        except BotoCoreError as exc:
            raise self._translate("head", key, exc) from exc
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            last_modified=_utc(response["LastModified"]),
            etag=response.get("ETag"),
            content_type=response.get("ContentType"),
        )

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        _check_s3_key(key)
        try:
            # S3 answers 204 for absent keys too, which is the idempotence we want.
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise self._translate("delete", key, exc) from exc

    def delete_many(self, keys: Iterable[str]) -> None:
        failures: list[str] = []
        total = 0
        # DeleteObjects takes at most 1000 keys per request.
        for chunk in _chunks(keys, 1000):
            for key in chunk:
                _check_s3_key(key)
            total += len(chunk)
            failures.extend(self._delete_chunk(chunk))
        if failures:
            raise StorageError(_failures_message("delete_many", f"s3://{self.bucket}", failures, total))

    def _delete_chunk(self, chunk: list[str]) -> list[str]:
        request = {"Objects": [{"Key": key} for key in chunk], "Quiet": True}
        try:
            response = self.client.delete_objects(Bucket=self.bucket, Delete=request)
        except (ClientError, BotoCoreError) as exc:
            raise self._translate("delete_many", f"{chunk[0]} (+{len(chunk) - 1} more)", exc) from exc
        return [f"{error.get('Key')} ({error.get('Code')})" for error in response.get("Errors", [])]

    # -- listing ---------------------------------------------------------------------------------

    def list_page(self, prefix: str, *, start_after: str | None = None, limit: int = 1000) -> list[ObjectInfo]:
        """Up to `limit` objects after `start_after`; fewer only at the end of the listing.

        S3 lists in UTF-8 binary order. A server may return a short page mid-listing, so this
        keeps asking (via the continuation token) until the page is full or the listing ends:
        callers rely on "short page = the end".
        """
        _check_limit(limit)
        objects: list[ObjectInfo] = []
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        # Resuming after a key with control characters: ask from its safe prefix and drop what
        # is not after the key (code point order is UTF-8 byte order, S3's order).
        resume_from = listing_start_after(start_after) if start_after else None
        if resume_from:
            request["StartAfter"] = resume_from
        while len(objects) < limit:
            request["MaxKeys"] = min(1000, limit - len(objects))
            try:
                response = self.client.list_objects_v2(**request)
            except (ClientError, BotoCoreError) as exc:
                raise self._translate("list", f"{prefix}*", exc) from exc
            listed = (_listed(item) for item in response.get("Contents", []))
            if start_after and resume_from != start_after:
                listed = (obj for obj in listed if obj.key > start_after)
            objects.extend(listed)
            if not response.get("IsTruncated"):
                break
            request["ContinuationToken"] = response["NextContinuationToken"]
        return objects

    def iter_objects(
        self, prefix: str, *, start_after: str | None = None, page_size: int = 1000
    ) -> Iterator[ObjectInfo]:
        return _iter_pages(self, prefix, start_after, page_size)

    # -- presigned uploads -----------------------------------------------------------------------

    def presign_put(
        self, key: str, content_type: str, expires_in: int, *, content_length: int | None = None
    ) -> PresignedUpload:
        """A URL the browser PUTs to directly; ContentType is part of the signature, so the
        bucket rejects a body sent with any other Content-Type (403 SignatureDoesNotMatch).
        With `content_length`, Content-Length is signed too (X-Amz-SignedHeaders), so S3 and MinIO
        refuse a body of any other size. `If-None-Match: *` is signed as well: S3 (since 2024) and
        MinIO then refuse a second PUT to the key (412), so a leaked or replayed URL cannot put
        new bytes over a photo that was already uploaded."""
        _check_s3_key(key)
        _check_presign_args(content_type, expires_in)
        _check_content_length(content_length)
        expires_at = datetime.fromtimestamp(time.time() + expires_in, UTC)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "ContentType": content_type, "IfNoneMatch": "*"}
        headers = {"Content-Type": content_type, "If-None-Match": "*"}
        if content_length is not None:
            params["ContentLength"] = content_length
            headers["Content-Length"] = str(content_length)
        try:
            url = self.presign_client.generate_presigned_url(
                "put_object",
                Params=params,
                ExpiresIn=expires_in,
                HttpMethod="PUT",
            )
        except BotoCoreError as exc:  # e.g. no credentials to sign with
            raise self._translate("presign_put", key, exc) from exc
        return PresignedUpload(url=url, method="PUT", headers=headers, expires_at=expires_at)

    # -- error translation -----------------------------------------------------------------------

    def _where(self, key: str | None) -> str:
        return f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}"

    def _translate(self, operation: str, key: str | None, exc: ClientError | BotoCoreError) -> StorageError:
        """Map a boto error onto our exceptions. Messages carry the operation, bucket and key,
        and the server's error code; never the client's credentials."""
        where = self._where(key)
        if isinstance(exc, ClientError):
            code, status = _error_code(exc), _http_status(exc)
            detail = f"{code or 'HTTP ' + str(status)}: {exc.response.get('Error', {}).get('Message', '')}".rstrip(": ")
            if code == "NoSuchBucket":
                return StorageError(f"{operation} {where} failed: bucket {self.bucket!r} does not exist")
            if code in _TRANSIENT_CODES or status >= 500 or status == 429:
                return StorageUnavailable(f"{operation} {where} failed after retries: {detail}")
            if code in _DENIED_CODES or status == 403:
                return StorageError(f"{operation} {where} failed: access denied ({detail})")
            return StorageError(f"{operation} {where} failed: {detail}")
        if isinstance(exc, _TRANSIENT_EXCEPTIONS):
            return StorageUnavailable(f"{operation} {where} failed after retries: {exc}")
        return StorageError(f"{operation} {where} failed: {exc}")

    def _not_found_or_error(self, operation: str, key: str, exc: ClientError) -> StorageError:
        code, status = _error_code(exc), _http_status(exc)
        if code == "NoSuchKey":
            return ObjectNotFound(key, f"no object {key!r} in s3://{self.bucket}")
        if code not in ("404", "NotFound") and status != 404:
            return self._translate(operation, key, exc)
        # A HEAD response has no body, so a missing bucket and a missing key both arrive as a bare
        # 404. Only a bucket known to exist turns that into "no such key".
        self._confirm_bucket(operation, key)
        return ObjectNotFound(key, f"no object {key!r} in s3://{self.bucket}")

    def _confirm_bucket(self, operation: str, key: str) -> None:
        with self._lock:
            confirmed_at = self._bucket_confirmed_at
        if confirmed_at is not None and time.monotonic() - confirmed_at < _BUCKET_CONFIRMATION_SECONDS:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            raise self._bucket_error(operation, key, exc) from exc
        except BotoCoreError as exc:
            raise self._translate(operation, key, exc) from exc
        self._remember_bucket_exists()

    def _bucket_error(self, operation: str, key: str | None, exc: ClientError) -> StorageError:
        # head_bucket has no body either: its 404 is the bucket's own absence.
        if _http_status(exc) == 404 or _error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
            return StorageError(f"{operation} {self._where(key)} failed: bucket {self.bucket!r} does not exist")
        return self._translate(operation, key, exc)

    def _remember_bucket_exists(self) -> None:
        with self._lock:
            self._bucket_confirmed_at = time.monotonic()


def _check_s3_key(key: str) -> None:
    # Any non-empty string is a valid S3 key, including shapes the local store refuses: objects
    # that others put in the bucket must stay readable and deletable.
    if not key:
        raise ValueError("object key must not be empty")


def _listed(item: Mapping[str, Any]) -> ObjectInfo:
    return ObjectInfo(
        key=item["Key"],
        size=int(item["Size"]),
        last_modified=_utc(item["LastModified"]),
        etag=item.get("ETag"),
    )


# ---------------------------------------------------------------------------------------------
# Local folder


_KEY_FILE = ".presign-key"
_TEMP_DIR = ".tmp"
# Names at the root that belong to the store itself; keys may not start with them.
_RESERVED = frozenset({_KEY_FILE, _TEMP_DIR})
# Where the Content-Type travels with the file (Linux user xattr), so it is replaced atomically
# together with the bytes. Where xattrs are unavailable, head() guesses from the extension.
_CONTENT_TYPE_XATTR = "user.photo_pipeline.content_type"
_COPY_CHUNK = 1024 * 1024
# A temp file under .tmp untouched for this long was left by a killed write (see remove_stale_temp_files).
STALE_TEMP_SECONDS = 24 * 3600


def validate_local_key(key: str) -> str:
    """Refuse keys that could leave the root or alias another key on disk."""
    if not key:
        raise ValueError("object key must not be empty")
    if "\\" in key or "\x00" in key:
        raise ValueError(f"object key {key!r} contains a backslash or NUL")
    if key.startswith("/"):
        raise ValueError(f"object key {key!r} is an absolute path")
    segments = key.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise ValueError(f"object key {key!r} has an empty, '.' or '..' segment")
    if segments[0] in _RESERVED:
        raise ValueError(f"object key {key!r} uses a name reserved by the store")
    return key


class LocalObjectStore:
    """Objects as files under `root`: the embedded mode's bucket.

    Writes go to a temp file under root/.tmp and are renamed into place, so readers see the old
    object or the new one, never half of one. Presigned URLs are file:// URLs with an HMAC
    signature; `accept_presigned_put` plays the part S3 plays when a browser PUTs to one.
    """

    def __init__(self, root: Path, signing_key: bytes | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        try:
            (self.root / _TEMP_DIR).mkdir(parents=True, exist_ok=True)
            self._signing_key = signing_key if signing_key is not None else _load_or_create_signing_key(self.root)
        except OSError as exc:
            raise StorageError(f"cannot prepare folder {self.root}: {exc.strerror or exc}") from exc
        if not self._signing_key:
            raise ValueError("signing_key must not be empty")
        # Killed uploads leave their partial temp file behind; every start-up sweeps the old ones.
        self.remove_stale_temp_files()

    # -- description and health ----------------------------------------------------------------

    def describe(self) -> str:
        return f"folder {self.root}"

    def check(self) -> None:
        if not self.root.is_dir():
            raise StorageError(f"check folder {self.root} failed: it does not exist or is not a folder")
        try:
            with tempfile.NamedTemporaryFile(dir=self.root / _TEMP_DIR, prefix="check-"):
                pass
        except OSError as exc:
            raise StorageError(f"check folder {self.root} failed: cannot write ({exc.strerror or exc})") from exc

    # -- objects ---------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._write(validate_local_key(key), _BytesReader(data), content_type)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key, f"no object {key!r} in folder {self.root}") from None
        except OSError as exc:
            raise self._error("get", key, exc) from exc

    def download(self, key: str, out: BinaryIO, max_bytes: int) -> int:
        """Copy the file into `out` a chunk at a time; never more than max_bytes are read."""
        path = self._path(key)
        try:
            with path.open("rb") as source:
                size = os.fstat(source.fileno()).st_size
                if size > max_bytes:
                    raise ObjectTooLarge(key, size, max_bytes)
                return _copy_bounded(iter(lambda: source.read(_COPY_CHUNK), b""), out, key, max_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key, f"no object {key!r} in folder {self.root}") from None
        except OSError as exc:
            raise self._error("get", key, exc) from exc

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key, f"no object {key!r} in folder {self.root}") from None
        except OSError as exc:
            raise self._error("head", key, exc) from exc
        if not path.is_file():
            raise ObjectNotFound(key, f"no object {key!r} in folder {self.root}")
        return _info(key, stat, _read_content_type(path, key))

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except IsADirectoryError:
            return  # a "folder" is not an object: nothing to delete under this exact key
        except OSError as exc:
            raise self._error("delete", key, exc) from exc
        self._prune_empty_parents(path.parent)

    def delete_many(self, keys: Iterable[str]) -> None:
        failures: list[str] = []
        total = 0
        for key in keys:
            total += 1
            try:
                self.delete(key)
            except StorageError as exc:
                failures.append(f"{key} ({exc.__cause__ or exc})")
        if failures:
            raise StorageError(_failures_message("delete_many", f"folder {self.root}", failures, total))

    # -- listing ---------------------------------------------------------------------------------

    def list_page(self, prefix: str, *, start_after: str | None = None, limit: int = 1000) -> list[ObjectInfo]:
        _check_limit(limit)
        page: list[ObjectInfo] = []
        try:
            for key, entry in _walk(self.root, "", prefix, start_after):
                try:
                    page.append(_info(key, entry.stat(follow_symlinks=False), None))
                except FileNotFoundError:
                    continue  # deleted while we were listing
                if len(page) == limit:
                    break
        except OSError as exc:
            raise self._error("list", f"{prefix}*", exc) from exc
        return page

    def iter_objects(
        self, prefix: str, *, start_after: str | None = None, page_size: int = 1000
    ) -> Iterator[ObjectInfo]:
        return _iter_pages(self, prefix, start_after, page_size)

    # -- presigned uploads -----------------------------------------------------------------------

    def presign_put(
        self, key: str, content_type: str, expires_in: int, *, content_length: int | None = None
    ) -> PresignedUpload:
        path = self._path(key)
        _check_presign_args(content_type, expires_in)
        _check_content_length(content_length)
        expires = int(time.time()) + expires_in
        fields = {"X-Expires": str(expires), "X-Content-Type": content_type}
        # Like the S3 store's signed If-None-Match: a presigned PUT never replaces an object here.
        headers = {"Content-Type": content_type, "If-None-Match": "*"}
        if content_length is not None:
            fields["X-Content-Length"] = str(content_length)
            headers["Content-Length"] = str(content_length)
        fields["X-Signature"] = self._signature(key, content_type, expires, content_length)
        return PresignedUpload(
            url=f"{path.as_uri()}?{urlencode(fields)}",
            method="PUT",
            headers=headers,
            expires_at=datetime.fromtimestamp(expires, UTC),
        )

    def accept_presigned_put(self, url: str, body: bytes | BinaryIO, headers: Mapping[str, str]) -> None:
        """Verify a presigned PUT as S3 would (signature over key, type and expiry; expiry; the
        Content-Type actually sent), then store the body."""
        key, content_type, expires, content_length = self._verified_presigned(url)
        if time.time() > expires:
            when = datetime.fromtimestamp(expires, UTC).isoformat()
            raise PresignedUploadRejected(f"presigned upload URL for {key!r} expired at {when}")
        sent = _header(headers, "Content-Type")
        if sent != content_type:
            raise PresignedUploadRejected(
                f"presigned upload for {key!r} was signed for Content-Type {content_type!r} but sent {sent!r}"
            )
        reader = _BytesReader(body) if isinstance(body, bytes | bytearray | memoryview) else body
        if content_length is not None:
            # As S3 does with a signed Content-Length: a body of any other size is refused, and
            # nothing beyond the signed length is ever read.
            reader = _ExactLengthReader(reader, content_length, key)
        self._write(key, reader, content_type, replace=False)

    def _verified_presigned(self, url: str) -> tuple[str, str, int, int | None]:
        parts = urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise PresignedUploadRejected(f"not a presigned URL of folder {self.root}: {parts.scheme}://{parts.netloc}")
        key = self._key_from_url_path(unquote(parts.path))
        query = parse_qs(parts.query, keep_blank_values=True)
        values = {name: query.get(name, []) for name in ("X-Expires", "X-Content-Type", "X-Signature")}
        if any(len(found) != 1 for found in values.values()):
            raise PresignedUploadRejected(f"presigned URL for {key!r} lacks X-Expires, X-Content-Type or X-Signature")
        try:
            expires = int(values["X-Expires"][0])
        except ValueError:
            raise PresignedUploadRejected(f"presigned URL for {key!r} has an unreadable X-Expires") from None
        content_type = values["X-Content-Type"][0]
        content_length = _signed_length(query.get("X-Content-Length", []), key)
        expected = self._signature(key, content_type, expires, content_length)
        if not hmac.compare_digest(expected, values["X-Signature"][0]):
            raise PresignedUploadRejected(
                f"presigned URL for {key!r} has a bad signature (tampered with, or signed by another store)"
            )
        return key, content_type, expires, content_length

    def _key_from_url_path(self, path: str) -> str:
        try:
            relative = PurePosixPath(path).relative_to(PurePosixPath(self.root.as_posix()))
        except ValueError:
            raise PresignedUploadRejected(f"presigned URL points outside folder {self.root}") from None
        try:
            return validate_local_key(relative.as_posix())
        except ValueError as exc:
            raise PresignedUploadRejected(f"presigned URL names an unusable key: {exc}") from None

    def _signature(self, key: str, content_type: str, expires: int, content_length: int | None = None) -> str:
        parts = ["PUT", key, content_type, str(expires)]
        if content_length is not None:
            # Only when signed, so URLs issued before lengths were signed still verify.
            parts.append(f"length={content_length}")
        message = "\n".join(parts).encode("utf-8")
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()

    # -- housekeeping ----------------------------------------------------------------------------

    def remove_stale_temp_files(self, older_than_seconds: float = STALE_TEMP_SECONDS) -> list[str]:
        """Delete temp files under root/.tmp last modified more than `older_than_seconds` ago:
        what a killed upload or a crashed write left behind. Returns their names. Live writes
        touch their file continuously, so a day-old one belongs to nobody."""
        cutoff = time.time() - older_than_seconds
        removed: list[str] = []
        temp_dir = self.root / _TEMP_DIR
        try:
            entries = list(os.scandir(temp_dir))
        except OSError as exc:
            raise StorageError(f"cannot list {temp_dir}: {exc.strerror or exc}") from exc
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:
                continue  # finished (renamed into place) or removed by another process meanwhile
            except OSError as exc:
                raise StorageError(f"cannot remove stale temp file {entry.path}: {exc.strerror or exc}") from exc
            removed.append(entry.name)
        return removed

    # -- files -----------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root / validate_local_key(key)

    def _error(self, operation: str, key: str, exc: OSError) -> StorageError:
        return StorageError(f"{operation} {key!r} in folder {self.root} failed: {exc.strerror or exc}")

    def _write(self, key: str, reader: BinaryIO | _BytesReader, content_type: str, *, replace: bool = True) -> None:
        target = self.root / key
        try:
            temp = self._write_temp(reader, content_type)
        except OSError as exc:
            raise self._error("put", key, exc) from exc
        try:
            self._move_into_place(temp, target, replace=replace)
        except FileExistsError:
            temp.unlink(missing_ok=True)
            raise UploadTargetExists(
                f"presigned upload for {key!r} refused: the object already exists (If-None-Match: *); "
                "a presigned URL never replaces an uploaded photo"
            ) from None
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise self._error("put", key, exc) from exc

    def _write_temp(self, reader: BinaryIO | _BytesReader, content_type: str) -> Path:
        fd, name = tempfile.mkstemp(dir=self.root / _TEMP_DIR, prefix="put-")
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := reader.read(_COPY_CHUNK):
                    out.write(chunk)
                out.flush()
                # Durable before it becomes visible: a crash must not leave an empty object.
                os.fsync(out.fileno())
            os.chmod(temp, 0o644)  # mkstemp makes 0600; objects are ordinary files
            _write_content_type(temp, content_type)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        return temp

    def _move_into_place(self, temp: Path, target: Path, *, replace: bool = True) -> None:
        # A concurrent delete may prune the (empty) parent between mkdir and replace; try again.
        for attempt in range(3):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                if replace:
                    os.replace(temp, target)
                else:
                    # link() fails atomically if the target exists: no check-then-write race.
                    os.link(temp, target)
                    temp.unlink()
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise

    def _prune_empty_parents(self, folder: Path) -> None:
        # S3 has no folders; leaving empty ones behind would slow every later listing.
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent


class _ExactLengthReader:
    """Reads exactly `length` bytes from a body, or raises PresignedUploadRejected: shorter and
    longer bodies alike are refused, and no byte past `length` + 1 is read."""

    def __init__(self, reader: BinaryIO | _BytesReader, length: int, key: str) -> None:
        self._reader = reader
        self._left = length
        self._length = length
        self._key = key

    def read(self, size: int = -1) -> bytes:
        if self._left == 0:
            if self._reader.read(1):
                raise PresignedUploadRejected(
                    f"presigned upload for {self._key!r} was signed for {self._length:,} bytes but the body is longer"
                )
            return b""
        wanted = self._left if size < 0 else min(size, self._left)
        chunk = self._reader.read(wanted)
        if not chunk:
            raise PresignedUploadRejected(
                f"presigned upload for {self._key!r} was signed for {self._length:,} bytes but the body "
                f"ended after {self._length - self._left:,}"
            )
        self._left -= len(chunk)
        return chunk


def _signed_length(values: list[str], key: str) -> int | None:
    if not values:
        return None
    if len(values) != 1 or not values[0].isdigit():
        raise PresignedUploadRejected(f"presigned URL for {key!r} has an unreadable X-Content-Length")
    return int(values[0])


class _BytesReader:
    """bytes with a read(n) method, so bytes and file bodies share one copy loop."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._data = memoryview(data)
        self._offset = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._offset + size
        chunk = bytes(self._data[self._offset : end])
        self._offset += len(chunk)
        return chunk


def _walk(folder: Path, folder_key: str, prefix: str, start_after: str | None) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Files under folder in lexicographic key order, with key > start_after and under prefix.

    Sorting each folder's entries with folders spelled "name/" yields the keys in exactly the
    order a flat sort of full keys would ("a-b" < "a/c" because "-" < "/"). Python compares
    strings by code point, which is the UTF-8 byte order S3 uses.
    """
    entries: list[tuple[str, os.DirEntry[str], bool]] = []
    with os.scandir(folder) as scan:
        for entry in scan:
            if not folder_key and entry.name in _RESERVED:
                continue
            if "\\" in entry.name:
                continue  # not addressable as a key here; it was not put through this store
            if entry.is_dir(follow_symlinks=False):
                entries.append((f"{folder_key}{entry.name}/", entry, True))
            elif entry.is_file(follow_symlinks=False):
                entries.append((f"{folder_key}{entry.name}", entry, False))
    entries.sort(key=lambda item: item[0])
    for key, entry, is_folder in entries:
        if is_folder:
            if _may_hold(key, prefix, start_after):
                yield from _walk(Path(entry.path), key, prefix, start_after)
        elif key.startswith(prefix) and (start_after is None or key > start_after):
            yield key, entry


def _may_hold(folder_key: str, prefix: str, start_after: str | None) -> bool:
    """Whether a folder can hold keys under prefix that sort after start_after."""
    if not (folder_key.startswith(prefix) or prefix.startswith(folder_key)):
        return False
    # Every key inside starts with folder_key; if start_after is past that whole range, skip it.
    return start_after is None or start_after < folder_key or start_after.startswith(folder_key)


def _info(key: str, stat: os.stat_result, content_type: str | None) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=stat.st_size,
        last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
        # Not an MD5 like S3's: cheap, and it changes whenever the file is replaced.
        etag=f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"',
        content_type=content_type,
    )


def _write_content_type(path: Path, content_type: str) -> None:
    setxattr = getattr(os, "setxattr", None)  # Linux only
    if setxattr is None:
        return
    with contextlib.suppress(OSError):  # filesystems without user xattrs: head() will guess
        setxattr(path, _CONTENT_TYPE_XATTR, content_type.encode("utf-8"))


def _read_content_type(path: Path, key: str) -> str | None:
    getxattr = getattr(os, "getxattr", None)
    if getxattr is not None:
        with contextlib.suppress(OSError):
            return getxattr(path, _CONTENT_TYPE_XATTR).decode("utf-8")
    return mimetypes.guess_type(key)[0]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # HTTP header names are case-insensitive; browsers and requests spell them differently.
    wanted = name.lower()
    return next((value for header, value in headers.items() if header.lower() == wanted), None)


def _load_or_create_signing_key(root: Path) -> bytes:
    """The folder's HMAC key, created once, so presigned URLs outlive a restart.

    A new key is written to a temp file and hard-linked into place: linking fails if the file
    exists, so two processes starting together agree on one key and nobody reads half a file.
    """
    path = root / _KEY_FILE
    if not path.exists():
        fd, name = tempfile.mkstemp(dir=root / _TEMP_DIR, prefix="key-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32))
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(name, path)
        finally:
            os.unlink(name)
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        key = b""
    if len(key) < 16:
        raise StorageError(f"signing key file {path} is damaged; delete it to make a new one")
    return key


# ---------------------------------------------------------------------------------------------
# Construction from settings


def build_object_store(
    settings: Settings, *, client: S3Client | None = None, presign_client: S3Client | None = None
) -> ObjectStore:
    """The S3 store when a bucket is configured, else the embedded folder store."""
    if settings.bucket is None:
        return LocalObjectStore(settings.objects_dir)
    client = client if client is not None else make_s3_client()
    if presign_client is None:
        presign_client = make_s3_client(endpoint_url=settings.public_endpoint_url) if settings.public_endpoint_url else client
    return S3ObjectStore(client, settings.bucket, presign_client=presign_client)
