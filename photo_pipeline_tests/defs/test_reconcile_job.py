"""reconcile_storage as a real Dagster run (PostgreSQL instance, PostgreSQL table, S3 over HTTP),
`photo-pipeline reconcile` on the embedded defaults, and recovery from a run killed with -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from dagster import AssetKey, DagsterInstance

from photo_pipeline.cli import samples
from photo_pipeline.cli.commands import main
from photo_pipeline.definitions import defs
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.photos.database import migrate
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository, utc_now
from photo_pipeline.reconcile.apply import Reconciler
from photo_pipeline.reconcile.plan import ReconcilePolicy
from photo_pipeline.rendering.render import RenderOptions
from photo_pipeline.services.processing import PhotoProcessor, ProcessingLimits
from photo_pipeline.storage import S3ObjectStore, keys, make_s3_client
from photo_pipeline_tests.conftest import S3_TEST_CREDENTIALS, S3Server

JPEG = samples.photo_jpeg(64, 48)


def seed(repository: PhotoRepository, store: S3ObjectStore, album: uuid.UUID, n: int) -> list[uuid.UUID]:
    ids = []
    for _ in range(n):
        photo_id = uuid.uuid4()
        key = keys.raw_key(album, photo_id, "jpg")
        repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key))
        store.put(key, JPEG, "image/jpeg")
        ids.append(photo_id)
    return ids


def run_reconcile(instance: DagsterInstance, resource: PhotoPipelineResource, **config: bool):  # type: ignore[no-untyped-def]
    job = defs().resolve_job_def("reconcile_storage")
    return job.execute_in_process(
        instance=instance,
        resources={"photo_pipeline": resource},
        run_config={"ops": {"apply_changes": {"config": config}}},
        raise_on_error=False,
    )


def test_reconcile_storage_dry_run_then_apply(
    instance: DagsterInstance, postgres_url: str, s3_env: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTO_ORPHAN_GRACE_SECONDS", "0")
    migrate(postgres_url)
    repository = PhotoRepository.from_url(postgres_url)
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)
    album = uuid.uuid4()
    seed(repository, store, album, 12)
    orphan = keys.raw_key(album, uuid.uuid4(), "jpg")
    store.put(orphan, JPEG, "image/jpeg")
    time.sleep(1.1)  # past the (zero) orphan grace at S3's one-second resolution
    resource = PhotoPipelineResource(database_url=postgres_url, bucket=s3_bucket)

    dry = run_reconcile(instance, resource, dry_run=True)
    assert dry.success
    assert repository.find_by_original_keys([orphan]) == {}
    planned = dry.output_for_node("plan_changes")
    assert planned.counts()["adopt"] == 1

    applied = run_reconcile(instance, resource)
    assert applied.success
    assert orphan in repository.find_by_original_keys([orphan])
    event = instance.get_latest_materialization_event(AssetKey("storage_reconciliation"))
    assert event is not None and event.asset_materialization is not None
    metadata = event.asset_materialization.metadata
    assert metadata["orphan_objects"].value == 1 and metadata["applied"].value is True


def test_reconcile_storage_refuses_an_empty_bucket(
    instance: DagsterInstance, postgres_url: str, s3_env: S3Server, s3_bucket: str
) -> None:
    migrate(postgres_url)
    repository = PhotoRepository.from_url(postgres_url)
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)
    album = uuid.uuid4()
    ids = seed(repository, store, album, 3)
    PhotoProcessor(repository, store, RenderOptions(preview_long_side=64, thumb_long_side=32), ProcessingLimits(workers=1)).process_album(album, "seed")
    empty_bucket = s3_env.new_bucket()
    result = run_reconcile(instance, PhotoPipelineResource(database_url=postgres_url, bucket=empty_bucket))
    assert not result.success
    failure = [e for e in result.all_events if e.is_step_failure][0]
    assert "no originals" in str(failure.step_failure_data.error) and "--force" in str(failure.step_failure_data.error)
    assert all(r.status is PhotoStatus.COMPLETED and r.missing_since is None for r in repository.get_many(ids).values())


def test_cli_reconcile_dry_run_json_on_embedded_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("PHOTO_", "DAGSTER_HOME")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PHOTO_PIPELINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PHOTO_ORPHAN_GRACE_SECONDS", "0")
    album = uuid.uuid4()
    photo = tmp_path / "a.jpg"
    photo.write_bytes(JPEG)
    runner = CliRunner()
    assert runner.invoke(main, ["init-db"]).exit_code == 0
    assert runner.invoke(main, ["upload", str(album), str(photo)]).exit_code == 0
    stray = tmp_path / "home" / "objects" / "raw" / str(album) / f"{uuid.uuid4()}.jpg"
    stray.write_bytes(JPEG)
    old = time.time() - 60
    os.utime(stray, (old, old))
    dry = runner.invoke(main, ["reconcile", "--dry-run", "--json"], catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    payload = json.loads(dry.output)
    assert payload["actions"]["adopt"] == 1 and payload["dry_run"] is True
    assert runner.invoke(main, ["status", "--json"]).output.count('"pending": 1') >= 1
    applied = runner.invoke(main, ["reconcile"], catch_exceptions=False)
    assert applied.exit_code == 0, applied.output
    totals = json.loads(runner.invoke(main, ["status", "--json"]).output)["totals"]
    assert totals["pending"] == 2


WORKER_SCRIPT = """
import sys, uuid
from photo_pipeline.storage import S3ObjectStore, make_s3_client
from photo_pipeline.services.processing import PhotoProcessor, ProcessingLimits
from photo_pipeline.rendering.render import RenderOptions
from photo_pipeline.photos.repository import PhotoRepository
url, endpoint, bucket, album = sys.argv[1:5]
repository = PhotoRepository.from_url(url)
store = S3ObjectStore(make_s3_client(endpoint_url=endpoint), bucket)
PhotoProcessor(repository, store, RenderOptions(), ProcessingLimits(batch_size=4, workers=1)).process_album(uuid.UUID(album), "doomed-run")
"""


def test_a_run_killed_mid_album_is_recovered_by_the_lease(
    postgres_url: str, s3_env: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    migrate(postgres_url)
    repository = PhotoRepository.from_url(postgres_url)
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)
    album = uuid.uuid4()
    big = samples.photo_jpeg(3000, 2000)
    ids = []
    for _ in range(24):
        photo_id = uuid.uuid4()
        key = keys.raw_key(album, photo_id, "jpg")
        repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key))
        store.put(key, big, "image/jpeg")
        ids.append(photo_id)
    env = {**os.environ, **S3_TEST_CREDENTIALS}
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, postgres_url, s3_env.endpoint_url, s3_bucket, str(album)], env=env
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        counts = repository.status_counts(album)
        if counts[PhotoStatus.COMPLETED] >= 2 and counts[PhotoStatus.PROCESSING] > 0:
            break
        assert worker.poll() is None, "the worker finished before it could be killed"
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    stuck = repository.status_counts(album)[PhotoStatus.PROCESSING]
    assert stuck > 0

    policy = ReconcilePolicy(claim_lease_seconds=900, min_changes=100)
    now = utc_now()
    inside_lease = Reconciler(repository, store, policy, clock=lambda: now + timedelta(seconds=60))
    inside_lease.apply(inside_lease.plan())
    assert repository.status_counts(album)[PhotoStatus.PROCESSING] == stuck, "a claim inside its lease is left alone"

    past_lease = Reconciler(repository, store, policy, clock=lambda: now + timedelta(seconds=901))
    report = past_lease.apply(past_lease.plan())
    assert report.applied["release_claim"] == stuck
    assert album in report.albums_to_render
    assert repository.status_counts(album)[PhotoStatus.PROCESSING] == 0

    PhotoProcessor(repository, store, RenderOptions(preview_long_side=400, thumb_long_side=100), ProcessingLimits(workers=2)).process_album(album, "rescue-run")
    rows = repository.get_many(ids)
    assert all(r.status is PhotoStatus.COMPLETED for r in rows.values())
    assert sum(1 for r in rows.values() if r.attempts == 2) == stuck
