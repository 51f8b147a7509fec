"""Peak memory of rendering: per photo (the working-set factor) and of a whole `process_album` run.

Two measurements, both printed, nothing asserted:

--factor   each original rendered once by `render_renditions` in a fresh child process; the
           child's peak RSS growth (VmHWM after minus before; Pillow allocates with malloc,
           which tracemalloc does not see) divided by the header's decoded size. This is where
           rendering.WORKING_SET_FACTOR comes from. Three configurations: the base pair alone
           (PHOTO_RENDITION_SIZES=""), the default responsive sizes, and those in WebP and AVIF too.
--run      (default) a real `process_album` Dagster run (`dagster job execute` in a subprocess) on
           the embedded defaults (SQLite + local folder store) in a temporary PHOTO_PIPELINE_HOME,
           on hostile inputs: six 16-bit 10900x10900 PNGs, a 1 GB sparse "JPEG" and a few big real
           JPEGs, with the default thread count. The peak RSS of the whole process tree (VmRSS of
           the run process and every descendant, sampled every 50 ms from /proc) is printed
           against PHOTO_MEMORY_BUDGET_MB.

    PYTHONPATH=. .venv/bin/python benchmarks/memory_benchmark.py [--factor] [--run] [--budget-mb 1536]
        [--workers N] [--pngs 6] [--big-jpegs 3] [--code /path/to/another/checkout]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

MIB = 1024 * 1024
RUN_TIMEOUT_SECONDS = 900


# --- per-photo factor -------------------------------------------------------------------------


def _factor_child(path: str) -> None:
    """Runs in a fresh process: prints decoded bytes and peak RSS growth of one render."""
    from photo_pipeline.rendering.render import estimate_memory, render_options_from_settings, render_renditions
    from photo_pipeline.settings import Settings

    # The configuration the pipeline would render with (the parent sets the variables).
    options = render_options_from_settings(Settings.from_env().render)
    with open(path, "rb") as source:
        estimate = estimate_memory(source, options)
        before = _high_water_mark()
        render_renditions(source, options)
        after = _high_water_mark()
    print(f"{estimate.mode} {estimate.width}x{estimate.height} {estimate.decoded_bytes} {after - before} {estimate.working_bytes}")


def _high_water_mark() -> int:
    """This process's peak RSS. Not ru_maxrss: Linux carries the parent's peak into a forked and
    exec'd child's ru_maxrss, while VmHWM belongs to this process's own address space."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure_factors(folder: Path) -> None:
    from PIL import Image

    from photo_pipeline.cli import samples

    cases: dict[str, bytes] = {
        "16-bit grey PNG 10900x10900": samples.sixteen_bit_png(),
        "16-bit RGB PNG 6000x4000": samples.sixteen_bit_png(6000, 4000, colour_type=2),
        "JPEG 6000x4000 (24 MP)": samples.photo_jpeg(6000, 4000, quality=92),
        "JPEG 4000x3000 (12 MP)": samples.photo_jpeg(4000, 3000, quality=92),
    }
    rgb = Image.open(_spooled(samples.photo_jpeg(6000, 4000))).convert("RGB")
    cases["RGB PNG 6000x4000"] = _png(rgb)
    cases["RGBA PNG 6000x4000"] = _png(rgb.convert("RGBA"))
    del rgb
    paths = {}
    for name, data in cases.items():
        paths[name] = folder / f"{uuid.uuid4().hex}.img"
        paths[name].write_bytes(data)
    for configuration, variables in FACTOR_CONFIGURATIONS.items():
        print(f"\n{configuration}")
        print(f"{'original':32} {'decoded as':24} {'decoded MiB':>11} {'peak +MiB':>10} {'factor':>7} {'reserved MiB':>13}")
        worst = 0.0
        for name, path in paths.items():
            out = subprocess.run(
                [sys.executable, __file__, "--factor-child", str(path)],
                capture_output=True, text=True, check=True, env={**_without_photo_variables(), **variables},
            ).stdout.split()
            mode, size, decoded, peak, reserved = out[0], out[1], int(out[2]), int(out[3]), int(out[4])
            factor = peak / decoded
            worst = max(worst, factor)
            # What the budget reserves for this photo (rendering.estimate_memory) against its peak.
            covered = "" if reserved >= peak else "  UNDER the peak"
            print(f"{name:32} {mode + ' ' + size:24} {decoded / MIB:11.0f} {peak / MIB:10.0f} {factor:7.1f} {reserved / MIB:13.0f}{covered}")
        print(f"largest factor: {worst:.1f}")


# The render configurations --factor compares (PHOTO_ variables of the child).
FACTOR_CONFIGURATIONS: dict[str, dict[str, str]] = {
    "base pair (preview + thumbnail)": {"PHOTO_RENDITION_SIZES": ""},
    "default responsive sizes, JPEG": {},
    "default responsive sizes, JPEG + WebP + AVIF": {"PHOTO_RENDITION_FORMATS": "webp,avif"},
}


def _without_photo_variables() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("PHOTO_")}


def _spooled(data: bytes):  # type: ignore[no-untyped-def]
    import io

    return io.BytesIO(data)


def _png(image) -> bytes:  # type: ignore[no-untyped-def]
    import io

    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


# --- whole run --------------------------------------------------------------------------------


