"""The Dagster layer on real parts: a Dagster instance built from the repository's production
dagster.yaml (PostgreSQL), the photo table on PostgreSQL, the bucket on S3 over HTTP."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    DagsterRunStatus,
    ExecuteInProcessResult,
    SensorResult,
    build_sensor_context,
    materialize,
)
from dagster._core.event_api import PartitionKeyFilter
from PIL import Image

from photo_pipeline.cli import samples
from photo_pipeline.definitions import defs
from photo_pipeline.defs.renditions.assets import (
    NO_FAILED_PHOTOS_IN_ALBUM,
    NO_FAILED_PHOTOS_IN_ANY_ALBUM,
    album_renditions,
    albums_partitions,
)
from photo_pipeline.defs.renditions.jobs import process_album
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.defs.sensors.pending_photo_sensor import pending_photo_sensor
from photo_pipeline.defs.sensors.raw_object_sensor import raw_object_sensor
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.services.uploads import title_album
from photo_pipeline.storage import S3ObjectStore, keys, make_s3_client
from photo_pipeline_tests.conftest import S3Server


@pytest.fixture
def resource(photo_db: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> PhotoPipelineResource:
    monkeypatch.setenv("PHOTO_PREVIEW_SIZE", "800")
    monkeypatch.setenv("PHOTO_THUMB_SIZE", "200")
    return PhotoPipelineResource(database_url=photo_db, bucket=s3_bucket)


@pytest.fixture
def store(s3_env: S3Server, s3_bucket: str) -> S3ObjectStore:
    return S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)


def upload(
    repository: PhotoRepository, store: S3ObjectStore, album: uuid.UUID, data: bytes | None, filename: str | None = None
) -> uuid.UUID:
    photo_id = uuid.uuid4()
    key = keys.raw_key(album, photo_id, "jpg")
    repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key, filename=filename))
    if data is not None:
        store.put(key, data, "image/jpeg")
    return photo_id


def test_definitions_load() -> None:
    assert defs().resolve_job_def("process_album") is not None
    assert {s.name for s in defs().sensors} == {"raw_object_sensor", "pending_photo_sensor", "alert_on_run_failure", "alert_on_conditions"}


def test_process_album_materializes_both_assets_on_postgres_and_s3(
    instance: DagsterInstance, resource: PhotoPipelineResource, photo_db: str, store: S3ObjectStore
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    good = [upload(repository, store, album, samples.photo_jpeg(1600, 1200, seed=i)) for i in range(4)]
    bad = upload(repository, store, album, samples.corrupt_jpeg())
    instance.add_dynamic_partitions(albums_partitions.name, [str(album)])

    result = materialize(
        [album_renditions], partition_key=str(album), instance=instance, resources={"photo_pipeline": resource}
    )

    assert result.success
    rows = repository.get_many([*good, bad])
    assert all(rows[p].status is PhotoStatus.COMPLETED for p in good)
    assert rows[bad].status is PhotoStatus.FAILED and rows[bad].error
    with Image.open(io.BytesIO(store.get(rows[good[0]].preview_key or ""))) as preview:
        assert max(preview.size) == 800
    for asset in ("thumbnails", "previews"):
        event = instance.get_latest_materialization_event(AssetKey(asset))
        assert event is not None and event.asset_materialization is not None
        assert event.asset_materialization.partition == str(album)
        metadata = event.asset_materialization.metadata
        assert metadata["photos_rendered"].value == 4
        assert metadata["photos_failed"].value == 1
        assert metadata["photos_per_second"].value > 0
    thumbs = instance.get_latest_materialization_event(AssetKey("thumbnails"))
    assert "data:image/jpeg;base64," in thumbs.asset_materialization.metadata["sample"].value  # type: ignore[union-attr]


# -- what the asset page shows: "Materialize" as the UI launches it, metadata and checks read back


@pytest.fixture
def pipeline_env(photo_db: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The project's definitions read their settings from the environment at run time, as the UI's
    runs do."""
    monkeypatch.setenv("PHOTO_DATABASE_URL", photo_db)
    monkeypatch.setenv("PHOTO_BUCKET", s3_bucket)
    monkeypatch.setenv("PHOTO_PREVIEW_SIZE", "320")
    monkeypatch.setenv("PHOTO_THUMB_SIZE", "96")


