"""S3 (and S3-compatible: MinIO, Supabase Storage) as the object store, through boto3.

botocore's standard retry mode absorbs throttling and 5xx answers; what is left is translated into
the store's errors, so that `ObjectNotFound` only ever means "not in a bucket that exists".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from photo_pipeline.storage.keys import listing_start_after
from photo_pipeline.storage.store import (
    COPY_CHUNK,
    ObjectInfo,
    ObjectNotFound,
    ObjectTooLarge,
    PresignedDownload,
    PresignedUpload,
    StorageAccessDenied,
    StorageError,
    StorageTimeout,
    StorageUnavailable,
    check_content_length,
    check_expiry,
    check_folder_prefix,
    check_limit,
    check_presign_args,
    chunks,
    copy_bounded,
    failures_message,
    iter_pages,
    utc,
    without_userinfo,
)

# boto3 clients are generated at run time; without the optional stubs package they are `Any`.
S3Client = Any


@dataclass(frozen=True)
class S3Timeouts:
    """A bound on one call to the bucket, for callers someone waits on (an HTTP request, a health
    probe): seconds to connect, seconds to wait for each answer, and attempts in all (the first
    included; botocore's standard mode retries the others with backoff)."""

    connect: float
    read: float
    attempts: int

    def __post_init__(self) -> None:
        if self.connect <= 0 or self.read <= 0 or self.attempts < 1:
            raise ValueError(f"S3 timeouts must be positive with at least one attempt, got {self}")


def make_s3_client(
    *,
    endpoint_url: str | None = None,
    max_attempts: int = 5,
    connect_timeout: float = 5,
    read_timeout: float = 30,
    addressing_style: str = "path",
    timeouts: S3Timeouts | None = None,
) -> S3Client:
    """An S3 client with botocore's standard retries (backoff, throttling, 5xx) and timeouts;
    `timeouts`, when given, bounds every call instead (see S3Timeouts).

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
    if timeouts is not None:
        config = config.merge(
            Config(
                connect_timeout=timeouts.connect,
                read_timeout=timeouts.read,
                # total_max_attempts counts the first attempt (max_attempts counts only retries).
                retries={"mode": "standard", "total_max_attempts": timeouts.attempts},
            )
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
        return f"s3://{self.bucket} (endpoint {without_userinfo(self.client.meta.endpoint_url)})"

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

    def download(
        self, key: str, out: BinaryIO, max_bytes: int, *, on_headers: Callable[[ObjectInfo], None] | None = None
    ) -> int:
        """Stream the object into `out` a chunk at a time; never more than max_bytes are read. The
        GET's own headers (size, ETag) are checked, and given to `on_headers`, before the body."""
        _check_s3_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"]
            try:
                info = _fetched(key, response)
                if info.size > max_bytes:
                    raise ObjectTooLarge(key, info.size, max_bytes)
                if on_headers is not None:
                    on_headers(info)
                return copy_bounded(body.iter_chunks(COPY_CHUNK), out, key, max_bytes)
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
        return _fetched(key, response)

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
        for chunk in chunks(keys, 1000):
            for key in chunk:
                _check_s3_key(key)
            total += len(chunk)
            failures.extend(self._delete_chunk(chunk))
        if failures:
            raise StorageError(failures_message("delete_many", f"s3://{self.bucket}", failures, total))

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
        check_limit(limit)
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
        return iter_pages(self, prefix, start_after, page_size)

    def list_folders(self, prefix: str) -> list[str]:
        """The "folders" right under `prefix` (which ends in '/'): S3's CommonPrefixes with the
        delimiter '/', each ending in '/', in key order. Reads no object of theirs."""
        check_folder_prefix(prefix)
        folders: list[str] = []
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/"}
        while True:
            try:
                response = self.client.list_objects_v2(**request)
            except (ClientError, BotoCoreError) as exc:
                raise self._translate("list", f"{prefix}*/", exc) from exc
            folders.extend(common["Prefix"] for common in response.get("CommonPrefixes", []))
            if not response.get("IsTruncated"):
                return folders
            request["ContinuationToken"] = response["NextContinuationToken"]

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
        check_presign_args(content_type, expires_in)
        check_content_length(content_length)
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

    def presign_get(self, key: str, expires_in: int) -> PresignedDownload:
        """A short-lived URL a browser GETs the object from (a thumbnail in an <img>), signed
        for the public endpoint like the PUTs."""
        _check_s3_key(key)
        check_expiry(expires_in)
        expires_at = datetime.fromtimestamp(time.time() + expires_in, UTC)
        try:
            url = self.presign_client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in, HttpMethod="GET"
            )
        except BotoCoreError as exc:
            raise self._translate("presign_get", key, exc) from exc
        return PresignedDownload(url=url, expires_at=expires_at)

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
                return StorageAccessDenied(f"{operation} {where} failed: access denied ({detail})")
            return StorageError(f"{operation} {where} failed: {detail}")
        if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
            return StorageTimeout(f"{operation} {where} timed out: {self._patience(exc)}")
        if isinstance(exc, _TRANSIENT_EXCEPTIONS):
            return StorageUnavailable(f"{operation} {where} failed after retries: {exc}")
        return StorageError(f"{operation} {where} failed: {exc}")

    def _patience(self, exc: ConnectTimeoutError | ReadTimeoutError) -> str:
        """How long the client waited, from its own configuration: what an operator tunes."""
        config = self.client.meta.config
        attempts = _attempts(config.retries or {})
        tries = f", {attempts} attempt{'s' if attempts != 1 else ''}" if attempts else ""
        endpoint = without_userinfo(self.client.meta.endpoint_url)
        if isinstance(exc, ConnectTimeoutError):
            return f"could not connect to {endpoint} within {config.connect_timeout:g} s{tries}"
        return f"no answer from {endpoint} within {config.read_timeout:g} s{tries}"

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


def _attempts(retries: Mapping[str, Any]) -> int | None:
    if "total_max_attempts" in retries:
        return int(retries["total_max_attempts"])
    if "max_attempts" in retries:
        return int(retries["max_attempts"]) + 1  # botocore's max_attempts counts the retries only
    return None


def _check_s3_key(key: str) -> None:
    # Any non-empty string is a valid S3 key, including shapes the local store refuses: objects
    # that others put in the bucket must stay readable and deletable.
    if not key:
        raise ValueError("object key must not be empty")


def _fetched(key: str, response: Mapping[str, Any]) -> ObjectInfo:
    """What a HEAD's or a GET's response headers say of the object."""
    return ObjectInfo(
        key=key,
        size=int(response.get("ContentLength", 0)),
        last_modified=utc(response["LastModified"]),
        etag=response.get("ETag"),
        content_type=response.get("ContentType"),
    )


def _listed(item: Mapping[str, Any]) -> ObjectInfo:
    return ObjectInfo(
        key=item["Key"],
        size=int(item["Size"]),
        last_modified=utc(item["LastModified"]),
        etag=item.get("ETag"),
    )


