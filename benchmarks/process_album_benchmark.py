"""Album throughput: `process_album` in a real Dagster run against the project's renderer alone,
on the same photos and the same number of render threads, side by side in one run.

(a) renderer alone: the originals as bytes in memory, `render_renditions` with the settings the
    run uses (default preview 1600, thumbnail 400, default watermark) on a pool of PHOTO_WORKERS
    threads; photos/s.
(b) `process_album`: a real run (`execute_job` of the product's job, with the job's own
    executor) on a Dagster instance built from the repository's production dagster.yaml on
    PostgreSQL; the photo table on PostgreSQL; S3 over HTTP on a moto server this script starts.
    One album per size (--albums, default 40 and 200 photos, the originals of (a) repeated), run
    with the job's own executor and, for comparison, with the in-process executor (run config of
    the default `multi_or_in_process_executor`; --executors picks). Photos/s over the run
    (RUN_START to RUN_SUCCESS event, so including the run's fixed cost) and over the processing
    alone (first claim to last outcome, from the asset's metadata), each against (a); the fixed
    cost split into run start -> step start (executor), step start -> first claim (resources,
    checks), last outcome -> step end (metadata, asset check), step end -> run end (executor).
(c) the processing service alone (`PhotoProcessor.process_album`, no Dagster) on the same
    database and bucket, for the smallest album size: what the pipeline itself reaches.

12-megapixel JPEGs made in code (`samples.photo_jpeg(4000, 3000, seed=i)`). Prints; asserts
nothing. A few minutes at most with the defaults.

    flock /tmp/bench.lock env PYTHONPATH=. /work/main/.venv/bin/python benchmarks/process_album_benchmark.py \\
        [--photos 40] [--albums 40,200] [--executors job,in_process] [--workers N] [--io-threads N]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from bench_support import create_database, drop_database  # noqa: E402 (the script's own folder)

IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
# The run's log lines stay in its event log; the console gets warnings only.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def process_album_job():  # type: ignore[no-untyped-def]
    """The product's job, rebuilt by Dagster in the run (and step) processes from this file."""
    from photo_pipeline.definitions import defs

    return defs().resolve_job_def("process_album")


@dataclass(frozen=True)
class RunFigures:
    executor: str
    photos: int
    rendered: int
    run_seconds: float  # RUN_START -> RUN_SUCCESS
    processing_seconds: float  # first claim -> last outcome
    start_cost: float  # RUN_START -> first claim
    end_cost: float  # last outcome -> RUN_SUCCESS
    to_step: float  # RUN_START -> STEP_START
    to_claim: float  # STEP_START -> first claim
    from_last: float  # last outcome -> STEP_SUCCESS
    from_step: float  # STEP_SUCCESS -> RUN_SUCCESS
    wall_seconds: float  # the execute_job call
    success: bool


def measure_renderer(originals: list[bytes], workers: int) -> float:
    """Photos/s of `render_renditions` alone over the originals, `workers` threads."""
    from photo_pipeline.rendering.render import (
        render_options_from_settings,
        render_renditions,
    )
    from photo_pipeline.settings import Settings

    options = render_options_from_settings(Settings.from_env().render)
    render_renditions(originals[0], options)  # fonts and codecs loaded before the clock starts
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="render") as pool:
        started = time.perf_counter()
        renditions = list(pool.map(lambda data: render_renditions(data, options), originals))
        seconds = time.perf_counter() - started
    assert len(renditions) == len(originals)
    return len(originals) / seconds


