"""Rendering on real images made in code: every input kind, orientation, colour, limits, watermark."""

from __future__ import annotations

import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pillow_heif
import pytest
from PIL import ExifTags, Image, ImageChops, ImageCms, ImageStat, JpegImagePlugin

from photo_pipeline.cli import samples
from photo_pipeline.rendering.render import (
    PREVIEW_FILTER,
    REDUCING_GAP,
    RenderError,
    RenderOptions,
    Rendition,
    Renditions,
    WatermarkOptions,
    _decode,
    _fit,
    _preview,
    _to_srgb,
    draft_scale,
    render_options_from_settings,
    render_renditions,
)
from photo_pipeline.rendering.watermark import POSITIONS, apply_watermark, mark_height
from photo_pipeline.settings import RenderSettings, SettingsError

DEFAULTS = RenderOptions()
NO_WATERMARK = RenderOptions(watermark=None)
RED = (220, 20, 20)


def _open(rendition: Rendition) -> Image.Image:
    image = Image.open(io.BytesIO(rendition.data))
    image.load()
    return image


def _png(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **params)
    return buffer.getvalue()


def _encoded(image: Image.Image, image_format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **params)
    return buffer.getvalue()


def _close(pixel: object, expected: tuple[int, ...], tolerance: int) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


def _mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


def _changed_box(a: Image.Image, b: Image.Image) -> tuple[int, int, int, int] | None:
    """Bounding box of the pixels that differ by more than JPEG noise."""
    difference = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).convert("L")
    return difference.point(lambda value: 255 if value > 12 else 0).getbbox()


