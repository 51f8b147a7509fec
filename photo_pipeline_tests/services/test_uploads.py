"""The client's upload flow against S3 over HTTP, including endpoints that lie or stumble.

The misbehaving endpoints are real HTTP servers on loopback standing where the public endpoint
would be: one acknowledges PUTs and stores nothing (the old system's "100 % but never arrived"),
one answers 503 once and then forwards to the S3 server.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from photo_pipeline.cli import samples
from photo_pipeline.photos.database import migrate
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.services.uploads import (
    InvalidAlbumTitle,
    UploadFailed,
    UploadPolicy,
    UploadRejected,
    cleanup_photo,
    title_album,
    upload_photo,
)
from photo_pipeline.storage import S3ObjectStore, make_s3_client
from photo_pipeline_tests.conftest import S3Server

FAST = UploadPolicy(attempts=2, backoff_seconds=0.05, timeout_seconds=10)


class EndpointStub(ThreadingHTTPServer):
    """An HTTP endpoint with a chosen behaviour; counts the PUTs it receives."""

    def __init__(self, behaviour: str, upstream: str) -> None:
        self.behaviour = behaviour
        self.upstream = upstream
        self.puts = 0
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: EndpointStub

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.puts += 1
        if self.server.behaviour == "503-once" and self.server.puts == 1:
            self._answer(503, b"SlowDown")
            return
        if self.server.behaviour == "lie":
            self._answer(200, b"")
            return
        # moto does not check signatures against the Host header, so the request can be forwarded.
        forwarded = requests.put(
            self.server.upstream + self.path,
            data=body,
            headers={"Content-Type": self.headers["Content-Type"]},
            timeout=10,
        )
        self._answer(forwarded.status_code, forwarded.content)

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def endpoint_factory(s3_env: S3Server) -> Iterator:  # type: ignore[type-arg]
    servers: list[EndpointStub] = []

    def start(behaviour: str) -> EndpointStub:
        server = EndpointStub(behaviour, s3_env.endpoint_url)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def repository(postgres_url: str) -> PhotoRepository:
    migrate(postgres_url)
    return PhotoRepository.from_url(postgres_url)


def store_for(s3: S3Server, bucket: str, public_endpoint: str | None = None) -> S3ObjectStore:
    client = make_s3_client(endpoint_url=s3.endpoint_url)
    presign = make_s3_client(endpoint_url=public_endpoint) if public_endpoint else client
    return S3ObjectStore(client, bucket, presign_client=presign)


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "holiday.jpg"
    path.write_bytes(samples.photo_jpeg(800, 600))
    return path


def test_upload_lands_and_is_verified(repository: PhotoRepository, s3_env: S3Server, s3_bucket: str, photo: Path) -> None:
    store = store_for(s3_env, s3_bucket)
    album = uuid.uuid4()
    progress: list[int] = []
    result = upload_photo(repository, store, album, photo, policy=FAST, on_progress=progress.append)
    assert store.head(result.key).size == photo.stat().st_size
    assert sum(n for n in progress if n > 0) == photo.stat().st_size
    row = repository.get(result.photo_id)
    assert row is not None and row.status is PhotoStatus.PENDING
    assert row.original_key == f"raw/{album}/{result.photo_id}.jpg"
    assert row.filename == "holiday.jpg" and row.content_type == "image/jpeg"


def test_acknowledged_but_never_landed_is_retried_then_cleaned_up(
    repository: PhotoRepository, s3_env: S3Server, s3_bucket: str, photo: Path, endpoint_factory  # type: ignore[no-untyped-def]
) -> None:
    liar = endpoint_factory("lie")
    store = store_for(s3_env, s3_bucket, public_endpoint=liar.url)
    photo_id = uuid.uuid4()
    with pytest.raises(UploadFailed, match="not in the bucket"):
        upload_photo(repository, store, uuid.uuid4(), photo, policy=FAST, photo_id=photo_id)
    assert liar.puts == FAST.attempts
    assert repository.get(photo_id) is None, "the row of an upload that never landed is cleaned up"


def test_transient_503_is_retried_with_backoff(
    repository: PhotoRepository, s3_env: S3Server, s3_bucket: str, photo: Path, endpoint_factory  # type: ignore[no-untyped-def]
) -> None:
    flaky = endpoint_factory("503-once")
    store = store_for(s3_env, s3_bucket, public_endpoint=flaky.url)
    result = upload_photo(repository, store, uuid.uuid4(), photo, policy=FAST)
    assert flaky.puts == 2
    assert store.exists(result.key)


def test_refuses_empty_and_non_image_files(repository: PhotoRepository, s3_env: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    store = store_for(s3_env, s3_bucket)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_bytes(samples.not_an_image())
    with pytest.raises(UploadRejected, match="empty"):
        upload_photo(repository, store, uuid.uuid4(), empty, policy=FAST)
    with pytest.raises(UploadRejected, match="not an image"):
        upload_photo(repository, store, uuid.uuid4(), text, policy=FAST)
    assert sum(repository.status_counts().values()) == 0


def test_cleanup_removes_row_and_object(repository: PhotoRepository, s3_env: S3Server, s3_bucket: str, photo: Path) -> None:
    store = store_for(s3_env, s3_bucket)
    result = upload_photo(repository, store, uuid.uuid4(), photo, policy=FAST)
    cleaned = cleanup_photo(repository, store, result.photo_id)
    assert cleaned.deleted_keys == (result.key,)
    assert repository.get(result.photo_id) is None
    assert not store.exists(result.key)


# -- album titles given at upload -----------------------------------------------------------------


def test_an_album_is_titled_as_the_uploader_names_it(repository: PhotoRepository) -> None:
    album = uuid.uuid4()
    titled = title_album(repository, album, "  Holiday 2026 ✈ Crète  ")
    assert titled.title == "Holiday 2026 ✈ Crète", "trimmed, otherwise as typed"
    assert title_album(repository, album, "Holiday 2026").created_at == titled.created_at
    assert repository.album_titles([album]) == {album: "Holiday 2026"}, "a later upload's title replaces it"


@pytest.mark.parametrize(
    ("title", "reason"),
    [
        ("   ", "the album title is empty"),
        ("x" * 201, "201 characters; at most 200"),
        ("Holiday\nINFO forged log line", "U\\+000A"),
        ("\x1b[31mred", "U\\+001B"),
        ("photo\u202egpj.exe", "U\\+202E"),
    ],
)
def test_an_unusable_album_title_is_refused_and_nothing_stored(repository: PhotoRepository, title: str, reason: str) -> None:
    album = uuid.uuid4()
    with pytest.raises(InvalidAlbumTitle, match=reason):
        title_album(repository, album, title)
    assert repository.album(album) is None
