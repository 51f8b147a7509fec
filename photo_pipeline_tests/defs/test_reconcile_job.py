"""reconcile_storage as a real Dagster run (PostgreSQL instance, PostgreSQL table, S3 over HTTP):
the `storage_reconciliation` asset as the UI shows it (in the catalog before any run, its launchpad
a dry run), its plan as metadata tables read back from the instance, a refused plan recorded with
its reason and followed by `pipeline_health`; `photo-pipeline reconcile` on the embedded defaults,
and recovery from a run killed with -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    TableMetadataValue,
    materialize,
)

from photo_pipeline.cli import samples
from photo_pipeline.cli.commands import main
from photo_pipeline.defs.health.assets import pipeline_health
from photo_pipeline.defs.reconcile.assets import (
    PLAN_WITHIN_SAFETY_LIMIT,
    storage_reconciliation,
)
from photo_pipeline.defs.reconcile.jobs import apply_reconciliation, reconcile_config, reconcile_storage
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.photos.database import migrate
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository, utc_now
from photo_pipeline.reconcile.apply import Reconciler
from photo_pipeline.reconcile.plan import ReconcilePolicy
from photo_pipeline.rendering.render import RenderOptions
from photo_pipeline.services.processing import PhotoProcessor, ProcessingLimits
from photo_pipeline.storage import S3ObjectStore, keys, make_s3_client
from photo_pipeline_tests.conftest import S3_TEST_CREDENTIALS, S3Server
from photo_pipeline_tests.defs.ui_graphql import (
    code_location,
    job_selector,
    query,
    repository_selector,
)

JPEG = samples.photo_jpeg(64, 48)


def seed(repository: PhotoRepository, store: S3ObjectStore, album: uuid.UUID, n: int) -> list[uuid.UUID]:
    ids = []
    for _ in range(n):
        photo_id = uuid.uuid4()
        key = keys.raw_key(album, photo_id, "jpg")
        repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key))
        store.put(key, JPEG, "image/jpeg")
        ids.append(photo_id)
    return ids


def run_reconcile(
    instance: DagsterInstance, resource: PhotoPipelineResource, run_config: dict[str, Any] | None = None, job: str = "reconcile_storage"
) -> ExecuteInProcessResult:
    """A run of one of the project's reconciliation jobs with this test's table and bucket; no
    run_config: the job's own (what the launchpad opens with). (Definitions bind their resource
    into the assets, so a resolved asset job ignores execute_in_process's `resources`.)"""
    definitions = Definitions(
        assets=[storage_reconciliation], jobs=[reconcile_storage, apply_reconciliation], resources={"photo_pipeline": resource}
    )
    return definitions.resolve_job_def(job).execute_in_process(instance=instance, run_config=run_config, raise_on_error=False)


def latest_metadata(instance: DagsterInstance, asset: str = "storage_reconciliation") -> dict[str, Any]:
    event = instance.get_latest_materialization_event(AssetKey(asset))
    assert event is not None and event.asset_materialization is not None
    return dict(event.asset_materialization.metadata)


def rows(value: Any) -> list[dict[str, Any]]:
    """A table metadata value's records, as the asset page shows them."""
    assert isinstance(value, TableMetadataValue), value
    return [dict(record.data) for record in value.records]


def by_kind(value: Any) -> dict[str, dict[str, Any]]:
    """actions_by_kind's rows by their kind (the first word of the `repair` cell)."""
    return {row["repair"].split(":")[0].removesuffix(" (destructive)"): row for row in rows(value)}


def safety_check(instance: DagsterInstance) -> AssetCheckEvaluation:
    key = AssetCheckKey(AssetKey("storage_reconciliation"), PLAN_WITHIN_SAFETY_LIMIT)
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    assert record.event is not None and record.event.dagster_event is not None
    evaluation = record.event.dagster_event.event_specific_data
    assert isinstance(evaluation, AssetCheckEvaluation)
    return evaluation


