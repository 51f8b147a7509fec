"""Pipeline health on real parts: the snapshot's queries on PostgreSQL and SQLite with rows placed in
time through the repository, the checks' rules at their thresholds, the `pipeline_health` asset
materialized on a real instance (the repository's dagster.yaml on PostgreSQL), a re-render by a
real `rerender_albums` run that leaves the latency alone, and freshness judged by Dagster's own
freshness daemon and read back through the UI's GraphQL."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.freshness import FreshnessDaemon

from photo_pipeline.cli import samples
from photo_pipeline.defs.health.assets import (
    FAILURE_RATE,
    HEALTH_ASSETS,
    HEALTH_FRESHNESS,
    HEALTH_JOBS,
    HEALTH_SCHEDULES,
    NO_ORPHANS_OR_MISSING,
    NO_STALE_PENDING,
    PIPELINE_HEALTH,
    pipeline_health,
)
from photo_pipeline.defs.health.freshness import schedule_interval
from photo_pipeline.defs.reconcile.assets import (
    RECONCILIATION_FRESHNESS,
    STORAGE_RECONCILIATION,
    storage_reconciliation,
)
from photo_pipeline.defs.renditions.assets import ALBUMS, album_renditions
from photo_pipeline.defs.renditions.jobs import rerender_albums
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.photos.claims import ClaimedPhoto
from photo_pipeline.photos.database import create_engine_for, migrate
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.reconcile_queries import ReconciliationQueries
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.rendering.render import RenderOptions
from photo_pipeline.services.health import (
    CheckOutcome,
    FreshnessWindows,
    HealthSnapshot,
    HealthThresholds,
    ReconciliationFindings,
    collect_health,
    evaluate_failure_rate,
    evaluate_orphans_or_missing,
    evaluate_stale_pending,
    freshness_windows,
    percentile,
)
from photo_pipeline.services.processing import PhotoProcessor, ProcessingLimits
from photo_pipeline.storage import S3ObjectStore, keys, make_s3_client
from photo_pipeline_tests.conftest import S3Server
from photo_pipeline_tests.defs.ui_graphql import code_location, query

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
THRESHOLDS = HealthThresholds()
# Present on every materialization (the figures that are always measured).
ALWAYS_NUMERIC = (
    "pending", "processing", "completed", "failed", "missing", "total", "oldest_pending_age_seconds",
    "stale_pending", "completed_last_hour", "failed_last_hour", "latency_samples", "expired_claims",
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

    def completed(self, uploaded: datetime, finished: datetime) -> uuid.UUID:
        claim = self.claimed(uploaded, uploaded)
        self.clock.at = finished
        assert self.repository.complete(
            claim, thumb_key=f"t/{claim.id}", preview_key=f"p/{claim.id}", width=10, height=10,
            original_bytes=1, thumb_bytes=1, preview_bytes=1,
        )  # fmt: skip
        return claim.id

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
        PhotoStatus.TRASHED: 0,
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


def test_photos_in_the_trash_are_counted_apart_and_in_no_total_or_latency(table: Table) -> None:
    """Issue 17: a trashed photo is hidden from the figures but its own count."""
    table.completed(ago(minutes=50), ago(minutes=50) + timedelta(seconds=10))
    slow = table.completed(ago(minutes=50), ago(minutes=50) + timedelta(seconds=90))
    table.repository.trash_photos([slow])

    snapshot = collect_health(table.repository.engine, NOW, THRESHOLDS)

    assert (snapshot.counts[PhotoStatus.TRASHED], snapshot.counts[PhotoStatus.COMPLETED], snapshot.total) == (1, 1, 1)
    assert snapshot.latency_samples == 1 and snapshot.latency_p95_seconds == pytest.approx(10)


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
    assert outcome.metadata["thresholds"] == "WARN when a pending photo waited over 30 min since upload; ERROR when the oldest waited over 2.0 h"


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
    # A rate only when something finished; the thresholds as text.
    assert ("failure_rate" in outcome.metadata) == bool(failed + completed)
    assert outcome.metadata["thresholds"] == "Share of failed photos among those finished in the last 1.0 h: WARN from 5%, ERROR from 25%"


def findings(orphans: int, missing: int, outcome: str = "applied") -> ReconciliationFindings:
    return ReconciliationFindings(
        orphan_objects=orphans, missing_rows=missing, unholdable_keys=0, planned_at=ago(minutes=20), outcome=outcome, run_id="r1"
    )


def test_orphans_or_missing_rule() -> None:
    clean = evaluate_orphans_or_missing(0, findings(0, 0), NOW)
    assert clean.passed and "20 min ago" in clean.description
    unknown = evaluate_orphans_or_missing(0, None, NOW)
    assert unknown.passed and "no reconciliation has run yet" in unknown.description
    assert set(unknown.metadata) == {"missing_rows_in_table"}, "unknown is not zero"
    for outcome in (
        evaluate_orphans_or_missing(2, findings(0, 0), NOW),
        evaluate_orphans_or_missing(0, findings(3, 0), NOW),
        evaluate_orphans_or_missing(0, findings(0, 1), NOW),
    ):
        assert (outcome.passed, outcome.severity) == (False, "WARN")
    refused = evaluate_orphans_or_missing(2, findings(3, 1, "refused by the safety limit: nothing applied"), NOW)
    assert "refused by the safety limit" in refused.description
    assert {k: v for k, v in refused.metadata.items() if k != "reconciliation"} == {
        "missing_rows_in_table": 2,
        "orphan_objects": 3,
        "missing_rows_found_by_reconciliation": 1,
    }


def test_check_metadata_holds_no_threshold_numbers() -> None:
    """Thresholds are configuration: as numbers they would be plotted as flat lines next to the
    measurements. Every number a check records is a measurement of this snapshot."""
    snapshot = snapshot_with(stale_pending=1, oldest_pending_age_seconds=2000.0, failed_last_window=1, completed_last_window=4, failure_rate_last_window=0.2)
    stale, rate = evaluate_stale_pending(snapshot, THRESHOLDS), evaluate_failure_rate(snapshot, THRESHOLDS)

    def numbers(outcome: CheckOutcome) -> dict[str, float]:
        return {k: v for k, v in outcome.metadata.items() if isinstance(v, (int, float))}

    assert numbers(stale) == {"stale_pending": 1, "pending": 0, "oldest_pending_age_seconds": 2000.0}
    assert numbers(rate) == {"failed_in_window": 1, "completed_in_window": 4, "failure_rate": 0.2}
    assert "30 min" in str(stale.metadata["thresholds"]) and "25%" in str(rate.metadata["thresholds"])


def test_freshness_windows_follow_the_schedule() -> None:
    assert freshness_windows(timedelta(minutes=5)) == FreshnessWindows(timedelta(minutes=10), timedelta(minutes=15))
    assert schedule_interval("*/5 * * * *") == timedelta(minutes=5)
    assert schedule_interval("0 * * * *") == timedelta(hours=1)
    # A weekday cron's longest gap is the weekend.
    assert schedule_interval("0 9 * * 1-5") == timedelta(days=3)
    with pytest.raises(ValueError, match="positive"):
        freshness_windows(timedelta(0))


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
    assert all(isinstance(first[key], (int, float)) for key in ALWAYS_NUMERIC)
    assert (first["pending"], first["failed"], first["total"], first["stale_pending"]) == (1, 1, 2, 1)
    assert first["failure_rate_last_hour"] == 1.0
    assert first["oldest_pending_age_seconds"] >= 45 * 60  # type: ignore[operator]
    # Nothing completed, no reconciliation: no latency and no orphan count, rather than zeros.
    assert not {"latency_p50_seconds", "latency_p95_seconds", "orphan_objects", "missing_rows"} & set(first)
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
    assert second["oldest_pending_age_seconds"] == 0.0  # nobody waiting
    history = dagster_instance.fetch_materializations(AssetKey(PIPELINE_HEALTH), limit=10).records
    assert [r.asset_materialization.metadata["total"].value for r in history] == [21, 2]  # type: ignore[union-attr]


def test_pipeline_health_reads_the_latest_reconciliation(dagster_instance: DagsterInstance, photo_db: str) -> None:
    dagster_instance.report_runless_asset_event(
        AssetMaterialization(asset_key="storage_reconciliation", metadata={"orphan_objects": 3, "missing_rows": 1})
    )

    checks = run_health(dagster_instance, photo_db)

    metadata = latest_metadata(dagster_instance)
    assert (metadata["orphan_objects"], metadata["missing_rows"]) == (3, 1)
    assert "latest reconciliation plan" in metadata["reconciliation"]  # type: ignore[operator]
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


# -- a re-render is not an upload waiting ----------------------------------------------------------


def test_a_re_render_does_not_move_the_latency(
    dagster_instance: DagsterInstance, photo_db: str, s3_env: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uploaded 40 minutes ago and rendered 12 s later; then re-rendered now by a real
    rerender_albums run (new settings). The latency stays 12 s: measured from the upload to the
    photo's first completion, never to a re-render's."""
    for name, value in {"PHOTO_DATABASE_URL": photo_db, "PHOTO_BUCKET": s3_bucket, "PHOTO_PREVIEW_SIZE": "96", "PHOTO_THUMB_SIZE": "48"}.items():
        monkeypatch.setenv(name, value)
    now = datetime.now(UTC)
    uploaded = now - timedelta(minutes=40)
    table = Table(photo_db, uploaded)
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)
    album, photo = uuid.uuid4(), uuid.uuid4()
    key = keys.raw_key(album, photo, "jpg")
    table.repository.register_pending(NewPhoto(id=photo, album_id=album, original_key=key))
    store.put(key, samples.photo_jpeg(120, 90), "image/jpeg")
    table.clock.at = uploaded + timedelta(seconds=12)
    limits = ProcessingLimits(workers=1)
    first = PhotoProcessor(table.repository, store, RenderOptions(preview_long_side=96, thumb_long_side=48), limits).process_album(album, "first-render")
    assert first.rendered == 1

    run_health(dagster_instance, photo_db)
    before = latest_metadata(dagster_instance)
    assert (before["latency_p50_seconds"], before["latency_samples"]) == (12.0, 1)

    dagster_instance.add_dynamic_partitions(ALBUMS, [str(album)])
    rerender = Definitions(assets=[album_renditions], jobs=[rerender_albums], resources={"photo_pipeline": PhotoPipelineResource()})
    assert rerender.resolve_job_def(rerender_albums.name).execute_in_process(instance=dagster_instance, partition_key=str(album)).success
    row = table.repository.get(photo)
    assert row is not None and row.completed_at is not None and row.completed_at > now, "rendered again, just now"

    run_health(dagster_instance, photo_db)
    after = latest_metadata(dagster_instance)
    assert (after["latency_p50_seconds"], after["latency_p95_seconds"], after["latency_samples"]) == (12.0, 12.0, 1)
    assert after["completed_last_hour"] == 1


