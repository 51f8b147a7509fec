"""Reconciliation, decided: a pure function of (objects, rows, clock, policy) -> plan.

Both sides arrive as streams sorted by key (the bucket lists in UTF-8 byte order; the table is
read ordered the same way), so the comparison is a merge join: memory holds the mismatches, not
the listing. What the plan would destroy is weighed against safety limits before anything is
applied: a wrong bucket or an unreachable endpoint must never read as "every file is missing".

The rules, one `Planner` method each (the actions they plan are the `ActionKind`s below):
- a row and its original: `_row_with_original` (requeue a pending row, restore a missing one,
  re-render a completed one whose original was replaced);
- a row without its original: `_row_without_original` (seen_gone, flag_missing after the grace
  period, purge after the retention period);
- an original without a row: `_orphan` (adopt, or delete_cancelled for a cleaned-up upload), and
  `_resolve_unmatched` (correct_key when the photo id sits under another key);
- a claim older than the lease: `_expired_claim` (release_claim, or fail_claim once its attempts
  are used up);
- renditions: `_rerender_once` (one gone: rerender) and `_stray_rendition` (no row: delete_rendition);
- duplicates: `_stale_duplicate` (rerender a completed duplicate whose canonical photo no longer
  stands for it, by `stale_duplicate_reason`, or is changed by this very plan: flagged missing,
  failed, or its original replaced);
- the trash: a trashed row is left alone (no requeue, restore, missing, re-render), but its keys
  are known (its renditions are no strays, an object carrying its id is no orphan) and it counts
  as a settled row for the empty-listing check;
- the erase record: `refuse_erased`, a post-step over the plan's adoptions with the keys found to
  belong to erased photos or albums (looked up for the orphans only: the record grows forever),
  turns them into delete_erased;
- the whole plan: `safety_violations` (refuses mass destruction).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Generic, TypeVar

from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.reconcile_queries import Canonical, DuplicateLink
from photo_pipeline.photos.repository import NewPhoto, PhotoRecord
from photo_pipeline.storage import ObjectInfo, keys

T = TypeVar("T")
U = TypeVar("U")


class ActionKind(StrEnum):
    REQUEUE = "requeue"  # pending, original present: touch it so its album gets a run
    SEEN_GONE = "seen_gone"  # original gone, first sighting: remember when (status unchanged)
    FLAG_MISSING = "flag_missing"  # original gone past the grace period -> missing
    RESTORE = "restore"  # original back: missing -> pending, or forget the sighting
    PURGE = "purge"  # missing past the retention period: row deleted
    ADOPT = "adopt"  # raw object without a row: row created (pending)
    CORRECT_KEY = "correct_key"  # the object carrying the photo id has another key
    DELETE_RENDITION = "delete_rendition"  # rendition with no row pointing at it
    RERENDER = "rerender"  # completed, but a rendition is gone, the original was replaced, or a duplicate's canonical no longer stands for it
    RELEASE_CLAIM = "release_claim"  # claim older than the lease (not renewed: its run is dead or stuck) -> pending
    FAIL_CLAIM = "fail_claim"  # ... and the photo used up its attempts -> failed
    DELETE_CANCELLED = "delete_cancelled"  # a cleaned-up upload's object that landed late
    DELETE_ERASED = "delete_erased"  # an object of an erased photo or album (a late or replayed PUT)


# How many skipped keys a plan lists by name (all are counted).
MAX_SKIPPED_LISTED = 100

# Kinds that lose information if the plan is wrong (wrong bucket, listing error).
DESTRUCTIVE = frozenset(
    {
        ActionKind.SEEN_GONE,
        ActionKind.FLAG_MISSING,
        ActionKind.PURGE,
        ActionKind.DELETE_RENDITION,
        ActionKind.DELETE_CANCELLED,
        ActionKind.DELETE_ERASED,
    }
)
# Rows that must have an original (the empty-listing check): a trashed photo keeps its files too.
SETTLED = frozenset({PhotoStatus.COMPLETED, PhotoStatus.FAILED, PhotoStatus.MISSING, PhotoStatus.TRASHED})


@dataclass(frozen=True)
class ReconcilePolicy:
    missing_grace_seconds: int = 900
    orphan_grace_seconds: int = 300
    claim_lease_seconds: int = 900
    missing_retention_seconds: int = 30 * 86400
    # Tombstones of cleaned-up uploads outlive any presigned URL that could still land.
    tombstone_seconds: int = 2 * 86400
    max_attempts: int = 5
    max_change_fraction: float = 0.2
    min_changes: int = 10
    # The configured responsive sizes (PHOTO_RENDITION_SIZES): an album's check lists their folders.
    rendition_sizes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    album_id: uuid.UUID
    photo_id: uuid.UUID | None = None
    key: str | None = None
    detail: str = ""
    # For CORRECT_KEY the new key; for ADOPT the row to create; for claims the token to fence on.
    new_key: str | None = None
    adopt: NewPhoto | None = None
    expected_status: PhotoStatus | None = None
    claimed_by: str | None = None
    # For RERENDER: the completion the plan saw; the re-render claims the photo only if unchanged.
    completed_at: datetime | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "kind": self.kind.value,
            "album_id": str(self.album_id),
            "photo_id": str(self.photo_id) if self.photo_id else None,
            "key": self.key,
            "new_key": self.new_key,
            "detail": self.detail,
        }


@dataclass
class ReconciliationPlan:
    taken_at: datetime
    actions: list[Action] = field(default_factory=list)
    rows_seen: int = 0
    objects_seen: int = 0
    raw_objects_seen: int = 0
    settled_rows: int = 0  # completed, failed, missing or trashed: rows that must have an original
    rows_per_album: Counter[uuid.UUID] = field(default_factory=Counter)
    objects_per_album: Counter[uuid.UUID] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    # Raw objects whose keys the table cannot hold: all counted, the first MAX_SKIPPED_LISTED kept
    # (a hostile bucket may hold millions; the plan's memory must not grow with them).
    unholdable_keys: int = 0
    skipped_keys: list[keys.SkippedKey] = field(default_factory=list)

    def skip(self, skipped: keys.SkippedKey) -> None:
        self.unholdable_keys += 1
        if len(self.skipped_keys) < MAX_SKIPPED_LISTED:
            self.skipped_keys.append(skipped)

    def counts(self) -> dict[str, int]:
        counted = Counter(a.kind.value for a in self.actions)
        return {kind.value: counted.get(kind.value, 0) for kind in ActionKind}

    def of_kind(self, kind: ActionKind) -> list[Action]:
        return [a for a in self.actions if a.kind is kind]

    @property
    def destructive(self) -> int:
        return sum(1 for a in self.actions if a.kind in DESTRUCTIVE)

    @property
    def safe(self) -> bool:
        return not self.violations

    def summary(self) -> dict[str, object]:
        return {
            "taken_at": self.taken_at.isoformat(),
            "rows_seen": self.rows_seen,
            "objects_seen": self.objects_seen,
            "actions": self.counts(),
            "destructive": self.destructive,
            "violations": list(self.violations),
            "unholdable_keys": self.unholdable_keys,
            "skipped_keys": [skipped.as_dict() for skipped in self.skipped_keys],
        }


class _Peekable(Generic[T]):
    def __init__(self, items: Iterable[T]) -> None:
        self._items: Iterator[T] = iter(items)
        self._next: T | None = None
        self._done = False
        self._advance()

    def _advance(self) -> None:
        try:
            self._next = next(self._items)
        except StopIteration:
            self._next, self._done = None, True

    @property
    def head(self) -> T | None:
        return None if self._done else self._next

    def pop(self) -> T:
        assert not self._done
        item = self._next
        self._advance()
        return item  # type: ignore[return-value]


def merge_join(
    left: Iterable[T], right: Iterable[U], left_key, right_key  # type: ignore[no-untyped-def]
) -> Iterator[tuple[T | None, U | None]]:
    """Pairs of items with equal keys from two streams sorted by key; None where one side has
    no partner. Keys are compared as UTF-8 bytes, S3's listing order."""
    a, b = _Peekable(left), _Peekable(right)
    while a.head is not None or b.head is not None:
        if b.head is None:
            yield a.pop(), None
            continue
        if a.head is None:
            yield None, b.pop()
            continue
        ka, kb = _key_bytes(left_key(a.head)), _key_bytes(right_key(b.head))
        if ka == kb:
            yield a.pop(), b.pop()
        elif ka < kb:
            yield a.pop(), None
        else:
            yield None, b.pop()


