"""Album runs on Celery workers, on one machine: what test_celery.py and
benchmarks/celery_benchmark.py share.

Every part is the real one, out of process: `dagster-daemon` with deploy/dagster-celery.yaml
(the Celery run launcher, S3 compute logs), Redis on 127.0.0.1:6379 as broker and result
backend (one database index per cluster, flushed afterwards), `photo-pipeline worker`
processes each in its own working folder, own DAGSTER_HOME copy, own temporary folder and its
own process group (so `kill -9` takes the worker and its run with it, as a lost machine would).
They share PostgreSQL, the broker and the bucket, nothing else.
"""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import psycopg
import redis
import yaml
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunsFilter,
)
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.services.uploads import upload_photo
from photo_pipeline.storage import ObjectStore

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_YAML = ROOT / "deploy" / "dagster-celery.yaml"
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
# Marks a Redis database index as taken by one cluster (expires if the process dies).
CLAIM_KEY = "photo_pipeline_tests:claimed"
CLAIM_SECONDS = 1800
PARTITION_TAG = "dagster/partition"
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


class ClusterError(AssertionError):
    """Something the cluster needs is missing or never happened (fails the test with the reason)."""


# -- Redis: one free database index per cluster


def claim_redis_db(host: str = REDIS_HOST, port: int = REDIS_PORT) -> int:
    """A Redis database index nobody uses, claimed (SET NX) so that a concurrent test session
    cannot take it too. Fails loudly when Redis is unreachable (scripts/ensure-redis.sh starts it)."""
    admin = redis.Redis(host=host, port=port, socket_timeout=5)
    try:
        databases = int(admin.config_get("databases").get("databases", 16))
    except redis.RedisError as exc:
        raise ClusterError(
            f"Redis is required (broker and result backend) and is unreachable at {host}:{port}: {exc}. "
            "Start it with scripts/ensure-redis.sh"
        ) from exc
    token = secrets.token_hex(8)
    # Index 0 is left to whatever else uses this Redis.
    for db in range(1, databases):
        client = redis.Redis(host=host, port=port, db=db, socket_timeout=5)
        if client.dbsize() == 0 and client.set(CLAIM_KEY, token, nx=True, ex=CLAIM_SECONDS):
            return db
    raise ClusterError(f"no free Redis database among 1..{databases - 1} on {host}:{port}")


def release_redis_db(db: int, host: str = REDIS_HOST, port: int = REDIS_PORT) -> None:
    redis.Redis(host=host, port=port, db=db, socket_timeout=5).flushdb()


def redis_url(db: int) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


# -- the instance: deploy/dagster-celery.yaml with the test's short intervals


@dataclass(frozen=True)
class ClusterTimings:
    """What a test shortens so that it stays bounded (production values are in the yaml)."""

    max_concurrent_runs: int = 2
    monitoring_poll_seconds: int = 2
    worker_answer_timeout_seconds: int = 2
    worker_lost_after_seconds: int = 6
    start_timeout_seconds: int = 150


def celery_instance_yaml(timings: ClusterTimings) -> str:
    """deploy/dagster-celery.yaml as shipped, with only the intervals and the slot count changed."""
    config: dict[str, Any] = yaml.safe_load(DEPLOY_YAML.read_text())
    launcher = config["run_launcher"]["config"]
    launcher["worker_answer_timeout_seconds"] = timings.worker_answer_timeout_seconds
    launcher["worker_lost_after_seconds"] = timings.worker_lost_after_seconds
    config["concurrency"]["runs"]["max_concurrent_runs"] = timings.max_concurrent_runs
    config["run_monitoring"]["poll_interval_seconds"] = timings.monitoring_poll_seconds
    config["run_monitoring"]["start_timeout_seconds"] = timings.start_timeout_seconds
    return yaml.safe_dump(config, sort_keys=False)


def celery_env(base_env: dict[str, str], db: int) -> dict[str, str]:
    return {**base_env, "DAGSTER_CELERY_BROKER_URL": redis_url(db), "DAGSTER_CELERY_BACKEND_URL": redis_url(db)}


