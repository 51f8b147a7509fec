"""One suite for both object stores: the local folder and S3 over real HTTP.

Nothing in boto3 is patched: S3 failures are produced by real servers (a bucket that does not
exist, a closed port, a tiny HTTP server that answers 503 or 403).

Presigned URLs are tested against two S3 servers, because neither enforces every rule S3 does
(checked by hand against moto 5.2 and s3rver 4.0.4, see docs/operations.md#testing-against-s3):

| what a presigned PUT promises                 | folder store | moto | s3rver |
|-----------------------------------------------|--------------|------|--------|
| lands with the headers it hands out           | yes          | yes  | yes    |
| another Content-Type is refused (signed)      | yes          | no   | yes    |
| another Content-Length is refused (signed)    | yes          | no   | yes    |
| a tampered signature is refused               | yes          | no   | yes    |
| an expired URL is refused                     | yes          | no   | yes    |
| a second PUT to the key is refused (412)      | yes          | yes  | no     |

Each rule is tested on the stores that enforce it (`ENFORCED_BY`); neither server checks that a
URL was signed for the bucket's region (a URL signed for another region is accepted by both; S3
refuses it), so what our code decides there is asserted from the URL itself.
"""

from __future__ import annotations

import io
import os
import socket
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from photo_pipeline.settings import Settings
from photo_pipeline_tests.conftest import S3Server
from photo_pipeline.storage import (
    LocalObjectStore,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PresignedUpload,
    PresignedUploadRejected,
    S3ObjectStore,
    S3Timeouts,
    StorageAccessDenied,
    StorageError,
    StorageTimeout,
    StorageUnavailable,
    UploadTargetExists,
    build_object_store,
    make_s3_client,
)

SECRET = "testing-secret-key"  # conftest's AWS_SECRET_ACCESS_KEY; must never leak into messages
PUBLIC_ENDPOINT = "http://public.example.test:9000"


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    bucket = request.getfixturevalue("s3_bucket")
    # No endpoint given: boto3 finds moto through AWS_ENDPOINT_URL_S3, as production does.
    return S3ObjectStore(make_s3_client(max_attempts=2), bucket)


# Which stores enforce each promise of a presigned PUT (the table in this module's docstring).
ALL_STORES = ("local", "moto", "s3rver")
ENFORCED_BY = {
    "content type": ("local", "s3rver"),
    "content length": ("local", "s3rver"),
    "signature": ("local", "s3rver"),
    "expiry": ("local", "s3rver"),
    "if-none-match": ("local", "moto"),
}


@pytest.fixture
def presigning_store(request: pytest.FixtureRequest, tmp_path: Path, s3_env: S3Server) -> ObjectStore:
    """The store named by the test's parameter: the folder, or a bucket on moto or on s3rver
    (reached over HTTP with the suite's credentials from the environment, as production does)."""
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    server: S3Server = s3_env if request.param == "moto" else request.getfixturevalue("s3rver_server")
    return S3ObjectStore(make_s3_client(endpoint_url=server.endpoint_url, max_attempts=2), server.new_bucket())