def _grouped_by_key(rows: Iterable[tuple[str, PhotoRecord]]) -> Iterator[tuple[str, list[PhotoRecord]]]:
    """(key, the rows naming it) from (key, row) pairs sorted by key."""
    key: str | None = None
    named_by: list[PhotoRecord] = []
    for row_key, row in rows:
        if row_key != key and named_by:
            yield key, named_by  # type: ignore[misc]  # set with the first row
            named_by = []
        key = row_key
        named_by.append(row)
    if named_by:
        yield key, named_by  # type: ignore[misc]


def _renderers_of(key: str, named_by: list[PhotoRecord]) -> list[PhotoRecord]:
    """Which completed rows to render again for a missing key: the photo whose id the key carries
    (its duplicates share what it makes again); any row naming a key whose owner is not among them."""
    completed = [row for row in named_by if row.status is PhotoStatus.COMPLETED]
    owner = keys.carried_photo_id(key)
    owners = [row for row in completed if row.id == owner]
    return owners or completed


def original_replaced(row: PhotoRecord, obj: ObjectInfo) -> bool:
    """Whether the object under a completed row's key is not the one its renditions were made
    from. Rows rendered before the ETag was recorded cannot tell, and count as unchanged."""
    if row.original_etag is None or obj.etag is None:
        return False
    return obj.etag != row.original_etag or (row.original_bytes is not None and obj.size != row.original_bytes)


