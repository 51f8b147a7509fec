"""Responsive sizes: which widths a photo gets, and the order they are made in.

Pure arithmetic, no pixels. A photo gets each configured width (PHOTO_RENDITION_WIDTHS) narrower
than itself; the configured widths it cannot fill are served by one rendition at its own width,
filed under the smallest of them (never upscaled, never two files of the same pixels). Every image
is resized from the next larger one (the chain starts at the decode), so each resize is small.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_WIDTHS", "WISHED_WIDTHS", "SizedTarget", "fit_width", "planned_widths", "resize_chain"]

# The widths a default configuration renders (PHOTO_RENDITION_WIDTHS). From the preview's decode
# (rendering/render.py `_plan`) they cost 1.1-1.25x the base pair on 12-MP landscape JPEGs and about
# 1.5x on portraits (`render_benchmark.py --sizes`, docs/operations.md#renditions); the smallest
# useful list (400, 800) saves little on portraits (1.5x too: the 800 step is a 1.5 resize there).
DEFAULT_WIDTHS: tuple[int, ...] = (400, 800, 1600, 2400)
# What the benchmark compares besides the default: the two smallest widths alone.
WISHED_WIDTHS: tuple[int, ...] = (400, 800)


@dataclass(frozen=True)
class SizedTarget:
    """One rendition to make: filed under the configured width `label`, `size` pixels."""

    label: int
    size: tuple[int, int]


def fit_width(size: tuple[int, int], width: int) -> tuple[int, int]:
    """`size` scaled to `width` pixels wide (the height rounded, at least 1); never larger."""
    source_width, source_height = size
    if width >= source_width:
        return size
    return (width, max(1, round(source_height * width / source_width)))


def planned_widths(source: tuple[int, int], widths: tuple[int, ...]) -> list[SizedTarget]:
    """The renditions a photo of upright size `source` gets, largest first."""
    targets: list[SizedTarget] = []
    unfillable = sorted(width for width in set(widths) if width >= source[0])
    if unfillable:
        # The photo at its own size, once, under the smallest width it cannot fill.
        targets.append(SizedTarget(unfillable[0], source))
    targets += [SizedTarget(width, fit_width(source, width)) for width in sorted(set(widths), reverse=True) if width < source[0]]
    return targets


def resize_chain(sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Distinct sizes, largest first: the order each is made from the previous one."""
    return sorted(set(sizes), key=lambda size: (size[0] * size[1], size), reverse=True)
