"""A run killed with -9 in the middle of an album gives its photos back, with no manual step
(issue 6, item 3), end to end: `dagster-daemon` with the production dagster.yaml on PostgreSQL,
the photo table on PostgreSQL, S3 over HTTP, a `process_album` run started with
`dagster job execute` in its own process group and killed there, mid-album.

What brings the photos back is the lease: the killed run stops renewing its claims; once they
are older than the lease, `pending_photo_sensor` marks the silent run failed (its record would say
STARTED forever and hold the album's concurrency slot) and requests a run, whose claim takes the
expired claims back. The reconcile schedule is set to once a year so that it cannot be what helps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, RunsFilter

from photo_pipeline.cli import samples
from photo_pipeline.defs.renditions.assets import albums_partitions
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.storage import S3ObjectStore, keys, make_s3_client
from photo_pipeline_tests.conftest import BIN, ROOT, S3Server

pytestmark = pytest.mark.slow

LEASE_SECONDS = 20
HEARTBEAT_SECONDS = 5
PHOTOS = 48
# Rendering time is made honestly: 12-megapixel JPEGs, a 3000-pixel preview, one render thread
# (about 0.7 s a photo here), so the run is still mid-album when it is killed.
PHOTO_SIZE = (4000, 3000)
STEP_SECONDS = 150  # bound on every wait below; the whole test stays under 3 minutes


@pytest.fixture
def lease_env(pipeline_env: dict[str, str]) -> dict[str, str]:  # noqa: F811 - the imported fixture
    pipeline_env.update(
        {
            "PHOTO_CLAIM_LEASE_SECONDS": str(LEASE_SECONDS),
            "PHOTO_CLAIM_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
            "PHOTO_WORKERS": "1",
            "PHOTO_BATCH_SIZE": "4",
            "PHOTO_PREVIEW_SIZE": "3000",
            "PHOTO_RECONCILE_CRON": "0 0 1 1 *",
        }
    )
    return pipeline_env


@pytest.fixture
def instance(lease_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsterInstance]:
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(name, lease_env[name])
    with DagsterInstance.from_config(lease_env["DAGSTER_HOME"]) as dagster_instance:
        yield dagster_instance


def wait_until(condition, what: str, logs: list[Path], alive: subprocess.Popen[bytes] | None = None) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while time.monotonic() - started < STEP_SECONDS:
        if condition():
            return time.monotonic() - started
        if alive is not None and alive.poll() is not None:
            break
        time.sleep(0.5)
    tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}" for log in logs if log.exists())
    pytest.fail(f"timed out after {STEP_SECONDS}s waiting for {what}\n{tails}")


def test_a_run_killed_mid_album_gives_every_photo_back_through_the_daemon(
    lease_env: dict[str, str], instance: DagsterInstance, s3_env: S3Server, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    repository = PhotoRepository.from_url(lease_env["PHOTO_DATABASE_URL"])
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), lease_env["PHOTO_BUCKET"])
    album = uuid.uuid4()
    data = samples.photo_jpeg(*PHOTO_SIZE, seed=7)
    for _ in range(PHOTOS):
        photo_id = uuid.uuid4()
        key = keys.raw_key(album, photo_id, "jpg")
        repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key))
        # Different bytes per photo (trailing bytes after the JPEG's end are ignored by decoders):
        # copies of one original would be completed as duplicates, unrendered, in a blink.
        store.put(key, data + photo_id.bytes, "image/jpeg")
    instance.add_dynamic_partitions(albums_partitions.name, [str(album)])

    run_log = tmp_path / "cli-run.log"
    with run_log.open("wb") as out:
        cli_run = subprocess.Popen(
            [
                str(BIN / "dagster"), "job", "execute", "-m", "photo_pipeline.definitions", "-a", "defs", "-j", "process_album",
                "--tags", json.dumps({"dagster/partition": str(album), "photo_pipeline/test": "killed-run"}),
            ],
            cwd=ROOT,
            env=lease_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    logs = [run_log, tmp_path / "daemon.log"]
    try:
        def cli_run_id() -> str | None:
            runs = instance.get_runs(RunsFilter(tags={"photo_pipeline/test": "killed-run"}), limit=1)
            return runs[0].run_id if runs else None

        def claimed_by_cli_run() -> list[uuid.UUID]:
            run_id = cli_run_id()
            rows = repository.photos_in_album(album)
            return [r.id for r in rows if run_id and r.status is PhotoStatus.PROCESSING and (r.claimed_by or "").startswith(run_id + "/")]

        wait_until(lambda: claimed_by_cli_run(), "the dagster job execute run to claim photos", logs, cli_run)
        # Only now the daemon, so that the album's first run is the one we kill: the sensors
        # see it in flight and leave the album alone while it lives.
        request.getfixturevalue("daemon")
        wait_until(lambda: "SENSOR" in instance.get_daemon_heartbeats(), "the daemon's sensor loop to run", logs, cli_run)

        def mid_album() -> bool:
            counts = repository.status_counts(album)
            return counts[PhotoStatus.COMPLETED] > 0 and counts[PhotoStatus.PENDING] > 0 and bool(claimed_by_cli_run())

        wait_until(mid_album, "the run to be mid-album (some completed, some claimed, some pending)", logs, cli_run)
        os.killpg(cli_run.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        cli_run.wait(timeout=30)
        # Read once the run is dead: a photo it finished between a read and the kill is not one
        # it left behind. Its claims outlive it until the lease (20 s) runs out.
        held_at_kill = claimed_by_cli_run()
        counts_at_kill = repository.status_counts(album)
    finally:
        if cli_run.poll() is None:
            os.killpg(cli_run.pid, signal.SIGKILL)
            cli_run.wait(timeout=30)
    assert held_at_kill, "the killed run held claims"

    def all_completed() -> bool:
        return repository.status_counts(album)[PhotoStatus.COMPLETED] == PHOTOS

    wait_until(all_completed, "every photo of the album to reach completed after the kill", logs)
    seconds = time.monotonic() - killed_at
    print(
        f"\nkill -9 mid-album ({counts_at_kill[PhotoStatus.COMPLETED]} completed, {len(held_at_kill)} claimed by the "
        f"killed run, {counts_at_kill[PhotoStatus.PENDING]} pending) -> all {PHOTOS} completed in {seconds:.1f}s "
        f"(lease {LEASE_SECONDS}s, heartbeat {HEARTBEAT_SECONDS}s)"
    )
    rows = {r.id: r for r in repository.photos_in_album(album)}
    for photo_id in held_at_kill:
        row = rows[photo_id]
        assert row.status is PhotoStatus.COMPLETED and row.claimed_by is None, "the killed run's photos were not left processing"
        assert row.attempts >= 2, "taken back from the killed run: a second attempt"
        assert store.exists(row.thumb_key or "") and store.exists(row.preview_key or "")
    killed_run = instance.get_run_by_id(cli_run_id() or "")
    assert killed_run is not None and killed_run.status.value == "FAILURE", "the dead run no longer reads as in progress"

