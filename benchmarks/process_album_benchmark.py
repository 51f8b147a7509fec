"""Album throughput: `process_album` in a real Dagster run against the project's renderer alone
and against libvips, on the same photos and the same number of render threads, side by side in
one run.

(a) the engines alone, the originals as bytes in memory, on a pool of PHOTO_WORKERS threads,
    taking turns, measured before and after the runs (the ratios use the mean of both):
    - libvips: render_benchmark.py's `vips_render` (pyvips `thumbnail_buffer` to the preview,
      the thumbnail from it, the renderer's JPEG settings, one libvips thread per photo; it
      draws no watermark);
    - the renderer: `render_renditions` with the settings the run uses (default preview 1600,
      thumbnail 400, default watermark).
    Both after `return_freed_memory_promptly()`, the allocator setting every run makes (each
    large pixel block its own mmap, so RSS follows the memory budget; it costs page faults); the
    renderer is also measured once before it, with glibc's default, and that figure printed.
(b) `process_album`: a real run (`execute_job` of the product's job, with the job's own
    executor, which runs in process) on a Dagster instance built from the repository's
    production dagster.yaml on PostgreSQL; the photo table on PostgreSQL; S3 over HTTP on a moto
    server this script starts in its own process. One album per size (--albums, default 40 and
    200 photos, the originals of (a) repeated). Photos/s over the run (RUN_START to RUN_SUCCESS
    event, so including the run's fixed cost) and over the processing alone (first claim to
    last outcome, from the asset's metadata), each against (a); the three ratios
    album / renderer, renderer / libvips, album / libvips; the fixed cost split into run start ->
    step start (executor), step start -> first claim (resources, checks), last outcome -> step
    end (metadata, asset check), step end -> run end (executor); the peak RSS of the benchmark
    process during the run (VmHWM, reset before each run through /proc/self/clear_refs; it
    includes the originals of (a) held in memory, printed apart).
(c) the processing service alone (`PhotoProcessor.process_album`, no Dagster) on the same
    database and bucket, for the smallest album size: what the pipeline itself reaches.
(d) CPU per photo (issue 21): the run process's own CPU (`time.process_time`, every thread of
    this process; the S3 server and PostgreSQL are other processes and not counted) around
    `execute_job` (the job's own executor, in process), marginal between a 10- and a 70-photo
    album of distinct photos (CPU_ALBUMS; after a 2-photo warm-up run, so imports and first-use
    costs fall on neither; each size run RUNS_PER_SIZE times, taking turns, the least CPU used),
    against the renderer's own CPU per photo (`render_renditions` on the same 70 photos, the run's
    options, on the run's render threads and on one thread, each measured before and after the
    runs, the least used); both ratios (target <= 1.15); and the albums' marginal photos/s over
    the renderer's photos/s on the run's render threads. With --profile, two more runs (10 and 70
    photos), their CPU split by kind of work and the difference printed per photo (cpu_profile.py:
    a sampler over each thread's CPU clock). --cpu: section (d) only (no pyvips needed); --repeat
    N: (d) N times in one process; --s3 s3rver: (d) against s3rver instead of moto.

12-megapixel JPEGs made in code (`samples.photo_jpeg(4000, 3000, seed=i)`). Needs pyvips
(pip install pyvips pyvips-binary scikit-image numpy, or the `bench` extra). Prints; asserts
nothing. A few minutes at most with the defaults; --quick: the 40-photo album only.

    flock /tmp/bench.lock env PYTHONPATH=. /work/main/.venv/bin/python benchmarks/process_album_benchmark.py \\
        [--quick] [--photos 40] [--albums 40,200] [--executors job,in_process] [--workers N] [--io-threads N]
    flock /tmp/bench.lock env PYTHONPATH=. .venv/bin/python benchmarks/process_album_benchmark.py --cpu --repeat 3 [--profile] [--s3 s3rver]
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
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
    """The product's job, rebuilt by Dagster in the run (and step) processes from this file.
    Built once a process: Dagster asks for it three times a run, and a run worker loads its code
    location once; loading the definitions each time only adds a fixed cost that varies between runs."""
    return _loaded_job()


@functools.cache
def _loaded_job():  # type: ignore[no-untyped-def]
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
    peak_rss_mib: float = 0.0  # VmHWM of this process during the run


Render = Callable[[bytes], object]


def renderer_engine() -> Render:
    """The project's renderer with the run's render settings."""
    from photo_pipeline.rendering.render import (
        render_options_from_settings,
        render_renditions,
    )
    from photo_pipeline.settings import Settings

    options = render_options_from_settings(Settings.from_env().render)
    return lambda data: render_renditions(data, options)


def engines(names: list[str] | None = None) -> dict[str, Render]:
    """libvips and the renderer, each as the run would use it (the run's render settings)."""
    chosen: dict[str, Render] = {}
    if names is None or "libvips" in names:
        # libvips exactly as the renderer benchmark runs it (importing it sets VIPS_CONCURRENCY=1
        # before pyvips is loaded).
        from render_benchmark import vips_render  # isort: skip
        import pyvips

        from photo_pipeline.rendering.render import render_options_from_settings
        from photo_pipeline.settings import Settings

        pyvips.cache_set_max(0)  # a repeated photo is rendered again, as the run does
        options = render_options_from_settings(Settings.from_env().render)
        chosen["libvips"] = lambda data: vips_render(data, options)
    if names is None or "renderer" in names:
        chosen["renderer"] = renderer_engine()
    return chosen


def measure_engines(originals: list[bytes], workers: int, names: list[str] | None = None) -> dict[str, float]:
    """Photos/s of each engine over all the originals on `workers` threads; the engines take
    turns, so a change in the machine's load falls on both."""
    chosen = engines(names)
    rates: dict[str, float] = {}
    for name, render in chosen.items():
        render(originals[0])  # codecs, fonts and the watermark loaded before the clock starts
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
            started = time.perf_counter()
            done = sum(1 for _ in pool.map(render, originals))
            rates[name] = done / (time.perf_counter() - started)
    return rates


def reset_peak_rss() -> None:
    """Start VmHWM afresh (Linux: writing 5 to clear_refs resets the peak resident set size)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


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


def start_s3rver_process(folder: Path) -> tuple[subprocess.Popen[bytes], str, int]:
    """s3rver (the suite's pinned copy, started as the suite starts it) on a free port: unlike
    moto's server it keeps connections alive, as S3 and MinIO do, and its request handling costs a
    fraction of moto's CPU on the cores the run shares with it."""
    from photo_pipeline_tests.s3rver_server import start_s3rver

    data = folder / "s3rver"
    data.mkdir()
    server, port = start_s3rver(data, S3_CREDENTIALS["AWS_ACCESS_KEY_ID"], S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    return server, "127.0.0.1", port


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (from /proc: fields 14 and 15, in ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def services(folder: Path, s3: str = "moto") -> Iterator[subprocess.Popen[bytes]]:
    """An S3 server over HTTP (moto's, or s3rver), a photo database and a Dagster database on
    PostgreSQL, and the environment a production run worker would have (set before definitions
    are imported)."""
    from photo_pipeline.photos.database import migrate
    from photo_pipeline.storage import make_s3_client

    # The S3 server in its own process, as a real S3 endpoint would be: in this process its
    # request handling would compete with the render threads for the GIL.
    server, host, port = start_s3rver_process(folder) if s3 == "s3rver" else start_moto_process()
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
        reset_peak_rss()
        started = time.perf_counter()
        run_config = {**QUIET, **(IN_PROCESS if executor == "in_process" else {})}
        result = execute_job(
            reconstructable(process_album_job), instance=instance, run_config=run_config, tags={"dagster/partition": str(album)}
        )
        wall = time.perf_counter() - started
        peak = peak_rss_mib()
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
        peak_rss_mib=peak,
    )


def measure_processor(originals: list[bytes], photos: int) -> float:
    """Photos/s of the processing service alone on one album (no Dagster)."""
    from photo_pipeline.defs.resources import PhotoPipelineResource

    album = seed_album(originals, photos)
    processor = PhotoPipelineResource().processor(logging.getLogger("bench"))
    report = processor.process_album(album, worker="bench-direct")
    return report.rendered / report.seconds


# Section (d)'s albums: the marginal CPU per photo is the difference between their runs over the
# difference in photos, so a run's fixed cost (definitions, resources, the asset check) cancels
# out; whatever of it varies between two runs is divided by the difference (60 photos).
CPU_ALBUMS = (10, 70)
RUNS_PER_SIZE = 2


@dataclass(frozen=True)
class CpuFigures:
    """Section (d): one measurement of the run process's CPU per photo against the renderer's."""

    run_cpu_per_photo: float  # marginal between the CPU_ALBUMS, seconds
    # The renderer alone on the same photos, on the run's render threads and on one thread;
    # each the least of a measurement before and one after the runs, seconds.
    renderer_cpu_per_photo: float
    renderer_cpu_spread: tuple[float, float]  # before, after (the run's render threads)
    renderer_one_thread: float
    render_threads: int
    album_rate: float  # marginal photos/s of the run (the extra photos over the wall-time difference)
    renderer_rate: float  # photos/s of the renderer alone on the run's render threads
    runs_ok: bool

    @property
    def ratio(self) -> float:
        return self.run_cpu_per_photo / self.renderer_cpu_per_photo

    @property
    def one_thread_ratio(self) -> float:
        return self.run_cpu_per_photo / self.renderer_one_thread


def renderer_cpu_per_photo(originals: list[bytes], threads: int) -> float:
    """CPU seconds per photo of the renderer alone on `threads` threads (the process's CPU clock:
    nothing else of this process runs meanwhile). On the run's render threads, two photos render
    at once on two cores as in the run, so the cost of sharing the cores' caches and memory
    bandwidth falls on both sides; on one thread, it falls on the run's side only."""
    render = renderer_engine()
    render(originals[0])  # codecs, fonts and the watermark loaded before the clock starts
    started = time.process_time()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="renderer") as pool:
        for _ in pool.map(render, originals):
            pass
    return (time.process_time() - started) / len(originals)


def run_cpu(album: uuid.UUID, photos: int) -> tuple[float, float, bool]:
    """(CPU seconds of this process, wall seconds, all photos rendered) of one `process_album`
    run (the job's own executor is in process: the step runs on this thread, its pools in this process)."""
    from dagster import DagsterInstance, execute_job, reconstructable

    from photo_pipeline.defs.resources import PhotoPipelineResource
    from photo_pipeline.photos.models import PhotoStatus

    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("albums", [str(album)])
        wall, cpu = time.perf_counter(), time.process_time()
        result = execute_job(
            reconstructable(process_album_job),
            instance=instance,
            run_config=QUIET,  # the job's own executor runs its step in this process
            tags={"dagster/partition": str(album)},
        )
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    counts = PhotoPipelineResource().repository().status_counts(album)
    return cpu, wall, result.success and counts[PhotoStatus.COMPLETED] == photos


def measure_cpu(originals: list[bytes], workers: int, *, profile: bool) -> CpuFigures:
    """Section (d) once: the renderer, a warm-up run, the two albums' runs, the renderer."""
    small, large = CPU_ALBUMS
    photos = originals[:large]  # the renderer renders the photos the large album holds
    renderer_before = renderer_cpu_per_photo(photos, workers)
    one_thread_before = renderer_cpu_per_photo(photos, 1)
    renderer_rate = measure_engines(photos, workers, ["renderer"])["renderer"]
    run_cpu(seed_album(originals, 2), 2)  # imports, first connections, caches: on no measured run
    # Each album size run RUNS_PER_SIZE times, taking turns; the least CPU of each size is used
    # (the run least disturbed by the rest of the machine), as the least of the renderer's is.
    runs: dict[int, list[tuple[float, float, bool]]] = {small: [], large: []}
    for _ in range(RUNS_PER_SIZE):
        for size in CPU_ALBUMS:
            runs[size].append(run_cpu(seed_album(originals, size), size))
    (small_cpu, small_wall, _), (large_cpu, large_wall, _) = (min(runs[size]) for size in CPU_ALBUMS)
    runs_ok = all(ok for size in CPU_ALBUMS for _, _, ok in runs[size])
    if profile:
        # Runs of their own (the sampler's thread is CPU of this process too), of both sizes:
        # their difference is what the extra photos cost, as the marginal figure above.
        from cpu_profile import CpuProfile

        profiles = {}
        for size in CPU_ALBUMS:
            album = seed_album(originals, size)  # not profiled: the uploads are no part of the run
            with CpuProfile() as profiles[size]:
                run_cpu(album, size)
        split = profiles[large].minus(profiles[small])
        print(f"    profile, marginal {small} -> {large} photos (two more runs), CPU by kind of work (cpu_profile.py):\n{split.report(large - small)}")
        print(f"    the project's code asking for it (top):\n{split.top_callers(large - small)}")
    renderer_after = renderer_cpu_per_photo(photos, workers)
    one_thread_after = renderer_cpu_per_photo(photos, 1)
    return CpuFigures(
        run_cpu_per_photo=(large_cpu - small_cpu) / (large - small),
        renderer_cpu_per_photo=min(renderer_before, renderer_after),
        renderer_cpu_spread=(renderer_before, renderer_after),
        renderer_one_thread=min(one_thread_before, one_thread_after),
        render_threads=workers,
        album_rate=(large - small) / (large_wall - small_wall),
        renderer_rate=renderer_rate,
        runs_ok=runs_ok,
    )


def print_cpu(index: int, f: CpuFigures) -> None:
    before, after = f.renderer_cpu_spread
    small, large = CPU_ALBUMS
    print(
        f"(d) run {index}: run process {1000 * f.run_cpu_per_photo:.1f} ms CPU/photo (marginal {small} -> {large}), renderer "
        f"on the run's {f.render_threads} render threads {1000 * f.renderer_cpu_per_photo:.1f} ms (before {1000 * before:.1f}, "
        f"after {1000 * after:.1f}) -> ratio {f.ratio:.3f} ({'within' if f.ratio <= 1.15 else 'OVER'} 1.15); renderer on one "
        f"thread {1000 * f.renderer_one_thread:.1f} ms -> {f.one_thread_ratio:.3f}; album {f.album_rate:.2f} photos/s "
        f"(marginal) / renderer {f.renderer_rate:.2f} photos/s = {f.album_rate / f.renderer_rate:.2f}; all rendered: "
        f"{'yes' if f.runs_ok else 'NO'}",
        flush=True,
    )


def cpu_section(originals: list[bytes], workers: int, repeat: int, *, profile: bool, s3: str) -> None:
    from photo_pipeline.rendering.memory_budget import return_freed_memory_promptly

    # The allocator setting every run makes, so the renderer alone pays the same page faults.
    return_freed_memory_promptly()
    with tempfile.TemporaryDirectory() as folder, services(Path(folder), s3):
        for index in range(1, repeat + 1):
            print_cpu(index, measure_cpu(originals, workers, profile=profile))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=40, help="distinct originals made (the engines' set)")
    parser.add_argument("--albums", default="40,200", help="album sizes, comma-separated")
    parser.add_argument("--quick", action="store_true", help="the 40-photo album only")
    parser.add_argument(
        "--executors", default="job", help="'job' (the job's own executor, in process), 'in_process' (run config)"
    )
    parser.add_argument("--workers", type=int, default=None, help="render threads (PHOTO_WORKERS); default: the settings' default")
    parser.add_argument("--io-threads", type=int, default=None, help="PHOTO_IO_THREADS; default: the settings' default")
    parser.add_argument("--cpu", action="store_true", help="section (d) only: CPU per photo, run process against renderer")
    parser.add_argument("--repeat", type=int, default=1, help="section (d) this many times")
    parser.add_argument("--s3", choices=("moto", "s3rver"), default="moto", help="section (d)'s S3 server (other sections: moto)")
    parser.add_argument("--profile", action="store_true", help="section (d): split the 40-photo run's CPU by kind of work")
    args = parser.parse_args()
    if args.workers is not None:
        os.environ["PHOTO_WORKERS"] = str(args.workers)
    if args.io_threads is not None:
        os.environ["PHOTO_IO_THREADS"] = str(args.io_threads)
    sys.path.insert(0, str(ROOT))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
    from photo_pipeline.cli import samples
    from photo_pipeline.rendering.memory_budget import return_freed_memory_promptly
    from photo_pipeline.settings import Settings

    settings = Settings.from_env()
    sizes = [40] if args.quick else [int(size) for size in args.albums.split(",")]
    executors = args.executors.split(",")
    # Section (d)'s large album holds distinct photos only (a repeated one would be a duplicate).
    count = max(args.photos, CPU_ALBUMS[1]) if args.cpu else args.photos
    originals = [samples.photo_jpeg(4000, 3000, seed=i) for i in range(count)]
    originals_mib = sum(map(len, originals)) / 2**20
    print(
        f"{len(originals)} JPEGs of 4000x3000 ({originals_mib:.0f} MiB held in memory); preview "
        f"{settings.render.preview_long_side}, thumbnail {settings.render.thumb_long_side}; "
        f"render threads {settings.workers}, I/O threads {settings.io_threads}, {os.cpu_count()} cores"
    )
    workers = settings.workers
    if args.cpu:
        cpu_section(originals, workers, args.repeat, profile=args.profile, s3=args.s3)
        return
    default_allocator = measure_engines(originals, workers, ["renderer"])["renderer"]
    # From here on, the allocator setting every run makes (process-wide, once): the engines alone
    # pay the same page faults for their pixel blocks as the run's render threads.
    return_freed_memory_promptly()
    before = measure_engines(originals, workers)

    with tempfile.TemporaryDirectory() as folder, services(Path(folder)) as s3_server:
        direct = measure_processor(originals, min(sizes))
        s3_cpu_before, wall_before = cpu_seconds(s3_server.pid), time.perf_counter()
        figures = [run_album(seed_album(originals, size), size, executor) for executor in executors for size in sizes]
        s3_cpu = cpu_seconds(s3_server.pid) - s3_cpu_before
        runs_wall = time.perf_counter() - wall_before
    # Measured again after the runs: the machine's load may have changed meanwhile.
    after = measure_engines(originals, workers)
    rates = {name: (before[name] + after[name]) / 2 for name in before}
    renderer, libvips = rates["renderer"], rates["libvips"]

    print("\n(a) the engines alone, photos in memory, photos/s (before / after the runs -> mean used for the ratios)")
    for name in rates:
        print(f"    {name:>8}: {before[name]:6.2f} / {after[name]:6.2f} -> {rates[name]:6.2f}")
    print(f"    renderer / libvips: {renderer / libvips:.2f} (the renderer draws the default watermark, libvips none)")
    print(
        f"    renderer with glibc's default allocator (before the run's setting): {default_allocator:.2f} "
        f"({default_allocator / renderer:.2f} x the renderer above)"
    )
    print(f"(c) processing service alone, {min(sizes)} photos: {direct:.2f} photos/s = {direct / renderer:.2f} x renderer")

    print("\n(b) process_album, real Dagster run, PostgreSQL + S3 over HTTP (moto in its own process)")
    print(
        f"{'executor':>10} {'album':>5} {'ok':>3} {'run s':>6} {'ph/s':>6} {'/rend':>5} {'/vips':>5} {'proc s':>6} "
        f"{'ph/s':>6} {'/rend':>5} {'peak MiB':>8} | {'fixed s':>7} = {'->step':>6} {'->claim':>7} {'last->':>6} "
        f"{'step->':>6} {'wall s':>6}"
    )
    for f in figures:
        over_run = f.rendered / f.run_seconds
        over_processing = f.rendered / f.processing_seconds
        print(
            f"{f.executor:>10} {f.photos:>5} {'yes' if f.success and f.rendered == f.photos else 'NO':>3} "
            f"{f.run_seconds:>6.2f} {over_run:>6.2f} {over_run / renderer:>5.2f} {over_run / libvips:>5.2f} "
            f"{f.processing_seconds:>6.2f} {over_processing:>6.2f} {over_processing / renderer:>5.2f} "
            f"{f.peak_rss_mib:>8.0f} | {f.start_cost + f.end_cost:>7.2f} = {f.to_step:>6.2f} {f.to_claim:>7.2f} "
            f"{f.from_last:>6.2f} {f.from_step:>6.2f} {f.wall_seconds:>6.2f}"
        )
    # The S3 server shares the two cores with the render threads here; a real bucket does not.
    print(f"S3 server (moto, own process) CPU while seeding and running the albums: {s3_cpu:.1f} s in {runs_wall:.1f} s = {s3_cpu / runs_wall:.2f} cores")
    cpu_section(originals, workers, args.repeat, profile=args.profile)
    print(
        "/rend, /vips: photos/s over the run / the renderer alone, / libvips alone (the ratios album / renderer and "
        "album / libvips); run s: RUN_START -> RUN_SUCCESS; proc s: first claim -> last outcome (asset metadata); "
        "fixed s = run s - proc s; wall s: the whole execute_job call; peak MiB: this process's peak RSS during the "
        f"run, including the {originals_mib:.0f} MiB of originals the engines use"
    )


if __name__ == "__main__":
    main()