def stale_duplicate_reason(photo: PhotoRecord, canonical: Canonical | None) -> str | None:
    """Why a completed duplicate no longer shows its own bytes through the photo it points to, or
    None while that photo stands for it: completed, not itself a duplicate, in the same album,
    with the same checksum.

    A canonical photo being rendered right now (processing) is given the benefit of the doubt:
    its row keeps its renditions meanwhile, and rendering the duplicate beside it would race it
    (neither sees the other completed, so both end up rendered); the plan after its run decides."""
    pointed = f"duplicate of photo {photo.duplicate_of}"
    if canonical is None:
        return f"{pointed}, which was deleted (purged or cleaned up)"
    if canonical.status is PhotoStatus.PROCESSING:
        return None
    if canonical.status is PhotoStatus.MISSING:
        return f"{pointed}, which is missing (its original is gone from the bucket)"
    if canonical.status is PhotoStatus.TRASHED:
        return f"{pointed}, which is in the trash"
    if canonical.status is not PhotoStatus.COMPLETED:
        return f"{pointed}, which is {canonical.status.value}"
    if canonical.duplicate_of is not None:
        return f"{pointed}, which is itself a duplicate (of photo {canonical.duplicate_of})"
    if canonical.album_id != photo.album_id:
        return f"{pointed}, which is in another album ({canonical.album_id})"
    if canonical.original_sha256 != photo.original_sha256:
        return f"{pointed}, which changed (its original has other bytes now)"
    return None


def _what_changed(row: PhotoRecord, obj: ObjectInfo) -> str:
    return f"ETag {row.original_etag} -> {obj.etag}, {row.original_bytes} -> {obj.size} bytes"


def _key_bytes(key: str) -> bytes:
    # A folder's file name that is not UTF-8 arrives with lone surrogates (os.scandir's
    # surrogateescape); "surrogatepass" encodes them too, and UTF-8 keeps code point order, the
    # order the folder store lists in, instead of raising in the middle of a plan.
    return key.encode("utf-8", "surrogatepass")


