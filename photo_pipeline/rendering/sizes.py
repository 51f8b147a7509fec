"""Responsive sizes: which sizes a photo gets, and the order they are made in.

Pure arithmetic, no pixels. A size is a long side, like the preview's and the thumbnail's
(PHOTO_PREVIEW_SIZE, PHOTO_THUMB_SIZE): size 800 fits the photo in an 800x800 box, so a
landscape gets 800x600 and a portrait 600x800. A photo gets each configured size (PHOTO_RENDITION_SIZES)
smaller than its long side; the sizes it cannot fill are served by one rendition at its own size,
filed under the smallest of them (never upscaled, never two files of the same pixels). Every image
is resized from the next larger one (the chain starts at the decode), so each resize is small.

Why long sides and not widths: with widths, a portrait's sizes fall between the preview's
(1200x1600 for 1600) and cost a resize of their own (1200 -> 800 wide is a 1.5 step: 21 ms of
bicubic on a 12-MP portrait, 1.48x the base pair against a landscape's 1.17x). By long side every
orientation lines up with the preview and the thumbnail: the default 1600 *is* the preview, 400 the
thumbnail, 800 a 2x2 average of the preview (`render_benchmark.py --sizes`, docs/operations.md).
A page's srcset still gets real widths: the renditions table records each file's width and height.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_SIZES", "MAX_SIZES", "SMALL_SIZES", "SizedTarget", "fit_long_side", "planned_sizes", "resize_chain"]

# The sizes a default configuration renders (PHOTO_RENDITION_SIZES): 1.15-1.2x the base pair on
# 12-MP JPEGs of either orientation (`render_benchmark.py --sizes`, docs/operations.md#renditions).
DEFAULT_SIZES: tuple[int, ...] = (400, 800, 1600, 2400)
# At most this many sizes: each costs every photo a file per format and a URL per page of the album
# API; a srcset needs a handful, and a long list pasted by mistake would multiply the work.
MAX_SIZES = 10
# What the benchmark compares besides the default: the two smallest sizes alone.
SMALL_SIZES: tuple[int, ...] = (400, 800)


@dataclass(frozen=True)
class SizedTarget:
    """One rendition to make: filed under the configured size `label`, `size` pixels (w, h)."""

    label: int
    size: tuple[int, int]


def fit_long_side(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """`size` scaled so its long side is `long_side` (the other side rounded, at least 1); never larger."""
    width, height = size
    longest = max(width, height)
    if longest <= long_side:
        return size
    scale = long_side / longest
    fitted = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Rounding must not shave a pixel off the side that defines the box.
    return (long_side, fitted[1]) if width >= height else (fitted[0], long_side)


def planned_sizes(source: tuple[int, int], sizes: tuple[int, ...]) -> list[SizedTarget]:
    """The renditions a photo of upright size `source` gets, largest first."""
    longest = max(source)
    targets: list[SizedTarget] = []
    unfillable = sorted(size for size in set(sizes) if size >= longest)
    if unfillable:
        # The photo at its own size, once, under the smallest size it cannot fill.
        targets.append(SizedTarget(unfillable[0], source))
    targets += [
        SizedTarget(size, fit_long_side(source, size)) for size in sorted(set(sizes), reverse=True) if size < longest
    ]
    return targets


def resize_chain(sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Distinct sizes, largest first: the order each is made from the previous one."""
    return sorted(set(sizes), key=lambda size: (size[0] * size[1], size), reverse=True)