def tree_rss(root_pid: int) -> int:
    """Sum of VmRSS over a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue  # the process ended while we looked
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid, ppid = int(entry), int(fields.get("PPid", "0").strip() or 0)
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024 if "VmRSS" in fields else 0
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def seed_hostile_album(home: Path, *, pngs: int, big_jpegs: int) -> uuid.UUID:
    from photo_pipeline.cli import samples
    from photo_pipeline.photos.database import migrate
    from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
    from photo_pipeline.settings import Settings
    from photo_pipeline.storage import LocalObjectStore, keys

    settings = Settings().with_home(home)
    migrate(settings.database_url)
    repository = PhotoRepository.from_url(settings.database_url)
    store = LocalObjectStore(settings.objects_dir)
    album = uuid.uuid4()

    def register(ext: str, content_type: str, data: bytes | None) -> str:
        photo_id = uuid.uuid4()
        key = keys.raw_key(album, photo_id, ext)
        repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key))
        if data is not None:
            store.put(key, data, content_type)
        return key

    png = samples.sixteen_bit_png()
    for _ in range(pngs):
        register("png", "image/png", png)
    # A 1 GB "JPEG": a real JPEG header followed by a hole, written as a sparse file.
    key = register("jpg", "image/jpeg", samples.photo_jpeg(640, 480))
    with open(settings.objects_dir / key, "r+b") as sparse:
        sparse.truncate(1024 * MIB)
    for seed in range(big_jpegs):
        register("jpg", "image/jpeg", samples.photo_jpeg(6000, 4000, seed=seed, quality=92))
    return album


def measure_run(budget_mb: int | None, pngs: int, big_jpegs: int, workers: int | None, code: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as folder:
        home = Path(folder) / "home"
        album = seed_hostile_album(home, pngs=pngs, big_jpegs=big_jpegs)
        env = {**os.environ, "PHOTO_PIPELINE_HOME": str(home), "DAGSTER_HOME": str(Path(folder) / "dagster")}
        for name in ("PHOTO_DATABASE_URL", "PHOTO_BUCKET"):
            env.pop(name, None)
        if budget_mb is not None:
            env["PHOTO_MEMORY_BUDGET_MB"] = str(budget_mb)
        if workers is not None:
            env["PHOTO_WORKERS"] = str(workers)
        Path(env["DAGSTER_HOME"]).mkdir()
        (Path(env["DAGSTER_HOME"]) / "dagster.yaml").write_text("")  # a throwaway SQLite instance
        from photo_pipeline.settings import Settings

        settings = Settings.from_env(env)
        add_partition = (
            "from dagster import DagsterInstance; "
            f"DagsterInstance.get().add_dynamic_partitions('albums', ['{album}'])"
        )
        subprocess.run([sys.executable, "-c", add_partition], env=env, check=True)
        if code is not None:
            # Run another checkout's pipeline (e.g. main, for the figures before the budget) on
            # the album seeded here; the table schema is the same.
            env["PYTHONPATH"] = code
            print(f"code under test: {code}")
            migrate = f"from photo_pipeline.photos.database import migrate; migrate({settings.database_url!r})"
            subprocess.run([sys.executable, "-c", migrate], env=env, cwd=code, check=True)
        command = [
            str(Path(sys.executable).with_name("dagster")), "job", "execute",
            "-m", "photo_pipeline.definitions", "-a", "defs", "-j", "process_album",
            "--tags", f'{{"dagster/partition": "{album}"}}',
        ]
        print(f"{pngs} x 16-bit 10900x10900 PNG, 1 x 1 GB sparse JPEG, {big_jpegs} x 6000x4000 JPEG; "
              f"workers={settings.workers}, budget {settings.memory_budget_mb} MiB, "
              f"max original {settings.max_original_mb} MiB")
        peak, started = _run_sampling(command, env, cwd=code)
        print(f"whole run: {time.perf_counter() - started:.1f}s, peak RSS of the process tree {peak / MIB:,.0f} MiB "
              f"(budget {settings.memory_budget_mb} MiB for decoded pixels)")
        _print_outcomes(settings.database_url, album)


def _run_sampling(command: list[str], env: dict[str, str], cwd: str | None) -> tuple[int, float]:
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak = 0
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout or []), daemon=True)
    reader.start()
    while process.poll() is None:
        peak = max(peak, tree_rss(process.pid))
        if time.perf_counter() - started > RUN_TIMEOUT_SECONDS:
            process.kill()
            raise SystemExit(f"run did not finish within {RUN_TIMEOUT_SECONDS}s")
        time.sleep(0.05)
    reader.join(timeout=5)
    if process.returncode != 0:
        print("".join(output[-40:]))
        print(f"dagster job execute exited {process.returncode}")
    return peak, started


def _print_outcomes(database_url: str, album: uuid.UUID) -> None:
    from photo_pipeline.photos.repository import PhotoRepository

    repository = PhotoRepository.from_url(database_url)
    for photo in repository.photos_in_album(album):
        print(f"  {photo.original_key.rsplit('/', 1)[-1][-12:]:>12} {photo.status.value:10} {(photo.error or '')[:160]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factor", action="store_true", help="measure the per-photo working-set factor")
    parser.add_argument("--run", action="store_true", help="measure a whole process_album run (default)")
    parser.add_argument("--budget-mb", type=int, default=None, help="PHOTO_MEMORY_BUDGET_MB for the run")
    parser.add_argument("--pngs", type=int, default=6)
    parser.add_argument("--big-jpegs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="PHOTO_WORKERS (default: the setting's)")
    parser.add_argument("--code", default=None, help="run the pipeline of this checkout instead (PYTHONPATH)")
    parser.add_argument("--factor-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.factor_child:
        _factor_child(args.factor_child)
        return
    if args.factor:
        with tempfile.TemporaryDirectory(prefix="memory-factor-") as folder:
            measure_factors(Path(folder))
    if args.run or not args.factor:
        measure_run(args.budget_mb, args.pngs, args.big_jpegs, args.workers, args.code)


if __name__ == "__main__":
    main()
