"""How much JPEG draft decoding and a second worker thread buy when rendering 24-MP photos.

Run from the project root:  .venv/bin/python benchmarks/render_benchmark.py [--photos 10]

Peak memory is the growth of the peak resident set size (VmHWM) while rendering one photo,
measured in a fresh process per variant: Pillow allocates pixel buffers outside Python's
allocator, so tracemalloc would not see them, and a process's peak never goes down again.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

from photo_pipeline import samples
from photo_pipeline.rendering import RenderOptions, _render

WIDTH, HEIGHT = 6000, 4000


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_mib: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--photos", type=int, default=10, help="photos per throughput run")
    parser.add_argument("--repeat", type=int, default=3, help="timing runs per variant (median is shown)")
    args = parser.parse_args()

    options = RenderOptions()
    started = time.perf_counter()
    photo = samples.photo_jpeg(WIDTH, HEIGHT, seed=1)
    print(
        f"sample: {WIDTH}x{HEIGHT} JPEG ({WIDTH * HEIGHT / 1e6:.0f} MP, {len(photo) / 1e6:.1f} MB), "
        f"made in {time.perf_counter() - started:.2f} s; preview {options.preview_long_side} px, "
        f"thumbnail {options.thumb_long_side} px, {os.cpu_count()} CPUs"
    )

    print("\none photo, draft vs full decode")
    with_draft = _measure(photo, options, use_draft=True, repeat=args.repeat)
    without_draft = _measure(photo, options, use_draft=False, repeat=args.repeat)
    print(f"  {'':14}{'time':>10}{'peak memory':>14}")
    print(f"  {'with draft':14}{with_draft.seconds:>9.3f}s{with_draft.peak_mib:>10.0f} MiB")
    print(f"  {'without draft':14}{without_draft.seconds:>9.3f}s{without_draft.peak_mib:>10.0f} MiB")
    print(
        f"  draft is {without_draft.seconds / with_draft.seconds:.1f}x faster "
        f"and needs {without_draft.peak_mib / max(with_draft.peak_mib, 1):.1f}x less memory"
    )

    print(f"\nthroughput, {args.photos} photos through a thread pool (with draft)")
    rates = {workers: _photos_per_second(photo, options, workers, args.photos) for workers in (1, 2)}
    for workers, rate in rates.items():
        print(f"  {workers} worker{'s' if workers > 1 else ' '}  {rate:6.2f} photos/s")
    print(f"  2 workers / 1 worker = {rates[2] / rates[1]:.2f}x")


def _measure(photo: bytes, options: RenderOptions, *, use_draft: bool, repeat: int) -> Measurement:
    # A fresh process per variant, so one variant's peak cannot hide the other's.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        peak_mib = pool.submit(_peak_growth_mib, photo, options, use_draft).result()
    seconds = statistics.median(_timed(lambda: _render(photo, options, use_draft=use_draft)) for _ in range(repeat))
    return Measurement(seconds=seconds, peak_mib=peak_mib)


def _peak_growth_mib(photo: bytes, options: RenderOptions, use_draft: bool) -> float:
    before_kib = _peak_rss_kib()
    _render(photo, options, use_draft=use_draft)
    return (_peak_rss_kib() - before_kib) / 1024


def _peak_rss_kib() -> int:
    # Linux's ru_maxrss survives fork+exec, so a child would start at its parent's peak (the
    # 24-MP sample's generation); VmHWM belongs to the process's own address space.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _photos_per_second(photo: bytes, options: RenderOptions, workers: int, count: int) -> float:
    def run_batch() -> None:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(lambda data: _render(data, options, use_draft=True), [photo] * count):
                pass

    return count / _timed(run_batch)


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
