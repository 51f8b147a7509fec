"""The plan to empty the trash, decided without I/O: the cutoff from the retention, what it erases,
and the safety limit at its edges."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from photo_pipeline.photos.trash import ExpiredTrash, TrashedAlbum
from photo_pipeline.trash.plan import EmptyTrashPolicy, plan_empty_trash, trash_cutoff

NOW = datetime(2026, 12, 4, 3, 30, tzinfo=UTC)
POLICY = EmptyTrashPolicy(retention_days=30, max_fraction=0.1, min_erases=5, listed=2)


def expired(*, albums: dict[uuid.UUID, int] | None = None, photos: dict[uuid.UUID, int] | None = None, rows: int = 1000) -> ExpiredTrash:
    cutoff = trash_cutoff(NOW, POLICY)
    listed = [(uuid.uuid4(), album, cutoff - timedelta(days=1)) for album in (photos or {}) for _ in range(3)]
    return ExpiredTrash(
        cutoff=cutoff,
        albums=[TrashedAlbum(a, cutoff - timedelta(hours=1), n) for a, n in (albums or {}).items()],
        photos_by_album=dict(photos or {}),
        first_photos=listed,
        table_rows=rows,
    )


def test_the_cutoff_is_the_retention_before_now() -> None:
    assert trash_cutoff(NOW, POLICY) == NOW - timedelta(days=30)
    assert trash_cutoff(NOW, EmptyTrashPolicy(retention_days=1)) == NOW - timedelta(days=1)


def test_a_plan_counts_albums_whole_and_the_other_photos_and_lists_the_first() -> None:
    album, other = uuid.uuid4(), uuid.uuid4()
    plan = plan_empty_trash(expired(albums={album: 40}, photos={other: 3}), NOW, POLICY)
    assert plan.photos_to_erase == 43 and plan.safe and not plan.empty
    assert plan.taken_at == NOW and plan.cutoff == NOW - timedelta(days=30)
    assert len(plan.first_photos) == POLICY.listed, "the listing is bounded; the counts are whole"


def test_an_empty_trash_plans_nothing() -> None:
    plan = plan_empty_trash(expired(), NOW, POLICY)
    assert plan.empty and plan.photos_to_erase == 0 and plan.safe


@pytest.mark.parametrize(
    ("erases", "rows", "safe"),
    [
        (5, 10, True),  # at the floor: passes whatever its share (50 %)
        (6, 10, False),  # past the floor and past 10 %
        (100, 1000, True),  # exactly 10 %
        (101, 1000, False),
    ],
)
def test_the_safety_limit_at_its_edges(erases: int, rows: int, safe: bool) -> None:
    plan = plan_empty_trash(expired(photos={uuid.uuid4(): erases}, rows=rows), NOW, POLICY)
    assert plan.safe is safe
    if not safe:
        [why] = plan.violations
        assert f"{erases} photos to erase out of {rows}" in why and "PHOTO_EMPTY_TRASH_MAX_FRACTION" in why
        assert "nothing was erased" in why


def test_an_album_erased_whole_counts_against_the_limit_too() -> None:
    plan = plan_empty_trash(expired(albums={uuid.uuid4(): 200}, rows=1000), NOW, POLICY)
    assert not plan.safe and "200 photos to erase out of 1000 in the photo table (20%)" in plan.violations[0]