# -- workers


def node_name(name: str) -> str:
    """Celery's node name for `photo-pipeline worker --name NAME` on this host (`NAME@%h`)."""
    return f"{name}@{socket.gethostname()}"


@dataclass
class Worker:
    name: str
    folder: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def node(self) -> str:
        return node_name(self.name)


@dataclass
class CeleryCluster:
    """`photo-pipeline worker` processes sharing `env` (PostgreSQL, broker, bucket)."""

    env: dict[str, str]
    root: Path
    instance_yaml: str
    bin_dir: Path
    workers: dict[str, Worker] = field(default_factory=dict)

    def start_worker(self, name: str) -> Worker:
        folder = self.root / f"worker-{name}"
        dagster_home = folder / "dagster_home"
        tmp = folder / "tmp"
        for path in (dagster_home, tmp):
            path.mkdir(parents=True)
        (dagster_home / "dagster.yaml").write_text(self.instance_yaml)
        env = {
            **self.env,
            "DAGSTER_HOME": str(dagster_home),
            "PHOTO_PIPELINE_HOME": str(folder / "home"),
            "TMPDIR": str(tmp),
        }
        log = folder / "worker.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(self.bin_dir / "photo-pipeline"), "worker", "--name", name],
                cwd=folder,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = self.workers[name] = Worker(name, folder, process, log)
        return worker

    def kill(self, name: str) -> None:
        """`kill -9` of the worker and every process it started (its run's process too)."""
        worker = self.workers[name]
        os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=30)

    def stop(self) -> None:
        for worker in self.workers.values():
            if worker.process.poll() is None:
                os.killpg(worker.process.pid, signal.SIGTERM)
        for worker in self.workers.values():
            try:
                worker.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.process.pid, signal.SIGKILL)
                worker.process.wait(timeout=30)

    def logs(self) -> list[Path]:
        return [w.log for w in self.workers.values()]

    def worker_of_node(self, node: str | None) -> str | None:
        return next((w.name for w in self.workers.values() if w.node == node), None)


def wait_for(
    condition: Callable[[], Any],
    what: str,
    timeout: float,
    logs: Iterable[Path] = (),
    alive: Sequence[subprocess.Popen[bytes]] = (),
    interval: float = 0.5,
) -> Any:
    """Poll until `condition()` is truthy (returned), at most `timeout` seconds; fail with the
    logs' tails otherwise, or as soon as a process in `alive` ends."""
    deadline = time.monotonic() + timeout
    ended: list[Any] = []
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        ended = [p.args for p in alive if p.poll() is not None]
        if ended:
            break
        time.sleep(interval)
    tails = "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-3000:]}" for log in logs if log.exists())
    ended_note = f" (ended: {ended})" if ended else ""
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{ended_note}\n{tails}")


def workers_answering(instance: DagsterInstance, nodes: Sequence[str], timeout: float = 2.0) -> bool:
    """Whether every node answers a ping over the broker (the worker is consuming)."""
    replies = instance.run_launcher.celery.control.ping(destination=list(nodes), timeout=timeout)  # type: ignore[attr-defined]
    answered = {node for reply in replies for node in reply}
    return set(nodes) <= answered


# -- albums and what the runs did with them


def upload_album(repository: PhotoRepository, store: ObjectStore, folder: Path, photos: Sequence[bytes], threads: int = 4) -> uuid.UUID:
    """A new album uploaded through the client's flow (row first, presigned PUT, verified), a few
    files at once as a browser would."""
    album = uuid.uuid4()
    folder.mkdir(parents=True)
    paths = []
    for index, data in enumerate(photos):
        path = folder / f"photo-{index}.jpg"
        path.write_bytes(data)
        paths.append(path)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="upload") as pool:
        list(pool.map(lambda path: upload_photo(repository, store, album, path), paths))
    return album


