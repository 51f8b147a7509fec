"""Issue 18 item 4: originals whose data ends before their image does, in every accepted format,
through the real renderer. They fail with a reason that says so, or, where the pixels could be
real, complete flagged; none completes in silence. Valid files are cut at several points, and cut
files are closed again so that their container looks whole (truncated_files.py)."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable
from functools import cache

import pytest
from PIL import Image, ImageDraw

from photo_pipeline.cli import samples
from photo_pipeline.rendering.render import RenderError, RenderOptions, render_renditions
from photo_pipeline.rendering.truncation import find_truncation, png_inflated_bytes
from photo_pipeline_tests.rendering.truncated_files import (
    HEIGHT,
    avif_item_cut,
    cut,
    deflate_tiff,
    encoded,
    gif_cut_and_closed,
    heic_slice_cut,
    interlaced_png_first_pass,
    png_header_10000_square_with_10_rows,
    png_of_rows,
    scene,
    webp_cut_and_closed,
)

OPTIONS = RenderOptions(preview_long_side=320, thumb_long_side=80)

# Every accepted format (render.SOURCE_FORMATS), and the variants whose decoders differ.
ORIGINALS: dict[str, Callable[[], bytes]] = {
    "JPEG": lambda: encoded("JPEG", quality=90),
    "PNG": lambda: encoded("PNG"),
    "WEBP-lossy": lambda: encoded("WEBP", quality=80),
    "WEBP-lossless": lambda: encoded("WEBP", lossless=True),
    "TIFF": lambda: encoded("TIFF"),
    "TIFF-deflate": lambda: encoded("TIFF-deflate"),
    "TIFF-lzw": lambda: encoded("TIFF", compression="tiff_lzw"),  # libtiff writes its directory last
    "GIF": lambda: encoded("GIF"),
    "BMP": lambda: encoded("BMP"),
    "HEIF": lambda: encoded("HEIF"),
    "AVIF": lambda: encoded("AVIF", quality=60),
}
CUTS = (0.1, 0.5, 0.9, 0.98)


@cache
def original(name: str) -> bytes:
    return ORIGINALS[name]()


def render_error(data: bytes) -> RenderError:
    with pytest.raises(RenderError) as caught:
        render_renditions(data, OPTIONS)
    return caught.value


@pytest.mark.parametrize("name", ORIGINALS)
def test_every_format_renders_whole_without_a_flag(name: str) -> None:
    renditions = render_renditions(original(name), OPTIONS)

    assert renditions.warning is None
    assert (renditions.source_width, renditions.source_height) == (640, 480)


@pytest.mark.parametrize("fraction", CUTS)
@pytest.mark.parametrize("name", ORIGINALS)
def test_a_file_that_stops_early_fails_as_truncated(name: str, fraction: float) -> None:
    error = render_error(cut(original(name), fraction))

    assert str(error).startswith("file is truncated or corrupt: "), str(error)
    assert "0x" not in str(error)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            lambda: png_of_rows(scene(), 100),
            "the PNG's image data ends after 100 of its 480 rows (192,100 of 922,080 bytes once inflated), "
            "although its header says 640x480: the file is truncated",
        ),
        (lambda: png_of_rows(scene().convert("RGBA"), 1), "the PNG's image data ends after 1 of its 480 rows"),
        (lambda: png_of_rows(scene().convert("L"), 479), "the PNG's image data ends after 479 of its 480 rows"),
        (lambda: interlaced_png_first_pass(scene()), "the PNG's image data ends after 2% of its interlaced image data"),
        (lambda: gif_cut_and_closed(original("GIF"), 0.5), "file is truncated or corrupt: image file is truncated"),
        (lambda: webp_cut_and_closed(original("WEBP-lossy"), 0.5), "file is truncated or corrupt: "),
        (lambda: webp_cut_and_closed(original("WEBP-lossless"), 0.9), "file is truncated or corrupt: "),
        (lambda: deflate_tiff(scene(), last_strip_rows=10), "file is truncated or corrupt: "),
        (lambda: avif_item_cut(original("AVIF"), 0.5), "file is truncated or corrupt: Failed to decode frame 0"),
    ],
    ids=["png-rgb", "png-rgba-1-row", "png-grey-479-rows", "png-interlaced", "gif", "webp-lossy", "webp-lossless", "tiff-deflate", "avif"],
)
def test_a_cut_file_closed_again_still_fails_with_the_reason(make: Callable[[], bytes], reason: str) -> None:
    """The container is whole (end markers, lengths and checksums rewritten), the image data is
    not: decoders that stop at their stream's end without complaint are caught all the same."""
    assert str(render_error(make())).startswith(reason)


