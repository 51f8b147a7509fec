"""Rendering: the bytes of an original in, a watermarked preview and thumbnail out.

Pure and I/O-free (only `render_options_from_settings` reads a file, the watermark logo). Each
photo is decoded once; the preview is made from that decode and the thumbnail from the preview.
Whatever comes in — CMYK, 16-bit, palette, alpha, a camera ICC profile, EXIF rotation, HEIC, an
animation — what goes out is plain sRGB RGB with no metadata, never larger than the original.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pillow_heif
from PIL import Image, ImageCms, ImageColor, ImageMode, ImageOps, UnidentifiedImageError

from photo_pipeline.failures import FailureKind
from photo_pipeline.rendering.capture import CaptureFacts, capture_facts
from photo_pipeline.rendering.sizes import MAX_SIZES, SizedTarget, fit_long_side, planned_sizes, resize_chain
from photo_pipeline.rendering.thumbhash import thumbhash_of
from photo_pipeline.rendering.truncation import find_truncation
from photo_pipeline.rendering.watermark import (
    WatermarkOptions,
    apply_watermark,
    decode_logo,
)
from photo_pipeline.settings import RenderSettings, SettingsError

__all__ = [
    "MemoryEstimate",
    "RenderError",
    "RenderOptions",
    "Rendition",
    "Renditions",
    "WatermarkOptions",
    "decoded_bytes",
    "estimate_memory",
    "render_options_from_settings",
    "render_renditions",
]

# HEIC is what iPhones upload; Pillow reads it only through this plugin.
pillow_heif.register_heif_opener()

# Our own limit (RenderOptions.max_pixels) is checked from the header before any decode, so
# Pillow's advisory warning is redundant noise. `warnings.catch_warnings` around each open would
# be the local alternative, but it is not thread-safe and photos render on a thread pool. Pillow's
# hard error (twice its MAX_IMAGE_PIXELS) still applies and is reported as a RenderError.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# Photo formats only: an allow-list keeps exotic decoders (EPS runs Ghostscript, for one) away
# from files anybody can upload.
SOURCE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "HEIF", "AVIF")
OUTPUT_FORMATS: dict[str, str] = {"JPEG": "image/jpeg", "WEBP": "image/webp", "AVIF": "image/avif"}
# The preview and thumbnail's format (PHOTO_FORMAT); AVIF only as an extra format of the sizes.
BASE_FORMATS: tuple[str, ...] = ("JPEG", "WEBP")
# Formats the responsive sizes may get beside JPEG (PHOTO_RENDITION_FORMATS); Pillow 13 has both built in.
EXTRA_FORMATS: tuple[str, ...] = ("WEBP", "AVIF")
# AVIF's encoder speed (0 slowest/smallest .. 10 fastest): Pillow's default (6) costs about twice
# the JPEG's time for the same size; 8 halves that for a few percent more bytes (render benchmark).
AVIF_SPEED = 8
# libavif encodes on every core by default; photos already render one per core, so more threads
# per encode only oversubscribe the CPU (and would hide its cost from a one-thread benchmark).
AVIF_THREADS = 1

# Figures below: `benchmarks/render_benchmark.py --choices` (SSIM against a float Lanczos resize
# of the full decode; times best of 5 on the 2-core machine; see docs/operations.md).
# Downscale by whole-number `reduce` first while the remaining factor stays above this. For the
# preview's factors (1.25 after a 1/2 draft, 1.875, 2.5 for an undrafted PNG) this means no
# reduce: a gap of 1.0 (box-reduce a 12-MP PNG by 2, then resize) halves the resize time but
# costs SSIM 0.998 -> 0.992 on the PNG.
REDUCING_GAP = 3.0
# The thumbnail is a 4x reduction of the preview: box-reducing by 2 first, then resampling by 2,
# costs SSIM 0.0006 on photos at less than half the time (8 ms instead of 20), and is what
# libvips's own resize does. On a zone plate it gives 0.92 (a straight resize 0.999); a box
# reduce by 4 (gap 1.0) aliases badly there: 0.73.
THUMB_REDUCING_GAP = 2.0
# The responsive sizes other than the preview and thumbnail (the chain 2000 -> 1600 -> 800 -> 400 of
# a 12-MP JPEG, each made from the one before): each step box-reduces by the whole factor first, then
# resamples what remains. A step of exactly 2 (the default 800 from the 1600 preview) is then a 2x2
# average, a mipmap level, at 2 ms instead of 17.7 (bicubic) or 24.5 (Lanczos): on photos SSIM
# 0.9965 against 0.9971, on a zone plate 0.68 against 0.95 (a box filter shows moire on fine
# repeating patterns). The affordable choice within the 1.3x budget of the default sizes. The
# preview and the thumbnail keep their own filters wherever they fall in the chain, so configuring
# sizes never changes them (`render_benchmark.py --choices`).
CHAIN_REDUCING_GAP = 1.0
# The preview's filter: BICUBIC, not LANCZOS. On the photos (12 and 24 MP JPEGs after draft, PNG)
# both give the same SSIM to +-0.0005, before and after JPEG encoding, and BICUBIC's support of 2
# pixels instead of 3 saves about 14 ms a 12-MP photo (a quarter of the resize, the largest step).
# What it gives up shows on detail at the preview's resolution limit: on a zone plate 0.945
# against LANCZOS's 0.977 before encoding. HAMMING and BILINEAR lose 0.005 SSIM on photos too.
PREVIEW_FILTER = Image.Resampling.BICUBIC
# The thumbnail's resize is small, so the better filter costs under 2 ms (8.4 against 6.6 ms).
# (Made from the 800 of the default sizes, itself a 2x2 average of the preview, it is the same
# reduce-by-2-then-Lanczos and the same pixels.)
THUMB_FILTER = Image.Resampling.LANCZOS
# Encoder settings, measured on 1600-px previews of 12-MP photos at quality 82 (libjpeg-turbo):
#   baseline, standard Huffman tables        82 KB    4 ms
#   baseline, optimized Huffman tables       65 KB    7 ms   <- chosen: smallest, 3 ms dearer
#   progressive (always optimized)           67 KB   13 ms
#   4:4:4, optimized                         81 KB   14 ms   (SSIM +0.001 for 25% more bytes)
JPEG_OPTIMIZE = True
JPEG_PROGRESSIVE = False
JPEG_SUBSAMPLING = "4:2:0"
EXIF_ORIENTATION_TAG = 0x0112
# EXIF orientations that swap width and height (the 90 and 270 degree ones).
TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
# Decoders report broken data with any of these; nothing else is caught around decoding.
DECODE_ERRORS: tuple[type[BaseException], ...] = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)
# And per format: Pillow's AVIF plugin reports a damaged or cut AV1 bitstream as a RuntimeError
# ("Failed to decode frame 0: Decoding of color planes failed"); elsewhere a RuntimeError is a bug.
FORMAT_DECODE_ERRORS: dict[str, tuple[type[BaseException], ...]] = {"AVIF": (RuntimeError,)}


class RenderError(Exception):
    """The original cannot be rendered: not an image, corrupt, empty, or too large.

    The message is meant for an operator (it ends up in the photo row's `error`); `kind` says
    which (it ends up in `failure_kind`: none of them is helped by a re-run).
    """

    def __init__(self, message: str, kind: FailureKind = FailureKind.DAMAGED) -> None:
        super().__init__(message)
        self.kind = kind


def _corrupt(exc: BaseException) -> RenderError:
    """What a decoder raised for bad data, as the reason an operator reads."""
    return RenderError(f"file is truncated or corrupt: {str(exc).strip() or type(exc).__name__}")


@dataclass(frozen=True)
class RenderOptions:
    preview_long_side: int = 1600
    thumb_long_side: int = 400
    quality: int = 82
    # AVIF's own scale (PHOTO_AVIF_QUALITY): its 82 is larger than JPEG's 82.
    avif_quality: int = 50
    format: str = "JPEG"  # or "WEBP"
    # None = no watermark. A shared default is safe: WatermarkOptions is frozen.
    watermark: WatermarkOptions | None = WatermarkOptions()  # noqa: RUF009
    background: str = "#ffffff"  # transparency is flattened onto this colour
    max_pixels: int = 120_000_000
    # Read GPS coordinates into the capture facts (PHOTO_STORE_GPS); renditions never carry them.
    keep_gps: bool = False
    # Responsive sizes (PHOTO_RENDITION_SIZES): long sides in pixels, each made from the next larger
    # one; () = the preview and thumbnail alone. And their formats beside JPEG.
    sizes: tuple[int, ...] = ()
    extra_formats: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.preview_long_side < 1 or self.thumb_long_side < 1:
            raise ValueError("preview and thumbnail sizes must be at least 1 pixel")
        if not 1 <= self.quality <= 100 or not 1 <= self.avif_quality <= 100:
            raise ValueError(f"quality must be between 1 and 100, got {self.quality} (AVIF {self.avif_quality})")
        if self.format not in BASE_FORMATS:
            raise ValueError(f"format must be one of {', '.join(BASE_FORMATS)}, got {self.format!r}")
        if any(size < 16 or size > 20_000 for size in self.sizes):
            raise ValueError(f"rendition sizes must be between 16 and 20000 pixels, got {self.sizes}")
        if len(set(self.sizes)) > MAX_SIZES:
            raise ValueError(f"at most {MAX_SIZES} rendition sizes, got {len(set(self.sizes))}")
        unknown = [fmt for fmt in self.extra_formats if fmt not in EXTRA_FORMATS]
        if unknown:
            raise ValueError(f"extra formats must be among {', '.join(EXTRA_FORMATS)}, got {', '.join(unknown)}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be at least 1, got {self.max_pixels}")
        ImageColor.getrgb(self.background)  # raises ValueError naming the bad colour

    def quality_for(self, fmt: str) -> int:
        """The encoder quality of `fmt`: AVIF on its own scale, JPEG and WebP on `quality`'s."""
        return self.avif_quality if fmt == "AVIF" else self.quality


@dataclass(frozen=True)
class Rendition:
    data: bytes
    width: int
    height: int
    format: str  # "JPEG" / "WEBP"
    content_type: str  # "image/jpeg" / "image/webp"


@dataclass(frozen=True)
class SizedRendition:
    """One responsive size in one format, filed under its configured size (`label`, a long side)."""

    label: int
    rendition: Rendition


@dataclass(frozen=True)
class Renditions:
    preview: Rendition
    thumbnail: Rendition
    source_width: int  # of the original, after EXIF orientation
    source_height: int
    source_format: str  # e.g. "JPEG", "PNG", "HEIF"
    # Set when the pixels look damaged although the decoder raised nothing (see truncation.py).
    warning: str | None = None
    # When and with what it was taken, from the EXIF the one open already parsed.
    capture: CaptureFacts = CaptureFacts()  # noqa: RUF009 - frozen
    # The page's placeholder, from the thumbnail before its watermark (rendering/thumbhash.py).
    thumbhash: str | None = None
    # The responsive sizes, largest first, JPEG then the extra formats of each.
    sized: tuple[SizedRendition, ...] = ()


@dataclass(frozen=True)
class _Decoded:
    """The one decode of a photo: upright, possibly reduced by JPEG draft, not yet colour-managed."""

    image: Image.Image
    source_size: tuple[int, int]  # full size of the original, after orientation
    source_format: str
    warning: str | None = None
    capture: CaptureFacts = CaptureFacts()  # noqa: RUF009 - frozen


Source = bytes | BinaryIO


def render_renditions(data: Source, options: RenderOptions = RenderOptions()) -> Renditions:
    """Render the preview and the thumbnail of one original (its bytes, or a seekable binary file
    such as a spooled download). Raises RenderError for bad input."""
    return _render(data, options, use_draft=True)


# What rendering holds at its peak, as a multiple of the decoded image (`decoded_bytes`). Measured
# as the peak RSS growth (VmHWM) of one render_renditions call in a fresh process (Pillow allocates
# with malloc, which tracemalloc does not see) by `benchmarks/memory_benchmark.py --factor`,
# Pillow 13.0, default RenderOptions (preview 1600, thumbnail 400, watermark):
#   16-bit grey PNG 10900x10900 (I;16, decoded 227 MiB):    peak +1,133 MiB  -> 5.0x
#   16-bit RGB PNG 6000x4000 (read as RGB, 69 MiB):         peak +123 MiB    -> 1.8x
#   RGBA PNG 6000x4000 (92 MiB):                            peak +298 MiB    -> 3.2x
#   JPEG 6000x4000, drafted to 3000x2000 (17 MiB):          peak +42 MiB     -> 2.5x
#   JPEG 4000x3000, drafted to 2000x1500 (9 MiB):           peak +29 MiB     -> 3.4x (fixed costs weigh)
# (re-measured after issue 7's renderer changes: no copy before encoding or watermarking, baseline
# JPEG encoding; the JPEG peaks fell from +51 and +42 MiB, the PNG ones did not move.)
# With the default responsive sizes (JPEG), the chain's images add to it: the 24-MP JPEG +65 MiB
# (3.8x), the 12-MP +35 MiB (4.1x), 6000x4000 PNGs 2.1x; the 16-bit grey PNG stays at 5.0x. The
# sizes never exceed the decode and each is at most a quarter of the one before, so they stay
# under the factor whatever is configured (24-MP PNG with a 4000 size: 2.9x).
# 16-bit samples widen to 32-bit "I" while they are scaled down to 8 bits (the 16-bit original, an
# "I" copy and the point() result are alive at once), and Pillow stores 3-band pixels in 4 bytes.
# The largest factor plus a margin, and a fixed overhead for what does not scale with the image
# (decoder tables, watermark, encoder buffers), is reserved for every photo.
WORKING_SET_FACTOR = 5.5
# Decoders and buffers that do not scale with the image (libjpeg tables, the encoders' output).
WORKING_SET_OVERHEAD_BYTES = 8 * 1024 * 1024
# What an extra format's encoder holds while it runs, per pixel of the largest responsive size: far
# more than libjpeg (`memory_benchmark.py --factor`, Pillow 13.0): AVIF (libavif/aom, speed 8, one
# thread) +74 MiB over JPEG alone for a 3-MP size, +116 for 6 MP, +202 for 10.7 MP; WebP +8, +25,
# +26. One encoder runs at a time, so the dearest format configured is what is reserved.
ENCODER_BYTES_PER_PIXEL: dict[str, int] = {"AVIF": 25, "WEBP": 5}


@dataclass(frozen=True)
class MemoryEstimate:
    """What decoding one original will take, known from its header alone."""

    width: int  # as decoded: after JPEG draft scaling, before EXIF rotation
    height: int
    mode: str  # Pillow's mode of the decoded image, e.g. "RGB", "I;16"
    bands: int
    bytes_per_sample: int
    decoded_bytes: int  # width x height x bytes per sample x bands
    working_bytes: int  # what to reserve: decoded_bytes x WORKING_SET_FACTOR + overhead + extra encoders

    def describe(self) -> str:
        return (
            f"{self.width}x{self.height} {self.mode} decodes to {_mebibytes(self.decoded_bytes)} MiB "
            f"and renders in about {_mebibytes(self.working_bytes)} MiB"
        )


def decoded_bytes(width: int, height: int, mode: str) -> tuple[int, int, int]:
    """(bands, bytes per sample, decoded bytes) of an image of this size and Pillow mode."""
    image_mode = ImageMode.getmode(mode)
    bands = len(image_mode.bands)
    # typestr is a numpy-style type such as "|u1" or "<u2"; "|b1" (mode "1") is a byte a pixel too.
    bytes_per_sample = max(1, int(image_mode.typestr[-1]))
    return bands, bytes_per_sample, width * height * bands * bytes_per_sample


def working_set_bytes(decoded: int, encoder_bytes: int = 0) -> int:
    return int(decoded * WORKING_SET_FACTOR) + WORKING_SET_OVERHEAD_BYTES + encoder_bytes


def extra_encoder_bytes(decoded_size: tuple[int, int], options: RenderOptions) -> int:
    """What the dearest extra format's encoder needs for the largest responsive size of a photo
    whose decode is `decoded_size` (the sizes never exceed the decode); 0 without extra formats."""
    per_pixel = max((ENCODER_BYTES_PER_PIXEL[fmt] for fmt in options.extra_formats), default=0)
    if not per_pixel or not options.sizes:
        return 0
    width, height = fit_long_side(decoded_size, max(options.sizes))
    return per_pixel * width * height


def estimate_memory(data: Source, options: RenderOptions = RenderOptions()) -> MemoryEstimate:
    """The memory rendering this original will need, from its header only (no pixel is decoded).

    JPEGs are estimated at the size their draft decode will have, which is what rendering asks
    for. Raises RenderError for what rendering would refuse anyway (not an image, over max_pixels).
    """
    with _decode_errors_as_render_errors(), _open(data) as opened:
        _check_pixel_limit(opened.size, options.max_pixels)
        _request_draft(opened, fit_long_side(opened.size, options.preview_long_side))
        width, height = opened.size
        mode = opened.mode
    bands, bytes_per_sample, decoded = decoded_bytes(width, height, mode)
    return MemoryEstimate(
        width=width,
        height=height,
        mode=mode,
        bands=bands,
        bytes_per_sample=bytes_per_sample,
        decoded_bytes=decoded,
        working_bytes=working_set_bytes(decoded, extra_encoder_bytes((width, height), options)),
    )


def _open(data: Source) -> Image.Image:
    """Image.open on bytes or a file, refusing an empty one; reads the header only."""
    if isinstance(data, bytes | bytearray | memoryview):
        if not data:
            raise RenderError("empty file (0 bytes)")
        stream: BinaryIO = io.BytesIO(data)
    else:
        stream = data
        if stream.seek(0, io.SEEK_END) == 0:
            raise RenderError("empty file (0 bytes)")
        stream.seek(0)
    try:
        return Image.open(stream, formats=SOURCE_FORMATS)
    except UnidentifiedImageError as exc:
        stream.seek(0)
        raise _unidentified(stream.read(_SIGNATURE_BYTES)) from exc


# How the files of each source format begin (offset, bytes), to name what a file that does not
# open claims to be: a cut TIFF (its directory at the end) or a cut AVIF is damaged, not "not an image".
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"GIF8", "GIF"),
    (8, b"WEBP", "WebP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"BM", "BMP"),
    (4, b"ftypavi", "AVIF"),
    (4, b"ftyphei", "HEIC"),
    (4, b"ftyphev", "HEIC"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypmsf1", "HEIF"),
)
_SIGNATURE_BYTES = 16


def _unidentified(head: bytes) -> RenderError:
    claimed = next((name for offset, magic, name in _SIGNATURES if head[offset : offset + len(magic)] == magic), None)
    if claimed is not None:
        return RenderError(f"file is truncated or corrupt: Pillow cannot read the header of this file ({claimed}, by its first bytes)")
    return RenderError(
        f"not an image Pillow can read (cannot identify image file); supported formats: {', '.join(SOURCE_FORMATS)}",
        FailureKind.UNSUPPORTED,
    )


def _mebibytes(nbytes: int) -> str:
    return f"{nbytes / (1024 * 1024):,.0f}"


def render_options_from_settings(render: RenderSettings) -> RenderOptions:
    """RenderOptions from the configured settings; reads the watermark logo file if one is set.

    Raises SettingsError (a ValueError) when a value is unusable, e.g. a logo that is not an image.
    """
    logo_png = _read_logo(render.watermark_logo_path) if render.watermark_logo_path else None
    try:
        watermark = WatermarkOptions(
            text=render.watermark_text,
            logo_png=logo_png,
            opacity=render.watermark_opacity,
            position=render.watermark_position,
            scale=render.watermark_scale,
        )
        return RenderOptions(
            preview_long_side=render.preview_long_side,
            thumb_long_side=render.thumb_long_side,
            quality=render.quality,
            avif_quality=render.avif_quality,
            format=render.format,
            watermark=watermark if watermark.is_visible else None,
            background=render.background,
            max_pixels=render.max_pixels,
            keep_gps=render.store_gps,
            sizes=render.sizes,
            extra_formats=render.extra_formats,
        )
    except ValueError as exc:
        raise SettingsError(f"render settings: {exc}") from exc


def _read_logo(logo_path: Path) -> bytes:
    try:
        logo_png = Path(logo_path).read_bytes()
    except OSError as exc:
        raise SettingsError(f"watermark logo {logo_path} cannot be read: {exc.strerror or exc}") from exc
    try:
        # Fail at start-up on a bad logo, not on every photo of the run.
        decode_logo(logo_png)
    except ValueError as exc:
        raise SettingsError(f"watermark logo {logo_path}: {exc}") from exc
    return logo_png


def _render(data: Source, options: RenderOptions, *, use_draft: bool) -> Renditions:
    """The rendering itself; `use_draft=False` exists only so the benchmark can show what draft saves."""
    decoded = _decode(data, options, use_draft=use_draft)
    plan = _plan(decoded.source_size, decoded.image.size, options)
    images = _resized(decoded.image, plan, options.background)
    thumbnail = images[plan.thumbnail]
    # Before the watermark: the mark is noise in a 100-pixel sketch.
    placeholder = thumbhash_of(thumbnail)
    # Every image belongs to this call alone (fresh from the decode or a resize, and all resizes
    # are made before any mark), so each is marked and stripped of metadata in place, once.
    for size, image in images.items():
        images[size] = _watermarked(image, options)
    encoded: dict[tuple[tuple[int, int], str], Rendition] = {}

    def rendition(size: tuple[int, int], fmt: str) -> Rendition:
        # A size shared by the preview or thumbnail (the default 1600 and 400) is encoded once.
        if (size, fmt) not in encoded:
            encoded[size, fmt] = _encode(images[size], fmt, options.quality_for(fmt))
        return encoded[size, fmt]

    formats = ("JPEG", *(fmt for fmt in options.extra_formats if fmt != "JPEG"))
    return Renditions(
        preview=rendition(plan.preview, options.format),
        thumbnail=rendition(plan.thumbnail, options.format),
        source_width=decoded.source_size[0],
        source_height=decoded.source_size[1],
        source_format=decoded.source_format,
        warning=decoded.warning,
        capture=decoded.capture,
        thumbhash=placeholder,
        sized=tuple(SizedRendition(target.label, rendition(target.size, fmt)) for target in plan.sized for fmt in formats),
    )


@dataclass(frozen=True)
class _Plan:
    """The sizes one photo is rendered at: the preview, the thumbnail, the responsive sizes, and
    the chain of distinct sizes (largest first) each resized from the one before."""

    preview: tuple[int, int]
    thumbnail: tuple[int, int]
    sized: list[SizedTarget]
    chain: list[tuple[int, int]]


def _plan(source: tuple[int, int], decoded: tuple[int, int], options: RenderOptions) -> _Plan:
    """`source`: the original's upright size; `decoded`: what the one decode holds (a JPEG is
    drafted to cover the preview, by 1/2, 1/4 or 1/8). The sizes are made from the decode the
    preview needs, not a larger one: a size larger than the decode gets the decode's own size
    (the renditions table records it). A 12-MP JPEG's decode is 2000x1500; a full decode for a
    2400 rendition would cost three times the base pair (`render_benchmark.py --sizes`)."""
    preview = fit_long_side(source, options.preview_long_side)
    thumbnail = fit_long_side(preview, options.thumb_long_side)
    sized = planned_sizes(decoded, options.sizes)
    return _Plan(preview, thumbnail, sized, resize_chain([preview, thumbnail, *(t.size for t in sized)]))


def _resized(decoded: Image.Image, plan: _Plan, background: str) -> dict[tuple[int, int], Image.Image]:
    """Each size of the chain, the first from the decode (made sRGB), every other from the one
    before it: small resizes of already small images."""
    images: dict[tuple[int, int], Image.Image] = {}
    previous: Image.Image | None = None
    for size in plan.chain:
        if previous is None:
            current = _preview(decoded, size, background)
        else:
            current = _fit(previous, size, *_step_filter(size, plan))
        images[size] = current
        previous = current
    return images


def _step_filter(size: tuple[int, int], plan: _Plan) -> tuple[Image.Resampling, float]:
    """The filter and reducing gap of the chain's step to `size`."""
    if size == plan.preview:
        return PREVIEW_FILTER, REDUCING_GAP
    if size == plan.thumbnail:
        return THUMB_FILTER, THUMB_REDUCING_GAP
    return PREVIEW_FILTER, CHAIN_REDUCING_GAP


# Modes whose embedded profile is applied after the resize rather than before (see _preview).
_PROFILE_AFTER_RESIZE_MODES = frozenset({"RGB", "L", "CMYK"})


def _preview(decoded: Image.Image, size: tuple[int, int], background: str) -> Image.Image:
    """The decoded image as an 8-bit sRGB RGB preview of `size`.

    A camera profile's transform (Display P3 from phones, Adobe RGB) costs as much as the resize
    itself (44 ms on a 2000x1500 decode), so for a plain 8-bit image with a profile it runs on the
    preview, after the resize, as libvips's thumbnail does. Everything else (16-bit, alpha,
    palettes) is made sRGB first: resizing those needs the conversion first.
    """
    if _profile_after_resize(decoded):
        return _to_srgb(_fit(decoded, size, PREVIEW_FILTER, REDUCING_GAP), background)
    return _fit(_to_srgb(decoded, background), size, PREVIEW_FILTER, REDUCING_GAP)


def _profile_after_resize(image: Image.Image) -> bool:
    return (
        image.mode in _PROFILE_AFTER_RESIZE_MODES
        and "transparency" not in image.info
        and bool(image.info.get("icc_profile"))
    )


@contextmanager
def _decode_errors_as_render_errors() -> Iterator[None]:
    """What the decoders raise for bad input, as the one RenderError an operator reads; nothing
    else is caught, so a bug still surfaces as itself."""
    try:
        yield
    except RenderError:
        raise
    except Image.DecompressionBombError as exc:
        raise RenderError(_pillow_bomb_message(exc), FailureKind.TOO_LARGE) from exc
    except DECODE_ERRORS as exc:
        raise _corrupt(exc) from exc


def _decode(data: Source, options: RenderOptions, *, use_draft: bool = True) -> _Decoded:
    """Decode once, upright, checking the header's pixel count before any pixel is decoded."""
    with _decode_errors_as_render_errors(), _open(data) as opened:
        stored_size = opened.size
        _check_pixel_limit(stored_size, options.max_pixels)
        exif = opened.getexif()
        orientation = _orientation(exif)
        capture = capture_facts(exif, keep_gps=options.keep_gps)
        if use_draft:
            _request_draft(opened, fit_long_side(stored_size, options.preview_long_side))
        _load(opened)
        source_format = _source_format(opened)
        # Before rotation, so the image's last row is the last row of the data.
        warning = _truncation_warning(opened, source_format, data)
        image = _upright(opened)
    if orientation in TRANSPOSING_ORIENTATIONS:
        stored_size = (stored_size[1], stored_size[0])
    return _Decoded(image=image, source_size=stored_size, source_format=source_format, warning=warning, capture=capture)


def _load(opened: Image.Image) -> None:
    try:
        opened.load()
    except FORMAT_DECODE_ERRORS.get(opened.format or "", ()) as exc:
        raise _corrupt(exc) from exc


def _truncation_warning(image: Image.Image, source_format: str, data: Source) -> str | None:
    """What truncation.py finds that the decoder passed over in silence: certain damage fails
    the photo (RenderError), likely damage is returned as the photo's warning."""
    found = find_truncation(image, source_format, data)
    if found is None:
        return None
    if found.certain:
        raise RenderError(found.message)
    return found.message


def _check_pixel_limit(size: tuple[int, int], max_pixels: int) -> None:
    pixels = size[0] * size[1]
    if pixels > max_pixels:
        raise RenderError(
            f"image is {size[0]}x{size[1]} = {_megapixels(pixels)} megapixels, "
            f"above the limit of {_megapixels(max_pixels)} megapixels",
            FailureKind.TOO_LARGE,
        )


def _pillow_bomb_message(exc: Image.DecompressionBombError) -> str:
    # Pillow refuses before we see the size; its message carries the pixel counts.
    counts = re.findall(r"(\d+) pixels", str(exc))
    if len(counts) == 2:
        pixels, limit = (int(count) for count in counts)
        return (
            f"image is {_megapixels(pixels)} megapixels, "
            f"above Pillow's decompression-bomb limit of {_megapixels(limit)} megapixels"
        )
    return f"image is too large to decode safely ({exc})"


def _megapixels(pixels: int) -> str:
    megapixels = pixels / 1_000_000
    return f"{megapixels:.0f}" if megapixels >= 10 else f"{megapixels:.1f}"


def _orientation(exif: Image.Exif) -> int:
    value = exif.get(EXIF_ORIENTATION_TAG, 1)
    return value if isinstance(value, int) else 1


def _request_draft(image: Image.Image, target: tuple[int, int]) -> None:
    """Let the JPEG decoder scale by 1/2, 1/4 or 1/8 while the result stays >= target.

    `target` is in stored (pre-rotation) orientation: rotation swaps the sides but keeps the long
    side long, so fitting the stored size to the long side asks for the right scale either way.
    A no-op for every format but JPEG.
    """
    if image.format not in ("JPEG", "MPO"):
        return
    scale = draft_scale(image.size, target)
    # Pillow picks the largest power of two <= min(stored // requested) per side, and that floor
    # misses a scale whose rounded-up output still covers the target (3199 px -> 1600 at 1/2). Asking
    # for stored // scale makes its quotient land in [scale, 2 * scale), so it picks exactly `scale`.
    image.draft(None, (max(1, image.width // scale), max(1, image.height // scale)))


# The scales libjpeg decodes at directly (it can do any n/8, but Pillow asks only for these).
DRAFT_SCALES: tuple[int, ...] = (8, 4, 2, 1)


def draft_scale(stored_size: tuple[int, int], target: tuple[int, int]) -> int:
    """The largest JPEG DCT scale (1/8, 1/4, 1/2 or 1) whose decode still covers `target`.

    libjpeg rounds a scaled side up (ceil(side / scale)), so that is the size that must cover it.
    """
    for scale in DRAFT_SCALES:
        if all(-(-side // scale) >= wanted for side, wanted in zip(stored_size, target, strict=True)):
            return scale
    return 1


def _source_format(image: Image.Image) -> str:
    # MPO is what Pillow calls a camera JPEG carrying extra (preview/depth) images.
    return "JPEG" if image.format == "MPO" else (image.format or "unknown")


def _upright(image: Image.Image) -> Image.Image:
    # In place: after the decode no second full-size copy is needed.
    ImageOps.exif_transpose(image, in_place=True)
    return image


def _to_srgb(image: Image.Image, background: str) -> Image.Image:
    """8-bit sRGB RGB: bit depth scaled, ICC profile applied, transparency flattened."""
    icc_profile = image.info.get("icc_profile")
    colour, alpha = _split_alpha(_eight_bit(image))
    rgb = _profile_to_srgb(colour, icc_profile) if icc_profile else None
    if rgb is None:
        # convert() copies even to the same mode: a needless 24 MB for a 6-MP decode.
        rgb = colour if colour.mode == "RGB" else colour.convert("RGB")
    return _flatten(rgb, alpha, background) if alpha is not None else rgb


def _eight_bit(image: Image.Image) -> Image.Image:
    """One of L, LA, RGB, RGBA or CMYK, with 16-bit samples scaled down rather than clipped."""
    if image.mode in SIXTEEN_BIT_MODES:
        # Pillow's own conversion clips everything above 255 to white. 32-bit "I" is taken to hold
        # 16-bit samples, which is what PNG and TIFF decoders put there.
        return image.convert("I").point(lambda value: value * 255 / 65535 + 0.5).convert("L")
    if image.mode in ("L", "LA", "RGB", "RGBA", "CMYK") and "transparency" not in image.info:
        return image
    if image.mode == "F":
        return image.convert("L")
    if "transparency" in image.info or image.mode in ("PA", "La", "RGBa"):
        return image.convert("RGBA")
    if image.mode == "1":
        return image.convert("L")
    return image.convert("RGB")


def _split_alpha(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    if image.mode == "RGBA":
        return image.convert("RGB"), image.getchannel("A")
    if image.mode == "LA":
        return image.convert("L"), image.getchannel("A")
    return image, None


def _profile_to_srgb(image: Image.Image, icc_profile: bytes) -> Image.Image | None:
    """Convert through the embedded profile; None when the profile is sRGB, broken or mismatched.

    A broken or mismatched profile is not worth failing a photo over: the pixels are then taken
    as sRGB, which is what a browser would do with them.
    """
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        if ImageCms.getProfileDescription(source).strip().lower().startswith("srgb"):
            return None
        # A fresh sRGB profile per call: LittleCMS objects are not shared between threads.
        return ImageCms.profileToProfile(
            image,
            source,
            ImageCms.createProfile("sRGB"),
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            outputMode="RGB",
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def _flatten(rgb: Image.Image, alpha: Image.Image, background: str) -> Image.Image:
    flat = Image.new("RGB", rgb.size, ImageColor.getrgb(background)[:3])
    flat.paste(rgb, (0, 0), alpha)
    return flat


def _fit(
    image: Image.Image, size: tuple[int, int], resample: Image.Resampling, reducing_gap: float
) -> Image.Image:
    if image.size == size:
        return image
    return image.resize(size, resample, reducing_gap=reducing_gap)


def _watermarked(image: Image.Image, options: RenderOptions) -> Image.Image:
    """The image with the mark blended in place: callers pass only images they own."""
    if options.watermark is None:
        return image
    return apply_watermark(image, options.watermark, in_place=True)


def _encode(image: Image.Image, fmt: str, quality: int) -> Rendition:
    """Encode an image this render owns; its `info` is emptied rather than the pixels copied."""
    # Decoded EXIF (GPS, camera serials) and ICC data ride along in `info`; none may leave.
    image.info = {}
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(
            buffer,
            "JPEG",
            quality=quality,
            optimize=JPEG_OPTIMIZE,
            progressive=JPEG_PROGRESSIVE,
            subsampling=JPEG_SUBSAMPLING,
        )
    elif fmt == "AVIF":
        image.save(buffer, "AVIF", quality=quality, speed=AVIF_SPEED, max_threads=AVIF_THREADS)
    else:
        image.save(buffer, "WEBP", quality=quality)
    return Rendition(
        data=buffer.getvalue(),
        width=image.width,
        height=image.height,
        format=fmt,
        content_type=OUTPUT_FORMATS[fmt],
    )
