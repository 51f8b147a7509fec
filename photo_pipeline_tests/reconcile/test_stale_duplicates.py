"""The stale-duplicate rule of the pure planner: a completed duplicate whose canonical photo no
longer stands for it (row gone, not completed, itself a duplicate, in another album, other bytes,
or changed by the very plan) is rendered again; one whose canonical stands, or is being rendered
right now, is left alone. No database, no bucket: rows, listings and the clock are made up."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.reconcile_queries import Canonical, DuplicateLink
from photo_pipeline.photos.repository import PhotoRecord
from photo_pipeline.reconcile.plan import (
    ActionKind,
    ReconcilePolicy,
    ReconciliationPlan,
    plan_reconciliation,
    stale_duplicate_reason,
)
from photo_pipeline.storage import ObjectInfo, keys

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=2)
POLICY = ReconcilePolicy(missing_grace_seconds=60, orphan_grace_seconds=60, claim_lease_seconds=60, max_attempts=3)
ALBUM = uuid.uuid4()
SHA = "a" * 64


def record(
    *,
    album: uuid.UUID = ALBUM,
    status: PhotoStatus = PhotoStatus.COMPLETED,
    sha256: str | None = SHA,
    duplicate_of: uuid.UUID | None = None,
    **changes: object,
) -> PhotoRecord:
    photo_id = uuid.uuid4()
    rendered = status is PhotoStatus.COMPLETED and duplicate_of is None
    row = PhotoRecord(
        id=photo_id,
        album_id=album,
        original_key=keys.raw_key(album, photo_id, "jpg"),
        status=status,
        thumb_key=None,
        preview_key=None,
        error=None,
        attempts=1,
        created_at=EARLIER,
        updated_at=EARLIER,
        claimed_by=None,
        claimed_at=None,
        width=64 if rendered else None,
        height=48 if rendered else None,
        original_bytes=100,
        thumb_bytes=None,
        preview_bytes=None,
        filename=None,
        content_type="image/jpeg",
        completed_at=EARLIER if status is PhotoStatus.COMPLETED else None,
        missing_since=None,
        original_etag=f'"{photo_id.hex}"',
        original_sha256=sha256,
        duplicate_of=duplicate_of,
    )
    return dataclasses.replace(row, **changes)  # type: ignore[arg-type]


def canonical_of(row: PhotoRecord) -> Canonical:
    return Canonical(row.id, row.album_id, row.status, row.original_sha256, row.duplicate_of)


def original_of(row: PhotoRecord, *, etag: str | None = None) -> ObjectInfo:
    return ObjectInfo(row.original_key, row.original_bytes or 0, EARLIER, etag or row.original_etag)


def plan_of(
    rows: Sequence[PhotoRecord],
    duplicates: Sequence[PhotoRecord],
    *,
    gone: Collection[uuid.UUID] = (),
    replaced: Collection[uuid.UUID] = (),
    deleted: Collection[uuid.UUID] = (),
) -> ReconciliationPlan:
    """The plan over `rows` (and `duplicates`, which are rows too), each original in the bucket
    unless `gone`, with another ETag if `replaced`; the rows in `deleted` are not in the table."""
    table = {row.id: row for row in [*rows, *duplicates] if row.id not in deleted}
    in_order = sorted(table.values(), key=lambda r: r.original_key)
    listing = [
        original_of(row, etag='"new"' if row.id in replaced else None) for row in in_order if row.id not in gone
    ]
    links = [
        DuplicateLink(dup, canonical_of(table[dup.duplicate_of]) if dup.duplicate_of in table else None)
        for dup in duplicates
        if dup.id in table
    ]
    return plan_reconciliation(
        originals=listing,
        rows_by_original_key=in_order,
        thumbnails=[],
        rows_by_thumb_key=[],
        previews=[],
        rows_by_preview_key=[],
        duplicates=links,
        now=NOW,
        policy=POLICY,
    )


def rerenders(plan: ReconciliationPlan) -> dict[uuid.UUID, str]:
    return {a.photo_id: a.detail for a in plan.of_kind(ActionKind.RERENDER) if a.photo_id}


def test_a_duplicate_of_a_photo_that_stands_is_left_alone() -> None:
    canonical = record()
    copy = record(duplicate_of=canonical.id)
    plan = plan_of([canonical], [copy])
    assert plan.actions == [] and plan.safe
    assert stale_duplicate_reason(copy, canonical_of(canonical)) is None


@pytest.mark.parametrize(
    ("canonical_changes", "reason"),
    [
        ({"status": PhotoStatus.MISSING, "missing_since": EARLIER}, "which is missing (its original is gone from the bucket)"),
        ({"status": PhotoStatus.FAILED, "completed_at": None}, "which is failed"),
        ({"status": PhotoStatus.PENDING, "completed_at": None}, "which is pending"),
        ({"original_sha256": "b" * 64}, "which changed (its original has other bytes now)"),
        ({"original_sha256": None}, "which changed (its original has other bytes now)"),
    ],
    ids=["missing", "failed", "pending", "other-checksum", "no-checksum"],
)
def test_a_duplicate_whose_canonical_no_longer_stands_is_rendered_again(
    canonical_changes: dict[str, object], reason: str
) -> None:
    canonical = record(**canonical_changes)  # type: ignore[arg-type]
    copy = record(duplicate_of=canonical.id)
    # A missing canonical's original is gone too; the others' are in the bucket.
    gone = {canonical.id} if canonical.status is PhotoStatus.MISSING else set()
    plan = plan_of([canonical], [copy], gone=gone)
    assert rerenders(plan) == {copy.id: f"duplicate of photo {canonical.id}, {reason}"}
    [action] = plan.of_kind(ActionKind.RERENDER)
    # Fenced like every re-render: claimed only while still completed as the plan saw it.
    assert (action.album_id, action.key, action.completed_at) == (ALBUM, copy.original_key, copy.completed_at)
    assert plan.safe and plan.destructive == 0


def test_a_duplicate_whose_canonical_row_is_gone_is_rendered_again() -> None:
    canonical = record(status=PhotoStatus.MISSING, missing_since=EARLIER)
    copy = record(duplicate_of=canonical.id)
    plan = plan_of([canonical], [copy], deleted={canonical.id})
    assert rerenders(plan) == {copy.id: f"duplicate of photo {canonical.id}, which was deleted (purged or cleaned up)"}


def test_a_duplicate_of_a_duplicate_is_rendered_again() -> None:
    first = record()
    middle = record(duplicate_of=first.id)
    copy = record(duplicate_of=middle.id)
    plan = plan_of([first], [middle, copy])
    assert rerenders(plan) == {copy.id: f"duplicate of photo {middle.id}, which is itself a duplicate (of photo {first.id})"}


def test_a_duplicate_of_a_photo_in_another_album_is_rendered_again() -> None:
    elsewhere = uuid.uuid4()
    canonical = record(album=elsewhere)
    copy = record(duplicate_of=canonical.id)
    plan = plan_of([canonical], [copy])
    assert rerenders(plan) == {copy.id: f"duplicate of photo {canonical.id}, which is in another album ({elsewhere})"}


def test_a_duplicate_of_a_photo_being_rendered_waits_for_its_outcome() -> None:
    canonical = record(status=PhotoStatus.PROCESSING, claimed_by="run/abc", claimed_at=NOW - timedelta(seconds=5))
    copy = record(duplicate_of=canonical.id)
    assert plan_of([canonical], [copy]).actions == []


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("flagged", "is flagged missing by this plan (its original is gone)"),
        ("replaced", "has a replaced original, rendered again by this plan"),
        ("exhausted", "is failed by this plan (its claim expired with its attempts used up)"),
    ],
)
def test_a_duplicate_of_a_photo_this_plan_changes_is_rendered_in_the_same_pass(setup: str, reason: str) -> None:
    if setup == "flagged":
        canonical = record(missing_since=NOW - timedelta(seconds=61))
    elif setup == "exhausted":
        canonical = record(status=PhotoStatus.PROCESSING, claimed_by="run/abc", claimed_at=NOW - timedelta(seconds=61), attempts=3)
    else:
        canonical = record()
    copy = record(duplicate_of=canonical.id)
    plan = plan_of(
        [canonical], [copy], gone={canonical.id} if setup == "flagged" else (), replaced={canonical.id} if setup == "replaced" else ()
    )
    assert rerenders(plan).get(copy.id) == f"duplicate of photo {canonical.id}, which {reason}"
    expected_kind = {"flagged": ActionKind.FLAG_MISSING, "replaced": ActionKind.RERENDER, "exhausted": ActionKind.FAIL_CLAIM}[setup]
    assert canonical.id in {a.photo_id for a in plan.of_kind(expected_kind)}


def test_a_canonical_only_seen_gone_keeps_its_duplicates_until_it_is_flagged() -> None:
    """First sighting of a gone original is not evidence yet (the grace period): its duplicates
    still point at it."""
    canonical = record()
    copy = record(duplicate_of=canonical.id)
    plan = plan_of([canonical], [copy], gone={canonical.id})
    assert [a.kind for a in plan.actions] == [ActionKind.SEEN_GONE]


def test_a_canonical_rendered_again_for_a_lost_rendition_keeps_its_duplicates() -> None:
    canonical = record(thumb_key=f"thumbs/{ALBUM}/x.jpg")
    copy = record(duplicate_of=canonical.id)
    plan = plan_reconciliation(
        originals=[original_of(r) for r in sorted([canonical, copy], key=lambda r: r.original_key)],
        rows_by_original_key=sorted([canonical, copy], key=lambda r: r.original_key),
        thumbnails=[],
        rows_by_thumb_key=[(canonical.thumb_key or "", canonical)],
        previews=[],
        rows_by_preview_key=[],
        duplicates=[DuplicateLink(copy, canonical_of(canonical))],
        now=NOW,
        policy=POLICY,
    )
    assert rerenders(plan) == {canonical.id: "rendition missing from the bucket"}


def test_a_stale_duplicate_whose_own_original_is_gone_is_left_to_the_missing_rules() -> None:
    canonical = record(status=PhotoStatus.FAILED, completed_at=None)
    copy = record(duplicate_of=canonical.id)
    plan = plan_of([canonical], [copy], gone={copy.id})
    assert [(a.kind, a.photo_id) for a in plan.actions] == [(ActionKind.SEEN_GONE, copy.id)]


def test_a_stale_duplicate_with_a_replaced_original_is_rendered_once() -> None:
    canonical = record(original_sha256="b" * 64)
    copy = record(duplicate_of=canonical.id)
    plan = plan_of([canonical], [copy], replaced={copy.id})
    [action] = plan.of_kind(ActionKind.RERENDER)
    assert action.photo_id == copy.id and action.detail.startswith("original replaced since it was rendered")
