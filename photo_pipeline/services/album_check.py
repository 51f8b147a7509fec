"""The old "check pending" for one album: reconciliation's rules on the album's slice of the
bucket and the table, planned (a dry run) or applied behind the same safety limit.

Applied from a request handler, it changes rows and deletes strays but renders nothing: a
completed photo whose renditions vanished (or whose original was replaced, or a duplicate whose
photo is gone or changed) is left to the scheduled `reconcile_storage` (or `photo-pipeline
reconcile`), which render in a run, not in an HTTP request. The albums whose
photos went (back) to `pending` are named, so the caller requests their runs at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.reconcile.apply import ApplyReport, Reconciler, policy_from_settings
from photo_pipeline.reconcile.plan import ActionKind, ReconciliationPlan
from photo_pipeline.settings import Settings
from photo_pipeline.storage import ObjectStore


@dataclass(frozen=True)
class AlbumCheck:
    album_id: uuid.UUID
    plan: ReconciliationPlan
    report: ApplyReport | None  # None for a dry run

    @property
    def deferred(self) -> dict[str, int]:
        """Planned repairs an applied check leaves to reconcile_storage."""
        rerenders = len(self.plan.of_kind(ActionKind.RERENDER))
        return {ActionKind.RERENDER.value: rerenders} if self.report is not None and rerenders else {}


def check_album(
    repository: PhotoRepository, store: ObjectStore, settings: Settings, album_id: uuid.UUID, *, apply: bool
) -> AlbumCheck:
    """Plan the album; with `apply`, carry the plan out unless it breaks the safety limit
    (SafetyLimitExceeded, nothing changed). StorageError when the bucket cannot be listed."""
    reconciler = Reconciler(repository, store, policy_from_settings(settings))
    plan = reconciler.plan(album_id)
    if not apply:
        return AlbumCheck(album_id, plan, None)
    # processor=None: no rendering inside a request (see the module's docstring).
    report = reconciler.apply(plan, force=False, processor=None, worker="api-check")
    return AlbumCheck(album_id, plan, report)
