"""The album pipeline (fetch -> render -> store, pipeline.py) under faults, on real parts: the
photo table on PostgreSQL, the bucket on moto's S3 server over HTTP.

- a photo that cannot be rendered fails with its reason, the others complete;
- a storage error on upload (the server refuses the PUT of one photo's renditions, through a
  reverse proxy in front of moto) releases that photo as unfinished, the others complete;
- a database error while writing one photo's row fails the processing once the photos already
  under way are recorded, and gives that photo back;
- the originals fetched ahead are bounded by the originals budget (its own peak counter), and
  without that bound the fetch threads would hold more (the control);
- none is left `processing` after any of the above. (That the heartbeat keeps the claims of
  photos waiting in the pipeline alive is test_leases' first test, which runs through it too.)
"""

from __future__ import annotations

import http.client
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from sqlalchemy.engine import make_url

from photo_pipeline.cli import samples
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.rendering.render import RenderOptions
from photo_pipeline.services.processing import (
    DatabaseUnavailable,
    Outcome,
    PhotoProcessor,
    ProcessingLimits,
)
from photo_pipeline.settings import Settings, SettingsError
from photo_pipeline.storage import ObjectStore, S3ObjectStore, keys, make_s3_client
from photo_pipeline_tests.conftest import S3Server

SMALL = RenderOptions(preview_long_side=640, thumb_long_side=160)
ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "expect"}


@pytest.fixture
def repository(photo_db: str) -> Iterator[PhotoRepository]:
    repo = PhotoRepository.from_url(photo_db)
    yield repo
    repo.engine.dispose()


class RefusingProxy:
    """A reverse proxy in front of moto that answers 403 AccessDenied to the requests `refuse`
    picks (by method and path) and forwards every other one."""

    def __init__(self, upstream: str, refuse: Callable[[str, str], bool]) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.refused: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
                pass

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if refuse(self.command, self.path):
                    proxy.refused.append(self.path)
                    self.answer(403, "Forbidden", [("Content-Type", "application/xml")], ACCESS_DENIED)
                    return
                upstream_conn = http.client.HTTPConnection(host, int(port), timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    upstream_conn.request(self.command, self.path, body=body, headers=headers)
                    response = upstream_conn.getresponse()
                    data = response.read()
                    kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
                    declared = response.getheader("Content-Length")
                    self.answer(response.status, response.reason, kept, data, head_length=declared)
                finally:
                    upstream_conn.close()

            def answer(
                self, status: int, reason: str, headers: list[tuple[str, str]], data: bytes, head_length: str | None = None
            ) -> None:
                self.send_response(status, reason)
                for name, value in headers:
                    self.send_header(name, value)
                is_head = self.command == "HEAD"
                self.send_header("Content-Length", (head_length or "0") if is_head else str(len(data)))
                self.end_headers()
                if not is_head:
                    self.wfile.write(data)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="refusing-proxy", daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def s3_store(endpoint: str) -> ObjectStore:
    client = make_s3_client(endpoint_url=endpoint)
    bucket = f"pipeline-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return S3ObjectStore(client, bucket)


@pytest.fixture
def store(s3_env: S3Server) -> ObjectStore:
    return s3_store(s3_env.endpoint_url)


def add_photos(repository: PhotoRepository, store: ObjectStore, album: uuid.UUID, originals: list[bytes]) -> list[uuid.UUID]:
    ids = []
    for data in originals:
        photo_id = uuid.uuid4()
        key = keys.raw_key(album, photo_id, "jpg")
        store.put(key, data, "image/jpeg")
        repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key))
        ids.append(photo_id)
    return ids


def limits(**overrides: int) -> ProcessingLimits:
    values = dict(batch_size=3, workers=2, io_threads=2, claim_lease_seconds=60, claim_heartbeat_seconds=1, max_attempts=5)
    return ProcessingLimits(**{**values, **overrides})  # type: ignore[arg-type]


def statuses(repository: PhotoRepository, photos: list[uuid.UUID]) -> dict[uuid.UUID, PhotoStatus]:
    return {photo_id: row.status for photo_id, row in repository.get_many(photos).items()}


def test_a_photo_that_cannot_be_rendered_fails_and_the_pipeline_finishes_the_others(
    repository: PhotoRepository, store: ObjectStore
) -> None:
    album = uuid.uuid4()
    good = add_photos(repository, store, album, [samples.photo_jpeg(1200, 800, seed=i) for i in range(7)])
    [corrupt] = add_photos(repository, store, album, [samples.corrupt_jpeg()])

    # Batches of 3: the claims are refilled while earlier photos are still in the pipeline.
    report = PhotoProcessor(repository, store, SMALL, limits()).process_album(album, worker="render-error-run")

    outcomes = {o.photo_id: o for o in report.outcomes}
    assert set(outcomes) == {*good, corrupt}, "every claimed photo has exactly one outcome"
    assert len(report.outcomes) == 8
    assert all(outcomes[p].outcome is Outcome.COMPLETED for p in good)
    assert outcomes[corrupt].outcome is Outcome.FAILED and "cannot render" in (outcomes[corrupt].detail or "")
    rows = repository.get_many([*good, corrupt])
    assert all(rows[p].status is PhotoStatus.COMPLETED and rows[p].thumb_key for p in good)
    assert rows[corrupt].status is PhotoStatus.FAILED and "cannot render" in (rows[corrupt].error or "")
    for photo_id in good:
        assert store.exists(rows[photo_id].thumb_key or "") and store.exists(rows[photo_id].preview_key or "")
    assert not report.unfinished and not report.left_over