# -- freshness: a stopped schedule turns the assets red --------------------------------------------


def record_materialization(instance: DagsterInstance, asset: str, at: datetime) -> None:
    """A materialization stored with the given time, as the last one a run left before its
    schedule stopped (the instance's own event log; only the time is set by hand)."""
    event = DagsterEvent(
        DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name=RUNLESS_JOB_NAME,
        event_specific_data=StepMaterializationData(AssetMaterialization(asset_key=asset)),
    )
    instance.report_dagster_event(event, run_id=RUNLESS_RUN_ID, timestamp=at.timestamp())


def freshness_as_the_ui_shows_it(workspace: WorkspaceProcessContext) -> dict[str, str]:
    """One pass of the daemon's freshness evaluator, then the status the asset pages show."""
    # On a thread of its own: the evaluator calls asyncio.run, which refuses to start inside a
    # running loop (a browser test's Playwright may hold one on the main thread).
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(lambda: list(FreshnessDaemon().run_iteration(workspace))).result(timeout=120)
    status = {}
    for asset in (STORAGE_RECONCILIATION, PIPELINE_HEALTH):
        data = query(workspace, FRESHNESS, {"asset": {"path": [asset]}})
        status[asset] = data["assetNodeOrError"]["freshnessStatusInfo"]["freshnessStatus"]
    return status


