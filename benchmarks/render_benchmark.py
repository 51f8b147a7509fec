"""The project's renderer against libvips on the same photos and threads, at measured quality.

Run from the project root (libvips comes with the `bench` extra: pip install -e '.[bench]'):

    PYTHONPATH=. .venv/bin/python benchmarks/render_benchmark.py [--photos 8] [--repeat 5]
        [--kinds jpeg12 jpeg24 portrait icc png12 chart]
        [--choices] [--draft]

Default section, side by side for each kind of photo (12-MP JPEGs, 24-MP JPEGs, 12-MP portrait
JPEGs stored landscape with EXIF orientation 6, 12-MP JPEGs with an Adobe RGB profile, 12-MP
PNGs; all made in code; and a 12-MP zone plate, a test chart with detail up to and beyond the
preview's resolution limit) and each thread count (1, 2 and PHOTO_WORKERS):

- libvips: `pyvips.Image.thumbnail_buffer` to the preview size (shrink-on-load, upright, an
  embedded profile applied to sRGB after the shrink as the renderer does), the thumbnail made from
  that preview by `thumbnail_image`, both JPEG-encoded with the renderer's own
  encoder settings (quality, optimized tables, progressive or not, 4:2:0) and no metadata.
  VIPS_CONCURRENCY=1, so each photo takes one thread, as one of ours does; libvips's operation cache
  is off, so a repeated photo is rendered again.
- the project's renderer (`render_renditions`) without the watermark (libvips draws none, so the
  ratio compares equal work) and, for reference, with the default watermark.
- photos/s (best of --repeat runs of --photos photos through a thread pool), the ratio
  renderer / libvips, the mean bytes per preview, and quality: mean SSIM of each preview against a
  reference made from the full decode (no draft; converted to sRGB by its profile, if any) resized
  with Lanczos in float ("F" images, one a channel), for both; the renderer's must be within 0.005 of libvips's.

--choices   the measurements behind the renderer's settings: resampling filters x reducing_gap
            for the preview (time and SSIM before encoding), the thumbnail's reducing_gap, the
            responsive sizes' step of 2 (2x2 average against bicubic and Lanczos), and the JPEG
            encoder settings (bytes, time, SSIM).
--draft     what JPEG draft decoding saves on a 24-MP photo: time and peak memory (VmHWM growth
            in a fresh process), full decode vs draft.

--sizes     the responsive sizes and formats (PHOTO_RENDITION_SIZES, PHOTO_RENDITION_FORMATS):
            the base pair (preview + thumbnail, what every photo got before them) against the
            default configuration, each extra size alone and each extra format on top of the
            default sizes; one thread, watermark on, best of --repeat, 12-MP landscape and
            portrait JPEGs. The default configuration must stay within 1.3x of the base pair.
            `--sizes` alone skips the libvips comparison.

Everything is printed, nothing asserted. Bounded: about two minutes for the defaults on 2 cores.
"""

from __future__ import annotations

import os

# One libvips worker thread per photo, set before pyvips loads libvips: the thread pool below
# gives both engines the same number of threads.
os.environ.setdefault("VIPS_CONCURRENCY", "1")

import argparse
import io
import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cache

import numpy as np
import pyvips
from PIL import Image, ImageOps, features
from skimage.metrics import structural_similarity

from photo_pipeline.cli import samples
from photo_pipeline.rendering import render as rendering
from photo_pipeline.rendering.render import EXTRA_FORMATS, RenderOptions, _render, render_renditions
from photo_pipeline.rendering.sizes import DEFAULT_SIZES, SMALL_SIZES, fit_long_side
from photo_pipeline.settings import Settings

SSIM_TOLERANCE = 0.005
# Distinct photos made per kind; a run cycles through them (making a 12-MP PNG takes a second).
DISTINCT_PHOTOS = 4


@dataclass(frozen=True)
class PhotoKind:
    label: str
    make: Callable[[int], bytes]
    # libvips is asked to colour-manage only photos with a profile: asked on the others, it runs an
    # sRGB-to-sRGB transform the renderer skips, and falls to a third of its speed.
    has_profile: bool = False


