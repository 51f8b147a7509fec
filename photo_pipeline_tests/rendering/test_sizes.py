"""The responsive sizes: which sizes a photo gets (pure), and the renderer making them in every
format from one decode, without metadata."""

from __future__ import annotations

import io
import math

import pytest
from PIL import Image, ImageChops, ImageStat

from photo_pipeline.cli import samples
from photo_pipeline.rendering.render import RenderOptions, render_renditions
from photo_pipeline.rendering.sizes import MAX_SIZES, SizedTarget, planned_sizes, resize_chain
from photo_pipeline.storage import keys


def test_planned_sizes_are_long_sides_never_upscaled_with_the_photo_once_under_the_smallest_size_it_cannot_fill() -> None:
    assert planned_sizes((4000, 3000), (800, 400, 1600)) == [
        SizedTarget(1600, (1600, 1200)), SizedTarget(800, (800, 600)), SizedTarget(400, (400, 300)),
    ]
    # A portrait fits the same boxes: its 800 is 600x800, not 800 wide.
    assert planned_sizes((3000, 4000), (800, 400, 1600)) == [
        SizedTarget(1600, (1200, 1600)), SizedTarget(800, (600, 800)), SizedTarget(400, (300, 400)),
    ]
    assert planned_sizes((1000, 1500), (400, 800, 1600, 2400)) == [
        SizedTarget(1600, (1000, 1500)), SizedTarget(800, (533, 800)), SizedTarget(400, (267, 400)),
    ]
    assert planned_sizes((300, 200), (400, 800)) == [SizedTarget(400, (300, 200))]
    assert planned_sizes((300, 200), ()) == []


def test_the_chain_is_distinct_sizes_largest_first() -> None:
    assert resize_chain([(400, 300), (1600, 1200), (800, 600), (1600, 1200)]) == [(1600, 1200), (800, 600), (400, 300)]


def test_sized_keys() -> None:
    import uuid

    album, photo = uuid.uuid4(), uuid.uuid4()
    key = keys.sized_key(album, photo, 800, "AVIF")
    assert key == f"processed/800/{album}/{photo}.avif" and keys.is_sized_key(key)
    assert not keys.is_sized_key(keys.thumb_key(album, photo, "JPEG")) and not keys.is_sized_key(f"processed/8x/{album}/a.jpg")
    assert keys.sized_prefixes_in_key_order([800, 1600, 400]) == ["processed/1600/", "processed/400/", "processed/800/"]


@pytest.mark.parametrize("extra", [(), ("WEBP",), ("AVIF",), ("WEBP", "AVIF")])
def test_every_size_in_every_format_from_one_decode_without_metadata(extra: tuple[str, ...]) -> None:
    photo = samples.photo_jpeg(1200, 900, with_gps=True)
    options = RenderOptions(preview_long_side=600, thumb_long_side=100, sizes=(200, 400, 2400), extra_formats=extra, keep_gps=True)
    renditions = render_renditions(photo, options)
    formats = ("JPEG", *extra)
    got = [(s.label, s.rendition.format, s.rendition.width, s.rendition.height) for s in renditions.sized]
    # 2400 cannot be filled: the decode's own size, under 2400 (the JPEG is drafted to 1/2, 600x450,
    # which covers the 600 preview).
    expected = [(label, fmt, width, height) for label, width, height in ((2400, 600, 450), (400, 400, 300), (200, 200, 150)) for fmt in formats]
    assert got == expected
    assert renditions.capture.gps_latitude is not None, "the row may get GPS; the files never"
    for sized in renditions.sized:
        with Image.open(io.BytesIO(sized.rendition.data)) as image:
            assert image.format == sized.rendition.format and image.size == (sized.rendition.width, sized.rendition.height)
            assert not image.getexif() and "exif" not in image.info and "xmp" not in image.info
        assert b"PhotoPipeline" not in sized.rendition.data and b"GPS" not in sized.rendition.data


