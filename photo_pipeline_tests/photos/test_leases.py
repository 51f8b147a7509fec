"""Claims are leases (issue 6, item 3), on real parts: PostgreSQL, S3 over HTTP (moto's server,
behind a TCP link the test cuts for real to make an outage), Dagster runs on an instance built from dagster.yaml.

- a run's heartbeat keeps the claims of photos waiting behind slow ones alive, so another run
  that takes back expired claims gets none of them (and, without the heartbeat, does);
- a storage outage mid-run gives the photos back and the run is no plain success: the step fails
  naming them, and its RetryPolicy renders them once the store is back;
- a database error while recording outcomes gives the photos back (or leaves them to the lease);
- the pending sensor requests a run for an album whose claims expired, with a stable run key,
  and says when a run recorded as in progress has stopped renewing its claims.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    SensorResult,
    build_sensor_context,
    materialize,
)
from sqlalchemy.engine import make_url

from photo_pipeline.cli import samples
from photo_pipeline.definitions import defs
from photo_pipeline.defs.renditions.assets import album_renditions, albums_partitions
from photo_pipeline.defs.renditions.jobs import process_album
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.defs.sensors.pending_photo_sensor import pending_photo_sensor
from photo_pipeline.photos.claims import ClaimedPhoto
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.rendering.render import RenderOptions
from photo_pipeline.services import discovery
from photo_pipeline.services.processing import (
    ClaimHeartbeat,
    DatabaseUnavailable,
    Outcome,
    PhotoProcessor,
    ProcessingLimits,
)
from photo_pipeline.storage import (
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    keys,
    make_s3_client,
)
from photo_pipeline_tests.conftest import S3_TEST_CREDENTIALS, S3Server

SMALL = RenderOptions(preview_long_side=640, thumb_long_side=160)
# A PNG this large is decoded whole (no JPEG draft mode): about 0.3 s a photo on one thread.
SLOW_SIZE = (4000, 3000)


@pytest.fixture(scope="module")
def slow_png() -> bytes:
    return samples.photo_png(*SLOW_SIZE, seed=3)


@pytest.fixture
def repository(photo_db: str) -> Iterator[PhotoRepository]:
    repo = PhotoRepository.from_url(photo_db)
    yield repo
    repo.engine.dispose()


def add_photos(repository: PhotoRepository, store: ObjectStore, album: uuid.UUID, data: bytes, count: int, ext: str = "png") -> list[uuid.UUID]:
    ids = []
    for _ in range(count):
        photo_id = uuid.uuid4()
        key = keys.raw_key(album, photo_id, ext)
        # Each photo its own bytes (trailing bytes after the image's end are ignored by decoders):
        # copies of one original would be completed as duplicates, unrendered.
        store.put(key, data + photo_id.bytes, keys.content_type_for_extension(ext))
        repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key))
        ids.append(photo_id)
    return ids


class Intruder(threading.Thread):
    """Another run's claim loop: takes back whatever claim of the album has expired."""

    def __init__(self, repository: PhotoRepository, album: uuid.UUID, lease_seconds: int) -> None:
        super().__init__(name="intruder", daemon=True)
        self.repository, self.album, self.lease = repository, album, lease_seconds
        self.taken: list[ClaimedPhoto] = []
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while not self.stop.wait(0.2) and time.monotonic() < deadline:
            self.taken += self.repository.claim_batch(
                self.album, "intruder-run", 50, from_statuses=(), lease_seconds=self.lease
            )


