"""Pipeline health on real parts: the snapshot's queries on PostgreSQL and SQLite with rows placed in
time through the repository, the checks' rules at their thresholds, and the `pipeline_health`
asset materialized on a real instance (the repository's dagster.yaml on PostgreSQL)."""

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    Definitions,
    materialize,
)

from photo_pipeline.defs.health.assets import (
    FAILURE_RATE,
    HEALTH_ASSETS,
    HEALTH_JOBS,
    HEALTH_SCHEDULES,
    NO_ORPHANS_OR_MISSING,
    NO_STALE_PENDING,
    PIPELINE_HEALTH,
    pipeline_health,
)
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.photos.claims import ClaimedPhoto
from photo_pipeline.photos.database import create_engine_for, migrate
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.reconcile_queries import ReconciliationQueries
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.services.health import (
    HealthSnapshot,
    HealthThresholds,
    collect_health,
    evaluate_failure_rate,
    evaluate_orphans_or_missing,
    evaluate_stale_pending,
    percentile,
)

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
THRESHOLDS = HealthThresholds()
NUMERIC_KEYS = (
    "pending", "processing", "completed", "failed", "missing", "total", "oldest_pending_age_seconds",
    "stale_pending", "failure_rate_last_hour", "latency_p50_seconds", "latency_p95_seconds",
    "expired_claims", "orphan_objects", "missing_rows", "unholdable_keys",
)  # fmt: skip


class Clock:
    """A settable clock for the repository, so rows land exactly where a test wants them."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class Table:
    """Rows placed in time through the repository's own state changes (no hand-written SQL)."""

    def __init__(self, url: str, origin: datetime) -> None:
        self.clock = Clock(origin)
        self.repository = PhotoRepository(create_engine_for(url), clock=self.clock)

    def pending(self, uploaded: datetime) -> uuid.UUID:
        self.clock.at = uploaded
        album, photo = uuid.uuid4(), uuid.uuid4()  # one album per photo: claim_batch takes exactly it
        self.repository.register_pending(NewPhoto(id=photo, album_id=album, original_key=f"raw/{album}/{photo}.jpg"))
        return album

    def claimed(self, uploaded: datetime, claimed: datetime) -> ClaimedPhoto:
        album = self.pending(uploaded)
        self.clock.at = claimed
        (claim,) = self.repository.claim_batch(album, "test-worker", 1)
        return claim

    def completed(self, uploaded: datetime, finished: datetime) -> None:
        claim = self.claimed(uploaded, uploaded)
        self.clock.at = finished
        assert self.repository.complete(
            claim, thumb_key=f"t/{claim.id}", preview_key=f"p/{claim.id}", width=10, height=10,
            original_bytes=1, thumb_bytes=1, preview_bytes=1,
        )  # fmt: skip

    def failed(self, uploaded: datetime, finished: datetime) -> None:
        claim = self.claimed(uploaded, uploaded)
        self.clock.at = finished
        assert self.repository.fail(claim, "corrupt file")

    def missing(self, uploaded: datetime) -> None:
        album = self.pending(uploaded)
        (record,) = self.repository.photos_in_album(album)
        assert ReconciliationQueries(self.repository).flag_missing([record.id]) == 1


def ago(**kwargs: float) -> datetime:
    return NOW - timedelta(**kwargs)


# -- the snapshot --------------------------------------------------------------------------------


@pytest.fixture
def table(database_url: str) -> Table:
    migrate(database_url)
    return Table(database_url, NOW)


def test_empty_table_has_zero_counts_and_no_latency(table: Table) -> None:
    snapshot = collect_health(table.repository.engine, NOW, THRESHOLDS)

    assert snapshot.counts == {status: 0 for status in PhotoStatus}
    assert snapshot.total == 0
    assert snapshot.oldest_pending_age_seconds is None
    assert snapshot.stale_pending == 0
    assert snapshot.failure_rate_last_window == 0.0
    assert snapshot.latency_p50_seconds is None and snapshot.latency_p95_seconds is None
    assert snapshot.expired_claims == 0


