"""Health in the UI: the `pipeline_health` asset, materialized every few minutes, whose numeric
metadata the asset's page plots over time, and three asset checks on it with severities.

The figures and the rules live in `services/health.py`; this module only reads the table's snapshot and the
latest reconciliation's findings and hands them to Dagster. It never lists the bucket: the asset
runs every five minutes and a large bucket takes far longer to list; finding orphan objects is
`reconcile_storage`'s job, which records them on the `storage_reconciliation` asset.
Its freshness policy (from its schedule, `freshness.py`) turns it red when the snapshots stop.
"""

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

from photo_pipeline.defs.health.freshness import freshness_policy, windows_for_schedule
from photo_pipeline.defs.reconcile.assets import (
    MISSING_ROWS,
    ORPHAN_OBJECTS,
    OUTCOME,
    PLAN_TAKEN_AT,
    RECONCILIATION_ASSET,
    UNHOLDABLE_KEYS,
)
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import utc_now
from photo_pipeline.services.health import (
    CheckOutcome,
    HealthSnapshot,
    HealthThresholds,
    ReconciliationFindings,
    collect_health,
    evaluate_failure_rate,
    evaluate_orphans_or_missing,
    evaluate_stale_pending,
    failure_rate_thresholds_text,
    stale_pending_thresholds_text,
)

PIPELINE_HEALTH = "pipeline_health"
NO_STALE_PENDING = "no_stale_pending_photos"
FAILURE_RATE = "failure_rate_below_threshold"
NO_ORPHANS_OR_MISSING = "no_orphans_or_missing_rows"
HEALTH_CRON = "*/5 * * * *"
HEALTH_FRESHNESS = windows_for_schedule(HEALTH_CRON)

# Not in Settings (yet): the defaults of HealthThresholds. The window is an hour, which is what
# the `failure_rate_last_hour` metadata key promises.
THRESHOLDS = HealthThresholds()

NO_RECONCILIATION = "no reconciliation has run yet"


def latest_reconciliation(instance: DagsterInstance) -> ReconciliationFindings | None:
    """The latest plan `storage_reconciliation` recorded, whatever became of it (applied, dry run,
    refused): its findings describe the bucket when it was made."""
    event = instance.get_latest_materialization_event(RECONCILIATION_ASSET)
    if event is None or event.asset_materialization is None:
        return None
    metadata = event.asset_materialization.metadata

    def number(key: str) -> int:
        value = metadata.get(key)
        raw = value.value if value is not None else None
        return int(raw) if isinstance(raw, (int, float)) else 0

    taken = metadata.get(PLAN_TAKEN_AT)
    outcome = metadata.get(OUTCOME)
    # Materializations recorded before the plan's time was (older code, a hand-reported event)
    # fall back to the event's own time.
    planned_at = taken.value if taken is not None and isinstance(taken.value, float) else event.timestamp
    return ReconciliationFindings(
        orphan_objects=number(ORPHAN_OBJECTS),
        missing_rows=number(MISSING_ROWS),
        unholdable_keys=number(UNHOLDABLE_KEYS),
        planned_at=datetime.fromtimestamp(planned_at, UTC),
        outcome=str(outcome.value) if outcome is not None else "outcome not recorded",
        run_id=event.run_id,
    )


def health_metadata(
    snapshot: HealthSnapshot, reconciliation: ReconciliationFindings | None
) -> dict[str, MetadataValue]:
    """Numbers only for what was measured: a figure with nothing to measure (no photo completed,
    no reconciliation yet) is left out of this materialization, so its plot shows a gap rather
    than a zero that reads as "instant" or "clean", and it is named in the `no_data` text."""
    no_data: list[str] = []
    metadata: dict[str, MetadataValue] = {
        status.value: MetadataValue.int(snapshot.count(status)) for status in PhotoStatus
    }

    def measured(key: str, value: float | None, why: str) -> None:
        if value is None:
            no_data.append(f"{key} ({why})")
        else:
            metadata[key] = MetadataValue.float(round(value, 3))

    window = f"no photo completed or failed in the last {snapshot.window_seconds:.0f} s"
    outcomes = snapshot.completed_last_window + snapshot.failed_last_window
    no_latency = "no photo was completed for the first time in the window"
    metadata.update(
        total=MetadataValue.int(snapshot.total),
        # Nothing pending: nobody is waiting, an age of 0 (a queue's head that waited for nothing).
        oldest_pending_age_seconds=MetadataValue.float(round(snapshot.oldest_pending_age_seconds or 0.0, 3)),
        stale_pending=MetadataValue.int(snapshot.stale_pending),
        completed_last_hour=MetadataValue.int(snapshot.completed_last_window),
        failed_last_hour=MetadataValue.int(snapshot.failed_last_window),
        latency_samples=MetadataValue.int(snapshot.latency_samples),
        expired_claims=MetadataValue.int(snapshot.expired_claims),
    )
    measured("failure_rate_last_hour", snapshot.failure_rate_last_window if outcomes else None, window)
    measured("latency_p50_seconds", snapshot.latency_p50_seconds, no_latency)
    measured("latency_p95_seconds", snapshot.latency_p95_seconds, no_latency)
    if reconciliation is None:
        no_data.append(f"orphan_objects, missing_rows, unholdable_keys ({NO_RECONCILIATION})")
        metadata["reconciliation"] = MetadataValue.text(NO_RECONCILIATION)
    else:
        metadata.update(
            orphan_objects=MetadataValue.int(reconciliation.orphan_objects),
            missing_rows=MetadataValue.int(reconciliation.missing_rows),
            unholdable_keys=MetadataValue.int(reconciliation.unholdable_keys),
            reconciliation_planned_at=MetadataValue.timestamp(reconciliation.planned_at),
        )
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
            snapshot.count(PhotoStatus.MISSING), reconciliation, snapshot.taken_at
        ),
    }


# Non-blocking (the default): a failing check, WARN or ERROR, turns the check red/yellow in the UI
# but never fails the run, so the health history keeps its points when the pipeline is unwell.
HEALTH_CHECK_SPECS = [
    AssetCheckSpec(
        NO_STALE_PENDING,
        asset=PIPELINE_HEALTH,
        description=stale_pending_thresholds_text(THRESHOLDS) + ".",
    ),
    AssetCheckSpec(
        FAILURE_RATE,
        asset=PIPELINE_HEALTH,
        description=failure_rate_thresholds_text(THRESHOLDS) + ".",
    ),
    AssetCheckSpec(
        NO_ORPHANS_OR_MISSING,
        asset=PIPELINE_HEALTH,
        description=(
            "WARN when rows are marked missing, or the latest reconciliation plan (applied, dry run or "
            "refused by the safety limit) found orphan objects or rows without their original."
        ),
    ),
]


@asset(
    name=PIPELINE_HEALTH,
    group_name="health",
    check_specs=HEALTH_CHECK_SPECS,
    # Lineage only: the orphan objects and missing rows come from the latest reconciliation plan.
    deps=[RECONCILIATION_ASSET],
    freshness_policy=freshness_policy(HEALTH_FRESHNESS),
    description=(
        "Counts per status, oldest pending photo, failure rate of the last hour, upload-to-first-"
        "completion latency (re-renders excluded), expired claims, and the latest reconciliation "
        "plan's orphan objects and missing rows (with the plan's time and outcome). Open the asset's "
        "Plots tab to see them over time; a figure with nothing to measure is left out (a gap), "
        f"never plotted as 0. Freshness: {HEALTH_FRESHNESS.describe()} (a stopped "
        "pipeline_health_schedule or daemon)."
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
