"""Pipeline health: a snapshot of the photo table in a handful of aggregate queries, and the pure
rules that judge it. No Dagster here; `defs/health/assets.py` turns both into an asset and its checks.

Definitions (so the numbers read the same everywhere):
- a pending photo's age runs from its upload (`created_at`): `updated_at` is bumped by every
  reconciliation requeue, which would hide a photo that nothing ever processes;
- the failure rate over the window counts rows that are failed now and last changed in the window
  (`updated_at`) against rows completed in the window (`completed_at`);
- latency is upload to FIRST completion (`first_completed_at - created_at`) of photos first
  completed in the window: a re-render (new settings, a lost rendition, a replaced original) moves
  `completed_at` but is not an upload waiting for its photo, so it never counts;
  percentiles use the nearest-rank method (the value at rank ceil(q * n)), always a real sample;
- an expired claim is a processing row whose claim was last renewed (`claimed_at`: set by the
  claim, pushed forward by the run's heartbeat) longer than the lease ago: its run is dead or stuck;
- thresholds are configuration, not measurements: they go into descriptions and text, never into
  numeric metadata (the UI would plot them as flat lines);
- orphan objects and missing rows come from the latest reconciliation plan, whatever became of it
  (applied, dry run or refused by the safety limit), with the time it was made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.engine import Connection, Engine

from photo_pipeline.photos.models import SHOWN_STATUSES, Photo, PhotoStatus

# Bounds the memory and transfer of the latency query however busy the window was.
LATENCY_SAMPLE_LIMIT = 20_000
DEFAULT_LEASE_SECONDS = 120  # Settings.claim_lease_seconds' default

Severity = Literal["WARN", "ERROR"]
MetadataScalar = int | float | str


@dataclass(frozen=True)
class HealthThresholds:
    stale_pending_seconds: float = 1800.0
    # A pending photo this many stale periods old is an outage, not a slow queue: ERROR.
    stale_pending_error_factor: float = 4.0
    failure_rate_warn: float = 0.05
    failure_rate_error: float = 0.25
    window_seconds: float = 3600.0

    @property
    def stale_pending_error_seconds(self) -> float:
        return self.stale_pending_seconds * self.stale_pending_error_factor


@dataclass(frozen=True)
class HealthSnapshot:
    taken_at: datetime
    counts: Mapping[PhotoStatus, int]
    total: int
    oldest_pending_age_seconds: float | None
    stale_pending: int
    completed_last_window: int
    failed_last_window: int
    failure_rate_last_window: float
    latency_p50_seconds: float | None
    latency_p95_seconds: float | None
    # How many latencies the percentiles were computed from (at most LATENCY_SAMPLE_LIMIT).
    latency_samples: int
    processing_rows: int
    expired_claims: int
    window_seconds: float
    lease_seconds: float
    stale_pending_seconds: float

    def count(self, status: PhotoStatus) -> int:
        return self.counts.get(status, 0)


@dataclass(frozen=True)
class ReconciliationFindings:
    """What the latest reconciliation plan found, as `storage_reconciliation` recorded it."""

    orphan_objects: int
    missing_rows: int
    unholdable_keys: int
    planned_at: datetime
    outcome: str  # reconcile.report.Outcome's text: applied, dry run, refused, ...
    run_id: str

    def describe(self, now: datetime) -> str:
        age = (now - self.planned_at).total_seconds()
        return (
            f"latest reconciliation plan: {self.planned_at:%Y-%m-%d %H:%M:%S} UTC ({_duration(max(age, 0.0))} ago, "
            f"run {self.run_id}): {self.outcome}"
        )


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    severity: Severity
    description: str
    metadata: dict[str, MetadataScalar] = field(default_factory=dict)


# -- collecting ----------------------------------------------------------------------------------


def collect_health(
    engine: Engine,
    now: datetime,
    thresholds: HealthThresholds | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    *,
    latency_sample_limit: int = LATENCY_SAMPLE_LIMIT,
) -> HealthSnapshot:
    """Aggregate queries only: memory stays flat however large the table is."""
    if now.tzinfo is None:
        raise ValueError("collect_health needs a timezone-aware `now`")
    thresholds = thresholds or HealthThresholds()
    window_start = now - timedelta(seconds=thresholds.window_seconds)
    with engine.connect() as conn:
        counts = _status_counts(conn)
        oldest_pending, stale = _pending_figures(conn, now - timedelta(seconds=thresholds.stale_pending_seconds))
        completed, failed = _window_outcomes(conn, window_start)
        latencies = _latencies(conn, window_start, latency_sample_limit)
        expired = _expired_claims(conn, now - timedelta(seconds=lease_seconds))
    return HealthSnapshot(
        taken_at=now,
        counts=counts,
        total=sum(counts[status] for status in SHOWN_STATUSES),
        oldest_pending_age_seconds=(now - oldest_pending).total_seconds() if oldest_pending else None,
        stale_pending=stale,
        completed_last_window=completed,
        failed_last_window=failed,
        failure_rate_last_window=failed / (failed + completed) if failed + completed else 0.0,
        latency_p50_seconds=percentile(latencies, 0.50),
        latency_p95_seconds=percentile(latencies, 0.95),
        latency_samples=len(latencies),
        processing_rows=counts[PhotoStatus.PROCESSING],
        expired_claims=expired,
        window_seconds=thresholds.window_seconds,
        lease_seconds=lease_seconds,
        stale_pending_seconds=thresholds.stale_pending_seconds,
    )


def _status_counts(conn: Connection) -> dict[PhotoStatus, int]:
    counts = {status: 0 for status in PhotoStatus}
    for status, count in conn.execute(select(Photo.status, func.count()).group_by(Photo.status)):
        counts[PhotoStatus(status)] = count
    return counts


def _pending_figures(conn: Connection, stale_before: datetime) -> tuple[datetime | None, int]:
    # MIN over the model's column keeps the UTCDateTime type, so SQLite's naive value comes back
    # as aware UTC like PostgreSQL's.
    query = select(
        func.min(Photo.created_at),
        func.coalesce(func.sum(case((Photo.created_at < stale_before, 1), else_=0)), 0),
    ).where(Photo.status == PhotoStatus.PENDING.value)
    oldest, stale = conn.execute(query).one()
    return oldest, int(stale)


def _in_window(window_start: datetime) -> ColumnElement[bool]:
    # updated_at is never older than completed_at (both are set together, and updated_at only
    # grows), so this redundant bound lets PostgreSQL range-scan ix_photos_status_updated
    # instead of reading every completed row.
    return Photo.updated_at >= window_start


def _window_outcomes(conn: Connection, window_start: datetime) -> tuple[int, int]:
    completed = and_(Photo.status == PhotoStatus.COMPLETED.value, Photo.completed_at >= window_start)
    failed = Photo.status == PhotoStatus.FAILED.value
    query = select(
        func.coalesce(func.sum(case((completed, 1), else_=0)), 0),
        func.coalesce(func.sum(case((failed, 1), else_=0)), 0),
    ).where(
        Photo.status.in_([PhotoStatus.COMPLETED.value, PhotoStatus.FAILED.value]),
        _in_window(window_start),
    )
    n_completed, n_failed = conn.execute(query).one()
    return int(n_completed), int(n_failed)


def _latencies(conn: Connection, window_start: datetime, limit: int) -> list[float]:
    """Upload-to-first-completion seconds of the photos first completed in the window, the most
    recent first (a range scan on ix_photos_first_completed_at). Whatever happened to the photo
    since (re-rendered, failed a re-render) does not change when its upload was served. Only the
    two timestamps travel; the subtraction happens here so it works alike on SQLite and PostgreSQL."""
    query = (
        select(Photo.created_at, Photo.first_completed_at)
        .where(Photo.first_completed_at >= window_start, Photo.status != PhotoStatus.TRASHED.value)
        .order_by(Photo.first_completed_at.desc())
        .limit(limit)
    )
    return [(first - created).total_seconds() for created, first in conn.execute(query)]


def _expired_claims(conn: Connection, claimed_before: datetime) -> int:
    query = select(func.count()).where(Photo.status == PhotoStatus.PROCESSING.value, Photo.claimed_at < claimed_before)
    return int(conn.execute(query).scalar_one())


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least q of the samples at or below it.
    None for no samples, so "no data" never reads as "zero seconds"."""
    if not values:
        return None
    if not 0.0 < q <= 1.0:
        raise ValueError(f"percentile rank must be in (0, 1], got {q}")
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