def test_a_storage_error_on_upload_releases_that_photo_as_unfinished(
    repository: PhotoRepository, s3_env: S3Server
) -> None:
    album = uuid.uuid4()
    victim: list[uuid.UUID] = []

    def refuse(method: str, path: str) -> bool:
        return method == "PUT" and "/processed/" in path and bool(victim) and str(victim[0]) in path

    proxy = RefusingProxy(s3_env.endpoint_url, refuse)
    try:
        store = s3_store(proxy.endpoint)
        photos = add_photos(repository, store, album, [samples.photo_jpeg(1200, 800, seed=i) for i in range(6)])
        victim.append(photos[2])

        report = PhotoProcessor(repository, store, SMALL, limits()).process_album(album, worker="upload-error-run")
    finally:
        proxy.close()

    assert proxy.refused, "the server refused the renditions' upload"
    outcomes = {o.photo_id: o for o in report.outcomes}
    assert outcomes[victim[0]].outcome is Outcome.RELEASED and outcomes[victim[0]].infrastructure
    assert "storage error writing renditions" in (outcomes[victim[0]].detail or "")
    assert "AccessDenied" in (outcomes[victim[0]].detail or "")
    assert report.unfinished == [victim[0]], "the run must not read as a plain success"
    rows = repository.get_many(photos)
    assert rows[victim[0]].status is PhotoStatus.PENDING and "storage error" in (rows[victim[0]].error or "")
    assert all(rows[p].status is PhotoStatus.COMPLETED for p in photos if p != victim[0])


def test_a_database_error_while_writing_a_row_fails_after_the_photos_under_way_are_recorded(
    repository: PhotoRepository, store: ObjectStore, photo_db: str
) -> None:
    """A real error from PostgreSQL on one photo's completion write (a constraint the test adds,
    NOT VALID so existing rows pass)."""
    album = uuid.uuid4()
    photos = add_photos(repository, store, album, [samples.photo_jpeg(1000, 700, seed=i) for i in range(6)])
    refused = photos[1]
    url = make_url(photo_db).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(
            f"ALTER TABLE photos ADD CONSTRAINT no_completion_of_one "
            f"CHECK (status <> 'completed' OR id::text <> '{refused}') NOT VALID"
        )

    processor = PhotoProcessor(repository, store, SMALL, limits(batch_size=32))
    with pytest.raises(DatabaseUnavailable, match=f"could not record the outcome of 1 photo.*first: photo {refused}"):
        processor.process_album(album, worker="db-error-run")

    rows = repository.get_many(photos)
    assert rows[refused].status is PhotoStatus.PENDING and rows[refused].claimed_by is None
    assert "database error" in (rows[refused].error or "")
    # All six were claimed in one batch: the others were under way and are recorded.
    assert all(rows[p].status is PhotoStatus.COMPLETED for p in photos if p != refused)


@pytest.mark.parametrize("bounded", [True, False], ids=["bounded", "unbounded-control"])
def test_the_originals_fetched_ahead_are_bounded_by_the_originals_budget(
    repository: PhotoRepository, store: ObjectStore, bounded: bool
) -> None:
    """One render thread behind four fetch threads: the fetch threads run ahead until the
    originals budget is full. Bounded to two and a half originals, never more than two are held
    (the budget's own peak); with room for the whole album (the control), more are."""
    album = uuid.uuid4()
    original = samples.photo_jpeg(2400, 1600, seed=5)
    # Ten different originals of one size (bytes after the JPEG's end are ignored by decoders):
    # copies of the same bytes would be completed as duplicates, unrendered.
    photos = add_photos(repository, store, album, [original + uuid.uuid4().bytes for _ in range(10)])
    size = store.head(keys.raw_key(album, photos[0], "jpg")).size
    prefetch = (5 * size) // 2 if bounded else 100 * size

    processor = PhotoProcessor(
        repository, store, SMALL, limits(batch_size=10, workers=1, io_threads=4, prefetch_bytes=prefetch)
    )
    report = processor.process_album(album, worker="prefetch-run")

    assert report.rendered == 10
    assert processor.originals_budget.in_use == 0, "every original was given back"
    held_at_once = processor.originals_budget.peak // size
    if bounded:
        assert 1 <= held_at_once <= 2
    else:
        assert held_at_once > 2, "without the bound the fetch threads hold more originals"
    assert processor.memory_budget.peak <= processor.memory_budget.total_bytes
    assert set(statuses(repository, photos).values()) == {PhotoStatus.COMPLETED}


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"PHOTO_IO_THREADS": "0"}, "PHOTO_IO_THREADS must be between 1 and 8"),
        ({"PHOTO_IO_THREADS": "9"}, "PHOTO_IO_THREADS must be between 1 and 8"),
        ({"PHOTO_IO_THREADS": "many"}, "PHOTO_IO_THREADS must be a whole number"),
        ({"PHOTO_PREFETCH_MB": "1"}, "PHOTO_PREFETCH_MB must be between 8 and"),
    ],
)
def test_pipeline_settings_are_validated(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        Settings.from_env(environ)


def test_pipeline_settings_reach_the_limits() -> None:
    settings = Settings.from_env({"PHOTO_IO_THREADS": "3", "PHOTO_PREFETCH_MB": "64"})
    assert (settings.io_threads, settings.prefetch_bytes) == (3, 64 * 1024 * 1024)
