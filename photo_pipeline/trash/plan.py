"""Emptying the trash, decided: a pure function of (what the trash holds past the cutoff, the
table's size, clock, policy) -> plan. `empty_trash` records the plan on the `trash` asset and,
unless it is a dry run or the safety limit refuses it, carries it out (services/removal.py).

The retention runs from each row's (and album's) trash time in the table, written by the
repository's clock when it was trashed; never from an object's LastModified or a clock read from
the bucket. An album in the trash past the retention is erased whole, with every photo of it; other
photos are erased one by one.

The safety limit is the reconciliation's kind: a plan that would erase an unusual share of the
photo table (more than `max_fraction`, once past `min_erases`) is refused and says why, so a
mistaken mass deletion (a script gone wrong, a restore that never ran) is caught once more
before the files go.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from photo_pipeline.photos.trash import ExpiredTrash, TrashedAlbum

DAY = 86400


@dataclass(frozen=True)
class EmptyTrashPolicy:
    retention_days: int = 30  # PHOTO_TRASH_RETENTION_DAYS
    max_fraction: float = 0.1  # PHOTO_EMPTY_TRASH_MAX_FRACTION
    min_erases: int = 100  # PHOTO_EMPTY_TRASH_MIN_ERASES
    # How many photos the plan names (all are counted).
    listed: int = 50


def trash_cutoff(now: datetime, policy: EmptyTrashPolicy) -> datetime:
    """What was trashed before this is past the retention."""
    return now - timedelta(seconds=policy.retention_days * DAY)


@dataclass(frozen=True)
class EmptyTrashPlan:
    taken_at: datetime
    cutoff: datetime
    albums: tuple[TrashedAlbum, ...] = ()
    # Per album not erased whole: how many of its photos are erased.
    photos_by_album: Mapping[uuid.UUID, int] = field(default_factory=dict)
    # The oldest of those photos: (photo, album, trashed_at).
    first_photos: tuple[tuple[uuid.UUID, uuid.UUID, datetime], ...] = ()
    table_rows: int = 0
    violations: tuple[str, ...] = ()

    @property
    def photos_to_erase(self) -> int:
        """Every photo the plan erases: those of the albums erased whole and the others."""
        return sum(a.photos for a in self.albums) + sum(self.photos_by_album.values())

    @property
    def safe(self) -> bool:
        return not self.violations

    @property
    def empty(self) -> bool:
        return not self.albums and not self.photos_by_album


def plan_empty_trash(expired: ExpiredTrash, now: datetime, policy: EmptyTrashPolicy) -> EmptyTrashPlan:
    """What emptying the trash erases, as read at `expired.cutoff`, and whether that passes the
    safety limit."""
    plan = EmptyTrashPlan(
        taken_at=now,
        cutoff=expired.cutoff,
        albums=tuple(expired.albums),
        photos_by_album=dict(expired.photos_by_album),
        first_photos=tuple(expired.first_photos[: policy.listed]),
        table_rows=expired.table_rows,
    )
    return replace(plan, violations=tuple(safety_violations(plan, policy)))


def safety_violations(plan: EmptyTrashPlan, policy: EmptyTrashPolicy) -> list[str]:
    erases, rows = plan.photos_to_erase, plan.table_rows
    if erases <= max(policy.min_erases, policy.max_fraction * rows):
        return []
    share = erases / rows if rows else 1.0
    return [
        f"{erases} photos to erase out of {rows} in the photo table ({share:.0%}) exceeds the limit of "
        f"{policy.max_fraction:.0%} (PHOTO_EMPTY_TRASH_MAX_FRACTION, past PHOTO_EMPTY_TRASH_MIN_ERASES = "
        f"{policy.min_erases}): was this much really deleted on purpose? nothing was erased"
    ]