def zone_plate_jpeg(width: int = 4000, height: int = 3000, *, seed: int = 0) -> bytes:
    """A test chart, not a photo: concentric rings whose frequency rises from the centre to beyond
    the preview's resolution limit, the content on which resampling filters and draft differ.
    `seed` shifts the centre, so a run's photos are not byte-identical."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    centre_x, centre_y = width / 2 + 37 * seed, height / 2 - 23 * seed
    rings = 0.5 + 0.5 * np.cos(np.pi * ((x - centre_x) ** 2 + (y - centre_y) ** 2) / (2 * width))
    buffer = io.BytesIO()
    Image.fromarray((rings * 255).astype(np.uint8)).convert("RGB").save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def _with_profile(jpeg: bytes) -> bytes:
    """The same photo re-encoded with a wide-gamut profile, as cameras set to Adobe RGB write."""
    with Image.open(io.BytesIO(jpeg)) as opened:
        buffer = io.BytesIO()
        opened.save(buffer, "JPEG", quality=90, icc_profile=samples.wide_gamut_icc_profile())
    return buffer.getvalue()


KINDS: dict[str, PhotoKind] = {
    "jpeg12": PhotoKind("12 MP JPEG 4000x3000", lambda seed: samples.photo_jpeg(4000, 3000, seed=seed)),
    "jpeg24": PhotoKind("24 MP JPEG 6000x4000", lambda seed: samples.photo_jpeg(6000, 4000, seed=seed)),
    "portrait": PhotoKind(
        "12 MP JPEG portrait, EXIF 6", lambda seed: samples.photo_jpeg(4000, 3000, seed=seed, orientation=6)
    ),
    "icc": PhotoKind(
        "12 MP JPEG, Adobe RGB profile",
        lambda seed: _with_profile(samples.photo_jpeg(4000, 3000, seed=seed)),
        has_profile=True,
    ),
    "png12": PhotoKind("12 MP PNG 4000x3000", lambda seed: samples.photo_png(4000, 3000, seed=seed)),
    "chart": PhotoKind("12 MP test chart (zone plate) JPEG, not a photo", lambda seed: zone_plate_jpeg(seed=seed)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--photos", type=int, default=8, help="photos per throughput run")
    parser.add_argument("--repeat", type=int, default=5, help="throughput runs per figure (the best is shown)")
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS), help="which photos")
    parser.add_argument("--choices", action="store_true", help="also print the measurements behind the settings")
    parser.add_argument("--draft", action="store_true", help="also print what JPEG draft saves on 24 MP")
    parser.add_argument("--sizes", action="store_true", help="only the cost of each responsive size and format")
    args = parser.parse_args()
    if args.sizes:
        _sizes_section(args.repeat)
        return

    pyvips.cache_set_max(0)
    workers = sorted({1, 2, Settings.from_env().workers})
    options = RenderOptions(watermark=None)
    print(
        f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)} (pyvips {pyvips.__version__}), "
        f"Pillow {Image.__version__}; {os.cpu_count()} CPUs; threads {workers}; preview "
        f"{options.preview_long_side} px, thumbnail {options.thumb_long_side} px, quality {options.quality}, "
        f"optimize={rendering.JPEG_OPTIMIZE} progressive={rendering.JPEG_PROGRESSIVE} "
        f"subsampling={rendering.JPEG_SUBSAMPLING}; {args.photos} photos a run, best of {args.repeat}"
    )
    for key in args.kinds:
        _compare(KINDS[key], options, workers, args.photos, args.repeat)
    if args.choices:
        _choices()
    if args.draft:
        _draft_section(args.repeat)


# --- renderer vs libvips -------------------------------------------------------------------------


def vips_render(data: bytes, options: RenderOptions, *, has_profile: bool = False) -> tuple[bytes, bytes]:
    """libvips's best equivalent of render_renditions without a watermark: (preview, thumbnail)."""
    # export_profile: the embedded profile is applied (after the shrink) and the result is sRGB, as
    # the renderer's; without it libvips would pass the camera's colours through untouched.
    colour: dict[str, object] = {"export_profile": "srgb", "intent": "perceptual"} if has_profile else {}
    preview = pyvips.Image.thumbnail_buffer(
        data, options.preview_long_side, height=options.preview_long_side, size="down", **colour
    ).copy_memory()  # the thumbnail is made from it too, as the renderer's is
    thumbnail = preview.thumbnail_image(options.thumb_long_side, height=options.thumb_long_side, size="down")
    return _vips_jpeg(preview, options), _vips_jpeg(thumbnail, options)