@pytest.mark.parametrize("heartbeat_seconds", [0.25, 3600.0], ids=["heartbeat", "no-heartbeat-control"])
def test_the_heartbeat_keeps_claims_alive_while_slow_photos_render(
    repository: PhotoRepository, tmp_path, slow_png: bytes, heartbeat_seconds: float  # type: ignore[no-untyped-def]
) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    album = uuid.uuid4()
    lease = 1
    photos = add_photos(repository, store, album, slow_png, 14)
    limits = ProcessingLimits(
        batch_size=14, workers=1, claim_lease_seconds=lease, claim_heartbeat_seconds=heartbeat_seconds, max_attempts=5
    )
    intruder = Intruder(repository, album, lease)
    intruder.start()
    try:
        started = time.monotonic()
        report = PhotoProcessor(repository, store, SMALL, limits).process_album(album, worker="slow-run")
        seconds = time.monotonic() - started
    finally:
        intruder.stop.set()
        intruder.join()
    # The batch waits behind one render thread for well over the lease: only renewal saves it.
    assert seconds > 2 * lease, f"the album rendered in {seconds:.1f}s: too fast to outlive the lease"
    if heartbeat_seconds < lease:
        assert intruder.taken == []
        assert report.rendered == len(photos) and report.lost_claims == []
        assert all(r.status is PhotoStatus.COMPLETED for r in repository.get_many(photos).values())
    else:
        # The control: without renewal the same claims expire and are taken over mid-run, and the
        # slow run's late results are fenced off.
        assert intruder.taken, "without a heartbeat the waiting claims should have expired"
        assert report.count(Outcome.CLAIM_LOST) >= len({c.id for c in intruder.taken} & set(photos)) > 0


class CuttableLink:
    """A TCP relay between the S3 client and moto's server that the test can cut: open
    connections are closed and new ones are dropped at once (what a network partition or a dying
    load balancer looks like to botocore), until it is restored. Stopping moto itself would not
    do: its threaded server keeps serving keep-alive connections after shutdown."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._cut = threading.Event()
        self._closed = False
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="link-accept", daemon=True).start()

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._open.clear()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self._upstream)
            with self._lock:
                self._open.update((client, upstream))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def outage_s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[CuttableLink]:
    """S3 over HTTP through a link the test can cut; boto3's variables point at the link."""
    link = CuttableLink(s3_server.endpoint_url)
    for name, value in S3_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", link.endpoint)
    yield link
    link.close()


