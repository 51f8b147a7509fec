"""Capture facts: what a photo's EXIF says about when and with what it was taken.

Pure: an already-parsed `PIL.Image.Exif` in, a `CaptureFacts` out. Read from the one open the
renderer makes (the header, no extra decode). Everything read here was written by whoever made the
file, so text is cleaned (control and bidirectional characters dropped, length bounded) and
numbers are range-checked: a hostile or broken tag yields None, never an exception.

GPS is personal data: it is read only when the caller asks (PHOTO_STORE_GPS), and never reaches a
rendition (the renderer drops all metadata from what it encodes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from PIL import Image

__all__ = ["MAX_CAMERA_CHARS", "CaptureFacts", "capture_facts"]

# EXIF tags (CIPA DC-008): IFD0 Make and Model, the Exif sub-IFD's DateTimeOriginal and its
# offset (EXIF 2.31), and the GPS sub-IFD's coordinates.
MAKE_TAG = 0x010F
MODEL_TAG = 0x0110
DATETIME_TAG = 0x0132  # IFD0 DateTime: when the file was last changed; a fallback only
EXIF_IFD = 0x8769
GPS_IFD = 0x8825
DATETIME_ORIGINAL_TAG = 0x9003
OFFSET_TIME_ORIGINAL_TAG = 0x9011
GPS_LATITUDE_REF, GPS_LATITUDE, GPS_LONGITUDE_REF, GPS_LONGITUDE = 1, 2, 3, 4

# photos.camera_make / camera_model are String(128).
MAX_CAMERA_CHARS = 128
_UNWANTED = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_EXIF_DATETIME = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


@dataclass(frozen=True)
class CaptureFacts:
    # ISO 8601 local time of capture, with its UTC offset when the file records one
    # ("2024-05-01T10:00:00+02:00") and without when it does not (cameras mostly do not): such a
    # time is the clock of the camera, not an instant. Sorting these strings sorts by local time.
    taken_at: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    # Decimal degrees; only when asked for (PHOTO_STORE_GPS).
    gps_latitude: float | None = None
    gps_longitude: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at,
            "camera_make": self.camera_make,
            "camera_model": self.camera_model,
            "gps_latitude": self.gps_latitude,
            "gps_longitude": self.gps_longitude,
        }


def capture_facts(exif: Image.Exif, *, keep_gps: bool = False) -> CaptureFacts:
    """The capture facts of a photo from its parsed EXIF (an empty Exif gives all None)."""
    exif_ifd = _sub_ifd(exif, EXIF_IFD)
    latitude, longitude = _gps(exif) if keep_gps else (None, None)
    return CaptureFacts(
        taken_at=_taken_at(exif_ifd.get(DATETIME_ORIGINAL_TAG), exif_ifd.get(OFFSET_TIME_ORIGINAL_TAG))
        or _taken_at(exif.get(DATETIME_TAG), None),
        camera_make=clean_text(exif.get(MAKE_TAG)),
        camera_model=clean_text(exif.get(MODEL_TAG)),
        gps_latitude=latitude,
        gps_longitude=longitude,
    )


def _sub_ifd(exif: Image.Exif, tag: int) -> dict[int, Any]:
    try:
        return dict(exif.get_ifd(tag))
    except (KeyError, ValueError, TypeError, OSError, SyntaxError):
        # A sub-IFD pointer into nowhere: the facts it would hold are simply unknown.
        return {}


def clean_text(value: object, limit: int = MAX_CAMERA_CHARS) -> str | None:
    """EXIF ASCII as text fit for a table cell and a terminal: NUL padding and control or bidi
    characters dropped, whitespace collapsed, at most `limit` characters; None when nothing is left."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    cleaned = " ".join(_UNWANTED.sub(" ", value).split())
    return cleaned[:limit] or None


def _taken_at(value: object, offset: object) -> str | None:
    text = clean_text(value, 64)
    if text is None:
        return None
    match = _EXIF_DATETIME.match(text)
    if match is None:
        return None
    try:
        moment = datetime(*(int(part) for part in match.groups()))
    except ValueError:  # "0000:00:00 00:00:00" is what cameras write when the clock was never set
        return None
    local = moment.isoformat()
    zone = _offset(offset)
    return local if zone is None else moment.replace(tzinfo=zone).isoformat()


def _offset(value: object) -> timezone | None:
    text = clean_text(value, 16)
    match = _OFFSET.match(text) if text else None
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14):
        return None
    return timezone(-delta if sign == "-" else delta)


def _gps(exif: Image.Exif) -> tuple[float | None, float | None]:
    gps = _sub_ifd(exif, GPS_IFD)
    latitude = _degrees(gps.get(GPS_LATITUDE), gps.get(GPS_LATITUDE_REF), "S", 90)
    longitude = _degrees(gps.get(GPS_LONGITUDE), gps.get(GPS_LONGITUDE_REF), "W", 180)
    if latitude is None or longitude is None:
        return None, None
    return latitude, longitude


def _degrees(value: object, ref: object, negative: str, limit: float) -> float | None:
    """Degrees, minutes, seconds (three rationals) as signed decimal degrees."""
    if not isinstance(value, tuple | list) or len(value) != 3:
        return None
    try:
        d, m, s = (float(part) for part in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    degrees = d + m / 60 + s / 3600
    if not 0 <= degrees <= limit:  # NaN fails this too
        return None
    if clean_text(ref, 2) == negative:
        degrees = -degrees
    return round(degrees, 7)
