"""The watermark: a text and/or logo mark blended into a corner of a rendition.

Pure and I/O-free: an image and options in, a new image out. The mark is sized relative to the
image it lands on, so a 400-px thumbnail and a 1600-px preview carry the same-looking mark.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

POSITIONS: tuple[str, ...] = ("bottom-right", "bottom-left", "top-right", "top-left", "center")

# Below this the bundled font turns to mush; thumbnails still get a legible mark.
MIN_MARK_HEIGHT_PX = 8
# Gap between the mark and the image edge, as a share of the image's shorter side.
MARGIN_SHARE = 0.025
# White fill with a dark outline reads on both a snowfield and a night sky.
TEXT_FILL = (255, 255, 255, 255)
TEXT_STROKE = (0, 0, 0, 255)


@dataclass(frozen=True)
class WatermarkOptions:
    text: str | None = "© photo_pipeline"
    # PNG (or any image Pillow reads) with alpha, drawn before the text when both are set.
    logo_png: bytes | None = None
    opacity: float = 0.45
    position: str = "bottom-right"
    # Height of the mark as a share of the image's shorter side.
    scale: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 <= self.opacity <= 1.0:
            raise ValueError(f"watermark opacity must be between 0 and 1, got {self.opacity}")
        if self.position not in POSITIONS:
            raise ValueError(f"watermark position must be one of {', '.join(POSITIONS)}, got {self.position!r}")
        if not 0.0 < self.scale <= 1.0:
            raise ValueError(f"watermark scale must be above 0 and at most 1, got {self.scale}")

    @property
    def is_visible(self) -> bool:
        return self.opacity > 0 and (bool(self.text) or self.logo_png is not None)


def apply_watermark(image: Image.Image, options: WatermarkOptions, *, in_place: bool = False) -> Image.Image:
    """Return a copy of `image` with the mark blended in; `image` itself is never modified, unless
    `in_place` is set, when the mark is blended into `image` and it is returned (a caller that owns
    the image saves a full-size copy).

    An image too small to hold a mark (a few pixels across) is returned as is.
    """
    if not options.is_visible:
        return image
    short_side = min(image.size)
    margin = max(2, round(short_side * MARGIN_SHARE))
    room = (image.width - 2 * margin, image.height - 2 * margin)
    height = min(mark_height(image.size, options.scale), room[1])
    if height < 1 or room[0] < 1:
        return image
    mark = _faded_mark(options, height, room[0])
    target = image if in_place else image.copy()
    _blend_into(target, mark, _place(image.size, mark.size, options.position, margin))
    return target


def mark_height(image_size: tuple[int, int], scale: float) -> int:
    """Target height of the mark in pixels for an image of this size."""
    return max(MIN_MARK_HEIGHT_PX, round(min(image_size) * scale))


# Every photo of a run has the same options and nearly always one of a few sizes (previews and
# thumbnails of the same aspect ratio), so the mark is drawn once per size, not once per rendition.
@lru_cache(maxsize=64)
def _faded_mark(options: WatermarkOptions, height: int, max_width: int) -> Image.Image:
    """The mark at `height`, no wider than `max_width`, with the opacity applied; shared, read only."""
    mark = _build_mark(options, height)
    if mark.width > max_width:
        # Re-render smaller rather than resample the raster, so the text stays crisp.
        mark = _build_mark(options, max(1, height * max_width // mark.width))
        if mark.width > max_width:
            mark = mark.resize((max_width, max(1, mark.height * max_width // mark.width)), Image.Resampling.LANCZOS)
    faded = _with_opacity(mark, options.opacity)
    # Loaded fully here, so threads sharing the cached image only ever read it.
    faded.load()
    return faded


def _build_mark(options: WatermarkOptions, height: int) -> Image.Image:
    """The opaque mark (logo, then text) on a transparent canvas, `height` pixels tall."""
    parts: list[Image.Image] = []
    if options.logo_png is not None:
        parts.append(_scaled_logo(options.logo_png, height))
    if options.text:
        parts.append(_text_mark(options.text, height))
    return _side_by_side(parts, gap=max(1, round(height * 0.3)))


def _text_mark(text: str, height: int) -> Image.Image:
    # Pillow's bundled scalable font: no font file to ship or find on the worker.
    font = ImageFont.load_default(size=height)
    stroke = max(1, round(height / 14))
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    canvas = Image.new("RGBA", (max(1, int(right - left)), max(1, int(bottom - top))), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text(
        (-left, -top), text, font=font, fill=TEXT_FILL, stroke_width=stroke, stroke_fill=TEXT_STROKE
    )
    return canvas


def _scaled_logo(logo_png: bytes, height: int) -> Image.Image:
    logo = decode_logo(logo_png)
    width = max(1, round(logo.width * height / logo.height))
    return logo.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)


@lru_cache(maxsize=8)
def decode_logo(logo_png: bytes) -> Image.Image:
    """The logo as RGBA, decoded once per distinct logo (every rendition of a run shares it).

    Raises ValueError with a readable message when the bytes are not an image.
    """
    try:
        with Image.open(io.BytesIO(logo_png)) as opened:
            logo = opened.convert("RGBA")
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"watermark logo is not a readable image ({exc})") from exc
    # Loaded fully here, so threads sharing the cached image only ever read it.
    logo.load()
    return logo


def _side_by_side(parts: list[Image.Image], gap: int) -> Image.Image:
    width = sum(part.width for part in parts) + gap * (len(parts) - 1)
    height = max(part.height for part in parts)
    canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    x = 0
    for part in parts:
        canvas.alpha_composite(part, (x, (height - part.height) // 2))
        x += part.width + gap
    return canvas


def _with_opacity(mark: Image.Image, opacity: float) -> Image.Image:
    lut = [round(alpha * opacity) for alpha in range(256)]
    faded = mark.copy()
    faded.putalpha(mark.getchannel("A").point(lut))
    return faded


def _place(image_size: tuple[int, int], mark_size: tuple[int, int], position: str, margin: int) -> tuple[int, int]:
    free_x = image_size[0] - mark_size[0]
    free_y = image_size[1] - mark_size[1]
    if position == "center":
        return free_x // 2, free_y // 2
    vertical, horizontal = position.split("-")
    x = margin if horizontal == "left" else free_x - margin
    y = margin if vertical == "top" else free_y - margin
    return x, y


def _blend_into(image: Image.Image, mark: Image.Image, origin: tuple[int, int]) -> None:
    if image.mode == "RGBA":
        image.alpha_composite(mark, origin)
    else:
        # Pasting through the mark's own alpha blends it: out = mark * a + photo * (1 - a).
        image.paste(mark if image.mode == "RGB" else mark.convert(image.mode), origin, mark)
