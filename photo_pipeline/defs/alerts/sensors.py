"""The alert sensors: `alert_on_run_failure` (a failed run of any job, once) and
`alert_on_conditions` (the table's and the latest plan's figures past their thresholds, a plan
refused by a safety limit, a schedule that stopped). Both send through Apprise to
PHOTO_ALERT_URLS, read from the settings here, never from config the UI would show, and keep
their state (conditions, deliveries still owed, place in the event log) in their cursor.

On by default when PHOTO_ALERT_URLS is set where the code location loads; stopped otherwise,
and switchable in the UI either way. Unlike the other sensors they have a side effect on
purpose: the UI's "Preview tick" sends what a tick would send.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DefaultSensorStatus,
    EventLogRecord,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.errors import DagsterError
from dagster._core.storage.tags import WILL_RETRY_TAG
from dagster._utils.error import SerializableErrorInfo

from photo_pipeline.alerts import conditions
from photo_pipeline.alerts.delivery import Destination, Send, destinations_from, send
from photo_pipeline.alerts.messages import RunFailure, first_line, run_failed_message
from photo_pipeline.alerts.state import AlertCursor
from photo_pipeline.defs.health.assets import HEALTH_FRESHNESS, PIPELINE_HEALTH, latest_reconciliation, pipeline_health_schedule
from photo_pipeline.defs.reconcile.assets import OUTCOME, RECONCILIATION_ASSET, RECONCILIATION_FRESHNESS, STORAGE_RECONCILIATION
from photo_pipeline.defs.reconcile.jobs import reconcile_schedule, reconcile_storage
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.photos.repository import PhotoRepository, utc_now
from photo_pipeline.reconcile.report import Outcome
from photo_pipeline.redaction import redact
from photo_pipeline.services.alerts import DeliveryReport, condition_tick, queue_and_deliver
from photo_pipeline.services.health import HealthThresholds, collect_health
from photo_pipeline.settings import ENV_ALERT_URLS, Settings, env_is_set

RUN_FAILURE_SENSOR = "alert_on_run_failure"
CONDITIONS_SENSOR = "alert_on_conditions"
RUN_FAILURE_INTERVAL_SECONDS = 30
CONDITIONS_INTERVAL_SECONDS = 60
# Failed runs one tick reads: a burst of failures is alerted over a few ticks, none lost.
RUNS_PER_TICK = 20
PARTITION_TAG = "dagster/partition"
NO_DESTINATIONS = "PHOTO_ALERT_URLS is not set where the code location runs: no destination to alert"

# Read when the code location loads: whether the sensors start on their own.
ALERTS_DEFAULT_STATUS = DefaultSensorStatus.RUNNING if env_is_set(ENV_ALERT_URLS) else DefaultSensorStatus.STOPPED

# The assets whose schedules must keep them fresh (their freshness policies' windows).
SCHEDULED_ASSETS = (
    conditions.ScheduledAsset(STORAGE_RECONCILIATION, reconcile_schedule.name, RECONCILIATION_FRESHNESS),
    conditions.ScheduledAsset(PIPELINE_HEALTH, pipeline_health_schedule.name, HEALTH_FRESHNESS),
)


@dataclass(frozen=True)
class SafetyLimitWatch:
    """A job guarded by a safety limit whose asset records each plan's outcome in its metadata
    (the outcome's text, and the refusal's reason). Another such job is one more entry below."""

    job: str
    asset: AssetKey
    refused_outcome: str = Outcome.REFUSED.value
    outcome_key: str = OUTCOME
    reason_key: str = "refusal"

    def latest(self, instance: DagsterInstance) -> conditions.Refusal | None:
        event = instance.get_latest_materialization_event(self.asset)
        if event is None or event.asset_materialization is None:
            return None
        metadata = event.asset_materialization.metadata
        outcome = metadata.get(self.outcome_key)
        outcome_text = str(outcome.value) if outcome is not None else "outcome not recorded"
        refused = outcome_text == self.refused_outcome
        reason = metadata.get(self.reason_key)
        shown = str(reason.value) if refused and reason is not None else outcome_text
        return conditions.Refusal(self.job, refused, shown, event.run_id)


SAFETY_LIMIT_WATCHES = (SafetyLimitWatch(reconcile_storage.name, RECONCILIATION_ASSET),)


def log_report(context: SensorEvaluationContext, report: DeliveryReport) -> None:
    for line in report.delivered:
        context.log.info("sent: %s", line)
    for line in report.failed:
        context.log.warning("not sent: %s", line)
    for line in report.dropped:
        context.log.error("dropped: %s", line)


def summary(report: DeliveryReport, cursor: AlertCursor, what: str) -> str:
    owed = sum(len(p.destinations) for p in cursor.outbox)
    return f"{what}; sent {len(report.delivered)}, failed {len(report.failed)}, still owed {owed}"


def alert_destinations(settings: Settings) -> list[Destination]:
    return destinations_from(settings.alerts.urls)


# -- conditions -------------------------------------------------------------------------------------


def observe(settings: Settings, instance: DagsterInstance, repository: PhotoRepository, now: datetime) -> list[conditions.Observation]:
    """Every condition's figure now: the table's in a handful of aggregate queries (the health
    snapshot's), the rest from the latest materializations."""
    thresholds = conditions.AlertThresholds.from_settings(settings.alerts)
    snapshot = collect_health(repository.engine, now, HealthThresholds(), settings.claim_lease_seconds)
    refusals = [r for r in (watch.latest(instance) for watch in SAFETY_LIMIT_WATCHES) if r is not None]
    ages = [(scheduled, materialized_age(instance, scheduled.asset, now)) for scheduled in SCHEDULED_ASSETS]
    return [
        *conditions.observe_table(snapshot, thresholds),
        *conditions.observe_reconciliation(latest_reconciliation(instance), thresholds),
        *conditions.observe_refusals(refusals),
        *conditions.observe_schedules(ages),
    ]


def materialized_age(instance: DagsterInstance, asset: str, now: datetime) -> float | None:
    event = instance.get_latest_materialization_event(AssetKey(asset))
    return None if event is None else max(now.timestamp() - event.timestamp, 0.0)


def build_conditions_sensor(clock: Callable[[], datetime] = utc_now, deliver: Send = send) -> SensorDefinition:
    """The sensor on a clock (tests move time with their own) and a sender."""

    @sensor(
        name=CONDITIONS_SENSOR,
        minimum_interval_seconds=CONDITIONS_INTERVAL_SECONDS,
        default_status=ALERTS_DEFAULT_STATUS,
        description=(
            "Alerts PHOTO_ALERT_URLS when a condition starts (failure rate of the last hour, oldest pending photo, "
            "expired claims, orphan objects or missing originals in the latest plan, a plan refused by its safety "
            "limit, a schedule that stopped), reminds every PHOTO_ALERT_REPEAT_HOURS while it lasts, and says when "
            "it is resolved. Its cursor holds each condition's state and the deliveries still owed."
        ),
    )
    def alert_on_conditions(context: SensorEvaluationContext, photo_pipeline: PhotoPipelineResource) -> SensorResult:
        settings = photo_pipeline.settings()
        destinations = alert_destinations(settings)
        if not destinations:
            return SensorResult(skip_reason=SkipReason(NO_DESTINATIONS))
        now = clock()
        observations = observe(settings, context.instance, photo_pipeline.repository(), now)
        cursor, messages, report = condition_tick(
            AlertCursor.from_json(context.cursor),
            observations,
            destinations,
            now.timestamp(),
            settings.alerts.repeat_hours * 3600,
            deliver,
        )
        log_report(context, report)
        active = sorted(key for key, state in cursor.conditions.items() if state.active)
        what = f"active: {', '.join(active) or 'none'}; {len(messages)} new message(s)"
        return SensorResult(skip_reason=SkipReason(summary(report, cursor, what)), cursor=cursor.to_json())

    return alert_on_conditions


# -- failed runs ------------------------------------------------------------------------------------


def run_failure(instance: DagsterInstance, repository: PhotoRepository, record: EventLogRecord) -> RunFailure | None:
    """The failed run as the alert names it; None for a run that Dagster retries on its own
    (run retries: the retry's own failure alerts, once it has none left)."""
    run = instance.get_run_by_id(record.run_id)
    if run is None or run.tags.get(WILL_RETRY_TAG) == "true":
        return None
    partition = run.tags.get(PARTITION_TAG)
    album_id = album_of(partition)
    title = repository.album_titles([album_id]).get(album_id) if album_id is not None else None
    return RunFailure(
        run_id=run.run_id,
        job=run.job_name,
        error=failure_headline(instance, record),
        album_id=str(album_id) if album_id is not None else None,
        album_title=title,
        partition=partition if album_id is None else None,
    )


def album_of(partition: str | None) -> uuid.UUID | None:
    if partition is None:
        return None
    try:
        return uuid.UUID(partition)
    except ValueError:
        return None


def failure_headline(instance: DagsterInstance, record: EventLogRecord) -> str:
    """The first step failure's error (its user-code cause, not Dagster's wrapper), else the run
    failure's own message; first line only, redacted."""
    for entry in instance.all_logs(record.run_id, of_type=DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        if event is not None and event.step_failure_data is not None and event.step_failure_data.error is not None:
            return redact(first_line(describe_error(event.step_failure_data.error)))
    event = record.event_log_entry.dagster_event
    return redact(first_line((event.message if event is not None else None) or record.event_log_entry.user_message or ""))


def describe_error(error: SerializableErrorInfo) -> str:
    while error.cause is not None and error.cls_name in ("DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError"):
        error = error.cause
    return error.message


def build_run_failure_sensor(clock: Callable[[], float] = time.time, deliver: Send = send) -> SensorDefinition:
    @sensor(
        name=RUN_FAILURE_SENSOR,
        minimum_interval_seconds=RUN_FAILURE_INTERVAL_SECONDS,
        default_status=ALERTS_DEFAULT_STATUS,
        description=(
            "Alerts PHOTO_ALERT_URLS once for each failed run of any job (job, album title and id, the error's "
            "first line, a link built from PHOTO_DAGSTER_URL); runs Dagster retries on its own alert when their "
            "last retry fails. A destination that fails gets the message again at the next ticks."
        ),
    )
    def alert_on_run_failure(context: SensorEvaluationContext, photo_pipeline: PhotoPipelineResource) -> SensorResult:
        settings = photo_pipeline.settings()
        destinations = alert_destinations(settings)
        if not destinations:
            return SensorResult(skip_reason=SkipReason(NO_DESTINATIONS))
        instance = context.instance
        cursor = AlertCursor.from_json(context.cursor)
        if cursor.events_after is None:
            # First tick: failures from now on, not the instance's whole history.
            latest = instance.fetch_run_status_changes(DagsterEventType.RUN_FAILURE, limit=1, ascending=False)
            cursor = replace(cursor, events_after=latest.cursor if latest.records else "")
        found = instance.fetch_run_status_changes(
            DagsterEventType.RUN_FAILURE, limit=RUNS_PER_TICK, cursor=cursor.events_after or None, ascending=True
        )
        repository = photo_pipeline.repository()
        failures = []
        for record in found.records:
            try:
                failure = run_failure(instance, repository, record)
            except DagsterError:
                context.log.exception("run %s failed, and reading what it failed with failed too", record.run_id)
                failure = RunFailure(record.run_id, "unknown job", "see the run's log")
            if failure is not None:
                failures.append(failure)
        if found.records:
            cursor = replace(cursor, events_after=found.cursor)
        messages = [run_failed_message(f, settings.alerts.dagster_url) for f in failures]
        cursor, report = queue_and_deliver(cursor, messages, destinations, clock(), deliver)
        log_report(context, report)
        what = f"{len(found.records)} failed run(s) read, {len(messages)} to alert"
        return SensorResult(skip_reason=SkipReason(summary(report, cursor, what)), cursor=cursor.to_json())

    return alert_on_run_failure


alert_on_run_failure = build_run_failure_sensor()
alert_on_conditions = build_conditions_sensor()
