"""What the resource page shows: which photo table and store are in use, with no secret, while
the connection settings still reach runs as EnvVars (read in the run, shown by name only)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import Definitions, EnvVar
from dagster._core.remote_representation.external_data import RepositorySnap

from photo_pipeline.defs.resources import PhotoPipelineResource, photo_pipeline_resource

PASSWORD = "s3cret-password"


def shown_description(resource: PhotoPipelineResource) -> str:
    """The description the UI's resource page shows, from the snapshot the code server sends it."""
    repository = Definitions(resources={"photo_pipeline": resource}).get_repository_def()
    [snap] = [r for r in RepositorySnap.from_def(repository).resources if r.name == "photo_pipeline"]
    return snap.resource_snapshot.description or ""


def test_resource_page_names_the_postgres_table_and_the_bucket_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTO_DATABASE_URL", f"postgresql+psycopg://photos:{PASSWORD}@db.internal:5432/photos")
    monkeypatch.setenv("PHOTO_BUCKET", "photos")
    monkeypatch.setenv("PHOTO_PUBLIC_ENDPOINT_URL", "https://photos-s3.example.com")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://minio.internal:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-key-example")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    resource = photo_pipeline_resource()
    description = shown_description(resource)
    assert "- photo table: `postgresql+psycopg://photos:***@db.internal:5432/photos`" in description
    assert "- objects: S3 bucket `photos` at http://minio.internal:9000" in description
    assert "- upload URLs signed for: https://photos-s3.example.com" in description
    for secret in (PASSWORD, "secret-key-example", "AKIDEXAMPLE"):
        assert secret not in description
    # Behaviour kept: the values still reach runs as EnvVars, shown by name.
    assert isinstance(resource, PhotoPipelineResource)
    assert isinstance(resource.database_url, EnvVar) and resource.database_url.env_var_name == "PHOTO_DATABASE_URL"
    assert isinstance(resource.bucket, EnvVar) and resource.bucket.env_var_name == "PHOTO_BUCKET"


def test_resource_page_names_the_embedded_table_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PHOTO_DATABASE_URL", "PHOTO_BUCKET", "PHOTO_PUBLIC_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PHOTO_PIPELINE_HOME", str(tmp_path))
    description = shown_description(photo_pipeline_resource())
    assert f"- photo table: `sqlite:///{tmp_path / 'photos.db'}`" in description
    assert f"- objects: folder `{tmp_path / 'objects'}` (no PHOTO_BUCKET set)" in description
    assert not (tmp_path / "objects").exists(), "describing the store must not create it"


def test_invalid_settings_are_named_on_the_resource_page_and_the_location_still_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTO_DATABASE_URL", f"not a url but a {PASSWORD}")
    description = shown_description(photo_pipeline_resource())
    assert "the settings are invalid: " in description and "PHOTO_DATABASE_URL" in description
    assert PASSWORD not in description
