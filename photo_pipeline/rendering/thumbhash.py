"""ThumbHash placeholders: a ~25-byte sketch of a photo a page paints while the image loads.

Pure. Computed from the thumbnail (before its watermark) with `fast_thumbhash`, the Python binding
of the reference implementation's own Rust crate (evanw/thumbhash): the reference algorithm, at a
fraction of a millisecond. Stored base64-encoded, as pages decode it (`thumbHashToDataURL`).
"""

from __future__ import annotations

import base64

from fast_thumbhash import (
    rgba_to_thumb_hash,
    thumb_hash_to_approximate_aspect_ratio,
    thumb_hash_to_average_rgba,
)
from PIL import Image

__all__ = ["MAX_THUMBHASH_SIDE", "aspect_ratio", "average_rgba", "thumbhash_of"]

# The algorithm takes images of at most 100x100 pixels.
MAX_THUMBHASH_SIDE = 100


def thumbhash_of(image: Image.Image) -> str:
    """The ThumbHash (base64) of an image; the image itself is left as it is."""
    small = image.copy() if max(image.size) <= MAX_THUMBHASH_SIDE else None
    if small is None:
        small = image.resize(_fit(image.size), Image.Resampling.BOX)
    rgba = small.convert("RGBA")
    return base64.b64encode(bytes(rgba_to_thumb_hash(rgba.width, rgba.height, rgba.tobytes()))).decode("ascii")


def average_rgba(thumbhash: str) -> tuple[float, float, float, float]:
    """The average colour a hash encodes (0..1 per channel): what a page shows before decoding it."""
    red, green, blue, alpha = thumb_hash_to_average_rgba(base64.b64decode(thumbhash))
    return (red, green, blue, alpha)


def aspect_ratio(thumbhash: str) -> float:
    """Width / height as the hash approximates it."""
    return float(thumb_hash_to_approximate_aspect_ratio(base64.b64decode(thumbhash)))


def _fit(size: tuple[int, int]) -> tuple[int, int]:
    width, height = size
    scale = MAX_THUMBHASH_SIDE / max(width, height)
    return (max(1, round(width * scale)), max(1, round(height * scale)))
