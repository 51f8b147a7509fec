"""A reconciliation, told: what the plan found in operator's words, what became of it (applied,
dry run, refused, ...), and the rows an operator reads (actions, skipped keys). Pure: the
`storage_reconciliation` asset turns this into metadata tables, `pipeline_health` reads the
findings back, and tests reach every rule without Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from photo_pipeline.reconcile.plan import DESTRUCTIVE, ActionKind, ReconciliationPlan
from photo_pipeline.storage import keys

# What each kind of action does, for the counts table (the same words as docs/operations.md).
ACTION_MEANING: Mapping[ActionKind, str] = {
    ActionKind.REQUEUE: "pending row, original present: touched so its album gets a run",
    ActionKind.SEEN_GONE: "original gone, first sighting: remembered (status unchanged)",
    ActionKind.FLAG_MISSING: "original gone past the grace period: row marked missing",
    ActionKind.RESTORE: "original back: missing row back to pending",
    ActionKind.PURGE: "missing past the retention period: row deleted",
    ActionKind.ADOPT: "raw object without a row: pending row created",
    ActionKind.CORRECT_KEY: "row's original_key corrected to the object carrying its id",
    ActionKind.DELETE_RENDITION: "rendition no row points at: removed",
    ActionKind.RERENDER: (
        "completed photo with a rendition gone or its original replaced, or a duplicate whose photo is gone "
        "or changed: rendered again"
    ),
    ActionKind.RELEASE_CLAIM: "claim past its lease: back to pending",
    ActionKind.FAIL_CLAIM: "claim past its lease, attempts used up: failed",
    ActionKind.DELETE_CANCELLED: "object of a cleaned-up upload that landed late: removed",
    ActionKind.DELETE_ERASED: "object of an erased photo or album (a late or replayed upload): removed, never adopted",
}

# How long a key or a reason may be in a table cell (keys are escaped and shortened in the middle).
CELL_LIMIT = 300


class Outcome(StrEnum):
    """What became of a plan. Every outcome is recorded: a refused plan's findings are as true
    as an applied one's."""

    APPLIED = "applied"
    FORCED = "applied past the safety limit (force)"
    PARTLY_APPLIED = "applied in part: some repairs failed"
    DRY_RUN = "dry run: nothing applied"
    REFUSED = "refused by the safety limit: nothing applied"

    @property
    def applied(self) -> bool:
        return self in (Outcome.APPLIED, Outcome.FORCED, Outcome.PARTLY_APPLIED)

    @property
    def needs_attention(self) -> bool:
        """The run fails on these (after recording the plan), so a scheduled run that did not
        do its job never reads as a success."""
        return self in (Outcome.REFUSED, Outcome.PARTLY_APPLIED)


class Weighed(Protocol):
    """A plan the safety limit has judged (a reconciliation's, empty_trash's)."""

    @property
    def safe(self) -> bool: ...


def decide_outcome(plan: Weighed, *, dry_run: bool, force: bool, apply_ok: bool = True) -> Outcome:
    """What a run with this config makes of this plan (`apply_ok`: every kind of repair ran)."""
    if dry_run:
        return Outcome.DRY_RUN
    if not plan.safe and not force:
        return Outcome.REFUSED
    if not apply_ok:
        return Outcome.PARTLY_APPLIED
    return Outcome.FORCED if not plan.safe else Outcome.APPLIED


@dataclass(frozen=True)
class Findings:
    """The plan's figures under the names `storage_reconciliation` and `pipeline_health` plot."""

    orphan_objects: int  # objects with no row: raw ones to adopt, stray renditions, late cancelled or erased uploads
    missing_rows: int  # rows whose original is gone (first sighting or past the grace period)
    rerender_needed: int
    expired_claims: int
    planned_changes: int
    destructive_changes: int
    unholdable_keys: int


