"""The fast path: "this photo has arrived" submits its album's run to the real queue at once.

The instance is the repository's production dagster.yaml on PostgreSQL (queued run coordinator),
so a submitted run must sit QUEUED with its album's partition tag, waiting for the daemon."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from photo_pipeline.instance.run_requests import (
    DEFINITIONS_ATTRIBUTE,
    DEFINITIONS_MODULE,
    LOCATION_NAME,
    Decision,
    album_run_requester,
    decide,
    plan_arrivals,
    request_album_run,
)
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import PhotoRecord
from photo_pipeline_tests.conftest import ROOT


def record(album_id: uuid.UUID, status: PhotoStatus) -> PhotoRecord:
    now = datetime.now(timezone.utc)
    return PhotoRecord(
        id=uuid.uuid4(), album_id=album_id, original_key=f"raw/{album_id}/x.jpg", status=status, thumb_key=None,
        preview_key=None, error=None, attempts=0, created_at=now, updated_at=now, claimed_by=None, claimed_at=None,
        width=None, height=None, original_bytes=None, thumb_bytes=None, preview_bytes=None, filename=None,
        content_type=None, completed_at=None, missing_since=None,
    )  # fmt: skip


def test_a_waiting_run_absorbs_the_request_and_a_claiming_run_gets_one_follower() -> None:
    assert decide([]) is Decision.SUBMIT
    for waiting in (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING):
        assert decide([waiting]) is Decision.SKIP_WAITING_RUN
        assert decide([DagsterRunStatus.STARTED, waiting]) is Decision.SKIP_WAITING_RUN
    # The run in progress may have claimed its last batch before the photo landed.
    assert decide([DagsterRunStatus.STARTED]) is Decision.SUBMIT_FOLLOWER


def test_arrivals_are_grouped_by_album_and_non_pending_photos_refused() -> None:
    album_a, album_b = uuid.uuid4(), uuid.uuid4()
    a1, a2, b1 = record(album_a, PhotoStatus.PENDING), record(album_a, PhotoStatus.PENDING), record(album_b, PhotoStatus.PENDING)
    done = record(album_b, PhotoStatus.COMPLETED)
    unknown = uuid.uuid4()
    rows = {r.id: r for r in (a1, a2, b1, done)}
    plan = plan_arrivals([a1.id, unknown, b1.id, a2.id, done.id], rows)
    assert plan.albums == [album_a, album_b]
    assert plan.refused == {unknown: "no such photo", done.id: "photo is completed, not pending"}


def test_the_fast_path_loads_what_workspace_yaml_names() -> None:
    [entry] = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"]
    module = entry["python_module"]
    assert (module["module_name"], module["attribute"], module["location_name"]) == (
        DEFINITIONS_MODULE,
        DEFINITIONS_ATTRIBUTE,
        LOCATION_NAME,
    )


def album_runs(instance: DagsterInstance, album_id: uuid.UUID):  # type: ignore[no-untyped-def]
    return instance.get_run_records(RunsFilter(job_name="process_album", tags={"dagster/partition": str(album_id)}))


def test_a_run_is_queued_for_the_album_with_its_partition(dagster_instance: DagsterInstance) -> None:
    album_id = uuid.uuid4()
    outcome = request_album_run(album_id, dagster_instance)

    assert outcome.decision is Decision.SUBMIT and outcome.run_id
    [record_] = album_runs(dagster_instance, album_id)
    run = record_.dagster_run
    assert run.run_id == outcome.run_id
    # Queued, not launched here: the daemon dequeues it under the per-album limit.
    assert run.status is DagsterRunStatus.QUEUED
    assert run.tags["dagster/partition"] == str(album_id)
    assert run.tags["photo_pipeline/trigger"] == "arrived"
    assert run.tags["photo_pipeline/kind"] == "render"
    assert run.remote_job_origin is not None and run.remote_job_origin.location_name == LOCATION_NAME
    assert dagster_instance.has_dynamic_partition("albums", str(album_id))


def test_an_album_with_a_waiting_run_is_not_submitted_twice(dagster_instance: DagsterInstance) -> None:
    album_id, other_album = uuid.uuid4(), uuid.uuid4()
    with album_run_requester(dagster_instance) as requester:
        first = requester.request(album_id)
        second = requester.request(album_id)
        third = requester.request(album_id)
        other = requester.request(other_album)

    assert first.submitted
    assert (second.decision, second.run_id) == (Decision.SKIP_WAITING_RUN, None)
    assert (third.decision, third.run_id) == (Decision.SKIP_WAITING_RUN, None)
    assert [r.dagster_run.run_id for r in album_runs(dagster_instance, album_id)] == [first.run_id]
    # Another album is not held back by it.
    assert other.submitted and len(album_runs(dagster_instance, other_album)) == 1


@pytest.mark.parametrize("ending", ["failed", "canceled"])
def test_a_finished_run_does_not_hold_the_album_back(dagster_instance: DagsterInstance, ending: str) -> None:
    album_id = uuid.uuid4()
    first = request_album_run(album_id, dagster_instance)
    run = dagster_instance.get_run_by_id(first.run_id or "")
    assert run is not None
    if ending == "failed":
        dagster_instance.report_run_failed(run, "ended for the test")
    else:
        dagster_instance.report_run_canceled(run, "ended for the test")

    again = request_album_run(album_id, dagster_instance)
    assert again.decision is Decision.SUBMIT and again.run_id != first.run_id
    assert len(album_runs(dagster_instance, album_id)) == 2


def test_the_arrived_command_requests_the_albums_run_and_refuses_unknown_photos(
    dagster_instance: DagsterInstance, photo_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from photo_pipeline.cli.commands import main
    from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
    from photo_pipeline.storage import keys

    album, photo = uuid.uuid4(), uuid.uuid4()
    PhotoRepository.from_url(photo_db).register_pending(NewPhoto(id=photo, album_id=album, original_key=keys.raw_key(album, photo, "jpg")))
    unknown = uuid.uuid4()
    monkeypatch.setenv("PHOTO_DATABASE_URL", photo_db)
    monkeypatch.setenv("PHOTO_PIPELINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))  # the fixture's instance

    result = CliRunner().invoke(main, ["arrived", str(photo), str(unknown)])

    assert result.exit_code == 1, result.output  # one photo could not be handled
    assert f"photo {unknown}: no such photo" in result.output
    [run] = album_runs(dagster_instance, album)
    assert run.dagster_run.status is DagsterRunStatus.QUEUED
    assert run.dagster_run.run_id in "".join(result.output.split())  # rich wraps long lines
