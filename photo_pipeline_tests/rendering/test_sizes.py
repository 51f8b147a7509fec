"""The responsive sizes: which widths a photo gets (pure), and the renderer making them in every
format from one decode, without metadata."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from photo_pipeline.cli import samples
from photo_pipeline.rendering.render import RenderOptions, render_renditions
from photo_pipeline.rendering.sizes import SizedTarget, planned_widths, resize_chain
from photo_pipeline.storage import keys


def test_planned_widths_never_upscale_and_file_the_photo_once_under_the_smallest_width_it_cannot_fill() -> None:
    assert planned_widths((4000, 3000), (800, 400, 1600)) == [
        SizedTarget(1600, (1600, 1200)), SizedTarget(800, (800, 600)), SizedTarget(400, (400, 300)),
    ]
    assert planned_widths((1000, 1500), (400, 800, 1600, 2400)) == [
        SizedTarget(1600, (1000, 1500)), SizedTarget(800, (800, 1200)), SizedTarget(400, (400, 600)),
    ]
    assert planned_widths((300, 200), (400, 800)) == [SizedTarget(400, (300, 200))]
    assert planned_widths((300, 200), ()) == []


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
def test_every_width_in_every_format_from_one_decode_without_metadata(extra: tuple[str, ...]) -> None:
    photo = samples.photo_jpeg(1200, 900, with_gps=True)
    options = RenderOptions(preview_long_side=600, thumb_long_side=100, widths=(200, 400, 2400), extra_formats=extra, keep_gps=True)
    renditions = render_renditions(photo, options)
    formats = ("JPEG", *extra)
    got = [(s.label, s.rendition.format, s.rendition.width, s.rendition.height) for s in renditions.sized]
    # 2400 cannot be filled: the decode's own width, under 2400 (the JPEG is drafted to 1/2, 600x450,
    # which covers the 600 preview).
    expected = [(label, fmt, width, height) for label, width, height in ((2400, 600, 450), (400, 400, 300), (200, 200, 150)) for fmt in formats]
    assert got == expected
    assert renditions.capture.gps_latitude is not None, "the row may get GPS; the files never"
    for sized in renditions.sized:
        with Image.open(io.BytesIO(sized.rendition.data)) as image:
            assert image.format == sized.rendition.format and image.size == (sized.rendition.width, sized.rendition.height)
            assert not image.getexif() and "exif" not in image.info and "xmp" not in image.info
        assert b"PhotoPipeline" not in sized.rendition.data and b"GPS" not in sized.rendition.data


def test_widths_beyond_the_preview_decode_get_the_decodes_width() -> None:
    # A 12-MP-like JPEG drafts to 1/2 for a 1600 preview: 2400 gets the 2000-wide decode, no full decode.
    renditions = render_renditions(samples.photo_jpeg(4000, 3000), RenderOptions(widths=(800, 2400)))
    assert [(s.label, s.rendition.width) for s in renditions.sized] == [(2400, 2000), (800, 800)]
    assert (renditions.preview.width, renditions.thumbnail.width) == (1600, 400)


def test_without_widths_the_base_pair_is_what_it_was() -> None:
    renditions = render_renditions(samples.photo_jpeg(800, 600), RenderOptions(preview_long_side=400, thumb_long_side=100))
    assert renditions.sized == ()
    assert (renditions.preview.width, renditions.preview.height, renditions.thumbnail.width) == (400, 300, 100)