def stores_enforcing(rule: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("presigning_store", ENFORCED_BY[rule], indirect=True)


@pytest.fixture
def local_store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects")


@pytest.fixture
def missing_bucket_store(s3_env) -> S3ObjectStore:  # type: ignore[no-untyped-def]
    return S3ObjectStore(make_s3_client(max_attempts=2), f"photos-missing-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def unreachable_store(s3_env) -> S3ObjectStore:  # type: ignore[no-untyped-def]
    # Port 1 on loopback: connection refused at once; two attempts keep the retry wait short.
    client = make_s3_client(endpoint_url="http://127.0.0.1:1", max_attempts=2, connect_timeout=0.5, read_timeout=0.5)
    return S3ObjectStore(client, "photos")


class _FixedAnswer(BaseHTTPRequestHandler):
    """Answers every request with one status and an S3-style error body."""

    status = 503
    code = "ServiceUnavailable"

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"" if self.command == "HEAD" else (
            f"<Error><Code>{self.code}</Code><Message>fixed answer</Message></Error>".encode()
        )
        self.send_response(self.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def answering_server() -> Iterator[Callable[[int, str], str]]:
    """Starts a server answering every request with (status, code); yields its endpoint."""
    servers: list[ThreadingHTTPServer] = []

    def start(status: int, code: str) -> str:
        handler = type("Handler", (_FixedAnswer,), {"status": status, "code": code})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def put_presigned(store: ObjectStore, upload: PresignedUpload, data: bytes, headers: dict[str, str] | None = None) -> None:
    """PUT to a presigned URL the way a client would: over HTTP for S3, through the local store's
    stand-in for file:// URLs. Raises PresignedUploadRejected / HTTPError when refused."""
    sent = upload.headers if headers is None else headers
    if urlsplit(upload.url).scheme == "file":
        assert isinstance(store, LocalObjectStore)
        store.accept_presigned_put(upload.url, data, sent)
        return
    response = requests.put(upload.url, data=data, headers=sent, timeout=10)
    response.raise_for_status()


def assert_rejected(store: ObjectStore, upload: PresignedUpload, data: bytes, headers: dict[str, str] | None = None) -> None:
    if isinstance(store, LocalObjectStore):
        with pytest.raises(PresignedUploadRejected) as caught:
            put_presigned(store, upload, data, headers)
        assert_no_secret(str(caught.value))
        return
    with pytest.raises(requests.HTTPError) as http_error:
        put_presigned(store, upload, data, headers)
    assert http_error.value.response.status_code == 403


def xattrs_supported(folder: Path) -> bool:
    probe = folder / ".tmp" / "xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
        return True
    except (AttributeError, OSError):
        return False
    finally:
        probe.unlink()


def assert_no_secret(text: str) -> None:
    assert SECRET not in text


def put_all(store: ObjectStore, keys: list[str]) -> None:
    for key in keys:
        store.put(key, key.encode(), "text/plain")


def utf8_sorted(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda key: key.encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# Round trips


def test_put_get_head_exists(store: ObjectStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    store.put("raw/album/photo.jpg", b"\xff\xd8jpeg bytes", "image/jpeg")

    assert store.get("raw/album/photo.jpg") == b"\xff\xd8jpeg bytes"
    assert store.exists("raw/album/photo.jpg")
    info = store.head("raw/album/photo.jpg")
    assert info.key == "raw/album/photo.jpg"
    assert info.size == len(b"\xff\xd8jpeg bytes")
    assert info.content_type == "image/jpeg"
    assert info.etag
    assert info.last_modified.tzinfo is not None and info.last_modified.utcoffset() == timedelta(0)
    assert before <= info.last_modified <= datetime.now(UTC) + timedelta(seconds=5)


def test_put_replaces_and_keeps_the_content_type(store: ObjectStore) -> None:
    if isinstance(store, LocalObjectStore) and not xattrs_supported(store.root):
        pytest.skip("this filesystem has no user xattrs: the local store guesses the type from the extension")
    store.put("processed/thumbs/a/b.jpg", b"old", "image/jpeg")
    store.put("processed/thumbs/a/b.jpg", b"newer", "image/webp")

    assert store.get("processed/thumbs/a/b.jpg") == b"newer"
    info = store.head("processed/thumbs/a/b.jpg")
    assert (info.size, info.content_type) == (5, "image/webp")


def test_absent_key_is_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound) as from_get:
        store.get("raw/none/here.jpg")
    with pytest.raises(ObjectNotFound) as from_head:
        store.head("raw/none/here.jpg")

    assert from_get.value.key == from_head.value.key == "raw/none/here.jpg"
    assert store.exists("raw/none/here.jpg") is False


def test_a_folder_is_not_an_object(store: ObjectStore) -> None:
    store.put("raw/album/photo.jpg", b"x", "image/jpeg")

    with pytest.raises(ObjectNotFound):
        store.get("raw/album")
    assert store.exists("raw/album") is False


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.put("raw/a/b.jpg", b"x", "image/jpeg")

    store.delete("raw/a/b.jpg")
    store.delete("raw/a/b.jpg")
    store.delete("raw/never/was.jpg")

    assert not store.exists("raw/a/b.jpg")


def test_delete_many_removes_only_the_given_keys(store: ObjectStore) -> None:
    put_all(store, [f"raw/a/{n}.jpg" for n in range(5)])

    store.delete_many(["raw/a/0.jpg", "raw/a/2.jpg", "raw/a/4.jpg", "raw/a/absent.jpg"])
    store.delete_many([])

    assert [info.key for info in store.iter_objects("raw/")] == ["raw/a/1.jpg", "raw/a/3.jpg"]


def test_delete_many_takes_more_keys_than_one_batch(store: ObjectStore) -> None:
    keys = [f"raw/many/{n:04d}.jpg" for n in range(1003)]
    put_all(store, keys[-3:])

    # A generator, as reconciliation would pass it: more than S3's 1000-key batch.
    store.delete_many(key for key in keys)

    assert store.list_page("raw/") == []


def test_check_passes_on_a_usable_store(store: ObjectStore) -> None:
    store.check()
    assert_no_secret(store.describe())


# ---------------------------------------------------------------------------------------------
# Listings

TRICKY_KEYS = [
    "raw/a.jpg",
    "raw/a-b.jpg",  # "-" sorts before "/": must come before everything under raw/a/
    "raw/a/c.jpg",
    "raw/a/b/d.jpg",
    "raw/B.jpg",  # upper case before lower case in byte order
    "raw/z.jpg",
    "raw/\u00e9.jpg",  # multi-byte UTF-8 after ASCII
    "raw/ab.jpg",
]


def test_list_page_is_in_utf8_byte_order_and_honours_the_prefix(store: ObjectStore) -> None:
    put_all(store, [*TRICKY_KEYS, "processed/thumbs/x.jpg", "rawish.jpg"])

    page = store.list_page("raw/")

    assert [info.key for info in page] == utf8_sorted(TRICKY_KEYS)
    assert all(isinstance(info, ObjectInfo) and info.size == len(info.key.encode()) for info in page)
    assert all(info.last_modified.utcoffset() == timedelta(0) for info in page)


def test_list_page_with_a_prefix_that_ends_mid_name(store: ObjectStore) -> None:
    put_all(store, TRICKY_KEYS)

    assert [info.key for info in store.list_page("raw/a")] == utf8_sorted(
        [key for key in TRICKY_KEYS if key.startswith("raw/a")]
    )


def test_list_page_start_after_and_limit(store: ObjectStore) -> None:
    put_all(store, TRICKY_KEYS)
    ordered = utf8_sorted(TRICKY_KEYS)

    assert [i.key for i in store.list_page("raw/", limit=3)] == ordered[:3]
    assert [i.key for i in store.list_page("raw/", start_after=ordered[2], limit=3)] == ordered[3:6]
    # start_after need not be a key: here it falls between "raw/a-b.jpg" and "raw/a.jpg".
    assert [i.key for i in store.list_page("raw/", start_after="raw/a-c")] == [k for k in ordered if k > "raw/a-c"]
    # ...or name a "folder", which skips nothing inside it.
    assert [i.key for i in store.list_page("raw/", start_after="raw/a/")] == [k for k in ordered if k > "raw/a/"]
    assert store.list_page("raw/", start_after=ordered[-1]) == []
    assert store.list_page("nothing/") == []


def test_iter_objects_streams_every_page(store: ObjectStore) -> None:
    keys = [f"raw/{album}/{n}.jpg" for album in ("a", "b") for n in range(4)][:7]
    put_all(store, [*keys, "processed/previews/p.jpg"])

    listing = store.iter_objects("raw/", page_size=2)

    assert isinstance(listing, Iterator)
    assert [info.key for info in listing] == utf8_sorted(keys)
    assert [i.key for i in store.iter_objects("raw/", start_after=keys[4], page_size=2)] == keys[5:]
    # An exact multiple of the page size ends cleanly too.
    assert len(list(store.iter_objects("raw/", page_size=7))) == 7


def test_page_sizes_must_be_positive(store: ObjectStore) -> None:
    with pytest.raises(ValueError):
        store.list_page("raw/", limit=0)
    with pytest.raises(ValueError):
        list(store.iter_objects("raw/", page_size=0))


# ---------------------------------------------------------------------------------------------
# Presigned uploads


@pytest.mark.parametrize("presigning_store", ALL_STORES, indirect=True)
def test_presigned_put_lands_the_object(presigning_store: ObjectStore) -> None:
    # On s3rver this proves the handed-out headers are exactly the signed ones: any header too
    # many, too few or different is a 403 SignatureDoesNotMatch there, as on S3.
    store = presigning_store
    upload = store.presign_put("raw/album/new.jpg", "image/jpeg", 300, content_length=len(b"uploaded by a browser"))

    assert upload.method == "PUT"
    assert upload.headers == {"Content-Type": "image/jpeg", "If-None-Match": "*", "Content-Length": "21"}
    assert datetime.now(UTC) + timedelta(seconds=290) <= upload.expires_at <= datetime.now(UTC) + timedelta(seconds=310)
    put_presigned(store, upload, b"uploaded by a browser")

    assert store.get("raw/album/new.jpg") == b"uploaded by a browser"
    info = store.head("raw/album/new.jpg")
    assert (info.size, info.content_type) == (len(b"uploaded by a browser"), "image/jpeg")


@stores_enforcing("content type")
def test_presigned_put_with_another_content_type_is_rejected(presigning_store: ObjectStore) -> None:
    # moto ignores the signed Content-Type; s3rver and S3 answer 403 SignatureDoesNotMatch.
    upload = presigning_store.presign_put("raw/album/typed.jpg", "image/jpeg", 300)

    assert_rejected(presigning_store, upload, b"not a jpeg", {**upload.headers, "Content-Type": "text/html"})
    assert not presigning_store.exists("raw/album/typed.jpg")


@stores_enforcing("content length")
def test_presigned_put_of_another_size_is_rejected(presigning_store: ObjectStore) -> None:
    # moto ignores the signed Content-Length; s3rver and S3 answer 403 SignatureDoesNotMatch.
    upload = presigning_store.presign_put("raw/album/sized.jpg", "image/jpeg", 300, content_length=5)

    assert_rejected(presigning_store, upload, b"more than five bytes", {k: v for k, v in upload.headers.items() if k != "Content-Length"})
    assert not presigning_store.exists("raw/album/sized.jpg")


@stores_enforcing("signature")
def test_presigned_put_with_a_tampered_url_is_rejected(presigning_store: ObjectStore) -> None:
    # moto accepts any signature; s3rver and S3 recompute it (the local store: see its own tests).
    upload = presigning_store.presign_put("raw/album/signed.jpg", "image/jpeg", 300)
    other_key = replace(upload, url=upload.url.replace("raw/album/signed.jpg", "raw/album/forged.jpg"))

    assert_rejected(presigning_store, other_key, b"forged")
    assert not presigning_store.exists("raw/album/forged.jpg")


@stores_enforcing("expiry")
def test_expired_presigned_put_is_rejected(presigning_store: ObjectStore) -> None:
    # moto ignores X-Amz-Expires; s3rver and S3 answer 403 AccessDenied "Request has expired".
    upload = presigning_store.presign_put("raw/album/late.jpg", "image/jpeg", 1)
    time.sleep(2.1)

    assert_rejected(presigning_store, upload, b"too late")
    assert not presigning_store.exists("raw/album/late.jpg")


@stores_enforcing("if-none-match")
def test_a_second_presigned_put_to_the_key_is_refused(presigning_store: ObjectStore) -> None:
    # s3rver ignores If-None-Match on PUT (it overwrites); moto, MinIO and S3 answer 412.
    upload = presigning_store.presign_put("raw/album/once.jpg", "image/jpeg", 300)
    put_presigned(presigning_store, upload, b"first")

    if isinstance(presigning_store, LocalObjectStore):
        with pytest.raises(UploadTargetExists):
            put_presigned(presigning_store, upload, b"second")
    else:
        with pytest.raises(requests.HTTPError) as refused:
            put_presigned(presigning_store, upload, b"second")
        assert refused.value.response.status_code == 412
    assert presigning_store.get("raw/album/once.jpg") == b"first"


def test_s3_presigned_url_signs_the_content_type_and_expiry(s3_bucket: str) -> None:
    # What our code decides, read from the URL (the tests above show the servers enforcing it).
    store = S3ObjectStore(make_s3_client(), s3_bucket)

    query = parse_qs(urlsplit(store.presign_put("raw/a/b.jpg", "image/jpeg", 120).url).query)

    assert {"content-type", "if-none-match", "host"} <= set(query["X-Amz-SignedHeaders"][0].split(";"))
    assert query["X-Amz-Expires"] == ["120"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Credential"][0].split("/")[2] == "us-east-1", "neither test server checks the region: read it here"


def test_presign_for_the_public_endpoint_while_reading_internally(s3_env, s3_bucket: str) -> None:  # type: ignore[no-untyped-def]
    internal = make_s3_client()
    store = S3ObjectStore(internal, s3_bucket, presign_client=make_s3_client(endpoint_url=PUBLIC_ENDPOINT))

    upload = store.presign_put("raw/a/b.jpg", "image/png", 60)
    store.put("raw/a/b.jpg", b"png", "image/png")

    assert upload.url.startswith(f"{PUBLIC_ENDPOINT}/{s3_bucket}/raw/a/b.jpg?")
    assert store.get("raw/a/b.jpg") == b"png"  # served by moto, so reads used the internal client
    assert s3_env.endpoint_url in store.describe()
    assert_no_secret(store.describe() + upload.url)


def test_presign_arguments_are_checked(store: ObjectStore) -> None:
    with pytest.raises(ValueError):
        store.presign_put("raw/a/b.jpg", "", 60)
    with pytest.raises(ValueError):
        store.presign_put("raw/a/b.jpg", "image/jpeg", 0)


# ---------------------------------------------------------------------------------------------
# S3 misconfiguration and outages: never "file missing"


def test_missing_bucket_is_a_storage_error_not_a_missing_file(missing_bucket_store: S3ObjectStore) -> None:
    store = missing_bucket_store
    calls = {
        "head": lambda: store.head("raw/a/b.jpg"),
        "exists": lambda: store.exists("raw/a/b.jpg"),
        "get": lambda: store.get("raw/a/b.jpg"),
        "check": store.check,
        "list_page": lambda: store.list_page("raw/"),
        "put": lambda: store.put("raw/a/b.jpg", b"x", "image/jpeg"),
        "delete": lambda: store.delete("raw/a/b.jpg"),
        "delete_many": lambda: store.delete_many(["raw/a/b.jpg"]),
    }
    for name, call in calls.items():
        with pytest.raises(StorageError) as caught:
            call()
        assert not isinstance(caught.value, ObjectNotFound), name
        assert not isinstance(caught.value, StorageUnavailable), name
        assert "does not exist" in str(caught.value), name
        assert store.bucket in str(caught.value), name
        assert_no_secret(str(caught.value))


def test_unreachable_endpoint_is_unavailable(unreachable_store: S3ObjectStore) -> None:
    store = unreachable_store
    for call in (lambda: store.head("raw/a.jpg"), lambda: store.exists("raw/a.jpg"), store.check):
        with pytest.raises(StorageUnavailable) as caught:
            call()
        assert "s3://photos" in str(caught.value)
        assert_no_secret(str(caught.value))
    assert_no_secret(store.describe())


def test_server_errors_after_retries_are_unavailable(s3_env, answering_server) -> None:  # type: ignore[no-untyped-def]
    endpoint = answering_server(503, "SlowDown")
    store = S3ObjectStore(make_s3_client(endpoint_url=endpoint, max_attempts=2), "photos")

    for call in (lambda: store.get("raw/a.jpg"), lambda: store.head("raw/a.jpg"), lambda: store.list_page("raw/")):
        with pytest.raises(StorageUnavailable) as caught:
            call()
        assert_no_secret(str(caught.value))


def test_access_denied_is_an_error_not_a_missing_file(s3_env, answering_server) -> None:  # type: ignore[no-untyped-def]
    endpoint = answering_server(403, "AccessDenied")
    store = S3ObjectStore(make_s3_client(endpoint_url=endpoint, max_attempts=2), "photos")

    for call in (lambda: store.get("raw/a.jpg"), lambda: store.head("raw/a.jpg"), lambda: store.exists("raw/a.jpg")):
        with pytest.raises(StorageError) as caught:
            call()
        # Neither "missing" nor "try again": a grant is missing (doctor names it).
        assert type(caught.value) is StorageAccessDenied
        assert "access denied" in str(caught.value)
        assert_no_secret(str(caught.value))


def test_a_bucket_that_never_answers_times_out_within_the_bound_and_says_so(s3_env) -> None:  # type: ignore[no-untyped-def]
    # A listening socket nobody reads: the kernel completes the connection, no answer ever comes
    # (what a stopped server process looks like to a client).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        store = S3ObjectStore(make_s3_client(endpoint_url=endpoint, timeouts=S3Timeouts(connect=1, read=1, attempts=2)), "photos")
        started = time.monotonic()
        with pytest.raises(StorageTimeout) as caught:
            store.head("raw/a.jpg")
        seconds = time.monotonic() - started
    assert isinstance(caught.value, StorageUnavailable), "transient: a run's RetryPolicy retries it"
    assert str(caught.value) == f"head s3://photos/raw/a.jpg timed out: no answer from {endpoint} within 1 s, 2 attempts"
    assert 2 <= seconds < 6, seconds


# ---------------------------------------------------------------------------------------------
# Local store specifics

BAD_KEYS = ["", "../escape.jpg", "raw/../../etc/passwd", "/etc/passwd", "raw\\a.jpg", "raw//a.jpg", "raw/a/", "raw/./a.jpg", ".presign-key", ".tmp/x"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_local_store_refuses_unsafe_keys(local_store: LocalObjectStore, key: str) -> None:
    for call in (
        lambda: local_store.put(key, b"x", "text/plain"),
        lambda: local_store.get(key),
        lambda: local_store.head(key),
        lambda: local_store.exists(key),
        lambda: local_store.delete(key),
        lambda: local_store.presign_put(key, "text/plain", 60),
    ):
        with pytest.raises(ValueError):
            call()
    assert not (local_store.root.parent / "escape.jpg").exists()


def test_local_presigned_url_shape(local_store: LocalObjectStore) -> None:
    upload = local_store.presign_put("raw/a/b c.jpg", "image/jpeg", 60)

    parts = urlsplit(upload.url)
    query = parse_qs(parts.query)
    assert upload.url.startswith(f"file://{local_store.root.as_posix()}/raw/a/b%20c.jpg?")
    assert query["X-Content-Type"] == ["image/jpeg"] and "X-Content-Type=image%2Fjpeg" in parts.query
    assert int(query["X-Expires"][0]) == int(upload.expires_at.timestamp())
    assert len(query["X-Signature"][0]) == 64


def _swap_query(url: str, name: str, value: str) -> str:
    base, _, query = url.partition("?")
    fields = [f"{name}={value}" if field.startswith(f"{name}=") else field for field in query.split("&")]
    return f"{base}?{'&'.join(fields)}"


def test_local_presigned_url_tampering_is_rejected(local_store: LocalObjectStore) -> None:
    upload = local_store.presign_put("raw/a/b.jpg", "image/jpeg", 60)
    headers = upload.headers
    forged = {
        "other key": upload.url.replace("raw/a/b.jpg", "raw/a/other.jpg"),
        "traversal": upload.url.replace("raw/a/b.jpg", "raw/../../outside.jpg"),
        "signature": _swap_query(upload.url, "X-Signature", "0" * 64),
        "later expiry": _swap_query(upload.url, "X-Expires", str(int(time.time()) + 86400)),
        "other type": _swap_query(upload.url, "X-Content-Type", "text%2Fhtml"),
        "no signature": upload.url.split("&X-Signature=")[0],
        "outside root": upload.url.replace(local_store.root.as_posix(), "/tmp/elsewhere"),
        "not file": upload.url.replace("file://", "http://"),
    }
    for name, url in forged.items():
        with pytest.raises(PresignedUploadRejected):
            local_store.accept_presigned_put(url, b"forged", {"Content-Type": "text/html" if name == "other type" else headers["Content-Type"]})
        assert not local_store.exists("raw/a/other.jpg"), name
    assert local_store.list_page("") == []
    assert not (local_store.root.parent / "outside.jpg").exists()


def test_local_presigned_url_from_another_store_is_rejected(local_store: LocalObjectStore) -> None:
    stranger = LocalObjectStore(local_store.root, signing_key=b"a different key of some length")

    with pytest.raises(PresignedUploadRejected, match="signature"):
        put_presigned(local_store, stranger.presign_put("raw/a.jpg", "image/jpeg", 60), b"x")


def test_local_presigned_put_takes_a_stream_and_any_header_case(local_store: LocalObjectStore) -> None:
    upload = local_store.presign_put("raw/a/stream.jpg", "image/jpeg", 60)

    local_store.accept_presigned_put(upload.url, io.BytesIO(b"s" * 3_000_000), {"content-type": "image/jpeg"})

    assert local_store.head("raw/a/stream.jpg").size == 3_000_000
    assert local_store.head("raw/a/stream.jpg").content_type == "image/jpeg"


def test_local_signing_key_survives_a_restart(tmp_path: Path) -> None:
    first = LocalObjectStore(tmp_path / "objects")
    upload = first.presign_put("raw/a/b.jpg", "image/jpeg", 60)

    second = LocalObjectStore(tmp_path / "objects")
    put_presigned(second, upload, b"after restart")

    assert second.get("raw/a/b.jpg") == b"after restart"
    key_file = tmp_path / "objects" / ".presign-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_local_listing_hides_the_store_s_own_files(local_store: LocalObjectStore) -> None:
    local_store.put("a.jpg", b"x", "image/jpeg")
    (local_store.root / ".tmp" / "put-leftover").write_bytes(b"half a file")

    assert [info.key for info in local_store.list_page("")] == ["a.jpg"]
    assert [info.key for info in local_store.iter_objects(".")] == []


def test_local_writes_leave_no_temp_files_and_no_empty_folders(local_store: LocalObjectStore) -> None:
    local_store.put("raw/deep/er/a.jpg", b"x", "image/jpeg")
    local_store.delete("raw/deep/er/a.jpg")

    assert os.listdir(local_store.root / ".tmp") == []
    assert not (local_store.root / "raw").exists()


def test_local_root_is_created_and_checked(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "new" / "objects")
    store.check()
    assert store.describe() == f"folder {(tmp_path / 'new' / 'objects').resolve()}"

    (tmp_path / "new" / "objects" / ".tmp").rmdir()
    with pytest.raises(StorageError):
        store.check()


# ---------------------------------------------------------------------------------------------
# Construction from settings


def test_build_object_store_without_a_bucket_is_the_folder(tmp_path: Path) -> None:
    store = build_object_store(Settings(home=tmp_path))

    assert isinstance(store, LocalObjectStore)
    assert store.root == (tmp_path / "objects").resolve()


def test_build_object_store_with_a_bucket_signs_for_the_public_endpoint(s3_bucket: str) -> None:
    store = build_object_store(Settings(bucket=s3_bucket, public_endpoint_url=PUBLIC_ENDPOINT))

    assert isinstance(store, S3ObjectStore)
    store.check()
    store.put("raw/a/b.jpg", b"x", "image/jpeg")
    assert store.presign_put("raw/a/b.jpg", "image/jpeg", 60).url.startswith(f"{PUBLIC_ENDPOINT}/{s3_bucket}/")


def test_build_object_store_without_a_public_endpoint_signs_with_the_same_client(s3_env, s3_bucket: str) -> None:  # type: ignore[no-untyped-def]
    store = build_object_store(Settings(bucket=s3_bucket))

    assert isinstance(store, S3ObjectStore) and store.presign_client is store.client
    upload = store.presign_put("raw/a/b.jpg", "image/jpeg", 60)
    assert upload.url.startswith(f"{s3_env.endpoint_url}/{s3_bucket}/")
    put_presigned(store, upload, b"via the internal endpoint")
    assert store.get("raw/a/b.jpg") == b"via the internal endpoint"