def _vips_jpeg(image: pyvips.Image, options: RenderOptions) -> bytes:
    return image.jpegsave_buffer(
        Q=options.quality,
        keep="none",
        optimize_coding=rendering.JPEG_OPTIMIZE,
        interlace=rendering.JPEG_PROGRESSIVE,
        subsample_mode="on" if rendering.JPEG_SUBSAMPLING == "4:2:0" else "off",
    )


def _compare(kind: PhotoKind, options: RenderOptions, workers: Sequence[int], count: int, repeat: int) -> None:
    started = time.perf_counter()
    distinct = [kind.make(seed) for seed in range(min(DISTINCT_PHOTOS, count))]
    photos = [distinct[index % len(distinct)] for index in range(count)]
    print(f"\n{kind.label}: {len(distinct)} distinct photos, made in {time.perf_counter() - started:.1f} s")

    ours_previews = [render_renditions(data, options).preview.data for data in distinct]
    vips_previews = [vips_render(data, options, has_profile=kind.has_profile)[0] for data in distinct]
    ours_ssim = statistics.mean(_ssim(data, preview) for data, preview in zip(distinct, ours_previews, strict=True))
    vips_ssim = statistics.mean(_ssim(data, preview) for data, preview in zip(distinct, vips_previews, strict=True))
    ours_bytes = statistics.mean(len(preview) for preview in ours_previews)
    vips_bytes = statistics.mean(len(preview) for preview in vips_previews)
    _reference.cache_clear()  # 46 MB a reference: only one kind's are kept
    verdict = "equal quality" if ours_ssim >= vips_ssim - SSIM_TOLERANCE else "BELOW libvips"
    print(
        f"  preview SSIM vs float Lanczos of the full decode: libvips {vips_ssim:.4f}, renderer {ours_ssim:.4f} "
        f"({ours_ssim - vips_ssim:+.4f}, {verdict}); bytes per preview: libvips {vips_bytes / 1000:.0f} KB, "
        f"renderer {ours_bytes / 1000:.0f} KB"
    )

    watermarked = RenderOptions()
    print(f"  {'threads':>7} {'libvips':>10} {'renderer':>10} {'ratio':>6}   {'+watermark':>10} {'ratio':>6}")
    engines: dict[str, Callable[[bytes], object]] = {
        "libvips": lambda data: vips_render(data, options, has_profile=kind.has_profile),
        "renderer": lambda data: render_renditions(data, options),
        "watermarked": lambda data: render_renditions(data, watermarked),
    }
    for threads in workers:
        rates = _rates(engines, photos, threads, repeat)
        vips_rate, ours_rate, marked_rate = rates["libvips"], rates["renderer"], rates["watermarked"]
        print(
            f"  {threads:>7} {vips_rate:>8.2f}/s {ours_rate:>8.2f}/s {ours_rate / vips_rate:>6.2f}"
            f"   {marked_rate:>8.2f}/s {marked_rate / vips_rate:>6.2f}"
        )


def _rates(
    engines: dict[str, Callable[[bytes], object]], photos: Sequence[bytes], threads: int, repeat: int
) -> dict[str, float]:
    """Photos/s of each engine, from its best run: the engines take turns within each repeat, and
    the fastest run is the one least disturbed by whatever else the machine was doing."""
    for render in engines.values():
        render(photos[0])  # warm-up: libraries loaded, font and mark drawn, allocator primed
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(repeat):
        for name, render in engines.items():
            seconds[name].append(_timed(lambda render=render: _run_batch(render, photos, threads)))
    return {name: len(photos) / min(runs) for name, runs in seconds.items()}


def _run_batch(render: Callable[[bytes], object], photos: Sequence[bytes], threads: int) -> None:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(render, photos):
            pass