# -- judging ---------------------------------------------------------------------------------------


def evaluate_stale_pending(snapshot: HealthSnapshot, thresholds: HealthThresholds) -> CheckOutcome:
    """WARN when any pending photo waited past the stale threshold; ERROR when the oldest one
    waited past the error threshold (nothing is processing the queue)."""
    oldest = snapshot.oldest_pending_age_seconds
    metadata: dict[str, MetadataScalar] = {
        "stale_pending": snapshot.stale_pending,
        "pending": snapshot.count(PhotoStatus.PENDING),
        "oldest_pending_age_seconds": round(oldest or 0.0, 1),
        "thresholds": stale_pending_thresholds_text(thresholds),
    }
    if snapshot.stale_pending == 0:
        return CheckOutcome(True, "WARN", "no pending photo is older than the stale threshold", metadata)
    severity: Severity = "ERROR" if oldest is not None and oldest >= thresholds.stale_pending_error_seconds else "WARN"
    description = (
        f"{snapshot.stale_pending} pending photo(s) waited over {_duration(thresholds.stale_pending_seconds)}; "
        f"the oldest for {_duration(oldest or 0.0)}"
        + (" (past the error threshold: is anything processing the queue?)" if severity == "ERROR" else "")
    )
    return CheckOutcome(False, severity, description, metadata)