def cut_after_first_completed(repository: PhotoRepository, album: uuid.UUID, link: CuttableLink, *, restore: bool) -> threading.Thread:
    """Cut the link once the run has completed a photo; with `restore`, bring it back once the
    run has given every other photo back (its attempt is over), before the step's retry."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and repository.status_counts(album)[PhotoStatus.COMPLETED] == 0:
            time.sleep(0.05)
        link.cut()
        while restore and time.monotonic() < deadline:
            rows = repository.photos_in_album(album)
            if not any(r.status is PhotoStatus.PROCESSING for r in rows) and any("storage error" in (r.error or "") for r in rows):
                break
            time.sleep(0.05)
        if restore:
            link.restore()

    thread = threading.Thread(target=watch, name="outage", daemon=True)
    thread.start()
    return thread


def bucket_behind(link: CuttableLink) -> S3ObjectStore:
    """A fresh bucket reached through the cuttable link."""
    client = make_s3_client(endpoint_url=link.endpoint)
    bucket = f"outage-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return S3ObjectStore(client, bucket)


def test_a_storage_outage_mid_run_gives_the_photos_back_and_is_reported_unfinished(
    repository: PhotoRepository, outage_s3, slow_png: bytes  # type: ignore[no-untyped-def]
) -> None:
    link: CuttableLink = outage_s3
    store = bucket_behind(link)
    album = uuid.uuid4()
    photos = add_photos(repository, store, album, slow_png, 8)
    watcher = cut_after_first_completed(repository, album, link, restore=False)

    limits = ProcessingLimits(batch_size=8, workers=1, claim_lease_seconds=60, claim_heartbeat_seconds=1, max_attempts=5)
    report = PhotoProcessor(repository, store, SMALL, limits).process_album(album, worker="outage-run")
    watcher.join(timeout=10)

    rows = repository.get_many(photos)
    assert report.rendered >= 1
    assert report.infrastructure_releases, "the photos after the outage were released for storage trouble"
    assert sorted(report.unfinished) == sorted(o.photo_id for o in report.infrastructure_releases)
    assert all(rows[p].status is not PhotoStatus.PROCESSING for p in photos), "nothing left processing"
    for photo_id in report.unfinished:
        assert rows[photo_id].status is PhotoStatus.PENDING and "storage error" in (rows[photo_id].error or "")
        assert str(photo_id) in report.unfinished_summary(limit=100)


def test_a_step_that_leaves_photos_unfinished_fails_and_its_retry_policy_renders_them(
    instance: DagsterInstance, photo_db: str, repository: PhotoRepository, outage_s3, slow_png: bytes, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    link: CuttableLink = outage_s3
    store = bucket_behind(link)
    bucket = store.bucket
    album = uuid.uuid4()
    photos = add_photos(repository, store, album, slow_png, 6)
    instance.add_dynamic_partitions(albums_partitions.name, [str(album)])
    monkeypatch.setenv("PHOTO_WORKERS", "1")
    monkeypatch.setenv("PHOTO_PREVIEW_SIZE", "640")
    resource = PhotoPipelineResource(database_url=photo_db, bucket=bucket)
    # The store is back once the first attempt has given its photos back; the step's retry comes
    # after the RetryPolicy's delay (a retry that still met the outage would be retried again).
    watcher = cut_after_first_completed(repository, album, link, restore=True)

    result = materialize(
        [album_renditions], partition_key=str(album), instance=instance, resources={"photo_pipeline": resource}, raise_on_error=False
    )
    watcher.join(timeout=10)

    retries = [e for e in result.all_events if e.event_type is DagsterEventType.STEP_UP_FOR_RETRY]
    assert retries, "the attempt that released photos for storage trouble must not succeed"
    error = retries[0].event_specific_data.error  # type: ignore[union-attr]
    assert error is not None
    text = error.to_string()  # the retry request, caused by our Failure
    assert "photo(s) claimed by this run were left unfinished" in text and "storage error" in text
    assert [p for p in photos if str(p) in text], "the failure names the photos it left unfinished"
    assert result.success, "the retry, with the store back, renders the rest"
    assert all(r.status is PhotoStatus.COMPLETED for r in repository.get_many(photos).values())


def test_a_database_error_while_recording_gives_the_photos_back(
    repository: PhotoRepository, photo_db: str, tmp_path  # type: ignore[no-untyped-def]
) -> None:
    """A real error from PostgreSQL on the completion write (a constraint the test adds, NOT
    VALID so existing rows pass); giving back (a write to `pending`) still works, so the photos
    go back at once instead of waiting for the lease."""
    store = LocalObjectStore(tmp_path / "objects")
    album = uuid.uuid4()
    photos = add_photos(repository, store, album, samples.photo_jpeg(800, 600), 4, ext="jpg")
    url = make_url(photo_db).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute("ALTER TABLE photos ADD CONSTRAINT no_completion CHECK (status <> 'completed') NOT VALID")

    limits = ProcessingLimits(batch_size=4, workers=2, claim_lease_seconds=60, claim_heartbeat_seconds=1, max_attempts=5)
    with pytest.raises(DatabaseUnavailable, match="could not record the outcome of 4 photo"):
        PhotoProcessor(repository, store, SMALL, limits).process_album(album, worker="db-error-run")
    rows = repository.get_many(photos)
    assert all(r.status is PhotoStatus.PENDING and r.claimed_by is None for r in rows.values())
    assert all("database error" in (r.error or "") for r in rows.values())


def tick(instance: DagsterInstance, resource: PhotoPipelineResource, cursor: str | None = None) -> SensorResult:
    with build_sensor_context(instance=instance, cursor=cursor, resources={"photo_pipeline": resource}) as context:
        result = pending_photo_sensor(context)
    assert isinstance(result, SensorResult)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def test_pending_sensor_requests_a_run_for_expired_claims_and_fails_the_dead_run(
    instance: DagsterInstance, photo_db: str, repository: PhotoRepository, s3_env: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lease = 10
    monkeypatch.setenv("PHOTO_CLAIM_LEASE_SECONDS", str(lease))
    monkeypatch.setenv("PHOTO_CLAIM_HEARTBEAT_SECONDS", "2")
    resource = PhotoPipelineResource(database_url=photo_db, bucket=s3_bucket)
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)
    album, live_album = uuid.uuid4(), uuid.uuid4()
    add_photos(repository, store, album, samples.photo_jpeg(64, 48), 2, ext="jpg")
    add_photos(repository, store, live_album, samples.photo_jpeg(64, 48), 1, ext="jpg")
    instance.add_dynamic_partitions(albums_partitions.name, [str(album), str(live_album)])
    job = defs().resolve_job_def(process_album.name)
    # A run that was killed with -9 mid-album: recorded STARTED forever, its claims never renewed.
    killed = instance.create_run_for_job(job_def=job, tags={"dagster/partition": str(album)})
    instance.report_dagster_event(
        DagsterEvent(event_type_value=DagsterEventType.RUN_START.value, job_name=killed.job_name, message="run started"),
        run_id=killed.run_id,
    )
    assert instance.get_run_by_id(killed.run_id).status is DagsterRunStatus.STARTED  # type: ignore[union-attr]
    claims = repository.claim_batch(album, killed.run_id, 2)
    [live_claim] = repository.claim_batch(live_album, "live-run", 1)
    before = {r.id: r for r in repository.photos_in_album(album)}

    assert tick(instance, resource).run_requests == [], "claims inside their lease are left alone"

    time.sleep(lease + 1)
    repository.renew_claims([live_claim])  # the live run's heartbeat
    first = tick(instance, resource)
    # The killed run wrote its last event more than a lease ago: marked failed, slot freed.
    killed_now = instance.get_run_by_id(killed.run_id)
    assert killed_now is not None and killed_now.status is DagsterRunStatus.FAILURE
    expired_requests = [r for r in first.run_requests or [] if r.tags.get("photo_pipeline/trigger") == "expired_claims"]
    assert [r.partition_key for r in expired_requests] == [str(album)]
    assert expired_requests[0].run_key == discovery.expired_claims_run_key(album, [claims[0].claim])
    second = tick(instance, resource, first.cursor)
    assert [r.run_key for r in second.run_requests or [] if r.tags.get("photo_pipeline/trigger") == "expired_claims"] == [
        expired_requests[0].run_key
    ], "the same expired claims give the same run key: the daemon launches it once"
    # The sensor wrote no row: the claims are still there for the requested run to take back.
    assert {r.id: r for r in repository.photos_in_album(album)} == before



def test_the_heartbeat_reports_a_claim_taken_over_and_never_our_own_finished_photos(
    repository: PhotoRepository, caplog: pytest.LogCaptureFixture
) -> None:
    album = uuid.uuid4()
    for _ in range(3):
        photo_id = uuid.uuid4()
        repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=keys.raw_key(album, photo_id, "jpg")))
    kept, finished, taken = repository.claim_batch(album, "run-1", 3)
    heartbeat = ClaimHeartbeat(repository, 3600, logging.getLogger("test.heartbeat"), album)
    heartbeat.hold([kept, finished, taken])
    # `finished` was written completed, and its worker has not dropped it yet when the beat comes.
    assert repository.complete(
        finished, thumb_key="t", preview_key="p", width=1, height=1, original_bytes=1, thumb_bytes=1, preview_bytes=1
    )
    # `taken` expired and another run owns it now.
    assert repository.release(taken, "expired")
    repository.claim_photos([taken.id], "run-2")

    heartbeat.renew_once()
    heartbeat.drop(finished)  # the worker drops its finished photo right after writing it
    with caplog.at_level(logging.WARNING, logger="test.heartbeat"):
        heartbeat.renew_once()

    assert heartbeat.lost == [taken.id]
    assert str(taken.id) in caplog.text and str(finished.id) not in caplog.text
    assert repository.get(kept.id).claimed_by == kept.claim  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("silent_seconds", "stalled"),
    [(25.0, True), (15.0, False)],
)
def test_a_run_is_stalled_when_its_claims_expired_and_its_log_is_silent_for_a_lease(silent_seconds: float, stalled: bool) -> None:
    run_id = str(uuid.uuid4())
    album = uuid.uuid4()
    expired = {album: [f"{run_id}/0123456789ab", "reconcile/ba9876543210"]}
    # Only runs recorded in progress are asked about; "reconcile" is no Dagster run id.
    assert discovery.stalled_runs(expired, {run_id: silent_seconds}, lease_seconds=20) == ({run_id} if stalled else set())
    assert discovery.stalled_runs(expired, {}, lease_seconds=20) == set()
    assert discovery.worker_of(f"{run_id}/0123456789ab") == run_id