def _age(now: datetime, since: datetime) -> float:
    return (now - since).total_seconds()


def _worker_of(claimed_by: str | None) -> str | None:
    return claimed_by.rsplit("/", 1)[0] if claimed_by else None


class Planner:
    """Builds a plan from the three sorted comparisons: originals, thumbnails, previews."""

    def __init__(
        self, now: datetime, policy: ReconcilePolicy, cancelled_uploads: Collection[str] = ()
    ) -> None:
        self.now = now
        self.policy = policy
        self.cancelled_uploads = set(cancelled_uploads)
        self.plan = ReconciliationPlan(taken_at=now)
        self._unmatched_rows: dict[uuid.UUID, PhotoRecord] = {}
        self._unmatched_objects: dict[uuid.UUID, list[tuple[ObjectInfo, keys.RawObjectIdentity]]] = {}
        self._rerender: set[uuid.UUID] = set()
        # Completed rows whose original this plan did not find (a duplicate among them has nothing
        # to render from: the missing rules deal with it).
        self._originals_gone: set[uuid.UUID] = set()
        # Photo id -> what this plan does to it that would leave its duplicates pointing at nothing
        # or at other bytes once applied (flag missing, fail, re-render a replaced original): they
        # are rendered again in the same pass instead of the next.
        self._changing: dict[uuid.UUID, str] = {}

    def add(self, action: Action) -> None:
        self.plan.actions.append(action)

    # -- originals ------------------------------------------------------------------------------

    def compare_originals(self, rows: Iterable[PhotoRecord], objects: Iterable[ObjectInfo]) -> None:
        for row, obj in merge_join(rows, self._holdable(objects), lambda r: r.original_key, lambda o: o.key):
            if row is not None:
                self.plan.rows_seen += 1
                self.plan.rows_per_album[row.album_id] += 1
                if row.status in SETTLED:
                    self.plan.settled_rows += 1
            if obj is not None:
                self.plan.objects_seen += 1
                self.plan.raw_objects_seen += 1
            if row is not None and obj is not None:
                self.plan.objects_per_album[row.album_id] += 1
                self._row_with_original(row, obj)
            elif row is not None:
                self._unmatched_rows[row.id] = row
            elif obj is not None:
                identity = keys.identify_raw_key(obj.key)
                if identity is None:
                    continue
                self.plan.objects_per_album[identity.album_id] += 1
                self._unmatched_objects.setdefault(identity.photo_id, []).append((obj, identity))
        self._resolve_unmatched()

    def _holdable(self, objects: Iterable[ObjectInfo]) -> Iterator[ObjectInfo]:
        """The originals whose keys the table can hold; the others are counted as seen (they are
        in the bucket) and recorded as skipped, so no action is ever planned for them."""
        for obj in objects:
            reason = keys.unholdable_reason(obj.key)
            if reason is None:
                yield obj
                continue
            self.plan.objects_seen += 1
            self.plan.raw_objects_seen += 1
            self.plan.skip(keys.SkippedKey(obj.key, reason))

    def _row_with_original(self, row: PhotoRecord, obj: ObjectInfo) -> None:
        key = obj.key
        if row.status is PhotoStatus.TRASHED:
            return  # left as it is until restored or erased
        if row.status is PhotoStatus.COMPLETED and original_replaced(row, obj):
            self._rerender_once(row, key, f"original replaced since it was rendered ({_what_changed(row, obj)})")
            self._changing[row.id] = "has a replaced original, rendered again by this plan"
        if row.status is PhotoStatus.PROCESSING:
            self._expired_claim(row)
        elif row.status is PhotoStatus.PENDING:
            # Rows touched recently are in the normal flow (a sensor or run has them in hand).
            if _age(self.now, row.updated_at) > self.policy.orphan_grace_seconds:
                self.add(Action(ActionKind.REQUEUE, row.album_id, row.id, key, "original present, still pending", expected_status=row.status))
        elif row.status is PhotoStatus.MISSING or row.missing_since is not None:
            self.add(Action(ActionKind.RESTORE, row.album_id, row.id, key, "original is back", expected_status=row.status))

    def _resolve_unmatched(self) -> None:
        for photo_id, row in self._unmatched_rows.items():
            if row.status is PhotoStatus.TRASHED:
                # Left alone; an object carrying its id is the trashed photo's, never an orphan.
                self._unmatched_objects.pop(photo_id, None)
                continue
            carriers = self._unmatched_objects.get(photo_id, [])
            if len(carriers) == 1:
                obj, _identity = carriers.pop()
                del self._unmatched_objects[photo_id]
                self.plan.objects_per_album[row.album_id] += 0
                self.add(
                    Action(
                        ActionKind.CORRECT_KEY,
                        row.album_id,
                        row.id,
                        row.original_key,
                        f"original is at {obj.key}",
                        new_key=obj.key,
                        expected_status=row.status,
                    )
                )
                self._row_with_original(row, obj)
            else:
                self._row_without_original(row)
        for carriers in self._unmatched_objects.values():
            for obj, identity in carriers:
                self._orphan(obj, identity)
        self._unmatched_rows.clear()
        self._unmatched_objects.clear()

    def _row_without_original(self, row: PhotoRecord) -> None:
        grace = self.policy.missing_grace_seconds
        if row.status is PhotoStatus.COMPLETED:
            self._originals_gone.add(row.id)
        if row.status is PhotoStatus.PROCESSING:
            self._expired_claim(row)
        elif row.status is PhotoStatus.MISSING:
            since = row.missing_since or row.updated_at
            if _age(self.now, since) > self.policy.missing_retention_seconds:
                self.add(Action(ActionKind.PURGE, row.album_id, row.id, row.original_key, f"missing since {since.isoformat()}", expected_status=row.status))
        elif row.status is PhotoStatus.PENDING:
            # An upload that never arrived counts from the row's creation (the old system's rule).
            if _age(self.now, row.created_at) > grace:
                self.add(Action(ActionKind.FLAG_MISSING, row.album_id, row.id, row.original_key, "upload never arrived", expected_status=row.status))
        elif row.missing_since is None:
            self.add(Action(ActionKind.SEEN_GONE, row.album_id, row.id, row.original_key, "original not in the bucket", expected_status=row.status))
        elif _age(self.now, row.missing_since) > grace:
            self.add(Action(ActionKind.FLAG_MISSING, row.album_id, row.id, row.original_key, f"original gone since {row.missing_since.isoformat()}", expected_status=row.status))
            self._changing[row.id] = "is flagged missing by this plan (its original is gone)"

    def _orphan(self, obj: ObjectInfo, identity: keys.RawObjectIdentity) -> None:
        if obj.key in self.cancelled_uploads:
            self.add(Action(ActionKind.DELETE_CANCELLED, identity.album_id, identity.photo_id, obj.key, "upload was cleaned up before it landed"))
            return
        if _age(self.now, obj.last_modified) <= self.policy.orphan_grace_seconds:
            return  # its row may still be on its way
        photo = NewPhoto(
            id=identity.photo_id,
            album_id=identity.album_id,
            original_key=obj.key,
            filename=keys.bounded_filename(obj.key),
            content_type=keys.content_type_for_extension(identity.extension),
            original_bytes=obj.size,
        )
        self.add(Action(ActionKind.ADOPT, identity.album_id, identity.photo_id, obj.key, "raw object without a row", adopt=photo))

    def _expired_claim(self, row: PhotoRecord) -> None:
        # A live run renews its claims every heartbeat, so a claim older than the lease has an
        # owner that is dead or stuck, whatever its run record says (a run killed with -9 stays
        # STARTED forever): the lease alone decides.
        claimed_at = row.claimed_at or row.updated_at
        if _age(self.now, claimed_at) <= self.policy.claim_lease_seconds:
            return
        if row.attempts >= self.policy.max_attempts:
            self._changing[row.id] = "is failed by this plan (its claim expired with its attempts used up)"
            self.add(
                Action(
                    ActionKind.FAIL_CLAIM,
                    row.album_id,
                    row.id,
                    row.original_key,
                    f"gave up after {row.attempts} attempts; the last run ({_worker_of(row.claimed_by)}) stopped renewing its claim",
                    expected_status=row.status,
                    claimed_by=row.claimed_by,
                )
            )
        else:
            self.add(
                Action(
                    ActionKind.RELEASE_CLAIM,
                    row.album_id,
                    row.id,
                    row.original_key,
                    f"claim by {_worker_of(row.claimed_by)} expired at attempt {row.attempts}",
                    expected_status=row.status,
                    claimed_by=row.claimed_by,
                )
            )

    # -- renditions -----------------------------------------------------------------------------

    def compare_renditions(self, rows: Iterable[tuple[str, PhotoRecord]], objects: Iterable[ObjectInfo]) -> None:
        """`rows`: (rendition key, row) sorted by key, for rows that have such a key. A key may be
        named by several rows (a duplicate's name its first copy's files): one object serves
        them all, and a missing one is rendered again by its owner."""
        for group, obj in merge_join(_grouped_by_key(rows), objects, lambda g: g[0], lambda o: o.key):
            if obj is not None:
                self.plan.objects_seen += 1
            if group is not None and obj is None:
                key, named_by = group
                for row in _renderers_of(key, named_by):
                    self._rerender_once(row, key, "rendition missing from the bucket")
            elif obj is not None and group is None:
                self._stray_rendition(obj)

    def _rerender_once(self, row: PhotoRecord, key: str, why: str) -> None:
        # One photo, one re-render, however many reasons (a lost thumbnail and a replaced original).
        if row.id in self._rerender:
            return
        self._rerender.add(row.id)
        # completed_at fences the claim: a photo another reconciliation re-rendered meanwhile is
        # left alone, so two plans never render it twice.
        self.add(Action(ActionKind.RERENDER, row.album_id, row.id, key, why, completed_at=row.completed_at))

    def _stray_rendition(self, obj: ObjectInfo) -> None:
        # A run writes renditions moments before it records their keys: give it the grace period.
        if _age(self.now, obj.last_modified) <= self.policy.orphan_grace_seconds:
            return
        parts = obj.key.split("/")
        album = keys.ADOPTION_NAMESPACE
        if len(parts) >= 4:
            try:
                album = uuid.UUID(parts[2])
            except ValueError:
                pass
        self.plan.objects_per_album[album] += 1
        self.add(Action(ActionKind.DELETE_RENDITION, album, keys.photo_id_from_key(obj.key), obj.key, "no row points at this rendition"))

    # -- duplicates -----------------------------------------------------------------------------

    def compare_duplicates(self, links: Iterable[DuplicateLink]) -> None:
        """Every completed duplicate with its canonical photo's row; after `compare_originals`,
        which decides what this plan does to the canonical photos and the duplicates' originals."""
        for link in links:
            self._stale_duplicate(link)

    def _stale_duplicate(self, link: DuplicateLink) -> None:
        photo = link.photo
        if photo.id in self._originals_gone:
            return
        why = stale_duplicate_reason(photo, link.canonical)
        if why is None and photo.duplicate_of in self._changing:
            why = f"duplicate of photo {photo.duplicate_of}, which {self._changing[photo.duplicate_of]}"
        if why is not None:
            # The re-render goes through the normal duplicate check: it becomes a duplicate of
            # another photo with its bytes that still stands, or is rendered on its own.
            self._rerender_once(photo, photo.original_key, why)

    # -- safety ---------------------------------------------------------------------------------

    def check_safety(self) -> ReconciliationPlan:
        self.plan.violations = safety_violations(self.plan, self.policy)
        return self.plan