def test_sizes_beyond_the_preview_decode_get_the_decodes_size() -> None:
    # A 12-MP-like JPEG drafts to 1/2 for a 1600 preview: 2400 gets the 2000x1500 decode, no full decode.
    renditions = render_renditions(samples.photo_jpeg(4000, 3000), RenderOptions(sizes=(800, 2400)))
    assert [(s.label, s.rendition.width, s.rendition.height) for s in renditions.sized] == [(2400, 2000, 1500), (800, 800, 600)]
    assert (renditions.preview.width, renditions.thumbnail.width) == (1600, 400)


def test_a_portraits_default_sizes_line_up_with_its_preview_and_thumbnail() -> None:
    # EXIF 6: stored 4000x3000, upright 3000x4000. The default 1600 is the preview's own file and
    # 400 the thumbnail's, as for a landscape: no size of its own but the decode's 1500x2000.
    renditions = render_renditions(samples.photo_jpeg(4000, 3000, orientation=6), RenderOptions(sizes=(400, 800, 1600, 2400)))
    assert [(s.label, s.rendition.width, s.rendition.height) for s in renditions.sized] == [
        (2400, 1500, 2000), (1600, 1200, 1600), (800, 600, 800), (400, 300, 400),
    ]
    by_label = {s.label: s.rendition for s in renditions.sized}
    assert by_label[1600] is renditions.preview and by_label[400] is renditions.thumbnail, "encoded once, shared"


def test_sizes_leave_the_preview_and_thumbnail_pixels_as_they_were() -> None:
    # The preview and thumbnail keep their own filters wherever they fall in the chain.
    photo = samples.photo_jpeg(4000, 3000, seed=2)
    alone = render_renditions(photo, RenderOptions())
    with_sizes = render_renditions(photo, RenderOptions(sizes=(400, 800, 1600, 2400)))
    assert with_sizes.preview.data == alone.preview.data
    assert with_sizes.thumbnail.data == alone.thumbnail.data


def test_render_options_refuse_more_sizes_than_the_cap() -> None:
    assert len(RenderOptions(sizes=tuple(range(100, 1100, 100))).sizes) == MAX_SIZES
    with pytest.raises(ValueError, match="at most 10 rendition sizes, got 11"):
        RenderOptions(sizes=tuple(range(100, 1200, 100)))


def test_without_sizes_the_base_pair_is_what_it_was() -> None:
    renditions = render_renditions(samples.photo_jpeg(800, 600), RenderOptions(preview_long_side=400, thumb_long_side=100))
    assert renditions.sized == ()
    assert (renditions.preview.width, renditions.preview.height, renditions.thumbnail.width) == (400, 300, 100)


def zone_plate_jpeg(width: int, height: int) -> bytes:
    """Rings whose frequency rises towards the edges: the content on which a box filter aliases."""
    centre_x, centre_y = width / 2, height / 2
    rings = bytes(
        int(127.5 + 127.5 * math.cos(math.pi * ((x - centre_x) ** 2 + (y - centre_y) ** 2) / (2 * width)))
        for y in range(height)
        for x in range(width)
    )
    buffer = io.BytesIO()
    Image.frombytes("L", (width, height), rings).convert("RGB").save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


@pytest.mark.parametrize("sizes", [(), (200, 400, 800)])
def test_the_thumbnail_does_not_alias_with_or_without_sizes(sizes: tuple[int, ...]) -> None:
    # The thumbnail is a 4x reduction of the preview: reduce by 2, then Lanczos (THUMB_REDUCING_GAP).
    # A straight box reduction by 4 (what the sizes' chain does for its own steps) turns fine rings
    # into moire: RMS 11.7 grey levels from a float Lanczos reduction of the same preview, against 4.3.
    options = RenderOptions(preview_long_side=800, thumb_long_side=200, watermark=None, quality=95, sizes=sizes)
    renditions = render_renditions(zone_plate_jpeg(1600, 1200), options)
    with Image.open(io.BytesIO(renditions.preview.data)) as preview, Image.open(io.BytesIO(renditions.thumbnail.data)) as thumbnail:
        grey_thumbnail = thumbnail.convert("L")
        reference = preview.convert("F").resize(grey_thumbnail.size, Image.Resampling.LANCZOS).convert("L")
    assert ImageStat.Stat(ImageChops.difference(grey_thumbnail, reference)).rms[0] < 7
