"""Truncated originals of every accepted format, made from valid files in code.

Two kinds of damage: a plain cut (the file simply stops, as an interrupted upload or copy leaves
it), and a cut that is closed again so that the container looks whole to its decoder (an end
marker appended, chunk and box lengths rewritten to the bytes that are left). The second kind is
what decoders may pass over in silence: the 177-byte PNG whose header says 10000x10000 is one.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator

import pillow_heif
from PIL import Image

from photo_pipeline.cli import samples

WIDTH, HEIGHT = 640, 480


def scene(width: int = WIDTH, height: int = HEIGHT) -> Image.Image:
    """The samples' landscape, as pixels to encode in any format."""
    with Image.open(io.BytesIO(samples.photo_png(width, height, seed=3))) as image:
        return image.convert("RGB")


def encoded(fmt: str, image: Image.Image | None = None, **options: object) -> bytes:
    """`image` (the scene by default) saved as `fmt`; "HEIF" through pillow_heif, "TIFF-deflate"
    as a TIFF whose directory comes first (as cameras and scanners write it)."""
    image = image or scene()
    if fmt == "TIFF-deflate":
        return deflate_tiff(image)
    buffer = io.BytesIO()
    if fmt == "HEIF":
        pillow_heif.from_pillow(image).save(buffer, quality=80)
    else:
        image.save(buffer, fmt, **options)
    return buffer.getvalue()


def cut(data: bytes, fraction: float) -> bytes:
    """The first `fraction` of the file: the rest never arrived."""
    return data[: int(len(data) * fraction)]


