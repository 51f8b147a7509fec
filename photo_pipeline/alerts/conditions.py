"""The conditions that alert, and their figures with thresholds. Pure: from the health snapshot,
the latest reconciliation plan, the safety-limit refusals and the scheduled assets' ages to
observations; `state.py` decides what to send.

Each condition is "on" above its start threshold and resolved at or below its clear threshold,
which is lower (hysteresis): a figure hovering at the threshold alerts once, not every tick.
A figure that cannot be judged now (too few photos for a rate, an asset never materialized) is
None: the condition keeps its state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from photo_pipeline.alerts.messages import duration_text
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.services.health import FreshnessWindows, HealthSnapshot, ReconciliationFindings
from photo_pipeline.settings import AlertSettings

FAILURE_RATE = "failure_rate"
OLDEST_PENDING = "oldest_pending"
EXPIRED_CLAIMS = "expired_claims"
ORPHAN_OBJECTS = "orphan_objects"
MISSING_ROWS = "missing_rows"
SAFETY_LIMIT = "safety_limit"  # one per watched job: safety_limit:<job>
SCHEDULE_STOPPED = "schedule_stopped"  # one per scheduled asset: schedule_stopped:<asset>


@dataclass(frozen=True)
class Threshold:
    """On above `start`; resolved at or below `clear` (<= start)."""

    start: float
    clear: float

    @classmethod
    def with_clear_fraction(cls, start: float, fraction: float) -> Threshold:
        return cls(start, start * fraction)


@dataclass(frozen=True)
class Observation:
    key: str
    title: str  # what is wrong, when it is
    value: float | None  # None: cannot be judged now
    threshold: Threshold
    detail: str  # the figure in words
    limit: str  # the threshold in words
    advice: str  # what to do about it

    @property
    def above(self) -> bool:
        return self.value is not None and self.value > self.threshold.start

    @property
    def cleared(self) -> bool:
        return self.value is not None and self.value <= self.threshold.clear


@dataclass(frozen=True)
class AlertThresholds:
    failure_rate: Threshold
    failure_rate_min_photos: int
    pending_age_seconds: Threshold
    expired_claims: Threshold
    orphan_objects: Threshold
    missing_rows: Threshold

    @classmethod
    def from_settings(cls, alerts: AlertSettings) -> AlertThresholds:
        def threshold(start: float) -> Threshold:
            return Threshold.with_clear_fraction(start, alerts.clear_fraction)

        return cls(
            failure_rate=threshold(alerts.failure_rate),
            failure_rate_min_photos=alerts.failure_rate_min_photos,
            pending_age_seconds=threshold(alerts.pending_age_minutes * 60.0),
            expired_claims=threshold(alerts.expired_claims),
            orphan_objects=threshold(alerts.orphan_objects),
            missing_rows=threshold(alerts.missing_rows),
        )


def count_limit(threshold: Threshold) -> str:
    return f"alerts above {threshold.start:g}, resolved at {threshold.clear:g}"


# -- the table -----------------------------------------------------------------------------------


def observe_table(snapshot: HealthSnapshot, thresholds: AlertThresholds) -> list[Observation]:
    return [
        failure_rate(snapshot, thresholds),
        oldest_pending(snapshot, thresholds),
        expired_claims(snapshot, thresholds),
    ]


def failure_rate(snapshot: HealthSnapshot, thresholds: AlertThresholds) -> Observation:
    finished = snapshot.failed_last_window + snapshot.completed_last_window
    window = duration_text(snapshot.window_seconds)
    if finished == 0:
        value: float | None = 0.0  # nothing failed: an outage that ended is resolved
        detail = f"no photo finished in the last {window}"
    else:
        rate = snapshot.failure_rate_last_window
        value = rate if finished >= thresholds.failure_rate_min_photos else None
        detail = f"{snapshot.failed_last_window} of {finished} photo(s) finished in the last {window} failed ({rate:.1%})"
    return Observation(
        key=FAILURE_RATE,
        title="photos are failing",
        value=value,
        threshold=thresholds.failure_rate,
        detail=detail,
        limit=(
            f"alerts above {thresholds.failure_rate.start:.0%} over at least {thresholds.failure_rate_min_photos} photos, "
            f"resolved at {thresholds.failure_rate.clear:.0%}"
        ),
        advice=(
            "`photo-pipeline status` lists the failed photos with their errors; corrupt uploads fail alone, many "
            "failures at once point at the bucket, the database or a worker. Fix the cause, then re-run them with "
            "the reprocess_failed_photos job."
        ),
    )


def oldest_pending(snapshot: HealthSnapshot, thresholds: AlertThresholds) -> Observation:
    age = snapshot.oldest_pending_age_seconds or 0.0
    pending = snapshot.count(PhotoStatus.PENDING)
    return Observation(
        key=OLDEST_PENDING,
        title="photos wait to be processed",
        value=age,
        threshold=thresholds.pending_age_seconds,
        detail=(f"the oldest of {pending} pending photo(s) was uploaded {duration_text(age)} ago" if pending else "no photo is pending"),
        limit=(
            f"alerts when the oldest pending photo is older than {duration_text(thresholds.pending_age_seconds.start)}, "
            f"resolved under {duration_text(thresholds.pending_age_seconds.clear)}"
        ),
        advice=(
            "Is the Dagster daemon running, are process_album runs queued but not launched (run queue, Celery "
            "workers), is pending_photo_sensor on? Its original may also never have arrived: `photo-pipeline "
            "reconcile --dry-run` tells."
        ),
    )


def expired_claims(snapshot: HealthSnapshot, thresholds: AlertThresholds) -> Observation:
    return Observation(
        key=EXPIRED_CLAIMS,
        title="photos are stuck in processing",
        value=float(snapshot.expired_claims),
        threshold=thresholds.expired_claims,
        detail=(
            f"{snapshot.expired_claims} photo(s) are processing under a claim not renewed for over "
            f"{duration_text(snapshot.lease_seconds)} (the lease)"
        ),
        limit=count_limit(thresholds.expired_claims),
        advice=(
            "Their run died or hangs (killed worker, lost database connection). pending_photo_sensor and "
            "reconcile_storage take expired claims back; if they stay, check that the daemon runs and look at "
            "the album's latest process_album run."
        ),
    )


# -- the latest reconciliation plan --------------------------------------------------------------


def observe_reconciliation(findings: ReconciliationFindings | None, thresholds: AlertThresholds) -> list[Observation]:
    """Nothing to judge before the first plan."""
    orphans = float(findings.orphan_objects) if findings is not None else None
    missing = float(findings.missing_rows) if findings is not None else None
    plan = f" ({findings.outcome}, run {findings.run_id})" if findings is not None else ""
    return [
        Observation(
            key=ORPHAN_OBJECTS,
            title="objects without a row in the bucket",
            value=orphans,
            threshold=thresholds.orphan_objects,
            detail=f"the latest reconciliation plan found {orphans or 0:.0f} object(s) with no row{plan}",
            limit=count_limit(thresholds.orphan_objects),
            advice=(
                "Reconciliation adopts raw objects and removes stray renditions when it applies; if its runs are "
                "refused or fail, see that alert. Many orphans at once: was the table restored from an old backup?"
            ),
        ),
        Observation(
            key=MISSING_ROWS,
            title="photos whose original is gone",
            value=missing,
            threshold=thresholds.missing_rows,
            detail=f"the latest reconciliation plan found {missing or 0:.0f} row(s) whose original is not in the bucket{plan}",
            limit=count_limit(thresholds.missing_rows),
            advice=(
                "Originals were deleted or the bucket is not the one the table belongs to (PHOTO_BUCKET, the endpoint). "
                "Restore them from a backup: a returning original brings its row back to pending."
            ),
        ),
    ]


# -- refusals by a safety limit ------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """What the latest run of a job guarded by a safety limit made of its plan."""

    job: str
    refused: bool
    reason: str
    run_id: str


def observe_refusals(refusals: Sequence[Refusal]) -> list[Observation]:
    return [
        Observation(
            key=f"{SAFETY_LIMIT}:{refusal.job}",
            title=f"{refusal.job} was refused by its safety limit",
            value=1.0 if refusal.refused else 0.0,
            threshold=Threshold(0.0, 0.0),
            detail=(
                f"the latest {refusal.job} plan (run {refusal.run_id}) was refused: {refusal.reason}"
                if refusal.refused
                else f"the latest {refusal.job} plan (run {refusal.run_id}): {refusal.reason}"
            ),
            limit="alerts while the latest plan is refused",
            advice=(
                f"Nothing was changed. Review the plan on the job's asset page (its first actions and the refusal); "
                f"if it is right, launch {refusal.job} with force: true; if not, find why so much looks wrong "
                "(a wrong bucket or endpoint, a restored table)."
            ),
        )
        for refusal in refusals
    ]


# -- schedules that stopped ----------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduledAsset:
    asset: str
    schedule: str
    windows: FreshnessWindows


def observe_schedules(ages: Sequence[tuple[ScheduledAsset, float | None]]) -> list[Observation]:
    """`ages`: seconds since each asset's latest materialization (None: never materialized,
    nothing to judge). Judged by the asset's freshness policy: on when overdue, resolved when
    no longer late."""
    return [
        Observation(
            key=f"{SCHEDULE_STOPPED}:{scheduled.asset}",
            title=f"{scheduled.schedule} stopped",
            value=age,
            threshold=Threshold(scheduled.windows.fail_after.total_seconds(), scheduled.windows.warn_after.total_seconds()),
            detail=(
                f"{scheduled.asset} was last materialized {duration_text(age)} ago"
                if age is not None
                else f"{scheduled.asset} was never materialized"
            ),
            limit=f"its freshness policy: {scheduled.windows.describe()}",
            advice=(
                f"Is {scheduled.schedule} on (Overview > Schedules) and the daemon running (Deployment > Daemons)? "
                f"Do its runs fail before they record anything (Runs, filtered by the job)?"
            ),
        )
        for scheduled, age in ages
    ]