def _ssim(original: bytes, jpeg: bytes) -> float:
    with Image.open(io.BytesIO(jpeg)) as opened:
        candidate = np.asarray(opened.convert("RGB"), dtype=np.float64)
    reference = _reference(original, (candidate.shape[1], candidate.shape[0]))
    return float(structural_similarity(candidate, reference, channel_axis=2, data_range=255))


@cache
def _reference(original: bytes, size: tuple[int, int]) -> np.ndarray:
    """The full decode, upright, resized in float with Lanczos, one channel at a time: no rounding."""
    with Image.open(io.BytesIO(original)) as opened:
        icc_profile = opened.info.get("icc_profile")
        full = ImageOps.exif_transpose(opened.convert("RGB"))
    if icc_profile:
        full = rendering._profile_to_srgb(full, icc_profile) or full
    channels = [channel.convert("F").resize(size, Image.Resampling.LANCZOS) for channel in full.split()]
    return np.stack([np.asarray(channel, dtype=np.float64) for channel in channels], axis=2)


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


# --- the measurements behind the settings --------------------------------------------------------

FILTERS: dict[str, Image.Resampling] = {
    "LANCZOS": Image.Resampling.LANCZOS,
    "BICUBIC": Image.Resampling.BICUBIC,
    "HAMMING": Image.Resampling.HAMMING,
    "BILINEAR": Image.Resampling.BILINEAR,
}
# For the preview's factors (1.25 after draft, 1.875, 2.5) gaps 2.0, 3.0 and None all mean "no reduce".
PREVIEW_GAPS: tuple[float, ...] = (1.0, 3.0)
THUMB_GAPS: tuple[float | None, ...] = (None, 1.0, 2.0, 3.0)
ENCODER_SETTINGS: dict[str, dict[str, object]] = {
    "baseline": {"optimize": False},
    "baseline, optimized tables": {"optimize": True},
    "progressive": {"progressive": True},
    "4:4:4, optimized tables": {"optimize": True, "subsampling": "4:4:4"},
}


