"""Upload-to-completed latency of one photo into a live album, with a breakdown by hop.

A real `dagster-daemon` (the repository's production dagster.yaml in a temporary DAGSTER_HOME,
Dagster storage on a fresh PostgreSQL database), the photo table on PostgreSQL, S3 over HTTP
(moto's server, started here), default settings otherwise. Photos are uploaded one at a time into
one album, each waited for, in two modes:

- `fast`: the upload, then the fast path (`AlbumRunRequester.request`, what `photo-pipeline
  upload`/`arrived` and the API's `complete` call; the requester is kept open, as the API keeps it);
- `sensor`: the upload alone; the sensors (the safety net) notice it.

Hops, from timestamps: upload done -> run requested (run record created) -> dequeued (RUN_DEQUEUED)
-> launched (RUN_STARTING) -> run worker started (RUN_START) -> claimed (row's claimed_at, seen by
polling) -> completed (row's completed_at). Prints p50 / max per mode and the median of each hop.
Also times one `photo-pipeline arrived` command (a fresh process: imports + code location load).

    flock /tmp/bench.lock env PYTHONPATH=. .venv/bin/python benchmarks/latency_benchmark.py [--photos 8] [--modes fast,sensor]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
from bench_support import create_database, drop_database  # noqa: E402 (the script's own folder)

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_DEFAULT_REGION": "us-east-1"}
PHOTO_TIMEOUT_SECONDS = 90
HOPS = ["requested", "dequeued", "launched", "worker started", "claimed", "completed"]


@dataclass
class Sample:
    total: float
    hops: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None


def new_database(created: list[str]) -> str:
    name, _ = create_database()
    created.append(name)
    return name


@contextmanager
def services(folder: Path) -> Iterator[None]:
    """moto over HTTP, two fresh PostgreSQL databases, a DAGSTER_HOME with the production yaml;
    the environment of this process (inherited by the daemon) points at them."""
    created: list[str] = []
    # moto's request log would print presigned URLs (signatures) and drown the figures.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        bucket = f"photos-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in CREDENTIALS.items() if k != "AWS_DEFAULT_REGION"},
                     region_name="us-east-1").create_bucket(Bucket=bucket)  # fmt: skip
        photo_db, dagster_db = new_database(created), new_database(created)
        dagster_home = folder / "dagster_home"
        dagster_home.mkdir()
        shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
        for name in [k for k in os.environ if k.startswith(("PHOTO_", "DAGSTER_", "AWS_"))]:
            del os.environ[name]
        os.environ.update(CREDENTIALS)
        os.environ.update(
            {
                "AWS_ENDPOINT_URL_S3": endpoint,
                "PHOTO_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{photo_db}",
                "PHOTO_BUCKET": bucket,
                "PHOTO_PIPELINE_HOME": str(folder / "home"),
                "DAGSTER_HOME": str(dagster_home),
                "DAGSTER_PG_HOST": "127.0.0.1",
                "DAGSTER_PG_USER": "postgres",
                "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
                "DAGSTER_PG_DB": dagster_db,
            }
        )
        from photo_pipeline.photos.database import migrate

        migrate(os.environ["PHOTO_DATABASE_URL"])
        yield
    finally:
        moto.stop()
        for name in created:
            drop_database(name)


@contextmanager
def daemon(folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (folder / "daemon.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def event_times(instance, run_id: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from dagster import DagsterEventType

    wanted = {
        DagsterEventType.RUN_DEQUEUED.value: "dequeued",
        DagsterEventType.RUN_STARTING.value: "launched",
        DagsterEventType.RUN_START.value: "worker started",
    }
    times: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is not None and event.event_type_value in wanted and wanted[event.event_type_value] not in times:
            times[wanted[event.event_type_value]] = entry.timestamp
    return times


def timestamp(moment: datetime) -> float:
    return moment.timestamp()


def measure_one(instance, repository, store, requester, album: uuid.UUID, photo: Path, policy) -> Sample:  # type: ignore[no-untyped-def]
    from photo_pipeline.photos.models import PhotoStatus
    from photo_pipeline.services.uploads import upload_photo

    result = upload_photo(repository, store, album, photo, policy=policy)
    uploaded = time.time()
    if requester is not None:
        requester.request(album)
    claimed_by: str | None = None
    claimed_at: float | None = None
    while time.time() - uploaded < PHOTO_TIMEOUT_SECONDS:
        row = repository.get(result.photo_id)
        assert row is not None
        if row.status is PhotoStatus.PROCESSING and row.claimed_by and claimed_by is None:
            claimed_by, claimed_at = row.claimed_by, timestamp(row.claimed_at) if row.claimed_at else None
        if row.status in (PhotoStatus.COMPLETED, PhotoStatus.FAILED):
            break
        time.sleep(0.05)
    else:
        raise SystemExit(f"photo {result.photo_id} not completed after {PHOTO_TIMEOUT_SECONDS}s")
    if row.status is not PhotoStatus.COMPLETED or row.completed_at is None:
        raise SystemExit(f"photo {result.photo_id} ended {row.status.value}: {row.error}")
    completed = timestamp(row.completed_at)
    sample = Sample(total=completed - uploaded)
    if claimed_by is None:
        return sample  # claimed and completed between two polls: only the total is known
    from photo_pipeline.services.discovery import worker_of

    run_id = worker_of(claimed_by)
    record = instance.get_run_record_by_id(run_id)
    moments = {"requested": timestamp(record.create_timestamp), **event_times(instance, run_id)}
    moments.update({"claimed": claimed_at or completed, "completed": completed})
    previous = uploaded
    for hop in HOPS:
        if hop in moments:
            # A run requested before this upload (the run in progress) counts from the upload.
            moment = max(moments[hop], uploaded)
            sample.hops[hop] = moment - previous
            previous = moment
    sample.run_id = run_id
    return sample


def time_arrived_command(repository, store, album: uuid.UUID, photo: Path, policy) -> float:  # type: ignore[no-untyped-def]
    from photo_pipeline.services.uploads import upload_photo

    result = upload_photo(repository, store, album, photo, policy=policy)
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "photo-pipeline"), "arrived", str(result.photo_id)], capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"photo-pipeline arrived failed: {done.stdout}{done.stderr}")
    return seconds


def summary(mode: str, samples: list[Sample]) -> str:
    totals = sorted(s.total for s in samples)
    lines = [f"{mode:>7}: p50 {statistics.median(totals):5.2f} s  max {totals[-1]:5.2f} s  ({len(samples)} photos)"]
    hops = [
        f"{hop} {statistics.median([s.hops[hop] for s in samples if hop in s.hops]):.2f}"
        for hop in HOPS
        if any(hop in s.hops for s in samples)
    ]
    lines.append("         median hop (s): " + " | ".join(hops))
    lines.append("         per photo (s): " + " ".join(f"{s.total:.2f}" for s in samples))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--modes", default="fast,sensor")
    parser.add_argument("--size", default="4000x3000", help="original WxH (default 12 MP)")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with services(folder), daemon(folder) as process:
            from dagster import DagsterInstance

            from photo_pipeline.cli import samples
            from photo_pipeline.instance.run_requests import album_run_requester
            from photo_pipeline.photos.repository import PhotoRepository
            from photo_pipeline.services.uploads import UploadPolicy
            from photo_pipeline.settings import Settings
            from photo_pipeline.storage import build_object_store

            settings = Settings.from_env()
            repository = PhotoRepository.from_url(settings.database_url)
            store = build_object_store(settings)
            policy = UploadPolicy.from_settings(settings)
            photos = []
            for i in range(args.photos + 1):
                path = folder / f"photo-{i}.jpg"
                path.write_bytes(samples.photo_jpeg(width, height, seed=i))
                photos.append(path)
            results: dict[str, list[Sample]] = {}
            with DagsterInstance.get() as instance, album_run_requester(instance) as requester:
                # Warm-up (not counted): the daemon's code server loads, the first run starts.
                started = time.time()
                measure_one(instance, repository, store, requester, uuid.uuid4(), photos[-1], policy)
                print(f"warm-up photo completed {time.time() - started:.1f}s after the daemon's start")
                for mode in args.modes.split(","):
                    album = uuid.uuid4()
                    results[mode] = [
                        measure_one(instance, repository, store, requester if mode == "fast" else None, album, photo, policy)
                        for photo in photos[: args.photos]
                    ]
                    print(summary(mode, results[mode]), flush=True)
                arrived = time_arrived_command(repository, store, uuid.uuid4(), photos[0], policy)
            if process.poll() is not None:
                raise SystemExit(f"the daemon exited with {process.returncode}")
    print(f"`photo-pipeline arrived` command (new process, imports + code location + submit): {arrived:.2f} s")
    print(f"target: p50 <= 5 s, max <= 10 s; {width}x{height} JPEG originals, production dagster.yaml, default settings")


if __name__ == "__main__":
    main()