def safety_violations(plan: ReconciliationPlan, policy: ReconcilePolicy) -> list[str]:
    """Why the plan must not be applied without review (empty: it is safe): an empty listing while
    the table has settled rows, or more destructive changes than the limit allows, in the whole
    table or in any album."""
    violations = []
    if plan.raw_objects_seen == 0 and plan.settled_rows > 0:
        violations.append(
            f"the bucket lists no originals under raw/ but the table has {plan.settled_rows} completed, failed, "
            "missing or trashed photos: wrong bucket or endpoint? nothing was changed"
        )
    destructive_by_album: Counter[uuid.UUID] = Counter(a.album_id for a in plan.actions if a.kind in DESTRUCTIVE)
    total = sum(destructive_by_album.values())
    whole = max(plan.rows_seen, plan.objects_seen)
    if total > max(policy.min_changes, policy.max_change_fraction * whole):
        violations.append(
            f"{total} destructive changes (flag missing, purge, delete renditions) out of {whole} rows/objects "
            f"exceeds the limit of {policy.max_change_fraction:.0%}"
        )
    for album, count in destructive_by_album.items():
        size = max(plan.rows_per_album.get(album, 0), plan.objects_per_album.get(album, 0))
        if count > max(policy.min_changes, policy.max_change_fraction * size):
            violations.append(
                f"album {album}: {count} destructive changes out of {size} rows/objects exceeds the limit of "
                f"{policy.max_change_fraction:.0%}"
            )
    return violations