def _choices() -> None:
    options = RenderOptions()
    print("\nchoices: preview resize (after draft), best time of 5, SSIM before encoding")
    originals = {
        "12 MP JPEG": samples.photo_jpeg(4000, 3000, seed=11),
        "24 MP JPEG": samples.photo_jpeg(6000, 4000, seed=12),
        "12 MP PNG": samples.photo_png(4000, 3000, seed=13),
        "12 MP zone plate JPEG": zone_plate_jpeg(),
    }
    for label, original in originals.items():
        decoded = rendering._to_srgb(rendering._decode(original, options).image, options.background)
        size = fit_long_side(decoded.size, options.preview_long_side)
        print(f"  {label}, decoded {decoded.size[0]}x{decoded.size[1]} -> {size[0]}x{size[1]}")
        for gap in PREVIEW_GAPS:
            cells = []
            for name, resample in FILTERS.items():
                seconds = _best_seconds(lambda: decoded.resize(size, resample, reducing_gap=gap))
                ssim = _ssim_of_image(original, decoded.resize(size, resample, reducing_gap=gap))
                cells.append(f"{name} {seconds * 1000:4.0f} ms {ssim:.4f}")
            print(f"    gap {gap!s:>4}: " + " | ".join(cells))

    print("\nchoices: thumbnail from the preview, SSIM before encoding (photo | zone plate)")
    photo, chart = originals["12 MP JPEG"], originals["12 MP zone plate JPEG"]
    preview, chart_preview = _render_preview_image(photo, options), _render_preview_image(chart, options)
    thumb_size = fit_long_side(preview.size, options.thumb_long_side)
    for gap in THUMB_GAPS:
        for name in ("LANCZOS", "BICUBIC"):
            resample = FILTERS[name]
            seconds = _best_seconds(lambda: preview.resize(thumb_size, resample, reducing_gap=gap))
            ssim = _ssim_of_image(photo, preview.resize(thumb_size, resample, reducing_gap=gap))
            # Against the chart preview's own float Lanczos resize: what this step alone loses.
            chart_ssim = _ssim_against(chart_preview, chart_preview.resize(thumb_size, resample, reducing_gap=gap))
            print(f"    gap {gap!s:>4} {name:8} {seconds * 1000:5.1f} ms  SSIM {ssim:.4f} | {chart_ssim:.4f}")

    # The responsive sizes' chain: the default 800 is half the 1600 preview (rendering.CHAIN_REDUCING_GAP).
    half = (preview.width // 2, preview.height // 2)
    print(f"\nchoices: a responsive size at half the preview ({half[0]}x{half[1]}), SSIM before encoding (photo | zone plate)")
    for label, resample, gap in (
        ("2x2 average (reduce)", FILTERS["BICUBIC"], 1.0),
        ("BICUBIC", FILTERS["BICUBIC"], None),
        ("LANCZOS", FILTERS["LANCZOS"], None),
    ):
        seconds = _best_seconds(lambda: preview.resize(half, resample, reducing_gap=gap))
        ssim = _ssim_of_image(photo, preview.resize(half, resample, reducing_gap=gap))
        chart_ssim = _ssim_against(chart_preview, chart_preview.resize(half, resample, reducing_gap=gap))
        print(f"    {label:22} {seconds * 1000:5.1f} ms  SSIM {ssim:.4f} | {chart_ssim:.4f}")
    original = photo

    print(f"\nchoices: JPEG encoder on the preview, quality {options.quality}")
    for label, params in ENCODER_SETTINGS.items():
        encoded = _jpeg(preview, options.quality, params)
        seconds = _best_seconds(lambda: _jpeg(preview, options.quality, params))
        ssim = _ssim(original, encoded)
        print(f"    {label:28} {len(encoded) / 1000:5.0f} KB {seconds * 1000:5.1f} ms  SSIM {ssim:.4f}")


def _render_preview_image(original: bytes, options: RenderOptions) -> Image.Image:
    decoded = rendering._decode(original, options)
    upright = rendering._to_srgb(decoded.image, options.background)
    size = fit_long_side(decoded.source_size, options.preview_long_side)
    return rendering._fit(upright, size, rendering.PREVIEW_FILTER, rendering.REDUCING_GAP)


def _jpeg(image: Image.Image, quality: int, params: dict[str, object]) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, **params)
    return buffer.getvalue()


def _ssim_of_image(original: bytes, image: Image.Image) -> float:
    candidate = np.asarray(image.convert("RGB"), dtype=np.float64)
    reference = _reference(original, image.size)
    return float(structural_similarity(candidate, reference, channel_axis=2, data_range=255))


def _ssim_against(source: Image.Image, image: Image.Image) -> float:
    channels = [channel.convert("F").resize(image.size, Image.Resampling.LANCZOS) for channel in source.split()]
    reference = np.stack([np.asarray(channel, dtype=np.float64) for channel in channels], axis=2)
    candidate = np.asarray(image.convert("RGB"), dtype=np.float64)
    return float(structural_similarity(candidate, reference, channel_axis=2, data_range=255))