def test_storage_reconciliation_is_in_the_catalog_before_any_run_and_its_launchpad_is_a_dry_run(
    instance: DagsterInstance,
) -> None:
    with code_location(instance) as workspace:
        data = query(workspace, ASSET_AND_JOB, {"asset": {"path": ["storage_reconciliation"]}, "job": job_selector("reconcile_storage")})
        apply_job = query(workspace, ASSET_AND_JOB, {"asset": {"path": ["storage_reconciliation"]}, "job": job_selector("apply_reconciliation")})
        schedule = query(workspace, SCHEDULE_CONFIG, {"schedule": {**repository_selector(), "scheduleName": "reconcile_storage_schedule"}})

    node = data["assetNodeOrError"]
    assert node["__typename"] == "AssetNode" and node["isMaterializable"] and node["isExecutable"]
    assert node["groupName"] == "reconciliation"
    assert "reconciliation plan" in node["description"] and "dry run" in node["description"]
    assert node["internalFreshnessPolicy"]["__typename"] == "TimeWindowFreshnessPolicy"
    assert node["assetMaterializations"] == [], "defined in code, not made up by a first run"
    assert [c["name"] for c in node["assetChecksOrError"]["checks"]] == [PLAN_WITHIN_SAFETY_LIMIT]
    # The launchpad opens on the job's own config: a dry run; apply_reconciliation's applies.
    [preset] = data["pipelineOrError"]["presets"]
    assert yaml.safe_load(preset["runConfigYaml"]) == {"ops": {"storage_reconciliation": {"config": {"dry_run": True, "force": False}}}}
    [applying] = apply_job["pipelineOrError"]["presets"]
    assert yaml.safe_load(applying["runConfigYaml"]) == {"ops": {"storage_reconciliation": {"config": {"dry_run": False, "force": False}}}}
    assert "apply_reconciliation" in node["description"] and "one click" in node["description"]
    # The schedule applies.
    [tick_config] = schedule["scheduleOrError"]["futureTicks"]["results"][0]["evaluationResult"]["runRequests"]
    assert yaml.safe_load(tick_config["runConfigYaml"])["ops"]["storage_reconciliation"]["config"]["dry_run"] is False


ASSET_AND_JOB = """
query ($asset: AssetKeyInput!, $job: PipelineSelector!) {
  assetNodeOrError(assetKey: $asset) {
    __typename
    ... on AssetNode {
      description groupName isMaterializable isExecutable
      internalFreshnessPolicy { __typename }
      assetMaterializations(limit: 1) { runId }
      assetChecksOrError { ... on AssetChecks { checks { name } } }
    }
  }
  pipelineOrError(params: $job) { ... on Pipeline { presets { name runConfigYaml } } }
}
"""

SCHEDULE_CONFIG = """
query ($schedule: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $schedule) {
    ... on Schedule {
      futureTicks(limit: 1) { results { evaluationResult { runRequests { runConfigYaml } } } }
    }
  }
}
"""


def test_reconcile_storage_dry_run_then_apply(
    instance: DagsterInstance, postgres_url: str, s3_env: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTO_ORPHAN_GRACE_SECONDS", "0")
    migrate(postgres_url)
    repository = PhotoRepository.from_url(postgres_url)
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)
    album = uuid.uuid4()
    seed(repository, store, album, 12)
    orphan_id = uuid.uuid4()
    orphan = keys.raw_key(album, orphan_id, "jpg")
    store.put(orphan, JPEG, "image/jpeg")
    time.sleep(1.1)  # past the (zero) orphan grace at S3's one-second resolution
    resource = PhotoPipelineResource(database_url=postgres_url, bucket=s3_bucket)

    dry = run_reconcile(instance, resource)  # the launchpad as it opens

    assert dry.success
    assert repository.find_by_original_keys([orphan]) == {}, "a dry run changes nothing"
    metadata = latest_metadata(instance)
    assert metadata["outcome"].value == "dry run: nothing applied" and metadata["applied"].value is False
    assert metadata["orphan_objects"].value == 1 and "apply_errors" not in metadata
    # Only the kinds the plan holds, each with what it does; the plan in a line; how to apply it.
    assert rows(metadata["actions_by_kind"]) == [
        {"planned": 12, "applied": None, "repair": "requeue: pending row, original present: touched so its album gets a run"},
        {"planned": 1, "applied": None, "repair": "adopt: raw object without a row: pending row created"},
    ]
    assert metadata["plan"].value == "13 repair(s) planned: requeue 12, adopt 1"
    assert "launch the apply_reconciliation job" in metadata["to_apply"].value
    # Each action in one cell that wraps: kind, reason, the key (which names album and photo).
    assert f"adopt: raw object without a row: {orphan}" in [r["action"] for r in rows(metadata["first_actions"])]
    assert safety_check(instance).passed

    applied = run_reconcile(instance, resource, reconcile_config(dry_run=False))

    assert applied.success
    assert orphan in repository.find_by_original_keys([orphan])
    metadata = latest_metadata(instance)
    assert metadata["outcome"].value == "applied" and metadata["applied"].value is True
    assert metadata["orphan_objects"].value == 1 and metadata["apply_errors"].value == 0
    assert by_kind(metadata["actions_by_kind"])["adopt"]["applied"] == 1 and "to_apply" not in metadata


