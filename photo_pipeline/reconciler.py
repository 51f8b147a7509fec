"""Reconciliation, carried out: stream the bucket and the table into the planner, refuse unsafe
plans, apply safe ones in batches. Dagster's `reconcile_storage` job and `photo-pipeline
reconcile` both drive this class.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from photo_pipeline import keys
from photo_pipeline.models import PhotoStatus
from photo_pipeline.object_store import ObjectStore
from photo_pipeline.processing import AlbumReport, PhotoProcessor
from photo_pipeline.reconciliation import (
    ActionKind,
    ReconcilePolicy,
    ReconciliationPlan,
    plan_reconciliation,
)
from photo_pipeline.repository import (
    NewPhoto,
    PhotoRepository,
    ReconciliationQueries,
    utc_now,
)
from photo_pipeline.settings import Settings

log = logging.getLogger(__name__)


class SafetyLimitExceeded(RuntimeError):
    """The plan would change too much at once; nothing was applied."""

    def __init__(self, plan: ReconciliationPlan) -> None:
        self.plan = plan
        reasons = "; ".join(plan.violations)
        super().__init__(
            f"reconciliation refused: {reasons}. Review the plan with `photo-pipeline reconcile --dry-run`; "
            "if it is right, apply it with `photo-pipeline reconcile --force` (or run reconcile_storage with "
            "config force: true)."
        )


@dataclass
class ApplyReport:
    applied: dict[str, int] = field(default_factory=dict)
    albums_to_render: set[uuid.UUID] = field(default_factory=set)
    rerendered: list[AlbumReport] = field(default_factory=list)


def policy_from_settings(settings: Settings) -> ReconcilePolicy:
    return ReconcilePolicy(
        missing_grace_seconds=settings.missing_grace_seconds,
        orphan_grace_seconds=settings.orphan_grace_seconds,
        claim_lease_seconds=settings.claim_lease_seconds,
        missing_retention_seconds=settings.missing_retention_days * 86400,
        max_attempts=settings.max_attempts,
        max_change_fraction=settings.reconcile_max_change_fraction,
        min_changes=settings.reconcile_min_changes,
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

    def plan(self) -> ReconciliationPlan:
        """Read both sides (streamed) and decide. A listing error (timeout, 5xx, access, no such
        bucket) propagates as StorageError: the run aborts and nothing changes."""
        page = self._page_size
        now = self._clock()
        return plan_reconciliation(
            originals=self.store.iter_objects(keys.RAW_PREFIX, page_size=page),
            rows_by_original_key=self.queries.rows_by_original_key(),
            thumbnails=self.store.iter_objects(keys.THUMBS_PREFIX, page_size=page),
            rows_by_thumb_key=self.queries.rows_by_thumb_key(),
            previews=self.store.iter_objects(keys.PREVIEWS_PREFIX, page_size=page),
            rows_by_preview_key=self.queries.rows_by_preview_key(),
            now=now,
            policy=self.policy,
            cancelled_uploads=self.repository.tombstones_since(now - timedelta(seconds=self.policy.tombstone_seconds)),
        )

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

        report.applied["requeue"] = q.touch_pending([a.photo_id for a in ids[ActionKind.REQUEUE] if a.photo_id])
        report.applied["restore"] = q.restore([a.photo_id for a in ids[ActionKind.RESTORE] if a.photo_id])
        report.applied["correct_key"] = sum(
            q.correct_key(a.photo_id, a.key, a.new_key)
            for a in ids[ActionKind.CORRECT_KEY]
            if a.photo_id and a.key and a.new_key
        )
        report.applied["seen_gone"] = q.mark_seen_gone([a.photo_id for a in ids[ActionKind.SEEN_GONE] if a.photo_id])
        report.applied["flag_missing"] = q.flag_missing([a.photo_id for a in ids[ActionKind.FLAG_MISSING] if a.photo_id])
        cutoff = plan.taken_at - timedelta(seconds=self.policy.missing_retention_seconds)
        report.applied["purge"] = q.purge_missing([a.photo_id for a in ids[ActionKind.PURGE] if a.photo_id], cutoff)
        report.applied["adopt"] = len(self._adopt([a.adopt for a in ids[ActionKind.ADOPT] if a.adopt]))
        report.applied["release_claim"] = q.end_expired_claims(
            [(a.photo_id, a.claimed_by) for a in ids[ActionKind.RELEASE_CLAIM] if a.photo_id and a.claimed_by],
            fail_reason=None,
        )
        report.applied["fail_claim"] = sum(
            q.end_expired_claims([(a.photo_id, a.claimed_by)], fail_reason=a.detail)
            for a in ids[ActionKind.FAIL_CLAIM]
            if a.photo_id and a.claimed_by
        )
        doomed = [a.key for a in ids[ActionKind.DELETE_RENDITION] if a.key]
        self.store.delete_many(doomed)
        report.applied["delete_rendition"] = len(doomed)
        cancelled = [a.key for a in ids[ActionKind.DELETE_CANCELLED] if a.key]
        self.store.delete_many(cancelled)
        report.applied["delete_cancelled"] = len(cancelled)
        self.repository.purge_tombstones(plan.taken_at - timedelta(seconds=self.policy.tombstone_seconds))

        for kind in (ActionKind.REQUEUE, ActionKind.RESTORE, ActionKind.ADOPT, ActionKind.RELEASE_CLAIM, ActionKind.CORRECT_KEY):
            report.albums_to_render.update(a.album_id for a in ids[kind])
        report.applied["rerender"] = self._rerender(ids[ActionKind.RERENDER][:rerender_limit], processor, worker, report)
        return report

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
        """completed -> processing -> completed for photos whose renditions vanished."""
        if not actions or processor is None:
            return 0
        by_album: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
        for action in actions:
            by_album[action.album_id].append(action.photo_id)
        rendered = 0
        for album, photo_ids in by_album.items():
            claims = self.repository.claim_photos(photo_ids, worker, from_statuses=(PhotoStatus.COMPLETED,))
            album_report = processor.process_claims(claims, album)
            report.rerendered.append(album_report)
            rendered += album_report.rendered
        return rendered