def findings(plan: ReconciliationPlan) -> Findings:
    counts = plan.counts()
    return Findings(
        orphan_objects=(
            counts[ActionKind.ADOPT]
            + counts[ActionKind.DELETE_RENDITION]
            + counts[ActionKind.DELETE_CANCELLED]
            + counts[ActionKind.DELETE_ERASED]
        ),
        missing_rows=counts[ActionKind.FLAG_MISSING] + counts[ActionKind.SEEN_GONE],
        rerender_needed=counts[ActionKind.RERENDER],
        expired_claims=counts[ActionKind.RELEASE_CLAIM] + counts[ActionKind.FAIL_CLAIM],
        planned_changes=len(plan.actions),
        destructive_changes=plan.destructive,
        unholdable_keys=plan.unholdable_keys,
    )


@dataclass(frozen=True)
class KindRow:
    action: str
    planned: int
    applied: int | None  # None: nothing was applied in this run (dry run, refused)
    destructive: bool
    meaning: str

    @property
    def repair(self) -> str:
        """The kind with what it does, in one cell: "purge (destructive): missing past ..."."""
        return f"{self.action}{' (destructive)' if self.destructive else ''}: {self.meaning}"


def counts_by_kind(plan: ReconciliationPlan, applied: Mapping[str, int] | None) -> list[KindRow]:
    """One row per kind of action the plan holds, in ActionKind's order; the kinds it does not
    hold are left out (`plan.counts()` has every kind, for programs)."""
    counts = plan.counts()
    return [
        KindRow(
            action=kind.value,
            planned=counts[kind.value],
            applied=None if applied is None else applied.get(kind.value, 0),
            destructive=kind in DESTRUCTIVE,
            meaning=ACTION_MEANING[kind],
        )
        for kind in ActionKind
        if counts[kind.value]
    ]


def headline(plan: ReconciliationPlan) -> str:
    """The plan in one line: how many repairs of which kinds, or that there is nothing to do."""
    rows = counts_by_kind(plan, None)
    if not rows:
        return f"nothing to repair: the table ({plan.rows_seen} rows) and the bucket ({plan.objects_seen} objects) agree"
    kinds = ", ".join(f"{row.action} {row.planned}" for row in rows)
    destructive = f", {plan.destructive} of them destructive" if plan.destructive else ""
    return f"{len(plan.actions)} repair(s) planned{destructive}: {kinds}"


def how_to_apply(plan: ReconciliationPlan, outcome: Outcome, apply_job: str) -> str | None:
    """The next step for a plan that holds repairs and was not applied; None otherwise."""
    if outcome.applied or not plan.actions:
        return None
    if not plan.safe:
        return (
            f"the safety limit refuses this plan ({'; '.join(plan.violations)}). Review first_actions; only if it is "
            f"right, launch the {apply_job} job with force: true in its launchpad"
        )
    return (
        f"to apply: launch the {apply_job} job (its launchpad is set to dry_run: false: Launch Run). "
        "It plans afresh and applies, behind the safety limit"
    )


@dataclass(frozen=True)
class ActionRow:
    action: str
    album: str
    photo: str
    key: str
    reason: str

    @property
    def text(self) -> str:
        """The action in one cell: kind, reason, then the key (which names album and photo) or,
        without one, the ids."""
        where = self.key or f"album {self.album}"
        if self.photo and self.photo not in where:
            where += f" (photo {self.photo})"
        return f"{self.action}: {self.reason}: {where}"


def first_actions(plan: ReconciliationPlan, limit: int) -> list[ActionRow]:
    """The first `limit` actions, destructive ones first (what a refused plan would have
    destroyed is what the operator must review); keys and reasons escaped for display."""
    ordered = sorted(plan.actions, key=lambda a: a.kind not in DESTRUCTIVE)[:limit]
    return [
        ActionRow(
            action=a.kind.value,
            album=str(a.album_id),
            photo=str(a.photo_id) if a.photo_id else "",
            key=keys.display_key(a.key, limit=CELL_LIMIT) if a.key else "",
            reason=keys.display_key(a.detail, limit=CELL_LIMIT),
        )
        for a in ordered
    ]


@dataclass(frozen=True)
class SkippedRow:
    key: str
    reason: str

    @property
    def text(self) -> str:
        return f"{self.key}: {self.reason}"


def skipped_keys(plan: ReconciliationPlan) -> list[SkippedRow]:
    """The objects whose keys the table cannot hold (the plan keeps the first ones), escaped."""
    return [SkippedRow(key=s.shown, reason=s.reason) for s in plan.skipped_keys]
