"""reconcile/report.py without Dagster: what a plan found, what became of it, and the rows the
`storage_reconciliation` asset shows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from photo_pipeline.reconcile import report
from photo_pipeline.reconcile.plan import Action, ActionKind, ReconciliationPlan
from photo_pipeline.storage import keys

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
ALBUM = uuid.uuid4()


def plan_of(*kinds: ActionKind, violations: tuple[str, ...] = ()) -> ReconciliationPlan:
    plan = ReconciliationPlan(taken_at=NOW)
    for i, kind in enumerate(kinds):
        photo = uuid.uuid4()
        plan.actions.append(Action(kind, ALBUM, photo, keys.raw_key(ALBUM, photo, "jpg"), f"reason {i}"))
    plan.violations.extend(violations)
    return plan


@pytest.mark.parametrize(
    ("safe", "dry_run", "force", "apply_ok", "outcome"),
    [
        (True, True, False, True, report.Outcome.DRY_RUN),
        (False, True, True, True, report.Outcome.DRY_RUN),  # a dry run never applies, forced or not
        (True, False, False, True, report.Outcome.APPLIED),
        (False, False, False, True, report.Outcome.REFUSED),
        (False, False, True, True, report.Outcome.FORCED),
        (True, False, False, False, report.Outcome.PARTLY_APPLIED),
    ],
)
def test_outcome(safe: bool, dry_run: bool, force: bool, apply_ok: bool, outcome: report.Outcome) -> None:
    plan = plan_of(ActionKind.ADOPT, violations=() if safe else ("too many",))
    assert report.decide_outcome(plan, dry_run=dry_run, force=force, apply_ok=apply_ok) is outcome


def test_outcomes_that_fail_the_run_and_that_applied() -> None:
    assert {o for o in report.Outcome if o.needs_attention} == {report.Outcome.REFUSED, report.Outcome.PARTLY_APPLIED}
    assert {o for o in report.Outcome if not o.applied} == {report.Outcome.DRY_RUN, report.Outcome.REFUSED}


def test_findings_name_what_the_operator_counts() -> None:
    plan = plan_of(
        ActionKind.ADOPT, ActionKind.DELETE_RENDITION, ActionKind.DELETE_CANCELLED,  # orphan objects
        ActionKind.SEEN_GONE, ActionKind.FLAG_MISSING,  # rows without their original
        ActionKind.RERENDER, ActionKind.RELEASE_CLAIM, ActionKind.FAIL_CLAIM, ActionKind.REQUEUE,
    )  # fmt: skip
    plan.unholdable_keys = 2

    assert report.findings(plan) == report.Findings(
        orphan_objects=3, missing_rows=2, rerender_needed=1, expired_claims=2, planned_changes=9,
        destructive_changes=4, unholdable_keys=2,
    )  # fmt: skip


def test_only_the_kinds_the_plan_holds_are_listed_each_with_what_it_does() -> None:
    plan = plan_of(ActionKind.ADOPT, ActionKind.ADOPT, ActionKind.PURGE)

    dry = report.counts_by_kind(plan, None)
    applied = report.counts_by_kind(plan, {"adopt": 2})

    assert [row.action for row in dry] == ["purge", "adopt"], "ActionKind's order, nothing else"
    assert (dry[1].planned, dry[1].applied, dry[0].destructive) == (2, None, True)
    assert [(row.action, row.applied) for row in applied] == [("purge", 0), ("adopt", 2)]
    assert dry[0].repair == "purge (destructive): missing past the retention period: row deleted"
    assert dry[1].repair == "adopt: raw object without a row: pending row created"
    assert report.counts_by_kind(plan_of(), None) == []
    assert set(report.ACTION_MEANING) == set(ActionKind), "every kind can be explained"


def test_the_plans_headline() -> None:
    nothing = plan_of()
    nothing.rows_seen, nothing.objects_seen = 11, 64
    assert report.headline(nothing) == "nothing to repair: the table (11 rows) and the bucket (64 objects) agree"
    assert report.headline(plan_of(ActionKind.ADOPT, ActionKind.PURGE, ActionKind.ADOPT)) == (
        "3 repair(s) planned, 1 of them destructive: purge 1, adopt 2"
    )


def test_how_to_apply_a_plan_that_was_not() -> None:
    safe = plan_of(ActionKind.ADOPT)
    refused = plan_of(ActionKind.PURGE, violations=("too many",))

    assert report.how_to_apply(safe, report.Outcome.DRY_RUN, "apply_reconciliation") == (
        "to apply: launch the apply_reconciliation job (its launchpad is set to dry_run: false: Launch Run). "
        "It plans afresh and applies, behind the safety limit"
    )
    told = report.how_to_apply(refused, report.Outcome.REFUSED, "apply_reconciliation")
    assert told is not None and "too many" in told and "force: true" in told
    assert report.how_to_apply(safe, report.Outcome.APPLIED, "apply_reconciliation") is None
    assert report.how_to_apply(plan_of(), report.Outcome.DRY_RUN, "apply_reconciliation") is None, "nothing to apply"


def test_first_actions_put_destructive_ones_first_and_escape_what_they_show() -> None:
    plan = plan_of(ActionKind.ADOPT, ActionKind.REQUEUE, ActionKind.FLAG_MISSING, ActionKind.PURGE)
    plan.actions.append(Action(ActionKind.CORRECT_KEY, ALBUM, None, "raw/x/a\u202eb.jpg", "original is at raw/y/\u202e.jpg"))

    rows = report.first_actions(plan, limit=3)

    assert [r.action for r in rows] == ["flag_missing", "purge", "adopt"]
    assert rows[0].album == str(ALBUM) and rows[0].photo == str(plan.actions[2].photo_id)
    assert rows[0].key == plan.actions[2].key and rows[0].reason == "reason 2"
    [correct] = [r for r in report.first_actions(plan, limit=10) if r.action == "correct_key"]
    assert "\u202e" not in correct.key + correct.reason and "\\u202e" in correct.key
    assert correct.photo == ""
    assert rows[0].text == f"flag_missing: reason 2: {plan.actions[2].key}", "the key names album and photo"
    assert correct.text == f"correct_key: {correct.reason}: {correct.key}"
    keyless = report.ActionRow(action="rerender", album="a", photo="p", key="", reason="why")
    assert keyless.text == "rerender: why: album a (photo p)"


def test_skipped_keys_are_shown_escaped() -> None:
    plan = plan_of()
    plan.skip(keys.SkippedKey("raw/a/bad\x00name.jpg", "contains a NUL byte"))

    [row] = report.skipped_keys(plan)

    assert row == report.SkippedRow(key="raw/a/bad\\x00name.jpg", reason="contains a NUL byte")
    assert row.text == "raw/a/bad\\x00name.jpg: contains a NUL byte"
