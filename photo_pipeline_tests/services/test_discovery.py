"""The sensors' decisions, as pure functions: cursors, adoption, run keys."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from photo_pipeline.photos.repository import AlbumPending
from photo_pipeline.services import discovery
from photo_pipeline.storage import ObjectInfo, keys

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def obj(key: str) -> ObjectInfo:
    return ObjectInfo(key=key, size=10, last_modified=NOW)


def test_sweep_cursor_round_trips_and_restarts_at_the_end() -> None:
    cursor = discovery.RawSweepCursor()
    middle = cursor.advanced("raw/b", reached_end=False)
    assert discovery.RawSweepCursor.from_json(middle.to_json()) == middle
    assert middle.after == "raw/b"
    finished = middle.advanced("raw/z", reached_end=True)
    assert finished.after is None
    assert finished.sweeps_completed == 1


def test_unreadable_cursor_starts_a_fresh_sweep() -> None:
    assert discovery.RawSweepCursor.from_json("not json") == discovery.RawSweepCursor()
    assert discovery.PendingCursor.from_json("[1, 2]") == discovery.PendingCursor()


def test_objects_without_rows_are_adopted_with_ids_from_the_key() -> None:
    album, photo = uuid.uuid4(), uuid.uuid4()
    canonical = keys.raw_key(album, photo, "jpg")
    foreign = "raw/holiday/IMG_0001.JPG"
    known = keys.raw_key(album, uuid.uuid4(), "png")
    adopted = discovery.photos_to_adopt([obj(canonical), obj(foreign), obj(known), obj("raw/")], {known: object()})  # type: ignore[dict-item]
    by_key = {p.original_key: p for p in adopted}
    assert set(by_key) == {canonical, foreign}
    assert by_key[canonical].id == photo and by_key[canonical].album_id == album
    # A key that is not ours gets stable minted ids: the same on every tick.
    again = discovery.photos_to_adopt([obj(foreign)], {})[0]
    assert again.id == by_key[foreign].id and again.album_id == by_key[foreign].album_id
    assert by_key[foreign].content_type == "image/jpeg"


def test_run_keys_depend_on_album_and_work_not_order() -> None:
    album = uuid.uuid4()
    assert discovery.run_key("raw", album, ["a", "b"]) == discovery.run_key("raw", album, ["b", "a"])
    assert discovery.run_key("raw", album, ["a"]) != discovery.run_key("raw", album, ["a", "b"])
    assert discovery.run_key("raw", album, ["a"]) != discovery.run_key("raw", uuid.uuid4(), ["a"])


def test_pending_cursor_only_reports_albums_whose_pending_set_changed() -> None:
    a = AlbumPending(album_id=uuid.uuid4(), pending=3, oldest_created_at=NOW, newest_updated_at=NOW)
    b = AlbumPending(album_id=uuid.uuid4(), pending=1, oldest_created_at=NOW, newest_updated_at=NOW)
    cursor = discovery.PendingCursor()
    assert discovery.albums_with_news([a, b], cursor) == [a, b]
    cursor = discovery.next_pending_cursor([a, b], cursor, handled=[a.album_id])
    assert discovery.albums_with_news([a, b], cursor) == [b]
    changed = AlbumPending(a.album_id, 4, NOW, NOW + timedelta(seconds=1))
    assert discovery.albums_with_news([changed, b], cursor) == [changed, b]
    # Albums with nothing pending any more are forgotten.
    assert discovery.next_pending_cursor([b], cursor, handled=[]).requested == {}