FRESHNESS = """
query ($asset: AssetKeyInput!) {
  assetNodeOrError(assetKey: $asset) { ... on AssetNode { freshnessStatusInfo { freshnessStatus } } }
}
"""


def test_freshness_fails_when_the_schedules_stopped(dagster_instance: DagsterInstance, photo_db: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    # Each asset last materialized just past its fail window (three of its schedule's intervals).
    record_materialization(dagster_instance, STORAGE_RECONCILIATION, now - RECONCILIATION_FRESHNESS.fail_after - timedelta(minutes=1))
    record_materialization(dagster_instance, PIPELINE_HEALTH, now - HEALTH_FRESHNESS.fail_after - timedelta(minutes=1))

    with code_location(dagster_instance) as workspace:
        stale = freshness_as_the_ui_shows_it(workspace)
        late_health = now - HEALTH_FRESHNESS.warn_after - timedelta(minutes=1)
        record_materialization(dagster_instance, PIPELINE_HEALTH, late_health)
        late = freshness_as_the_ui_shows_it(workspace)

        # The schedules run again: a real run of each.
        resource = PhotoPipelineResource(database_url=photo_db, home=str(tmp_path / "home"))
        assert materialize([pipeline_health], instance=dagster_instance, resources={"photo_pipeline": resource}).success
        assert materialize(
            [storage_reconciliation], instance=dagster_instance, resources={"photo_pipeline": resource}
        ).success  # its own default: a dry run
        fresh = freshness_as_the_ui_shows_it(workspace)

    assert stale == {STORAGE_RECONCILIATION: "DEGRADED", PIPELINE_HEALTH: "DEGRADED"}
    assert late[PIPELINE_HEALTH] == "WARNING"
    assert fresh == {STORAGE_RECONCILIATION: "HEALTHY", PIPELINE_HEALTH: "HEALTHY"}
