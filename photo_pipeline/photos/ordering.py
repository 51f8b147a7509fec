"""The orders an album's photos are listed in, and where a page resumes in each: one definition
for `status --album ID --json`, the API's pages and its `ids=` lists.

Capture order is spelled `taken_at ASC NULLS LAST`, never with `taken_at IS NULL` as a leading
sort key (the same order): PostgreSQL's btree keeps NULLs last in ascending order, so this
spelling is the order of the index on (album_id, taken_at, created_at, id) and a page is read off
it, where the `IS NULL` key made every page sort the whole album. For the same reason a page
after a cursor is asked for in ranges (`ranges_after`) that are each one index range, not as a
single OR, which PostgreSQL can only filter row by row from the album's first photo.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, UnaryExpression, literal, true, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from photo_pipeline.photos.models import Photo


class AlbumOrder(StrEnum):
    UPLOAD = "upload"  # when the rows were registered, the upload flow's first step
    TAKEN = "taken"  # when the photos were taken (EXIF local time); those without one last


ORDER_BY: dict[AlbumOrder, tuple[UnaryExpression[Any], ...]] = {
    AlbumOrder.UPLOAD: (Photo.created_at.asc(), Photo.id.asc()),
    AlbumOrder.TAKEN: (Photo.taken_at.asc().nulls_last(), Photo.created_at.asc(), Photo.id.asc()),
}


@dataclass(frozen=True)
class Position:
    """Where a photo stands in every order: a page's cursor, read from the cursor photo's row."""

    id: uuid.UUID
    created_at: datetime
    taken_at: str | None


def ranges_after(order: AlbumOrder, position: Position | None) -> list[ColumnElement[bool]]:
    """The rest of `order` after `position` (all of it without one), as conditions to read one
    after the other, each in `ORDER_BY[order]`: what the first yields comes before all the second does."""
    if position is None:
        return [true()]
    if order is AlbumOrder.UPLOAD:
        return [_beyond((Photo.created_at, Photo.id), (position.created_at, position.id))]
    undated = Photo.taken_at.is_(None)
    if position.taken_at is None:
        return [undated & _beyond((Photo.created_at, Photo.id), (position.created_at, position.id))]
    dated = Photo.taken_at.is_not(None) & _beyond(
        (Photo.taken_at, Photo.created_at, Photo.id), (position.taken_at, position.created_at, position.id)
    )
    # Every undated photo follows a dated cursor: NULLs compare as nothing, so the row comparison
    # above never yields them, and they need their own range.
    return [dated, undated]


def _beyond(columns: Sequence[InstrumentedAttribute[Any]], values: Sequence[object]) -> ColumnElement[bool]:
    """(columns) > (values), compared as rows: one range of an index on the columns, where the
    equivalent `a > x OR (a = x AND b > y)` is not. Each value bound with its column's type (the
    UTC column stores naive text on SQLite)."""
    bound = [literal(value, column.type) for column, value in zip(columns, values, strict=True)]
    return tuple_(*columns) > tuple_(*bound)
