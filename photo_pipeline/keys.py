"""The bucket's key layout: the one place that knows where originals and renditions live.

Originals:   raw/{album_id}/{photo_id}.{ext}
Renditions:  processed/thumbs/{album_id}/{photo_id}.{fmt}
             processed/previews/{album_id}/{photo_id}.{fmt}

Keys under raw/ written by anything but our upload flow are never trusted as paths: parsing
yields UUIDs or nothing, and adoption mints stable ids for anything else.
"""

from __future__ import annotations

import re
import uuid
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

RENDITION_EXTENSIONS = {"JPEG": "jpg", "WEBP": "webp"}

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
