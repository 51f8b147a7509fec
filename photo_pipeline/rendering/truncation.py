"""Originals whose data ends before their image does, as far as the one decode can tell.

Most decoders raise when the data runs out (Pillow's "image file is truncated" for PNG, GIF, BMP
and uncompressed TIFF; libtiff's read errors; libwebp; libheif and libavif on a cut container),
and render.py reports that as a RenderError. This module finds what decoders pass over in
silence, from the pixels of the one decode that rendering makes anyway:

- PNG: a zlib stream that ends properly after fewer rows than the header promises (the 177-byte
  PNG whose header says 10000x10000). Pillow's decoder stops at the stream's end and leaves the
  other rows at zero. Certain: the photo fails.
- JPEG: libjpeg pads missing scan data with mid-grey and raises nothing. A real photo can end in
  that grey, so it is a flag, not a failure.
- HEIC: libde265 leaves the blocks of a cut HEVC slice at YCbCr zero, which is pure green
  (0, ~136, 0) once converted, and libheif reports nothing. A flag too.

Pure: the decoded image and the original's bytes in, a finding out. The PNG check reads the
original's IDAT chunks again, but only for a PNG whose last row is entirely zero, inflating them in
64 KiB steps without keeping anything (no second decode, no image-sized buffer).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image


@dataclass(frozen=True)
class Truncation:
    """What the decode shows of an original whose data ended early."""

    message: str
    # True: the data provably ends before the image (the photo fails); False: the pixels look like
    # a decoder's padding but could be real (the photo completes, flagged with the message).
    certain: bool


def find_truncation(image: Image.Image, source_format: str, original: bytes | BinaryIO) -> Truncation | None:
    """The damage a decoder passed over in silence in `image` (as decoded: before EXIF rotation,
    so its last row is the last row of the data), or None. `original`: the bytes it came from."""
    if source_format == "PNG":
        return _png_rows_missing(image, original)
    if source_format == "JPEG":
        return _jpeg_grey_padding(image)
    if source_format == "HEIF":
        return _heif_green_padding(image)
    return None


# -- PNG -----------------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_INFLATE_STEP = 64 * 1024
_READ_STEP = 64 * 1024
# Samples per pixel of each PNG colour type (grey, RGB, palette, grey + alpha, RGBA).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7's passes: first column, first row, column step, row step.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlaced: bool

    def row_bytes(self, width: int) -> int:
        """One filtered row of `width` pixels: the filter byte and the packed samples."""
        bits = width * self.bit_depth * _PNG_CHANNELS.get(self.colour_type, 4)
        return 1 + (bits + 7) // 8

    def data_bytes(self) -> int:
        """What the image data inflates to when nothing is missing."""
        if not self.interlaced:
            return self.height * self.row_bytes(self.width)
        total = 0
        for x0, y0, dx, dy in _ADAM7:
            width, height = -(-(self.width - x0) // dx), -(-(self.height - y0) // dy)
            if width > 0 and height > 0:
                total += height * self.row_bytes(width)
        return total


def _png_rows_missing(image: Image.Image, original: bytes | BinaryIO) -> Truncation | None:
    # Missing rows are left at zero; a photo whose last row is not all zero is whole (nearly all).
    if not _last_row_is_zero(image):
        return None
    found = png_inflated_bytes(original)
    if found is None:
        return None
    header, inflated = found
    expected = header.data_bytes()
    if inflated >= expected:
        return None
    if header.interlaced:
        extent = f"after {inflated / expected:.0%} of its interlaced image data"
    else:
        extent = f"after {inflated // header.row_bytes(header.width)} of its {header.height} rows"
    return Truncation(
        f"the PNG's image data ends {extent} ({inflated:,} of {expected:,} bytes once inflated), although its "
        f"header says {header.width}x{header.height}: the file is truncated (the rest would render as empty pixels)",
        certain=True,
    )


def _last_row_is_zero(image: Image.Image) -> bool:
    return _all_equal_to(image.crop((0, image.height - 1, image.width, image.height)), 0)


def png_inflated_bytes(original: bytes | BinaryIO) -> tuple[PngHeader, int] | None:
    """The PNG's header, and how many bytes its IDAT stream inflates to, counted up to the
    header's full amount (no further: a whole image is not inflated past the point that proves
    it whole). None when the file is not laid out as a PNG this reader follows."""
    stream = io.BytesIO(original) if isinstance(original, bytes | bytearray | memoryview) else original
    position = stream.tell()
    try:
        stream.seek(0)
        return _inflate_idat(stream)
    finally:
        stream.seek(position)


def _inflate_idat(stream: BinaryIO) -> tuple[PngHeader, int] | None:
    if stream.read(len(_PNG_SIGNATURE)) != _PNG_SIGNATURE:
        return None
    header: PngHeader | None = None
    inflater = zlib.decompressobj()
    inflated = 0
    seen_data = False
    while True:
        head = stream.read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IHDR":
            header = _png_header(stream.read(length))
            stream.seek(4, io.SEEK_CUR)  # CRC
            continue
        if kind != b"IDAT":
            if seen_data:
                break  # the IDAT chunks are consecutive: the image data is over
            stream.seek(length + 4, io.SEEK_CUR)
            continue
        if header is None:
            return None
        seen_data = True
        expected = header.data_bytes()
        try:
            inflated += _inflate_chunk(stream, length, inflater, expected - inflated)
        except zlib.error:
            return None  # corrupt rather than short: the decoder's own verdict stands
        if inflated >= expected or inflater.eof:
            break
        stream.seek(4, io.SEEK_CUR)  # CRC
    return (header, inflated) if header is not None and seen_data else None


def _png_header(payload: bytes) -> PngHeader | None:
    if len(payload) < 13:
        return None
    width, height, bit_depth, colour_type, _compression, _filter, interlace = struct.unpack(">IIBBBBB", payload[:13])
    return PngHeader(width, height, bit_depth, colour_type, interlace == 1)


def _inflate_chunk(stream: BinaryIO, length: int, inflater: zlib._Decompress, wanted: int) -> int:
    """Inflate one IDAT chunk's `length` bytes, counting the output and keeping none of it;
    stops once `wanted` bytes came out or the stream ended."""
    counted = 0
    left = length
    while left > 0 and counted < wanted and not inflater.eof:
        piece = stream.read(min(_READ_STEP, left))
        if not piece:
            break
        left -= len(piece)
        counted += len(inflater.decompress(piece, _INFLATE_STEP))
        while inflater.unconsumed_tail and counted < wanted:
            counted += len(inflater.decompress(inflater.unconsumed_tail, _INFLATE_STEP))
    return counted


# -- JPEG ----------------------------------------------------------------------------------------

# libjpeg-turbo meeting the EOI marker before the scan data is complete ("Corrupt JPEG data:
# premature end of data segment") leaves every missing block's coefficients at zero and carries
# on; Pillow (13.0) neither raises nor exposes libjpeg's warning count. Zero coefficients decode
# to exactly mid-grey, so a truncated baseline JPEG ends in a band of (128, 128, 128) whole MCU
# rows high. A real photo can end in exactly that grey (a flat letterbox), so this is a flag,
# not a failure. A progressive JPEG cut short keeps its earlier scans and shows a blurred but
# complete picture: that damage leaves no trace in the pixels.
_GREY = 128
_MIN_GREY_ROWS = 8  # one MCU row at 1/8 draft scale is 1 pixel; at full scale 8 or 16 rows


def _jpeg_grey_padding(image: Image.Image) -> Truncation | None:
    """A flag when the decoded JPEG ends in the mid-grey band libjpeg pads missing data with."""
    if image.mode not in ("RGB", "L") or image.height < 2 * _MIN_GREY_ROWS:
        return None
    # Nearly every photo ends in a row that is not grey: one small crop settles it, no bisection.
    if not _is_grey(image.crop((0, image.height - _MIN_GREY_ROWS, image.width, image.height))):
        return None
    grey_rows = trailing_rows(image, _is_grey)
    if grey_rows < _MIN_GREY_ROWS or grey_rows >= image.height:
        return None  # no band, or a wholly grey picture, which a real image may well be
    share = grey_rows / image.height
    return Truncation(
        f"the bottom {share:.0%} of the decoded image ({grey_rows} of {image.height} rows) is flat "
        "mid-grey, which is how libjpeg pads a JPEG whose data ends early: the file is probably truncated",
        certain=False,
    )


def _is_grey(band: Image.Image) -> bool:
    return _all_equal_to(band, _GREY)


# -- HEIC ----------------------------------------------------------------------------------------

# The bottom-right corner looked at: HEVC codes blocks in raster order, so a cut slice leaves its
# last blocks (the bottom-right of the picture) undecoded, and the smallest of them is 8x8.
_HEIF_CORNER = 4


def _heif_green_padding(image: Image.Image) -> Truncation | None:
    """A flag when the decoded HEIC's bottom-right corner is the flat pure green that libde265
    leaves where HEVC data is missing (YCbCr zero: red and blue clip to 0 under every matrix and
    range, green lands between 75 and 140 depending on them)."""
    if image.mode not in ("RGB", "RGBA") or image.width < _HEIF_CORNER or image.height < _HEIF_CORNER:
        return None
    corner = image.crop((image.width - _HEIF_CORNER, image.height - _HEIF_CORNER, image.width, image.height))
    colour = _flat_green(corner)
    if colour is None:
        return None
    padded_rows = trailing_rows(image, lambda band: _flat_green(band) == colour)
    extent = (
        f"the bottom {padded_rows / image.height:.0%} of the decoded image ({padded_rows} of {image.height} rows)"
        if padded_rows
        else "the end of the decoded image's last rows"
    )
    return Truncation(
        f"{extent} is flat green {colour}, which is how libde265 leaves an HEVC picture whose data ends early: "
        "the file is probably truncated",
        certain=False,
    )


def _flat_green(block: Image.Image) -> tuple[int, int, int] | None:
    """The block's one colour when it is a pure green (red and blue exactly 0), else None."""
    (red, green, blue) = block.getextrema()[:3]
    if red != (0, 0) or blue != (0, 0) or green[0] != green[1] or green[0] == 0:
        return None
    return (0, green[0], 0)


# -- shared ----------------------------------------------------------------------------------------


def _all_equal_to(band: Image.Image, value: int) -> bool:
    """Every sample of every band of `band` is `value`."""
    extrema = band.getextrema()
    pairs = extrema if isinstance(extrema[0], tuple) else (extrema,)
    return all(pair == (value, value) for pair in pairs)


def trailing_rows(image: Image.Image, padded: Callable[[Image.Image], bool]) -> int:
    """How many rows at the bottom of `image` are padding (`padded` holds for the band they
    form), by bisection: padding is monotone from the bottom up, so its top is found in
    log(height) crops."""
    low, high = 0, image.height  # invariant: the bottom `low` rows are padding; `high`+ rows are not all padding
    while low < high:
        middle = (low + high + 1) // 2
        if padded(image.crop((0, image.height - middle, image.width, image.height))):
            low = middle
        else:
            high = middle - 1
    return low
