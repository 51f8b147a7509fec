"""The bucket's key layout: the one place that knows where originals and renditions live.

Originals:   raw/{album_id}/{photo_id}.{ext}
Renditions:  processed/thumbs/{album_id}/{photo_id}.{fmt}
             processed/previews/{album_id}/{photo_id}.{fmt}
             processed/{size}/{album_id}/{photo_id}.{fmt}    the responsive sizes, one folder a
                                                           configured size (digits only)

Keys under raw/ written by anything but our upload flow are never trusted as paths: parsing
yields UUIDs or nothing, and adoption mints stable ids for anything else.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

RAW_PREFIX = "raw/"
PROCESSED_PREFIX = "processed/"
THUMBS_PREFIX = "processed/thumbs/"
PREVIEWS_PREFIX = "processed/previews/"

# Namespace for ids minted from keys that are not UUID-shaped, so the same key always yields the
# same id (sensor ticks and reconciliation runs may see one object many times).
ADOPTION_NAMESPACE = uuid.UUID("6f0c6c1e-8d0b-4b8e-9a55-0d6f1d2c9a11")

_EXTENSION = re.compile(r"^[a-z0-9]{1,8}$")

RENDITION_EXTENSIONS = {"JPEG": "jpg", "WEBP": "webp", "AVIF": "avif"}

_CONTENT_TYPES = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "bmp": "image/bmp",
    "heic": "image/heic",
    "heif": "image/heif",
    "avif": "image/avif",
}


class InvalidKeyPart(ValueError):
    """An id or extension cannot be placed in a key."""


def normalise_extension(ext: str) -> str:
    cleaned = ext.lower().lstrip(".")
    if cleaned == "jpeg":
        cleaned = "jpg"
    if not _EXTENSION.match(cleaned):
        raise InvalidKeyPart(f"unusable file extension {ext!r}")
    return cleaned


def content_type_for_extension(ext: str) -> str:
    return _CONTENT_TYPES.get(ext.lower().lstrip("."), "application/octet-stream")


def is_supported_extension(ext: str) -> bool:
    return ext.lower().lstrip(".") in _CONTENT_TYPES


def supported_extensions() -> tuple[str, ...]:
    """The extensions of the image types we accept, normalised (jpg, not jpeg), sorted."""
    return tuple(sorted({normalise_extension(ext) for ext in _CONTENT_TYPES}))


def raw_key(album_id: uuid.UUID, photo_id: uuid.UUID, ext: str) -> str:
    return f"{RAW_PREFIX}{album_id}/{photo_id}.{normalise_extension(ext)}"


def rendition_extension(fmt: str) -> str:
    try:
        return RENDITION_EXTENSIONS[fmt.upper()]
    except KeyError:
        raise InvalidKeyPart(f"unknown rendition format {fmt!r}") from None


def thumb_key(album_id: uuid.UUID, photo_id: uuid.UUID, fmt: str) -> str:
    return f"{THUMBS_PREFIX}{album_id}/{photo_id}.{rendition_extension(fmt)}"


def preview_key(album_id: uuid.UUID, photo_id: uuid.UUID, fmt: str) -> str:
    return f"{PREVIEWS_PREFIX}{album_id}/{photo_id}.{rendition_extension(fmt)}"


def sized_prefix(size: int) -> str:
    """Where the responsive size filed under `size` lives (every album)."""
    if size < 1:
        raise InvalidKeyPart(f"unusable rendition size {size}")
    return f"{PROCESSED_PREFIX}{size}/"


def sized_key(album_id: uuid.UUID, photo_id: uuid.UUID, size: int, fmt: str) -> str:
    return f"{sized_prefix(size)}{album_id}/{photo_id}.{rendition_extension(fmt)}"


def is_sized_key(key: str) -> bool:
    """A key of a responsive size: processed/{digits}/..., not thumbs/ or previews/."""
    if not key.startswith(PROCESSED_PREFIX):
        return False
    folder = key[len(PROCESSED_PREFIX) :].split("/", 1)[0]
    return folder.isascii() and folder.isdigit()


def sized_prefixes_in_key_order(sizes: Iterable[int], album_id: uuid.UUID | None = None) -> list[str]:
    """The sized folders (one album's slice of each, with `album_id`) in the bucket's key order, so
    their listings, one after the other, make one sorted stream."""
    prefixes = [sized_prefix(size) + (f"{album_id}/" if album_id else "") for size in set(sizes)]
    return sorted(prefixes, key=lambda prefix: prefix.encode())


def sizes_of_folders(folders: Iterable[str]) -> list[int]:
    """The sizes of the sized folders among these folder keys (`processed/<digits>/`, as a folder
    listing of `processed/` gives them), sorted."""
    sizes = set()
    for folder in folders:
        name = folder.removeprefix(PROCESSED_PREFIX).rstrip("/")
        if folder.startswith(PROCESSED_PREFIX) and name.isascii() and name.isdigit() and int(name) >= 1:
            sizes.add(int(name))
    return sorted(sizes)


def photo_key_prefixes(album_id: uuid.UUID, photo_id: uuid.UUID, sizes: Iterable[int]) -> list[str]:
    """Where an object carrying this photo's id can be, as listing prefixes: its original under
    any extension, its thumbnail, its preview and each sized folder's file, in any format."""
    return [f"{prefix}{photo_id}." for prefix in album_key_prefixes(album_id, sizes)]


def album_key_prefixes(album_id: uuid.UUID, sizes: Iterable[int]) -> list[str]:
    """Every folder of the album's objects: originals, thumbnails, previews and each sized folder."""
    album = album_prefixes(album_id)
    return [album.raw, album.thumbs, album.previews, *(f"{sized_prefix(size)}{album_id}/" for size in sorted(set(sizes)))]


def carried_photo_id(key: str) -> uuid.UUID | None:
    """The photo id a key stands for: under raw/ as adoption reads (or mints) it, elsewhere its
    file name's when UUID-shaped."""
    if key.startswith(RAW_PREFIX):
        identity = identify_raw_key(key)
        return identity.photo_id if identity is not None else None
    return photo_id_from_key(key)


@dataclass(frozen=True)
class AlbumPrefixes:
    """Where one album's objects live: its slice of each of the three listings."""

    raw: str
    thumbs: str
    previews: str


def album_prefixes(album_id: uuid.UUID) -> AlbumPrefixes:
    return AlbumPrefixes(f"{RAW_PREFIX}{album_id}/", f"{THUMBS_PREFIX}{album_id}/", f"{PREVIEWS_PREFIX}{album_id}/")


@dataclass(frozen=True)
class RawObjectIdentity:
    """What a key under raw/ says about its photo, with ids minted where the key has none."""

    album_id: uuid.UUID
    photo_id: uuid.UUID
    extension: str
    # True when both ids were read from the key, i.e. it has our upload flow's shape.
    canonical: bool


def _as_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def identify_raw_key(key: str) -> RawObjectIdentity | None:
    """Album and photo id for an object under raw/; None for keys that are not files under raw/.

    Non-UUID album folders and file names get ids derived from the key itself (uuid5), so a
    repeated look at the same object always yields the same ids.
    """
    if not key.startswith(RAW_PREFIX) or key.endswith("/"):
        return None
    rest = key[len(RAW_PREFIX) :]
    parts = rest.split("/")
    name = parts[-1]
    stem, _, ext = PurePosixPath(name).name.partition(".")
    if not stem:
        return None
    album_part = parts[0] if len(parts) >= 2 else ""
    album_id = _as_uuid(album_part) if len(parts) == 2 else None
    photo_id = _as_uuid(stem) if len(parts) == 2 else None
    canonical = album_id is not None and photo_id is not None
    if album_id is None:
        album_id = uuid.uuid5(ADOPTION_NAMESPACE, f"album:{album_part or '(none)'}")
    if photo_id is None:
        photo_id = uuid.uuid5(ADOPTION_NAMESPACE, f"photo:{key}")
    extension = ext.rsplit(".", 1)[-1].lower() if ext else ""
    return RawObjectIdentity(album_id=album_id, photo_id=photo_id, extension=extension, canonical=canonical)


def photo_id_from_key(key: str) -> uuid.UUID | None:
    """The photo id a raw or processed key carries in its file name, if it is UUID-shaped."""
    stem = PurePosixPath(key).name.split(".", 1)[0]
    return _as_uuid(stem)


# -- what the photo table can hold --------------------------------------------------------------
#
# S3 accepts any UTF-8 string of up to 1024 bytes as a key; the photo table does not. One object
# whose key the table cannot hold must be skipped and reported, never allowed to fail a batch
# (and with it every sensor tick or reconcile run that meets it).

# photos.original_key is String(1024): PostgreSQL counts characters, not bytes.
MAX_KEY_CHARS = 1024
# photos.filename is String(512); names are bounded well below it, like most filesystems' names.
MAX_FILENAME_CHARS = 255
# An extension longer than this is not kept whole when a long name is truncated.
_MAX_KEPT_EXTENSION = 16

# Refused besides NUL: every C0 control (U+0001-U+001F: newline, escape, bell...), DEL and the C1
# controls (U+0080-U+009F, e.g. NEL, CSI), which forge log lines, break markdown tables and drive
# terminals; the line and paragraph separators (U+2028/U+2029), which end lines in logs and
# JavaScript; and the bidirectional embeddings, overrides and isolates (U+202A-U+202E,
# U+2066-U+2069), which reorder what the UI shows ("photo\u202egpj.exe"). Other format
# characters (zero-width joiners in emoji, LRM/RLM marks in Hebrew or Arabic names) are legitimate.
_HOSTILE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# Lone surrogates are how Python carries bytes that are not UTF-8 (os.scandir's
# surrogateescape); no database driver can encode them.
_SURROGATE = re.compile("[\ud800-\udfff]")


def unholdable_reason(key: str) -> str | None:
    """Why the photo table cannot hold this key (as `original_key`), or None when it can."""
    if _SURROGATE.search(key):
        return "not valid UTF-8 (undecodable bytes)"
    if "\x00" in key:
        return "contains a NUL byte (PostgreSQL text cannot hold it)"
    hostile = _HOSTILE.search(key)
    if hostile:
        return f"contains control or bidirectional character U+{ord(hostile.group()):04X}"
    if len(key) > MAX_KEY_CHARS:
        return f"is {len(key)} characters long; original_key holds at most {MAX_KEY_CHARS}"
    return None


def listing_start_after(key: str) -> str:
    """What to send as a listing's StartAfter to resume after `key`. A key with a control or
    undecodable character cannot be sent back safely (moto answers 500, and the XML the server
    echoes it in cannot carry it); its prefix up to that character can, and the caller drops the
    keys up to `key` itself from what comes back."""
    bad = _SURROGATE.search(key) or _HOSTILE.search(key)
    return key if bad is None else key[: bad.start()]


def bounded_filename(key: str, limit: int = MAX_FILENAME_CHARS) -> str:
    """The key's last segment, truncated to `limit` characters keeping its extension, so a long
    but valid name is stored (the full key stays in original_key)."""
    name = key.rsplit("/", 1)[-1]
    if len(name) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > _MAX_KEPT_EXTENSION:
        return name[:limit]
    suffix = f"…{dot}{ext}"
    return stem[: limit - len(suffix)] + suffix


def display_key(key: str, limit: int = 160) -> str:
    """The key as it may be shown in logs, metadata, markdown and the UI: every control,
    separator, bidi and undecodable character escaped, long keys shortened in the middle."""
    escaped = _SURROGATE.sub(_escape, _HOSTILE.sub(_escape, key))
    if len(escaped) <= limit:
        return escaped
    keep = max(limit - 24, 16)
    head, tail = escaped[: keep * 2 // 3], escaped[-(keep - keep * 2 // 3) :]
    return f"{head}…[{len(key)} chars]…{tail}"


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


@dataclass(frozen=True)
class SkippedKey:
    """An object whose key the table cannot hold: left alone in the bucket and reported."""

    key: str
    reason: str

    @property
    def shown(self) -> str:
        return display_key(self.key)

    def as_dict(self) -> dict[str, str]:
        return {"key": self.shown, "reason": self.reason}

