"""Misconfiguration reads as failure and changes nothing: a wrong bucket, a database without the
table, out-of-range settings, a partition that is not an album id, a bad file among good ones,
and a cleanup that could not finish. PostgreSQL, S3 over HTTP and real Dagster runs throughout."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from dagster import DagsterEventType, DagsterInstance, materialize
from sqlalchemy import create_engine, inspect

from photo_pipeline.cli import samples
from photo_pipeline.cli.commands import main
from photo_pipeline.defs.renditions.assets import album_renditions, albums_partitions
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.services.uploads import UploadFailed, UploadPolicy, upload_photo
from photo_pipeline.settings import Settings, SettingsError
from photo_pipeline.storage import S3ObjectStore, keys, make_s3_client
from photo_pipeline_tests.conftest import S3Server
from photo_pipeline_tests.test_secrets import closed_port


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("PHOTO_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("PHOTO_PIPELINE_HOME", str(home))
    return home


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def register(repository: PhotoRepository, album: uuid.UUID) -> uuid.UUID:
    photo_id = uuid.uuid4()
    repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=keys.raw_key(album, photo_id, "jpg")))
    return photo_id


def step_attempts(instance: DagsterInstance, run_id: str) -> int:
    """How many times the renditions step started in the run (1 = never retried)."""
    records = instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)
    return len(records)


def test_a_missing_bucket_fails_the_run_at_once_and_touches_no_row(
    instance: DagsterInstance, photo_db: str, s3_env: S3Server
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    photos = [register(repository, album) for _ in range(3)]
    instance.add_dynamic_partitions(albums_partitions.name, [str(album)])
    wrong = PhotoPipelineResource(database_url=photo_db, bucket=f"no-such-bucket-{uuid.uuid4().hex[:8]}")

    result = materialize(
        [album_renditions], partition_key=str(album), instance=instance, resources={"photo_pipeline": wrong}, raise_on_error=False
    )

    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type is DagsterEventType.STEP_FAILURE]
    assert "does not exist" in failure.step_failure_data.error.message  # type: ignore[union-attr]
    assert "nothing was claimed" in failure.step_failure_data.error.message  # type: ignore[union-attr]
    assert step_attempts(instance, result.run_id) == 1, "no retry can create the bucket"
    rows = repository.get_many(photos)
    assert all(r.status is PhotoStatus.PENDING and r.attempts == 0 for r in rows.values())


def test_a_partition_that_is_not_a_uuid_fails_once_with_the_cause_as_headline(
    instance: DagsterInstance, photo_db: str, s3_bucket: str
) -> None:
    instance.add_dynamic_partitions(albums_partitions.name, ["holiday-2026"])
    resource = PhotoPipelineResource(database_url=photo_db, bucket=s3_bucket)
    result = materialize(
        [album_renditions], partition_key="holiday-2026", instance=instance, resources={"photo_pipeline": resource}, raise_on_error=False
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type is DagsterEventType.STEP_FAILURE]
    message = failure.step_failure_data.error.message  # type: ignore[union-attr]
    assert "'holiday-2026' is not a UUID" in message and "max_retries" not in message
    assert step_attempts(instance, result.run_id) == 1


def test_a_database_without_the_table_fails_the_run_non_retryable(
    instance: DagsterInstance, postgres_url: str, s3_bucket: str
) -> None:
    album = uuid.uuid4()
    instance.add_dynamic_partitions(albums_partitions.name, [str(album)])
    resource = PhotoPipelineResource(database_url=postgres_url, bucket=s3_bucket)  # never migrated
    result = materialize(
        [album_renditions], partition_key=str(album), instance=instance, resources={"photo_pipeline": resource}, raise_on_error=False
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type is DagsterEventType.STEP_FAILURE]
    assert "has no photos table" in failure.step_failure_data.error.message  # type: ignore[union-attr]
    assert step_attempts(instance, result.run_id) == 1
    assert inspect(create_engine(postgres_url)).get_table_names() == []


@pytest.mark.parametrize("command", [("status",), ("status", "--json"), ("reconcile", "--dry-run"), ("cleanup", str(uuid.uuid4()))])
def test_commands_other_than_init_db_never_create_the_schema(
    command: tuple[str, ...], clean_env: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTO_DATABASE_URL", postgres_url)
    result = invoke(*command)
    assert result.exit_code != 0
    assert "init-db" in result.output and "has no photos table" in result.output
    engine = create_engine(postgres_url)
    try:
        assert inspect(engine).get_table_names() == [], "the command planted a schema in the wrong database"
    finally:
        engine.dispose()
    assert invoke("init-db").exit_code == 0
    assert invoke("status").exit_code == 0


def test_a_database_that_cannot_be_reached_is_one_clear_line(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTO_DATABASE_URL", f"postgresql+psycopg://photos:s3cret@127.0.0.1:{closed_port()}/photos")
    result = invoke("status")
    assert result.exit_code == 1
    assert "cannot connect to the database postgresql+psycopg://photos:***@127.0.0.1" in result.output
    assert "s3cret" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PHOTO_QUALITY", "0"),
        ("PHOTO_BATCH_SIZE", "0"),
        ("PHOTO_PRESIGN_EXPIRES_SECONDS", "0"),
        ("PHOTO_WORKERS", "-1"),
        ("PHOTO_MEMORY_BUDGET_MB", "lots"),
        ("PHOTO_WATERMARK_OPACITY", "nan"),
        ("PHOTO_RECONCILE_CRON", "hourly"),
        ("PHOTO_PUBLIC_ENDPOINT_URL", "minio:9000"),
        # A typo and a renamed setting: silently ignored, they would leave the default on.
        ("PHOTO_QUALTIY", "60"),
        ("PHOTO_RENDITION_WIDTHS", "400,800"),
    ],
)
def test_a_bad_setting_fails_doctor_and_every_command_naming_the_variable(
    variable: str, value: str, clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})
    monkeypatch.setenv(variable, value)
    doctor = invoke("doctor")
    assert doctor.exit_code == 1 and variable in doctor.output and "fail" in doctor.output
    photo = tmp_path / "p.jpg"
    photo.write_bytes(samples.photo_jpeg(64, 48))
    upload = invoke("upload", str(uuid.uuid4()), str(photo))
    assert upload.exit_code != 0 and variable in upload.output
    assert not (clean_env / "photos.db").exists(), "nothing may be created on a bad configuration"


def test_heartbeat_must_fit_twice_in_the_lease() -> None:
    with pytest.raises(SettingsError, match="PHOTO_CLAIM_HEARTBEAT_SECONDS"):
        Settings.from_env({"PHOTO_CLAIM_LEASE_SECONDS": "60", "PHOTO_CLAIM_HEARTBEAT_SECONDS": "40"})


def test_upload_reports_each_file_and_goes_on_past_a_decompression_bomb(clean_env: Path, tmp_path: Path) -> None:
    assert invoke("init-db").exit_code == 0
    files = []
    for name, data in (("a.jpg", samples.photo_jpeg(64, 48)), ("bomb.png", samples.decompression_bomb_png()), ("b.jpg", samples.photo_jpeg(64, 48, seed=2))):
        path = tmp_path / name
        path.write_bytes(data)
        files.append(str(path))
    album = uuid.uuid4()
    result = invoke("upload", str(album), *files)
    output = " ".join(result.output.split())
    assert result.exit_code == 1
    assert output.count("uploaded") == 2 and "skipped" in output and "bomb.png" in output and "megapixels" in output
    assert "Traceback" not in output
    settings = Settings.from_env()
    assert PhotoRepository.from_url(settings.database_url).status_counts(album)[PhotoStatus.PENDING] == 2


def test_a_cleanup_that_could_not_delete_the_object_says_so(photo_db: str, s3_env: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    """The internal endpoint is dead while the public one works: the PUT lands, nothing can verify
    it, and the cleanup cannot delete the object. The message must not claim it did."""
    dead = make_s3_client(endpoint_url=f"http://127.0.0.1:{closed_port()}", max_attempts=1, connect_timeout=1)
    public = make_s3_client(endpoint_url=s3_env.endpoint_url)
    store = S3ObjectStore(dead, s3_bucket, presign_client=public)
    repository = PhotoRepository.from_url(photo_db)
    photo = tmp_path / "p.jpg"
    photo.write_bytes(samples.photo_jpeg(64, 48))

    with pytest.raises(UploadFailed) as failed:
        upload_photo(repository, store, uuid.uuid4(), photo, policy=UploadPolicy(attempts=2, backoff_seconds=0.01))

    message = str(failed.value)
    assert "row and object cleaned up" not in message
    assert "could not be deleted" in message and "reconciliation" in message
    landed = S3ObjectStore(public, s3_bucket).list_page("raw/")
    assert len(landed) == 1, "the object really is still in the bucket"
    assert repository.tombstoned([landed[0].key]) == {landed[0].key}, "so reconciliation removes it, never adopts it"