def test_snapshot_counts_ages_rates_latencies_and_expired_claims(table: Table) -> None:
    table.pending(ago(hours=3))  # stale, past the error threshold
    table.pending(ago(minutes=10))  # fresh
    # Five completions in the window, uploaded 50 min ago, taking 10..100 s.
    for latency in (40, 10, 100, 30, 20):
        table.completed(ago(minutes=50), ago(minutes=50) + timedelta(seconds=latency))
    table.completed(ago(hours=5), ago(hours=2))  # completed before the window
    table.failed(ago(minutes=20), ago(minutes=5))  # failed in the window
    table.failed(ago(hours=4), ago(hours=3))  # failed before the window
    table.claimed(ago(minutes=30), ago(minutes=20))  # claim older than the 900 s lease
    table.claimed(ago(minutes=2), ago(minutes=1))
    table.missing(ago(days=2))

    snapshot = collect_health(table.repository.engine, NOW, THRESHOLDS, lease_seconds=900)

    assert snapshot.counts == {
        PhotoStatus.PENDING: 2,
        PhotoStatus.PROCESSING: 2,
        PhotoStatus.COMPLETED: 6,
        PhotoStatus.FAILED: 2,
        PhotoStatus.MISSING: 1,
    }
    assert snapshot.total == 13
    assert snapshot.oldest_pending_age_seconds == pytest.approx(3 * 3600)
    assert snapshot.stale_pending == 1
    assert (snapshot.completed_last_window, snapshot.failed_last_window) == (5, 1)
    assert snapshot.failure_rate_last_window == pytest.approx(1 / 6)
    # Nearest rank over [10, 20, 30, 40, 100]: p50 is the 3rd value, p95 the 5th.
    assert snapshot.latency_p50_seconds == pytest.approx(30)
    assert snapshot.latency_p95_seconds == pytest.approx(100)
    assert snapshot.latency_samples == 5
    assert snapshot.processing_rows == 2
    assert snapshot.expired_claims == 1


def test_a_claim_renewed_by_its_heartbeat_is_not_counted_expired(table: Table) -> None:
    """A photo claimed long ago by a live run (renewed every heartbeat) is slow, not abandoned;
    a claim nobody renewed for a lease is expired, whatever its run record says."""
    live = table.claimed(ago(hours=1), ago(minutes=30))
    table.claimed(ago(hours=1), ago(minutes=30))  # its run was killed: never renewed
    table.clock.at = ago(seconds=30)
    assert table.repository.renew_claims([live]) == {live.id}

    snapshot = collect_health(table.repository.engine, NOW, THRESHOLDS, lease_seconds=120)

    assert (snapshot.processing_rows, snapshot.expired_claims) == (2, 1)


def test_latency_uses_only_the_most_recent_completions(table: Table) -> None:
    # Completed in order of latency, so the latest three completions took 30, 40 and 50 s.
    for latency in (10, 20, 30, 40, 50):
        table.completed(ago(minutes=30), ago(minutes=30) + timedelta(seconds=latency))

    snapshot = collect_health(table.repository.engine, NOW, THRESHOLDS, latency_sample_limit=3)

    assert snapshot.latency_samples == 3
    assert snapshot.latency_p50_seconds == pytest.approx(40)
    assert snapshot.latency_p95_seconds == pytest.approx(50)


def test_collect_health_refuses_a_naive_now(table: Table) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        collect_health(table.repository.engine, NOW.replace(tzinfo=None), THRESHOLDS)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.95) == 7.0
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile(list(reversed(values)), 0.95) == 95.0
    assert percentile([1.0, 2.0], 0.5) == 1.0  # a real sample, never an interpolation


# -- the rules at their thresholds ---------------------------------------------------------------


def snapshot_with(**changes: object) -> HealthSnapshot:
    base = HealthSnapshot(
        taken_at=NOW,
        counts={status: 0 for status in PhotoStatus},
        total=0,
        oldest_pending_age_seconds=None,
        stale_pending=0,
        completed_last_window=0,
        failed_last_window=0,
        failure_rate_last_window=0.0,
        latency_p50_seconds=None,
        latency_p95_seconds=None,
        latency_samples=0,
        processing_rows=0,
        expired_claims=0,
        window_seconds=THRESHOLDS.window_seconds,
        lease_seconds=900,
        stale_pending_seconds=THRESHOLDS.stale_pending_seconds,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stale", "oldest", "passed", "severity"),
    [
        (0, None, True, "WARN"),
        (0, 1799.0, True, "WARN"),
        (1, 1801.0, False, "WARN"),
        (3, 4 * 1800.0 - 1, False, "WARN"),
        (3, 4 * 1800.0, False, "ERROR"),
    ],
)
def test_stale_pending_rule(stale: int, oldest: float | None, passed: bool, severity: str) -> None:
    outcome = evaluate_stale_pending(snapshot_with(stale_pending=stale, oldest_pending_age_seconds=oldest), THRESHOLDS)

    assert (outcome.passed, outcome.severity) == (passed, severity)
    assert outcome.metadata["stale_pending"] == stale
    assert outcome.metadata["error_after_seconds"] == 7200.0