def start_moto_process() -> tuple[subprocess.Popen[bytes], str, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server, "127.0.0.1", port
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("moto_server did not start within 30 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (from /proc: fields 14 and 15, in ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def services(folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    """moto's S3 server over HTTP, a photo database and a Dagster database on PostgreSQL, and
    the environment a production run worker would have (set before definitions are imported)."""
    from photo_pipeline.photos.database import migrate
    from photo_pipeline.storage import make_s3_client

    # moto in its own process, as a real S3 endpoint would be: in this process its request
    # handling would compete with the render threads for the GIL.
    server, host, port = start_moto_process()
    photos_db, photos_url = create_database("bench_photos")
    dagster_db, _ = create_database("bench_dagster")
    home = folder / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    os.environ.update(
        {
            **S3_CREDENTIALS,
            "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",
            "PHOTO_BUCKET": bucket,
            "PHOTO_DATABASE_URL": photos_url,
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_USER": "postgres",
            "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
            "DAGSTER_PG_DB": dagster_db,
        }
    )
    try:
        migrate(photos_url)
        make_s3_client(endpoint_url=f"http://{host}:{port}").create_bucket(Bucket=bucket)
        yield server
    finally:
        server.terminate()
        server.wait(timeout=30)
        drop_database(photos_db)
        drop_database(dagster_db)


def seed_album(originals: list[bytes], photos: int) -> uuid.UUID:
    from photo_pipeline.defs.resources import PhotoPipelineResource
    from photo_pipeline.photos.repository import NewPhoto
    from photo_pipeline.storage import keys

    resource = PhotoPipelineResource()
    repository, store = resource.repository(), resource.store()
    album = uuid.uuid4()
    for index in range(photos):
        photo_id = uuid.uuid4()
        key = keys.raw_key(album, photo_id, "jpg")
        repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key))
        store.put(key, originals[index % len(originals)], "image/jpeg")
    return album


def run_album(album: uuid.UUID, photos: int, executor: str) -> RunFigures:
    from dagster import DagsterEventType, DagsterInstance, execute_job, reconstructable

    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("albums", [str(album)])
        started = time.perf_counter()
        run_config = {**QUIET, **(IN_PROCESS if executor == "in_process" else {})}
        result = execute_job(
            reconstructable(process_album_job), instance=instance, run_config=run_config, tags={"dagster/partition": str(album)}
        )
        wall = time.perf_counter() - started
        stamps: dict[DagsterEventType, float] = {}
        metadata: dict[str, object] = {}
        for record in instance.all_logs(result.run_id):
            event = record.dagster_event
            if event is None:
                continue
            stamps.setdefault(event.event_type, record.timestamp)
            if event.event_type is DagsterEventType.ASSET_MATERIALIZATION and not metadata:
                materialization = event.step_materialization_data.materialization  # type: ignore[union-attr]
                metadata = {key: value.value for key, value in materialization.metadata.items()}
    run_start = stamps[DagsterEventType.RUN_START]
    run_end = stamps.get(DagsterEventType.RUN_SUCCESS) or stamps[DagsterEventType.RUN_FAILURE]
    first_claim = float(metadata["processing_started_at"])  # type: ignore[arg-type]
    last_outcome = float(metadata["processing_finished_at"])  # type: ignore[arg-type]
    step_start, step_end = stamps[DagsterEventType.STEP_START], stamps[DagsterEventType.STEP_SUCCESS]
    return RunFigures(
        executor=executor,
        photos=photos,
        rendered=int(metadata["photos_rendered"]),  # type: ignore[call-overload]
        run_seconds=run_end - run_start,
        processing_seconds=last_outcome - first_claim,
        start_cost=first_claim - run_start,
        end_cost=run_end - last_outcome,
        to_step=step_start - run_start,
        to_claim=first_claim - step_start,
        from_last=step_end - last_outcome,
        from_step=run_end - step_end,
        wall_seconds=wall,
        success=result.success,
    )


def measure_processor(originals: list[bytes], photos: int) -> float:
    """Photos/s of the processing service alone on one album (no Dagster)."""
    from photo_pipeline.defs.resources import PhotoPipelineResource

    album = seed_album(originals, photos)
    processor = PhotoPipelineResource().processor(logging.getLogger("bench"))
    report = processor.process_album(album, worker="bench-direct")
    return report.rendered / report.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=40, help="distinct originals made (the renderer's set)")
    parser.add_argument("--albums", default="40,200", help="album sizes, comma-separated")
    parser.add_argument("--executors", default="job,in_process", help="'job' (the job's own executor), 'in_process'")
    parser.add_argument("--workers", type=int, default=None, help="render threads (PHOTO_WORKERS); default: the settings' default")
    parser.add_argument("--io-threads", type=int, default=None, help="PHOTO_IO_THREADS; default: the settings' default")
    args = parser.parse_args()
    if args.workers is not None:
        os.environ["PHOTO_WORKERS"] = str(args.workers)
    if args.io_threads is not None:
        os.environ["PHOTO_IO_THREADS"] = str(args.io_threads)
    sys.path.insert(0, str(ROOT))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
    from photo_pipeline.cli import samples
    from photo_pipeline.settings import Settings

    settings = Settings.from_env()
    sizes = [int(size) for size in args.albums.split(",")]
    executors = args.executors.split(",")
    originals = [samples.photo_jpeg(4000, 3000, seed=i) for i in range(args.photos)]
    print(
        f"{len(originals)} JPEGs of 4000x3000 ({sum(map(len, originals)) / 1e6:.0f} MB); preview "
        f"{settings.render.preview_long_side}, thumbnail {settings.render.thumb_long_side}; "
        f"render threads {settings.workers}, I/O threads {settings.io_threads}, {os.cpu_count()} cores"
    )
    reference = measure_renderer(originals, settings.workers)
    print(f"(a) renderer alone, in memory: {reference:.2f} photos/s")

    with tempfile.TemporaryDirectory() as folder, services(Path(folder)) as s3_server:
        direct = measure_processor(originals, min(sizes))
        s3_cpu_before, wall_before = cpu_seconds(s3_server.pid), time.perf_counter()
        figures = [run_album(seed_album(originals, size), size, executor) for executor in executors for size in sizes]
        s3_cpu = cpu_seconds(s3_server.pid) - s3_cpu_before
        runs_wall = time.perf_counter() - wall_before
    # Measured again after the runs: the machine's load may have changed meanwhile.
    reference_after = measure_renderer(originals, settings.workers)
    print(f"(a) renderer alone, measured again after the runs: {reference_after:.2f} photos/s")
    reference = (reference + reference_after) / 2
    print(f"(a) used for the ratios (mean of both): {reference:.2f} photos/s")
    print(f"(c) processing service alone, {min(sizes)} photos: {direct:.2f} photos/s = {direct / reference:.2f} x (a)")

    print()
    print("(b) process_album, real Dagster run, PostgreSQL + S3 over HTTP (moto)")
    print(
        f"{'executor':>10} {'album':>5} {'ok':>3} {'run s':>6} {'ph/s':>5} {'(b)/(a)':>7} {'proc s':>6} {'ph/s':>5} "
        f"{'/(a)':>5} | {'fixed s':>7} = {'->step':>6} {'->claim':>7} {'last->':>6} {'step->':>6} {'wall s':>6}"
    )
    for f in figures:
        over_run = f.rendered / f.run_seconds
        over_processing = f.rendered / f.processing_seconds
        print(
            f"{f.executor:>10} {f.photos:>5} {'yes' if f.success and f.rendered == f.photos else 'NO':>3} "
            f"{f.run_seconds:>6.2f} {over_run:>5.2f} {over_run / reference:>7.2f} {f.processing_seconds:>6.2f} "
            f"{over_processing:>5.2f} {over_processing / reference:>5.2f} | {f.start_cost + f.end_cost:>7.2f} = "
            f"{f.to_step:>6.2f} {f.to_claim:>7.2f} {f.from_last:>6.2f} {f.from_step:>6.2f} {f.wall_seconds:>6.2f}"
        )
    # The S3 server shares the two cores with the render threads here; a real bucket does not.
    print(f"S3 server (moto, own process) CPU while seeding and running the albums: {s3_cpu:.1f} s in {runs_wall:.1f} s = {s3_cpu / runs_wall:.2f} cores")
    print(
        "run s: RUN_START -> RUN_SUCCESS; proc s: first claim -> last outcome (asset metadata); fixed s = run s - proc s "
        "= run start -> step start + step start -> first claim + last outcome -> step end + step end -> run end; "
        "wall s: the whole execute_job call"
    )


if __name__ == "__main__":
    main()