# -- PNG -------------------------------------------------------------------------------------------


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_of_rows(image: Image.Image, rows: int, *, height: int | None = None) -> bytes:
    """A PNG whose header says `image`'s size (or `height` rows) but whose zlib stream holds only
    its first `rows` rows, properly ended, followed by IEND: every chunk and checksum is valid."""
    colour_type, bands = {"L": (0, 1), "RGB": (2, 3), "RGBA": (6, 4)}[image.mode]
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(b"\x00" + image.crop((0, y, image.width, y + 1)).tobytes()) for y in range(rows))
    data += compressor.flush()
    header = struct.pack(">IIBBBBB", image.width, height or image.height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def png_header_10000_square_with_10_rows() -> bytes:
    """The probe's PNG: a few hundred bytes, a header of 10000x10000 grey pixels, data for 10 rows."""
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(b"\x00" + bytes([200]) * 10_000) for _ in range(10)) + compressor.flush()
    header = struct.pack(">IIBBBBB", 10_000, 10_000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def interlaced_png_first_pass(image: Image.Image) -> bytes:
    """An Adam7-interlaced RGB PNG whose data holds only the first pass (every 8th pixel)."""
    first = image.resize((-(-image.width // 8), -(-image.height // 8)), Image.Resampling.NEAREST)
    data = zlib.compress(b"".join(b"\x00" + first.crop((0, y, first.width, y + 1)).tobytes() for y in range(first.height)))
    header = struct.pack(">IIBBBBB", image.width, image.height, 8, 2, 0, 0, 1)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


# -- GIF -------------------------------------------------------------------------------------------


def gif_cut_and_closed(gif: bytes, fraction: float) -> bytes:
    """The GIF's image data cut after `fraction` of its sub-blocks, then closed with a block
    terminator and the trailer: a well-formed file whose LZW data stops early."""
    descriptor = gif.index(b"\x2c", 13 + 3 * 2 ** ((gif[10] & 7) + 1))
    position = descriptor + 10 + 1  # the image descriptor, then the LZW minimum code size
    blocks = []
    while gif[position] != 0:
        blocks.append(position)
        position += gif[position] + 1
    keep = blocks[max(1, int(len(blocks) * fraction))]
    return gif[:keep] + b"\x00\x3b"


# -- WebP ------------------------------------------------------------------------------------------


def webp_cut_and_closed(webp: bytes, fraction: float) -> bytes:
    """A simple WebP (one VP8 or VP8L chunk) with its bitstream cut after `fraction`, the chunk's
    and the RIFF's lengths rewritten to match: the container is whole, the image data is not."""
    kind, size = webp[12:16], struct.unpack("<I", webp[16:20])[0]
    kept = int(size * fraction) & ~1  # chunks are padded to even lengths
    return b"RIFF" + struct.pack("<I", 4 + 8 + kept) + b"WEBP" + kind + struct.pack("<I", kept) + webp[20 : 20 + kept]


# -- TIFF ------------------------------------------------------------------------------------------


def deflate_tiff(image: Image.Image, *, rows_per_strip: int = 32, last_strip_rows: int | None = None) -> bytes:
    """An RGB TIFF with its directory first and Deflate strips (decoded by libtiff). With
    `last_strip_rows`, the last strip's zlib stream holds only that many rows, properly ended."""
    strips = []
    for top in range(0, image.height, rows_per_strip):
        band = image.crop((0, top, image.width, min(image.height, top + rows_per_strip)))
        raw = band.tobytes()
        strips.append(zlib.compress(raw))
    if last_strip_rows is not None:
        top = (len(strips) - 1) * rows_per_strip
        strips[-1] = zlib.compress(image.crop((0, top, image.width, top + last_strip_rows)).tobytes())
    entries = 10
    bits_at = 8 + 2 + 12 * entries + 4
    offsets_at = bits_at + 6
    counts_at = offsets_at + 4 * len(strips)
    position = counts_at + 4 * len(strips)
    offsets = []
    for strip in strips:
        offsets.append(position)
        position += len(strip)

    def entry(tag: int, kind: int, count: int, value: int) -> bytes:
        return struct.pack("<HHII", tag, kind, count, value)

    directory = [
        entry(256, 4, 1, image.width),
        entry(257, 4, 1, image.height),
        entry(258, 3, 3, bits_at),
        entry(259, 3, 1, 8),  # Deflate
        entry(262, 3, 1, 2),  # RGB
        entry(273, 4, len(strips), offsets_at),
        entry(277, 3, 1, 3),
        entry(278, 4, 1, rows_per_strip),
        entry(279, 4, len(strips), counts_at),
        entry(284, 3, 1, 1),
    ]
    return (
        b"II*\x00"
        + struct.pack("<IH", 8, entries)
        + b"".join(directory)
        + struct.pack("<I", 0)
        + struct.pack("<HHH", 8, 8, 8)
        + struct.pack(f"<{len(strips)}I", *offsets)
        + struct.pack(f"<{len(strips)}I", *(len(s) for s in strips))
        + b"".join(strips)
    )


# -- HEIC and AVIF (ISO base media files) ------------------------------------------------------


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int, int]]:
    """(type, offset, header length, size) of each box between `start` and `end`."""
    position = start
    while position < end:
        size, kind = struct.unpack(">I4s", data[position : position + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[position + 8 : position + 16])[0], 16
        elif size == 0:
            size = end - position
        yield kind, position, header, size
        position += size


def _largest_extent(data: bytes) -> tuple[int, int, int, int]:
    """(offset, length, where the length field is, its width) of the largest item extent in the
    `iloc` box: the coded image."""
    meta = next((p, h, s) for kind, p, h, s in _boxes(data, 0, len(data)) if kind == b"meta")
    iloc = next((p, h) for kind, p, h, _ in _boxes(data, meta[0] + meta[1] + 4, meta[0] + meta[2]) if kind == b"iloc")
    position = iloc[0] + iloc[1]
    version = data[position]
    position += 4
    offset_size, length_size = data[position] >> 4, data[position] & 15
    base_size, index_size = data[position + 1] >> 4, (data[position + 1] & 15 if version in (1, 2) else 0)
    position += 2
    id_size = 4 if version == 2 else 2
    count = int.from_bytes(data[position : position + id_size], "big")
    position += id_size
    extents = []
    for _ in range(count):
        position += id_size + (2 if version in (1, 2) else 0) + 2
        base = int.from_bytes(data[position : position + base_size], "big")
        position += base_size
        extent_count = struct.unpack(">H", data[position : position + 2])[0]
        position += 2
        for _ in range(extent_count):
            position += index_size
            offset = int.from_bytes(data[position : position + offset_size], "big")
            position += offset_size
            extents.append((base + offset, int.from_bytes(data[position : position + length_size], "big"), position, length_size))
            position += length_size
    return max(extents, key=lambda extent: extent[1])


def _replace_item_data(data: bytes, new_item: bytes) -> bytes:
    """The file with its coded image replaced by `new_item`, the `iloc` length and the `mdat`
    box's size rewritten: a well-formed container (the image must be the file's last data)."""
    offset, length, field, width = _largest_extent(data)
    shorter = length - len(new_item)
    result = bytearray(data[:offset] + new_item + data[offset + length :])
    result[field : field + width] = len(new_item).to_bytes(width, "big")
    for kind, position, _header, size in _boxes(data, 0, len(data)):
        if kind == b"mdat" and position < offset < position + size:
            result[position : position + 4] = struct.pack(">I", size - shorter)
    return bytes(result)


def heic_slice_cut(heic: bytes, fraction: float) -> bytes:
    """An HEIC whose largest HEVC NAL unit (the picture's slice) is cut after `fraction`, its
    length prefix and the container rewritten: libheif reads a whole file, libde265 a short slice."""
    offset, length, _field, _width = _largest_extent(heic)
    item = heic[offset : offset + length]
    units = []
    position = 0
    while position < len(item):
        size = struct.unpack(">I", item[position : position + 4])[0]
        units.append((position, size))
        position += 4 + size
    start, size = max(units, key=lambda unit: unit[1])
    kept = int(size * fraction)
    new_item = item[:start] + struct.pack(">I", kept) + item[start + 4 : start + 4 + kept] + item[start + 4 + size :]
    return _replace_item_data(heic, new_item)


def avif_item_cut(avif: bytes, fraction: float) -> bytes:
    """An AVIF whose AV1 data is cut after `fraction`, with the `iloc` length and `mdat` rewritten."""
    offset, length, _field, _width = _largest_extent(avif)
    return _replace_item_data(avif, avif[offset : offset + int(length * fraction)])