@pytest.mark.parametrize(
    ("failed", "completed", "passed", "severity"),
    [
        (0, 0, True, "WARN"),  # nothing finished: nothing to judge
        (4, 96, True, "WARN"),  # 4 %
        (5, 95, False, "WARN"),  # 5 %: at the warn threshold
        (24, 76, False, "WARN"),
        (25, 75, False, "ERROR"),  # 25 %: at the error threshold
        (1, 0, False, "ERROR"),
    ],
)
def test_failure_rate_rule(failed: int, completed: int, passed: bool, severity: str) -> None:
    rate = failed / (failed + completed) if failed + completed else 0.0
    snapshot = snapshot_with(failed_last_window=failed, completed_last_window=completed, failure_rate_last_window=rate)

    outcome = evaluate_failure_rate(snapshot, THRESHOLDS)

    assert (outcome.passed, outcome.severity) == (passed, severity)
    assert outcome.metadata["failed_in_window"] == failed
    assert outcome.metadata["completed_in_window"] == completed


def test_orphans_or_missing_rule() -> None:
    clean = evaluate_orphans_or_missing(0, 0, 0)
    assert clean.passed
    unknown = evaluate_orphans_or_missing(0, None)
    assert unknown.passed and "no reconciliation has run yet" in unknown.description
    for outcome in (
        evaluate_orphans_or_missing(2, 0),
        evaluate_orphans_or_missing(0, 3),
        evaluate_orphans_or_missing(0, 0, 1),
    ):
        assert (outcome.passed, outcome.severity) == (False, "WARN")
    assert evaluate_orphans_or_missing(2, 3, 1).metadata == {
        "missing_rows_in_table": 2,
        "orphan_objects": 3,
        "missing_rows_found_by_reconciliation": 1,
    }


# -- the asset on a real instance ------------------------------------------------------------------


def latest_metadata(instance: DagsterInstance) -> dict[str, object]:
    event = instance.get_latest_materialization_event(AssetKey(PIPELINE_HEALTH))
    assert event is not None and event.asset_materialization is not None
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}


def run_health(instance: DagsterInstance, photo_db: str) -> dict[AssetCheckKey, tuple[bool, AssetCheckSeverity]]:
    result = materialize(
        [pipeline_health], instance=instance, resources={"photo_pipeline": PhotoPipelineResource(database_url=photo_db)}
    )
    assert result.success  # failing checks, WARN or ERROR, never fail the run
    return {e.asset_check_key: (e.passed, e.severity) for e in result.get_asset_check_evaluations()}


def check_key(name: str) -> AssetCheckKey:
    return AssetCheckKey(AssetKey(PIPELINE_HEALTH), name)


