"""Health in the UI: the `pipeline_health` asset, materialized every few minutes, whose numeric
metadata the asset's page plots over time, and three asset checks on it with severities.

The figures and the rules live in `services/health.py`; this module only reads the table's snapshot and the
latest reconciliation's findings and hands them to Dagster. It never lists the bucket: the asset
runs every five minutes and a large bucket takes far longer to list; finding orphan objects is
`reconcile_storage`'s job, which records them on the `storage_reconciliation` asset.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSelection,
    DagsterInstance,
    DefaultScheduleStatus,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    asset,
    define_asset_job,
    in_process_executor,
)

from photo_pipeline.defs.reconcile.job import RECONCILIATION_ASSET
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import utc_now
from photo_pipeline.services.health import (
    CheckOutcome,
    HealthSnapshot,
    HealthThresholds,
    collect_health,
    evaluate_failure_rate,
    evaluate_orphans_or_missing,
    evaluate_stale_pending,
)

PIPELINE_HEALTH = "pipeline_health"
NO_STALE_PENDING = "no_stale_pending_photos"
FAILURE_RATE = "failure_rate_below_threshold"
NO_ORPHANS_OR_MISSING = "no_orphans_or_missing_rows"
HEALTH_CRON = "*/5 * * * *"

# Not in Settings (yet): the defaults of HealthThresholds. The window is an hour, which is what
# the `failure_rate_last_hour` metadata key promises.
THRESHOLDS = HealthThresholds()

NO_RECONCILIATION = "no reconciliation has run yet"
APPLIED_TEXT = {True: "changes applied", False: "dry run, nothing applied", None: "unknown whether applied"}


@dataclass(frozen=True)
class ReconciliationFindings:
    """What the latest `storage_reconciliation` materialization recorded."""

    orphan_objects: int
    missing_rows: int
    recorded_at: datetime
    run_id: str
    applied: bool | None
    # Objects under raw/ whose keys the table cannot hold (skipped by the sensor and reconcile).
    unholdable_keys: int = 0

    def describe(self, now: datetime) -> str:
        applied = APPLIED_TEXT[self.applied]
        age = (now - self.recorded_at).total_seconds()
        return (
            f"latest storage_reconciliation: {self.recorded_at:%Y-%m-%d %H:%M:%S} UTC "
            f"({age:.0f} s ago, run {self.run_id}, {applied})"
        )


def latest_reconciliation(instance: DagsterInstance) -> ReconciliationFindings | None:
    event = instance.get_latest_materialization_event(RECONCILIATION_ASSET)
    if event is None or event.asset_materialization is None:
        return None
    metadata = event.asset_materialization.metadata

    def number(key: str) -> int:
        value = metadata.get(key)
        raw = value.value if value is not None else None
        return int(raw) if isinstance(raw, (int, float)) else 0

    applied = metadata.get("applied")
    return ReconciliationFindings(
        orphan_objects=number("orphan_objects"),
        missing_rows=number("missing_rows"),
        recorded_at=datetime.fromtimestamp(event.timestamp, UTC),
        run_id=event.run_id,
        applied=bool(applied.value) if applied is not None else None,
        unholdable_keys=number("unholdable_keys"),
    )


def health_metadata(
    snapshot: HealthSnapshot, reconciliation: ReconciliationFindings | None
) -> dict[str, MetadataValue]:
    """Every numeric key is present on every materialization, so the UI's plots have no gaps;
    a figure with nothing to measure is reported as 0 and named in the `no_data` text."""
    no_data: list[str] = []

    def measured(key: str, value: float | None, why: str) -> MetadataValue:
        if value is None:
            no_data.append(f"{key} ({why})")
            return MetadataValue.float(0.0)
        return MetadataValue.float(round(value, 3))

    window = f"no photo completed or failed in the last {snapshot.window_seconds:.0f} s"
    outcomes = snapshot.completed_last_window + snapshot.failed_last_window
    metadata: dict[str, MetadataValue] = {
        status.value: MetadataValue.int(snapshot.count(status)) for status in PhotoStatus
    }
    metadata.update(
        total=MetadataValue.int(snapshot.total),
        oldest_pending_age_seconds=measured(
            "oldest_pending_age_seconds", snapshot.oldest_pending_age_seconds, "nothing pending"
        ),
        stale_pending=MetadataValue.int(snapshot.stale_pending),
        failure_rate_last_hour=measured(
            "failure_rate_last_hour", snapshot.failure_rate_last_window if outcomes else None, window
        ),
        completed_last_hour=MetadataValue.int(snapshot.completed_last_window),
        failed_last_hour=MetadataValue.int(snapshot.failed_last_window),
        latency_p50_seconds=measured(
            "latency_p50_seconds", snapshot.latency_p50_seconds, "no photo completed in the window"
        ),
        latency_p95_seconds=measured(
            "latency_p95_seconds", snapshot.latency_p95_seconds, "no photo completed in the window"
        ),
        latency_samples=MetadataValue.int(snapshot.latency_samples),
        expired_claims=MetadataValue.int(snapshot.expired_claims),
    )
    if reconciliation is None:
        no_data.append(f"orphan_objects, missing_rows, unholdable_keys ({NO_RECONCILIATION})")
        metadata.update(orphan_objects=MetadataValue.int(0), missing_rows=MetadataValue.int(0))
        metadata.update(unholdable_keys=MetadataValue.int(0))
        metadata["reconciliation"] = MetadataValue.text(NO_RECONCILIATION)
    else:
        metadata.update(
            orphan_objects=MetadataValue.int(reconciliation.orphan_objects),
            missing_rows=MetadataValue.int(reconciliation.missing_rows),
        )
        metadata.update(unholdable_keys=MetadataValue.int(reconciliation.unholdable_keys))
        metadata["reconciliation"] = MetadataValue.text(reconciliation.describe(snapshot.taken_at))
    metadata["no_data"] = MetadataValue.text("; ".join(no_data) if no_data else "none")
    return metadata


def check_result(name: str, outcome: CheckOutcome) -> AssetCheckResult:
    return AssetCheckResult(
        asset_key=PIPELINE_HEALTH,
        check_name=name,
        passed=outcome.passed,
        severity=AssetCheckSeverity(outcome.severity),
        description=outcome.description,
        metadata=outcome.metadata,
    )


def evaluate_checks(
    snapshot: HealthSnapshot, reconciliation: ReconciliationFindings | None, thresholds: HealthThresholds
) -> dict[str, CheckOutcome]:
    return {
        NO_STALE_PENDING: evaluate_stale_pending(snapshot, thresholds),
        FAILURE_RATE: evaluate_failure_rate(snapshot, thresholds),
        NO_ORPHANS_OR_MISSING: evaluate_orphans_or_missing(
            snapshot.count(PhotoStatus.MISSING),
            reconciliation.orphan_objects if reconciliation else None,
            reconciliation.missing_rows if reconciliation else None,
        ),
    }


# Non-blocking (the default): a failing check, WARN or ERROR, turns the check red/yellow in the UI
# but never fails the run, so the health history keeps its points when the pipeline is unwell.
HEALTH_CHECK_SPECS = [
    AssetCheckSpec(
        NO_STALE_PENDING,
        asset=PIPELINE_HEALTH,
        description=(
            f"WARN when a pending photo waited over {THRESHOLDS.stale_pending_seconds:.0f} s since upload; "
            f"ERROR when the oldest waited over {THRESHOLDS.stale_pending_error_seconds:.0f} s."
        ),
    ),
    AssetCheckSpec(
        FAILURE_RATE,
        asset=PIPELINE_HEALTH,
        description=(
            f"Share of failed photos among those finished in the last {THRESHOLDS.window_seconds:.0f} s: "
            f"WARN from {THRESHOLDS.failure_rate_warn:.0%}, ERROR from {THRESHOLDS.failure_rate_error:.0%}."
        ),
    ),
    AssetCheckSpec(
        NO_ORPHANS_OR_MISSING,
        asset=PIPELINE_HEALTH,
        description="WARN when rows are marked missing, or the latest reconciliation found orphan objects or rows without their original.",
    ),
]


@asset(
    name=PIPELINE_HEALTH,
    group_name="health",
    check_specs=HEALTH_CHECK_SPECS,
    description=(
        "Counts per status, oldest pending photo, failure rate and latency of the last hour, expired "
        "claims, and the latest reconciliation's orphan objects and missing rows. Open the asset's "
        "Plots tab to see them over time."
    ),
)
def pipeline_health(context: AssetExecutionContext, photo_pipeline: PhotoPipelineResource) -> MaterializeResult:
    settings = photo_pipeline.settings()
    snapshot = collect_health(photo_pipeline.repository().engine, utc_now(), THRESHOLDS, settings.claim_lease_seconds)
    reconciliation = latest_reconciliation(context.instance)
    outcomes = evaluate_checks(snapshot, reconciliation, THRESHOLDS)
    # Only the checks this run selected may report (the UI can materialize the asset alone).
    selected = {key.name for key in context.selected_asset_check_keys}
    context.log.info(
        "health: %s",
        ", ".join(f"{name}={'ok' if o.passed else o.severity}" for name, o in outcomes.items()),
    )
    return MaterializeResult(
        metadata=health_metadata(snapshot, reconciliation),
        check_results=[check_result(name, o) for name, o in outcomes.items() if name in selected],
    )


pipeline_health_job = define_asset_job(
    name="pipeline_health_job",
    # Selecting the asset selects the checks that target it too.
    selection=AssetSelection.assets(PIPELINE_HEALTH),
    # One cheap step: a subprocess per step would cost more than the queries.
    executor_def=in_process_executor,
    description="Snapshot the pipeline's health (metadata plotted over time) and run its checks.",
    # Ahead of queued render runs, so health stays visible while the queue is backed up.
    tags={"photo_pipeline/kind": "health", "dagster/priority": "5"},
)

pipeline_health_schedule = ScheduleDefinition(
    name="pipeline_health_schedule",
    job=pipeline_health_job,
    cron_schedule=HEALTH_CRON,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Health snapshot every five minutes.",
)

HEALTH_ASSETS = [pipeline_health]
HEALTH_JOBS = [pipeline_health_job]
HEALTH_SCHEDULES = [pipeline_health_schedule]

__all__ = [
    "HEALTH_ASSETS",
    "HEALTH_CHECK_SPECS",
    "HEALTH_JOBS",
    "HEALTH_SCHEDULES",
    "pipeline_health",
    "pipeline_health_job",
    "pipeline_health_schedule",
]
