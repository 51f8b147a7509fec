"""One tick of each sensor with 100,000 rows (PostgreSQL) and 100,000 objects, S3 over HTTP (moto's
server) and the local folder store side by side. Target: every tick under 2 s.

The library: `--albums` albums sharing `--objects` photos, each with its row and its original;
1% of the rows pending (spread over every album, so pending_photo_sensor has the most albums to
look at). Ticks are evaluated with `build_sensor_context` on a real Dagster instance (the
production dagster.yaml on a fresh PostgreSQL database) and the resources the code location
uses: the raw sweep's first tick (cursor at the start), a tick in the middle of the listing (the
cursor of the previous one), and the pending tick, cold (first in the process) and warm.

    flock /tmp/bench.lock env PYTHONPATH=. .venv/bin/python benchmarks/sensor_tick_benchmark.py [--objects 100000] [--albums 200] [--seed-over-http]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer
from sqlalchemy import update

ROOT = Path(__file__).resolve().parents[1]
from bench_support import create_database, drop_database  # noqa: E402 (the script's own folder)

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_DEFAULT_REGION": "us-east-1"}
TARGET_SECONDS = 2.0


def new_database(created: list[str]) -> str:
    name, _ = create_database()
    created.append(name)
    return name


@contextmanager
def databases() -> Iterator[tuple[str, str]]:
    created: list[str] = []
    try:
        yield new_database(created), new_database(created)
    finally:
        for name in created:
            drop_database(name)


def library(objects: int, albums: int) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    from photo_pipeline.storage import keys

    album_ids = [uuid.uuid4() for _ in range(albums)]
    photos = []
    for i in range(objects):
        album, photo = album_ids[i % albums], uuid.uuid4()
        photos.append((album, photo, keys.raw_key(album, photo, "jpg")))
    return photos


def seed_rows(database_url: str, photos: list[tuple[uuid.UUID, uuid.UUID, str]]) -> None:
    """Rows for every photo, completed but 1% left pending (every album gets some)."""
    from photo_pipeline.photos.models import Photo, PhotoStatus
    from photo_pipeline.photos.repository import NewPhoto, PhotoRepository

    repository = PhotoRepository.from_url(database_url)
    for start in range(0, len(photos), 1000):
        repository.adopt([NewPhoto(id=p, album_id=a, original_key=k) for a, p, k in photos[start : start + 1000]])
    albums = albums_of(photos)
    pending = [p for i, (_, p, _) in enumerate(photos) if (i // albums) % 100 == 0]
    with repository.engine.begin() as conn:
        conn.execute(update(Photo).where(Photo.id.not_in(pending)).values(status=PhotoStatus.COMPLETED.value))
    repository.engine.dispose()


def albums_of(photos: list[tuple[uuid.UUID, uuid.UUID, str]]) -> int:
    return len({album for album, _, _ in photos})


def serve_seeded_moto(bucket: str, keys: list[str], ready: Any) -> None:
    """In a child process: moto's S3 server with the objects written straight into its backend
    (100,000 PUTs over HTTP take minutes on 2 cores). The server has its own process, as S3 has
    its own machine: in the benchmark's process it would fight the sensor for the GIL."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1",
    )  # fmt: skip
    client.create_bucket(Bucket=bucket)
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    started = time.perf_counter()
    for key in keys:
        backend.put_object(bucket, key, b"x")
    ready.send((endpoint, time.perf_counter() - started))
    ready.recv()  # until the parent is done
    server.stop()


@contextmanager
def seeded_moto_process(bucket: str, keys: list[str]) -> Iterator[tuple[str, float]]:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=serve_seeded_moto, args=(bucket, keys, child), daemon=True)
    process.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(timeout=30)
        if process.is_alive():
            process.kill()


def seed_s3(endpoint: str, bucket: str, photos: list[tuple[uuid.UUID, uuid.UUID, str]]) -> float:
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1",
        config=Config(max_pool_connections=32, s3={"addressing_style": "path"}),
    )  # fmt: skip
    # the bucket exists: the moto process made it
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(lambda p: client.put_object(Bucket=bucket, Key=p[2], Body=b"x"), photos))
    return time.perf_counter() - started