def _expected_fit(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    scale = min(1.0, long_side / max(size))
    return round(size[0] * scale), round(size[1] * scale)


# --- every kind of input -------------------------------------------------------------------------

KINDS: dict[str, tuple[Callable[[], bytes], tuple[int, int], str]] = {
    "jpeg": (lambda: samples.photo_jpeg(1600, 1200), (1600, 1200), "JPEG"),
    "png-rgb": (lambda: samples.photo_png(mode="RGB"), (800, 600), "PNG"),
    "png-rgba": (lambda: samples.photo_png(mode="RGBA"), (800, 600), "PNG"),
    "png-l": (lambda: samples.photo_png(mode="L"), (800, 600), "PNG"),
    "png-la": (lambda: samples.photo_png(mode="LA"), (800, 600), "PNG"),
    "png-palette": (lambda: samples.photo_png(mode="P"), (800, 600), "PNG"),
    "png-16-bit": (lambda: samples.photo_png(mode="I;16"), (800, 600), "PNG"),
    "cmyk": (samples.cmyk_jpeg, (800, 600), "JPEG"),
    "cmyk-icc": (lambda: samples.cmyk_jpeg(icc_profile=samples.cmyk_icc_profile()), (800, 600), "JPEG"),
    "gif": (samples.animated_gif, (320, 240), "GIF"),
    "apng": (samples.animated_png, (320, 240), "PNG"),
    "webp-animated": (samples.animated_webp, (320, 240), "WEBP"),
    "heic": (samples.heic, (640, 480), "HEIF"),
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_input_becomes_an_rgb_jpeg_of_the_right_size(kind: str) -> None:
    make, source_size, source_format = KINDS[kind]
    options = RenderOptions()

    result = render_renditions(make(), options)

    assert (result.source_width, result.source_height) == source_size
    assert result.source_format == source_format
    for rendition, long_side in (
        (result.preview, options.preview_long_side),
        (result.thumbnail, options.thumb_long_side),
    ):
        image = _open(rendition)
        assert image.format == "JPEG" and image.mode == "RGB"
        assert rendition.format == "JPEG" and rendition.content_type == "image/jpeg"
        assert image.size == (rendition.width, rendition.height) == _expected_fit(source_size, long_side)


def test_webp_output() -> None:
    result = render_renditions(samples.photo_jpeg(1200, 900), RenderOptions(format="WEBP", thumb_long_side=300))

    for rendition, size in ((result.preview, (1200, 900)), (result.thumbnail, (300, 225))):
        image = _open(rendition)
        assert image.format == "WEBP" and image.mode == "RGB" and image.size == size
        assert rendition.format == "WEBP" and rendition.content_type == "image/webp"


# --- sizes ---------------------------------------------------------------------------------------


def test_never_upscaled() -> None:
    result = render_renditions(samples.photo_jpeg(300, 200))

    assert (result.preview.width, result.preview.height) == (300, 200)
    assert (result.thumbnail.width, result.thumbnail.height) == (300, 200)
    assert _open(result.thumbnail).size == (300, 200)


@pytest.mark.parametrize("size", [(1600, 1200), (900, 1500)], ids=["landscape", "portrait"])
def test_long_side_is_the_configured_size(size: tuple[int, int]) -> None:
    options = RenderOptions(preview_long_side=1000, thumb_long_side=250)

    result = render_renditions(samples.photo_jpeg(*size), options)

    assert max(result.preview.width, result.preview.height) == 1000
    assert max(result.thumbnail.width, result.thumbnail.height) == 250
    assert abs(result.preview.width / result.preview.height - size[0] / size[1]) < 0.01
    assert abs(result.thumbnail.width / result.thumbnail.height - size[0] / size[1]) < 0.01


# --- orientation and metadata --------------------------------------------------------------------


def _marked_jpeg(orientation: int) -> bytes:
    """A 1600x1200 stored photo with a red square in its stored top-left corner."""
    stored = Image.open(io.BytesIO(samples.photo_jpeg(1600, 1200, seed=3))).convert("RGB")
    stored.paste(RED, (0, 0, 160, 160))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return _encoded(stored, "JPEG", quality=92, exif=exif.tobytes())


@pytest.mark.parametrize(
    ("orientation", "size", "corner"),
    [
        (1, (800, 600), "top-left"),
        (3, (800, 600), "bottom-right"),
        (6, (600, 800), "top-right"),  # rotate 90 degrees clockwise to display
        (8, (600, 800), "bottom-left"),  # rotate 90 degrees counter-clockwise to display
    ],
)
def test_exif_orientation_is_applied(orientation: int, size: tuple[int, int], corner: str) -> None:
    result = render_renditions(_marked_jpeg(orientation), RenderOptions(preview_long_side=800, watermark=None))

    preview = _open(result.preview)
    assert preview.size == size
    assert (result.source_width, result.source_height) == (size[0] * 2, size[1] * 2)
    width, height = preview.size
    inset = 20  # well inside the 80-px marker at preview scale
    points = {
        "top-left": (inset, inset),
        "top-right": (width - inset, inset),
        "bottom-left": (inset, height - inset),
        "bottom-right": (width - inset, height - inset),
    }
    for name, point in points.items():
        assert _close(preview.getpixel(point), RED, 40) == (name == corner), name


def test_no_exif_gps_or_icc_in_output() -> None:
    original = samples.photo_jpeg(1200, 900, orientation=6, with_gps=True)
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the input has them

    for options in (RenderOptions(), RenderOptions(format="WEBP")):
        result = render_renditions(original, options)
        for rendition in (result.preview, result.thumbnail):
            image = _open(rendition)
            assert not image.getexif()
            assert "exif" not in image.info and "icc_profile" not in image.info
            assert b"PhotoPipeline" not in rendition.data and b"Sample Camera" not in rendition.data


# --- colour --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "image_format"), [("I;16", "PNG"), ("I;16B", "TIFF"), ("I", "TIFF")])
@pytest.mark.parametrize(("value", "expected"), [(0, 0), (32768, 128), (65535, 255)])
def test_16_bit_is_scaled_not_clipped(mode: str, image_format: str, value: int, expected: int) -> None:
    original = _encoded(Image.new(mode, (64, 48), value), image_format)
    assert Image.open(io.BytesIO(original)).mode == mode

    preview = _open(render_renditions(original, NO_WATERMARK).preview)

    assert _close(preview.getpixel((32, 24)), (expected,) * 3, 1)


def test_16_bit_photo_matches_its_8_bit_version() -> None:
    sixteen = _open(render_renditions(samples.photo_png(mode="I;16"), NO_WATERMARK).preview)
    eight = _open(render_renditions(samples.photo_png(mode="L"), NO_WATERMARK).preview)

    assert _mean_difference(sixteen, eight) < 2


def test_embedded_wide_gamut_profile_is_converted_to_srgb() -> None:
    colour = (60, 140, 60)  # a mid green in Adobe RGB: more saturated once expressed in sRGB
    tagged = _png(Image.new("RGB", (64, 48), colour), icc_profile=samples.wide_gamut_icc_profile())
    untagged = _png(Image.new("RGB", (64, 48), colour))

    converted = _open(render_renditions(tagged, NO_WATERMARK).preview)
    as_is = _open(render_renditions(untagged, NO_WATERMARK).preview)

    assert converted.mode == "RGB" and "icc_profile" not in converted.info
    assert _close(as_is.getpixel((32, 24)), colour, 2)
    red, green, _ = converted.getpixel((32, 24))  # type: ignore[misc]
    assert green - red > colour[1] - colour[0] + 20


def test_wide_gamut_photo_renders_differently_from_the_untagged_one() -> None:
    tagged = render_renditions(samples.photo_png(icc_profile=samples.wide_gamut_icc_profile()), NO_WATERMARK)
    untagged = render_renditions(samples.photo_png(), NO_WATERMARK)

    assert _mean_difference(_open(tagged.preview), _open(untagged.preview)) > 3


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_profile_applied_after_the_resize_matches_it_applied_before(image_format: str) -> None:
    # Big enough to be resized, so the profile is applied to the preview rather than the decode.
    scene = Image.open(io.BytesIO(samples.photo_jpeg(2400, 1800, seed=5))).convert("RGB")
    params: dict[str, object] = {"quality": 95} if image_format == "JPEG" else {}
    tagged = _encoded(scene, image_format, icc_profile=samples.wide_gamut_icc_profile(), **params)
    untagged = _encoded(scene, image_format, **params)
    size = (1600, 1200)

    after = _preview(_decode(tagged, DEFAULTS).image, size, DEFAULTS.background)
    before = _fit(_to_srgb(_decode(tagged, DEFAULTS).image, DEFAULTS.background), size, PREVIEW_FILTER, REDUCING_GAP)
    preview = _open(render_renditions(tagged, NO_WATERMARK).preview)
    as_is = _open(render_renditions(untagged, NO_WATERMARK).preview)

    assert after.mode == "RGB" and after.size == size
    assert _mean_difference(after, before) < 0.5  # measured 0.12: resizing in either space is alike
    assert preview.size == size and "icc_profile" not in preview.info
    assert _mean_difference(preview, as_is) > 3  # the profile was applied (7.6)


@pytest.mark.parametrize(
    "icc_profile",
    [ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(), b"not a profile at all"],
    ids=["srgb", "broken"],
)
def test_srgb_or_broken_profile_leaves_pixels_alone(icc_profile: bytes) -> None:
    tagged = render_renditions(samples.photo_png(icc_profile=icc_profile), NO_WATERMARK)
    untagged = render_renditions(samples.photo_png(), NO_WATERMARK)

    assert _mean_difference(_open(tagged.preview), _open(untagged.preview)) < 0.5


def test_cmyk_without_profile_matches_the_rgb_photo() -> None:
    cmyk = _open(render_renditions(samples.cmyk_jpeg(seed=4), NO_WATERMARK).preview)
    rgb = _open(render_renditions(samples.photo_png(seed=4), NO_WATERMARK).preview)

    assert cmyk.mode == "RGB"
    # Colour, not grain: JPEG loss differs pixel by pixel but not on average.
    for cmyk_mean, rgb_mean in zip(ImageStat.Stat(cmyk).mean, ImageStat.Stat(rgb).mean, strict=True):
        assert abs(cmyk_mean - rgb_mean) < 1.5


def test_cmyk_profile_is_used() -> None:
    with_profile = _open(
        render_renditions(samples.cmyk_jpeg(icc_profile=samples.cmyk_icc_profile()), NO_WATERMARK).preview
    )
    naive = _open(render_renditions(samples.cmyk_jpeg(), NO_WATERMARK).preview)

    assert with_profile.mode == "RGB"
    assert _mean_difference(with_profile, naive) > 5


def test_fully_transparent_image_becomes_the_background_colour() -> None:
    transparent = _png(Image.new("RGBA", (200, 100), (255, 0, 0, 0)))

    white = _open(render_renditions(transparent, NO_WATERMARK).preview)
    blue = _open(render_renditions(transparent, RenderOptions(watermark=None, background="#336699")).preview)

    assert white.getextrema() == ((255, 255), (255, 255), (255, 255))
    assert _close(blue.getpixel((100, 50)), (0x33, 0x66, 0x99), 2)


@pytest.mark.parametrize("mode", ["P", "LA", "RGBA"])
def test_transparent_areas_are_flattened_onto_white(mode: str) -> None:
    # The palette sample has a transparent top-left quarter; the alpha ones fade out to the corners.
    preview = _open(render_renditions(samples.photo_png(mode=mode), NO_WATERMARK).preview)

    assert _close(preview.getpixel((3, 3)), (255, 255, 255), 3)
    assert not _close(preview.getpixel((400, 450)), (255, 255, 255), 30)


@pytest.mark.parametrize("make", [samples.animated_gif, samples.animated_png, samples.animated_webp])
def test_animation_renders_its_first_frame(make: Callable[[], bytes]) -> None:
    preview = _open(render_renditions(make(), NO_WATERMARK).preview)

    assert _close(preview.getpixel((160, 180)), samples.ANIMATION_COLOURS[0], 6)


def test_heic() -> None:
    result = render_renditions(samples.heic(640, 480, seed=2))

    assert result.source_format == "HEIF"
    assert _open(result.preview).size == (640, 480)
    assert _open(result.thumbnail).size == (400, 300)


# --- JPEG draft: decoding a big JPEG at the scale the preview needs --------------------------------


@pytest.fixture(scope="module")
def big_portrait_jpeg() -> bytes:
    """24 MP stored landscape, shown portrait (orientation 6): the draft must not cut the long side."""
    return samples.photo_jpeg(6000, 4000, orientation=6, quality=85)


def test_big_jpeg_is_decoded_reduced_but_not_below_the_preview(big_portrait_jpeg: bytes) -> None:
    options = RenderOptions()

    drafted = _decode(big_portrait_jpeg, options)
    full = _decode(big_portrait_jpeg, options, use_draft=False)

    assert full.image.size == (4000, 6000)
    assert drafted.image.size == (2000, 3000)  # JPEG's 1/2 scale: the largest reduction >= 1067x1600
    assert drafted.source_size == full.source_size == (4000, 6000)


def test_big_jpeg_renders_at_the_configured_size(big_portrait_jpeg: bytes) -> None:
    result = render_renditions(big_portrait_jpeg)

    assert (result.source_width, result.source_height) == (4000, 6000)
    assert _open(result.preview).size == (1067, 1600)
    assert _open(result.thumbnail).size == (267, 400)


def test_draft_reduces_more_for_a_small_preview(big_portrait_jpeg: bytes) -> None:
    decoded = _decode(big_portrait_jpeg, RenderOptions(preview_long_side=700))

    assert decoded.image.size == (500, 750)  # 1/8 scale, still >= 467x700


@pytest.mark.parametrize(
    ("stored", "target", "scale"),
    [
        ((4000, 3000), (1600, 1200), 2),
        ((3200, 2400), (1600, 1200), 2),
        # 1/2 gives ceil(3199 / 2) = 1600: still covers the preview, although 3199 // 1600 is 1
        ((3199, 2400), (1600, 1200), 2),
        ((3198, 2400), (1600, 1200), 1),
        ((6000, 4000), (1600, 1067), 2),
        ((12800, 9600), (1600, 1200), 8),
        ((12799, 9599), (1600, 1200), 8),
        ((1600, 1200), (1600, 1200), 1),
    ],
)
def test_draft_scale_is_the_largest_whose_decode_covers_the_target(
    stored: tuple[int, int], target: tuple[int, int], scale: int
) -> None:
    assert draft_scale(stored, target) == scale


def test_draft_decodes_at_the_largest_covering_scale_where_pillow_alone_would_not() -> None:
    original = samples.photo_jpeg(3199, 2399)

    decoded = _decode(original, DEFAULTS)

    assert decoded.image.size == (1600, 1200)  # libjpeg's 1/2 scale rounds up
    with Image.open(io.BytesIO(original)) as plain:
        plain.draft(None, (1600, 1200))
        assert plain.size == (3199, 2399)  # Pillow's own choice: a full decode
    result = render_renditions(original, DEFAULTS)
    assert _open(result.preview).size == (1600, 1200)


def test_renditions_are_baseline_jpegs_with_optimized_tables_and_4_2_0() -> None:
    # The settings chosen by measurement (rendering.JPEG_*): smaller than progressive at half the time.
    result = render_renditions(samples.photo_jpeg(1600, 1200), DEFAULTS)

    for rendition in (result.preview, result.thumbnail):
        image = _open(rendition)
        assert isinstance(image, JpegImagePlugin.JpegImageFile)
        assert "progressive" not in image.info and "progression" not in image.info
        assert JpegImagePlugin.get_sampling(image) == 2  # 4:2:0
        standard = _encoded(image, "JPEG", quality=DEFAULTS.quality, optimize=False)
        assert len(rendition.data) < len(standard)


# --- refusals -------------------------------------------------------------------------------------


def _render_error(data: bytes, options: RenderOptions = DEFAULTS) -> RenderError:
    with pytest.raises(RenderError) as caught:
        render_renditions(data, options)
    return caught.value


def test_pixel_limit_is_checked_from_the_header() -> None:
    error = _render_error(samples.photo_jpeg(1600, 1200), RenderOptions(max_pixels=1_000_000))

    assert str(error) == "image is 1600x1200 = 1.9 megapixels, above the limit of 1.0 megapixels"


# 144 MP lies between Pillow's warning and error thresholds; our own check must refuse it.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_above_our_limit() -> None:
    bomb = samples.decompression_bomb_png(12_000, 12_000)
    assert len(bomb) < 100_000

    error = _render_error(bomb)

    assert str(error) == "image is 12000x12000 = 144 megapixels, above the limit of 120 megapixels"


def test_decompression_bomb_above_pillows_limit() -> None:
    error = _render_error(samples.decompression_bomb_png(20_000, 20_000))

    assert str(error).startswith("image is 400 megapixels, above Pillow's decompression-bomb limit of")
    assert isinstance(error.__cause__, Image.DecompressionBombError)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: b"", "empty file (0 bytes)"),
        (samples.not_an_image, "not an image Pillow can read (cannot identify image file)"),
        (lambda: bytes(range(256)) * 8, "not an image Pillow can read (cannot identify image file)"),
        (samples.corrupt_jpeg, "file is truncated or corrupt: image file is truncated"),
        (lambda: samples.heic()[:5000], "file is truncated or corrupt:"),
    ],
    ids=["empty", "pdf", "garbage", "truncated-jpeg", "truncated-heic"],
)
def test_unreadable_input_raises_a_readable_render_error(make: Callable[[], bytes], message: str) -> None:
    data = make()
    error = _render_error(data)

    assert str(error).startswith(message)
    assert "0x" not in str(error)  # no object addresses from Pillow's own messages
    if data:
        assert error.__cause__ is not None


