"""The alert sensors on a real instance (the repository's dagster.yaml on PostgreSQL), evaluated
tick by tick with `build_sensor_context`, delivering through Apprise to a JSON webhook the test
runs: a real failed run alerts once, naming its job and album; a failure-rate spike alerts once,
reminds after the repeat interval, stays quiet while it hovers and says when it is resolved; a
stopped schedule and a refused reconciliation alert; a destination that refuses gets the message
at the next tick. Time moves through the sensor's clock and the rows' timestamps, never sleeps."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    Definitions,
    MetadataValue,
    SensorDefinition,
    build_sensor_context,
)
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

from photo_pipeline.defs.alerts.sensors import (
    ALERTS_DEFAULT_STATUS,
    NO_DESTINATIONS,
    alert_on_conditions,
    alert_on_run_failure,
    build_conditions_sensor,
    build_run_failure_sensor,
)
from photo_pipeline.defs.health.assets import HEALTH_FRESHNESS, PIPELINE_HEALTH
from photo_pipeline.defs.reconcile.assets import OUTCOME, RECONCILIATION_ASSET, STORAGE_RECONCILIATION
from photo_pipeline.defs.renditions.assets import album_renditions, albums_partitions
from photo_pipeline.defs.renditions.jobs import process_album
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.reconcile.report import Outcome
from photo_pipeline.storage import keys
from photo_pipeline_tests.alerts.receivers import JsonReceiver
from photo_pipeline_tests.conftest import S3Server
from photo_pipeline_tests.services.test_health import Clock, Table

T0 = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def alert_env(monkeypatch: pytest.MonkeyPatch, webhook: JsonReceiver) -> JsonReceiver:
    monkeypatch.setenv("PHOTO_ALERT_URLS", webhook.url())
    monkeypatch.setenv("PHOTO_DAGSTER_URL", "https://dagster.example.com/")
    return webhook


def tick(sensor: SensorDefinition, instance: DagsterInstance, resource: PhotoPipelineResource, cursor: str | None) -> str | None:
    """One evaluation, as the daemon makes it; returns the cursor the daemon would keep."""
    with build_sensor_context(instance=instance, cursor=cursor, resources={"photo_pipeline": resource}) as context:
        result = sensor(context)
    return result.cursor if result.cursor is not None else cursor


# -- a failed run -------------------------------------------------------------------------------


def test_a_failed_run_alerts_once_naming_its_job_and_album(
    instance: DagsterInstance, photo_db: str, s3_env: S3Server, alert_env: JsonReceiver
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    repository.set_album_title(album, "Wedding Anna & Ben")
    photo = uuid.uuid4()
    repository.register_pending(NewPhoto(id=photo, album_id=album, original_key=keys.raw_key(album, photo, "jpg")))
    instance.add_dynamic_partitions(albums_partitions.name, [str(album)])
    # A bucket that does not exist: the run fails at once (test_misconfiguration).
    wrong = PhotoPipelineResource(database_url=photo_db, bucket=f"no-such-bucket-{uuid.uuid4().hex[:8]}")
    job = Definitions(assets=[album_renditions], jobs=[process_album], resources={"photo_pipeline": wrong}).resolve_job_def(
        process_album.name
    )
    sensor = build_run_failure_sensor()
    cursor = tick(sensor, instance, wrong, None)  # the first tick starts from now
    assert alert_env.received == []

    result = job.execute_in_process(partition_key=str(album), instance=instance, raise_on_error=False)
    assert not result.success
    cursor = tick(sensor, instance, wrong, cursor)
    cursor = tick(sensor, instance, wrong, cursor)  # the next tick does not repeat it

    (message,) = alert_env.received
    assert message["title"] == f'photo_pipeline: process_album failed for album "Wedding Anna & Ben" ({album})'
    text = message["message"]
    assert "does not exist" in text.splitlines()[1]  # the error's first line
    assert f"https://dagster.example.com/runs/{result.run_id}" in text
    assert len(text.splitlines()) == 3, "the headline, not the traceback"


def test_a_destination_that_refuses_gets_the_run_failure_at_the_next_tick(
    instance: DagsterInstance, photo_db: str, monkeypatch: pytest.MonkeyPatch, webhook: JsonReceiver, second_webhook: JsonReceiver
) -> None:
    second_webhook.statuses = [500, 500]
    monkeypatch.setenv("PHOTO_ALERT_URLS", f"{webhook.url()} {second_webhook.url()}")
    resource = PhotoPipelineResource(database_url=photo_db)
    sensor = build_run_failure_sensor()
    cursor = tick(sensor, instance, resource, None)
    failing = Definitions(assets=[], jobs=[broken_job()]).get_job_def("broken")
    assert not failing.execute_in_process(instance=instance, raise_on_error=False).success

    cursor = tick(sensor, instance, resource, cursor)  # the second destination answers 500
    assert (len(webhook.received), len(second_webhook.received), len(second_webhook.refused)) == (1, 0, 1)
    cursor = tick(sensor, instance, resource, cursor)  # and again
    cursor = tick(sensor, instance, resource, cursor)  # then takes it

    assert len(webhook.received) == 1, "the destination that took it is not sent it again"
    (message,) = second_webhook.received
    assert message["title"] == "photo_pipeline: broken failed"
    assert "ValueError: the disk is full" in message["message"]
    assert '"outbox": []' in (cursor or "")


def broken_job():  # type: ignore[no-untyped-def]
    from dagster import job, op

    @op
    def write() -> None:
        raise ValueError("the disk is full\nsecond line of the error")

    @job(name="broken")
    def broken() -> None:
        write()

    return broken


# -- conditions -----------------------------------------------------------------------------------


def moving_sensor(clock: Clock) -> tuple[SensorDefinition, Callable[[datetime], None]]:
    def move(to: datetime) -> None:
        clock.at = to

    return build_conditions_sensor(clock=clock), move


def test_a_failure_rate_spike_alerts_once_reminds_and_resolves(
    instance: DagsterInstance, photo_db: str, alert_env: JsonReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTO_ALERT_REPEAT_HOURS", "0.5")  # shortened for the test
    table = Table(photo_db, T0)
    clock = Clock(T0)
    sensor, move = moving_sensor(clock)
    resource = PhotoPipelineResource(database_url=photo_db)
    finished = T0 - timedelta(minutes=2)

    def titles() -> list[str]:
        return alert_env.titles()

    # 1 of 10 failed: 10 %, at the threshold, not above it.
    for _ in range(9):
        table.completed(finished - timedelta(minutes=1), finished)
    table.failed(finished - timedelta(minutes=1), finished)
    cursor = tick(sensor, instance, resource, None)
    assert titles() == []

    table.failed(finished - timedelta(minutes=1), finished)  # 2 of 11: 18 %
    move(T0 + timedelta(minutes=1))
    cursor = tick(sensor, instance, resource, cursor)
    assert titles() == ["photo_pipeline: photos are failing"]
    assert "2 of 11 photo(s) finished in the last 1.0 h failed (18.2%)" in alert_env.received[0]["message"]

    # Hovering: 2 of 21 (9.5 %) is under the threshold but over the clear one (8 %), then 3 of 22.
    for _ in range(10):
        table.completed(finished - timedelta(minutes=1), finished)
    move(T0 + timedelta(minutes=2))
    cursor = tick(sensor, instance, resource, cursor)
    table.failed(finished - timedelta(minutes=1), finished)
    move(T0 + timedelta(minutes=3))
    cursor = tick(sensor, instance, resource, cursor)
    assert len(titles()) == 1, "no message while it hovers"

    move(T0 + timedelta(minutes=32))  # past the repeat interval since the alert
    cursor = tick(sensor, instance, resource, cursor)
    assert titles()[1].startswith("photo_pipeline: still photos are failing (for 31 min)")

    move(T0 + timedelta(minutes=33))
    cursor = tick(sensor, instance, resource, cursor)
    assert len(titles()) == 2

    move(T0 + timedelta(hours=2))  # the failures are out of the hour: nothing failed since
    cursor = tick(sensor, instance, resource, cursor)
    move(T0 + timedelta(hours=2, minutes=1))
    cursor = tick(sensor, instance, resource, cursor)
    assert titles() == [
        "photo_pipeline: photos are failing",
        "photo_pipeline: still photos are failing (for 31 min)",
        "photo_pipeline: resolved: photos are failing",
    ]
    assert [body["type"] for body in alert_env.received] == ["failure", "warning", "success"]


def record_materialization(instance: DagsterInstance, asset: str, at: datetime, metadata: dict | None = None) -> None:
    """A materialization stored with the given time, as a run leaves it (only the time is set by hand)."""
    event = DagsterEvent(
        DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name=RUNLESS_JOB_NAME,
        event_specific_data=StepMaterializationData(AssetMaterialization(asset_key=asset, metadata=metadata or {})),
    )
    instance.report_dagster_event(event, run_id=RUNLESS_RUN_ID, timestamp=at.timestamp())


def test_a_stopped_schedule_alerts_and_its_return_resolves(instance: DagsterInstance, photo_db: str, alert_env: JsonReceiver) -> None:
    resource = PhotoPipelineResource(database_url=photo_db)
    clock = Clock(T0)
    sensor, move = moving_sensor(clock)
    record_materialization(instance, PIPELINE_HEALTH, T0 - timedelta(minutes=1))
    cursor = tick(sensor, instance, resource, None)
    assert alert_env.received == []

    # No snapshot since: past the freshness policy's fail window, the schedule has stopped.
    move(T0 + HEALTH_FRESHNESS.fail_after + timedelta(minutes=1))
    cursor = tick(sensor, instance, resource, cursor)
    (alert,) = alert_env.received
    assert alert["title"] == "photo_pipeline: pipeline_health_schedule stopped"
    assert "pipeline_health was last materialized 17 min ago" in alert["message"]
    assert "the daemon running" in alert["message"]

    record_materialization(instance, PIPELINE_HEALTH, clock.at)  # it runs again
    cursor = tick(sensor, instance, resource, cursor)
    assert alert_env.titles()[1] == "photo_pipeline: resolved: pipeline_health_schedule stopped"


def test_a_reconciliation_refused_by_its_safety_limit_alerts(instance: DagsterInstance, photo_db: str, alert_env: JsonReceiver) -> None:
    resource = PhotoPipelineResource(database_url=photo_db)
    sensor = build_conditions_sensor()
    reason = "flag_missing would change 40 of 50 rows (80%) of album x, over the 20% limit"
    refused = {OUTCOME: MetadataValue.text(Outcome.REFUSED.value), "refusal": MetadataValue.text(reason)}
    record_materialization(instance, STORAGE_RECONCILIATION, datetime.now(UTC), refused)
    assert instance.get_latest_materialization_event(RECONCILIATION_ASSET) is not None

    cursor = tick(sensor, instance, resource, None)
    (alert,) = alert_env.received
    assert alert["title"] == "photo_pipeline: reconcile_storage was refused by its safety limit"
    assert reason in alert["message"] and "force: true" in alert["message"]

    applied = {OUTCOME: MetadataValue.text(Outcome.APPLIED.value)}
    record_materialization(instance, STORAGE_RECONCILIATION, datetime.now(UTC), applied)
    tick(sensor, instance, resource, cursor)
    assert alert_env.titles()[1] == "photo_pipeline: resolved: reconcile_storage was refused by its safety limit"


# -- without destinations -------------------------------------------------------------------------


def test_without_destinations_the_sensors_skip_and_say_why(instance: DagsterInstance, photo_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHOTO_ALERT_URLS", raising=False)
    resource = PhotoPipelineResource(database_url=photo_db)
    for sensor in (alert_on_conditions, alert_on_run_failure):
        with build_sensor_context(instance=instance, resources={"photo_pipeline": resource}) as context:
            result = sensor(context)
        assert result.skip_reason is not None and result.skip_reason.skip_message == NO_DESTINATIONS
        assert result.cursor is None
    # This test process started without PHOTO_ALERT_URLS: the sensors load stopped.
    assert ALERTS_DEFAULT_STATUS.value == "STOPPED"


def test_with_destinations_set_the_sensors_load_running(tmp_path: Path) -> None:
    """What the daemon and the UI see when the code location loads with PHOTO_ALERT_URLS set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTO_")}
    env.update(PHOTO_PIPELINE_HOME=str(tmp_path), PHOTO_ALERT_URLS="json://127.0.0.1:9/hook")
    code = (
        "from photo_pipeline.definitions import defs\n"
        "print({s.name: s.default_status.value for s in defs().sensors if s.name.startswith('alert_')})"
    )
    printed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    assert printed.stdout.strip() == "{'alert_on_conditions': 'RUNNING', 'alert_on_run_failure': 'RUNNING'}"
