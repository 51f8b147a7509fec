"""End to end through the daemon: `dagster-daemon` running with the sensors on, photos uploaded
with the CLI, rows reaching `completed` without anyone launching a run, renditions that decode.

Everything is real and out of process: the daemon, its code server and run workers are
subprocesses speaking to PostgreSQL and to the S3 server over HTTP.
"""

from __future__ import annotations

import io
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image

from photo_pipeline.cli import samples
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.storage import S3ObjectStore, make_s3_client
from photo_pipeline_tests.conftest import BIN, S3Server

DEADLINE_SECONDS = 240

pytestmark = pytest.mark.slow


def wait_for(condition, what: str, daemon_log: Path, process: subprocess.Popen[bytes]) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while time.monotonic() - started < DEADLINE_SECONDS:
        if condition():
            return time.monotonic() - started
        if process.poll() is not None:
            break
        time.sleep(1)
    tail = daemon_log.read_text(errors="replace")[-6000:]
    pytest.fail(f"timed out waiting for {what}; daemon exit={process.poll()}; daemon log tail:\n{tail}")


def test_uploads_reach_completed_through_the_daemon(
    pipeline_env: dict[str, str], daemon: subprocess.Popen[bytes], tmp_path: Path, s3_env: S3Server
) -> None:
    album = uuid.uuid4()
    files = []
    for i, data in enumerate([samples.photo_jpeg(2400, 1600, seed=i) for i in range(3)] + [samples.corrupt_jpeg()]):
        path = tmp_path / f"photo-{i}.jpg"
        path.write_bytes(data)
        files.append(path)
    upload = subprocess.run(
        [str(BIN / "photo-pipeline"), "upload", str(album), *map(str, files)],
        env=pipeline_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upload.returncode == 0, upload.stdout + upload.stderr

    # An object dropped straight into the bucket, with no row: the raw sensor adopts it.
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), pipeline_env["PHOTO_BUCKET"])
    orphan_album = uuid.uuid4()
    orphan_key = f"raw/{orphan_album}/{uuid.uuid4()}.jpg"
    store.put(orphan_key, samples.photo_jpeg(800, 600), "image/jpeg")

    repository = PhotoRepository.from_url(pipeline_env["PHOTO_DATABASE_URL"])

    def all_settled() -> bool:
        counts = repository.status_counts(album)
        orphan = repository.find_by_original_keys([orphan_key]).get(orphan_key)
        return (
            counts[PhotoStatus.COMPLETED] == 3
            and counts[PhotoStatus.FAILED] == 1
            and orphan is not None
            and orphan.status is PhotoStatus.COMPLETED
        )

    seconds = wait_for(all_settled, "uploads to reach completed", tmp_path / "daemon.log", daemon)
    print(f"\nupload -> completed through the daemon: {seconds:.1f}s")

    photos = repository.pending_in_album(album, 10)
    assert photos == []
    by_album = repository.status_counts_by_album()
    assert by_album[album][PhotoStatus.COMPLETED] == 3
    rows = repository.photos_in_album(album)
    completed = [r for r in rows if r.status is PhotoStatus.COMPLETED]
    for row in completed:
        with Image.open(io.BytesIO(store.get(row.preview_key or ""))) as preview:
            preview.load()
            assert max(preview.size) == 1024
        with Image.open(io.BytesIO(store.get(row.thumb_key or ""))) as thumb:
            thumb.load()
    failed = [r for r in rows if r.status is PhotoStatus.FAILED]
    assert failed and store.exists(failed[0].original_key)


def test_the_reconcile_schedule_ticks_and_launches_runs(
    pipeline_env: dict[str, str], daemon: subprocess.Popen[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(name, pipeline_env[name])
    with DagsterInstance.from_config(pipeline_env["DAGSTER_HOME"]) as instance:

        def reconciled() -> bool:
            runs = instance.get_run_records(RunsFilter(job_name="reconcile_storage", statuses=[DagsterRunStatus.SUCCESS]))
            return bool(runs)

        seconds = wait_for(reconciled, "a scheduled reconcile_storage run", tmp_path / "daemon.log", daemon)
        [run] = instance.get_run_records(RunsFilter(job_name="reconcile_storage"), limit=1)
        assert run.dagster_run.tags.get("dagster/schedule_name") == "reconcile_storage_schedule"
    print(f"\nfirst scheduled reconcile_storage run succeeded after {seconds:.1f}s")