# --- watermark ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo() -> bytes:
    return samples.photo_jpeg(1200, 900, seed=5)


@pytest.mark.parametrize(
    ("text", "with_logo"),
    [("© photo_pipeline", False), (None, True), ("©", True)],
    ids=["text", "logo", "logo-and-text"],
)
def test_watermark_lands_in_its_corner_of_preview_and_thumbnail(
    photo: bytes, text: str | None, with_logo: bool
) -> None:
    watermark = WatermarkOptions(text=text, logo_png=samples.logo_png() if with_logo else None)
    marked = render_renditions(photo, RenderOptions(watermark=watermark))
    plain = render_renditions(photo, NO_WATERMARK)

    for marked_rendition, plain_rendition in ((marked.preview, plain.preview), (marked.thumbnail, plain.thumbnail)):
        with_mark, without = _open(marked_rendition), _open(plain_rendition)
        box = _changed_box(with_mark, without)
        assert box is not None, "no watermark"
        width, height = with_mark.size
        assert box[0] > width / 2 and box[1] > height * 0.8, box
        top_left = (0, 0, width // 2, height // 2)
        assert _mean_difference(with_mark.crop(top_left), without.crop(top_left)) < 0.5


def _quadrant_centre(position: str, size: tuple[int, int]) -> tuple[float, float]:
    width, height = size
    if position == "center":
        return width / 2, height / 2
    vertical, horizontal = position.split("-")
    return (width * 0.75 if horizontal == "right" else width * 0.25), (
        height * 0.75 if vertical == "bottom" else height * 0.25
    )


@pytest.mark.parametrize("position", POSITIONS)
def test_watermark_positions(position: str) -> None:
    image = Image.open(io.BytesIO(samples.photo_jpeg(800, 600, seed=6))).convert("RGB")

    marked = apply_watermark(image, WatermarkOptions(position=position))

    box = _changed_box(marked, image)
    assert box is not None
    mark_centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    expected = _quadrant_centre(position, image.size)
    assert abs(mark_centre[0] - expected[0]) < 200 and abs(mark_centre[1] - expected[1]) < 150, (mark_centre, box)
    assert image.getpixel((0, 0)) == marked.getpixel((0, 0)) or position == "top-left"


@pytest.mark.parametrize("colour", [(255, 255, 255), (0, 0, 0)], ids=["white", "black"])
def test_watermark_reads_on_light_and_dark_images(colour: tuple[int, int, int]) -> None:
    image = Image.new("RGB", (800, 600), colour)

    marked = apply_watermark(image, WatermarkOptions())

    largest_change = max(ImageChops.difference(marked, image).convert("L").tobytes())
    assert largest_change > 60  # the outline (on white) or the fill (on black) shows


@pytest.mark.parametrize("size", [(1600, 1200), (400, 300), (300, 400)])
def test_watermark_height_follows_the_image(size: tuple[int, int]) -> None:
    image = Image.new("RGB", size, (128, 128, 128))
    options = WatermarkOptions(text="Hg photo", opacity=1.0)

    box = _changed_box(apply_watermark(image, options), image)

    assert box is not None
    target = mark_height(size, options.scale)
    assert 0.7 * target <= box[3] - box[1] <= 1.4 * target


def test_watermark_opacity_and_input_untouched() -> None:
    image = Image.new("RGB", (400, 300), (255, 255, 255))
    original = image.copy()

    faint = apply_watermark(image, WatermarkOptions(opacity=0.2))
    strong = apply_watermark(image, WatermarkOptions(opacity=1.0))

    assert ImageChops.difference(image, original).getbbox() is None
    faint_darkest = min(band[0] for band in faint.getextrema())  # type: ignore[index]
    strong_darkest = min(band[0] for band in strong.getextrema())  # type: ignore[index]
    assert strong_darkest < 30 < faint_darkest < 255
    assert apply_watermark(image, WatermarkOptions(opacity=0.0)) is image


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_watermark_in_place_marks_the_image_itself_exactly_as_the_copy(mode: str) -> None:
    colour = {"RGB": (90, 120, 150), "RGBA": (90, 120, 150, 255), "L": 90}[mode]
    image = Image.new(mode, (640, 480), colour)
    options = WatermarkOptions(logo_png=samples.logo_png())

    copied = apply_watermark(image, options)
    marked = apply_watermark(image, options, in_place=True)

    assert marked is image
    assert ImageChops.difference(copied, marked).getbbox() is None
    assert _changed_box(marked, Image.new(mode, (640, 480), colour)) is not None


def test_a_photo_smaller_than_the_thumbnail_is_marked_once_in_each_rendition() -> None:
    # Neither rendition is resized, so both start from the same decoded image, marked in place.
    result = render_renditions(samples.photo_jpeg(360, 240), DEFAULTS)

    assert _open(result.preview).size == _open(result.thumbnail).size == (360, 240)
    assert result.thumbnail.data == result.preview.data


def test_watermark_skipped_on_a_tiny_image() -> None:
    tiny = Image.new("RGB", (3, 3), (10, 20, 30))

    assert apply_watermark(tiny, WatermarkOptions()) is tiny


# --- options and settings -------------------------------------------------------------------------


def test_options_from_settings(tmp_path: Path) -> None:
    logo_path = tmp_path / "logo.png"
    logo_path.write_bytes(samples.logo_png())

    options = render_options_from_settings(
        RenderSettings(
            preview_long_side=1200, format="WEBP", watermark_logo_path=logo_path, watermark_position="top-left"
        )
    )

    assert options.preview_long_side == 1200 and options.format == "WEBP"
    assert options.watermark is not None
    assert options.watermark.logo_png == samples.logo_png()
    assert options.watermark.position == "top-left"
    assert options.watermark.text == RenderSettings.watermark_text


def test_options_from_settings_without_any_mark() -> None:
    assert render_options_from_settings(RenderSettings(watermark_text=None)).watermark is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (RenderSettings(watermark_logo_path=Path("/nonexistent/logo.png")), "cannot be read"),
        (RenderSettings(watermark_opacity=1.5), "opacity"),
        (RenderSettings(format="GIF"), "format"),
        (RenderSettings(background="not-a-colour"), "colour"),
    ],
    ids=["missing-logo", "opacity", "format", "background"],
)
def test_bad_settings_are_refused(settings: RenderSettings, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        render_options_from_settings(settings)


def test_logo_that_is_not_an_image_is_refused(tmp_path: Path) -> None:
    logo_path = tmp_path / "logo.png"
    logo_path.write_bytes(b"not a png")

    with pytest.raises(SettingsError, match="not a readable image"):
        render_options_from_settings(RenderSettings(watermark_logo_path=logo_path))


# --- determinism, samples, threads ----------------------------------------------------------------


def test_samples_are_deterministic_and_photo_like() -> None:
    assert samples.photo_jpeg(400, 300, seed=1) == samples.photo_jpeg(400, 300, seed=1)
    assert samples.photo_jpeg(400, 300, seed=1) != samples.photo_jpeg(400, 300, seed=2)
    image = Image.open(io.BytesIO(samples.photo_jpeg(400, 300, seed=1))).convert("RGB")
    assert len(image.getcolors(maxcolors=1_000_000) or []) > 5_000  # gradients and grain, not flat colour


def test_concurrent_renders_match_sequential_ones() -> None:
    options = RenderOptions(
        preview_long_side=600, thumb_long_side=200, watermark=WatermarkOptions(logo_png=samples.logo_png())
    )
    originals = [samples.photo_jpeg(900, 600, seed=seed) for seed in range(6)]

    sequential = [render_renditions(data, options) for data in originals]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent: list[Renditions] = list(pool.map(lambda data: render_renditions(data, options), originals))

    assert [r.preview.data for r in concurrent] == [r.preview.data for r in sequential]
    assert [r.thumbnail.data for r in concurrent] == [r.thumbnail.data for r in sequential]


def test_heic_orientation_is_applied_once() -> None:
    # pillow_heif turns the EXIF orientation into HEIF's own rotation, which libheif applies on decode.
    stored = Image.new("RGB", (400, 200), (0, 0, 255))
    stored.paste(RED, (0, 0, 50, 50))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    buffer = io.BytesIO()
    pillow_heif.from_pillow(stored).save(buffer, exif=exif.tobytes(), quality=90)

    result = render_renditions(buffer.getvalue(), NO_WATERMARK)

    preview = _open(result.preview)
    assert (result.source_width, result.source_height) == preview.size == (200, 400)
    assert _close(preview.getpixel((190, 10)), RED, 40)
    assert not _close(preview.getpixel((10, 10)), RED, 40)
