"""The embedded mode's bucket: objects as files in a folder, with S3's rules where they matter.

Writes are atomic (temp file, then rename); presigned URLs are file:// URLs signed with an HMAC
key kept in the folder, and `accept_presigned_put` enforces what S3 enforces on a presigned PUT.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import mimetypes
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from photo_pipeline.storage.store import (
    COPY_CHUNK,
    ObjectInfo,
    ObjectNotFound,
    ObjectTooLarge,
    PresignedDownload,
    PresignedUpload,
    PresignedUploadRejected,
    StorageAccessDenied,
    StorageError,
    UploadTargetExists,
    check_content_length,
    check_expiry,
    check_folder_prefix,
    check_limit,
    check_presign_args,
    copy_bounded,
    failures_message,
    iter_pages,
)

_KEY_FILE = ".presign-key"
_TEMP_DIR = ".tmp"
# Names at the root that belong to the store itself; keys may not start with them.
_RESERVED = frozenset({_KEY_FILE, _TEMP_DIR})
# Where the Content-Type travels with the file (Linux user xattr), so it is replaced atomically
# together with the bytes. Where xattrs are unavailable, head() guesses from the extension.
_CONTENT_TYPE_XATTR = "user.photo_pipeline.content_type"
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

    def download(
        self, key: str, out: BinaryIO, max_bytes: int, *, on_headers: Callable[[ObjectInfo], None] | None = None
    ) -> int:
        """Copy the file into `out` a chunk at a time; never more than max_bytes are read. The open
        file's own size and date (what S3's GET headers would say) go to `on_headers` first."""
        path = self._path(key)
        try:
            with path.open("rb") as source:
                stat = os.fstat(source.fileno())
                if stat.st_size > max_bytes:
                    raise ObjectTooLarge(key, stat.st_size, max_bytes)
                if on_headers is not None:
                    on_headers(_info(key, stat, _read_content_type(path, key)))
                return copy_bounded(iter(lambda: source.read(COPY_CHUNK), b""), out, key, max_bytes)
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
            raise StorageError(failures_message("delete_many", f"folder {self.root}", failures, total))

    # -- listing ---------------------------------------------------------------------------------

    def list_page(self, prefix: str, *, start_after: str | None = None, limit: int = 1000) -> list[ObjectInfo]:
        check_limit(limit)
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
        return iter_pages(self, prefix, start_after, page_size)

    def list_folders(self, prefix: str) -> list[str]:
        """The folders right under `prefix` (which ends in '/') that hold files, each ending in
        '/', in key order: what S3 answers as CommonPrefixes."""
        check_folder_prefix(prefix)
        folder = self.root / prefix if prefix != "/" else self.root
        try:
            with os.scandir(folder) as scan:
                names = [entry.name for entry in scan if entry.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise self._error("list", f"{prefix}*/", exc) from exc
        reserved = _RESERVED if not prefix.strip("/") else ()
        return sorted(f"{prefix}{name}/" for name in names if name not in reserved and "\\" not in name)

    # -- presigned uploads -----------------------------------------------------------------------

    def presign_put(
        self, key: str, content_type: str, expires_in: int, *, content_length: int | None = None
    ) -> PresignedUpload:
        path = self._path(key)
        check_presign_args(content_type, expires_in)
        check_content_length(content_length)
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

    def presign_get(self, key: str, expires_in: int) -> PresignedDownload:
        """A signed file:// URL for reading one object; `verify_presigned_get` checks it. Whoever
        serves the folder over HTTP (the API) relays it, as it relays presigned PUTs."""
        path = self._path(key)
        check_expiry(expires_in)
        expires = int(time.time()) + expires_in
        fields = {"X-Expires": str(expires), "X-Signature": self._get_signature(key, expires)}
        return PresignedDownload(url=f"{path.as_uri()}?{urlencode(fields)}", expires_at=datetime.fromtimestamp(expires, UTC))

    def verify_presigned_get(self, url: str) -> str:
        """The key a presigned GET URL grants, or PresignedUploadRejected (bad signature, expired)."""
        parts = urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise PresignedUploadRejected(f"not a presigned URL of folder {self.root}: {parts.scheme}://{parts.netloc}")
        key = self._key_from_url_path(unquote(parts.path))
        query = parse_qs(parts.query, keep_blank_values=True)
        expires_values, signatures = query.get("X-Expires", []), query.get("X-Signature", [])
        if len(expires_values) != 1 or len(signatures) != 1:
            raise PresignedUploadRejected(f"presigned URL for {key!r} lacks X-Expires or X-Signature")
        try:
            expires = int(expires_values[0])
        except ValueError:
            raise PresignedUploadRejected(f"presigned URL for {key!r} has an unreadable X-Expires") from None
        if not hmac.compare_digest(self._get_signature(key, expires), signatures[0]):
            raise PresignedUploadRejected(f"presigned URL for {key!r} has a bad signature")
        if time.time() > expires:
            raise PresignedUploadRejected(f"presigned URL for {key!r} expired at {datetime.fromtimestamp(expires, UTC).isoformat()}")
        return key

    def _get_signature(self, key: str, expires: int) -> str:
        # "GET" first: a PUT's signature can never pass for a GET's, nor the other way round.
        message = "\n".join(["GET", key, str(expires)]).encode("utf-8")
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()

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
        message = f"{operation} {key!r} in folder {self.root} failed: {exc.strerror or exc}"
        return StorageAccessDenied(message) if isinstance(exc, PermissionError) else StorageError(message)

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
                while chunk := reader.read(COPY_CHUNK):
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