def adopted_keys(plan: ReconciliationPlan) -> list[str]:
    """The raw keys the plan would adopt: what `refuse_erased` needs looked up."""
    return [a.key for a in plan.of_kind(ActionKind.ADOPT) if a.key]


def refuse_erased(plan: ReconciliationPlan, erased_keys: Collection[str], policy: ReconcilePolicy) -> ReconciliationPlan:
    """The plan with each adoption of an object whose photo or album was erased (`erased_keys`,
    from the erase record) turned into its removal, and the safety limit weighed again."""
    if not erased_keys:
        return plan
    erased = set(erased_keys)
    why = "object of an erased photo or album (a late or replayed upload): removed, never adopted"
    plan.actions = [
        replace(a, kind=ActionKind.DELETE_ERASED, detail=why, adopt=None) if a.kind is ActionKind.ADOPT and a.key in erased else a
        for a in plan.actions
    ]
    plan.violations = safety_violations(plan, policy)
    return plan


def plan_reconciliation(
    *,
    originals: Iterable[ObjectInfo],
    rows_by_original_key: Iterable[PhotoRecord],
    thumbnails: Iterable[ObjectInfo],
    rows_by_thumb_key: Iterable[tuple[str, PhotoRecord]],
    previews: Iterable[ObjectInfo],
    rows_by_preview_key: Iterable[tuple[str, PhotoRecord]],
    now: datetime,
    policy: ReconcilePolicy,
    cancelled_uploads: Collection[str] = (),
    sized: Iterable[ObjectInfo] = (),
    rows_by_sized_key: Iterable[tuple[str, PhotoRecord]] = (),
    duplicates: Iterable[DuplicateLink] = (),
) -> ReconciliationPlan:
    """All eight streams sorted by key (UTF-8 byte order). `sized`: the responsive sizes'
    objects (`processed/<size>/...`), `rows_by_sized_key`: the `renditions` table's keys.
    `duplicates`: the completed duplicates with their canonical rows, in any order."""
    planner = Planner(now, policy, cancelled_uploads)
    planner.compare_originals(rows_by_original_key, originals)
    planner.compare_renditions(rows_by_thumb_key, thumbnails)
    planner.compare_renditions(rows_by_preview_key, previews)
    planner.compare_renditions(rows_by_sized_key, sized)
    planner.compare_duplicates(duplicates)
    return planner.check_safety()


def retention_cutoff(now: datetime, policy: ReconcilePolicy) -> datetime:
    return now - timedelta(seconds=policy.missing_retention_seconds)
