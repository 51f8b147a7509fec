"""Sample images made in code, for the `demo` command and the tests.

They look like photos rather than flat colour (a sky gradient, hills, a sun, trees, vignetting and
sensor grain), so that JPEG sizes, resampling and watermark contrast behave as with real uploads.
Everything is deterministic for a given seed. The ICC profiles are built here too, byte by byte,
because no colour profile ships with Pillow or can be assumed on the machine.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Sequence

import pillow_heif
from PIL import ExifTags, Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter

# Colour of each animation frame, in order; tests check that only the first one is rendered.
ANIMATION_COLOURS: tuple[tuple[int, int, int], ...] = ((200, 40, 40), (40, 170, 60), (40, 70, 200))

# Shapes are drawn at most this large and then upscaled: soft, lens-like edges, and a 24-MP
# sample costs a fraction of a second.
_SKETCH_LONG_SIDE = 1024
_GRAIN_AMPLITUDE = 6

Colour = tuple[int, int, int]


def photo_jpeg(
    width: int = 1600,
    height: int = 1200,
    *,
    seed: int = 0,
    orientation: int | None = None,
    with_gps: bool = False,
    quality: int = 90,
) -> bytes:
    """A landscape-like JPEG. `orientation` sets EXIF tag 0x0112 (the pixels stay as stored);
    `with_gps` adds a camera make/model and a GPS position, the metadata renditions must drop."""
    exif = _exif(orientation=orientation, with_gps=with_gps)
    buffer = io.BytesIO()
    _scene(width, height, seed).save(buffer, "JPEG", quality=quality, exif=exif.tobytes())
    return buffer.getvalue()


def photo_png(
    width: int = 800,
    height: int = 600,
    *,
    seed: int = 0,
    mode: str = "RGB",
    icc_profile: bytes | None = None,
) -> bytes:
    """A PNG of the scene in `mode`: RGB, RGBA, L, LA, P (with a transparent area) or I;16."""
    scene = _scene(width, height, seed)
    extra: dict[str, object] = {"icc_profile": icc_profile} if icc_profile else {}
    image: Image.Image
    if mode == "RGB":
        image = scene
    elif mode in ("RGBA", "LA"):
        image = scene.convert(mode[:-1])
        image.putalpha(_soft_edged_alpha(scene.size))
    elif mode == "L":
        image = scene.convert("L")
    elif mode == "P":
        image = _palette_with_hole(scene)
        extra["transparency"] = 255
    elif mode == "I;16":
        # Full 16-bit range (0..65535), so an 8-bit renderer that clips instead of scaling shows.
        image = scene.convert("L").convert("I").point(lambda value: value * 257).convert("I;16")
    else:
        raise ValueError(f"unsupported sample mode {mode!r}")
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **extra)
    return buffer.getvalue()


def cmyk_jpeg(width: int = 800, height: int = 600, *, seed: int = 0, icc_profile: bytes | None = None) -> bytes:
    """A CMYK JPEG, as print workflows and some stock agencies deliver them."""
    extra = {"icc_profile": icc_profile} if icc_profile else {}
    buffer = io.BytesIO()
    _scene(width, height, seed).convert("CMYK").save(buffer, "JPEG", quality=90, **extra)
    return buffer.getvalue()


def animated_gif(width: int = 320, height: int = 240, frames: int = 3) -> bytes:
    return _animation(width, height, frames, "GIF")


def animated_png(width: int = 320, height: int = 240, frames: int = 3) -> bytes:
    return _animation(width, height, frames, "PNG")


def animated_webp(width: int = 320, height: int = 240, frames: int = 3) -> bytes:
    return _animation(width, height, frames, "WEBP")


def heic(width: int = 640, height: int = 480, *, seed: int = 0) -> bytes:
    """An HEIC file, what iPhones upload."""
    buffer = io.BytesIO()
    pillow_heif.from_pillow(_scene(width, height, seed)).save(buffer, quality=80)
    return buffer.getvalue()


def corrupt_jpeg() -> bytes:
    """A JPEG whose headers are intact but whose image data stops part way: it opens, then fails to decode."""
    whole = photo_jpeg(320, 240, seed=7)
    return whole[: len(whole) * 6 // 10]


def not_an_image() -> bytes:
    return b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def logo_png(width: int = 200, height: int = 80) -> bytes:
    """An RGBA logo on a transparent background: a rounded badge with a ring and a bar."""
    supersample = 4  # drawn large then reduced, for anti-aliased edges
    big = Image.new("RGBA", (width * supersample, height * supersample), (0, 0, 0, 0))
    draw = ImageDraw.Draw(big)
    w, h = big.size
    draw.rounded_rectangle((0, 0, w - 1, h - 1), radius=h // 4, fill=(20, 60, 140, 230))
    ring = h // 2
    draw.ellipse((h // 4, h // 4, h // 4 + ring, h // 4 + ring), outline=(255, 200, 40, 255), width=max(1, h // 12))
    draw.rectangle((h, h * 2 // 5, w - h // 4, h * 3 // 5), fill=(255, 255, 255, 255))
    buffer = io.BytesIO()
    big.resize((width, height), Image.Resampling.LANCZOS).save(buffer, "PNG")
    return buffer.getvalue()


def decompression_bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A real, valid 1-bit PNG of `width` x `height` black pixels that compresses to a few KB."""
    row = b"\x00" + bytes((width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def sixteen_bit_png(width: int = 10_900, height: int = 10_900, *, colour_type: int = 0) -> bytes:
    """A valid 16-bit PNG (greyscale by default, 2 = RGB) that is almost all one flat value, so
    it is a few hundred KB on disk while it decodes to gigabytes: the memory-budget hostile input.
    Rows are written one at a time, so making it takes no more memory than one row."""
    bands = {0: 1, 2: 3}[colour_type]
    flat_row = b"\x00" + b"\x80\x00" * (width * bands)  # filter byte + mid-grey 16-bit samples
    # A small gradient in the first rows so the picture is not entirely flat.
    compressor = zlib.compressobj(9)
    parts: list[bytes] = []
    for y in range(height):
        if y < 64:
            value = (y * 1024).to_bytes(2, "big")
            parts.append(compressor.compress(b"\x00" + value * (width * bands)))
        else:
            parts.append(compressor.compress(flat_row))
    idat = b"".join(parts) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def truncated_jpeg_with_eoi(width: int = 1200, height: int = 900, *, keep: float = 0.5) -> bytes:
    """A baseline JPEG whose scan data is cut short but which still ends with an EOI marker: the
    header promises width x height, libjpeg pads what is missing with grey and raises nothing."""
    whole = photo_jpeg(width, height, seed=11)
    return whole[: int(len(whole) * keep)] + b"\xff\xd9"


def truncated_progressive_jpeg_with_eoi(width: int = 1200, height: int = 900, *, keep: float = 0.5) -> bytes:
    """The same cut on a progressive JPEG: the early scans cover the whole picture, so the result
    is blurred, not padded, and nothing in the pixels tells it was cut."""
    buffer = io.BytesIO()
    _scene(width, height, 11).save(buffer, "JPEG", quality=90, progressive=True)
    whole = buffer.getvalue()
    return whole[: int(len(whole) * keep)] + b"\xff\xd9"


def grey_letterboxed_jpeg(width: int = 1200, height: int = 900, *, bar: int = 160) -> bytes:
    """A complete, undamaged JPEG whose bottom `bar` rows are exactly mid-grey (128, 128, 128): what
    the truncation heuristic cannot tell apart from libjpeg's padding."""
    scene = _scene(width, height, 12)
    scene.paste((128, 128, 128), (0, height - bar, width, height))
    buffer = io.BytesIO()
    scene.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def wide_gamut_icc_profile() -> bytes:
    """An ICC v2 RGB profile with Adobe RGB (1998) primaries and gamma 2.2: a common non-sRGB camera space."""
    return _icc_profile(
        device_class=b"mntr",
        colour_space=b"RGB ",
        pcs=b"XYZ ",
        tags=[
            (b"desc", _icc_text_description("Adobe RGB compatible (photo_pipeline sample)")),
            (b"cprt", _icc_text("No copyright, sample data")),
            (b"wtpt", _icc_xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", _icc_xyz(0.60974, 0.31111, 0.01947)),
            (b"gXYZ", _icc_xyz(0.20528, 0.62567, 0.06087)),
            (b"bXYZ", _icc_xyz(0.14919, 0.06322, 0.74457)),
            (b"rTRC", _icc_gamma(2.2)),
            (b"gTRC", _icc_gamma(2.2)),
            (b"bTRC", _icc_gamma(2.2)),
        ],
    )


def cmyk_icc_profile() -> bytes:
    """An ICC v2 CMYK input profile modelling impure inks (cyan that also absorbs some green, and
    so on) and a black that is not quite black: colours come out unlike Pillow's naive formula."""
    return _icc_profile(
        device_class=b"prtr",
        colour_space=b"CMYK",
        pcs=b"Lab ",
        tags=[
            (b"desc", _icc_text_description("Impure inks CMYK (photo_pipeline sample)")),
            (b"cprt", _icc_text("No copyright, sample data")),
            (b"wtpt", _icc_xyz(0.9642, 1.0, 0.8249)),
            (b"A2B0", _cmyk_to_lab_lut(grid_points=9)),
        ],
    )


# --- the scene -------------------------------------------------------------------------------


def _scene(width: int, height: int, seed: int) -> Image.Image:
    rng = random.Random(seed)
    scale = min(1.0, _SKETCH_LONG_SIDE / max(width, height))
    sketch_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    sketch = _sky(sketch_size, rng)
    _draw_sun(sketch, rng)
    _draw_hills_and_trees(sketch, rng)
    sketch = _vignetted(sketch.filter(ImageFilter.GaussianBlur(radius=max(0.6, min(sketch_size) / 600))))
    full = sketch.resize((width, height), Image.Resampling.BICUBIC) if sketch.size != (width, height) else sketch
    return _with_grain(full, rng)


def _sky(size: tuple[int, int], rng: random.Random) -> Image.Image:
    top = (rng.randint(20, 70), rng.randint(60, 120), rng.randint(150, 220))
    horizon = (rng.randint(200, 250), rng.randint(170, 220), rng.randint(140, 200))
    # linear_gradient runs 0 (top) to 255 (bottom): the mask blends top colour into horizon colour.
    mask = Image.linear_gradient("L").resize(size, Image.Resampling.BILINEAR)
    return Image.composite(Image.new("RGB", size, horizon), Image.new("RGB", size, top), mask)


def _draw_sun(image: Image.Image, rng: random.Random) -> None:
    width, height = image.size
    radius = max(2, round(min(width, height) * rng.uniform(0.05, 0.09)))
    cx, cy = rng.uniform(0.15, 0.85) * width, rng.uniform(0.12, 0.35) * height
    draw = ImageDraw.Draw(image)
    for ring in range(4, 0, -1):  # a halo that fades outwards
        r = radius * (1 + ring * 0.35)
        glow = tuple(min(255, c + 12 * (5 - ring)) for c in image.getpixel((int(cx), int(cy))))  # type: ignore[union-attr]
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=glow)
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(255, 244, 214))


def _draw_hills_and_trees(image: Image.Image, rng: random.Random) -> None:
    width, height = image.size
    draw = ImageDraw.Draw(image)
    layers = 4
    for layer in range(layers):
        # Farther hills are paler and bluer, as haze makes them in a real landscape.
        depth = layer / (layers - 1)
        colour: Colour = (
            round(150 - 110 * depth + rng.randint(-10, 10)),
            round(170 - 70 * depth + rng.randint(-10, 10)),
            round(190 - 150 * depth + rng.randint(-10, 10)),
        )
        baseline = height * (0.45 + 0.13 * layer)
        outline = _ridge(width, baseline, height * 0.08, rng)
        draw.polygon([*outline, (width, height), (0, height)], fill=colour)
        if layer >= layers - 2:
            _draw_trees(draw, outline, height, rng, colour)


def _ridge(width: int, baseline: float, amplitude: float, rng: random.Random) -> list[tuple[float, float]]:
    steps = 24
    y = baseline
    points = []
    for step in range(steps + 1):
        y = min(baseline + amplitude, max(baseline - amplitude, y + rng.uniform(-0.4, 0.4) * amplitude))
        points.append((width * step / steps, y))
    return points


def _draw_trees(
    draw: ImageDraw.ImageDraw,
    ridge: Sequence[tuple[float, float]],
    height: int,
    rng: random.Random,
    hill_colour: Colour,
) -> None:
    for _ in range(rng.randint(4, 9)):
        x, ground = rng.choice(ridge)
        tree_height = height * rng.uniform(0.05, 0.12)
        half_width = tree_height * 0.3
        dark = tuple(max(0, c - 35) for c in hill_colour)
        draw.polygon([(x, ground - tree_height), (x - half_width, ground + 2), (x + half_width, ground + 2)], fill=dark)


def _vignetted(image: Image.Image) -> Image.Image:
    # radial_gradient is 0 at the centre and grows outwards: darken the corners as a lens does.
    mask = Image.radial_gradient("L").resize(image.size, Image.Resampling.BILINEAR).point(lambda v: v * 2 // 3)
    return Image.composite(ImageEnhance.Brightness(image).enhance(0.55), image, mask)


def _with_grain(image: Image.Image, rng: random.Random) -> Image.Image:
    """Luminance noise at full resolution: the fine detail that makes JPEG sizes realistic."""
    amplitude = _GRAIN_AMPLITUDE
    noise = Image.frombytes("L", image.size, rng.randbytes(image.width * image.height))
    noise = noise.point(lambda v: v * 2 * amplitude // 255)
    return ImageChops.add(image, Image.merge("RGB", (noise, noise, noise)), scale=1.0, offset=-amplitude)


def _soft_edged_alpha(size: tuple[int, int]) -> Image.Image:
    # Opaque in the middle, fully transparent at the corners: every blend level occurs.
    return Image.radial_gradient("L").resize(size, Image.Resampling.BILINEAR).point(lambda v: max(0, 255 - v * 3 // 2))


def _palette_with_hole(scene: Image.Image) -> Image.Image:
    palette_image = scene.quantize(colors=255)
    # quantize(255) leaves index 255 unused: add it to the palette, to be marked transparent when saved.
    palette = palette_image.getpalette() or []
    palette_image.putpalette(palette[: 255 * 3] + [0] * (256 * 3 - len(palette[: 255 * 3])))
    width, height = palette_image.size
    ImageDraw.Draw(palette_image).rectangle((0, 0, width // 4, height // 4), fill=255)
    return palette_image


def _animation(width: int, height: int, frames: int, image_format: str) -> bytes:
    images = [_animation_frame(width, height, index) for index in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, image_format, save_all=True, append_images=images[1:], duration=200, loop=0)
    return buffer.getvalue()


def _animation_frame(width: int, height: int, index: int) -> Image.Image:
    frame = Image.new("RGB", (width, height), ANIMATION_COLOURS[index % len(ANIMATION_COLOURS)])
    # A ball travelling along the top band, away from the centre that tests look at.
    radius = max(2, height // 12)
    x = radius + (width - 2 * radius) * (index % 5) // 4
    ImageDraw.Draw(frame).ellipse((x - radius, radius, x + radius, 3 * radius), fill=(250, 250, 250))
    return frame


# --- metadata --------------------------------------------------------------------------------


def _exif(*, orientation: int | None, with_gps: bool) -> Image.Exif:
    exif = Image.Exif()
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if with_gps:
        exif[ExifTags.Base.Make] = "PhotoPipeline"
        exif[ExifTags.Base.Model] = "Sample Camera 1"
        exif[ExifTags.IFD.GPSInfo] = {
            ExifTags.GPS.GPSLatitudeRef: "N",
            ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.5),
            ExifTags.GPS.GPSLongitudeRef: "E",
            ExifTags.GPS.GPSLongitude: (13.0, 24.0, 36.0),
        }
    return exif


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


# --- ICC profiles (ICC.1:2001-04, version 2.1) -----------------------------------------------


# Fixed, so that the profile's bytes (and every sample embedding it) are deterministic.
_ICC_CREATION_DATE = (2024, 1, 1, 0, 0, 0)


def _icc_profile(device_class: bytes, colour_space: bytes, pcs: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    table_size = 4 + 12 * len(tags)
    entries = []
    body = b""
    for signature, data in tags:
        entries.append(struct.pack(">4sII", signature, 128 + table_size + len(body), len(data)))
        body += data + bytes(-len(data) % 4)  # tag data starts on 4-byte boundaries
    size = 128 + table_size + len(body)
    header = struct.pack(
        ">I4s4s4s4s4s6H4s4sI4s4sQI12s4s44s",
        size,
        b"\0\0\0\0",  # preferred CMM: none
        b"\x02\x10\x00\x00",  # version 2.1
        device_class,
        colour_space,
        pcs,
        *_ICC_CREATION_DATE,
        b"acsp",
        b"\0\0\0\0",  # platform
        0,  # flags
        b"\0\0\0\0",  # manufacturer
        b"\0\0\0\0",  # model
        0,  # attributes
        0,  # rendering intent: perceptual
        _s15_fixed16(0.9642, 1.0, 0.8249),  # PCS illuminant, D50
        b"\0\0\0\0",  # creator
        bytes(44),  # reserved
    )
    return header + struct.pack(">I", len(tags)) + b"".join(entries) + body


def _s15_fixed16(*values: float) -> bytes:
    return b"".join(struct.pack(">i", round(value * 65536)) for value in values)


def _icc_xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + bytes(4) + _s15_fixed16(x, y, z)


def _icc_gamma(gamma: float) -> bytes:
    return b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256))


def _icc_text(text: str) -> bytes:
    return b"text" + bytes(4) + text.encode("ascii") + b"\0"


def _icc_text_description(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    # ASCII part, then empty Unicode and ScriptCode parts (the latter has a fixed 67-byte field).
    return (
        b"desc"
        + bytes(4)
        + struct.pack(">I", len(ascii_text))
        + ascii_text
        + struct.pack(">IIHB", 0, 0, 0, 0)
        + bytes(67)
    )


def _cmyk_to_lab_lut(grid_points: int) -> bytes:
    """lut8Type mapping CMYK to 8-bit-encoded CIELAB through the impure-ink model."""
    identity_curve = bytes(range(256))
    identity_matrix = _s15_fixed16(1, 0, 0, 0, 1, 0, 0, 0, 1)
    steps = [index / (grid_points - 1) for index in range(grid_points)]
    # The first input channel varies slowest, as the ICC specification orders the grid.
    clut = b"".join(
        bytes(_lab_bytes(_impure_ink_rgb(c, m, y, k))) for c in steps for m in steps for y in steps for k in steps
    )
    header = b"mft1" + bytes(4) + struct.pack(">BBBB", 4, 3, grid_points, 0) + identity_matrix
    return header + identity_curve * 4 + clut + identity_curve * 3


def _impure_ink_rgb(c: float, m: float, y: float, k: float) -> tuple[float, float, float]:
    # Share of red, green and blue light each ink absorbs at full coverage.
    absorption = {
        "c": (0.90, 0.30, 0.08),
        "m": (0.10, 0.85, 0.35),
        "y": (0.02, 0.10, 0.88),
        "k": (0.88, 0.88, 0.88),
    }
    coverage = {"c": c, "m": m, "y": y, "k": k}
    reflected = [1.0, 1.0, 1.0]
    for ink, amount in coverage.items():
        for channel in range(3):
            reflected[channel] *= 1 - amount * absorption[ink][channel]
    return reflected[0], reflected[1], reflected[2]


def _lab_bytes(srgb: tuple[float, float, float]) -> tuple[int, int, int]:
    """sRGB (0..1) to CIELAB (D50), encoded as lut8Type expects: L 0..100 -> 0..255, a/b offset by 128."""
    linear = [v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4 for v in srgb]
    # sRGB to XYZ, Bradford-adapted to D50 (the ICC connection space's white).
    matrix = ((0.4360747, 0.3850649, 0.1430804), (0.2225045, 0.7168786, 0.0606169), (0.0139322, 0.0971045, 0.7141733))
    x, y, z = (sum(row[i] * linear[i] for i in range(3)) for row in matrix)

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116

    fx, fy, fz = f(x / 0.9642), f(y / 1.0), f(z / 0.8249)
    lightness, a, b = 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)

    def clamp(value: float) -> int:
        return max(0, min(255, round(value)))

    return clamp(lightness * 255 / 100), clamp(a + 128), clamp(b + 128)