def _best_pair(first: Callable[[], object], second: Callable[[], object], runs: int) -> tuple[float, float]:
    """The best times of two actions timed alternately, `runs` times each."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        times[0].append(_timed(first))
        times[1].append(_timed(second))
    return min(times[0]), min(times[1])


def _best_seconds(action: Callable[[], object], runs: int = 5) -> float:
    """The best of `runs`: the timing least disturbed by the rest of the machine."""
    return min(_timed(action) for _ in range(runs))


# --- the responsive sizes and formats ------------------------------------------------------------

# The default configuration may cost at most this much more than the base pair (issue 12).
DEFAULT_BUDGET_RATIO = 1.3


def _sizes_section(repeat: int) -> None:
    settings = Settings.from_env()
    base = rendering.render_options_from_settings(settings.render)
    base_pair = replace(base, sizes=(), extra_formats=())
    default = replace(base, sizes=DEFAULT_SIZES, extra_formats=())
    small = replace(base, sizes=SMALL_SIZES, extra_formats=())
    print(
        f"responsive sizes: Pillow {Image.__version__}, AVIF {features.check('avif')}, WebP {features.check('webp')}; "
        f"one thread, watermark on, quality {base.quality} (AVIF {base.avif_quality}), best of {repeat}; default sizes {DEFAULT_SIZES}"
    )
    for label, make in (("12 MP JPEG 4000x3000", lambda: samples.photo_jpeg(4000, 3000, seed=3)),
                        ("12 MP JPEG portrait (EXIF 6)", lambda: samples.photo_jpeg(4000, 3000, seed=4, orientation=6))):
        photo = make()
        reference = _best_seconds(lambda: render_renditions(photo, base_pair), repeat)
        print(f"\n{label}: base pair (preview {base.preview_long_side} + thumbnail {base.thumb_long_side}) {reference * 1000:.0f} ms")
        print(f"  {'configuration':<44} {'ms':>6} {'extra ms':>9} {'x base':>7} {'files':>6} {'KB':>7}")
        rows = [(f"default sizes {DEFAULT_SIZES}, JPEG", default), (f"sizes {SMALL_SIZES}, JPEG", small)]
        rows += [(f"base pair + size {size}", replace(base_pair, sizes=(size,))) for size in sorted({*DEFAULT_SIZES, *SMALL_SIZES})]
        rows += [(f"default sizes + {fmt}", replace(default, extra_formats=(fmt,))) for fmt in EXTRA_FORMATS]
        rows += [("default sizes + WEBP + AVIF", replace(default, extra_formats=EXTRA_FORMATS))]
        for name, options in rows:
            # Each configuration timed alternately with the base pair: a busy spell of the machine
            # then slows both, and the ratio is of the two best times of the same spell.
            pair_reference, seconds = _best_pair(
                lambda: render_renditions(photo, base_pair), lambda options=options: render_renditions(photo, options), repeat
            )
            result = render_renditions(photo, options)
            kilobytes = sum(len(s.rendition.data) for s in result.sized) / 1024
            ratio = seconds / pair_reference
            verdict = ""
            if options is default:
                verdict = "  within 1.3x" if ratio <= DEFAULT_BUDGET_RATIO else "  OVER the 1.3x budget"
            print(
                f"  {name:<44} {seconds * 1000:6.0f} {(seconds - pair_reference) * 1000:+9.0f} {ratio:7.2f} "
                f"{len(result.sized):6d} {kilobytes:7.0f}{verdict}"
            )
        _formats_compared(photo, replace(default, extra_formats=EXTRA_FORMATS))


def _formats_compared(photo: bytes, options: RenderOptions) -> None:
    """Bytes and SSIM of each format's files at its configured quality (PHOTO_QUALITY, PHOTO_AVIF_QUALITY)."""
    result = render_renditions(photo, options)
    print(f"  {'format, quality':<22} {'KB (all sizes)':>15} {'SSIM of the largest':>20}")
    for fmt in ("JPEG", *EXTRA_FORMATS):
        files = [s.rendition for s in result.sized if s.rendition.format == fmt]
        print(f"  {f'{fmt} {options.quality_for(fmt)}':<22} {sum(len(f.data) for f in files) / 1024:15.0f} {_ssim(photo, files[0].data):20.4f}")


# --- what draft decoding saves (the original benchmark) ------------------------------------------


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_mib: float


def _draft_section(repeat: int) -> None:
    options = RenderOptions()
    photo = samples.photo_jpeg(6000, 4000, seed=1)
    print("\ndraft: one 24-MP JPEG, draft vs full decode")
    with_draft = _measure(photo, options, use_draft=True, repeat=repeat)
    without_draft = _measure(photo, options, use_draft=False, repeat=repeat)
    print(f"  {'':14}{'time':>10}{'peak memory':>14}")
    print(f"  {'with draft':14}{with_draft.seconds:>9.3f}s{with_draft.peak_mib:>10.0f} MiB")
    print(f"  {'without draft':14}{without_draft.seconds:>9.3f}s{without_draft.peak_mib:>10.0f} MiB")
    print(
        f"  draft is {without_draft.seconds / with_draft.seconds:.1f}x faster "
        f"and needs {without_draft.peak_mib / max(with_draft.peak_mib, 1):.1f}x less memory"
    )


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


if __name__ == "__main__":
    main()