def seed_folder(root: Path, photos: list[tuple[uuid.UUID, uuid.UUID, str]]) -> None:
    for _, _, key in photos:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def timed(action: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def tick_figures(instance, label: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Seconds of each tick, with the resource as definitions.py builds it from the environment."""
    from dagster import build_sensor_context

    from photo_pipeline.defs.resources import photo_pipeline_resource
    from photo_pipeline.defs.sensors.pending_photo_sensor import pending_photo_sensor
    from photo_pipeline.defs.sensors.raw_object_sensor import raw_object_sensor

    def tick(sensor, cursor: str | None):  # type: ignore[no-untyped-def]
        resources = {"photo_pipeline": photo_pipeline_resource()}
        with build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
            return sensor(context)

    figures: dict[str, float] = {}
    figures["raw, first slice"], first = timed(lambda: tick(raw_object_sensor, None))
    figures["raw, next slice"], _ = timed(lambda: tick(raw_object_sensor, first.cursor))  # type: ignore[attr-defined]
    figures["pending, cold"], result = timed(lambda: tick(pending_photo_sensor, None))
    figures["pending, warm"], _ = timed(lambda: tick(pending_photo_sensor, None))
    requested = len(result.run_requests or [])  # type: ignore[attr-defined]
    print(f"  {label}: pending tick requested {requested} album run(s)")
    return figures


def measure(args: argparse.Namespace, endpoint: str, bucket: str, photos: list[tuple[uuid.UUID, uuid.UUID, str]]) -> dict[str, dict[str, float]]:
    with databases() as (photo_db, dagster_db), tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        from photo_pipeline.photos.database import migrate

        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{photo_db}"
        migrate(url)
        seconds, _ = timed(lambda: seed_rows(url, photos))
        print(f"seeded {len(photos)} rows ({len(photos) // 100} pending) in {seconds:.1f}s")
        seconds, _ = timed(lambda: seed_folder(folder / "home" / "objects", photos))
        print(f"seeded {len(photos)} objects in the folder store in {seconds:.1f}s")
        dagster_home = folder / "dagster_home"
        dagster_home.mkdir()
        shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
        os.environ.update(CREDENTIALS)
        os.environ.update(
            {
                "AWS_ENDPOINT_URL_S3": endpoint,
                "PHOTO_DATABASE_URL": url,
                "PHOTO_PIPELINE_HOME": str(folder / "home"),
                "DAGSTER_PG_HOST": "127.0.0.1",
                "DAGSTER_PG_USER": "postgres",
                "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
                "DAGSTER_PG_DB": dagster_db,
            }
        )
        from dagster import DagsterInstance

        results: dict[str, dict[str, float]] = {}
        with DagsterInstance.from_config(str(dagster_home)) as instance:
            os.environ["PHOTO_BUCKET"] = bucket
            results["S3 over HTTP"] = tick_figures(instance, "S3 over HTTP")
            del os.environ["PHOTO_BUCKET"]
            results["folder store"] = tick_figures(instance, "folder store")
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--albums", type=int, default=200)
    parser.add_argument("--seed-over-http", action="store_true", help="PUT the objects over HTTP (minutes)")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    photos = library(args.objects, args.albums)
    bucket = f"photos-{uuid.uuid4().hex[:8]}"
    seed_keys = [] if args.seed_over_http else [key for _, _, key in photos]
    with seeded_moto_process(bucket, seed_keys) as (endpoint, seconds):
        if args.seed_over_http:
            seconds = seed_s3(endpoint, bucket, photos)
        print(f"seeded {len(photos)} objects in S3 ({'over HTTP, 32 threads' if args.seed_over_http else 'moto backend'}) in {seconds:.1f}s")
        results = measure(args, endpoint, bucket, photos)
    print(f"\nsensor tick seconds, {args.objects} rows and objects in {args.albums} albums (target < {TARGET_SECONDS:.0f} s):")
    names = list(next(iter(results.values())))
    print(f"{'tick':<20}" + "".join(f"{store:>16}" for store in results))
    for name in names:
        print(f"{name:<20}" + "".join(f"{results[store][name]:>16.2f}" for store in results))
    worst = max(v for figures in results.values() for v in figures.values())
    print(f"slowest tick {worst:.2f}s: {'under' if worst < TARGET_SECONDS else 'OVER'} the {TARGET_SECONDS:.0f} s target")


if __name__ == "__main__":
    main()
