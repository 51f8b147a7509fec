"""Reconciliation, carried out: stream the bucket and the table into the planner, refuse unsafe
plans, apply safe ones in batches. Dagster's `reconcile_storage` job and `photo-pipeline
reconcile` both drive this class.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from photo_pipeline.photos.reconcile_queries import ReconciliationQueries
from photo_pipeline.photos.repository import (
    NewPhoto,
    PhotoRecord,
    PhotoRepository,
    isolate_refused_rows,
    utc_now,
)
from photo_pipeline.reconcile.plan import (
    ActionKind,
    ReconcilePolicy,
    ReconciliationPlan,
    adopted_keys,
    plan_reconciliation,
    refuse_erased,
)
from photo_pipeline.services.processing import (
    AlbumReport,
    DatabaseUnavailable,
    PhotoProcessor,
)
from photo_pipeline.settings import Settings
from photo_pipeline.storage import ObjectInfo, ObjectStore, StorageError, keys

log = logging.getLogger(__name__)


class SafetyLimitExceeded(RuntimeError):
    """The plan would change too much at once; nothing was applied."""

    def __init__(self, plan: ReconciliationPlan) -> None:
        self.plan = plan
        reasons = "; ".join(plan.violations)
        super().__init__(
            f"reconciliation refused: {reasons}. Review the plan (on the storage_reconciliation asset, or with "
            "`photo-pipeline reconcile --dry-run`); if it is right, apply it with `photo-pipeline reconcile --force` "
            "(or launch reconcile_storage with dry_run: false, force: true)."
        )


@dataclass
class ApplyReport:
    applied: dict[str, int] = field(default_factory=dict)
    albums_to_render: set[uuid.UUID] = field(default_factory=set)
    rerendered: list[AlbumReport] = field(default_factory=list)
    # Kind of repair -> what failed (its other batches and every other kind still ran).
    errors: dict[str, str] = field(default_factory=dict)
    # Kind of repair -> the rows it could not write, each "key: error" (keys escaped).
    failed_rows: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def describe_errors(self) -> str:
        return "; ".join(f"{kind}: {error}" for kind, error in self.errors.items())


def _error_headline(exc: BaseException) -> str:
    """The exception's first line, escaped and bounded: SQLAlchemy appends the statement and its
    parameters (object keys a hostile uploader chose) on the lines after."""
    lines = str(exc).strip().splitlines()
    return keys.display_key(f"{type(exc).__name__}: {lines[0] if lines else ''}", limit=300)


# Every sized folder's name starts with a digit (keys.is_sized_key): listing these ten prefixes in
# order reads every responsive size in key order, thumbs/ and previews/ not at all.
_DIGITS = "0123456789"


def iter_sized_objects(
    store: ObjectStore, page_size: int, *, album_id: uuid.UUID | None = None, sizes: Iterable[int] = ()
) -> Iterator[ObjectInfo]:
    """The responsive sizes' objects in key order. Whole bucket: every `processed/<digits>/`
    folder, configured or not (a size dropped from the settings leaves orphans behind). One
    album: its slice of each folder of `sizes` (the configured ones and those the table records)."""
    if album_id is None:
        prefixes = [f"{keys.PROCESSED_PREFIX}{digit}" for digit in _DIGITS]
    else:
        prefixes = keys.sized_prefixes_in_key_order(sizes, album_id)
    for prefix in prefixes:
        yield from (obj for obj in store.iter_objects(prefix, page_size=page_size) if keys.is_sized_key(obj.key))


def settle_erased(plan: ReconciliationPlan, repository: PhotoRepository, policy: ReconcilePolicy) -> ReconciliationPlan:
    """The plan once the erase record has been asked about its adoptions (only those: the record
    grows forever and is never read whole): objects of erased photos or albums are removed, not
    adopted."""
    candidates = adopted_keys(plan)
    erased = repository.erased_objects(candidates, []) if candidates else set()
    return refuse_erased(plan, erased, policy)


def policy_from_settings(settings: Settings) -> ReconcilePolicy:
    return ReconcilePolicy(
        missing_grace_seconds=settings.missing_grace_seconds,
        orphan_grace_seconds=settings.orphan_grace_seconds,
        claim_lease_seconds=settings.claim_lease_seconds,
        missing_retention_seconds=settings.missing_retention_days * 86400,
        max_attempts=settings.max_attempts,
        max_change_fraction=settings.reconcile_max_change_fraction,
        min_changes=settings.reconcile_min_changes,
        rendition_sizes=settings.render.sizes,
    )


class Reconciler:
    def __init__(
        self,
        repository: PhotoRepository,
        store: ObjectStore,
        policy: ReconcilePolicy,
        *,
        clock: Callable[[], datetime] = utc_now,
        logger: logging.Logger = log,
        page_size: int = 1000,
    ) -> None:
        self.repository = repository
        self.store = store
        self.policy = policy
        self.queries = ReconciliationQueries(repository, page_size=page_size)
        self._clock = clock
        self._log = logger
        self._page_size = page_size

    def plan(self, album_id: uuid.UUID | None = None) -> ReconciliationPlan:
        """Read both sides (streamed) and decide. A listing error (timeout, 5xx, access, no such
        bucket) propagates as StorageError: the run aborts and nothing changes.

        With `album_id`, only that album's slice of the bucket (`raw/{album}/`, and its thumbnails
        and previews) and the rows whose keys lie in it: the same rules and the same safety limit,
        weighed against the album alone (the API's `POST /api/albums/{id}/check`)."""
        page = self._page_size
        now = self._clock()
        if album_id is None:
            raw, thumbs, previews, scoped = keys.RAW_PREFIX, keys.THUMBS_PREFIX, keys.PREVIEWS_PREFIX, False
        else:
            prefixes = keys.album_prefixes(album_id)
            raw, thumbs, previews, scoped = prefixes.raw, prefixes.thumbs, prefixes.previews, True
        plan = plan_reconciliation(
            originals=self.store.iter_objects(raw, page_size=page),
            rows_by_original_key=self.queries.rows_by_original_key(raw if scoped else None),
            thumbnails=self.store.iter_objects(thumbs, page_size=page),
            rows_by_thumb_key=self.queries.rows_by_thumb_key(thumbs if scoped else None),
            previews=self.store.iter_objects(previews, page_size=page),
            rows_by_preview_key=self.queries.rows_by_preview_key(previews if scoped else None),
            sized=iter_sized_objects(self.store, page, album_id=album_id, sizes=self._sized_sizes()),
            rows_by_sized_key=self._rows_by_sized_key(album_id),
            duplicates=self.queries.duplicate_links(raw if scoped else None),
            now=now,
            policy=self.policy,
            cancelled_uploads=self.repository.tombstones_since(now - timedelta(seconds=self.policy.tombstone_seconds)),
        )
        return settle_erased(plan, self.repository, self.policy)

    def _sized_sizes(self) -> list[int]:
        return sorted(set(self.repository.rendition_sizes()) | set(self.policy.rendition_sizes))

    def _rows_by_sized_key(self, album_id: uuid.UUID | None) -> Iterator[tuple[str, PhotoRecord]]:
        if album_id is None:
            return self.queries.rows_by_sized_key()
        # Per folder, in the same order as the listing (one album's slice of each).
        prefixes = keys.sized_prefixes_in_key_order(self._sized_sizes(), album_id)
        return (pair for prefix in prefixes for pair in self.queries.rows_by_sized_key(prefix))

    def apply(
        self,
        plan: ReconciliationPlan,
        *,
        force: bool = False,
        processor: PhotoProcessor | None = None,
        worker: str = "reconcile",
        rerender_limit: int = 500,
    ) -> ApplyReport:
        if not plan.safe and not force:
            raise SafetyLimitExceeded(plan)
        report = ApplyReport()
        ids = defaultdict(list)
        for action in plan.actions:
            ids[action.kind].append(action)
        q = self.queries
        # Each kind of repair is its own guarded section: a batch that fails (one bad row, a lost
        # connection, a store error) is logged and recorded in the report, and the other kinds
        # still run. The caller turns report.errors into a failed step / non-zero exit.
        section = self._section(report)

        section("requeue", lambda: q.touch_pending([a.photo_id for a in ids[ActionKind.REQUEUE] if a.photo_id]))
        section("restore", lambda: q.restore([a.photo_id for a in ids[ActionKind.RESTORE] if a.photo_id]))
        section("correct_key", lambda: sum(
            q.correct_key(a.photo_id, a.key, a.new_key)
            for a in ids[ActionKind.CORRECT_KEY]
            if a.photo_id and a.key and a.new_key
        ))
        section("seen_gone", lambda: q.mark_seen_gone([a.photo_id for a in ids[ActionKind.SEEN_GONE] if a.photo_id]))
        section("flag_missing", lambda: q.flag_missing([a.photo_id for a in ids[ActionKind.FLAG_MISSING] if a.photo_id]))
        cutoff = plan.taken_at - timedelta(seconds=self.policy.missing_retention_seconds)
        section("purge", lambda: q.purge_missing([a.photo_id for a in ids[ActionKind.PURGE] if a.photo_id], cutoff))
        section("adopt", lambda: len(self._adopt_each([a.adopt for a in ids[ActionKind.ADOPT] if a.adopt], report)))
        section("release_claim", lambda: q.end_expired_claims(
            [(a.photo_id, a.claimed_by) for a in ids[ActionKind.RELEASE_CLAIM] if a.photo_id and a.claimed_by],
            fail_reason=None,
        ))
        section("fail_claim", lambda: sum(
            q.end_expired_claims([(a.photo_id, a.claimed_by)], fail_reason=a.detail)
            for a in ids[ActionKind.FAIL_CLAIM]
            if a.photo_id and a.claimed_by
        ))
        section("delete_rendition", lambda: self._delete([a.key for a in ids[ActionKind.DELETE_RENDITION] if a.key]))
        section("delete_cancelled", lambda: self._delete([a.key for a in ids[ActionKind.DELETE_CANCELLED] if a.key]))
        section("delete_erased", lambda: self._delete([a.key for a in ids[ActionKind.DELETE_ERASED] if a.key]))
        section("purge_tombstones", lambda: self.repository.purge_tombstones(
            plan.taken_at - timedelta(seconds=self.policy.tombstone_seconds)
        ), counted=False)

        for kind in (ActionKind.REQUEUE, ActionKind.RESTORE, ActionKind.ADOPT, ActionKind.RELEASE_CLAIM, ActionKind.CORRECT_KEY):
            report.albums_to_render.update(a.album_id for a in ids[kind])
        section("rerender", lambda: self._rerender(ids[ActionKind.RERENDER][:rerender_limit], processor, worker, report))
        return report

    def _section(self, report: ApplyReport) -> Callable[..., None]:
        def run(kind: str, repair: Callable[[], int | None], *, counted: bool = True) -> None:
            try:
                done = repair()
            except (SQLAlchemyError, StorageError, DatabaseUnavailable) as exc:
                self._log.exception("reconcile: the %s repairs failed; the other kinds go on", kind)
                report.errors[kind] = _error_headline(exc)
                done = None
            if counted:
                report.applied[kind] = done or 0
            if kind in report.failed_rows and kind not in report.errors:
                failed = report.failed_rows[kind]
                report.errors[kind] = f"{len(failed)} row(s) could not be written; first: {failed[0]}"

        return run

    def _delete(self, doomed: list[str]) -> int:
        self.store.delete_many(doomed)
        return len(doomed)

    def _adopt_each(self, photos: list[NewPhoto], report: ApplyReport) -> list[uuid.UUID]:
        """Adopt in batches; rows the database refuses are isolated and reported, the others
        inserted."""

        def refused(photo: NewPhoto, exc: Exception) -> None:
            shown = keys.display_key(photo.original_key)
            self._log.exception("reconcile: could not adopt %s", shown, exc_info=exc)
            report.failed_rows.setdefault("adopt", []).append(f"{shown}: {_error_headline(exc)}")

        return isolate_refused_rows(photos, self._adopt, refused)

    def _adopt(self, photos: list[NewPhoto]) -> list[uuid.UUID]:
        created = self.repository.adopt(photos)
        leftovers = [p for p in photos if p.id not in set(created)]
        if not leftovers:
            return created
        # The id read from the file name belongs to another row already (a copy under another
        # key): the object still gets a row, under an id minted from its key.
        known = self.repository.find_by_original_keys([p.original_key for p in leftovers])
        minted = [
            NewPhoto(
                id=uuid.uuid5(keys.ADOPTION_NAMESPACE, f"photo:{p.original_key}"),
                album_id=p.album_id,
                original_key=p.original_key,
                filename=p.filename,
                content_type=p.content_type,
                original_bytes=p.original_bytes,
            )
            for p in leftovers
            if p.original_key not in known
        ]
        return created + self.repository.adopt(minted)

    def _rerender(self, actions, processor: PhotoProcessor | None, worker: str, report: ApplyReport) -> int:  # type: ignore[no-untyped-def]
        """completed -> processing -> completed for photos whose renditions vanished, whose original
        was replaced, or whose canonical photo no longer stands for them (a stale duplicate): the
        processor's duplicate check runs again on each, so a duplicate ends up pointing at a photo
        with its bytes that stands, or rendered on its own."""
        if not actions or processor is None:
            return 0
        by_album: dict[uuid.UUID, list[tuple[uuid.UUID, datetime | None]]] = defaultdict(list)
        for action in actions:
            by_album[action.album_id].append((action.photo_id, action.completed_at))
        rendered = 0
        for album, seen in by_album.items():
            # Only photos still completed as the plan saw them: a reconciliation that planned the
            # same re-render earlier (or a run since) already rendered them; not twice.
            claims = self.repository.claim_for_rerender(seen, worker)
            album_report = processor.process_claims(claims, album)
            report.rerendered.append(album_report)
            rendered += album_report.rendered
        return rendered