def test_apply_reconciliation_applies_on_launch_and_stays_behind_the_safety_limit(
    instance: DagsterInstance, postgres_url: str, s3_env: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18 item 8: applying without typing YAML. The job's own config applies; the safety
    limit still refuses a mass change, and force stays a choice typed into the launchpad."""
    monkeypatch.setenv("PHOTO_ORPHAN_GRACE_SECONDS", "0")
    migrate(postgres_url)
    repository = PhotoRepository.from_url(postgres_url)
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)
    album = uuid.uuid4()
    ids = seed(repository, store, album, 3)
    PhotoProcessor(repository, store, RenderOptions(preview_long_side=64, thumb_long_side=32), ProcessingLimits(workers=1)).process_album(album, "seed")
    orphan = keys.raw_key(album, uuid.uuid4(), "jpg")
    store.put(orphan, JPEG, "image/jpeg")
    time.sleep(1.1)

    applied = run_reconcile(instance, PhotoPipelineResource(database_url=postgres_url, bucket=s3_bucket), job="apply_reconciliation")

    assert applied.success
    assert orphan in repository.find_by_original_keys([orphan])
    assert latest_metadata(instance)["outcome"].value == "applied"

    # The wrong bucket: every original gone at once.
    wrong_bucket = PhotoPipelineResource(database_url=postgres_url, bucket=s3_env.new_bucket())
    refused = run_reconcile(instance, wrong_bucket, job="apply_reconciliation")

    assert not refused.success
    assert all(r.status is PhotoStatus.COMPLETED and r.missing_since is None for r in repository.get_many(ids).values())
    metadata = latest_metadata(instance)
    assert metadata["outcome"].value == "refused by the safety limit: nothing applied"
    assert "force: true" in metadata["to_apply"].value and "no originals" in metadata["to_apply"].value


def test_a_refused_plan_is_recorded_with_its_reason_and_health_reports_it(
    instance: DagsterInstance, postgres_url: str, s3_env: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTO_ORPHAN_GRACE_SECONDS", "0")
    migrate(postgres_url)
    repository = PhotoRepository.from_url(postgres_url)
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)
    album = uuid.uuid4()
    ids = seed(repository, store, album, 3)
    PhotoProcessor(repository, store, RenderOptions(preview_long_side=64, thumb_long_side=32), ProcessingLimits(workers=1)).process_album(album, "seed")
    store.put(keys.raw_key(album, uuid.uuid4(), "jpg"), JPEG, "image/jpeg")  # an orphan, found then adopted
    time.sleep(1.1)
    apply = reconcile_config(dry_run=False)
    assert run_reconcile(instance, PhotoPipelineResource(database_url=postgres_url, bucket=s3_bucket), apply).success
    assert latest_metadata(instance)["orphan_objects"].value == 1
    health = PhotoPipelineResource(database_url=postgres_url)
    assert materialize([pipeline_health], instance=instance, resources={"photo_pipeline": health}).success
    assert latest_metadata(instance, "pipeline_health")["orphan_objects"].value == 1

    # The wrong bucket: every original gone at once. The safety limit refuses the plan.
    empty_bucket = s3_env.new_bucket()
    refused = run_reconcile(instance, PhotoPipelineResource(database_url=postgres_url, bucket=empty_bucket), apply)

    assert not refused.success, "a refused plan fails the run"
    [failure] = [e for e in refused.all_events if e.is_step_failure]
    assert failure.step_key == "storage_reconciliation.report"
    assert "no originals" in str(failure.step_failure_data.error) and "--force" in str(failure.step_failure_data.error)
    assert all(r.status is PhotoStatus.COMPLETED and r.missing_since is None for r in repository.get_many(ids).values())
    metadata = latest_metadata(instance)
    event = instance.get_latest_materialization_event(AssetKey("storage_reconciliation"))
    assert event is not None and event.run_id == refused.run_id, "the refused plan is on the asset's page"
    assert metadata["outcome"].value == "refused by the safety limit: nothing applied"
    assert "no originals" in metadata["refusal"].value and "force" in metadata["refusal"].value
    # The three completed photos' originals "gone" (the adopted one is pending, inside its grace).
    assert (metadata["orphan_objects"].value, metadata["missing_rows"].value) == (0, 3)
    assert by_kind(metadata["actions_by_kind"])["seen_gone"]["planned"] == 3
    listed = [r["action"] for r in rows(metadata["first_actions"])]
    assert [text.split(":")[0] for text in listed[:3]] == ["seen_gone"] * 3, "what would be destroyed comes first"
    assert all(any(str(i) in text for text in listed[:3]) for i in ids)
    check = safety_check(instance)
    assert not check.passed and check.severity is AssetCheckSeverity.ERROR and "no originals" in (check.description or "")

    assert materialize([pipeline_health], instance=instance, resources={"photo_pipeline": health}).success

    figures = latest_metadata(instance, "pipeline_health")
    assert (figures["orphan_objects"].value, figures["missing_rows"].value) == (0, 3), "the refused plan's findings"
    assert "refused by the safety limit" in figures["reconciliation"].value and refused.run_id in figures["reconciliation"].value
    assert figures["reconciliation_planned_at"].value == pytest.approx(metadata["plan_taken_at"].value)


def test_cli_reconcile_dry_run_json_on_embedded_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("PHOTO_", "DAGSTER_HOME")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PHOTO_PIPELINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PHOTO_ORPHAN_GRACE_SECONDS", "0")
    album = uuid.uuid4()
    photo = tmp_path / "a.jpg"
    photo.write_bytes(JPEG)
    runner = CliRunner()
    assert runner.invoke(main, ["init-db"]).exit_code == 0
    assert runner.invoke(main, ["upload", str(album), str(photo)]).exit_code == 0
    stray = tmp_path / "home" / "objects" / "raw" / str(album) / f"{uuid.uuid4()}.jpg"
    stray.write_bytes(JPEG)
    old = time.time() - 60
    os.utime(stray, (old, old))
    dry = runner.invoke(main, ["reconcile", "--dry-run", "--json"], catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    payload = json.loads(dry.output)
    assert payload["actions"]["adopt"] == 1 and payload["dry_run"] is True
    assert runner.invoke(main, ["status", "--json"]).output.count('"pending": 1') >= 1
    applied = runner.invoke(main, ["reconcile"], catch_exceptions=False)
    assert applied.exit_code == 0, applied.output
    totals = json.loads(runner.invoke(main, ["status", "--json"]).output)["totals"]
    assert totals["pending"] == 2


WORKER_SCRIPT = """
import sys, uuid
from photo_pipeline.storage import S3ObjectStore, make_s3_client
from photo_pipeline.services.processing import PhotoProcessor, ProcessingLimits
from photo_pipeline.rendering.render import RenderOptions
from photo_pipeline.photos.repository import PhotoRepository
url, endpoint, bucket, album = sys.argv[1:5]
repository = PhotoRepository.from_url(url)
store = S3ObjectStore(make_s3_client(endpoint_url=endpoint), bucket)
PhotoProcessor(repository, store, RenderOptions(), ProcessingLimits(batch_size=4, workers=1)).process_album(uuid.UUID(album), "doomed-run")
"""


def test_a_run_killed_mid_album_is_recovered_by_the_lease(
    postgres_url: str, s3_env: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    migrate(postgres_url)
    repository = PhotoRepository.from_url(postgres_url)
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)
    album = uuid.uuid4()
    big = samples.photo_jpeg(3000, 2000)
    ids = []
    for _ in range(24):
        photo_id = uuid.uuid4()
        key = keys.raw_key(album, photo_id, "jpg")
        repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key))
        store.put(key, big, "image/jpeg")
        ids.append(photo_id)
    env = {**os.environ, **S3_TEST_CREDENTIALS}
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, postgres_url, s3_env.endpoint_url, s3_bucket, str(album)], env=env
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        counts = repository.status_counts(album)
        if counts[PhotoStatus.COMPLETED] >= 2 and counts[PhotoStatus.PROCESSING] > 0:
            break
        assert worker.poll() is None, "the worker finished before it could be killed"
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    stuck = repository.status_counts(album)[PhotoStatus.PROCESSING]
    assert stuck > 0

    policy = ReconcilePolicy(claim_lease_seconds=900, min_changes=100)
    now = utc_now()
    inside_lease = Reconciler(repository, store, policy, clock=lambda: now + timedelta(seconds=60))
    inside_lease.apply(inside_lease.plan())
    assert repository.status_counts(album)[PhotoStatus.PROCESSING] == stuck, "a claim inside its lease is left alone"

    past_lease = Reconciler(repository, store, policy, clock=lambda: now + timedelta(seconds=901))
    report = past_lease.apply(past_lease.plan())
    assert report.applied["release_claim"] == stuck
    assert album in report.albums_to_render
    assert repository.status_counts(album)[PhotoStatus.PROCESSING] == 0

    PhotoProcessor(repository, store, RenderOptions(preview_long_side=400, thumb_long_side=100), ProcessingLimits(workers=2)).process_album(album, "rescue-run")
    rows = repository.get_many(ids)
    assert all(r.status is PhotoStatus.COMPLETED for r in rows.values())
    assert sum(1 for r in rows.values() if r.attempts == 2) == stuck