def run_task_worker(instance: DagsterInstance, run_id: str) -> str | None:
    """The Celery node running a STARTED run (recorded by `track_started` with the task)."""
    run = instance.get_run_by_id(run_id)
    task_id = run.tags.get(DAGSTER_CELERY_TASK_ID_TAG) if run else None
    if task_id is None:
        return None
    info = instance.run_launcher.celery.AsyncResult(task_id).info  # type: ignore[attr-defined]
    return info.get("hostname") if isinstance(info, dict) else None



@dataclass(frozen=True)
class RunFacts:
    run_id: str
    album: str
    status: DagsterRunStatus
    start: float | None
    end: float | None
    worker: str | None  # Celery node that executed it (the result backend's `worker`)


def album_runs(instance: DagsterInstance, albums: Iterable[uuid.UUID]) -> list[RunFacts]:
    """Every process_album run of these albums, with the worker that ran it."""
    launcher = instance.run_launcher
    facts = []
    for album in albums:
        for record in instance.get_run_records(RunsFilter(job_name="process_album", tags={PARTITION_TAG: str(album)})):
            run: DagsterRun = record.dagster_run
            task_id = run.tags.get(DAGSTER_CELERY_TASK_ID_TAG)
            worker = launcher.celery.AsyncResult(task_id).worker if task_id else None  # type: ignore[attr-defined]
            facts.append(RunFacts(run.run_id, str(album), run.status, record.start_time, record.end_time, worker))
    return facts


def overlapping_runs(runs: Sequence[RunFacts]) -> list[tuple[str, str, str]]:
    """(album, run, run) for every two runs of one album whose start..end overlap (an unfinished
    run lasts until now)."""
    now = time.time()
    overlaps = []
    by_album: dict[str, list[RunFacts]] = {}
    for run in runs:
        if run.start is not None:
            by_album.setdefault(run.album, []).append(run)
    for album, runs_of_album in by_album.items():
        ordered = sorted(runs_of_album, key=lambda r: r.start or 0.0)
        for earlier, later in itertools.pairwise(ordered):
            if (later.start or 0.0) < (earlier.end or now):
                overlaps.append((album, earlier.run_id, later.run_id))
    return overlaps


def photos_rendered_by_runs(instance: DagsterInstance, run_ids: Iterable[str]) -> int:
    """Photos rendered, summed over the runs' `thumbnails` materializations (`photos_rendered`):
    a photo rendered by two runs counts twice."""
    total = 0
    for run_id in run_ids:
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
            materialization = entry.asset_materialization
            if materialization is not None and materialization.asset_key.to_user_string() == "thumbnails":
                total += int(materialization.metadata["photos_rendered"].value)  # type: ignore[arg-type]
    return total


def run_span_seconds(runs: Sequence[RunFacts]) -> float:
    """From the first run's start to the last run's end."""
    starts = [r.start for r in runs if r.start is not None]
    ends = [r.end for r in runs if r.end is not None]
    if not starts or not ends:
        raise ClusterError(f"runs without start or end time: {runs}")
    return max(ends) - min(starts)


# -- connections the deployment opens (for the guide's sizing figures)


class ConnectionPeaks:
    """Samples pg_stat_activity every `interval` seconds while in the `with` block and keeps the
    most connections seen per database (named by `databases`: datname -> label)."""

    def __init__(self, admin_dsn: str, databases: dict[str, str], interval: float = 0.2) -> None:
        self._admin_dsn = admin_dsn
        self._databases = databases
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="connection-peaks", daemon=True)
        self.peaks = {label: 0 for label in databases.values()}

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _sample(self) -> None:
        with psycopg.connect(self._admin_dsn, autocommit=True) as admin:
            while not self._stop.is_set():
                rows = admin.execute("SELECT datname, count(*) FROM pg_stat_activity GROUP BY datname").fetchall()
                for datname, count in rows:
                    label = self._databases.get(datname)
                    if label is not None:
                        self.peaks[label] = max(self.peaks[label], int(count))
                self._stop.wait(self._interval)