def evaluate_failure_rate(snapshot: HealthSnapshot, thresholds: HealthThresholds) -> CheckOutcome:
    """WARN at or above the warn rate, ERROR at or above the error rate; a window with no
    outcomes passes (nothing ran, nothing failed)."""
    rate = snapshot.failure_rate_last_window
    metadata: dict[str, MetadataScalar] = {
        "failed_in_window": snapshot.failed_last_window,
        "completed_in_window": snapshot.completed_last_window,
        "thresholds": failure_rate_thresholds_text(thresholds),
    }
    if snapshot.failed_last_window + snapshot.completed_last_window:
        # No outcomes, no rate: a 0 % point would claim a perfect hour nobody worked in.
        metadata["failure_rate"] = round(rate, 4)
    outcomes = snapshot.failed_last_window + snapshot.completed_last_window
    summary = f"{snapshot.failed_last_window} of {outcomes} photo(s) failed in the last {_duration(snapshot.window_seconds)} ({rate:.1%})"
    if outcomes == 0:
        return CheckOutcome(
            True, "WARN", f"no photo completed or failed in the last {_duration(snapshot.window_seconds)}", metadata
        )
    if rate >= thresholds.failure_rate_error:
        return CheckOutcome(False, "ERROR", f"{summary}; error threshold {thresholds.failure_rate_error:.0%}", metadata)
    if rate >= thresholds.failure_rate_warn:
        return CheckOutcome(False, "WARN", f"{summary}; warn threshold {thresholds.failure_rate_warn:.0%}", metadata)
    return CheckOutcome(True, "WARN", summary, metadata)


def evaluate_orphans_or_missing(missing_rows: int, reconciliation: ReconciliationFindings | None, now: datetime) -> CheckOutcome:
    """WARN when the table has `missing` rows, or the latest reconciliation plan (applied, dry run
    or refused) found objects without a row or rows whose original is gone. Before any plan only
    the table's own figure is judged, and the description says so."""
    metadata: dict[str, MetadataScalar] = {"missing_rows_in_table": missing_rows}
    problems = []
    if missing_rows > 0:
        problems.append(f"{missing_rows} row(s) are marked missing (their original is gone)")
    if reconciliation is None:
        note = " (no reconciliation has run yet: orphan objects unknown)"
    else:
        metadata["orphan_objects"] = reconciliation.orphan_objects
        metadata["missing_rows_found_by_reconciliation"] = reconciliation.missing_rows
        metadata["reconciliation"] = reconciliation.describe(now)
        note = f" ({reconciliation.describe(now)})"
        if reconciliation.orphan_objects:
            problems.append(f"the latest reconciliation plan found {reconciliation.orphan_objects} object(s) with no row")
        if reconciliation.missing_rows:
            problems.append(f"the latest reconciliation plan found {reconciliation.missing_rows} row(s) without their original")
    if problems:
        return CheckOutcome(False, "WARN", "; ".join(problems) + note, metadata)
    return CheckOutcome(True, "WARN", "no missing rows and no orphan objects" + note, metadata)


# -- thresholds and freshness, as text -------------------------------------------------------------


def stale_pending_thresholds_text(thresholds: HealthThresholds) -> str:
    return (
        f"WARN when a pending photo waited over {_duration(thresholds.stale_pending_seconds)} since upload; "
        f"ERROR when the oldest waited over {_duration(thresholds.stale_pending_error_seconds)}"
    )


def failure_rate_thresholds_text(thresholds: HealthThresholds) -> str:
    return (
        f"Share of failed photos among those finished in the last {_duration(thresholds.window_seconds)}: "
        f"WARN from {thresholds.failure_rate_warn:.0%}, ERROR from {thresholds.failure_rate_error:.0%}"
    )


# A scheduled asset is late once a run is missing (WARN) and overdue once two are (FAIL): one late
# run is a slow queue, two are a stopped schedule or a dead daemon.
FRESHNESS_WARN_INTERVALS = 2
FRESHNESS_FAIL_INTERVALS = 3


@dataclass(frozen=True)
class FreshnessWindows:
    warn_after: timedelta
    fail_after: timedelta

    def describe(self) -> str:
        return (
            f"late (WARN) when not materialized for {_duration(self.warn_after.total_seconds())}, "
            f"overdue (FAIL) after {_duration(self.fail_after.total_seconds())}"
        )


def freshness_windows(schedule_interval: timedelta) -> FreshnessWindows:
    """Freshness for an asset its schedule materializes every `schedule_interval` (the longest gap
    between two ticks of the cron)."""
    if schedule_interval <= timedelta(0):
        raise ValueError(f"a schedule interval must be positive, got {schedule_interval}")
    return FreshnessWindows(
        warn_after=schedule_interval * FRESHNESS_WARN_INTERVALS,
        fail_after=schedule_interval * FRESHNESS_FAIL_INTERVALS,
    )


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
