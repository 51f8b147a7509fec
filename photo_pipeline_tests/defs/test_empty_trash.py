"""`empty_trash` as real Dagster runs (an instance from the production dagster.yaml on PostgreSQL,
the photo table on PostgreSQL, the bucket on S3 over HTTP, albums rendered by `process_album`):
the launchpad is a dry run and the schedule applies; after the retention (the rows' trash time
moved back in the table) the dry run records the plan and erases nothing, the applying run erases
it all, files included, and deletes the erased albums' partitions; a plan over the safety limit is
refused, recorded with its reason, and erases nothing until forced."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
import yaml
from dagster import AssetCheckKey, AssetCheckSeverity, AssetKey, DagsterInstance, ExecuteInProcessResult
from sqlalchemy import update

from photo_pipeline.cli import samples
from photo_pipeline.definitions import defs
from photo_pipeline.defs.renditions.assets import albums_partitions
from photo_pipeline.defs.trash.assets import WITHIN_SAFETY_LIMIT
from photo_pipeline.defs.trash.jobs import empty_trash_config
from photo_pipeline.photos.models import Album, Photo, PhotoStatus
from photo_pipeline.photos.repository import PhotoRepository, utc_now
from photo_pipeline.photos.trash import PhotoErased
from photo_pipeline.services import removal
from photo_pipeline.storage import S3ObjectStore
from photo_pipeline_tests.defs.test_renditions import (  # noqa: F401 - fixtures
    materialize_from_ui,
    pipeline_env,
    store,
    upload,
)
from photo_pipeline_tests.defs.ui_graphql import code_location, job_selector, query, repository_selector

RETENTION_DAYS = 30


def rendered_album(repository: PhotoRepository, store: S3ObjectStore, instance: DagsterInstance, photos: int) -> list[uuid.UUID]:
    album = uuid.uuid4()
    ids = [upload(repository, store, album, samples.photo_jpeg(96, 64, seed=i) + uuid.uuid4().bytes, f"{i}.jpg") for i in range(photos)]
    assert materialize_from_ui(instance, album).success
    return ids


def age_the_trash(repository: PhotoRepository, *, photos: list[uuid.UUID] = (), albums: list[uuid.UUID] = (), days: int = RETENTION_DAYS + 1) -> None:  # type: ignore[assignment]
    """Move trash times back in the table: what the retention is measured on."""
    past = utc_now() - timedelta(days=days)
    with repository.engine.begin() as conn:
        if photos:
            conn.execute(update(Photo).where(Photo.id.in_(photos)).values(trashed_at=past))
        if albums:
            conn.execute(update(Album).where(Album.id.in_(albums)).values(trashed_at=past))
            conn.execute(update(Photo).where(Photo.album_id.in_(albums), Photo.status == PhotoStatus.TRASHED.value).values(trashed_at=past))


def run_empty_trash(instance: DagsterInstance, run_config: dict[str, Any] | None = None) -> ExecuteInProcessResult:
    """The project's empty_trash job; no run_config: the job's own (what the launchpad opens with)."""
    return defs().resolve_job_def("empty_trash").execute_in_process(instance=instance, run_config=run_config, raise_on_error=False)


def trash_metadata(instance: DagsterInstance) -> dict[str, Any]:
    event = instance.get_latest_materialization_event(AssetKey("trash"))
    assert event is not None and event.asset_materialization is not None
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}


def safety_check(instance: DagsterInstance):  # type: ignore[no-untyped-def]
    key = AssetCheckKey(AssetKey("trash"), WITHIN_SAFETY_LIMIT)
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    assert record.event is not None and record.event.dagster_event is not None
    return record.event.dagster_event.event_specific_data


def objects_of(store: S3ObjectStore, *ids: uuid.UUID) -> list[str]:
    return [o.key for o in store.iter_objects("") if any(str(i) in o.key for i in ids)]


def test_the_trash_is_in_the_catalog_its_launchpad_a_dry_run_and_its_schedule_applies(instance: DagsterInstance) -> None:
    with code_location(instance) as workspace:
        data = query(workspace, ASSET_AND_JOB, {"asset": {"path": ["trash"]}, "job": job_selector("empty_trash")})
        schedule = query(workspace, SCHEDULE, {"schedule": {**repository_selector(), "scheduleName": "empty_trash_schedule"}})
    node = data["assetNodeOrError"]
    assert node["groupName"] == "trash" and "dry run" in node["description"] and "PHOTO_TRASH_RETENTION_DAYS" in node["description"]
    assert [c["name"] for c in node["assetChecksOrError"]["checks"]] == [WITHIN_SAFETY_LIMIT]
    [preset] = data["pipelineOrError"]["presets"]
    assert yaml.safe_load(preset["runConfigYaml"]) == {"ops": {"trash": {"config": {"dry_run": True, "force": False}}}}
    scheduled = schedule["scheduleOrError"]
    assert scheduled["cronSchedule"] == "30 3 * * *", "daily by default"
    [tick] = scheduled["futureTicks"]["results"][0]["evaluationResult"]["runRequests"]
    assert yaml.safe_load(tick["runConfigYaml"])["ops"]["trash"]["config"]["dry_run"] is False


ASSET_AND_JOB = """
query ($asset: AssetKeyInput!, $job: PipelineSelector!) {
  assetNodeOrError(assetKey: $asset) {
    ... on AssetNode { description groupName assetChecksOrError { ... on AssetChecks { checks { name } } } }
  }
  pipelineOrError(params: $job) { ... on Pipeline { presets { name runConfigYaml } } }
}
"""

SCHEDULE = """
query ($schedule: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $schedule) {
    ... on Schedule { cronSchedule futureTicks(limit: 1) { results { evaluationResult { runRequests { runConfigYaml } } } } }
  }
}
"""


def test_empty_trash_after_the_retention_dry_run_then_erase(
    instance: DagsterInstance, pipeline_env: None, photo_db: str, store: S3ObjectStore
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    photos = rendered_album(repository, store, instance, 3)
    album_photos = rendered_album(repository, store, instance, 2)
    album = repository.get(album_photos[0]).album_id  # type: ignore[union-attr]
    kept = rendered_album(repository, store, instance, 3)  # (3 of 8 rows to erase: under the floor of 100)
    expired, recent = photos[0], photos[1]
    for photo_id in (expired, recent):
        removal.delete_photo(repository, store, photo_id)
    removal.delete_album(repository, store, album)
    age_the_trash(repository, photos=[expired], albums=[album])
    files = objects_of(store, expired, *album_photos)
    assert files and instance.has_dynamic_partition(albums_partitions.name, str(album))

    dry = run_empty_trash(instance)  # the launchpad as it opens

    assert dry.success
    metadata = trash_metadata(instance)
    assert metadata["outcome"] == "dry run: nothing applied" and metadata["applied"] is False
    assert (metadata["photos_to_erase"], metadata["albums_to_erase_count"], metadata["photos_in_trash"]) == (3, 1, 4)
    assert [r["album"] for r in rows_of(metadata["albums_to_erase"])] == [str(album)]
    assert [r["photo"] for r in rows_of(metadata["first_photos_to_erase"])] == [str(expired)]
    assert "30 day(s)" in metadata["retention"] and "photos_erased" not in metadata
    assert objects_of(store, expired, *album_photos) == files, "a dry run erases nothing"
    assert safety_check(instance).passed

    applied = run_empty_trash(instance, empty_trash_config(dry_run=False))

    assert applied.success
    metadata = trash_metadata(instance)
    assert metadata["outcome"] == "applied" and metadata["photos_erased"] == 3 and metadata["albums_erased"] == 1
    assert metadata["objects_removed"] == len(files) and metadata["partitions_removed"] == 1
    assert objects_of(store, expired, *album_photos) == [], "originals and every rendition are gone"
    assert repository.get_many([expired, *album_photos]) == {}
    assert not instance.has_dynamic_partition(albums_partitions.name, str(album))
    with pytest.raises(PhotoErased):
        removal.restore_photo(repository, expired)
    # Inside the retention: still in the trash, restorable; the rest untouched.
    assert repository.get(recent).status is PhotoStatus.TRASHED  # type: ignore[union-attr]
    assert removal.restore_photo(repository, recent).status is PhotoStatus.COMPLETED
    assert all(r.status is PhotoStatus.COMPLETED for r in repository.get_many([photos[2], *kept]).values())


def rows_of(value: Any) -> list[dict[str, Any]]:
    return [dict(record.data) for record in value.records]


def test_a_plan_erasing_an_unusual_share_is_refused_until_forced(
    instance: DagsterInstance, pipeline_env: None, photo_db: str, store: S3ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTO_EMPTY_TRASH_MIN_ERASES", "2")
    repository = PhotoRepository.from_url(photo_db)
    photos = rendered_album(repository, store, instance, 4)
    for photo_id in photos[:3]:
        removal.delete_photo(repository, store, photo_id)
    age_the_trash(repository, photos=photos[:3])
    files = objects_of(store, *photos[:3])

    refused = run_empty_trash(instance, empty_trash_config(dry_run=False))

    assert not refused.success, "a refused plan fails the run"
    [failure] = [e for e in refused.all_events if e.is_step_failure]
    assert "3 photos to erase out of 4" in str(failure.step_failure_data.error) and "force: true" in str(failure.step_failure_data.error)
    metadata = trash_metadata(instance)
    assert metadata["outcome"] == "refused by the safety limit: nothing applied" and "75%" in metadata["refusal"]
    check = safety_check(instance)
    assert not check.passed and check.severity is AssetCheckSeverity.ERROR
    assert objects_of(store, *photos[:3]) == files and len(repository.get_many(photos)) == 4, "nothing was erased"

    forced = run_empty_trash(instance, empty_trash_config(dry_run=False, force=True))

    assert forced.success
    assert trash_metadata(instance)["outcome"] == "applied past the safety limit (force)"
    assert objects_of(store, *photos[:3]) == [] and list(repository.get_many(photos)) == [photos[3]]