def test_the_probes_10000_pixel_square_png_of_a_few_hundred_bytes_fails() -> None:
    """Issue 18's probe: it used to complete as a black 10000x10000 photo with renditions."""
    data = png_header_10000_square_with_10_rows()
    assert len(data) < 400

    error = render_error(data)

    assert str(error) == (
        "the PNG's image data ends after 10 of its 10000 rows (100,010 of 100,010,000 bytes once inflated), "
        "although its header says 10000x10000: the file is truncated (the rest would render as empty pixels)"
    )


def test_a_truncated_jpeg_closed_with_its_end_marker_is_flagged() -> None:
    renditions = render_renditions(samples.truncated_jpeg_with_eoi(), OPTIONS)

    assert renditions.warning is not None and "probably truncated" in renditions.warning


@pytest.mark.parametrize(("fraction", "share", "rows"), [(0.3, "73%", 352), (0.7, "33%", 160)])
def test_an_heic_whose_slice_is_cut_is_flagged_with_the_green_it_decodes_to(fraction: float, share: str, rows: int) -> None:
    """libde265 decodes what is there and leaves the rest at YCbCr zero; libheif reports nothing."""
    renditions = render_renditions(heic_slice_cut(original("HEIF"), fraction), OPTIONS)

    assert renditions.warning == (
        f"the bottom {share} of the decoded image ({rows} of {HEIGHT} rows) is flat "
        "green (0, 136, 0), which is how libde265 leaves an HEVC picture whose data ends early: the file is probably truncated"
    )


def test_an_heic_cut_in_its_last_blocks_decodes_to_noise_that_is_not_flagged() -> None:
    """A known limit, pinned so that a change is noticed: cut close to its end, the slice's last
    blocks decode from whatever CABAC reads past it (not flat), and nothing tells them apart.
    (A plain cut, what an interrupted upload leaves, fails: see the parametrized test above.)"""
    renditions = render_renditions(heic_slice_cut(original("HEIF"), 0.98), OPTIONS)

    assert renditions.warning is None


def test_a_whole_png_that_ends_in_black_rows_completes_unflagged() -> None:
    """What the PNG check reads the data again for: a last row of zeros may be a real photo's."""
    image = scene()
    ImageDraw.Draw(image).rectangle((0, 400, 639, 479), fill=(0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")

    renditions = render_renditions(buffer.getvalue(), OPTIONS)

    assert renditions.warning is None


class _NoReads(io.BytesIO):
    def read(self, size: int | None = -1) -> bytes:
        raise AssertionError("the original was read again")


def test_a_png_whose_last_row_has_any_colour_is_not_read_again() -> None:
    data = original("PNG")
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert find_truncation(image, "PNG", _NoReads(data)) is None


def test_counting_a_pngs_inflated_data_holds_a_bounded_buffer() -> None:
    """The check inflates in 64 KiB steps and keeps none of it: tens of megabytes of image data
    pass through well under a mebibyte of Python allocations (the pixels are Pillow's and are
    held by the decode anyway)."""
    image = Image.new("RGB", (4000, 3000), (0, 0, 0))
    ImageDraw.Draw(image).rectangle((0, 0, 3999, 100), fill=(90, 140, 200))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    data = buffer.getvalue()

    tracemalloc.start()
    try:
        found = png_inflated_bytes(io.BytesIO(data))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert found is not None
    header, inflated = found
    assert inflated == header.data_bytes() == 3000 * (1 + 4000 * 3)
    assert peak < 1024 * 1024, f"{peak:,} bytes"