def test_pipeline_health_records_numbers_and_checks_over_time(dagster_instance: DagsterInstance, photo_db: str) -> None:
    # The asset reads the wall clock; place rows relative to it.
    now = datetime.now(UTC)
    table = Table(photo_db, now)
    table.pending(now - timedelta(minutes=45))  # stale, under the error threshold: WARN
    table.failed(now - timedelta(minutes=10), now - timedelta(minutes=5))  # 1 of 1 failed: ERROR

    checks = run_health(dagster_instance, photo_db)

    assert checks == {
        check_key(NO_STALE_PENDING): (False, AssetCheckSeverity.WARN),
        check_key(FAILURE_RATE): (False, AssetCheckSeverity.ERROR),
        check_key(NO_ORPHANS_OR_MISSING): (True, AssetCheckSeverity.WARN),
    }
    stored = dagster_instance.event_log_storage.get_latest_asset_check_execution_by_key(list(checks))
    assert set(stored) == set(checks)
    stale_event = stored[check_key(NO_STALE_PENDING)].event
    assert stale_event is not None and stale_event.dagster_event is not None
    stale_evaluation = stale_event.dagster_event.event_specific_data
    assert isinstance(stale_evaluation, AssetCheckEvaluation)
    assert stale_evaluation.metadata["stale_pending"].value == 1
    assert stale_evaluation.metadata["oldest_pending_age_seconds"].value >= 45 * 60  # type: ignore[operator]

    first = latest_metadata(dagster_instance)
    assert all(isinstance(first[key], (int, float)) for key in NUMERIC_KEYS)
    assert (first["pending"], first["failed"], first["total"], first["stale_pending"]) == (1, 1, 2, 1)
    assert first["failure_rate_last_hour"] == 1.0
    assert first["oldest_pending_age_seconds"] >= 45 * 60  # type: ignore[operator]
    assert (first["latency_p50_seconds"], first["orphan_objects"]) == (0.0, 0)
    assert "latency_p50_seconds" in first["no_data"]  # type: ignore[operator]
    assert "no reconciliation has run yet" in first["no_data"]  # type: ignore[operator]

    # Later: the stale photo and nine more complete; the numbers move and the checks recover.
    (claim,) = table.repository.claim_batch(table.repository.pending_albums()[0].album_id, "worker", 1)
    table.clock.at = now
    table.repository.complete(
        claim, thumb_key="t/x", preview_key="p/x", width=1, height=1, original_bytes=1, thumb_bytes=1, preview_bytes=1
    )
    for _ in range(19):
        table.completed(now - timedelta(minutes=3), now - timedelta(minutes=2))

    checks = run_health(dagster_instance, photo_db)

    assert all(passed for passed, _ in checks.values())
    second = latest_metadata(dagster_instance)
    assert (second["pending"], second["completed"], second["failed"], second["total"]) == (0, 20, 1, 21)
    assert second["failure_rate_last_hour"] == pytest.approx(1 / 21, abs=1e-3)
    assert second["latency_p50_seconds"] == pytest.approx(60, abs=1)
    assert second["oldest_pending_age_seconds"] == 0.0 and "oldest_pending_age_seconds" in second["no_data"]  # type: ignore[operator]
    history = dagster_instance.fetch_materializations(AssetKey(PIPELINE_HEALTH), limit=10).records
    assert [r.asset_materialization.metadata["total"].value for r in history] == [21, 2]  # type: ignore[union-attr]


def test_pipeline_health_reads_the_latest_reconciliation(dagster_instance: DagsterInstance, photo_db: str) -> None:
    dagster_instance.report_runless_asset_event(
        AssetMaterialization(asset_key="storage_reconciliation", metadata={"orphan_objects": 3, "missing_rows": 1})
    )

    checks = run_health(dagster_instance, photo_db)

    metadata = latest_metadata(dagster_instance)
    assert (metadata["orphan_objects"], metadata["missing_rows"]) == (3, 1)
    assert "storage_reconciliation" in metadata["reconciliation"]  # type: ignore[operator]
    assert "orphan_objects" not in metadata["no_data"]  # type: ignore[operator]
    assert checks[check_key(NO_ORPHANS_OR_MISSING)] == (False, AssetCheckSeverity.WARN)
    assert checks[check_key(NO_STALE_PENDING)] == (True, AssetCheckSeverity.WARN)


def test_job_selects_the_asset_and_its_checks_on_a_five_minute_schedule() -> None:
    defs = Definitions(
        assets=HEALTH_ASSETS,
        jobs=HEALTH_JOBS,
        schedules=HEALTH_SCHEDULES,
        resources={"photo_pipeline": PhotoPipelineResource()},
    )
    job = defs.resolve_job_def("pipeline_health_job")
    assert job.asset_layer.asset_graph.asset_check_keys == {
        check_key(NO_STALE_PENDING), check_key(FAILURE_RATE), check_key(NO_ORPHANS_OR_MISSING)
    }  # fmt: skip
    schedule = defs.resolve_schedule_def("pipeline_health_schedule")
    assert schedule.cron_schedule == "*/5 * * * *"
    assert schedule.job_name == "pipeline_health_job"
