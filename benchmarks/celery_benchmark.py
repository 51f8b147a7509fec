"""Six albums on one Celery worker, then on two: throughput of the Celery deployment
(deploy/dagster-celery.yaml, `photo-pipeline worker`), and the connections it opens.

Each measurement is a fresh deployment on this machine: a photo database and a Dagster database
on the local PostgreSQL, moto's S3 server in its own process, a Redis database index of its
own (flushed afterwards), `dagster-daemon` and N `photo-pipeline worker` processes in their own
folders (photo_pipeline_tests/deploy/celery_cluster.py, as the test starts them), with
`max_concurrent_runs` equal to the worker slots, as the guide says. Once every worker answers,
six albums are uploaded through the client's flow (presigned PUTs, four at a time) and the
sensors request their runs. Printed per worker count: photos/s from the first run's start to the
last run's end, the same from the last upload to the last photo completed, runs per worker, and
the peak connections to each database (pg_stat_activity every 0.2 s), and the peak resident memory
of a worker's own process and of its run processes (/proc every 0.2 s). Prints; asserts nothing.

On a 2-core machine the workers share the cores (and with the daemon, PostgreSQL, moto): two
workers prove the mechanics, not a speed-up; on separate machines each brings its own cores.

    flock /tmp/bench.lock env PYTHONPATH=. .venv/bin/python benchmarks/celery_benchmark.py \\
        [--workers 1 2] [--albums 6] [--photos 8] [--size 2400x1600]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from dagster import DagsterInstance
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_support import ADMIN_DSN, create_database, drop_database  # noqa: E402 (the script's own folder)
from sensor_tick_benchmark import CREDENTIALS, seeded_moto_process  # noqa: E402

from photo_pipeline.cli import samples  # noqa: E402
from photo_pipeline.photos.database import migrate  # noqa: E402
from photo_pipeline.photos.models import PhotoStatus  # noqa: E402
from photo_pipeline.photos.repository import PhotoRepository  # noqa: E402
from photo_pipeline.storage import S3ObjectStore, make_s3_client  # noqa: E402
from photo_pipeline_tests.deploy.celery_cluster import (  # noqa: E402
    FINISHED,
    CeleryCluster,
    ClusterTimings,
    ConnectionPeaks,
    album_runs,
    celery_env,
    celery_instance_yaml,
    claim_redis_db,
    release_redis_db,
    run_span_seconds,
    upload_album,
    wait_for,
    workers_answering,
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WAIT_SECONDS = 600


@dataclass(frozen=True)
class Measurement:
    workers: int
    photos: int
    runs: int
    runs_per_worker: dict[str, int]
    run_span_seconds: float
    upload_to_done_seconds: float
    peaks: dict[str, int]
    worker_rss_mib: float
    run_rss_mib: float


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:  # the process ended between the listing and the read
        pass
    return 0.0


def children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class MemoryPeaks:
    """Peak RSS of the workers' own processes and of their children (the run processes: one
    prefork child per run), sampled while in the `with` block."""

    def __init__(self, worker_pids: list[int], interval: float = 0.2) -> None:
        self._pids = worker_pids
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="memory-peaks", daemon=True)
        self.worker_mib = 0.0
        self.run_mib = 0.0

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for pid in self._pids:
                self.worker_mib = max(self.worker_mib, rss_mib(pid))
                for child in children(pid):
                    self.run_mib = max(self.run_mib, rss_mib(child))
            self._stop.wait(self._interval)


@contextmanager
def deployment(folder: Path, workers: int) -> Iterator[tuple[dict[str, str], CeleryCluster, subprocess.Popen[bytes]]]:
    """Fresh databases, bucket and broker database; the daemon started on them."""
    photos_db, photos_url = create_database("bench_photos")
    dagster_db, _ = create_database("bench_dagster")
    redis_db = claim_redis_db()
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    timings = ClusterTimings(max_concurrent_runs=workers)
    try:
        migrate(photos_url)
        with seeded_moto_process(bucket, []) as (endpoint, _seconds):
            home = folder / "dagster_home"
            home.mkdir()
            (home / "dagster.yaml").write_text(celery_instance_yaml(timings))
            base = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTO_", "DAGSTER_", "AWS_"))}
            env = celery_env(
                {
                    **base,
                    **CREDENTIALS,
                    "AWS_ENDPOINT_URL_S3": endpoint,
                    "PHOTO_BUCKET": bucket,
                    "PHOTO_DATABASE_URL": photos_url,
                    "PHOTO_PIPELINE_HOME": str(folder / "home"),
                    "PHOTO_SENSOR_INTERVAL_SECONDS": "5",
                    "PHOTO_RECONCILE_CRON": "0 0 1 1 *",
                    "DAGSTER_HOME": str(home),
                    "DAGSTER_PG_HOST": "127.0.0.1",
                    "DAGSTER_PG_USER": "postgres",
                    "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
                    "DAGSTER_PG_DB": dagster_db,
                },
                redis_db,
            )
            log = (folder / "daemon.log").open("wb")
            daemon = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            cluster = CeleryCluster(env=env, root=folder / "workers", instance_yaml=celery_instance_yaml(timings), bin_dir=BIN)
            try:
                yield env, cluster, daemon
            finally:
                cluster.stop()
                os.killpg(daemon.pid, signal.SIGTERM)
                try:
                    daemon.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(daemon.pid, signal.SIGKILL)
                    daemon.wait(timeout=30)
                log.close()
    finally:
        release_redis_db(redis_db)
        drop_database(photos_db)
        drop_database(dagster_db)


def measure(workers: int, albums: int, photos: int, size: tuple[int, int]) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="celery-bench-") as tmp, deployment(Path(tmp), workers) as (env, cluster, daemon):
        folder = Path(tmp)
        for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB", "PHOTO_BUCKET",
                     "DAGSTER_CELERY_BROKER_URL", "DAGSTER_CELERY_BACKEND_URL", "AWS_ENDPOINT_URL_S3", *CREDENTIALS):  # fmt: skip
            os.environ[name] = env[name]
        repository = PhotoRepository.from_url(env["PHOTO_DATABASE_URL"])
        store = S3ObjectStore(make_s3_client(endpoint_url=env["AWS_ENDPOINT_URL_S3"]), env["PHOTO_BUCKET"])
        started = [cluster.start_worker(f"bench-{i + 1}") for i in range(workers)]
        logs = [folder / "daemon.log", *cluster.logs()]
        alive = [daemon, *(w.process for w in started)]
        with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            wait_for(lambda: workers_answering(instance, [w.node for w in started]), "the workers to answer", WAIT_SECONDS, logs, alive)
            originals = [samples.photo_jpeg(*size, seed=i) for i in range(photos)]
            databases = {make_url(env["PHOTO_DATABASE_URL"]).database or "": "photo table", env["DAGSTER_PG_DB"]: "dagster"}
            # `photo-pipeline worker` is the process the test starts; its Celery worker is itself.
            with ConnectionPeaks(ADMIN_DSN, databases) as connections, MemoryPeaks([w.process.pid for w in started]) as memory:
                album_ids = [upload_album(repository, store, folder / f"album-{i}", originals) for i in range(albums)]
                uploaded = time.monotonic()
                total = albums * photos

                def settled():  # type: ignore[no-untyped-def]
                    done = sum(repository.status_counts(a)[PhotoStatus.COMPLETED] for a in album_ids)
                    runs = album_runs(instance, album_ids)
                    return runs if done == total and runs and all(r.status in FINISHED for r in runs) else None

                runs = wait_for(settled, "the albums to be completed", WAIT_SECONDS, logs, alive)
                upload_to_done = time.monotonic() - uploaded
            per_worker = {w.name: sum(1 for r in runs if r.worker == w.node) for w in started}
            return Measurement(
                workers, total, len(runs), per_worker, run_span_seconds(runs), upload_to_done, connections.peaks,
                memory.worker_mib, memory.run_mib,
            )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--albums", type=int, default=6)
    parser.add_argument("--photos", type=int, default=8, help="photos per album")
    parser.add_argument("--size", default="2400x1600", help="WIDTHxHEIGHT of the photos")
    args = parser.parse_args()
    size = tuple(int(side) for side in args.size.split("x"))
    print(f"{args.albums} albums x {args.photos} photos of {args.size}, fresh deployment per line, {os.cpu_count()} cores")
    print(
        "workers | photos | runs (per worker) | first run start -> last run end | photos/s | last upload -> all completed "
        "| peak connections | peak RSS MiB: worker process / run process"
    )
    for workers in args.workers:
        m = measure(workers, args.albums, args.photos, (size[0], size[1]))
        print(
            f"{m.workers} | {m.photos} | {m.runs} {m.runs_per_worker} | {m.run_span_seconds:.1f}s | "
            f"{m.photos / m.run_span_seconds:.2f} | {m.upload_to_done_seconds:.1f}s | {m.peaks} | "
            f"{m.worker_rss_mib:.0f} / {m.run_rss_mib:.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
