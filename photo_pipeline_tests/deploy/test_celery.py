"""Album runs on two Celery workers (issue 11), end to end on 127.0.0.1: `dagster-daemon` with
deploy/dagster-celery.yaml, Redis as broker and result backend, two `photo-pipeline worker`
processes with their own names and working folders, PostgreSQL, S3 over HTTP (moto's server).

Six albums uploaded through the client's upload flow: every run succeeds, both workers ran runs,
no album had two runs at once, every photo rendered exactly once, the compute logs are in the
bucket. Then the worker running an album is killed with -9 in the middle of it: run monitoring
fails that run (the launcher's health check asks the worker, which no longer answers) and the
other worker completes the album once the dead run's claims expire. The intervals are shortened
(lease 20 s, monitoring every 2 s, a worker lost after 6 s of silence) so the test stays
bounded; it prints what it measured (`pytest -s`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus
from sqlalchemy.engine import make_url

from photo_pipeline.cli import samples
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.storage import S3ObjectStore, make_s3_client
from photo_pipeline_tests.conftest import BIN, PG_ADMIN_DSN, S3Server
from photo_pipeline_tests.deploy.celery_cluster import (
    FINISHED,
    CeleryCluster,
    ClusterTimings,
    ConnectionPeaks,
    RunFacts,
    album_runs,
    celery_env,
    celery_instance_yaml,
    claim_redis_db,
    overlapping_runs,
    photos_rendered_by_runs,
    release_redis_db,
    run_span_seconds,
    run_task_worker,
    upload_album,
    wait_for,
    workers_answering,
)

LEASE_SECONDS = 20
HEARTBEAT_SECONDS = 5
ALBUMS = 6
PHOTOS_PER_ALBUM = 4
SMALL_PHOTO = (640, 480)
# The album whose worker is killed: slow enough to be caught mid-album (one render thread, a
# 3000-pixel preview from 7.7 megapixels: about half a second a photo here).
KILLED_ALBUM_PHOTOS = 24
KILLED_ALBUM_PHOTO = (3200, 2400)
PREVIEW_SIZE = 3000  # never upscaled: the small photos keep their size
STEP_SECONDS = 120  # bound on every wait below
TIMINGS = ClusterTimings()


# -- the rule the test judges overlaps by (no cluster needed)


def test_overlapping_runs_of_one_album_are_found_and_other_albums_are_not() -> None:
    runs = [
        RunFacts("a1", "A", DagsterRunStatus.SUCCESS, 0.0, 10.0, "w1"),
        RunFacts("a2", "A", DagsterRunStatus.SUCCESS, 10.0, 20.0, "w2"),  # starts as a1 ends: fine
        RunFacts("b1", "B", DagsterRunStatus.SUCCESS, 5.0, 15.0, "w1"),  # another album: fine
        RunFacts("c1", "C", DagsterRunStatus.SUCCESS, 0.0, 10.0, "w1"),
        RunFacts("c2", "C", DagsterRunStatus.STARTED, 9.0, None, "w2"),
        RunFacts("q", "C", DagsterRunStatus.QUEUED, None, None, None),  # never started: no interval
    ]
    assert overlapping_runs(runs) == [("C", "c1", "c2")]


# -- the cluster


@pytest.fixture
def redis_db() -> Iterator[int]:
    db = claim_redis_db()
    yield db
    release_redis_db(db)


@pytest.fixture
def cluster_env(pipeline_env: dict[str, str], redis_db: int) -> dict[str, str]:
    """pipeline_env (conftest) made a Celery deployment: the broker, the instance file, the
    short lease. Changed in place, so the daemon fixture started after it sees the same."""
    pipeline_env.update(
        {
            **celery_env(pipeline_env, redis_db),
            "PHOTO_CLAIM_LEASE_SECONDS": str(LEASE_SECONDS),
            "PHOTO_CLAIM_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
            "PHOTO_WORKERS": "1",
            "PHOTO_BATCH_SIZE": "4",
            "PHOTO_PREVIEW_SIZE": str(PREVIEW_SIZE),
            # Only the sensors and the lease bring photos back here, not a reconcile run.
            "PHOTO_RECONCILE_CRON": "0 0 1 1 *",
        }
    )
    (Path(pipeline_env["DAGSTER_HOME"]) / "dagster.yaml").write_text(celery_instance_yaml(TIMINGS))
    return pipeline_env


@pytest.fixture
def celery_instance(cluster_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsterInstance]:
    """The daemon's instance, read from this process (run records, the launcher's Celery app)."""
    for name, value in cluster_env.items():
        if name.startswith(("DAGSTER_", "PHOTO_BUCKET", "AWS_")):
            monkeypatch.setenv(name, value)
    with DagsterInstance.from_config(cluster_env["DAGSTER_HOME"]) as instance:
        yield instance


@pytest.fixture
def cluster(cluster_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[CeleryCluster]:
    request.getfixturevalue("daemon")  # after cluster_env: the daemon reads the Celery instance file
    celery_cluster = CeleryCluster(
        env=cluster_env, root=tmp_path / "workers", instance_yaml=celery_instance_yaml(TIMINGS), bin_dir=BIN
    )
    yield celery_cluster
    celery_cluster.stop()


@pytest.mark.slow
def test_album_runs_on_two_celery_workers_and_a_killed_worker(
    cluster: CeleryCluster,
    cluster_env: dict[str, str],
    celery_instance: DagsterInstance,
    s3_env: S3Server,
    tmp_path: Path,
) -> None:
    instance = celery_instance
    repository = PhotoRepository.from_url(cluster_env["PHOTO_DATABASE_URL"])
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), cluster_env["PHOTO_BUCKET"])
    first, second = cluster.start_worker("photos-a"), cluster.start_worker("photos-b")
    logs = [tmp_path / "daemon.log", *cluster.logs()]
    wait_for(
        lambda: workers_answering(instance, [first.node, second.node]),
        "both workers to answer over the broker",
        STEP_SECONDS,
        logs,
        [first.process, second.process],
    )

    # -- six albums on two workers
    databases = {make_url(cluster_env["PHOTO_DATABASE_URL"]).database or "": "photo table", cluster_env["DAGSTER_PG_DB"]: "dagster"}
    total = ALBUMS * PHOTOS_PER_ALBUM
    with ConnectionPeaks(PG_ADMIN_DSN, databases) as connections:
        small = [samples.photo_jpeg(*SMALL_PHOTO, seed=i) for i in range(PHOTOS_PER_ALBUM)]
        albums = [upload_album(repository, store, tmp_path / f"album-{i}", small) for i in range(ALBUMS)]

        def settled() -> list[RunFacts] | None:
            completed = sum(repository.status_counts(album)[PhotoStatus.COMPLETED] for album in albums)
            runs = album_runs(instance, albums)
            return runs if completed == total and runs and all(r.status in FINISHED for r in runs) else None

        runs = wait_for(settled, "six albums completed and their runs ended", STEP_SECONDS, logs, [first.process, second.process])
    assert [r for r in runs if r.status is not DagsterRunStatus.SUCCESS] == [], "every run succeeds"
    assert {r.worker for r in runs} == {first.node, second.node}, f"both workers ran runs: {runs}"
    assert overlapping_runs(runs) == [], "no album had two runs at once"
    rows = [row for album in albums for row in repository.photos_in_album(album)]
    assert len(rows) == total and all(r.status is PhotoStatus.COMPLETED and r.attempts == 1 for r in rows)
    assert photos_rendered_by_runs(instance, [r.run_id for r in runs]) == total, "every photo rendered exactly once"
    log_keys = [info.key for info in store.list_page("dagster/compute-logs/", limit=1000)]
    assert {r.run_id for r in runs} <= {key.split("/")[3] for key in log_keys}, f"every run's compute logs in the bucket: {log_keys}"
    span = run_span_seconds(runs)
    per_worker = {node: sum(1 for r in runs if r.worker == node) for node in (first.node, second.node)}
    print(
        f"\n{ALBUMS} albums x {PHOTOS_PER_ALBUM} photos ({SMALL_PHOTO[0]}x{SMALL_PHOTO[1]}) on 2 Celery workers: "
        f"{len(runs)} runs {per_worker}; first run start -> last run end {span:.1f}s, {total / span:.2f} photos/s; "
        f"peak connections {connections.peaks}"
    )

    # -- the worker running an album killed with -9 in the middle of it
    big = samples.photo_jpeg(*KILLED_ALBUM_PHOTO, seed=11)
    album = upload_album(repository, store, tmp_path / "album-killed", [big] * KILLED_ALBUM_PHOTOS)

    def claimed_by(run_id: str) -> list[uuid.UUID]:
        return [
            r.id
            for r in repository.photos_in_album(album)
            if r.status is PhotoStatus.PROCESSING and (r.claimed_by or "").startswith(run_id + "/")
        ]

    def mid_album() -> str | None:
        started = [r for r in album_runs(instance, [album]) if r.status is DagsterRunStatus.STARTED]
        counts = repository.status_counts(album)
        if started and counts[PhotoStatus.COMPLETED] > 0 and counts[PhotoStatus.PENDING] > 0 and claimed_by(started[0].run_id):
            return started[0].run_id
        return None

    killed_run = wait_for(mid_album, "the album's run to be mid-album", STEP_SECONDS, logs, [first.process, second.process], interval=0.2)
    victim = cluster.worker_of_node(run_task_worker(instance, killed_run))
    assert victim is not None, "the run's worker is one of ours"
    survivor = second if victim == first.name else first
    cluster.kill(victim)
    killed_at = time.monotonic()
    # Read once the worker is dead: what its run left behind.
    held_at_kill = claimed_by(killed_run)
    counts_at_kill = repository.status_counts(album)
    assert held_at_kill, "the killed run held claims"

    def killed_run_failed() -> bool:
        run = instance.get_run_by_id(killed_run)
        return run is not None and run.status is DagsterRunStatus.FAILURE

    wait_for(killed_run_failed, "run monitoring to fail the dead worker's run", STEP_SECONDS, logs, [survivor.process])
    failed_after = time.monotonic() - killed_at
    [failure] = instance.all_logs(killed_run, of_type=DagsterEventType.RUN_FAILURE)
    message = failure.message or ""
    assert "Detected run worker status FAILED" in message, message  # run monitoring's words
    assert f"Celery worker {cluster.workers[victim].node} does not answer" in message, message  # the health check's

    def album_done() -> list[RunFacts] | None:
        runs = album_runs(instance, [album])
        completed = repository.status_counts(album)[PhotoStatus.COMPLETED] == KILLED_ALBUM_PHOTOS
        return runs if completed and all(r.status in FINISHED for r in runs) else None

    album_runs_after = wait_for(album_done, "the other worker to complete the album", LEASE_SECONDS + STEP_SECONDS, logs, [survivor.process])
    recovered_after = time.monotonic() - killed_at
    later = [r for r in album_runs_after if r.run_id != killed_run]
    assert later and all(r.status is DagsterRunStatus.SUCCESS and r.worker == survivor.node for r in later), later
    assert overlapping_runs(album_runs_after) == [], "no album had two runs at once"
    rows_by_id = {r.id: r for r in repository.photos_in_album(album)}
    for photo_id in held_at_kill:
        row = rows_by_id[photo_id]
        assert row.status is PhotoStatus.COMPLETED and row.attempts >= 2, "taken back from the killed run"
    # What brought the album back: run retries (a retry of the failed run) and the sensors.
    how = [
        "retry" if "dagster/parent_run_id" in run.tags else run.tags.get("photo_pipeline/trigger", "?")
        for run in (instance.get_run_by_id(r.run_id) for r in later)
        if run is not None
    ]
    print(
        f"kill -9 of {victim} mid-album ({counts_at_kill[PhotoStatus.COMPLETED]} of {KILLED_ALBUM_PHOTOS} completed, "
        f"{len(held_at_kill)} claimed by its run, {counts_at_kill[PhotoStatus.PENDING]} pending): "
        f"run failed by run monitoring after {failed_after:.1f}s, album completed by {survivor.name} after "
        f"{recovered_after:.1f}s by {len(later)} run(s): {', '.join(how)} (lease {LEASE_SECONDS}s, monitoring every {TIMINGS.monitoring_poll_seconds}s, "
        f"worker lost after {TIMINGS.worker_lost_after_seconds}s of silence)"
    )