def materialize_from_ui(instance: DagsterInstance, album: uuid.UUID) -> ExecuteInProcessResult:
    """What "Materialize" on the asset page launches: the project's implicit asset job (no job
    of ours, no run config), for the album partition, both assets selected."""
    instance.add_dynamic_partitions(albums_partitions.name, [str(album)])
    job = defs().resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=instance, partition_key=str(album), asset_selection=[AssetKey("thumbnails"), AssetKey("previews")]
    )


def latest_metadata(instance: DagsterInstance, asset: str, album: uuid.UUID) -> dict[str, Any]:
    """The partition's latest materialization metadata, as the asset's partition page shows it."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[str(album)]), limit=1
    ).records
    assert records, f"{asset} has no materialization for album {album}"
    materialization = records[0].asset_materialization
    assert materialization is not None
    return {key: value.value for key, value in materialization.metadata.items()}


def test_materialize_on_a_rendered_album_keeps_its_figures_and_says_how_to_render_again(
    instance: DagsterInstance, pipeline_env: None, photo_db: str, store: S3ObjectStore
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    title_album(repository, album, "Studio")
    names = ["IMG_0001.JPG", "beach | day *1*.jpg", "[link](http://x).jpg"]
    good = [upload(repository, store, album, samples.photo_jpeg(640, 480, seed=i), name) for i, name in enumerate(names)]
    corrupt = upload(repository, store, album, samples.corrupt_jpeg(), "corrupt.jpg")

    first = materialize_from_ui(instance, album)
    assert first.success
    rendered = latest_metadata(instance, "thumbnails", album)
    assert rendered["photos_rendered"] == 3 and rendered["photos_failed"] == 1
    assert rendered["photos_per_second"] > 0 and rendered["seconds"] > 0
    # Every photo in the outcome table by its file name beside its id, Markdown escaped.
    outcomes = rendered["outcomes"]
    assert "| IMG\\_0001.JPG | `" in outcomes and f"`{good[0]}`" in outcomes
    assert "beach \\| day \\*1\\*.jpg" in outcomes and "\\[link\\](http://x).jpg" in outcomes
    assert outcomes.index(f"`{corrupt}`") < outcomes.index(f"`{good[0]}`"), "failures first"
    assert "corrupt.jpg" in rendered["album_failed_photos"]

    second = materialize_from_ui(instance, album)
    assert second.success
    rows = repository.get_many(good)
    assert all(rows[p].attempts == 1 for p in good), "nothing pending: nothing rendered again"
    for asset, rendition_bytes in (("thumbnails", "thumb_bytes"), ("previews", "preview_bytes")):
        after = latest_metadata(instance, asset, album)
        # The album as the table has it, whatever the run did.
        assert after["album_title"] == "Studio" and after["album_id"] == str(album)
        assert (after["album_photos"], after["album_completed"], after["album_failed"], after["album_pending"]) == (4, 3, 1, 0)
        assert after["album_bytes"] == sum(getattr(rows[p], rendition_bytes) for p in good) > 0
        assert "corrupt.jpg" in after["album_failed_photos"] and str(corrupt) in after["album_failed_photos"]
        # What the run did: nothing, and no point at zero on the rate and timing plots.
        assert after["photos_rendered"] == 0 and after["bytes_written"] == 0
        assert not {"photos_per_second", "seconds", "processing_started_at"} & set(after)
        assert "rerender_albums" in after["summary"] and "3 completed" in after["summary"]
    # The sample thumbnail stays: the album's latest, read from the bucket.
    assert "data:image/jpeg;base64," in latest_metadata(instance, "thumbnails", album)["sample"]

    # The asset page says how to render again, and the way it names works.
    for asset in ("thumbnails", "previews"):
        description = defs().resolve_assets_def(asset).specs_by_key[AssetKey(asset)].description or ""
        assert "rerender_albums" in description and "rerender: true" in description
    again = defs().resolve_job_def("rerender_albums").execute_in_process(instance=instance, partition_key=str(album))
    assert again.success
    assert latest_metadata(instance, "previews", album)["photos_rendered"] == 3
    assert all(r.attempts == 2 for r in repository.get_many(good).values())


def check_execution(instance: DagsterInstance, check: str, album: uuid.UUID | None = None) -> AssetCheckEvaluation:
    """The latest evaluation of a check on `thumbnails` as the UI reads it: overall, or for one
    album partition."""
    key = AssetCheckKey(AssetKey("thumbnails"), check)
    partitions = PartitionKeyFilter(key=str(album)) if album is not None else None
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key], partition_filter=partitions)[key]
    assert record.evaluation is not None
    return record.evaluation


def test_an_album_with_failed_photos_stays_flagged_when_a_clean_album_runs_after_it(
    instance: DagsterInstance, pipeline_env: None, photo_db: str, store: S3ObjectStore
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    broken, clean = uuid.uuid4(), uuid.uuid4()
    title_album(repository, broken, "Studio")
    upload(repository, store, broken, samples.photo_jpeg(320, 240), "ok.jpg")
    corrupt = [upload(repository, store, broken, samples.corrupt_jpeg(), f"scan-{i}.jpg") for i in range(2)]
    upload(repository, store, clean, samples.photo_jpeg(320, 240), "fine.jpg")

    assert materialize_from_ui(instance, broken).success, "a bad photo never fails the run"
    assert materialize_from_ui(instance, clean).success

    # The album rendered last is clean, and its per-album result is the latest one...
    assert check_execution(instance, NO_FAILED_PHOTOS_IN_ALBUM).passed
    # ...but the check across albums, rendered with it, still names the broken album.
    across = check_execution(instance, NO_FAILED_PHOTOS_IN_ANY_ALBUM)
    assert not across.passed and across.severity is AssetCheckSeverity.WARN
    assert across.metadata["albums_with_failed_photos"].value == 1 and across.metadata["failed_photos"].value == 2
    assert f"Studio ({broken}): 2" in (across.description or "")
    assert str(broken) in str(across.metadata["albums"].value)
    # The broken album's own result, per partition: how many, which files.
    own = check_execution(instance, NO_FAILED_PHOTOS_IN_ALBUM, broken)
    assert not own.passed and own.severity is AssetCheckSeverity.WARN
    assert own.metadata["failed_photos"].value == 2
    assert set(own.metadata["failed_photo_ids"].value) == {str(p) for p in corrupt}  # type: ignore[arg-type]
    assert "scan-0.jpg" in (own.description or "") and "scan-1.jpg" in (own.description or "")
    assert "scan-1.jpg" in str(own.metadata["latest_failures"].value)
    assert latest_metadata(instance, "thumbnails", broken)["album_failed"] == 2
    assert check_execution(instance, NO_FAILED_PHOTOS_IN_ALBUM, clean).passed
    # Named and described where the operator looks for them.
    specs = {spec.name: spec for spec in defs().resolve_assets_def("thumbnails").check_specs}
    assert set(specs) == {NO_FAILED_PHOTOS_IN_ALBUM, NO_FAILED_PHOTOS_IN_ANY_ALBUM}
    assert "Per album" in (specs[NO_FAILED_PHOTOS_IN_ALBUM].description or "")
    assert "Every album" in (specs[NO_FAILED_PHOTOS_IN_ANY_ALBUM].description or "")


def tick(sensor, instance: DagsterInstance, cursor: str | None, resource: PhotoPipelineResource) -> SensorResult:  # type: ignore[no-untyped-def]
    with build_sensor_context(instance=instance, cursor=cursor, resources={"photo_pipeline": resource}) as context:
        result = sensor(context)
    assert isinstance(result, SensorResult)
    # The daemon applies partition requests before launching runs; do the same between ticks.
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def test_raw_object_sensor_sweeps_in_slices_and_requests_each_album_once(
    instance: DagsterInstance,
    resource: PhotoPipelineResource,
    photo_db: str,
    store: S3ObjectStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PHOTO_SENSOR_MAX_KEYS_PER_TICK", "3")
    repository = PhotoRepository.from_url(photo_db)
    album_a, album_b = uuid.uuid4(), uuid.uuid4()
    known = upload(repository, store, album_a, samples.photo_jpeg(64, 48))
    orphans_a = [uuid.uuid4() for _ in range(4)]
    for photo_id in orphans_a:
        store.put(keys.raw_key(album_a, photo_id, "jpg"), samples.photo_jpeg(64, 48), "image/jpeg")

    cursor: str | None = None
    run_keys: list[str] = []
    requested_albums: list[str] = []
    for _ in range(3):  # 5 objects at 3 per tick: two ticks finish the sweep, the third starts over
        result = tick(raw_object_sensor, instance, cursor, resource)
        cursor = result.cursor
        run_keys += [r.run_key for r in result.run_requests or []]
        requested_albums += [r.partition_key for r in result.run_requests or []]

    assert sorted(requested_albums) == [str(album_a)] * len(requested_albums)
    assert len(run_keys) == len(set(run_keys))
    rows = repository.get_many(orphans_a)
    assert set(rows) == set(orphans_a) and all(r.status is PhotoStatus.PENDING for r in rows.values())
    assert repository.get(known) is not None
    assert instance.has_dynamic_partition(albums_partitions.name, str(album_a))

    # New objects between ticks, one under a key that is not ours: adopted with a minted id.
    store.put(f"raw/{album_b}/{uuid.uuid4()}.jpg", samples.photo_jpeg(64, 48), "image/jpeg")
    store.put("raw/phone-dump/IMG_0001.jpg", samples.photo_jpeg(64, 48), "image/jpeg")
    later_albums: list[str] = []
    for _ in range(4):
        result = tick(raw_object_sensor, instance, cursor, resource)
        cursor = result.cursor
        run_keys += [r.run_key for r in result.run_requests or []]
        later_albums += [r.partition_key for r in result.run_requests or []]
    assert len(run_keys) == len(set(run_keys))
    assert str(album_b) in later_albums
    assert len(later_albums) == 2, "one run per album that got new rows, never twice"
    assert repository.find_by_original_keys(["raw/phone-dump/IMG_0001.jpg"])


def test_sensors_do_not_pile_on_an_album_with_a_run_in_flight(
    instance: DagsterInstance, resource: PhotoPipelineResource, photo_db: str, store: S3ObjectStore
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    upload(repository, store, album, samples.photo_jpeg(64, 48))
    instance.add_dynamic_partitions(albums_partitions.name, [str(album)])
    job = defs().resolve_job_def(process_album.name)
    # A run that has been created but not started yet counts as in flight, like a queued one.
    queued = instance.create_run_for_job(job_def=job, tags={"dagster/partition": str(album)})
    assert queued.status is DagsterRunStatus.NOT_STARTED
    result = tick(pending_photo_sensor, instance, None, resource)
    assert not result.run_requests
    instance.report_run_canceled(queued)
    result = tick(pending_photo_sensor, instance, result.cursor, resource)
    assert [r.partition_key for r in result.run_requests or []] == [str(album)]


def test_pending_photo_sensor_requests_albums_whose_files_arrived(
    instance: DagsterInstance, resource: PhotoPipelineResource, photo_db: str, store: S3ObjectStore
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    arrived_album, waiting_album = uuid.uuid4(), uuid.uuid4()
    upload(repository, store, arrived_album, samples.photo_jpeg(64, 48))
    waiting = upload(repository, store, waiting_album, None)

    first = tick(pending_photo_sensor, instance, None, resource)
    assert [r.partition_key for r in first.run_requests or []] == [str(arrived_album)]

    second = tick(pending_photo_sensor, instance, first.cursor, resource)
    assert not second.run_requests, "nothing changed: no second request"

    # The waiting album's upload lands between ticks.
    row = repository.get(waiting)
    assert row is not None
    store.put(row.original_key, samples.photo_jpeg(64, 48), "image/jpeg")
    third = tick(pending_photo_sensor, instance, second.cursor, resource)
    assert [r.partition_key for r in third.run_requests or []] == [str(waiting_album)]
    keys_seen = [r.run_key for r in (first.run_requests or []) + (third.run_requests or [])]
    assert len(keys_seen) == len(set(keys_seen))


def test_connection_settings_reach_dagster_as_env_vars_not_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster import EnvVar

    from photo_pipeline.defs.resources import photo_pipeline_resource

    secret = "postgresql+psycopg://photos:s3cret-password@db.internal/photos"
    monkeypatch.setenv("PHOTO_DATABASE_URL", secret)
    monkeypatch.setenv("PHOTO_BUCKET", "photos")
    monkeypatch.delenv("PHOTO_PUBLIC_ENDPOINT_URL", raising=False)
    resource = photo_pipeline_resource()
    # Dagster shows an EnvVar by its name; the value is read in the run process only.
    assert isinstance(resource.database_url, EnvVar) and resource.database_url.env_var_name == "PHOTO_DATABASE_URL"
    assert resource.public_endpoint_url is None
    assert "s3cret-password" not in repr(resource)
    from photo_pipeline.settings import Settings

    assert Settings.from_env().database_url_for_display() == "postgresql+psycopg://photos:***@db.internal/photos"
