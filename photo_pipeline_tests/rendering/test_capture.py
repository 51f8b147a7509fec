"""Capture facts from EXIF, the ThumbHash placeholder, and what renditions must not carry."""

from __future__ import annotations

import base64
import io

from PIL import ExifTags, Image

from photo_pipeline.cli import samples
from photo_pipeline.rendering.capture import CaptureFacts, capture_facts
from photo_pipeline.rendering.render import RenderOptions, render_renditions
from photo_pipeline.rendering.thumbhash import aspect_ratio, average_rgba, thumbhash_of


def camera_exif(
    *, taken: str | None = "2024:05:01 10:00:00", offset: str | None = "+02:00", gps: bool = True, make: str = "Canon"
) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = make
    exif[ExifTags.Base.Model] = "EOS R6\x00\x00"
    exif[ExifTags.Base.Orientation] = 6
    sub: dict[int, object] = {}
    if taken is not None:
        sub[ExifTags.Base.DateTimeOriginal] = taken
    if offset is not None:
        sub[ExifTags.Base.OffsetTimeOriginal] = offset
    exif[ExifTags.IFD.Exif] = sub
    if gps:
        exif[ExifTags.IFD.GPSInfo] = {
            ExifTags.GPS.GPSLatitudeRef: "S",
            ExifTags.GPS.GPSLatitude: (33.0, 51.0, 36.0),
            ExifTags.GPS.GPSLongitudeRef: "E",
            ExifTags.GPS.GPSLongitude: (151.0, 12.0, 36.0),
        }
    return exif


def camera_jpeg(width: int = 1200, height: int = 800, **exif: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 90, 160)).save(buffer, "JPEG", exif=camera_exif(**exif).tobytes())  # type: ignore[arg-type]
    return buffer.getvalue()


def parsed(data: bytes) -> Image.Exif:
    with Image.open(io.BytesIO(data)) as image:
        return image.getexif()


def test_capture_time_with_offset_camera_and_no_gps_unless_asked() -> None:
    exif = parsed(camera_jpeg())
    facts = capture_facts(exif)
    assert facts == CaptureFacts(taken_at="2024-05-01T10:00:00+02:00", camera_make="Canon", camera_model="EOS R6")
    with_gps = capture_facts(exif, keep_gps=True)
    assert (with_gps.gps_latitude, with_gps.gps_longitude) == (-33.86, 151.21)


def test_capture_time_without_offset_is_the_cameras_local_clock() -> None:
    assert capture_facts(parsed(camera_jpeg(offset=None))).taken_at == "2024-05-01T10:00:00"


def test_hostile_or_broken_exif_yields_nothing_rather_than_an_error() -> None:
    never_set = capture_facts(parsed(camera_jpeg(taken="0000:00:00 00:00:00", offset="+99:00")))
    assert never_set.taken_at is None
    # EXIF ASCII: Pillow writes a bidi override as "?"; the escape byte is what must go.
    forged = capture_facts(parsed(camera_jpeg(make="Evil\x1b[31m\tCam\x07" + "x" * 500)))
    assert forged.camera_make is not None and forged.camera_make.startswith("Evil [31m Cam xx")
    assert len(forged.camera_make) == 128
    assert capture_facts(Image.Exif()) == CaptureFacts()


def test_renditions_carry_the_facts_but_no_exif_and_no_gps() -> None:
    data = camera_jpeg()
    renditions = render_renditions(data, RenderOptions(preview_long_side=600, thumb_long_side=150, keep_gps=True))
    # Orientation 6: the upright size is the stored one turned.
    assert (renditions.source_width, renditions.source_height) == (800, 1200)
    assert renditions.capture.taken_at == "2024-05-01T10:00:00+02:00"
    assert renditions.capture.gps_latitude == -33.86
    for rendition in (renditions.preview, renditions.thumbnail):
        assert b"Exif" not in rendition.data and b"Canon" not in rendition.data
        with Image.open(io.BytesIO(rendition.data)) as image:
            assert not image.getexif() and "exif" not in image.info


def test_renditions_read_no_gps_by_default() -> None:
    renditions = render_renditions(samples.photo_jpeg(640, 480, with_gps=True), RenderOptions(preview_long_side=320, thumb_long_side=80))
    assert renditions.capture.camera_make == "PhotoPipeline"
    assert renditions.capture.gps_latitude is None and renditions.capture.gps_longitude is None


def gradient() -> Image.Image:
    image = Image.new("RGB", (80, 60))
    image.putdata([(x * 3, y * 4, (x + y) * 2) for y in range(60) for x in range(80)])
    return image


def test_thumbhash_matches_the_reference_algorithm() -> None:
    # The reference implementation's Rust crate (what fast_thumbhash binds) gives this hash for the
    # gradient; the independent Python port `thash` gives the same but for the last coefficient
    # ("...CPeI": a rounding difference in its float maths).
    assert thumbhash_of(gradient()) == "XwcOFZhwd3dxeHiHh3eHh4+HCPiI"


def test_thumbhash_of_a_large_image_keeps_its_colour_and_shape() -> None:
    image = Image.new("RGB", (400, 200), (200, 30, 30))
    placeholder = thumbhash_of(image)
    assert len(base64.b64decode(placeholder)) <= 25
    red, green, blue, alpha = average_rgba(placeholder)
    assert abs(red - 200 / 255) < 0.05 and green < 0.2 and blue < 0.2 and alpha == 1.0
    assert abs(aspect_ratio(placeholder) - 2.0) < 0.3
    assert image.size == (400, 200)


def test_render_gives_the_thumbnails_thumbhash() -> None:
    renditions = render_renditions(samples.photo_jpeg(800, 600), RenderOptions(preview_long_side=400, thumb_long_side=120))
    assert renditions.thumbhash is not None
    assert abs(aspect_ratio(renditions.thumbhash) - 4 / 3) < 0.3
